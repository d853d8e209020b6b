//! Serialising IMAP responses into the connection's output buffer.
//!
//! Handlers append responses to an [`Out`] buffer; the connection writes it to the socket after
//! the tagged reply (or earlier, when FETCH output grows large). Encoding goes through
//! imap-codec's `ResponseCodec`, so every response is syntactically valid; free text from other
//! layers (storage error messages) is sanitised into a valid `text` first.

use std::borrow::Cow;

use imap_codec::ResponseCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::{Tag, Text};
use imap_codec::imap_types::response::{
    Bye, Code, CodeOther, CommandContinuationRequest, Data, Response, Status, StatusBody,
    StatusKind, Tagged,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Pending output of one connection.
#[derive(Debug, Default)]
pub struct Out {
    buf: Vec<u8>,
}

impl Out {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The buffered bytes (tests).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn push(&mut self, response: &Response<'_>) {
        self.buf.extend_from_slice(&ResponseCodec::new().encode(response).dump());
    }

    /// An untagged data response (`* 3 EXISTS`, `* LIST ...`).
    pub fn data(&mut self, data: Data<'_>) {
        self.push(&Response::Data(data));
    }

    /// An untagged status response (`* OK [UIDNEXT 5] ...`).
    pub fn untagged(&mut self, kind: StatusKind, code: Option<Code<'_>>, text: &str) {
        let body = StatusBody { kind, code, text: text_of(text) };
        self.push(&Response::Status(Status::Untagged(body)));
    }

    /// The tagged completion of a command.
    pub fn tagged(&mut self, tag: &Tag<'_>, kind: StatusKind, code: Option<Code<'_>>, text: &str) {
        let body = StatusBody { kind, code, text: text_of(text) };
        self.push(&Response::Status(Status::Tagged(Tagged { tag: tag.clone(), body })));
    }

    /// An untagged status for a command whose tag could not be read (RFC 3501 §7.1: `* BAD`).
    pub fn maybe_tagged(
        &mut self,
        tag: Option<&Tag<'_>>,
        kind: StatusKind,
        code: Option<Code<'_>>,
        text: &str,
    ) {
        match tag {
            Some(tag) => self.tagged(tag, kind, code, text),
            None => self.untagged(kind, code, text),
        }
    }

    /// `* BYE`: the server is closing the connection (RFC 3501 §7.1.5).
    pub fn bye(&mut self, code: Option<Code<'_>>, text: &str) {
        self.push(&Response::Status(Status::Bye(Bye { code, text: text_of(text) })));
    }

    /// A continuation request (`+ text`), for literals and IDLE.
    pub fn continuation(&mut self, text: &str) {
        match CommandContinuationRequest::basic(None, text_of(text)) {
            Ok(request) => self.push(&Response::CommandContinuationRequest(request)),
            // Text that could be mistaken for base64 or a code: fall back to an empty request.
            Err(_) => self.empty_continuation(),
        }
    }

    /// `+ ` with no text: what SASL expects before the client's first response (RFC 3501 §6.2.2).
    pub fn empty_continuation(&mut self) {
        self.buf.extend_from_slice(b"+ \r\n");
    }

    /// Writes everything buffered to `io` and clears the buffer.
    pub async fn flush_to<W: AsyncWrite + Unpin + ?Sized>(&mut self, io: &mut W) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            io.write_all(&self.buf).await?;
            self.buf.clear();
        }
        io.flush().await
    }
}

/// A response code this crate's imap-types version has no variant for (RFC 5530 codes such as
/// `NONEXISTENT`), spelled as the atom it is on the wire.
pub fn other_code(atom: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(Cow::Borrowed(atom.as_bytes())))
}

/// Turns arbitrary text into a valid IMAP `text` (RFC 3501 §9: 1*TEXT-CHAR, no CR/LF, ASCII).
/// Text starting with `[` would read as a response code, so it gets a prefix.
pub fn text_of(text: &str) -> Text<'static> {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { ' ' })
        .take(300)
        .collect();
    if clean.trim().is_empty() {
        clean = "done".to_owned();
    }
    if clean.starts_with('[') {
        clean.insert_str(0, "- ");
    }
    Text::try_from(clean).unwrap_or_else(|_| Text::unvalidated("done"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_tagged_with_code() {
        let mut out = Out::new();
        let tag = Tag::try_from("a1").unwrap();
        out.tagged(&tag, StatusKind::No, Some(other_code("NONEXISTENT")), "no such mailbox");
        assert_eq!(out.as_bytes(), b"a1 NO [NONEXISTENT] no such mailbox\r\n");
    }

    #[test]
    fn sanitises_text() {
        assert_eq!(text_of("a\r\nb\u{e9}").inner(), "a  b ");
        assert_eq!(text_of("").inner(), "done");
        assert_eq!(text_of("[x] y").inner(), "- [x] y");
    }

    #[test]
    fn continuation_forms() {
        let mut out = Out::new();
        out.continuation("idling");
        out.empty_continuation();
        out.continuation("Ready for literal data");
        assert_eq!(out.as_bytes(), b"+ idling\r\n+ \r\n+ Ready for literal data\r\n");
    }
}
