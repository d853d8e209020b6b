//! Read-only questions about the state: login, LIST, SELECT, FETCH, STATUS and resync.
//!
//! Every function takes a [`KvRead`] view (the store's snapshot on the leader after a read
//! index, or an `Overlay` inside `apply`) and never writes. Functions taking a [`Principal`]
//! only see that account's data: a mailbox id of another account or tenant is `NotFound`,
//! because every key they build starts with `who.tenant` and `who.account` (messages, keyed by
//! globally unique mailbox id, are read only after that mailbox was found under `who`).

use std::ops::ControlFlow;

use crate::access::{for_each_page, get, get_id, scan_all, scan_up_to};
use crate::command::{FlagsUpdate, ModelError, Principal};
use crate::keys;
use crate::kv::{KvRead, Table};
use crate::names;
use crate::records::{Account, BlobMeta, Change, Mailbox, MessageMeta, Record, SessionKey, SessionKeys, Tenant};
use crate::types::{Flag, MailboxId, TenantId, Uid, UidSet};

/// The session keys, once `Init` has been applied. A state from before key rotation existed
/// holds one raw key: it is key 0, with no previous key.
pub fn session_keys(kv: &dyn KvRead) -> Result<Option<SessionKeys>, ModelError> {
    if let Some(keys) = get::<SessionKeys>(kv, Table::Meta, keys::META_SESSION_KEYS)? {
        return Ok(Some(keys));
    }
    Ok(kv
        .get(Table::Meta, keys::META_SESSION_KEY)
        .map(|secret| SessionKeys { current: SessionKey { id: 0, secret }, previous: None }))
}

/// The bytes of the key that signs new session tokens, once `Init` has been applied.
pub fn session_key(kv: &dyn KvRead) -> Option<Vec<u8>> {
    session_keys(kv).ok().flatten().map(|k| k.current.secret)
}

/// Folds a domain or login the way `CreateTenant` / `CreateAccount` store it.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// The tenant of a domain (case-insensitive).
pub fn tenant_by_domain(kv: &dyn KvRead, domain: &str) -> Result<Tenant, ModelError> {
    let domain = fold(domain);
    let id = get_id(kv, Table::TenantByDomain, &keys::tenant_by_domain(&domain))?
        .ok_or_else(|| ModelError::NotFound(format!("tenant {domain}")))?;
    get::<Tenant>(kv, Table::Tenants, &keys::tenant(id))?
        .ok_or_else(|| ModelError::Corrupt(format!("tenant {id} indexed but missing")))
}

/// LOGIN: the account `login@domain` (both case-insensitive) and the principal to act as.
pub fn find_account(kv: &dyn KvRead, domain: &str, login: &str) -> Result<(Principal, Account), ModelError> {
    let tenant = tenant_by_domain(kv, domain)?;
    let login = fold(login);
    let id = get_id(kv, Table::AccountByLogin, &keys::account_by_login(tenant.id, &login))?
        .ok_or_else(|| ModelError::NotFound(format!("account {login}")))?;
    let who = Principal { tenant: tenant.id, account: id };
    Ok((who, account(kv, who)?))
}

/// The account acting as `who`.
pub fn account(kv: &dyn KvRead, who: Principal) -> Result<Account, ModelError> {
    get::<Account>(kv, Table::Accounts, &keys::account(who.tenant, who.account))?
        .ok_or_else(|| ModelError::NotFound("account".into()))
}

/// LIST: all mailboxes of the account, sorted by name (byte order, so inferiors follow their
/// parent).
pub fn list_mailboxes(kv: &dyn KvRead, who: Principal) -> Result<Vec<Mailbox>, ModelError> {
    let range = keys::prefix_range(keys::account_prefix(who.tenant, who.account));
    let mut out = scan_all(kv, Table::Mailboxes, &range)
        .into_iter()
        .map(|(_, v)| Mailbox::decode(&v))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// LSUB / LIST (SUBSCRIBED): subscribed names, sorted; they need not exist.
pub fn subscriptions(kv: &dyn KvRead, who: Principal) -> Result<Vec<String>, ModelError> {
    let range = keys::prefix_range(keys::account_prefix(who.tenant, who.account));
    scan_all(kv, Table::Subscriptions, &range)
        .into_iter()
        .map(|(k, _)| keys::name_of(&k).ok_or_else(|| ModelError::Corrupt("subscription key".into())))
        .collect()
}

/// The id of a mailbox by name, if it exists (INBOX case-insensitive).
pub fn mailbox_id(kv: &dyn KvRead, who: Principal, name: &str) -> Result<Option<MailboxId>, ModelError> {
    let name = names::canonical(name);
    get_id(kv, Table::MailboxByName, &keys::mailbox_by_name(who.tenant, who.account, &name))
}

/// SELECT / STATUS / APPEND target: a mailbox by name (INBOX case-insensitive).
pub fn mailbox_by_name(kv: &dyn KvRead, who: Principal, name: &str) -> Result<Mailbox, ModelError> {
    let id = mailbox_id(kv, who, name)?.ok_or_else(|| ModelError::NotFound(format!("mailbox {name}")))?;
    get::<Mailbox>(kv, Table::Mailboxes, &keys::mailbox(who.tenant, who.account, id))?
        .ok_or_else(|| ModelError::Corrupt(format!("mailbox {id} indexed but missing")))
}

/// The selected mailbox, re-read: `NotFound` once deleted, `UidValidityChanged` if the id is
/// alive but the session selected another incarnation (cannot happen with unique ids, but
/// the check is what makes stale sessions safe).
pub fn mailbox_by_id(kv: &dyn KvRead, who: Principal, id: MailboxId, uidvalidity: u32) -> Result<Mailbox, ModelError> {
    let mb = get::<Mailbox>(kv, Table::Mailboxes, &keys::mailbox(who.tenant, who.account, id))?
        .ok_or_else(|| ModelError::NotFound(format!("mailbox {id}")))?;
    if mb.uidvalidity != uidvalidity {
        return Err(ModelError::UidValidityChanged);
    }
    Ok(mb)
}

fn check_owner(kv: &dyn KvRead, who: Principal, mailbox: &Mailbox) -> Result<(), ModelError> {
    match kv.get(Table::Mailboxes, &keys::mailbox(who.tenant, who.account, mailbox.id)) {
        Some(_) => Ok(()),
        None => Err(ModelError::NotFound(format!("mailbox {}", mailbox.id))),
    }
}

/// SELECT: every UID of the mailbox, ascending. Only the keys are kept, but the scan reads the
/// records with them, a page at a time: a mailbox of large records (many keywords) costs one
/// page of them at once and four bytes per message, yet reading all of them takes as long as
/// their size (`KvRead` has no keys-only scan).
pub fn uids(kv: &dyn KvRead, who: Principal, mailbox: &Mailbox) -> Result<Vec<Uid>, ModelError> {
    check_owner(kv, who, mailbox)?;
    let range = keys::prefix_range(keys::mailbox_prefix(who.tenant, mailbox.id));
    let mut out = Vec::with_capacity(mailbox.exists as usize);
    for_each_page(kv, Table::Messages, &range, usize::MAX, |page| {
        for (k, _) in page {
            out.push(keys::uid_of(&k).ok_or_else(|| ModelError::Corrupt("message key".into()))?);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(out)
}

/// SELECT `[UNSEEN n]`: the lowest UID without `\Seen`, scanning a page at a time and stopping
/// at the first.
pub fn first_unseen(kv: &dyn KvRead, who: Principal, mailbox: &Mailbox) -> Result<Option<Uid>, ModelError> {
    check_owner(kv, who, mailbox)?;
    if mailbox.unseen == 0 {
        return Ok(None);
    }
    let range = keys::prefix_range(keys::mailbox_prefix(who.tenant, mailbox.id));
    let mut found = None;
    for_each_page(kv, Table::Messages, &range, usize::MAX, |page| {
        for (_, v) in page {
            let m = MessageMeta::decode_for(&v, mailbox)?;
            if !m.flags.contains(&Flag::Seen) {
                found = Some(m.uid);
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok::<_, ModelError>(ControlFlow::Continue(()))
    })?;
    Ok(found)
}

/// FETCH: the existing messages among `uids`, ascending; with `changed_since > 0` only those
/// whose modseq is greater (RFC 7162 §3.1.4 CHANGEDSINCE).
pub fn messages(
    kv: &dyn KvRead,
    who: Principal,
    mailbox: &Mailbox,
    uids: &UidSet,
    changed_since: u64,
) -> Result<Vec<MessageMeta>, ModelError> {
    check_owner(kv, who, mailbox)?;
    let mut out = messages_in(kv, who.tenant, mailbox, uids)?;
    if changed_since > 0 {
        out.retain(|m| m.modseq > changed_since);
    }
    Ok(out)
}

/// One page of [`messages`]: at most `limit` of them, those with a UID above `after`. A long
/// FETCH reads its messages page by page (the caller passes the last UID it used as `after`), so
/// what it holds stays one page whatever the mailbox's size. `ranges` is the UID set as
/// [`UidSet::normalized`] gives it, computed once by the caller: a page starts with a binary
/// search for `after`, so a set of many ranges costs no more per page than a single one.
pub fn messages_page(
    kv: &dyn KvRead,
    who: Principal,
    mailbox: &Mailbox,
    ranges: &[(Uid, Uid)],
    changed_since: u64,
    after: Uid,
    limit: usize,
) -> Result<Vec<MessageMeta>, ModelError> {
    check_owner(kv, who, mailbox)?;
    let mut out = Vec::new();
    let Some(floor) = after.checked_add(1) else { return Ok(out) };
    let start = ranges.partition_point(|&(_, last)| last < floor);
    for &(first, last) in ranges.get(start..).unwrap_or_default() {
        let mut from = first.max(floor);
        // With CHANGEDSINCE most keys may be filtered out: keep scanning until the page is full
        // or the range is done.
        loop {
            let want = limit.saturating_sub(out.len());
            if want == 0 {
                return Ok(out);
            }
            let range = keys::message_range(who.tenant, mailbox.id, from, last);
            let scanned = scan_up_to(kv, Table::Messages, &range, want);
            let full = scanned.len() == want;
            let mut last_uid = None;
            for (_, v) in scanned {
                let meta = MessageMeta::decode_for(&v, mailbox)?;
                last_uid = Some(meta.uid);
                if changed_since == 0 || meta.modseq > changed_since {
                    out.push(meta);
                }
            }
            match last_uid.and_then(|u| u.checked_add(1)) {
                Some(next) if full && next <= last => from = next,
                _ => break,
            }
        }
    }
    Ok(out)
}

/// Messages of a mailbox among `uids`, ascending, without an ownership check (callers did it).
pub(crate) fn messages_in(
    kv: &dyn KvRead,
    tenant: TenantId,
    mailbox: &Mailbox,
    uids: &UidSet,
) -> Result<Vec<MessageMeta>, ModelError> {
    let mut out = Vec::new();
    for (first, last) in uids.normalized() {
        let range = keys::message_range(tenant, mailbox.id, first, last);
        for (_, v) in scan_all(kv, Table::Messages, &range) {
            out.push(MessageMeta::decode_for(&v, mailbox)?);
        }
    }
    Ok(out)
}

/// FETCH BODY[]: the bytes of a blob of the tenant.
pub fn blob(kv: &dyn KvRead, tenant: TenantId, blob: &[u8; 32]) -> Option<Vec<u8>> {
    kv.get(Table::BlobData, &keys::blob(tenant, blob))
}

/// How many message records of the tenant point at a blob (0 when it does not exist): its
/// `BlobRefs` row, or for a blob stored before that table existed, its `BlobMeta`'s count.
pub fn blob_refcount(kv: &dyn KvRead, tenant: TenantId, blob: &[u8; 32]) -> Result<u64, ModelError> {
    let key = keys::blob(tenant, blob);
    if let Some(v) = kv.get(Table::BlobRefs, &key) {
        return keys::decode_id_value(&v).ok_or_else(|| ModelError::Corrupt("blob refcount".into()));
    }
    Ok(get::<BlobMeta>(kv, Table::BlobMeta, &key)?.map_or(0, |m| m.refcount))
}

/// FETCH BODYSTRUCTURE / ENVELOPE: the blob's bookkeeping and precomputed structure. `None`
/// when absent (or undecodable, which `apply` would report as `Corrupt`).
pub fn blob_meta(kv: &dyn KvRead, tenant: TenantId, blob: &[u8; 32]) -> Option<BlobMeta> {
    get::<BlobMeta>(kv, Table::BlobMeta, &keys::blob(tenant, blob)).ok().flatten()
}

/// What changed in a mailbox since a modseq: feeds untagged EXPUNGE/FETCH after each command,
/// IDLE catch-up, and RFC 7162 QRESYNC `VANISHED (EARLIER)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangesView {
    /// UIDs expunged after `since`, ascending (may include UIDs the client never saw).
    pub expunged: Vec<Uid>,
    /// Messages added or whose flags changed after `since`, with current flags, by UID.
    pub changed: Vec<FlagsUpdate>,
    /// The mailbox's HIGHESTMODSEQ now.
    pub highest_modseq: u64,
    /// The mailbox's UIDNEXT now.
    pub uidnext: Uid,
    /// The log cannot answer (since is older than `changelog_floor`) or more than `max` changes
    /// happened: the lists are empty and the client must reload the mailbox.
    pub resync: bool,
}

/// Most bytes of flag names one [`changes`] answer carries: a message may hold ~33 KiB of
/// keywords, so `max` changes alone do not bound the answer (10,000 of them would be 330 MB);
/// past this the answer is `resync`, like past `max`.
pub const MAX_CHANGES_FLAG_BYTES: usize = 4 << 20;

/// Changes of `mailbox` with a modseq greater than `since_modseq`, at most `max` of them and at
/// most [`MAX_CHANGES_FLAG_BYTES`] of flags.
pub fn changes(
    kv: &dyn KvRead,
    who: Principal,
    mailbox: &Mailbox,
    since_modseq: u64,
    max: usize,
) -> Result<ChangesView, ModelError> {
    let mb = get::<Mailbox>(kv, Table::Mailboxes, &keys::mailbox(who.tenant, who.account, mailbox.id))?
        .ok_or_else(|| ModelError::NotFound(format!("mailbox {}", mailbox.id)))?;
    let mut view = ChangesView { highest_modseq: mb.highest_modseq, uidnext: mb.uidnext, ..ChangesView::default() };
    if since_modseq < mb.changelog_floor {
        view.resync = true;
        return Ok(view);
    }
    let range = keys::changes_after(who.tenant, mb.id, since_modseq);
    let rows = scan_up_to(kv, Table::Changes, &range, max.saturating_add(1));
    if rows.len() > max {
        view.resync = true;
        return Ok(view);
    }
    let mut flag_bytes = 0usize;
    for (k, v) in rows {
        let (modseq, uid) = keys::change_of(&k).ok_or_else(|| ModelError::Corrupt("change key".into()))?;
        match Change::decode(&v)? {
            Change::Expunged => view.expunged.push(uid),
            Change::Added | Change::Flags => {
                let m = kv
                    .get(Table::Messages, &keys::message(who.tenant, mb.id, uid))
                    .map(|v| MessageMeta::decode_for(&v, &mb))
                    .transpose()?
                    .filter(|m| m.modseq == modseq)
                    .ok_or_else(|| ModelError::Corrupt(format!("change log entry {modseq}/{uid} is stale")))?;
                flag_bytes = m.flags.iter().fold(flag_bytes, |n, f| n.saturating_add(f.as_imap().len() + 1));
                if flag_bytes > MAX_CHANGES_FLAG_BYTES {
                    // The session reloads the mailbox through FETCH, whose byte budget holds it.
                    return Ok(ChangesView { resync: true, expunged: Vec::new(), changed: Vec::new(), ..view });
                }
                view.changed.push(FlagsUpdate { uid, flags: m.flags, modseq });
            }
        }
    }
    view.expunged.sort_unstable();
    view.changed.sort_by_key(|u| u.uid);
    Ok(view)
}
