//! Bounds on what one command may make the replicated apply do.
//!
//! Every tenant of a Raft group shares one apply loop, so one command's cost is a stall for all
//! of them. These bounds are constants, not settings: every replica must refuse exactly the same
//! commands, and a per-node setting could differ between replicas (a replicated setting would
//! work, but nobody needs to tune these). A refusal is [`ModelError::Limit`](crate::ModelError)
//! (or, for a size that smaller commands would pass, `TooBig` from feature level 2 on), which IMAP
//! reports as `NO [LIMIT]` (RFC 5530 §3).
//!
//! Changing a rule (here or in any apply handler): never edit it in place. During a rolling
//! upgrade old and new binaries apply the same log entries, and a bound one of them enforces and
//! the other does not makes their states diverge. A changed rule is switched on by the
//! replicated feature level instead ([`crate::feature`]): raise
//! [`KNOWN_FEATURE_LEVEL`](crate::feature::KNOWN_FEATURE_LEVEL) to N, describe level N in
//! `feature.rs`, and write the rule as
//!
//! ```text
//! let bound = if txn.level() >= N { NEW_BOUND } else { OLD_BOUND };
//! ```
//!
//! The new rule applies on every replica from the `SetFeatureLevel` entry on, which the operator
//! proposes (`mailraft admin set-feature-level N`) once every node runs the new binary. The old
//! branch is deleted one release after the level was raised, together with raising
//! [`OLDEST_FEATURE_LEVEL`](crate::feature::OLDEST_FEATURE_LEVEL) to N.
//!
//! Level 1 (the first release's rules) is the set of constants below as they stand.

/// Most distinct keywords a mailbox remembers (its FLAGS / PERMANENTFLAGS list). Once reached, a
/// command that would add another keyword to the mailbox fails. The set only grows (a keyword is
/// remembered while the mailbox lives), and the whole mailbox record is read and written by every
/// command that changes the mailbox, so the bound keeps that record small: 256 keywords of at
/// most [`crate::flags::MAX_KEYWORD_LEN`] bytes is at most ~33 KiB. For comparison, Cyrus IMAP
/// allows 128 user flags per mailbox (`MAX_USER_FLAGS`) and Dovecot's Maildir 26; real clients
/// use a handful (`$Junk`, `$NotJunk`, `$Forwarded`, `$MDNSent`, `$label1`…`$label5`, a few tags).
pub const MAX_MAILBOX_KEYWORDS: usize = 256;

/// Most messages one STORE, COPY / MOVE or EXPUNGE may touch, and most UID ranges its set may
/// have. A command over more is refused before anything is written (the apply reads at most one
/// message past the bound to find out). The front-end splits larger STORE and EXPUNGE commands
/// into smaller ones (RFC 3501 makes neither atomic) and refuses larger COPY / MOVE, which must
/// be all-or-nothing (RFC 3501 §6.4.7), so IMAP clients meet this bound on COPY and MOVE, and on
/// DELETE (RFC 3501 §6.3.4) of a mailbox holding more messages, which must be expunged first
/// (DELETE removes every message in one apply; the refusal reads only the mailbox's counter).
pub const MAX_MESSAGES_PER_COMMAND: usize = 100_000;

/// Most bytes of records one STORE, COPY / MOVE or EXPUNGE may read, and most it may write
/// (message records, change log, blob reference counts, mailbox and account records; message
/// bodies are not counted: the log entry carries them and the literal limit bounds them). The
/// message cap alone does not bound the cost: a version 1 record (feature level 1) carries the
/// message's keywords as strings, up to [`MAX_MAILBOX_KEYWORDS`] ×
/// [`crate::flags::MAX_KEYWORD_LEN`] ≈ 33 KiB, so 100,000 such records were 3.3 GB read and
/// written on every replica in one apply. (Version 2 records, [`crate::message_record`], are at
/// most ~330 bytes; version 1 records remain until a command rewrites them.) An ordinary record is
/// about 100 bytes, so a COPY of 100,000 ordinary messages reads about 10 MB and writes about
/// 25 MB (its record, its change-log row and its blob's 8-byte count each), well inside the
/// bound; the refusal (`TooBig`; `Limit` at level 1) comes as soon as the bound is passed, before
/// the rest is read.
pub const MAX_COMMAND_BYTES: u64 = 64 << 20;

/// Most mailboxes one account may have (parents created by CREATE included). A RENAME rewrites
/// the record of every inferior of the mailbox it renames in one apply (RFC 3501 §6.3.5), so this
/// also bounds what one RENAME costs the other tenants. Dovecot and Cyrus set no default limit;
/// real accounts hold tens to a few thousand folders.
pub const MAX_MAILBOXES_PER_ACCOUNT: usize = 10_000;

/// Most messages one APPEND (RFC 3502 MULTIAPPEND) may carry. The storage node refuses more
/// before proposing; the model checks again so no log entry can carry more.
pub const MAX_APPEND_MESSAGES: usize = 1000;

/// Most recipients of one LMTP delivery (`Command::Deliver`): each costs a few point reads and
/// writes and its header prefix and MIME structure in the entry, so this bounds the apply and
/// the entry's size beyond the body. The front-end refuses more at RCPT (452 4.5.3).
pub const MAX_DELIVERY_RECIPIENTS: usize = 1000;
