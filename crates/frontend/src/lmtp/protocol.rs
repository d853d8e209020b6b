//! LMTP wire format without I/O: command lines, addresses, replies, and the two ways a message
//! body arrives (DATA with dot-stuffing, BDAT chunks). Everything here works on byte slices and
//! buffers, so it is unit-tested without sockets and cannot block.
//!
//! Grammar: RFC 5321 §4.1 (commands, paths, parameters), RFC 2033 (LHLO instead of HELO/EHLO),
//! RFC 1652 (BODY=), RFC 1870 (SIZE=), RFC 3030 (BDAT). Replies carry RFC 3463 enhanced status
//! codes as RFC 2034 describes.

use std::fmt;

use bytes::{Buf, BytesMut};

/// Longest local part and domain (RFC 5321 §4.5.3.1.1 / §4.5.3.1.2).
const MAX_LOCAL_PART: usize = 64;
const MAX_DOMAIN: usize = 255;

/// One SMTP/LMTP reply: a three-digit code, an RFC 3463 enhanced code, and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Basic reply code (RFC 5321 §4.2).
    pub code: u16,
    /// `class.subject.detail` (RFC 3463); `None` only where RFC 2034 §3 omits it (220, LHLO).
    pub enhanced: Option<&'static str>,
    /// Text of each line; at least one.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply { code, enhanced: Some(enhanced), lines: vec![text.into()] }
    }

    /// A reply without an enhanced code (greeting, LHLO: RFC 2034 §3 exempts them).
    pub fn plain(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, enhanced: None, lines }
    }

    /// 2yz or 3yz.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the wire form: `code-text` for every line but the last, `code text` for it
    /// (RFC 5321 §4.2.1). Text is cleaned of CR and LF so no reply can split into two.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let clean: String = line.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
            let text = match self.enhanced {
                Some(e) => format!("{}{sep}{e} {clean}\r\n", self.code),
                None => format!("{}{sep}{clean}\r\n", self.code),
            };
            out.extend_from_slice(text.as_bytes());
        }
    }

    /// The wire form as a string (tests, logs).
    pub fn to_wire(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A mailbox address `local@domain` as given in a path; the local part is unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Local part without quotes (RFC 5321 §4.1.2 Local-part).
    pub local: String,
    /// Domain or address literal, as given.
    pub domain: String,
}

impl fmt::Display for Address {
    /// The address as it goes into `Return-Path:` / `Delivered-To:`: a dot-string local part
    /// stays as it is, anything else is quoted (RFC 5321 §4.1.2).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            write!(f, "{}@{}", self.local, self.domain)
        } else {
            let quoted = self.local.replace('\\', "\\\\").replace('"', "\\\"");
            write!(f, "\"{quoted}\"@{}", self.domain)
        }
    }
}

/// RFC 1652 body type of MAIL FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// `BODY=7BIT` or none.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 2033 §4.1.
    Lhlo(String),
    /// HELO or EHLO: not LMTP (RFC 2033 §4.1).
    HeloEhlo,
    /// RFC 5321 §4.1.1.2; `from` is `None` for the null reverse-path `<>`.
    Mail {
        /// Reverse-path.
        from: Option<Address>,
        /// RFC 1870 SIZE= declaration.
        size: Option<u64>,
        /// RFC 1652 BODY=.
        body: BodyType,
    },
    /// RFC 5321 §4.1.1.3.
    Rcpt(Address),
    /// RFC 5321 §4.1.1.4.
    Data,
    /// RFC 3030 §2: a chunk of `size` octets follows the line.
    Bdat {
        /// Octets in the chunk.
        size: u64,
        /// `LAST`: the message ends with this chunk.
        last: bool,
    },
    /// RFC 5321 §4.1.1.5.
    Rset,
    /// RFC 5321 §4.1.1.9.
    Noop,
    /// RFC 5321 §4.1.1.10.
    Quit,
    /// RFC 5321 §4.1.1.6 (refused politely, §3.5.3).
    Vrfy,
    /// RFC 5321 §4.1.1.7 (not offered).
    Expn,
    /// RFC 5321 §4.1.1.8.
    Help,
}

/// A command line that cannot be run; the reply says why.
pub type Refusal = Reply;

/// `500 5.5.1`-style replies the parser gives.
fn syntax(enhanced: &'static str, text: &str) -> Refusal {
    Reply::new(501, enhanced, text)
}

/// Parses one command line (without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, Refusal> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(Reply::new(500, "5.5.2", "command line is not valid text"));
    };
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let no_args = |cmd: Command| if rest.trim().is_empty() { Ok(cmd) } else { Err(syntax("5.5.4", "no arguments allowed")) };
    match verb.to_ascii_uppercase().as_str() {
        "LHLO" => {
            let host = rest.trim();
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(syntax("5.5.4", "LHLO needs one domain argument"));
            }
            Ok(Command::Lhlo(host.to_owned()))
        }
        "HELO" | "EHLO" => Ok(Command::HeloEhlo),
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(rest),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        _ => Err(Reply::new(500, "5.5.1", "command not recognized")),
    }
}

/// Strips a case-insensitive `prefix` (e.g. `FROM:`), allowing the common space after the
/// colon that RFC 5321 does not (Postfix and others accept it too).
fn strip_keyword<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| s[prefix.len()..].trim_start())
}

/// Splits `<path> params…` into the path (without brackets) and the parameter words.
fn split_path(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('<')?;
    // The path may contain a quoted local part with '>' in it.
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

fn parse_mail(rest: &str) -> Result<Command, Refusal> {
    let bad = || syntax("5.5.2", "syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]");
    let args = strip_keyword(rest, "FROM:").ok_or_else(bad)?;
    let (path, params) = split_path(args).ok_or_else(bad)?;
    let from = if path.is_empty() {
        None
    } else {
        Some(parse_address(strip_source_route(path)).ok_or_else(|| syntax("5.1.7", "bad sender address syntax"))?)
    };
    let (mut size, mut body) = (None, BodyType::SevenBit);
    for param in params.split_ascii_whitespace() {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => {
                let n = value.parse::<u64>().map_err(|_| syntax("5.5.4", "SIZE needs a number"))?;
                size = Some(n);
            }
            "BODY" => {
                body = match value.to_ascii_uppercase().as_str() {
                    "7BIT" => BodyType::SevenBit,
                    "8BITMIME" => BodyType::EightBitMime,
                    _ => return Err(syntax("5.5.4", "BODY must be 7BIT or 8BITMIME")),
                }
            }
            // RFC 5321 §4.1.1.11: parameters of extensions not offered.
            _ => return Err(Reply::new(555, "5.5.4", format!("MAIL parameter {} not supported", shown_name(key)))),
        }
    }
    Ok(Command::Mail { from, size, body })
}

fn parse_rcpt(rest: &str) -> Result<Command, Refusal> {
    let bad = || syntax("5.5.2", "syntax: RCPT TO:<address>");
    let args = strip_keyword(rest, "TO:").ok_or_else(bad)?;
    let (path, params) = split_path(args).ok_or_else(bad)?;
    if let Some(param) = params.split_ascii_whitespace().next() {
        let key = param.split_once('=').map_or(param, |(k, _)| k);
        return Err(Reply::new(555, "5.5.4", format!("RCPT parameter {} not supported", shown_name(key))));
    }
    // RFC 5321 §4.1.1.3: <Postmaster> without a domain must be accepted by SMTP servers; an LMTP
    // server delivers to accounts of domains, so it needs the domain.
    let addr = parse_address(strip_source_route(path)).ok_or_else(|| syntax("5.1.3", "bad recipient address syntax"))?;
    Ok(Command::Rcpt(addr))
}

fn parse_bdat(rest: &str) -> Result<Command, Refusal> {
    let mut words = rest.split_ascii_whitespace();
    let size = words.next().and_then(|w| w.parse::<u64>().ok());
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(syntax("5.5.4", "syntax: BDAT size [LAST]")),
    };
    match (size, words.next()) {
        (Some(size), None) => Ok(Command::Bdat { size, last }),
        _ => Err(syntax("5.5.4", "syntax: BDAT size [LAST]")),
    }
}

/// A parameter name as a reply may show it: RFC 5321 §4.1.2 esmtp-keyword is letters, digits
/// and `-`; anything else (control or non-ASCII octets from the client) is not echoed, and the
/// name is cut so the reply line stays within 512 octets (§4.5.3.1.5).
fn shown_name(key: &str) -> &str {
    const MAX: usize = 64;
    if key.is_empty() || key.len() > MAX || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        "(unrecognised)"
    } else {
        key
    }
}

/// RFC 5321 §4.1.2 A-d-l (`@relay,@relay:`): must be accepted and ignored (Appendix C).
fn strip_source_route(path: &str) -> &str {
    if path.starts_with('@')
        && let Some(i) = path.find(':')
    {
        return &path[i + 1..];
    }
    path
}

/// RFC 5321 §4.1.2 Mailbox: a dot-string or quoted-string local part, `@`, a domain or an
/// address literal. ASCII only: SMTPUTF8 (RFC 6531) is not offered.
pub fn parse_address(s: &str) -> Option<Address> {
    if !s.is_ascii() {
        return None;
    }
    let (local, domain) = if let Some(q) = s.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = q.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                // quoted-pairSMTP = %d92 %d32-126: a backslash escapes only a printable character.
                '\\' => local.push(chars.next().map(|(_, c)| c).filter(|c| (' '..='~').contains(c))?),
                '"' => break i,
                c if (' '..='~').contains(&c) => local.push(c),
                _ => return None,
            }
        };
        (local, q.get(end + 1..)?.strip_prefix('@')?)
    } else {
        let (local, domain) = s.rsplit_once('@')?;
        if !is_dot_string(local) {
            return None;
        }
        (local.to_owned(), domain)
    };
    if local.is_empty() || local.len() > MAX_LOCAL_PART || !valid_domain(domain) {
        return None;
    }
    Some(Address { local, domain: domain.to_owned() })
}

/// RFC 5321 Dot-string: atoms of atext separated by single dots.
fn is_dot_string(s: &str) -> bool {
    const SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty() && atom.bytes().all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b))
        })
}

/// RFC 5321 Domain (letters, digits, hyphens, dots) or an address literal in brackets.
fn valid_domain(d: &str) -> bool {
    if d.is_empty() || d.len() > MAX_DOMAIN {
        return false;
    }
    if let Some(lit) = d.strip_prefix('[') {
        return lit.strip_suffix(']').is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_graphic() && b != b'[' && b != b']' && b != b'\\'));
    }
    d.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// What [`LineReader::next`] found in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line without its line ending.
    Complete(Vec<u8>),
    /// A line longer than the limit ended (its bytes were dropped as they came).
    TooLong,
}

/// Splits command lines off the input under a length cap. A line over the cap is dropped while
/// it arrives (never buffered whole) and reported once its end is seen, so a client that never
/// sends a line end costs at most the cap.
#[derive(Debug)]
pub struct LineReader {
    max: usize,
    skipping: bool,
}

impl LineReader {
    /// A reader for lines of at most `max` bytes (line ending not counted).
    pub fn new(max: usize) -> Self {
        LineReader { max, skipping: false }
    }

    /// The next line in `buf`, consuming it; `None` when more input is needed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Option<Line> {
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let mut line = buf.split_to(i + 1).to_vec();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if std::mem::take(&mut self.skipping) || line.len() > self.max {
                    return Some(Line::TooLong);
                }
                Some(Line::Complete(line))
            }
            None => {
                // `max + 1`: room for a CR whose LF has not arrived yet.
                if self.skipping || buf.len() > self.max + 1 {
                    self.skipping = true;
                    buf.clear();
                }
                None
            }
        }
    }

    /// True when no whole line is waiting (the reply buffer should be sent: RFC 2920 §3.1
    /// lets the server hold replies only while more commands of the group are queued).
    pub fn needs_input(&self, buf: &BytesMut) -> bool {
        !buf.contains(&b'\n')
    }
}

/// A message body as it arrives, bounded: bytes past the limit are counted but not kept.
#[derive(Debug, Default)]
pub struct Body {
    bytes: Vec<u8>,
    limit: u64,
    seen: u64,
}

impl Body {
    /// An empty body that keeps at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Body { bytes: Vec::new(), limit, seen: 0 }
    }

    fn push(&mut self, data: &[u8]) {
        self.seen = self.seen.saturating_add(data.len() as u64);
        if self.seen <= self.limit {
            self.bytes.extend_from_slice(data);
        } else if !self.bytes.is_empty() {
            // Over the limit: what was kept is useless now.
            self.bytes = Vec::new();
        }
    }

    /// True once more than `limit` bytes arrived.
    pub fn overflowed(&self) -> bool {
        self.seen > self.limit
    }

    /// Octets received so far (also past the limit).
    pub fn len(&self) -> u64 {
        self.seen
    }

    /// True when nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.seen == 0
    }

    /// The bytes (empty after an overflow).
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Octets held in memory: the fuzz harness checks they never pass the limit.
    #[doc(hidden)]
    pub fn kept(&self) -> usize {
        self.bytes.len()
    }
}

/// Progress of a body reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The input is used up; more is needed.
    NeedMore,
    /// The body (or chunk) is complete; the input after it is left in the buffer.
    Done,
}

/// RFC 5321 §4.5.2 transparency: the DATA body up to the `CRLF.CRLF` terminator, one leading dot
/// removed from every line that starts with one. Only CRLF ends a line here, so a bare LF never
/// makes a following `.` the terminator (the SMTP smuggling ambiguity).
#[derive(Debug)]
pub struct DotReader {
    body: Body,
    /// At the start of a line (the DATA command's CRLF starts the first one).
    line_start: bool,
    /// The last byte passed on was a CR.
    after_cr: bool,
}

impl DotReader {
    /// A reader keeping at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        DotReader { body: Body::new(limit), line_start: true, after_cr: false }
    }

    /// Consumes what `buf` holds of the body.
    pub fn feed(&mut self, buf: &mut BytesMut) -> Progress {
        loop {
            if self.line_start {
                match &buf[..] {
                    [] => return Progress::NeedMore,
                    [b'.', b'\r', b'\n', ..] => {
                        buf.advance(3);
                        return Progress::Done;
                    }
                    [b'.'] | [b'.', b'\r'] => return Progress::NeedMore,
                    [b'.', ..] => buf.advance(1),
                    _ => {}
                }
                self.line_start = false;
            }
            let mut end = None;
            let mut cr = self.after_cr;
            for (i, &b) in buf.iter().enumerate() {
                if b == b'\n' && cr {
                    end = Some(i + 1);
                    break;
                }
                cr = b == b'\r';
            }
            match end {
                Some(n) => {
                    self.body.push(&buf[..n]);
                    buf.advance(n);
                    self.line_start = true;
                    self.after_cr = false;
                }
                None => {
                    self.after_cr = cr;
                    self.body.push(buf);
                    buf.clear();
                    return Progress::NeedMore;
                }
            }
        }
    }

    /// The body read.
    pub fn into_body(self) -> Body {
        self.body
    }

    /// The body so far (the fuzz harness checks its memory while it arrives).
    #[doc(hidden)]
    pub fn body(&self) -> &Body {
        &self.body
    }
}

/// RFC 3030 §2: exactly `size` octets of one BDAT chunk, taken as they are (no dot-stuffing).
#[derive(Debug)]
pub struct ChunkReader {
    remaining: u64,
}

impl ChunkReader {
    /// A reader for a chunk of `size` octets.
    pub fn new(size: u64) -> Self {
        ChunkReader { remaining: size }
    }

    /// Moves what `buf` holds of the chunk into `body`.
    pub fn feed(&mut self, buf: &mut BytesMut, body: &mut Body) -> Progress {
        let n = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        body.push(&buf[..n]);
        buf.advance(n);
        self.remaining -= n as u64;
        if self.remaining == 0 { Progress::Done } else { Progress::NeedMore }
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
