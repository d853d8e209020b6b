//! Serialising IMAP responses into the connection's output buffer.
//!
//! Handlers append responses to an [`Out`] buffer; the connection writes it to the socket after
//! the tagged reply (or earlier, when FETCH output grows large). Encoding goes through
//! imap-codec's `ResponseCodec`, so every response is syntactically valid; free text from other
//! layers (storage error messages) is sanitised into a valid `text` first.
//!
//! Every write to the client goes through [`Out::flush_to`], which is where the write deadline
//! lives: a client that stops reading (its receive window closes, so a write never completes)
//! would otherwise hold its session, and through gRPC flow control the storage node's producer,
//! forever. The deadline bounds the time without progress (each [`WRITE_SLICE`] bytes must be
//! taken within `write_timeout`), not the whole flush. Once a slice misses it the buffer is
//! dropped and every later flush fails at once, so the connection closes without waiting for the
//! client again.

use std::borrow::Cow;
use std::time::Duration;

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
    /// Deadline of one flush; `None` waits as long as the client takes.
    write_timeout: Option<Duration>,
    /// A flush missed its deadline: the client is not reading, nothing more is sent.
    stalled: bool,
}

impl Out {
    /// An empty buffer whose flushes wait as long as the client takes.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer whose flushes fail when the client has not taken the bytes within
    /// `write_timeout`.
    pub fn with_write_timeout(write_timeout: Duration) -> Self {
        Self { write_timeout: Some(write_timeout), ..Self::default() }
    }

    /// Whether a flush missed the write deadline (the connection must close without writing).
    pub fn is_stalled(&self) -> bool {
        self.stalled
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
        if self.stalled {
            return;
        }
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
        if self.stalled {
            return;
        }
        self.buf.extend_from_slice(b"+ \r\n");
    }

    /// Writes everything buffered to `io` and clears the buffer. Fails with
    /// [`std::io::ErrorKind::TimedOut`] when the client takes no bytes for the write timeout;
    /// from then on the buffer is empty and stays so, and every flush fails at once.
    ///
    /// The deadline is on progress, not on the whole flush: one flush may hold a whole message
    /// (up to `max_literal_bytes`), which a slow but honest client needs minutes to download.
    /// Each [`WRITE_SLICE`] gets its own `write_timeout`, so only a client that stops reading is
    /// cut off.
    pub async fn flush_to<W: AsyncWrite + Unpin + ?Sized>(&mut self, io: &mut W) -> std::io::Result<()> {
        if self.stalled {
            return Err(stalled());
        }
        let mut result = Ok(());
        for slice in self.buf.chunks(WRITE_SLICE) {
            result = with_deadline(self.write_timeout, io.write_all(slice)).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = with_deadline(self.write_timeout, io.flush()).await;
        }
        match result {
            Ok(()) => {
                self.buf.clear();
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                // Part of the buffer may be on the wire: resending any of it would corrupt the
                // stream, so the connection can only close.
                self.stalled = true;
                self.buf = Vec::new();
                Err(error)
            }
            Err(error) => Err(error),
        }
    }
}

/// Bytes written under one write deadline: small enough that a client reading at a few KB/s
/// takes each within the default deadline, large enough that a fast one needs few wake-ups.
pub const WRITE_SLICE: usize = 64 * 1024;

/// Runs one write under `limit`; missing it is [`stalled`].
async fn with_deadline(
    limit: Option<Duration>,
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, write).await.unwrap_or_else(|_| Err(stalled())),
        None => write.await,
    }
}

fn stalled() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "client did not read its responses within the write timeout")
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

    #[tokio::test]
    async fn a_flush_the_client_does_not_take_fails_at_the_deadline() {
        // The client's side of the pipe holds 16 bytes and is never read.
        let (_client, mut server) = tokio::io::duplex(16);
        let mut out = Out::with_write_timeout(Duration::from_millis(50));
        out.untagged(StatusKind::Ok, None, "more than sixteen bytes of output");
        let flush = tokio::time::timeout(Duration::from_secs(10), out.flush_to(&mut server)).await;
        let error = flush.expect("the write deadline ends the flush").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(out.is_stalled() && out.is_empty());
        // Nothing more is buffered, and later flushes fail too: a half-written response must
        // never be followed by more bytes.
        out.untagged(StatusKind::Ok, None, "x");
        assert!(out.is_empty());
        let again = tokio::time::timeout(Duration::from_secs(10), out.flush_to(&mut server)).await;
        assert_eq!(again.unwrap().unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_flush_the_client_takes_succeeds() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut out = Out::with_write_timeout(Duration::from_secs(60));
        out.untagged(StatusKind::Ok, None, "hello");
        out.flush_to(&mut server).await.unwrap();
        assert!(out.is_empty() && !out.is_stalled());
        let mut line = vec![0; 12];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut line).await.unwrap();
        assert_eq!(line, b"* OK hello\r\n");
    }

    #[tokio::test]
    async fn a_slow_client_that_keeps_reading_is_not_cut_off() {
        // The client takes one slice every 200 ms: the whole flush takes longer than the write
        // timeout, but no slice waits anywhere near it.
        let (mut client, mut server) = tokio::io::duplex(WRITE_SLICE);
        let total = 16 * WRITE_SLICE;
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = vec![0; WRITE_SLICE];
            while got < total {
                tokio::time::sleep(Duration::from_millis(200)).await;
                got += tokio::io::AsyncReadExt::read(&mut client, &mut buf).await.unwrap();
            }
            got
        });
        let mut out = Out::with_write_timeout(Duration::from_secs(2));
        out.buf = vec![b'x'; total];
        let started = tokio::time::Instant::now();
        out.flush_to(&mut server).await.expect("a client that keeps reading is served");
        assert!(started.elapsed() > Duration::from_secs(2), "the flush outlasted the write timeout");
        assert_eq!(reader.await.unwrap(), total);
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
