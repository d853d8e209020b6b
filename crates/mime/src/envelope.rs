//! RFC 3501 §7.4.2 ENVELOPE, built from a header block.
//!
//! Values are raw (unfolded, not RFC 2047 decoded): clients decode them, and IMAP4rev1
//! strings must not carry 8-bit text. The first occurrence of each field is used.

use serde::{Deserialize, Serialize};

use crate::address::parse_address_list;
use crate::header::HeaderBlock;

/// The ENVELOPE of a message (top-level or encapsulated in a message/rfc822 part).
///
/// `None` and empty address lists are sent as NIL by the front-end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Envelope {
    /// Date: header, raw.
    pub date: Option<String>,
    /// Subject: header, raw (encoded words not decoded).
    pub subject: Option<String>,
    /// From: addresses.
    pub from: Vec<Address>,
    /// Sender: addresses; equal to `from` when absent or empty (RFC 3501 §7.4.2).
    pub sender: Vec<Address>,
    /// Reply-To: addresses; equal to `from` when absent or empty (RFC 3501 §7.4.2).
    pub reply_to: Vec<Address>,
    /// To: addresses.
    pub to: Vec<Address>,
    /// Cc: addresses.
    pub cc: Vec<Address>,
    /// Bcc: addresses.
    pub bcc: Vec<Address>,
    /// In-Reply-To: header, raw.
    pub in_reply_to: Option<String>,
    /// Message-ID: header, raw.
    pub message_id: Option<String>,
}

/// One ENVELOPE address structure (RFC 3501 §7.4.2).
///
/// Group syntax: start of group has `mailbox = Some(group name)` and `host = None`;
/// end of group has `mailbox = None` and `host = None`. A real address always has
/// `Some` mailbox and host (the host is empty when the header had no domain).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Address {
    /// Display name (phrase) raw: quotes removed, encoded words kept.
    pub name: Option<String>,
    /// Source route (obsolete at-domain-list), e.g. `@relay1,@relay2`.
    pub adl: Option<String>,
    /// Local part (quoted local parts keep their quotes), or the group name.
    pub mailbox: Option<String>,
    /// Domain; `None` marks group syntax.
    pub host: Option<String>,
}

impl Envelope {
    /// Builds the envelope from the fields of `block`.
    pub(crate) fn from_header(raw: &[u8], block: &HeaderBlock) -> Envelope {
        let text = |name: &str| block.first(raw, name).map(|f| f.unfolded(raw));
        let addresses = |name: &str| {
            block
                .first(raw, name)
                .map(|f| parse_address_list(&f.unfolded(raw)))
                .unwrap_or_default()
        };
        let from = addresses("from");
        let mut sender = addresses("sender");
        let mut reply_to = addresses("reply-to");
        // RFC 3501 §7.4.2: sender and reply-to default to from when absent or empty.
        if sender.is_empty() {
            sender.clone_from(&from);
        }
        if reply_to.is_empty() {
            reply_to.clone_from(&from);
        }
        Envelope {
            date: text("date"),
            subject: text("subject"),
            sender,
            reply_to,
            to: addresses("to"),
            cc: addresses("cc"),
            bcc: addresses("bcc"),
            in_reply_to: text("in-reply-to"),
            message_id: text("message-id"),
            from,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::header::scan;

    fn env(raw: &[u8]) -> Envelope {
        Envelope::from_header(raw, &scan(raw, 0, raw.len()))
    }

    #[test]
    fn fields_are_raw_and_unfolded() {
        let raw = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
Subject: =?utf-8?q?caf=C3=A9?=\r\n  folded\r\n\
From: Fred <fred@example.com>\r\n\
To: a@x, b@y\r\nMessage-ID: <id1@x>\r\nIn-Reply-To: <id0@x>\r\n\r\nbody";
        let e = env(raw);
        assert_eq!(
            e.date.as_deref(),
            Some("Mon, 7 Feb 1994 21:52:25 -0800 (PST)")
        );
        assert_eq!(e.subject.as_deref(), Some("=?utf-8?q?caf=C3=A9?=  folded"));
        assert_eq!(e.from.len(), 1);
        assert_eq!(e.sender, e.from);
        assert_eq!(e.reply_to, e.from);
        assert_eq!(e.to.len(), 2);
        assert!(e.cc.is_empty() && e.bcc.is_empty());
        assert_eq!(e.message_id.as_deref(), Some("<id1@x>"));
        assert_eq!(e.in_reply_to.as_deref(), Some("<id0@x>"));
    }

    #[test]
    fn explicit_sender_and_empty_reply_to() {
        let raw = b"From: a@x\nSender: s@x\nReply-To:\n\n";
        let e = env(raw);
        assert_eq!(e.sender[0].mailbox.as_deref(), Some("s"));
        assert_eq!(e.reply_to, e.from);
    }

    #[test]
    fn missing_headers_are_nil() {
        let e = env(b"X-Other: 1\r\n\r\n");
        assert_eq!(e, Envelope::default());
        let e = env(b"Subject:\r\n\r\n");
        assert_eq!(e.subject.as_deref(), Some(""));
    }

    #[test]
    fn first_occurrence_wins() {
        let e = env(b"Subject: one\nSubject: two\n\n");
        assert_eq!(e.subject.as_deref(), Some("one"));
    }
}
