//! `apply`: one replicated [`Request`] → its [`Reply`], its writes and its mailbox events.
//!
//! Flow: [`apply_detailed`] first does the dedup bookkeeping ([`dedup`]: purge expired request
//! ids; a request whose id was already applied is answered with the recorded reply and goes no
//! further). Then it opens a [`Txn`] whose reads see the committed state, then the batch's
//! earlier writes, then its own; the command handler (one file per family: [`account`],
//! [`mailbox`], [`message`]) reads, checks everything that can fail, and writes into the
//! Txn's private `WriteSet`. Only on success are those writes merged into the caller's batch,
//! so a failed command leaves the batch as it was apart from the dedup bookkeeping (every
//! replica fails identically). Finally the reply is recorded under the request's id.
//!
//! Determinism: handlers use only the request (including `now_ms`) and the state; ids,
//! UIDVALIDITY, UIDs and MODSEQs are allocated from counters stored in the state.
//!
//! Versioned rules: before anything else, [`apply_detailed`] reads the state's feature level
//! (one point read per request; an earlier `SetFeatureLevel` of the same batch counts) and
//! hands it to the handlers as `Txn::level`, so a rule changed by a later release is written
//! `if txn.level() >= N { new rule } else { old rule }` ([`crate::feature`]). A level this
//! binary cannot apply is a [`FatalError`], not a reply: the store stops instead of applying
//! the entry with the wrong rules.

mod account;
pub mod dedup;
mod deliver;
mod mailbox;
mod message;
pub mod restore;

pub use account::pending_deletions;
use sha2::{Digest, Sha256};

use crate::access::get;
use crate::command::{Command, MailboxEvent, ModelError, Principal, Reply, Request};
use crate::feature::{self, FatalError, Supported};
use crate::keys;
use crate::limits::MAX_COMMAND_BYTES;
use crate::kv::{KvRead, Overlay, Table, WriteSet};
use crate::records::{Account, BlobMeta, Mailbox, Record, Tenant};
use crate::types::{MailboxId, TenantId};

/// What applying one request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The answer for the proposer.
    pub reply: Reply,
    /// Mailbox changes to publish once the batch is durable; empty on error and on a replay.
    pub events: Vec<MailboxEvent>,
    /// The request's id had already been applied: `reply` is the recorded one and nothing else
    /// happened (a dedup hit).
    pub replayed: bool,
}

impl Applied {
    fn refused(e: ModelError) -> Self {
        Applied { reply: Err(e), events: Vec::new(), replayed: false }
    }
}

/// Applies one request on top of `kv` plus the batch's pending `writes`; see
/// [`apply_detailed`]. Returns the reply and the mailbox events.
pub fn apply(kv: &dyn KvRead, writes: &mut WriteSet, req: &Request) -> Result<(Reply, Vec<MailboxEvent>), FatalError> {
    let applied = apply_detailed(kv, writes, req)?;
    Ok((applied.reply, applied.events))
}

/// Applies one request on top of `kv` plus the batch's pending `writes`. On success the
/// command's writes are added to `writes`; on error they are discarded and no events are
/// returned. Either way the dedup bookkeeping is added: expired request ids purged (at most
/// [`dedup::PURGE_PER_APPLY`]) and, for a request with an id, its reply recorded. A request whose
/// id was applied within [`dedup::DEDUP_WINDOW_MS`] gets the recorded reply, no events, and
/// writes nothing but the purge.
///
/// `Err` (nothing written) when this binary cannot apply the request the way every replica
/// must: the state's feature level, or the one a `SetFeatureLevel` sets, is not one it knows
/// ([`crate::feature`]). The caller must stop applying, not skip the entry.
pub fn apply_detailed(kv: &dyn KvRead, writes: &mut WriteSet, req: &Request) -> Result<Applied, FatalError> {
    apply_with(kv, writes, req, Supported::THIS_BINARY)
}

/// [`apply_detailed`] for a binary that supports the levels `binary` (tests also play newer
/// binaries).
pub(crate) fn apply_with(kv: &dyn KvRead, writes: &mut WriteSet, req: &Request, binary: Supported) -> Result<Applied, FatalError> {
    let level = feature::stored_level(&Overlay { base: kv, writes }).map_err(|e| FatalError::Corrupt(e.to_string()))?;
    binary.check(level)?;
    if let Command::SetFeatureLevel { level: wanted } = req.command
        && wanted > binary.known
    {
        return Err(FatalError::NewerFeatureLevel { level: wanted, known: binary.known });
    }
    let floor = match dedup::purge(kv, writes, req.now_ms) {
        Ok(floor) => floor,
        Err(e) => return Ok(Applied::refused(e)),
    };
    let Some(id) = &req.request_id else {
        return Ok(run(kv, writes, req, level));
    };
    Ok(match dedup::lookup(kv, writes, id, &req.command, req.now_ms) {
        Err(e) => Applied::refused(e),
        Ok(dedup::Seen::Replay(reply)) => Applied { reply, events: Vec::new(), replayed: true },
        Ok(dedup::Seen::New) => {
            let applied = run(kv, writes, req, level);
            // The index row must not sort before the purge floor, or it would never be purged
            // (possible only if this leader's clock is a whole window behind an earlier one's).
            dedup::record(writes, id, &req.command, req.now_ms.max(floor), &applied.reply);
            applied
        }
    })
}

/// Runs the command in a [`Txn`] under the rules of feature `level`; merges its writes into
/// `writes` only on success.
fn run(kv: &dyn KvRead, writes: &mut WriteSet, req: &Request, level: u32) -> Applied {
    let (reply, ws, events) = {
        let mut txn = Txn::new(kv, writes, req.now_ms, level);
        let reply = dispatch(&mut txn, &req.command);
        (reply, txn.ws, txn.events)
    };
    match reply {
        Ok(outcome) => {
            writes.ops.extend(ws.ops);
            Applied { reply: Ok(outcome), events, replayed: false }
        }
        Err(e) => Applied::refused(e),
    }
}

fn dispatch(txn: &mut Txn<'_>, cmd: &Command) -> Reply {
    // The storage node checked the session token when it proposed the command, but the account
    // may have been deleted by an entry applied since: its mail is being purged and must not
    // gain anything (one point read; APPEND and COPY read the account for the quota anyway).
    if let Some(who) = cmd.principal() {
        txn.load_account(who)?;
    }
    match cmd {
        Command::Init { session_key } => account::init(txn, &session_key.0),
        Command::RotateSessionKey { session_key, grace_ms } => account::rotate_session_key(txn, &session_key.0, *grace_ms),
        Command::CreateTenant { domain } => account::create_tenant(txn, domain),
        Command::CreateAccount { domain, login, password_hash } => account::create_account(txn, domain, login, password_hash),
        Command::SetPassword { domain, login, password_hash } => account::set_password(txn, domain, login, password_hash),
        Command::SetAccountDisabled { domain, login, disabled } => account::set_disabled(txn, domain, login, *disabled),
        Command::DeleteAccount { domain, login } => account::delete_account(txn, domain, login),
        Command::PurgeAccount { tenant, account, max_rows } => account::purge_account(txn, *tenant, *account, *max_rows),
        Command::CreateMailbox { who, name, special_use } => mailbox::create(txn, *who, name, special_use.as_deref()),
        Command::DeleteMailbox { who, name } => mailbox::delete(txn, *who, name),
        Command::RenameMailbox { who, from, to } => mailbox::rename(txn, *who, from, to),
        Command::Subscribe { who, name, subscribe } => mailbox::subscribe(txn, *who, name, *subscribe),
        Command::Append { who, mailbox, messages } => message::append(txn, *who, mailbox, messages),
        Command::Store { who, mailbox, uidvalidity, uids, op, flags, unchanged_since } => {
            message::store(txn, *who, *mailbox, *uidvalidity, uids, *op, flags, *unchanged_since)
        }
        Command::Expunge { who, mailbox, uidvalidity, uids } => message::expunge(txn, *who, *mailbox, *uidvalidity, uids.as_ref()),
        Command::Copy { who, mailbox, uidvalidity, uids, destination, is_move } => {
            message::copy(txn, *who, *mailbox, *uidvalidity, uids, destination, *is_move)
        }
        Command::Deliver { tenant, body, targets } => deliver::deliver(txn, *tenant, body, targets),
        Command::SetFeatureLevel { level } => feature::set_level(txn, *level),
    }
}

/// One command in progress: reads through to the batch, writes privately.
pub(crate) struct Txn<'a> {
    base: Overlay<'a, dyn KvRead + 'a>,
    ws: WriteSet,
    now_ms: i64,
    /// The feature level whose rules this command runs under ([`Txn::level`]).
    level: u32,
    events: Vec<MailboxEvent>,
    /// Bytes of keys and values written so far, bodies excepted ([`Txn::within_bounds`]).
    written: u64,
}

impl KvRead for Txn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        Overlay { base: &self.base, writes: &self.ws }.get(table, key)
    }

    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        Overlay { base: &self.base, writes: &self.ws }.scan(table, start, end, limit)
    }
}

impl<'a> Txn<'a> {
    /// A command's transaction over the committed state `kv` and the batch's pending `writes`.
    fn new(kv: &'a dyn KvRead, writes: &'a WriteSet, now_ms: i64, level: u32) -> Self {
        Txn { base: Overlay { base: kv, writes }, ws: WriteSet::default(), now_ms, level, events: Vec::new(), written: 0 }
    }

    /// The cluster's feature level as of this command: a rule a release changed is written
    /// `if txn.level() >= N { new rule } else { old rule }` (`limits.rs`, [`crate::feature`]).
    pub(crate) fn level(&self) -> u32 {
        self.level
    }

    fn put<R: Record>(&mut self, table: Table, key: Vec<u8>, value: &R) {
        self.put_raw(table, key, value.encode_at(self.level));
    }

    pub(crate) fn put_raw(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        if table != Table::BlobData {
            self.count_written(key.len() + value.len());
        }
        self.ws.put(table, key, value);
    }

    fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.count_written(key.len());
        self.ws.delete(table, key);
    }

    fn count_written(&mut self, bytes: usize) {
        self.written = self.written.saturating_add(bytes as u64);
    }

    /// `Limit` once the command has written more than [`MAX_COMMAND_BYTES`]; commands whose
    /// writes grow with their message set call it once per message, so the refusal comes before
    /// the rest is built. (Rewriting one key counts each time: the bound is on work, not size.)
    fn within_bounds(&self) -> Result<(), ModelError> {
        if self.written > MAX_COMMAND_BYTES {
            return Err(self.too_big(format!("a command may write at most {} MiB of records", MAX_COMMAND_BYTES >> 20)));
        }
        Ok(())
    }

    /// The refusal of a command over a size bound that smaller commands would pass: `TooBig`
    /// from feature level 2 on, `Limit` as level 1 answered it.
    fn too_big(&self, why: String) -> ModelError {
        if self.level >= feature::LEVEL_KEYWORD_INDEX { ModelError::TooBig(why) } else { ModelError::Limit(why) }
    }

    /// Unix seconds of the proposer's clock.
    fn now_secs(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }

    /// Publishes "mailbox changed, now at `modseq`" once the batch is durable.
    fn event(&mut self, who: Principal, mailbox: MailboxId, modseq: u64) {
        self.events.push(MailboxEvent { who, mailbox, modseq });
    }

    /// Next id from the global counter (tenants, accounts and mailboxes share it).
    fn alloc_id(&mut self) -> Result<u64, ModelError> {
        let id = match self.get(Table::Meta, keys::META_NEXT_ID) {
            None => 1,
            Some(v) => keys::decode_id_value(&v).ok_or_else(|| ModelError::Corrupt("next_id".into()))?,
        };
        let next = id.checked_add(1).ok_or_else(|| ModelError::Cannot("id space exhausted".into()))?;
        self.put_raw(Table::Meta, keys::META_NEXT_ID.to_vec(), keys::id_value(next));
        Ok(id)
    }

    /// RFC 3501 §2.3.1.1: a new UIDVALIDITY, strictly larger than any handed out before (so a
    /// recreated name never repeats one) and close to the clock (so it stays larger after a
    /// restore from an old backup).
    fn alloc_uidvalidity(&mut self) -> Result<u32, ModelError> {
        let last = match self.get(Table::Meta, keys::META_LAST_UIDVALIDITY) {
            None => 0,
            Some(v) => {
                let b: [u8; 4] = v.as_slice().try_into().map_err(|_| ModelError::Corrupt("last_uidvalidity".into()))?;
                u32::from_be_bytes(b)
            }
        };
        let after_last = last.checked_add(1).ok_or_else(|| ModelError::Cannot("uidvalidity space exhausted".into()))?;
        let clock = self.now_secs().clamp(0, i64::from(u32::MAX)) as u32;
        let v = after_last.max(clock);
        self.put_raw(Table::Meta, keys::META_LAST_UIDVALIDITY.to_vec(), v.to_be_bytes().to_vec());
        Ok(v)
    }

    /// Creates an empty mailbox record and its name index entry.
    fn new_mailbox(&mut self, who: Principal, name: &str, special_use: Option<String>) -> Result<Mailbox, ModelError> {
        let mb = Mailbox {
            id: self.alloc_id()?,
            name: name.to_string(),
            uidvalidity: self.alloc_uidvalidity()?,
            uidnext: 1,
            highest_modseq: 1,
            exists: 0,
            unseen: 0,
            deleted: 0,
            size: 0,
            special_use,
            keywords: Default::default(),
            changelog_floor: 0,
        };
        self.put_raw(Table::MailboxByName, keys::mailbox_by_name(who.tenant, who.account, name), keys::id_value(mb.id));
        self.save_mailbox(who, &mb);
        Ok(mb)
    }

    fn save_mailbox(&mut self, who: Principal, mb: &Mailbox) {
        self.put(Table::Mailboxes, keys::mailbox(who.tenant, who.account, mb.id), mb);
    }

    fn load_account(&self, who: Principal) -> Result<Account, ModelError> {
        crate::query::account(self, who)
    }

    fn load_tenant(&self, tenant: TenantId) -> Result<Tenant, ModelError> {
        get::<Tenant>(self, Table::Tenants, &keys::tenant(tenant))?.ok_or_else(|| ModelError::NotFound(format!("tenant {tenant}")))
    }

    /// Counts `bytes` more against the account and tenant; `OverQuota` if either has a quota
    /// that would be exceeded.
    fn charge(&mut self, who: Principal, bytes: u64) -> Result<(), ModelError> {
        let mut account = self.load_account(who)?;
        let mut tenant = self.load_tenant(who.tenant)?;
        let over = |used: u64, quota: Option<u64>| quota.is_some_and(|q| used.saturating_add(bytes) > q);
        if over(account.used_bytes, account.quota_bytes) || over(tenant.used_bytes, tenant.quota_bytes) {
            return Err(ModelError::OverQuota);
        }
        account.used_bytes = account.used_bytes.saturating_add(bytes);
        tenant.used_bytes = tenant.used_bytes.saturating_add(bytes);
        self.put(Table::Accounts, keys::account(who.tenant, who.account), &account);
        self.put(Table::Tenants, keys::tenant(who.tenant), &tenant);
        Ok(())
    }

    /// Gives back `bytes` of removed messages.
    fn refund(&mut self, who: Principal, bytes: u64) -> Result<(), ModelError> {
        if bytes == 0 {
            return Ok(());
        }
        let mut account = self.load_account(who)?;
        let mut tenant = self.load_tenant(who.tenant)?;
        account.used_bytes = account.used_bytes.saturating_sub(bytes);
        tenant.used_bytes = tenant.used_bytes.saturating_sub(bytes);
        self.put(Table::Accounts, keys::account(who.tenant, who.account), &account);
        self.put(Table::Tenants, keys::tenant(who.tenant), &tenant);
        Ok(())
    }

    /// Gives back `bytes` of a deleted account's purged messages: only the tenant still counts them.
    fn refund_tenant(&mut self, tenant: TenantId, bytes: u64) -> Result<(), ModelError> {
        if bytes == 0 {
            return Ok(());
        }
        let mut record = self.load_tenant(tenant)?;
        record.used_bytes = record.used_bytes.saturating_sub(bytes);
        self.put(Table::Tenants, keys::tenant(tenant), &record);
        Ok(())
    }

    /// Stores `body` once per tenant (content-addressed) or adds a reference to it. Only the
    /// first store writes the bytes and the structure; every later one writes the 8-byte count.
    fn store_blob(&mut self, tenant: TenantId, body: &[u8], structure: &[u8]) -> Result<[u8; 32], ModelError> {
        let hash: [u8; 32] = Sha256::digest(body).into();
        let refs = crate::query::blob_refcount(self, tenant, &hash)?;
        if refs == 0 {
            let key = keys::blob(tenant, &hash);
            self.put_raw(Table::BlobData, key.clone(), body.to_vec());
            self.put(Table::BlobMeta, key, &BlobMeta { refcount: 1, size: body.len() as u64, structure: structure.to_vec() });
        }
        self.set_blob_refs(tenant, &hash, refs.saturating_add(1));
        Ok(hash)
    }

    /// One more message points at an existing blob (COPY, MOVE).
    fn add_blob_ref(&mut self, tenant: TenantId, hash: &[u8; 32]) -> Result<(), ModelError> {
        let refs = crate::query::blob_refcount(self, tenant, hash)?;
        if refs == 0 {
            return Err(ModelError::Corrupt(format!("blob {} referenced but missing", hex::encode(hash))));
        }
        self.set_blob_refs(tenant, hash, refs.saturating_add(1));
        Ok(())
    }

    /// One message fewer points at a blob; the last one deletes it.
    fn drop_blob_ref(&mut self, tenant: TenantId, hash: &[u8; 32]) -> Result<(), ModelError> {
        let refs = crate::query::blob_refcount(self, tenant, hash)?;
        if refs == 0 {
            return Err(ModelError::Corrupt(format!("blob {} referenced but missing", hex::encode(hash))));
        }
        let key = keys::blob(tenant, hash);
        if refs == 1 {
            self.delete(Table::BlobRefs, key.clone());
            self.delete(Table::BlobMeta, key.clone());
            self.delete(Table::BlobData, key);
        } else {
            self.set_blob_refs(tenant, hash, refs - 1);
        }
        Ok(())
    }

    fn set_blob_refs(&mut self, tenant: TenantId, hash: &[u8; 32], refs: u64) {
        self.put_raw(Table::BlobRefs, keys::blob(tenant, hash), keys::id_value(refs));
    }
}
