//! MIME analysis for the IMAP front-end, done once per message.
//!
//! Flow: at APPEND time the store calls [`analyze`] on the raw message and keeps the
//! resulting [`MessageInfo`] next to the bytes (serialized with [`MessageInfo::to_bytes`]).
//! FETCH then answers ENVELOPE, BODYSTRUCTURE, BODY, RFC822.SIZE from that record and
//! cuts BODY[section] out of the raw bytes with [`section`], which only slices by the
//! stored offsets — the message is never re-parsed for FETCH. SEARCH uses the
//! on-demand decoders [`header_values`], [`body_text`] and [`sent_date`].
//!
//! Modules: `header` locates header blocks and fields by offset; `envelope` and
//! `address` build the RFC 3501 ENVELOPE (raw values); `mime_header` reads the MIME
//! fields of one entity through mail-parser (RFC 2047/2231); `structure` walks the MIME
//! tree recording exact offsets; `section` resolves RFC 3501 §6.4.5 part specs; `transfer`
//! removes Content-Transfer-Encodings, for SEARCH and FETCH BINARY alike; `search` decodes
//! text for SEARCH; `codec` is the versioned storage format.
//!
//! Nothing here fails or panics on bad input: malformed messages get a best-effort
//! structure (ultimately a single text/plain body), as servers must accept any APPEND.
#![deny(missing_docs)]

mod address;
mod codec;
mod envelope;
/// Entry point of the fuzz target and its corpus replay test; not an API.
#[doc(hidden)]
pub mod fuzzing;
mod header;
mod mime_header;
mod search;
mod section;
mod structure;
mod transfer;

use serde::{Deserialize, Serialize};

pub use codec::{FORMAT_VERSION, MimeError};
pub use envelope::{Address, Envelope};
pub use search::{body_text, header_values, sent_date, sent_date_local};
pub use section::{Section, SectionText, resolve, section};
pub use structure::{BodyPart, EncapsulatedMessage, MAX_DEPTH};
pub use transfer::transfer_decode;

/// Everything precomputed for one message at APPEND time.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageInfo {
    /// RFC822.SIZE: total octets of the raw message.
    pub size: u64,
    /// Octets of the top-level header including its blank line: BODY[HEADER] is
    /// `raw[..header_len]`, BODY[TEXT] is `raw[header_len..]`.
    pub header_len: u64,
    /// ENVELOPE of the top-level message.
    pub envelope: Envelope,
    /// Root of the MIME tree (BODYSTRUCTURE / BODY).
    pub body: BodyPart,
    /// Text lines of the whole message.
    pub lines: u64,
}

/// Analyzes a raw RFC 5322 message. Never fails: garbage or empty input yields a
/// text/plain structure covering whatever bytes there are.
pub fn analyze(raw: &[u8]) -> MessageInfo {
    let (header_end, envelope, body) = structure::parse_message(raw, 0, raw.len(), 0);
    MessageInfo {
        size: raw.len() as u64,
        header_len: header_end as u64,
        envelope,
        body,
        lines: header::count_lines(raw),
    }
}
