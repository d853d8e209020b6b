//! Sans-I/O framing of client bytes into whole IMAP messages, with size caps.
//!
//! IMAP messages are lines that may announce literals (`{n}` synchronizing, `{n+}`
//! non-synchronizing, RFC 3501 §4.3 / RFC 7888; RFC 3516's `~{n}` ends the same way) whose
//! bytes follow the line verbatim. The framer
//! splits the byte stream into complete messages (first line + literals + continuation lines)
//! *before* anything parses them, as imap-codec's `Fragmentizer` does, so literal bytes can never
//! be mistaken for a command, and a malformed command is discarded exactly up to its end.
//!
//! Memory stays bounded: a line stops being buffered at `max_line` bytes and the rest is only
//! scanned for the line end, so a hostile client cannot make us allocate more than
//! `max_message` bytes. It enforces:
//! - a per-line cap: the command is discarded to its end, then rejected (`BAD`);
//! - a per-literal and per-message cap: a synchronizing literal over it is rejected with
//!   `NO [TOOBIG]` before the continuation request, so the client never sends it (RFC 7888 §4,
//!   RFC 4469 §4.2); a non-synchronizing one is already on its way, so the connection closes;
//! - a separate, possibly smaller cap for non-synchronizing literals (before authentication the
//!   server advertises LITERAL-, which allows them only up to 4096 bytes, RFC 7888 §5).
//!
//! The caps can change between messages ([`Framer::set_limits`]): the connection uses small ones
//! until the client has authenticated.
//!
//! Why not the `Fragmentizer` itself (imap-codec 2.0.0-alpha.10)? Its memory is bounded too:
//! past its `max_message_size` it drops bytes but keeps framing to the end of the message, and
//! keeps the first bytes so `decode_tag` can recover the tag for the error reply, as
//! [`tag_of`] does here. What it lacks:
//! - a per-line cap: its one cap covers the whole message, which must fit the largest
//!   literal (50 MiB by default after login, against 64 KiB per line), so a single command
//!   line could grow that large. A
//!   caller cannot cut a line short either: `skip_message` mid-line would frame the line's rest
//!   as a new command;
//! - caps that change between messages: the cap is fixed by `Fragmentizer::new`, and a new
//!   fragmentizer would lose the pipelined bytes already queued in the old one;
//! - announcements too long for `u32`: its line parser then sees no literal at all
//!   (`{4294967296+}` ends a plain line), so the literal's bytes would be framed as commands;
//!   here any length over the cap is too big.
//!
//! (Per-kind literal caps checked before the continuation request could have been built on its
//! literal announcements; the three points above could not.)
//!
//! Usage: [`Framer::feed`] bytes from the socket, then call [`Framer::poll`] until it returns
//! [`Frame::NeedMore`]; after [`Frame::Message`], [`Framer::take_message`] returns the bytes to
//! decode and starts the next message.

use bytes::{Buf, BytesMut};
use imap_codec::imap_types::core::{LiteralMode, Tag};

use crate::config::FrontendConfig;

/// Size caps of the framer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, including its CRLF.
    pub max_line: usize,
    /// Largest single synchronizing literal.
    pub max_literal: u32,
    /// Largest single non-synchronizing literal.
    pub max_nonsync_literal: u32,
    /// Largest whole message (lines plus literals).
    pub max_message: usize,
}

/// RFC 7888 §5: under LITERAL- a non-synchronizing literal may have up to 4096 bytes.
pub const LITERAL_MINUS_MAX: u32 = 4096;

impl Limits {
    /// The caps for a session that is (or is not yet) authenticated. Before login they are small
    /// (`max_preauth_literal_bytes`, LITERAL- for non-synchronizing literals) so a client that
    /// never logs in cannot make us buffer much.
    pub fn for_login_state(config: &FrontendConfig, authenticated: bool) -> Self {
        let max_line = config.max_line_bytes;
        if authenticated {
            let literal = config.max_literal_bytes;
            Limits {
                max_line,
                max_literal: literal,
                max_nonsync_literal: literal,
                max_message: (literal as usize).saturating_add(4 * max_line),
            }
        } else {
            let literal = config.max_preauth_literal_bytes.min(config.max_literal_bytes);
            // LITERAL- allows non-synchronizing literals up to 4096 bytes (RFC 7888 §5); an
            // operator's smaller pre-auth cap applies to them as well. `max_line` stays as
            // configured: SASL initial responses (RFC 4959) can be long.
            let nonsync = literal.min(LITERAL_MINUS_MAX);
            // Room for the longest pre-auth message with literals: LOGIN with two of them.
            let largest = literal.max(nonsync) as usize;
            Limits {
                max_line,
                max_literal: literal,
                max_nonsync_literal: nonsync,
                max_message: max_line.saturating_add(2 * largest),
            }
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A line exceeded [`Limits::max_line`].
    LineTooLong,
    /// A literal exceeded [`Limits::max_literal`] or would push the message over
    /// [`Limits::max_message`].
    LiteralTooBig,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// All buffered bytes are consumed: read more from the socket.
    NeedMore,
    /// A synchronizing literal was accepted: send a continuation request (`+ ...`) so the client
    /// sends its bytes (RFC 3501 §7.5), then keep polling.
    Continue,
    /// A complete message is ready: call [`Framer::take_message`].
    Message,
    /// The message was refused and discarded; the connection continues with the next one.
    Rejected {
        /// Tag of the refused command, if its start was readable.
        tag: Option<Tag<'static>>,
        /// What was wrong.
        reason: Rejection,
    },
    /// A non-synchronizing literal over the limit is arriving: the stream cannot be resynchronised
    /// cheaply, so the caller answers `BAD [TOOBIG]` and closes (RFC 7888 §4, §5).
    Fatal {
        /// Tag of the refused command, if readable.
        tag: Option<Tag<'static>>,
    },
}

/// Where the framer is inside the current message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Collecting a line into `message` starting at `line_start`.
    Line,
    /// Copying `remaining` literal bytes into `message`.
    Literal { remaining: u32 },
    /// `message` holds a complete message the caller has not taken yet.
    Complete,
    /// Dropping the rest of a refused line; `tail` keeps its last bytes to spot a literal
    /// announcement at its end.
    DiscardLine { tail: Vec<u8>, tag: Option<Tag<'static>>, reason: Rejection },
    /// Dropping a non-synchronizing literal that belongs to a refused message.
    DiscardLiteral { remaining: u64, tag: Option<Tag<'static>>, reason: Rejection },
}

/// Longest literal announcement we look for at the end of a discarded line: `{4294967295+}\r\n`.
const TAIL_LEN: usize = 16;

/// Splits a client byte stream into complete IMAP messages.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    /// Bytes received but not yet examined.
    input: BytesMut,
    /// The current message so far.
    message: Vec<u8>,
    /// Offset in `message` where the current line starts.
    line_start: usize,
    state: State,
}

impl Framer {
    /// A framer with the given caps.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            input: BytesMut::new(),
            message: Vec::new(),
            line_start: 0,
            state: State::Line,
        }
    }

    /// Replaces the caps; they apply from the next line or literal announcement on. The
    /// connection calls this between messages (e.g. after LOGIN) so the bytes of a message are
    /// always judged by one set of caps.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The caps in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Drops buffered input that has not been examined yet and any partial message. Used after
    /// STARTTLS: bytes sent before the TLS handshake must not be executed afterwards
    /// (RFC 3501 §6.2.1, the "STARTTLS command injection" attack).
    pub fn clear(&mut self) {
        self.input.clear();
        self.reset_message();
    }

    /// Whether unexamined bytes are buffered (pipelined commands).
    pub fn has_buffered_input(&self) -> bool {
        !self.input.is_empty()
    }

    /// Returns the complete message and starts the next one. Empty unless the last [`poll`]
    /// returned [`Frame::Message`].
    ///
    /// [`poll`]: Framer::poll
    pub fn take_message(&mut self) -> Vec<u8> {
        if self.state != State::Complete {
            return Vec::new();
        }
        let message = std::mem::take(&mut self.message);
        self.reset_message();
        message
    }

    fn reset_message(&mut self) {
        self.message.clear();
        self.line_start = 0;
        self.state = State::Line;
    }

    /// Advances over buffered input; see [`Frame`].
    pub fn poll(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.step() {
                return frame;
            }
        }
    }

    /// One state transition; `None` means "call again".
    fn step(&mut self) -> Option<Frame> {
        match std::mem::replace(&mut self.state, State::Line) {
            State::Complete => {
                self.state = State::Complete;
                Some(Frame::Message)
            }
            State::Line => self.step_line(),
            State::Literal { remaining } => {
                let n = (remaining as usize).min(self.input.len());
                self.message.extend_from_slice(&self.input[..n]);
                self.input.advance(n);
                let remaining = remaining - n as u32;
                if remaining == 0 {
                    self.line_start = self.message.len();
                    self.state = State::Line;
                    None
                } else {
                    self.state = State::Literal { remaining };
                    Some(Frame::NeedMore)
                }
            }
            State::DiscardLine { mut tail, tag, reason } => {
                let Some(pos) = self.input.iter().position(|&b| b == b'\n') else {
                    push_tail(&mut tail, &self.input);
                    self.input.clear();
                    self.state = State::DiscardLine { tail, tag, reason };
                    return Some(Frame::NeedMore);
                };
                push_tail(&mut tail, &self.input[..=pos]);
                self.input.advance(pos + 1);
                match literal_announcement(&tail) {
                    // A non-synchronizing literal of the refused command is on its way: drop it too.
                    Some((length, LiteralMode::NonSync)) => {
                        self.state = State::DiscardLiteral { remaining: length, tag, reason };
                        None
                    }
                    // A synchronizing literal waits for a continuation we never send, and no
                    // announcement means the command ended: either way it is over.
                    _ => {
                        self.reset_message();
                        Some(Frame::Rejected { tag, reason })
                    }
                }
            }
            State::DiscardLiteral { remaining, tag, reason } => {
                let n = remaining.min(self.input.len() as u64);
                self.input.advance(n as usize);
                let remaining = remaining - n;
                if remaining == 0 {
                    self.state = State::DiscardLine { tail: Vec::new(), tag, reason };
                    None
                } else {
                    self.state = State::DiscardLiteral { remaining, tag, reason };
                    Some(Frame::NeedMore)
                }
            }
        }
    }

    fn step_line(&mut self) -> Option<Frame> {
        let line_so_far = self.message.len() - self.line_start;
        let newline = self.input.iter().position(|&b| b == b'\n');
        let take = newline.map_or(self.input.len(), |pos| pos + 1);
        let line_len = line_so_far + take;
        let line_cap = self.limits.max_line.min(self.limits.max_message.saturating_sub(self.line_start));
        if line_len > line_cap {
            // Keep the line's first bytes (for the tag), then drop it to its end.
            let keep = line_cap.saturating_sub(line_so_far).min(take);
            self.message.extend_from_slice(&self.input[..keep]);
            let tag = tag_of(&self.message);
            let mut tail = Vec::new();
            push_tail(&mut tail, &self.message[self.line_start..]);
            self.message.clear();
            self.state = State::DiscardLine { tail, tag, reason: Rejection::LineTooLong };
            self.input.advance(keep);
            return None;
        }
        self.message.extend_from_slice(&self.input[..take]);
        self.input.advance(take);
        if newline.is_none() {
            self.state = State::Line;
            return Some(Frame::NeedMore);
        }
        let Some((length, mode)) = literal_announcement(&self.message[self.line_start..]) else {
            self.state = State::Complete;
            return Some(Frame::Message);
        };
        let cap = match mode {
            LiteralMode::Sync => self.limits.max_literal,
            LiteralMode::NonSync => self.limits.max_nonsync_literal,
        };
        let fits = length <= u64::from(cap)
            && (self.message.len() as u64).saturating_add(length) <= self.limits.max_message as u64;
        if !fits {
            let tag = tag_of(&self.message);
            return Some(match mode {
                // RFC 7888 §4 / RFC 4469 §4.2: refuse before the continuation request; the client
                // does not send the literal, so the next line is a new command.
                LiteralMode::Sync => {
                    self.reset_message();
                    Frame::Rejected { tag, reason: Rejection::LiteralTooBig }
                }
                // RFC 7888 §4, §5: its bytes are already on the way and we will not buffer them,
                // so the stream cannot be resynchronised: the caller refuses and closes. Nothing
                // after the announcement is examined.
                LiteralMode::NonSync => {
                    self.reset_message();
                    self.input.clear();
                    Frame::Fatal { tag }
                }
            });
        }
        // `fits` bounds `length` by a u32 cap.
        let remaining = u32::try_from(length).unwrap_or(u32::MAX);
        self.state = State::Literal { remaining };
        match mode {
            LiteralMode::Sync => Some(Frame::Continue),
            LiteralMode::NonSync => None,
        }
    }
}

/// Appends `bytes` to `tail`, keeping only the last [`TAIL_LEN`] bytes.
fn push_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    tail.extend_from_slice(&bytes[bytes.len().saturating_sub(TAIL_LEN)..]);
    if tail.len() > TAIL_LEN {
        tail.drain(..tail.len() - TAIL_LEN);
    }
}

/// Parses a literal announcement (`{n}` / `{n+}` before the line ending) at the end of `line`.
fn literal_announcement(line: &[u8]) -> Option<(u64, LiteralMode)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let (line, mode) = match line.strip_suffix(b"+") {
        Some(rest) => (rest, LiteralMode::NonSync),
        None => (line, LiteralMode::Sync),
    };
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // More digits than fit in u64 is "too big" all the same.
    let length = std::str::from_utf8(digits).ok()?.parse::<u64>().unwrap_or(u64::MAX);
    Some((length, mode))
}

/// Best-effort tag of a (possibly truncated) message, for the tagged rejection.
pub fn tag_of(message: &[u8]) -> Option<Tag<'static>> {
    let end = message.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
    let text = std::str::from_utf8(&message[..end]).ok()?;
    Tag::try_from(text.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_line: 64, max_literal: 100, max_nonsync_literal: 100, max_message: 300 }
    }

    /// Feeds `input` split at `split`, collecting frames and completed messages.
    fn run(input: &[u8], splits: &[usize], limits: Limits) -> Vec<(Frame, Vec<u8>)> {
        let mut framer = Framer::new(limits);
        let mut out = Vec::new();
        let mut last = 0;
        for &cut in splits.iter().chain(std::iter::once(&input.len())) {
            framer.feed(&input[last..cut]);
            last = cut;
            loop {
                match framer.poll() {
                    Frame::NeedMore => break,
                    Frame::Message => {
                        let message = framer.take_message();
                        out.push((Frame::Message, message));
                    }
                    other => out.push((other, Vec::new())),
                }
            }
        }
        out
    }

    /// Every way of splitting `input` in two gives the same frames as feeding it whole.
    fn assert_split_invariant(input: &[u8], limits: Limits) -> Vec<(Frame, Vec<u8>)> {
        let whole = run(input, &[], limits);
        for cut in 0..=input.len() {
            assert_eq!(run(input, &[cut], limits), whole, "split at {cut}");
        }
        // And byte by byte.
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run(input, &every, limits), whole, "byte by byte");
        whole
    }

    #[test]
    fn splits_pipelined_commands() {
        let frames = assert_split_invariant(b"a1 NOOP\r\na2 CAPABILITY\r\n", limits());
        assert_eq!(
            frames,
            vec![
                (Frame::Message, b"a1 NOOP\r\n".to_vec()),
                (Frame::Message, b"a2 CAPABILITY\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn accepts_bare_lf() {
        let frames = assert_split_invariant(b"a1 NOOP\n", limits());
        assert_eq!(frames, vec![(Frame::Message, b"a1 NOOP\n".to_vec())]);
    }

    #[test]
    fn sync_literal_asks_for_continuation() {
        let input = b"a1 LOGIN {4}\r\nuser {4}\r\npass\r\na2 NOOP\r\n";
        let frames = assert_split_invariant(input, limits());
        assert_eq!(
            frames,
            vec![
                (Frame::Continue, vec![]),
                (Frame::Continue, vec![]),
                (Frame::Message, b"a1 LOGIN {4}\r\nuser {4}\r\npass\r\n".to_vec()),
                (Frame::Message, b"a2 NOOP\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn literal_bytes_are_never_commands() {
        // The literal contains what looks like a line ending and a command.
        let input = b"a1 APPEND x {13+}\r\n\r\nb1 LOGOUT\r\n\r\n";
        let frames = assert_split_invariant(input, limits());
        assert_eq!(frames, vec![(Frame::Message, input.to_vec())]);
    }

    #[test]
    fn over_long_line_is_rejected_and_resynced() {
        let mut input = b"a1 NOOP ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 200));
        input.extend_from_slice(b"\r\na2 NOOP\r\n");
        let frames = assert_split_invariant(&input, limits());
        assert_eq!(
            frames,
            vec![
                (
                    Frame::Rejected {
                        tag: Some(Tag::try_from("a1").unwrap()),
                        reason: Rejection::LineTooLong
                    },
                    vec![]
                ),
                (Frame::Message, b"a2 NOOP\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn over_long_line_with_nonsync_literal_discards_the_literal() {
        let mut input = b"a1 APPEND ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend_from_slice(b" {5+}\r\nb LOGOUT\r\na2 NOOP\r\n");
        // "b LOGOUT\r\n" is 10 bytes: 5 belong to the literal, the rest ends the command.
        let frames = assert_split_invariant(&input, limits());
        assert_eq!(
            frames,
            vec![
                (
                    Frame::Rejected {
                        tag: Some(Tag::try_from("a1").unwrap()),
                        reason: Rejection::LineTooLong
                    },
                    vec![]
                ),
                (Frame::Message, b"a2 NOOP\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn huge_sync_literal_is_refused_before_continuation() {
        let input = b"a1 APPEND INBOX {1000}\r\na2 NOOP\r\n";
        let frames = assert_split_invariant(input, limits());
        assert_eq!(
            frames,
            vec![
                (
                    Frame::Rejected {
                        tag: Some(Tag::try_from("a1").unwrap()),
                        reason: Rejection::LiteralTooBig
                    },
                    vec![]
                ),
                (Frame::Message, b"a2 NOOP\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn absurd_literal_length_is_too_big() {
        let input = b"a1 APPEND INBOX {99999999999999999999999}\r\n";
        let frames = assert_split_invariant(input, limits());
        assert!(matches!(
            frames.as_slice(),
            [(Frame::Rejected { reason: Rejection::LiteralTooBig, .. }, _)]
        ));
    }

    #[test]
    fn huge_nonsync_literal_is_fatal() {
        let input = b"a1 APPEND INBOX {1000+}\r\nxxxx";
        let frames = run(input, &[], limits());
        assert_eq!(frames, vec![(Frame::Fatal { tag: Some(Tag::try_from("a1").unwrap()) }, vec![])]);
    }

    #[test]
    fn nonsync_cap_is_separate_from_the_sync_cap() {
        let limits = Limits { max_nonsync_literal: 10, ..limits() };
        // 11 bytes: allowed as a synchronizing literal ...
        let frames = run(b"a1 LOGIN {11}\r\n", &[], limits);
        assert_eq!(frames, vec![(Frame::Continue, vec![])]);
        // ... but not as a non-synchronizing one (LITERAL-, RFC 7888 §5), whose bytes are not read.
        let frames = run(b"a1 LOGIN {11+}\r\nxxxxxxxxxxx a2 NOOP\r\n", &[], limits);
        assert_eq!(frames, vec![(Frame::Fatal { tag: Some(Tag::try_from("a1").unwrap()) }, vec![])]);
        let frames = run(b"a1 LOGIN {10+}\r\nxxxxxxxxxx x\r\n", &[], limits);
        assert_eq!(frames, vec![(Frame::Message, b"a1 LOGIN {10+}\r\nxxxxxxxxxx x\r\n".to_vec())]);
    }

    #[test]
    fn new_limits_apply_to_the_next_message() {
        let small = Limits { max_literal: 8, max_nonsync_literal: 8, ..limits() };
        let mut framer = Framer::new(small);
        framer.feed(b"a1 LOGIN {9}\r\n");
        assert!(matches!(framer.poll(), Frame::Rejected { reason: Rejection::LiteralTooBig, .. }));
        framer.set_limits(limits());
        assert_eq!(framer.limits(), limits());
        framer.feed(b"a2 APPEND x {9+}\r\n123456789\r\n");
        assert_eq!(framer.poll(), Frame::Message);
        assert_eq!(framer.take_message(), b"a2 APPEND x {9+}\r\n123456789\r\n");
    }

    #[test]
    fn message_cap_counts_all_literals() {
        // Three literals of 100 bytes each exceed max_message = 300 together with the lines.
        let mut input = Vec::new();
        for _ in 0..3 {
            input.extend_from_slice(b"a1 X {100+}\r\n");
            input.extend(std::iter::repeat_n(b'y', 100));
        }
        let frames = run(&input, &[], limits());
        assert!(matches!(frames.last(), Some((Frame::Fatal { .. }, _))), "{frames:?}");
    }

    #[test]
    fn preauth_nonsync_literals_follow_a_smaller_preauth_cap() {
        let config = FrontendConfig { max_preauth_literal_bytes: 100, ..FrontendConfig::default() };
        let limits = Limits::for_login_state(&config, false);
        assert_eq!(limits.max_nonsync_literal, 100);
        let frames = run(b"a1 LOGIN {200+}\r\n", &[], limits);
        assert!(matches!(frames.last(), Some((Frame::Fatal { .. }, _))), "{frames:?}");
        // The default pre-auth cap is larger than LITERAL-'s 4096 bytes, which then applies.
        let limits = Limits::for_login_state(&FrontendConfig::default(), false);
        assert_eq!(limits.max_nonsync_literal, LITERAL_MINUS_MAX);
    }

    #[test]
    fn clear_drops_pipelined_bytes() {
        let mut framer = Framer::new(limits());
        framer.feed(b"a1 STARTTLS\r\na2 LOGIN u p\r\n");
        assert_eq!(framer.poll(), Frame::Message);
        assert_eq!(framer.take_message(), b"a1 STARTTLS\r\n");
        framer.clear();
        assert_eq!(framer.poll(), Frame::NeedMore);
    }

    #[test]
    fn tag_of_handles_garbage() {
        assert_eq!(tag_of(b"a1 NOOP"), Some(Tag::try_from("a1").unwrap()));
        assert_eq!(tag_of(b"\xff\xfe NOOP"), None);
        assert_eq!(tag_of(b"nospace"), None);
        assert_eq!(tag_of(b"+ NOOP"), None);
    }

    #[test]
    fn announcement_parser() {
        assert_eq!(literal_announcement(b"x {5}\r\n"), Some((5, LiteralMode::Sync)));
        assert_eq!(literal_announcement(b"x {5+}\n"), Some((5, LiteralMode::NonSync)));
        assert_eq!(literal_announcement(b"x {}\r\n"), None);
        assert_eq!(literal_announcement(b"x {5a}\r\n"), None);
        assert_eq!(literal_announcement(b"x 5}\r\n"), None);
        assert_eq!(literal_announcement(b"x {5}"), None);
    }

    proptest::proptest! {
        /// Arbitrary input never panics and never yields a message larger than the cap.
        #[test]
        fn never_panics_and_respects_caps(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                                          cut in 0usize..600) {
            let cut = cut.min(input.len());
            for (_, message) in run(&input, &[cut], limits()) {
                proptest::prop_assert!(message.len() <= limits().max_message);
            }
        }
    }
}
