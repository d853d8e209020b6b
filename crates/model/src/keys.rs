//! Byte encodings of every key, per [`Table`](crate::Table).
//!
//! Keys are big-endian and tenant-first: all of one tenant's rows in a table are contiguous (a
//! tenant can later be moved or dropped with one range), and fixed-width big-endian integers sort
//! numerically, so a scan over `(tenant, mailbox, uid)` returns messages in UID order and a scan
//! over `(tenant, mailbox, modseq, uid)` returns changes in MODSEQ order.
//!
//! Strings only ever come last in a key (domain, login, mailbox name), so they need neither a
//! terminator nor a length prefix, and a prefix scan on `name + "/"` finds a mailbox's inferiors.
//! Decoders return `None` for keys of the wrong shape; callers turn that into
//! [`ModelError::Corrupt`](crate::ModelError::Corrupt).
//!
//! | table | key | value |
//! |---|---|---|
//! | Meta | [`META_NEXT_ID`], [`META_LAST_UIDVALIDITY`], [`META_SESSION_KEYS`] | u64 BE, u32 BE, `SessionKeysRecord` |
//! | Meta | [`META_DELETED_ACCOUNT`], tenant, account | `DeletedAccountRecord` |
//! | Meta | [`META_FEATURE_LEVEL`] | u32 BE (absent: level 1) |
//! | Tenants | tenant | `TenantRecord` |
//! | TenantByDomain | domain | tenant (u64 BE) |
//! | Accounts | tenant, account | `AccountRecord` |
//! | AccountByLogin | tenant, login | account (u64 BE) |
//! | Mailboxes | tenant, account, mailbox | `MailboxRecord` |
//! | MailboxByName | tenant, account, name | mailbox (u64 BE) |
//! | Subscriptions | tenant, account, name | empty |
//! | Messages | tenant, mailbox, uid (u32) | `MessageRecord` |
//! | Changes | tenant, mailbox, modseq, uid | `Change` |
//! | BlobMeta | tenant, sha256 | `BlobMetaRecord` |
//! | BlobData | tenant, sha256 | raw message bytes |
//! | BlobRefs | tenant, sha256 | refcount (u64 BE) |
//! | Dedup | request id | `DedupRecord` |
//! | DedupByTime | time (order-preserving u64), request id | empty |
//!
//! The dedup tables are the only global (not tenant-first) ones: a request id is unique per
//! front-end process, not per tenant, and the record remembers the principal it was used for.

use crate::command::RequestId;
use crate::types::{AccountId, MailboxId, TenantId, Uid};

/// Meta key: the next id to hand out (tenants, accounts and mailboxes share one counter).
pub const META_NEXT_ID: &[u8] = b"next_id";
/// Meta key: the last UIDVALIDITY handed out, so a recreated mailbox always gets a larger one
/// even if the clock went backwards (RFC 3501 §2.3.1.1).
pub const META_LAST_UIDVALIDITY: &[u8] = b"last_uidvalidity";
/// Meta key of states written before key rotation existed: the raw bytes of the one session
/// key, read as key id 0. `Init` no longer writes it and the first rotation deletes it.
pub const META_SESSION_KEY: &[u8] = b"session_key";
/// Meta key: the session keys (`SessionKeysRecord`): the one that signs tokens and the one the
/// last rotation replaced.
pub const META_SESSION_KEYS: &[u8] = b"session_keys";
/// Meta key: every `DedupByTime` row has a time at or after this one ([`dedup_time`] encoding),
/// so the purge starts its scan here instead of stepping over the deleted rows before it.
pub const META_DEDUP_FLOOR: &[u8] = b"dedup_floor";

/// Meta key: the cluster's feature level, the version of the apply rules in force
/// ([`crate::feature`]); absent means [`crate::feature::BASE_FEATURE_LEVEL`].
pub const META_FEATURE_LEVEL: &[u8] = b"feature_level";

/// Meta key prefix of the deletion records of accounts whose mail is not purged yet, followed by
/// (tenant, account). In Meta rather than a table of their own: there are few at any time, and a
/// new table would be a new column family in every store and snapshot.
pub const META_DELETED_ACCOUNT: &[u8] = b"deleted_account/";

/// A half-open key range `[start, end)`; `end = None` means "to the end of the table".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// First key included.
    pub start: Vec<u8>,
    /// First key excluded.
    pub end: Option<Vec<u8>>,
}

/// The smallest key greater than every key starting with `prefix`, or `None` when no such key
/// exists (the prefix is empty or all `0xFF`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// All keys starting with `prefix`.
pub fn prefix_range(prefix: Vec<u8>) -> KeyRange {
    let end = prefix_end(&prefix);
    KeyRange { start: prefix, end }
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn u64_at(key: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn u32_at(key: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = key.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Encodes an id stored as an index value (TenantByDomain, AccountByLogin, MailboxByName).
pub fn id_value(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// Decodes an index value written by [`id_value`].
pub fn decode_id_value(value: &[u8]) -> Option<u64> {
    (value.len() == 8).then(|| u64_at(value, 0)).flatten()
}

/// Every key of one tenant in any tenant-scoped table.
pub fn tenant_prefix(tenant: TenantId) -> Vec<u8> {
    tenant.to_be_bytes().to_vec()
}

/// Tenants: the tenant record.
pub fn tenant(tenant: TenantId) -> Vec<u8> {
    tenant_prefix(tenant)
}

/// TenantByDomain: domain → tenant id. The domain is the whole key (it is the lookup).
pub fn tenant_by_domain(domain: &str) -> Vec<u8> {
    domain.as_bytes().to_vec()
}

/// Accounts: one account record.
pub fn account(tenant: TenantId, account: AccountId) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), &account.to_be_bytes()])
}

/// AccountByLogin: (tenant, login) → account id.
pub fn account_by_login(tenant: TenantId, login: &str) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), login.as_bytes()])
}

/// Meta: the deletion record of an account whose mail is not purged yet.
pub fn deleted_account(tenant: TenantId, account: AccountId) -> Vec<u8> {
    key(&[META_DELETED_ACCOUNT, &tenant.to_be_bytes(), &account.to_be_bytes()])
}

/// Meta: every deletion record.
pub fn deleted_accounts() -> KeyRange {
    prefix_range(META_DELETED_ACCOUNT.to_vec())
}

/// Mailboxes: one mailbox record.
pub fn mailbox(tenant: TenantId, account: AccountId, mailbox: MailboxId) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), &account.to_be_bytes(), &mailbox.to_be_bytes()])
}

/// Mailboxes and MailboxByName and Subscriptions: every row of one account.
pub fn account_prefix(tenant: TenantId, account: AccountId) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), &account.to_be_bytes()])
}

/// Mailbox id of a Mailboxes key.
pub fn mailbox_id_of(key: &[u8]) -> Option<MailboxId> {
    (key.len() == 24).then(|| u64_at(key, 16)).flatten()
}

/// MailboxByName: (tenant, account, name) → mailbox id. Also the Subscriptions key.
pub fn mailbox_by_name(tenant: TenantId, account: AccountId, name: &str) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), &account.to_be_bytes(), name.as_bytes()])
}

/// Subscriptions: (tenant, account, name) → ().
pub fn subscription(tenant: TenantId, account: AccountId, name: &str) -> Vec<u8> {
    mailbox_by_name(tenant, account, name)
}

/// Name part of a MailboxByName or Subscriptions key.
pub fn name_of(key: &[u8]) -> Option<String> {
    String::from_utf8(key.get(16..)?.to_vec()).ok()
}

/// Messages: one message of a mailbox.
pub fn message(tenant: TenantId, mailbox: MailboxId, uid: Uid) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), &mailbox.to_be_bytes(), &uid.to_be_bytes()])
}

/// Messages and Changes: every row of one mailbox.
pub fn mailbox_prefix(tenant: TenantId, mailbox: MailboxId) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), &mailbox.to_be_bytes()])
}

/// Messages with `first <= uid <= last`.
pub fn message_range(tenant: TenantId, mailbox: MailboxId, first: Uid, last: Uid) -> KeyRange {
    let start = message(tenant, mailbox, first);
    let end = match last.checked_add(1) {
        Some(next) => Some(message(tenant, mailbox, next)),
        None => prefix_end(&mailbox_prefix(tenant, mailbox)),
    };
    KeyRange { start, end }
}

/// UID of a Messages key.
pub fn uid_of(key: &[u8]) -> Option<Uid> {
    (key.len() == 20).then(|| u32_at(key, 16)).flatten()
}

/// Changes: what happened to `uid` at `modseq`.
pub fn change(tenant: TenantId, mailbox: MailboxId, modseq: u64, uid: Uid) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), &mailbox.to_be_bytes(), &modseq.to_be_bytes(), &uid.to_be_bytes()])
}

/// Changes with a modseq strictly greater than `since`.
pub fn changes_after(tenant: TenantId, mailbox: MailboxId, since: u64) -> KeyRange {
    let end = prefix_end(&mailbox_prefix(tenant, mailbox));
    let start = match since.checked_add(1) {
        Some(first) => key(&[&mailbox_prefix(tenant, mailbox), &first.to_be_bytes()]),
        // Nothing is newer than u64::MAX: an empty range.
        None => end.clone().unwrap_or_default(),
    };
    KeyRange { start, end }
}

/// (modseq, uid) of a Changes key.
pub fn change_of(key: &[u8]) -> Option<(u64, Uid)> {
    if key.len() != 28 {
        return None;
    }
    Some((u64_at(key, 16)?, u32_at(key, 24)?))
}

/// BlobMeta, BlobData and BlobRefs: a blob of a tenant, addressed by the SHA-256 of its bytes.
pub fn blob(tenant: TenantId, hash: &[u8; 32]) -> Vec<u8> {
    key(&[&tenant.to_be_bytes(), hash])
}

/// Dedup: the record of one request id.
pub fn dedup(id: &RequestId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// A unix-millisecond time as 8 bytes that sort like the signed value (sign bit flipped).
pub fn dedup_time(at_ms: i64) -> [u8; 8] {
    ((at_ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// Decodes [`dedup_time`].
pub fn decode_dedup_time(bytes: &[u8]) -> Option<i64> {
    Some((u64_at(bytes, 0)? ^ (1 << 63)) as i64)
}

/// DedupByTime: the index row of `id`, recorded at `at_ms`.
pub fn dedup_by_time(at_ms: i64, id: &RequestId) -> Vec<u8> {
    key(&[&dedup_time(at_ms), id.as_bytes()])
}

/// DedupByTime rows with a time in `[from_ms, before_ms)`.
pub fn dedup_by_time_range(from_ms: i64, before_ms: i64) -> KeyRange {
    KeyRange { start: dedup_time(from_ms).to_vec(), end: Some(dedup_time(before_ms).to_vec()) }
}

/// (time, request id) of a DedupByTime key.
pub fn dedup_by_time_of(key: &[u8]) -> Option<(i64, RequestId)> {
    let at = decode_dedup_time(key.get(..8)?)?;
    let id = RequestId::new(key.get(8..)?.to_vec()).ok()?;
    Some((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_sort_numerically() {
        assert!(message(1, 2, 9) < message(1, 2, 10));
        assert!(message(1, 2, 255) < message(1, 2, 256));
        assert!(message(1, 2, u32::MAX) < message(1, 3, 0));
        assert!(message(1, u64::MAX, 0) < message(2, 0, 0));
        assert!(change(1, 2, 9, 100) < change(1, 2, 10, 1));
    }

    #[test]
    fn decoders_invert_encoders() {
        assert_eq!(uid_of(&message(7, 8, 42)), Some(42));
        assert_eq!(change_of(&change(7, 8, 1 << 40, 3)), Some((1 << 40, 3)));
        assert_eq!(mailbox_id_of(&mailbox(1, 2, 3)), Some(3));
        assert_eq!(name_of(&mailbox_by_name(1, 2, "a/b")).as_deref(), Some("a/b"));
        assert_eq!(decode_id_value(&id_value(99)), Some(99));
        assert_eq!(uid_of(b"short"), None);
    }

    #[test]
    fn dedup_times_sort_like_signed_integers() {
        let rid = |b: &[u8]| RequestId::new(b.to_vec()).expect("valid id");
        let id = rid(&[0xFF; 3]);
        let times = [i64::MIN, -1_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in times.windows(2) {
            assert!(dedup_time(w[0]) < dedup_time(w[1]), "{} < {}", w[0], w[1]);
            assert!(dedup_by_time(w[0], &id) < dedup_by_time(w[1], &rid(&[0])));
        }
        for t in times {
            assert_eq!(decode_dedup_time(&dedup_time(t)), Some(t));
            assert_eq!(dedup_by_time_of(&dedup_by_time(t, &id)), Some((t, id.clone())));
        }
        assert_eq!(dedup_by_time_of(&dedup_time(5)), None, "an index row always names an id");
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(&[1, 2, 0xFF]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        let r = message_range(1, 2, 5, u32::MAX);
        assert_eq!(r.end, prefix_end(&mailbox_prefix(1, 2)));
        let r = changes_after(1, 2, 4);
        assert_eq!(r.start, key(&[&mailbox_prefix(1, 2), &5u64.to_be_bytes()]));
        assert!(change(1, 2, 4, u32::MAX) < r.start);
        let r = changes_after(1, 2, u64::MAX);
        assert_eq!(Some(r.start), r.end);
    }

    #[test]
    fn inferiors_are_a_prefix_range() {
        let r = prefix_range(mailbox_by_name(1, 2, "a/"));
        let inside = mailbox_by_name(1, 2, "a/b");
        let outside = mailbox_by_name(1, 2, "ab");
        let end = r.end.clone().unwrap_or_default();
        assert!(r.start <= inside && inside < end);
        assert!(!(r.start <= outside && outside < end));
    }
}
