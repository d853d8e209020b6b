//! The values stored in the tables, and their on-disk encoding.
//!
//! Each record is written as postcard of a versioned enum (`TenantRecord::V1(Tenant)` …): the
//! leading variant index is the format version, so a later `V2` can be added and old rows still
//! decode (then upgraded on read or by a migration). Only [`Record::encode`] and
//! [`Record::decode`] know the wrappers; the rest of the crate works with the plain structs.
//! [`Change`] is an enum already, so its variant index plays the same role.

use serde::{Deserialize, Serialize};

use crate::command::{ModelError, Principal, Reply};
use crate::types::{AccountId, Flag, MailboxId, TenantId, Uid};

/// A customer domain. Every key of its data starts with `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Tenant id.
    pub id: TenantId,
    /// Lowercase domain, unique.
    pub domain: String,
    /// Limit on `used_bytes`; `None` = unlimited.
    pub quota_bytes: Option<u64>,
    /// Sum of message sizes over all mailboxes of all accounts, counted per message (a blob
    /// shared by two messages counts twice: that is what users see).
    pub used_bytes: u64,
}

/// A user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account id.
    pub id: AccountId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// Lowercase local part, unique within the tenant.
    pub login: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Limit on `used_bytes`; `None` = unlimited.
    pub quota_bytes: Option<u64>,
    /// Sum of message sizes over the account's mailboxes, per message.
    pub used_bytes: u64,
    /// Credential generation: raised by every change that must end the account's sessions (a new
    /// password, disabling). A session token carries the generation it was issued at and is
    /// refused once it differs, so a revocation needs no list of issued tokens.
    pub generation: u64,
    /// A disabled account cannot log in and its sessions are refused; its mail is kept.
    pub disabled: bool,
}

/// [`Account`] as record version 1 stored it, before credential generations: it decodes as
/// generation 0, enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountV1 {
    /// Account id.
    pub id: AccountId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// Lowercase local part.
    pub login: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Limit on `used_bytes`.
    pub quota_bytes: Option<u64>,
    /// Sum of message sizes.
    pub used_bytes: u64,
}

impl From<AccountV1> for Account {
    fn from(v: AccountV1) -> Self {
        let AccountV1 { id, tenant, login, password_hash, quota_bytes, used_bytes } = v;
        Account { id, tenant, login, password_hash, quota_bytes, used_bytes, generation: 0, disabled: false }
    }
}

/// Key material that signs session tokens. Never logged: `Debug` shows only the id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKey {
    /// Carried in every token signed with this key, so a verifier picks the right one.
    pub id: u32,
    /// HMAC-SHA256 key bytes.
    #[serde(with = "serde_bytes")]
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({}, <redacted>)", self.id)
    }
}

/// A key replaced by a rotation: it still verifies (never signs) until `valid_until_ms`, so
/// sessions signed with it live on until their front-ends have refreshed their tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKey {
    /// The old key.
    pub key: SessionKey,
    /// Unix milliseconds (the rotating request's `now_ms` plus the grace period) from which
    /// tokens signed with it are refused.
    pub valid_until_ms: i64,
}

/// The session keys of the cluster: the one that signs, and the one a rotation replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKeys {
    /// Signs every new token.
    pub current: SessionKey,
    /// Verifies the tokens signed before the last rotation, until its grace period ends.
    pub previous: Option<RetiredKey>,
}

impl SessionKeys {
    /// The key with `id` that may verify a token at `now_ms`: the current one, or the previous
    /// one within its grace period.
    pub fn verifying(&self, id: u32, now_ms: i64) -> Option<&SessionKey> {
        if self.current.id == id {
            return Some(&self.current);
        }
        self.previous.as_ref().filter(|p| p.key.id == id && now_ms < p.valid_until_ms).map(|p| &p.key)
    }
}

/// What is left of a deleted account until its mail is purged: the tombstone of
/// `Command::DeleteAccount`, removed by the `PurgeAccount` step that finds nothing left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedAccount {
    /// Tenant of the account.
    pub tenant: TenantId,
    /// The deleted account's id.
    pub account: AccountId,
    /// Its login, so an operator can resume the purge by name.
    pub login: String,
    /// When it was deleted (the request's clock, unix milliseconds).
    pub deleted_ms: i64,
    /// Where the purge stopped inside a mailbox, so the next step starts there instead of stepping
    /// over the deletion markers (RocksDB tombstones) of every row removed before; `None` between
    /// mailboxes.
    pub cursor: Option<PurgeCursor>,
}

/// The last rows a purge step removed from the mailbox it was working on. Nothing can add rows
/// before them: the account's mail no longer changes except by the purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeCursor {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// UID of the last message removed, if any.
    pub last_uid: Option<Uid>,
    /// (modseq, uid) of the last change-log entry removed, if any.
    pub last_change: Option<(u64, Uid)>,
}

/// A mailbox header: everything SELECT and STATUS report without reading messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// Stable id; kept by RENAME, new after DELETE + CREATE.
    pub id: MailboxId,
    /// Full "/"-separated name; "INBOX" is always spelled so.
    pub name: String,
    /// RFC 3501 §2.3.1.1; never changes while the mailbox lives.
    pub uidvalidity: u32,
    /// UID the next message will get; never goes down.
    pub uidnext: Uid,
    /// RFC 7162 HIGHESTMODSEQ; starts at 1, +1 per command that changes messages.
    pub highest_modseq: u64,
    /// Number of messages.
    pub exists: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Messages with `\Deleted`.
    pub deleted: u32,
    /// Sum of message sizes (RFC 8438 STATUS SIZE).
    pub size: u64,
    /// RFC 6154 attribute without backslash ("Sent", "Trash", …).
    pub special_use: Option<String>,
    /// Keywords ever set in this mailbox (FLAGS / PERMANENTFLAGS), unique case-insensitively.
    /// Up to feature level 1 kept sorted (record version 1 stored a set); from level 2 on in the
    /// order of first use, only ever appended to: a version 2 message record names its keywords
    /// by their index here ([`crate::message_record`]).
    pub keywords: Vec<String>,
    /// Oldest modseq `changes` can still answer exactly from the change log; a client that
    /// last synced before it must resynchronise fully.
    pub changelog_floor: u64,
}

/// One message of a mailbox. The bytes and the MIME structure live in the blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// UID within the mailbox.
    pub uid: Uid,
    /// Sorted and deduplicated case-insensitively (see [`crate::flags::normalize`]).
    pub flags: Vec<Flag>,
    /// RFC 7162 MODSEQ of the last change to this message.
    pub modseq: u64,
    /// RFC 3501 INTERNALDATE, unix seconds.
    pub internal_date: i64,
    /// Zone INTERNALDATE is shown in, minutes east of UTC.
    pub tz_offset_minutes: i32,
    /// RFC 8514 SAVEDATE, unix seconds: when it was put into this mailbox.
    pub save_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// SHA-256 of the bytes: the blob key.
    pub blob: [u8; 32],
}

/// Bookkeeping of one stored message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// Message records of the tenant pointing at this blob when the blob was stored. The live
    /// count is the blob's `BlobRefs` row (`query::blob_refcount`); this field is read only for a
    /// blob stored before that table existed, which has no row until its count first changes.
    pub refcount: u64,
    /// Length of the bytes.
    pub size: u64,
    /// postcard-encoded `mailraft_mime::MessageInfo`, computed once at first append.
    #[serde(with = "serde_bytes")]
    pub structure: Vec<u8>,
}

/// What a request with an id got, kept for [`crate::DEDUP_WINDOW_MS`] so a retry is answered
/// with it instead of being applied again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    /// When it was recorded (the request's `now_ms`, or the purge floor if the clock was behind
    /// it); the time of its `DedupByTime` row.
    pub at_ms: i64,
    /// [`crate::Command::name`] of the request: a reused id with another command is refused.
    pub command: String,
    /// [`crate::Command::principal`] of the request: an id never answers another account.
    pub who: Option<Principal>,
    /// The reply, success or error, exactly as the first application returned it.
    pub reply: Reply,
}

/// A change-log entry at `(tenant, mailbox, modseq, uid)`. Each UID has at most one live
/// entry: the one at the message's current modseq (`Added` or `Flags`) or, once expunged,
/// `Expunged`. Older entries of the UID are deleted when superseded, so the log stays as large
/// as the mailbox plus its expunges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Appended, copied or moved in.
    Added,
    /// Flags changed.
    Flags,
    /// Removed (RFC 7162 VANISHED).
    Expunged,
}

/// A value with a versioned on-disk encoding.
pub trait Record: Sized {
    /// postcard bytes of the current version.
    fn encode(&self) -> Vec<u8>;
    /// Decodes any supported version; `Corrupt` otherwise.
    fn decode(bytes: &[u8]) -> Result<Self, ModelError>;
    /// The bytes the apply writes under feature `level` ([`crate::feature`]): a record whose
    /// newer version older binaries cannot read is written in its old version until the
    /// cluster's level says every binary can.
    fn encode_at(&self, _level: u32) -> Vec<u8> {
        self.encode()
    }
}

macro_rules! versioned {
    ($ty:ident, $owned:ident, $borrowed:ident) => {
        /// On-disk versions of the record; the variant index is the version tag.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $owned {
            /// First version.
            V1($ty),
        }

        // Serialises exactly like `$owned` without cloning the record.
        #[derive(Serialize)]
        enum $borrowed<'a> {
            V1(&'a $ty),
        }

        impl Record for $ty {
            fn encode(&self) -> Vec<u8> {
                // Serialising plain structs into a Vec cannot fail.
                postcard::to_stdvec(&$borrowed::V1(self)).unwrap_or_default()
            }

            fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
                match postcard::from_bytes::<$owned>(bytes) {
                    Ok($owned::V1(v)) => Ok(v),
                    Err(e) => Err(ModelError::Corrupt(format!("{}: {e}", stringify!($ty)))),
                }
            }
        }
    };
}

versioned!(Tenant, TenantRecord, TenantRecordRef);
versioned!(BlobMeta, BlobMetaRecord, BlobMetaRecordRef);
versioned!(DedupEntry, DedupRecord, DedupRecordRef);
versioned!(SessionKeys, SessionKeysRecord, SessionKeysRecordRef);
versioned!(DeletedAccount, DeletedAccountRecord, DeletedAccountRecordRef);

/// On-disk versions of [`Account`]; the variant index is the version tag. V2 added the
/// credential generation and the disabled flag; V1 rows (written before) still decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountRecord {
    /// Before credential generations.
    V1(AccountV1),
    /// Current.
    V2(Account),
}

#[derive(Serialize)]
enum AccountRecordRef<'a> {
    #[allow(dead_code)] // Never written again: only its variant index matters here.
    V1(&'a AccountV1),
    V2(&'a Account),
}

impl Record for Account {
    fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(&AccountRecordRef::V2(self)).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        match postcard::from_bytes::<AccountRecord>(bytes) {
            Ok(AccountRecord::V1(v)) => Ok(v.into()),
            Ok(AccountRecord::V2(v)) => Ok(v),
            Err(e) => Err(ModelError::Corrupt(format!("Account: {e}"))),
        }
    }
}

/// On-disk versions of [`Mailbox`]; the variant index is the version tag. Both carry the same
/// fields (a keyword set and a list encode alike); V2 (feature level 2) says the keyword list is
/// in order of first use, which version 2 message records index into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailboxRecord {
    /// Keywords sorted (a `BTreeSet` when it was written).
    V1(Mailbox),
    /// Keywords in order of first use.
    V2(Mailbox),
}

#[derive(Serialize)]
enum MailboxRecordRef<'a> {
    V1(&'a Mailbox),
    V2(&'a Mailbox),
}

impl Record for Mailbox {
    fn encode(&self) -> Vec<u8> {
        self.encode_at(crate::feature::KNOWN_FEATURE_LEVEL)
    }

    fn encode_at(&self, level: u32) -> Vec<u8> {
        // Serialising plain structs into a Vec cannot fail.
        if level >= crate::feature::LEVEL_KEYWORD_INDEX {
            return postcard::to_stdvec(&MailboxRecordRef::V2(self)).unwrap_or_default();
        }
        if self.keywords.is_sorted() {
            postcard::to_stdvec(&MailboxRecordRef::V1(self)).unwrap_or_default()
        } else {
            // Level 1 keeps the list sorted (`Keywords::add`); this only guards the V1 promise.
            let mut sorted = self.clone();
            sorted.keywords.sort();
            postcard::to_stdvec(&MailboxRecordRef::V1(&sorted)).unwrap_or_default()
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        match postcard::from_bytes::<MailboxRecord>(bytes) {
            Ok(MailboxRecord::V1(v) | MailboxRecord::V2(v)) => Ok(v),
            Err(e) => Err(ModelError::Corrupt(format!("Mailbox: {e}"))),
        }
    }
}

impl Record for Change {
    fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        postcard::from_bytes(bytes).map_err(|e| ModelError::Corrupt(format!("Change: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_a_version_tag() {
        let m = MessageMeta {
            uid: 7,
            flags: vec![Flag::Seen, Flag::Keyword("$x".into())],
            modseq: 3,
            internal_date: -5,
            tz_offset_minutes: 120,
            save_date: 10,
            size: 99,
            blob: [9; 32],
        };
        let bytes = m.encode_v1();
        assert_eq!(bytes[0], 0, "V1 tag first");
        assert_eq!(MessageMeta::decode_in(&bytes, &[]), Ok(m.clone()));
        assert_eq!(Change::decode(&Change::Expunged.encode()), Ok(Change::Expunged));
    }

    /// The mailbox as the releases before feature level 2 stored it.
    #[derive(Serialize, Deserialize)]
    struct OldMailbox {
        id: MailboxId,
        name: String,
        uidvalidity: u32,
        uidnext: Uid,
        highest_modseq: u64,
        exists: u32,
        unseen: u32,
        deleted: u32,
        size: u64,
        special_use: Option<String>,
        keywords: std::collections::BTreeSet<String>,
        changelog_floor: u64,
    }

    #[derive(Serialize)]
    enum OldMailboxRecord {
        V1(OldMailbox),
    }

    #[test]
    fn mailboxes_keep_the_old_bytes_at_level_1_and_their_keyword_order_from_level_2() {
        let mb = |keywords: &[&str]| Mailbox {
            id: 4,
            name: "Work".into(),
            uidvalidity: 9,
            uidnext: 12,
            highest_modseq: 30,
            exists: 11,
            unseen: 2,
            deleted: 1,
            size: 500,
            special_use: Some("Sent".into()),
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            changelog_floor: 0,
        };
        let sorted = mb(&["$a", "b", "c"]);
        // The old struct, field by field from the new one, its keywords a set built out of order.
        let Mailbox { id, name, uidvalidity, uidnext, highest_modseq, exists, unseen, deleted, size, special_use, .. } =
            sorted.clone();
        let keywords = ["c", "$a", "b"].iter().map(|k| k.to_string()).collect();
        let old = OldMailbox {
            id,
            name,
            uidvalidity,
            uidnext,
            highest_modseq,
            exists,
            unseen,
            deleted,
            size,
            special_use,
            keywords,
            changelog_floor: sorted.changelog_floor,
        };
        let old_bytes = postcard::to_stdvec(&OldMailboxRecord::V1(old)).unwrap_or_default();
        assert_eq!(sorted.encode_at(1), old_bytes, "an old binary reads what level 1 writes");
        assert_eq!(Mailbox::decode(&old_bytes), Ok(sorted.clone()), "old rows decode sorted");
        let used = mb(&["c", "$a", "b"]);
        assert_eq!(used.encode_at(1), old_bytes, "level 1 never writes an unsorted list");
        let v2 = used.encode_at(2);
        assert_eq!(v2[0], 1, "V2 tag");
        assert_eq!(Mailbox::decode(&v2), Ok(used), "order of first use kept");
    }

    #[test]
    fn version_1_accounts_decode_as_generation_0() {
        let old = AccountV1 {
            id: 3,
            tenant: 1,
            login: "bob".into(),
            password_hash: "$argon2id$h".into(),
            quota_bytes: Some(5),
            used_bytes: 2,
        };
        let bytes = postcard::to_stdvec(&AccountRecord::V1(old.clone())).unwrap_or_default();
        assert_eq!(bytes[0], 0, "V1 tag");
        let account = Account::decode(&bytes).expect("decodes");
        assert_eq!((account.generation, account.disabled), (0, false));
        assert_eq!(account, Account::from(old));
        let again = account.encode();
        assert_eq!(again[0], 1, "written back as V2");
        assert_eq!(Account::decode(&again), Ok(account));
    }

    #[test]
    fn only_the_current_key_or_a_previous_one_in_grace_verifies() {
        let key = |id| SessionKey { id, secret: vec![id as u8; 4] };
        let keys = SessionKeys { current: key(2), previous: Some(RetiredKey { key: key(1), valid_until_ms: 100 }) };
        assert_eq!(keys.verifying(2, i64::MAX).map(|k| k.id), Some(2));
        assert_eq!(keys.verifying(1, 99).map(|k| k.id), Some(1));
        assert_eq!(keys.verifying(1, 100), None, "grace over");
        assert_eq!(keys.verifying(3, 0), None);
        assert!(!format!("{keys:?}").contains("[2, 2"), "secrets are not in Debug output");
    }
}
