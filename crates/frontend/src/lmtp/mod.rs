//! LMTP delivery (RFC 2033): how an MTA (Postfix, Exim) hands mail to Mailraft.
//!
//! A room of its own beside the IMAP server; the two share only the storage client
//! ([`crate::storage::Storage`]), with its routing, retries and request ids.
//!
//! - [`protocol`]: the wire format without I/O (command parser, addresses, replies, DATA
//!   dot-unstuffing, BDAT chunks), unit-tested on byte buffers.
//! - [`session`]: the transaction state machine and the [`session::Backend`] it checks
//!   recipients and delivers through.
//! - [`connection`]: one socket's read/write loop with the idle and write deadlines.
//! - [`server`]: the TCP and Unix-socket accept loops under a connection limit.
//! - [`delivery`]: the backend on the storage tier: `Storage.CheckRecipient` at RCPT time,
//!   `Storage.Deliver` after the message, which writes the message for every recipient of a
//!   tenant in one replicated entry and answers only once it is committed.
//!
//! The listener carries no authentication (RFC 2033 §7 leaves it to the deployment): it binds
//! to loopback or a Unix socket by default, and anyone who can connect can deliver mail.

pub mod connection;
pub mod delivery;
/// Entry point of the `lmtp_input` fuzz target; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod protocol;
pub mod server;
pub mod session;

use std::time::Duration;

pub use delivery::StorageBackend;
pub use server::{LmtpListener, LmtpServer};

/// LMTP connections by result (`accepted`, `refused`: over `max_connections`).
pub const CONNECTIONS_TOTAL: &str = "mailraft_lmtp_connections_total";
/// Per-recipient outcomes after the message, by result (`delivered`, `refused`, `deferred`).
pub const RECIPIENTS_TOTAL: &str = "mailraft_lmtp_recipients_total";

/// Registers the LMTP metrics' descriptions with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(CONNECTIONS_TOTAL, "LMTP connections by result");
    metrics::describe_counter!(RECIPIENTS_TOTAL, "LMTP per-recipient delivery outcomes by result");
}

/// Largest message size the LMTP listener may be configured to take: the storage's request
/// limit (80 MiB) with room for the per-recipient headers and the gRPC framing.
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Why an [`LmtpConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LmtpConfigError {
    /// A limit that must be positive is zero.
    #[error("lmtp {0} must be greater than zero")]
    Zero(&'static str),
    /// A value over its ceiling.
    #[error("lmtp {field} must be at most {max}, got {got}")]
    TooLarge {
        /// The setting.
        field: &'static str,
        /// Its ceiling.
        max: u64,
        /// The configured value.
        got: u64,
    },
    /// RFC 5321 §4.5.3.1.4: a server must take command lines of 512 octets.
    #[error("lmtp max_line_bytes must be at least 512, got {0}")]
    LineTooSmall(usize),
    /// The name in the greeting and LHLO reply.
    #[error("lmtp hostname must be a non-empty name without spaces")]
    BadHostname,
}

/// Settings of the LMTP listener: every bound protects the process from one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpConfig {
    /// Name in the greeting and the LHLO reply (RFC 5321 §4.1.1.1: the server's domain).
    pub hostname: String,
    /// Longest command line (RFC 5321 §4.5.3.1.4 requires 512 octets at least); longer ones
    /// are dropped as they arrive and answered `500 5.5.2`.
    pub max_line_bytes: usize,
    /// Largest message (advertised as `SIZE`, RFC 1870); larger ones are read to their end and
    /// refused with `552 5.3.4` for every recipient.
    pub max_message_bytes: u64,
    /// Recipients per transaction; the next RCPT gets `452 4.5.3` (RFC 5321 §4.5.3.1.8).
    pub max_recipients: usize,
    /// Refused commands per connection before it is closed with `421 4.7.0`.
    pub max_errors: u32,
    /// Concurrent connections; more are closed at once with `421 4.3.2`.
    pub max_connections: usize,
    /// Time the server waits for the client's next bytes (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub idle_timeout: Duration,
    /// Time a reply may take to be written before the connection is dropped.
    pub write_timeout: Duration,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig {
            hostname: "localhost".to_owned(),
            max_line_bytes: 4096,
            max_message_bytes: 50 * 1024 * 1024,
            max_recipients: 1000,
            max_errors: 20,
            max_connections: 1000,
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(60),
        }
    }
}

impl LmtpConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), LmtpConfigError> {
        if self.hostname.is_empty() || self.hostname.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(LmtpConfigError::BadHostname);
        }
        for (field, value) in [
            ("max_message_bytes", self.max_message_bytes),
            ("max_recipients", self.max_recipients as u64),
            ("max_connections", self.max_connections as u64),
            ("idle_timeout", self.idle_timeout.as_millis() as u64),
            ("write_timeout", self.write_timeout.as_millis() as u64),
        ] {
            if value == 0 {
                return Err(LmtpConfigError::Zero(field));
            }
        }
        if self.max_line_bytes < 512 {
            return Err(LmtpConfigError::LineTooSmall(self.max_line_bytes));
        }
        if self.max_message_bytes > MAX_MESSAGE_BYTES {
            let got = self.max_message_bytes;
            return Err(LmtpConfigError::TooLarge { field: "max_message_bytes", max: MAX_MESSAGE_BYTES, got });
        }
        // One transaction is one storage request: its recipients travel in one Raft entry.
        let max_rcpt = delivery::MAX_RECIPIENTS as u64;
        if self.max_recipients as u64 > max_rcpt {
            let got = self.max_recipients as u64;
            return Err(LmtpConfigError::TooLarge { field: "max_recipients", max: max_rcpt, got });
        }
        Ok(())
    }
}
