//! The values stored in the tables, and their on-disk encoding.
//!
//! Each record is written as postcard of a versioned enum (`TenantRecord::V1(Tenant)` …): the
//! leading variant index is the format version, so a later `V2` can be added and old rows still
//! decode (then upgraded on read or by a migration). Only [`Record::encode`] and
//! [`Record::decode`] know the wrappers; the rest of the crate works with the plain structs.
//! [`Change`] is an enum already, so its variant index plays the same role.

use std::collections::BTreeSet;

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
    pub keywords: BTreeSet<String>,
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
    /// Message records of the tenant pointing at this blob; the blob is deleted at 0.
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
versioned!(Account, AccountRecord, AccountRecordRef);
versioned!(Mailbox, MailboxRecord, MailboxRecordRef);
versioned!(MessageMeta, MessageRecord, MessageRecordRef);
versioned!(BlobMeta, BlobMetaRecord, BlobMetaRecordRef);
versioned!(DedupEntry, DedupRecord, DedupRecordRef);

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
        let bytes = m.encode();
        assert_eq!(bytes[0], 0, "V1 tag first");
        assert_eq!(MessageMeta::decode(&bytes), Ok(m.clone()));
        assert_eq!(postcard::to_stdvec(&MessageRecord::V1(m)).ok(), Some(bytes));
        assert!(matches!(MessageMeta::decode(&[7, 1]), Err(ModelError::Corrupt(_))));
        assert_eq!(Change::decode(&Change::Expunged.encode()), Ok(Change::Expunged));
    }
}
