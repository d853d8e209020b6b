//! Cluster, tenant and account commands: Init, RotateSessionKey, CreateTenant, CreateAccount,
//! SetPassword, SetAccountDisabled, DeleteAccount, PurgeAccount.
//!
//! Revocation: SetPassword and disabling raise the account's credential generation, which every
//! session token carries, so the storage nodes refuse the account's older tokens from the entry
//! on; they also publish an [`ACCOUNT_EVENT`] so front-ends end those sessions without waiting
//! for their next command.
//!
//! Deletion comes in two kinds of entries, so no single apply has to remove a whole mailbox store
//! while every other tenant waits: DeleteAccount removes the login and the account record (every
//! token of it is refused, since the storage nodes find no account, and the login is free for a
//! new account with a new id) and leaves a [`DeletedAccount`] record; PurgeAccount then removes
//! the mail in bounded steps. Mailbox commands check that their account exists (`dispatch`), so
//! nothing can add to a deleted account's mail while it is purged.

use super::Txn;
use crate::access::{get, get_id, scan_all, scan_up_to};
use crate::command::{ACCOUNT_EVENT, ModelError, Outcome, Principal, Reply};
use crate::keys;
use crate::kv::{KvRead, Table};
use crate::limits::MAX_MESSAGES_PER_COMMAND;
use crate::names::INBOX;
use crate::query::{self, fold};
use crate::records::{
    Account, DeletedAccount, Mailbox, MessageMeta, PurgeCursor, Record, RetiredKey, SessionKey, SessionKeys, Tenant,
};
use crate::types::{AccountId, TenantId};

/// Longest domain (RFC 1035 §2.3.4) and login accepted.
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LOGIN_LEN: usize = 255;

fn check_text(what: &str, s: &str, max: usize) -> Result<(), ModelError> {
    if s.is_empty() || s.len() > max || s.chars().any(|c| c.is_control() || c.is_whitespace() || c == '@') {
        return Err(ModelError::Invalid(what.to_string()));
    }
    Ok(())
}

/// Id of the key `Init` installs (a state from before rotation existed has key 0).
const FIRST_KEY_ID: u32 = 1;

/// Installs the session key once; later `Init`s (a re-bootstrapped proposer) are no-ops so the
/// key, and every token signed with it, stays valid.
pub(super) fn init(txn: &mut Txn<'_>, session_key: &[u8]) -> Reply {
    if session_key.is_empty() {
        return Err(ModelError::Invalid("empty session key".into()));
    }
    if query::session_keys(txn)?.is_none() {
        let current = SessionKey { id: FIRST_KEY_ID, secret: session_key.to_vec() };
        let keys = SessionKeys { current, previous: None };
        txn.put(Table::Meta, keys::META_SESSION_KEYS.to_vec(), &keys);
    }
    Ok(Outcome::Done)
}

/// The new key signs from now on; the replaced one verifies until `now_ms + grace_ms` (the
/// request's clock, so every replica stores the same time). A key replaced earlier is dropped:
/// two rotations within one grace period end the sessions signed with the oldest key.
pub(super) fn rotate_session_key(txn: &mut Txn<'_>, session_key: &[u8], grace_ms: i64) -> Reply {
    if session_key.is_empty() {
        return Err(ModelError::Invalid("empty session key".into()));
    }
    if grace_ms < 0 {
        return Err(ModelError::Invalid("negative grace period".into()));
    }
    let old = query::session_keys(txn)?.ok_or_else(|| ModelError::Cannot("cluster not initialized".into()))?;
    let id = old.current.id.checked_add(1).ok_or_else(|| ModelError::Cannot("session key ids exhausted".into()))?;
    let valid_until_ms = txn.now_ms.saturating_add(grace_ms);
    let keys = SessionKeys {
        current: SessionKey { id, secret: session_key.to_vec() },
        previous: Some(RetiredKey { key: old.current, valid_until_ms }),
    };
    txn.put(Table::Meta, keys::META_SESSION_KEYS.to_vec(), &keys);
    // The pre-rotation layout's copy must not outlive the key's grace period.
    txn.delete(Table::Meta, keys::META_SESSION_KEY.to_vec());
    Ok(Outcome::SessionKeyRotated { key_id: id, previous_valid_until_ms: valid_until_ms })
}

pub(super) fn create_tenant(txn: &mut Txn<'_>, domain: &str) -> Reply {
    let domain = fold(domain);
    check_text("domain", &domain, MAX_DOMAIN_LEN)?;
    if txn.get(Table::TenantByDomain, &keys::tenant_by_domain(&domain)).is_some() {
        return Err(ModelError::AlreadyExists(format!("tenant {domain}")));
    }
    let id = txn.alloc_id()?;
    txn.put_raw(Table::TenantByDomain, keys::tenant_by_domain(&domain), keys::id_value(id));
    txn.put(Table::Tenants, keys::tenant(id), &Tenant { id, domain, quota_bytes: None, used_bytes: 0 });
    Ok(Outcome::TenantCreated { tenant: id })
}

/// Creates the account and its INBOX (every account has one; it cannot be deleted).
pub(super) fn create_account(txn: &mut Txn<'_>, domain: &str, login: &str, password_hash: &str) -> Reply {
    let tenant = query::tenant_by_domain(txn, domain)?;
    let login = fold(login);
    check_text("login", &login, MAX_LOGIN_LEN)?;
    if txn.get(Table::AccountByLogin, &keys::account_by_login(tenant.id, &login)).is_some() {
        return Err(ModelError::AlreadyExists(format!("account {login}")));
    }
    let id = txn.alloc_id()?;
    txn.put_raw(Table::AccountByLogin, keys::account_by_login(tenant.id, &login), keys::id_value(id));
    let account = Account {
        id,
        tenant: tenant.id,
        login,
        password_hash: password_hash.to_string(),
        quota_bytes: None,
        used_bytes: 0,
        generation: 0,
        disabled: false,
    };
    txn.put(Table::Accounts, keys::account(tenant.id, id), &account);
    txn.new_mailbox(Principal { tenant: tenant.id, account: id }, INBOX, None)?;
    Ok(Outcome::AccountCreated { tenant: tenant.id, account: id })
}

/// The principal and record of `login@domain`.
fn find(txn: &Txn<'_>, domain: &str, login: &str) -> Result<(Principal, Account), ModelError> {
    let tenant = query::tenant_by_domain(txn, domain)?;
    let login = fold(login);
    let id = get_id(txn, Table::AccountByLogin, &keys::account_by_login(tenant.id, &login))?
        .ok_or_else(|| ModelError::NotFound(format!("account {login}")))?;
    let who = Principal { tenant: tenant.id, account: id };
    Ok((who, txn.load_account(who)?))
}

/// Raises the credential generation (every token issued so far is refused from now on) and
/// tells the front-ends to end the account's sessions.
fn revoke_sessions(txn: &mut Txn<'_>, who: Principal, account: &mut Account) -> Result<(), ModelError> {
    account.generation =
        account.generation.checked_add(1).ok_or_else(|| ModelError::Cannot("credential generations exhausted".into()))?;
    txn.event(who, ACCOUNT_EVENT, 0);
    Ok(())
}

/// A new password ends every session of the account: whoever changed it may be locking out
/// someone who knew the old one.
pub(super) fn set_password(txn: &mut Txn<'_>, domain: &str, login: &str, password_hash: &str) -> Reply {
    let (who, mut account) = find(txn, domain, login)?;
    account.password_hash = password_hash.to_string();
    revoke_sessions(txn, who, &mut account)?;
    txn.put(Table::Accounts, keys::account(who.tenant, who.account), &account);
    Ok(Outcome::Done)
}

/// Disabling ends every session; enabling again does not revive them (the generation stays
/// raised). Setting the current state again changes nothing.
pub(super) fn set_disabled(txn: &mut Txn<'_>, domain: &str, login: &str, disabled: bool) -> Reply {
    let (who, mut account) = find(txn, domain, login)?;
    if account.disabled == disabled {
        return Ok(Outcome::Done);
    }
    account.disabled = disabled;
    if disabled {
        revoke_sessions(txn, who, &mut account)?;
    }
    txn.put(Table::Accounts, keys::account(who.tenant, who.account), &account);
    Ok(Outcome::Done)
}

/// Deletes `login@domain` at once and leaves its mail to [`purge_account`]. The account id is
/// never handed out again (ids come from one counter), so a new account of the same login sees
/// none of the old mail, and a leftover token names an account that no longer exists.
pub(super) fn delete_account(txn: &mut Txn<'_>, domain: &str, login: &str) -> Reply {
    let (who, account) = find(txn, domain, login)?;
    txn.delete(Table::AccountByLogin, keys::account_by_login(who.tenant, &account.login));
    txn.delete(Table::Accounts, keys::account(who.tenant, who.account));
    let (tenant, id, deleted_ms) = (who.tenant, who.account, txn.now_ms);
    let record = DeletedAccount { tenant, account: id, login: account.login, deleted_ms, cursor: None };
    txn.put(Table::Meta, keys::deleted_account(who.tenant, who.account), &record);
    txn.event(who, ACCOUNT_EVENT, 0);
    Ok(Outcome::AccountDeleted { tenant: who.tenant, account: who.account })
}

/// The accounts deleted but not purged yet, by (tenant, account).
pub fn pending_deletions(kv: &dyn KvRead) -> Result<Vec<DeletedAccount>, ModelError> {
    scan_all(kv, Table::Meta, &keys::deleted_accounts()).iter().map(|(_, v)| DeletedAccount::decode(v)).collect()
}

/// One bounded step of removing a deleted account's mail: at most `max_rows` rows, counting each
/// message, change-log entry, mailbox and subscription as one. Mailboxes go in id order, each
/// with its messages (dropping blob references and the tenant's quota usage), then its change
/// log, then the mailbox record; subscriptions go last. The step that finds nothing left drops
/// the deletion record and reports `done`; later steps are `NotFound`.
pub(super) fn purge_account(txn: &mut Txn<'_>, tenant: TenantId, account: AccountId, max_rows: u32) -> Reply {
    let budget = max_rows as usize;
    if budget == 0 || budget > MAX_MESSAGES_PER_COMMAND {
        return Err(ModelError::Invalid(format!("a purge step removes 1 to {MAX_MESSAGES_PER_COMMAND} rows")));
    }
    let marker = keys::deleted_account(tenant, account);
    let mut record = get::<DeletedAccount>(txn, Table::Meta, &marker)?
        .ok_or_else(|| ModelError::NotFound(format!("deleted account {account}")))?;
    let mut left = budget;
    let (mut messages, mut mailboxes, mut bytes) = (0u64, 0u64, 0u64);
    let own = keys::prefix_range(keys::account_prefix(tenant, account));
    let mut cursor = record.cursor.take();
    while left > 0 {
        let Some((_, value)) = scan_up_to(txn, Table::Mailboxes, &own, 1).pop() else { break };
        let mb = Mailbox::decode(&value)?;
        let mut at = match cursor {
            Some(c) if c.mailbox == mb.id => c,
            _ => PurgeCursor { mailbox: mb.id, last_uid: None, last_change: None },
        };
        let messages_left = after(keys::mailbox_prefix(tenant, mb.id), at.last_uid.map(|u| keys::message(tenant, mb.id, u)));
        for (key, value) in scan_up_to(txn, Table::Messages, &messages_left, left) {
            let m = MessageMeta::decode_for(&value, &mb)?;
            txn.drop_blob_ref(tenant, &m.blob)?;
            txn.delete(Table::Messages, key);
            bytes = bytes.saturating_add(m.size);
            messages += 1;
            at.last_uid = Some(m.uid);
            left -= 1;
        }
        let last_change = at.last_change.map(|(modseq, uid)| keys::change(tenant, mb.id, modseq, uid));
        for (key, _) in scan_up_to(txn, Table::Changes, &after(keys::mailbox_prefix(tenant, mb.id), last_change), left) {
            at.last_change = Some(keys::change_of(&key).ok_or_else(|| ModelError::Corrupt("change key".into()))?);
            txn.delete(Table::Changes, key);
            left -= 1;
        }
        if left == 0 {
            // The mailbox may have more: the next step resumes here.
            cursor = Some(at);
            break;
        }
        // Both scans came back short: the mailbox is empty and can go.
        txn.delete(Table::MailboxByName, keys::mailbox_by_name(tenant, account, &mb.name));
        txn.delete(Table::Mailboxes, keys::mailbox(tenant, account, mb.id));
        mailboxes += 1;
        cursor = None;
        left -= 1;
    }
    // Subscriptions, and any name index entry left without its mailbox.
    for table in [Table::Subscriptions, Table::MailboxByName] {
        for (key, _) in scan_up_to(txn, table, &own, left) {
            txn.delete(table, key);
            left -= 1;
        }
    }
    txn.refund_tenant(tenant, bytes)?;
    // Every scan above came back short of its budget only if nothing is left.
    let done = left > 0;
    if done {
        txn.delete(Table::Meta, marker);
    } else {
        record.cursor = cursor;
        txn.put(Table::Meta, marker, &record);
    }
    let rows = (budget - left) as u64;
    Ok(Outcome::AccountPurged { messages, mailboxes, rows, done })
}

/// The rows under `prefix` after `last` (all of them when `None`).
fn after(prefix: Vec<u8>, last: Option<Vec<u8>>) -> keys::KeyRange {
    let end = keys::prefix_end(&prefix);
    match last {
        Some(mut key) => {
            // The smallest key greater than `key`.
            key.push(0);
            keys::KeyRange { start: key, end }
        }
        None => keys::KeyRange { start: prefix, end },
    }
}
