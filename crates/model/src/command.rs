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
    /// SAVEDATE, default INTERNALDATE).
    pub now_ms: i64,
    /// What to do.
    pub command: Command,
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
    /// Raw RFC 5322 bytes.
    pub body: Vec<u8>,
    /// Initial flags (`\Recent` is never stored).
    pub flags: Vec<Flag>,
    /// INTERNALDATE, unix seconds; `None` = `now_ms`.
    pub internal_date: Option<i64>,
    /// Zone the INTERNALDATE was given in, minutes east of UTC.
    pub tz_offset_minutes: i32,
    /// postcard-encoded `mailraft_mime::MessageInfo`, computed once by the proposer.
    pub structure: Vec<u8>,
}

/// Every replicated write the mail store knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// First entry of a new cluster: installs the key that signs session tokens. Ignored when a
    /// key already exists.
    Init {
        /// Random bytes from the proposer.
        session_key: Vec<u8>,
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
}

/// Why a command did nothing. Deterministic: every replica returns the same error for the same
/// entry, and the state is unchanged.
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

/// The successful result of a command.
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
}

/// Result of applying one [`Request`].
pub type Reply = Result<Outcome, ModelError>;

/// A committed change to one mailbox, published to watchers (IDLE) after the batch is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxEvent {
    /// Owner.
    pub who: Principal,
    /// Mailbox.
    pub mailbox: MailboxId,
    /// Highest modseq after the change.
    pub modseq: u64,
}
