//! Entry point of the `lmtp_input` fuzz target (re-exported by [`crate::fuzzing`]; the corpus
//! replay test calls it too). Not an API.
//!
//! It drives the sans-I/O LMTP pieces exactly as [`super::connection`] does — [`LineReader`],
//! [`Session::command`], [`DotReader`] for DATA, [`ChunkReader`] for BDAT — with the client's
//! bytes arriving in reads of a fuzzed size, and stops where a real connection reaches the
//! storage: recipients are checked and messages "delivered" by a fake [`Backend`] that answers
//! at once from the recipient's local part. Its futures never wait, so the session's are polled
//! once with a no-op waker instead of a runtime; one that is not ready is a finding.
//!
//! Besides "no panic", a small model of the transaction (what MAIL, RCPT, DATA and BDAT should
//! answer) is checked against every step, and:
//! - every reply is well formed (RFC 5321 §4.2: three digits, `-` on all lines but the last,
//!   CRLF, text without CR/LF, printable ASCII, at most 512 octets a line per §4.5.3.1.5; an
//!   RFC 3463 enhanced code of the reply's class);
//! - memory stays within the configured caps: a pending command line holds at most
//!   `max_line_bytes + 1` octets, a DATA or BDAT body keeps at most `max_message_bytes`;
//! - DATA is dot-unstuffed exactly as RFC 5321 §4.5.2 says (checked against a one-shot
//!   reference on the octets the reader consumed, whatever the read sizes), and only
//!   `CRLF . CRLF` ends it;
//! - BDAT takes exactly the announced octets, the running count in its `250` replies is the sum of
//!   the chunks, and a chunk is kept only inside a transaction with recipients (RFC 3030 §2);
//! - after the message, one reply per accepted recipient (RFC 2033 §4.2), in RCPT order, with the
//!   code of that recipient's delivery verdict, and the backend got exactly the unstuffed body.

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;

use super::LmtpConfig;
use super::protocol::{Address, Body, ChunkReader, Command, DotReader, Line, LineReader, Progress, Reply, parse_command};
use super::session::{Backend, Envelope, Next, Session, Step, Verdict};

/// The configurations a fuzz input picks from (`data[1]`): small message and recipient caps reach
/// the refusal paths with short inputs; all of them pass [`LmtpConfig::validate`].
fn config(pick: u8) -> LmtpConfig {
    LmtpConfig {
        hostname: "lmtp.fuzz".into(),
        // RFC 5321 §4.5.3.1.4's minimum, the smallest a deployment can set.
        max_line_bytes: 512,
        max_message_bytes: [64, 1024, 1 << 16][usize::from(pick % 3)],
        max_recipients: if pick & 0x04 != 0 { 1000 } else { 2 },
        max_errors: if pick & 0x08 != 0 { 20 } else { 3 },
        ..LmtpConfig::default()
    }
}

/// The RCPT verdict the fake storage gives a recipient, by the start of its local part.
fn rcpt_verdict(to: &Address) -> Verdict {
    let local = to.local.to_ascii_lowercase();
    let verdicts = [
        ("nouser", Verdict::UnknownUser),
        ("nodomain", Verdict::UnknownDomain),
        ("disabled", Verdict::Disabled),
        ("full", Verdict::OverQuota),
        ("refused", Verdict::Refused("policy".into())),
        ("later", Verdict::TryLater("storage unavailable".into())),
    ];
    verdicts.into_iter().find(|(prefix, _)| local.starts_with(prefix)).map_or(Verdict::Ok, |(_, verdict)| verdict)
}

/// The delivery verdict the fake storage gives an accepted recipient.
fn delivery_verdict(to: &Address) -> Verdict {
    let local = to.local.to_ascii_lowercase();
    if local.starts_with("defer") {
        Verdict::TryLater("storage unavailable".into())
    } else if local.starts_with("bounce") {
        Verdict::OverQuota
    } else {
        Verdict::Ok
    }
}

/// The basic reply code a verdict gives (`session::rcpt_reply` / `delivery_reply`).
fn code_of(verdict: &Verdict) -> u16 {
    match verdict {
        Verdict::Ok => 250,
        Verdict::OverQuota => 552,
        Verdict::TryLater(_) => 451,
        Verdict::UnknownUser | Verdict::UnknownDomain | Verdict::Disabled | Verdict::Refused(_) => 550,
    }
}

/// The storage stand-in: answers at once and records what it was asked to deliver.
#[derive(Default)]
struct FakeStorage {
    /// Bodies and recipient counts of every delivery, in order.
    delivered: Mutex<Vec<(usize, Vec<u8>)>>,
}

impl Backend for FakeStorage {
    async fn check_recipient(&self, rcpt: &Address, _size: Option<u64>) -> Verdict {
        rcpt_verdict(rcpt)
    }

    async fn deliver(&self, envelope: &Envelope, body: Vec<u8>) -> Vec<Verdict> {
        let verdicts = envelope.recipients.iter().map(delivery_verdict).collect();
        if let Ok(mut delivered) = self.delivered.lock() {
            delivered.push((envelope.recipients.len(), body));
        }
        verdicts
    }
}

impl FakeStorage {
    fn take_delivery(&self) -> Option<(usize, Vec<u8>)> {
        self.delivered.lock().ok().and_then(|mut d| d.pop())
    }
}

/// Runs a session future that must not wait: the fake storage answers at once.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the LMTP session waited on something other than the storage"),
    }
}

/// What the harness expects of the open transaction.
#[derive(Debug, Default)]
struct Model {
    /// MAIL was answered 250 and no RSET, LHLO or message end came since.
    open: bool,
    /// Recipients RCPT answered 250, in order.
    accepted: Vec<Address>,
    /// BDAT chunks were sent in this transaction (RCPT and DATA are refused then).
    chunked: bool,
    /// The octets of the transaction's valid BDAT chunks, as sent.
    chunks: Vec<u8>,
}

/// What the connection reads next.
enum Reading {
    Command,
    Data { reader: DotReader, raw: Vec<u8> },
    Chunk { reader: ChunkReader, size: u64, last: bool, valid: bool, taken: u64 },
}

/// The LMTP path: `data[0]` picks the read size (bit 7: everything at once, else `1 + n % 64`
/// octets a read), `data[1]` the configuration ([`config`]), the rest is the client's byte stream.
/// Returns everything the server would have written, greeting first.
pub fn lmtp_input(data: &[u8]) -> Vec<u8> {
    let [chunk_pick, config_pick, stream @ ..] = data else {
        return Vec::new();
    };
    let chunk = if chunk_pick & 0x80 != 0 { stream.len().max(1) } else { 1 + usize::from(chunk_pick % 64) };
    let config = config(*config_pick);
    assert!(config.validate().is_ok(), "harness config invalid");
    let (max_line, max_message) = (config.max_line_bytes, config.max_message_bytes);
    let storage = FakeStorage::default();
    let mut session = Session::new(config.clone());
    let mut lines = LineReader::new(max_line);
    let mut input = BytesMut::new();
    let mut out = Vec::new();
    write_reply(&session.greeting(), &mut out);
    let mut model = Model::default();
    let mut reading = Reading::Command;
    for piece in stream.chunks(chunk) {
        input.extend_from_slice(piece);
        loop {
            let (step, command) = match &mut reading {
                Reading::Command => match lines.next(&mut input) {
                    Some(Line::Complete(line)) => (ready(session.command(&storage, &line)), parse_command(&line).ok()),
                    Some(Line::TooLong) => (session.line_too_long(), None),
                    None => {
                        assert!(input.len() <= max_line + 1, "{} octets of a command line held", input.len());
                        break;
                    }
                },
                Reading::Data { reader, raw } => {
                    let before = input.clone();
                    let progress = reader.feed(&mut input);
                    assert!(before.ends_with(&input), "DATA reader consumed other than a prefix");
                    raw.extend_from_slice(&before[..before.len() - input.len()]);
                    let kept = reader.body().kept();
                    assert!(kept as u64 <= max_message, "DATA body keeps {kept} octets");
                    if progress == Progress::NeedMore {
                        // Held back only a line-start `.` or `.CR` that may become the terminator.
                        assert!(input.len() <= 2, "DATA reader left {} octets unread", input.len());
                        break;
                    }
                    let Reading::Data { reader, raw } = std::mem::replace(&mut reading, Reading::Command) else {
                        unreachable!("matched above")
                    };
                    let expected = unstuff(&raw);
                    let body = reader.into_body();
                    assert_eq!(body.len(), expected.len() as u64, "DATA octets counted wrong");
                    let step = ready(session.data_done(&storage, body));
                    check_message_end(&step, &mut model, &storage, &expected, max_message);
                    (step, None)
                }
                Reading::Chunk { reader, size, last, valid, taken } => {
                    let kept = session.chunk_body();
                    assert_eq!(kept.is_some(), *valid, "BDAT chunk kept outside a transaction with recipients");
                    let mut sink = Body::new(0);
                    let body = kept.unwrap_or(&mut sink);
                    let before = input.clone();
                    let progress = reader.feed(&mut input, body);
                    assert!(body.kept() as u64 <= max_message, "BDAT body keeps {} octets", body.kept());
                    let consumed = &before[..before.len() - input.len()];
                    *taken += consumed.len() as u64;
                    if *valid {
                        model.chunks.extend_from_slice(consumed);
                    }
                    if progress == Progress::NeedMore {
                        assert!(input.is_empty(), "BDAT reader left octets of its chunk unread");
                        break;
                    }
                    assert_eq!(*taken, *size, "BDAT chunk of {size} octets took {taken}");
                    let (last, valid) = (*last, *valid);
                    reading = Reading::Command;
                    let step = ready(session.chunk_done(&storage));
                    check_chunk_end(&step, last, valid, &mut model, &storage, max_message);
                    (step, None)
                }
            };
            for reply in &step.replies {
                write_reply(reply, &mut out);
            }
            if let Some(command) = &command {
                check_command(command, &step, &mut model, &config);
            }
            let closes = step.replies.last().is_some_and(|r| r.code == 221 || r.code == 421);
            assert_eq!(matches!(step.next, Next::Close), closes, "close without 221/421, or the reverse");
            match step.next {
                // The DATA and chunk arms switched back to commands already.
                Next::Command => {}
                Next::Close => return out,
                Next::Data(reader) => reading = Reading::Data { reader, raw: Vec::new() },
                Next::Chunk(reader) => {
                    let Some(Command::Bdat { size, last }) = command else {
                        panic!("a chunk read without a BDAT command");
                    };
                    let valid = model.open && !model.accepted.is_empty();
                    model.chunked |= valid;
                    reading = Reading::Chunk { reader, size, last, valid, taken: 0 };
                }
            }
        }
    }
    out
}

/// Checks one command's step against the model and updates the model.
fn check_command(command: &Command, step: &Step, model: &mut Model, config: &LmtpConfig) {
    let code = step.replies.first().map(|r| r.code);
    match command {
        Command::Lhlo(_) => {
            assert_eq!(code, Some(250), "LHLO refused");
            *model = Model::default();
        }
        Command::Rset => {
            assert_eq!(code, Some(250), "RSET refused");
            *model = Model::default();
        }
        Command::Mail { size, .. } => {
            if code == Some(250) {
                assert!(!model.open, "nested MAIL accepted");
                assert!(size.is_none_or(|s| s <= config.max_message_bytes), "MAIL SIZE over the limit accepted");
                *model = Model { open: true, ..Model::default() };
            }
        }
        Command::Rcpt(to) => {
            let want = if !model.open || model.chunked {
                503
            } else if model.accepted.len() >= config.max_recipients {
                452
            } else {
                code_of(&rcpt_verdict(to))
            };
            assert_eq!(code, Some(want), "RCPT answered wrongly");
            if want == 250 {
                model.accepted.push(to.clone());
            }
        }
        Command::Data => {
            let accept = model.open && !model.chunked && !model.accepted.is_empty();
            assert_eq!(code, Some(if accept { 354 } else { 503 }), "DATA answered wrongly");
            assert_eq!(matches!(step.next, Next::Data(_)), accept, "DATA body read when refused, or not read");
        }
        Command::Bdat { .. } => {
            let reads = step.replies.is_empty() && matches!(step.next, Next::Chunk(_));
            assert!(reads, "BDAT chunk not read (RFC 3030 §2)");
        }
        Command::HeloEhlo | Command::Noop | Command::Quit | Command::Vrfy | Command::Expn | Command::Help => {}
    }
}

/// The step after a BDAT chunk was read.
fn check_chunk_end(step: &Step, last: bool, valid: bool, model: &mut Model, storage: &FakeStorage, max_message: u64) {
    let code = step.replies.first().map(|r| r.code);
    if !valid {
        assert_eq!(code, Some(503), "refused BDAT not answered 503");
        return;
    }
    if model.chunks.len() as u64 > max_message {
        assert_eq!(code, Some(552), "BDAT past the size limit not refused");
        assert_eq!(step.replies.len(), 1, "one reply for the failed BDAT transaction");
        *model = Model::default();
        return;
    }
    if !last {
        let want = Reply::new(250, "2.0.0", format!("{} octets received", model.chunks.len()));
        assert_eq!(step.replies, [want], "BDAT running count wrong");
        return;
    }
    let chunks = std::mem::take(&mut model.chunks);
    check_message_end(step, model, storage, &chunks, max_message);
}

/// The step that ends a message (DATA's terminator or BDAT LAST): one reply per accepted
/// recipient, and the storage got exactly `expected` unless it was over the limit.
fn check_message_end(step: &Step, model: &mut Model, storage: &FakeStorage, expected: &[u8], max_message: u64) {
    let accepted = std::mem::take(model).accepted;
    assert_eq!(step.replies.len(), accepted.len(), "not one reply per accepted recipient (RFC 2033 §4.2)");
    let delivery = storage.take_delivery();
    if expected.len() as u64 > max_message {
        assert!(delivery.is_none(), "a message over the limit was delivered");
        assert!(step.replies.iter().all(|r| r.code == 552), "a message over the limit not refused 552");
        return;
    }
    let Some((recipients, body)) = delivery else {
        panic!("a message within the limit was not delivered");
    };
    assert_eq!(recipients, accepted.len(), "delivered to other recipients than accepted");
    assert!(body == expected, "delivered body differs from the message sent");
    for (reply, to) in step.replies.iter().zip(&accepted) {
        assert_eq!(reply.code, code_of(&delivery_verdict(to)), "delivery reply of {to} does not match its verdict");
    }
}

/// RFC 5321 §4.5.2 on the octets the DATA reader consumed: lines end in CRLF, one leading dot is
/// removed, and the consumed octets end exactly with the `.CRLF` line.
fn unstuff(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while raw != b".\r\n" {
        let end = raw.windows(2).position(|w| w == b"\r\n").map(|i| i + 2);
        let Some(end) = end else {
            panic!("DATA ended without the CRLF.CRLF terminator: {:?}", String::from_utf8_lossy(raw));
        };
        let line = &raw[..end];
        body.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        raw = &raw[end..];
    }
    body
}

/// Appends a reply's wire form and checks it (RFC 5321 §4.2 reply lines).
fn write_reply(reply: &Reply, out: &mut Vec<u8>) {
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    check_reply(&wire, reply);
    out.extend_from_slice(&wire);
}

/// One reply's lines: `code-text` CRLF … `code text` CRLF, all with the reply's code.
fn check_reply(wire: &[u8], reply: &Reply) {
    let shown = || String::from_utf8_lossy(wire).into_owned();
    assert!(wire.ends_with(b"\r\n"), "reply does not end in CRLF: {:?}", shown());
    let lines: Vec<&[u8]> = wire[..wire.len() - 2].split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), reply.lines.len().max(1), "reply has {} lines for {:?}", lines.len(), reply.lines);
    let code = reply.code.to_string();
    assert!((200..600).contains(&reply.code), "reply code {code} outside 2yz–5yz");
    for (i, line) in lines.iter().enumerate() {
        let line = if i + 1 < lines.len() {
            line.strip_suffix(b"\r").unwrap_or_else(|| panic!("bare LF in reply {:?}", shown()))
        } else {
            line
        };
        assert!(line.starts_with(code.as_bytes()), "reply line without its code: {:?}", shown());
        let sep = if i + 1 < lines.len() { b'-' } else { b' ' };
        assert_eq!(line.get(3), Some(&sep), "wrong continuation mark in {:?}", shown());
        let text = &line[4..];
        assert!(!text.contains(&b'\r'), "CR inside reply text {:?}", shown());
        if let Some(enhanced) = reply.enhanced {
            check_enhanced(enhanced, reply.code);
            assert!(text.starts_with(format!("{enhanced} ").as_bytes()), "enhanced code missing on {:?}", shown());
        }
        let printable = text.iter().all(|&b| b == b'\t' || (32..=126).contains(&b));
        assert!(printable, "reply text not printable: {:?}", shown());
        assert!(line.len() + 2 <= 512, "reply line longer than 512 octets (RFC 5321 §4.5.3.1.5)");
    }
}

/// RFC 3463 §2: `class.subject.detail`, the class matching the reply's first digit.
fn check_enhanced(enhanced: &str, code: u16) {
    let parts: Vec<&str> = enhanced.split('.').collect();
    let digits = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    assert!(parts.len() == 3 && digits(parts[1], 3) && digits(parts[2], 3), "bad enhanced code {enhanced}");
    assert_eq!(parts[0], (code / 100).to_string(), "enhanced code {enhanced} of another class than {code}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stream: &[u8]) -> String {
        let mut data = vec![0x80, 0x00];
        data.extend_from_slice(stream);
        String::from_utf8(lmtp_input(&data)).unwrap()
    }

    #[test]
    fn a_transaction_gets_one_reply_per_recipient() {
        let out = run(b"LHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<bob@x.y>\r\nRCPT TO:<nouser@x.y>\r\n\
            RCPT TO:<defer@x.y>\r\nDATA\r\n..hi\r\n.\r\nQUIT\r\n");
        assert!(out.contains("550 5.1.1 <nouser@x.y> no such user\r\n"), "{out}");
        assert!(out.contains("250 2.0.0 <bob@x.y> delivered\r\n451 4.3.0 <defer@x.y> temporary"), "{out}");
        assert!(out.ends_with("221 2.0.0 lmtp.fuzz closing connection\r\n"), "{out}");
    }

    #[test]
    fn bdat_chunks_are_counted_and_read_bytewise() {
        let mut data = vec![0x00, 0x00];
        data.extend_from_slice(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<bob@x.y>\r\nBDAT 3\r\nab\nBDAT 2 LAST\r\n.\r");
        let out = String::from_utf8(lmtp_input(&data)).unwrap();
        assert!(out.contains("250 2.0.0 3 octets received\r\n250 2.0.0 <bob@x.y> delivered\r\n"), "{out}");
    }

    #[test]
    fn unstuffing_matches_rfc_5321() {
        assert_eq!(unstuff(b"..a\r\nb\n.\r\n\r\n.\r\n"), b".a\r\nb\n.\r\n\r\n");
        assert_eq!(unstuff(b".\r\n"), b"");
    }
}
