//! Replicated commands and their results.
//!
//! A [`Request`] is what one Raft entry carries. Everything non-deterministic (the clock, random
//! session keys, password hashes, MIME analysis) is computed by the proposer and carried in the
//! request, so every replica's `apply` produces the same writes and the same [`Reply`].

use serde::{Deserialize, Serialize};

use crate::types::{AccountId, Flag, MailboxId, TenantId, Uid, UidSet};

/// One replicated write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Proposer's wall clock, unix milliseconds. The only clock apply may use (UIDVALIDITY,
    /// SAVEDATE, default INTERNALDATE, the dedup window).
    pub now_ms: i64,
    /// Idempotency key chosen by the caller and reused when it retries the same call. A request
    /// whose id was applied within [`crate::DEDUP_WINDOW_MS`] is answered with the reply
    /// recorded then and changes nothing (see `apply/dedup.rs`). `None`: no deduplication.
    pub request_id: Option<RequestId>,
    /// What to do.
    pub command: Command,
}

impl Request {
    /// A request without an idempotency key.
    pub fn new(now_ms: i64, command: Command) -> Self {
        Request { now_ms, request_id: None, command }
    }
}

/// An idempotency key: an opaque byte string of 1 to [`RequestId::MAX_LEN`] bytes. The
/// front-end uses 16 random bytes per process followed by a counter, so ids never repeat across
/// front-ends or restarts. Validated on construction and on decoding (a log entry cannot carry
/// an out-of-range id).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<u8>", into = "Vec<u8>")]
pub struct RequestId(Vec<u8>);

/// A request id of the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request id must be 1 to {max} bytes, got {len}", max = RequestId::MAX_LEN)]
pub struct InvalidRequestId {
    /// The length that was given.
    pub len: usize,
}

impl RequestId {
    /// Longest id accepted: bounds the dedup table's keys.
    pub const MAX_LEN: usize = 64;

    /// Checks the length (1 to [`RequestId::MAX_LEN`] bytes).
    pub fn new(bytes: Vec<u8>) -> Result<Self, InvalidRequestId> {
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return Err(InvalidRequestId { len: bytes.len() });
        }
        Ok(RequestId(bytes))
    }

    /// The wire form (protobuf `bytes`): empty means "no id".
    pub fn from_wire(bytes: Vec<u8>) -> Result<Option<Self>, InvalidRequestId> {
        if bytes.is_empty() { Ok(None) } else { Self::new(bytes).map(Some) }
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<Vec<u8>> for RequestId {
    type Error = InvalidRequestId;
    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        RequestId::new(bytes)
    }
}

impl From<RequestId> for Vec<u8> {
    fn from(id: RequestId) -> Vec<u8> {
        id.0
    }
}

impl std::fmt::Debug for RequestId {
    // Hex: ids are binary, and logs should show them compactly.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({})", hex::encode(&self.0))
    }
}

/// Secret key bytes in a command (`Init`, `RotateSessionKey`). Encoded exactly like a plain
/// byte vector, so log entries written before the type existed still decode; `Debug` hides the
/// bytes, so a logged entry or request never shows a key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretBytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} secret bytes>", self.0.len())
    }
}

/// Which account a mailbox command acts for; checked against the session token before proposing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// Tenant (domain) the account lives in.
    pub tenant: TenantId,
    /// The account.
    pub account: AccountId,
}

/// How STORE combines the given flags with the current ones (RFC 3501 §6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreOp {
    /// `FLAGS`
    Replace,
    /// `+FLAGS`
    Add,
    /// `-FLAGS`
    Remove,
}

/// A message to append, prepared by the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Raw RFC 5322 bytes. Serialized as one byte string (the same postcard bytes as a
    /// sequence, but copied at once: a 20 MiB body encodes in milliseconds, not hundreds).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Initial flags (`\Recent` is never stored).
    pub flags: Vec<Flag>,
    /// INTERNALDATE, unix seconds; `None` = `now_ms`.
    pub internal_date: Option<i64>,
    /// Zone the INTERNALDATE was given in, minutes east of UTC.
    pub tz_offset_minutes: i32,
    /// postcard-encoded `mailraft_mime::MessageInfo`, computed once by the proposer.
    #[serde(with = "serde_bytes")]
    pub structure: Vec<u8>,
}

/// Every replicated write the mail store knows. New variants go at the end: the variant index
/// is what log entries and dedup records store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// First entry of a new cluster: installs the key that signs session tokens. Ignored when a
    /// key already exists.
    Init {
        /// Random bytes from the proposer.
        session_key: SecretBytes,
    },
    /// Creates a tenant for a domain (lowercased by the proposer).
    CreateTenant {
        /// e.g. "example.test"
        domain: String,
    },
    /// Creates an account with an INBOX.
    CreateAccount {
        /// Tenant domain.
        domain: String,
        /// Local part (lowercased by the proposer).
        login: String,
        /// argon2 PHC string; never a plaintext password.
        password_hash: String,
    },
    /// Replaces an account's password hash.
    SetPassword {
        /// Tenant domain.
        domain: String,
        /// Local part.
        login: String,
        /// argon2 PHC string.
        password_hash: String,
    },
    /// RFC 3501 §6.3.3; creates missing parents too.
    CreateMailbox {
        /// Acting account.
        who: Principal,
        /// Full UTF-8 name, "/"-separated.
        name: String,
        /// RFC 6154 attribute without backslash, e.g. "Sent".
        special_use: Option<String>,
    },
    /// RFC 3501 §6.3.4.
    DeleteMailbox {
        /// Acting account.
        who: Principal,
        /// Name.
        name: String,
    },
    /// RFC 3501 §6.3.5, including inferiors and the INBOX rule.
    RenameMailbox {
        /// Acting account.
        who: Principal,
        /// Existing name.
        from: String,
        /// New name.
        to: String,
    },
    /// RFC 3501 §6.3.6 / §6.3.7.
    Subscribe {
        /// Acting account.
        who: Principal,
        /// Name (need not exist when unsubscribing).
        name: String,
        /// Subscribe (true) or unsubscribe.
        subscribe: bool,
    },
    /// RFC 3501 §6.3.11; several messages in one entry share one fsync.
    Append {
        /// Acting account.
        who: Principal,
        /// Target mailbox name.
        mailbox: String,
        /// Messages, in order; UIDs are assigned in this order.
        messages: Vec<NewMessage>,
    },
    /// RFC 3501 §6.4.6 with RFC 7162 §3.1.3 UNCHANGEDSINCE.
    Store {
        /// Acting account.
        who: Principal,
        /// Selected mailbox.
        mailbox: MailboxId,
        /// UIDVALIDITY the session selected.
        uidvalidity: u32,
        /// Messages.
        uids: UidSet,
        /// How to combine.
        op: StoreOp,
        /// Flags.
        flags: Vec<Flag>,
        /// 0 = unconditional.
        unchanged_since: u64,
    },
    /// RFC 3501 §6.4.3 / RFC 4315 UID EXPUNGE: removes messages that have `\Deleted`.
    Expunge {
        /// Acting account.
        who: Principal,
        /// Selected mailbox.
        mailbox: MailboxId,
        /// UIDVALIDITY the session selected.
        uidvalidity: u32,
        /// Restrict to these UIDs (UID EXPUNGE); `None` = all `\Deleted`.
        uids: Option<UidSet>,
    },
    /// RFC 3501 §6.4.7 COPY, or RFC 6851 MOVE when `is_move`. Blobs are shared, never copied.
    Copy {
        /// Acting account.
        who: Principal,
        /// Source mailbox.
        mailbox: MailboxId,
        /// UIDVALIDITY the session selected.
        uidvalidity: u32,
        /// Source messages.
        uids: UidSet,
        /// Destination mailbox name.
        destination: String,
        /// Expunge the sources in the same entry.
        is_move: bool,
    },
    /// Makes `session_key` the key that signs session tokens. The replaced key keeps verifying
    /// tokens until `now_ms + grace_ms` (a key replaced earlier is dropped at once), so sessions
    /// survive while their front-ends refresh their tokens.
    RotateSessionKey {
        /// Random bytes from the proposer.
        session_key: SecretBytes,
        /// How long the replaced key still verifies, milliseconds (0: not at all).
        grace_ms: i64,
    },
    /// Disables an account (it cannot log in, and its sessions end) or enables it again.
    SetAccountDisabled {
        /// Tenant domain.
        domain: String,
        /// Local part.
        login: String,
        /// Disable (true) or enable.
        disabled: bool,
    },
    /// Deletes an account at once: its login and record go (every token of it is refused, the
    /// login can be created again under a new id) and its sessions are told to end. Its mail
    /// stays, under a deletion record, until [`Command::PurgeAccount`] has removed it.
    DeleteAccount {
        /// Tenant domain.
        domain: String,
        /// Local part.
        login: String,
    },
    /// Removes up to `max_rows` rows of a deleted account's mail (messages, change-log entries,
    /// mailboxes, subscriptions), oldest mailbox first; the call that finds nothing left also
    /// drops the deletion record. Bounded so no single apply stalls the other tenants.
    PurgeAccount {
        /// Tenant of the deleted account.
        tenant: TenantId,
        /// The deleted account's id.
        account: AccountId,
        /// 1 to [`crate::limits::MAX_MESSAGES_PER_COMMAND`].
        max_rows: u32,
    },
    /// LMTP delivery (RFC 2033): `body` for every target, all accounts of `tenant`, in one entry.
    /// Each target succeeds or fails on its own ([`Delivery`]); see `apply/deliver.rs`.
    Deliver {
        /// The recipients' tenant.
        tenant: TenantId,
        /// The message as received, once for all targets.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        /// 1 to [`crate::limits::MAX_DELIVERY_RECIPIENTS`] recipients, in order.
        targets: Vec<DeliveryTarget>,
    },
    /// Raises the cluster's feature level, the version of the apply rules every replica uses
    /// from this entry on ([`crate::feature`]). At or below the current level: a no-op (levels
    /// never go down). Above what the applying binary knows: that replica stops with a
    /// [`crate::FatalError`] instead of applying it (`mailraft admin set-feature-level` first
    /// checks that every member knows the level).
    SetFeatureLevel {
        /// The new level.
        level: u32,
    },
}

/// One recipient of a [`Command::Deliver`], resolved by the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTarget {
    /// The account (of the command's tenant).
    pub account: AccountId,
    /// Mailbox name; INBOX is used when it does not exist at apply time.
    pub mailbox: String,
    /// Header lines prepended to the body for this recipient (`Return-Path:`, `Delivered-To:`).
    #[serde(with = "serde_bytes")]
    pub prefix: Vec<u8>,
    /// postcard-encoded `mailraft_mime::MessageInfo` of prefix + body.
    #[serde(with = "serde_bytes")]
    pub structure: Vec<u8>,
}

/// What became of one [`DeliveryTarget`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Stored.
    Delivered {
        /// The mailbox it went into.
        mailbox: MailboxId,
        /// Its UIDVALIDITY.
        uidvalidity: u32,
        /// The new message's UID.
        uid: Uid,
    },
    /// The account no longer exists.
    UnknownAccount,
    /// The account is disabled.
    Disabled,
    /// The account's or the tenant's quota would be exceeded.
    OverQuota,
    /// Refused for another reason.
    Failed(ModelError),
}

impl Command {
    /// Stable short name of the command kind, e.g. for logs and the dedup record.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init { .. } => "init",
            Command::CreateTenant { .. } => "create_tenant",
            Command::CreateAccount { .. } => "create_account",
            Command::SetPassword { .. } => "set_password",
            Command::CreateMailbox { .. } => "create_mailbox",
            Command::DeleteMailbox { .. } => "delete_mailbox",
            Command::RenameMailbox { .. } => "rename_mailbox",
            Command::Subscribe { .. } => "subscribe",
            Command::Append { .. } => "append",
            Command::Store { .. } => "store",
            Command::Expunge { .. } => "expunge",
            Command::Copy { .. } => "copy",
            Command::RotateSessionKey { .. } => "rotate_session_key",
            Command::SetAccountDisabled { .. } => "set_account_disabled",
            Command::DeleteAccount { .. } => "delete_account",
            Command::PurgeAccount { .. } => "purge_account",
            Command::Deliver { .. } => "deliver",
            Command::SetFeatureLevel { .. } => "set_feature_level",
        }
    }

    /// The account a mailbox command acts for; `None` for cluster and admin commands.
    pub fn principal(&self) -> Option<Principal> {
        match self {
            Command::Init { .. }
            | Command::CreateTenant { .. }
            | Command::CreateAccount { .. }
            | Command::SetPassword { .. }
            | Command::RotateSessionKey { .. }
            | Command::SetAccountDisabled { .. }
            | Command::DeleteAccount { .. }
            | Command::PurgeAccount { .. }
            | Command::Deliver { .. }
            | Command::SetFeatureLevel { .. } => None,
            Command::CreateMailbox { who, .. }
            | Command::DeleteMailbox { who, .. }
            | Command::RenameMailbox { who, .. }
            | Command::Subscribe { who, .. }
            | Command::Append { who, .. }
            | Command::Store { who, .. }
            | Command::Expunge { who, .. }
            | Command::Copy { who, .. } => Some(*who),
        }
    }
}

/// Why a command did nothing. Deterministic: every replica returns the same error for the same
/// entry, and the state is unchanged (apart from the dedup record of a request with an id, so a
/// retry gets the same error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ModelError {
    /// The named tenant, account or mailbox does not exist (IMAP `[NONEXISTENT]`).
    #[error("{0} does not exist")]
    NotFound(String),
    /// Creating something that exists (IMAP `[ALREADYEXISTS]`).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The mailbox was deleted or recreated since the session selected it.
    #[error("mailbox uidvalidity changed")]
    UidValidityChanged,
    /// A name or argument the model refuses (IMAP `BAD`/`NO [CANNOT]`).
    #[error("invalid: {0}")]
    Invalid(String),
    /// Operation not allowed on this object, e.g. deleting INBOX (IMAP `[CANNOT]`).
    #[error("not allowed: {0}")]
    Cannot(String),
    /// Quota exceeded (IMAP `[OVERQUOTA]`).
    #[error("quota exceeded")]
    OverQuota,
    /// UID space of the mailbox is exhausted (UIDNEXT would pass 2^32-1).
    #[error("uid space exhausted")]
    UidsExhausted,
    /// Stored data did not decode: a bug or corruption, never silently ignored.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// A bound of [`crate::limits`] would be exceeded (IMAP `NO [LIMIT]`, RFC 5530 §3) that no
    /// smaller command would avoid (a mailbox's keyword cap, an atomic command's size before
    /// feature level 2). New variants go at the end: recorded replies (dedup table) keep their
    /// encoding.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The command touches more messages or record bytes than one command may (from feature
    /// level 2 on; `Limit` before): the same work split into smaller commands would pass
    /// (IMAP `NO [LIMIT]` once a front-end cannot split further).
    #[error("too big: {0}")]
    TooBig(String),
}

/// What a mailbox change reports to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagsUpdate {
    /// Message.
    pub uid: Uid,
    /// Flags after the change.
    pub flags: Vec<Flag>,
    /// Its modseq after the change.
    pub modseq: u64,
}

/// The successful result of a command. New variants go at the end (dedup records store the
/// variant index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Nothing to report.
    Done,
    /// CreateTenant.
    TenantCreated {
        /// New id.
        tenant: TenantId,
    },
    /// CreateAccount.
    AccountCreated {
        /// Tenant.
        tenant: TenantId,
        /// New id.
        account: AccountId,
    },
    /// CreateMailbox.
    MailboxCreated {
        /// New id.
        mailbox: MailboxId,
        /// Its UIDVALIDITY.
        uidvalidity: u32,
    },
    /// Append: RFC 4315 APPENDUID.
    Appended {
        /// Target mailbox.
        mailbox: MailboxId,
        /// Its UIDVALIDITY.
        uidvalidity: u32,
        /// One per message, in order.
        uids: Vec<Uid>,
        /// Highest modseq after the append.
        highest_modseq: u64,
    },
    /// Store.
    Stored {
        /// Changed messages.
        updated: Vec<FlagsUpdate>,
        /// Matched but unchanged messages (current state).
        unchanged: Vec<FlagsUpdate>,
        /// Failed UNCHANGEDSINCE.
        modified: Vec<Uid>,
        /// Highest modseq after the command.
        highest_modseq: u64,
    },
    /// Expunge.
    Expunged {
        /// Removed UIDs, ascending.
        uids: Vec<Uid>,
        /// Highest modseq after the command.
        highest_modseq: u64,
    },
    /// Copy/Move: RFC 4315 COPYUID.
    Copied {
        /// Destination mailbox.
        dest_mailbox: MailboxId,
        /// Destination UIDVALIDITY.
        dest_uidvalidity: u32,
        /// Source UIDs, ascending.
        source_uids: Vec<Uid>,
        /// Destination UIDs, same order.
        dest_uids: Vec<Uid>,
        /// Source highest modseq after a move's expunge.
        highest_modseq: u64,
    },
    /// RotateSessionKey.
    SessionKeyRotated {
        /// Id of the new signing key.
        key_id: u32,
        /// When the replaced key stops verifying (unix milliseconds).
        previous_valid_until_ms: i64,
    },
    /// DeleteAccount: the account is gone; its mail awaits [`Command::PurgeAccount`].
    AccountDeleted {
        /// Tenant.
        tenant: TenantId,
        /// The deleted account's id (never handed out again).
        account: AccountId,
    },
    /// PurgeAccount: what this step removed.
    AccountPurged {
        /// Messages removed (blob references and tenant quota usage released with them).
        messages: u64,
        /// Mailboxes removed.
        mailboxes: u64,
        /// Rows removed in all (messages, change-log entries, mailboxes, subscriptions).
        rows: u64,
        /// Nothing of the account is left and its deletion record is gone.
        done: bool,
    },
    /// Deliver: one result per target, in order.
    Delivered {
        /// Per recipient.
        results: Vec<Delivery>,
    },
    /// SetFeatureLevel.
    FeatureLevelSet {
        /// The level before the command.
        previous: u32,
        /// The level after it (`previous` when the command asked for a lower or equal one).
        level: u32,
    },
}

/// Result of applying one [`Request`].
pub type Reply = Result<Outcome, ModelError>;

/// The `mailbox` of a [`MailboxEvent`] about the account itself rather than one of its
/// mailboxes: its credentials changed (new password, disabled, deleted), so its sessions must check
/// their tokens. No mailbox has this id (ids start at 1).
pub const ACCOUNT_EVENT: MailboxId = 0;

/// A committed change to one mailbox (or, with [`ACCOUNT_EVENT`], to the account's
/// credentials), published to watchers (IDLE, sessions) after the batch is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxEvent {
    /// Owner.
    pub who: Principal,
    /// Mailbox.
    pub mailbox: MailboxId,
    /// Highest modseq after the change.
    pub modseq: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod byte_string_tests {
    use super::NewMessage;

    /// The same message with its byte fields as plain sequences, as entries were encoded before
    /// `serde_bytes`: postcard must write identical bytes, so existing logs still decode.
    #[derive(serde::Serialize)]
    struct AsSequences {
        body: Vec<u8>,
        flags: Vec<crate::types::Flag>,
        internal_date: Option<i64>,
        tz_offset_minutes: i32,
        structure: Vec<u8>,
    }

    #[test]
    fn byte_strings_encode_like_sequences() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let m = NewMessage {
                body: body.clone(),
                flags: vec![],
                internal_date: Some(5),
                tz_offset_minutes: -60,
                structure: vec![7; len / 3],
            };
            let old = AsSequences {
                body,
                flags: vec![],
                internal_date: Some(5),
                tz_offset_minutes: -60,
                structure: vec![7; len / 3],
            };
            let bytes = postcard::to_allocvec(&m).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&old).unwrap(), "length {len}");
            assert_eq!(postcard::from_bytes::<NewMessage>(&bytes).unwrap(), m);
        }
    }

    /// `Init` as entries were encoded while its key was a plain `Vec<u8>`.
    #[derive(serde::Serialize)]
    enum OldCommand {
        Init { session_key: Vec<u8> },
    }

    #[test]
    fn secret_bytes_encode_like_a_plain_vector_and_hide_in_debug() {
        let new = super::Command::Init { session_key: vec![9u8; 32].into() };
        let bytes = postcard::to_allocvec(&new).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&OldCommand::Init { session_key: vec![9u8; 32] }).unwrap());
        assert_eq!(postcard::from_bytes::<super::Command>(&bytes).unwrap(), new);
        assert!(!format!("{new:?}").contains('9'), "{new:?}");
    }
}
