//! The message corpus: generated deterministically from a seed, or read from an mbox.
//!
//! Generated mail looks like a real mailbox to a server's parser and storage: most messages a
//! few KB, a tail to hundreds of KB; text/plain, multipart/alternative with HTML, attachments
//! (base64, RFC 2231 file names), nested message/rfc822; RFC 2047 encoded-word subjects; and
//! threads through In-Reply-To/References. Everything is CRLF (RFC 5322 §2.1). The same seed
//! gives the same bytes on every machine and version (see [`crate::rng`]).

use std::io;
use std::path::Path;

use base64::Engine;

use crate::rng::Rng;

/// A list of RFC 5322 messages.
#[derive(Debug, Clone)]
pub struct Corpus {
    messages: Vec<Vec<u8>>,
}

const WORDS: &[&str] = &[
    "the",
    "meeting",
    "invoice",
    "server",
    "quarterly",
    "report",
    "please",
    "review",
    "attached",
    "budget",
    "deploy",
    "cluster",
    "latency",
    "mailbox",
    "storage",
    "replica",
    "tomorrow",
    "schedule",
    "customer",
    "ticket",
    "release",
    "notes",
    "update",
    "thanks",
    "regards",
    "question",
    "about",
    "project",
    "status",
    "backup",
    "restore",
    "network",
    "incident",
    "summary",
    "draft",
    "final",
    "version",
    "agenda",
    "team",
    "lunch",
    "friday",
    "monday",
    "weekly",
    "sync",
    "plan",
    "roadmap",
    "migration",
    "index",
    "search",
    "and",
    "of",
    "to",
    "in",
    "for",
    "with",
    "on",
    "we",
    "you",
    "is",
    "it",
    "this",
    "that",
    "will",
    "can",
];
const NAMES: &[&str] = &[
    "Alice Martin",
    "Bob Chen",
    "Carol Dubois",
    "Dave Okafor",
    "Eve Svensson",
    "Frank Müller",
    "Grace Ito",
    "Heidi Novak",
    "Ivan Petrov",
    "Judy Silva",
];
const UTF8_SUBJECTS: &[&str] = &[
    "Grüße aus Köln",
    "Réunion de l'équipe",
    "Año nuevo",
    "Привет",
    "会議の件",
];

impl Corpus {
    /// `count` messages from `seed`.
    pub fn generate(seed: u64, count: usize) -> Corpus {
        let mut rng = Rng::new(seed);
        let mut threads: Vec<Thread> = Vec::new();
        let messages = (0..count)
            .map(|i| message(&mut rng, seed, i, &mut threads))
            .collect();
        Corpus { messages }
    }

    /// Messages of an mbox file (mboxrd `>From ` unquoting, LF normalised to CRLF).
    pub fn from_mbox(path: &Path) -> io::Result<Corpus> {
        let data = std::fs::read(path)?;
        let messages = split_mbox(&data);
        if messages.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no messages in mbox",
            ));
        }
        Ok(Corpus { messages })
    }

    /// Message `i`, wrapping around.
    pub fn get(&self, i: usize) -> &[u8] {
        match self.messages.len() {
            0 => b"",
            n => &self.messages[i % n],
        }
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Total bytes.
    pub fn bytes(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }
}

#[derive(Debug, Clone)]
struct Thread {
    subject: String,
    references: Vec<String>,
}

fn message(rng: &mut Rng, seed: u64, i: usize, threads: &mut Vec<Thread>) -> Vec<u8> {
    let id = format!("<{i}.{seed:x}@corpus.mailraft.test>");
    let from = *rng.pick(NAMES).unwrap_or(&"Alice Martin");
    let to = *rng.pick(NAMES).unwrap_or(&"Bob Chen");
    let mut h = String::new();
    h.push_str(&format!("Return-Path: <{}>\r\n", addr(from)));
    h.push_str(&format!("From: {} <{}>\r\n", display(from), addr(from)));
    h.push_str(&format!("To: {} <{}>\r\n", display(to), addr(to)));
    // Dates advance ~17 minutes per message from 2024-01-01.
    h.push_str(&format!(
        "Date: {}\r\n",
        rfc5322_date(1_704_067_200 + i as u64 * 1000 + rng.below(600))
    ));
    h.push_str(&format!("Message-ID: {id}\r\n"));
    let subject = if !threads.is_empty() && rng.percent(35) {
        let t = rng.below(threads.len() as u64) as usize;
        let parent = threads[t].clone();
        if let Some(last) = parent.references.last() {
            h.push_str(&format!("In-Reply-To: {last}\r\n"));
        }
        // Keep References bounded like real clients do (RFC 5322 §3.6.4 allows trimming).
        let refs: Vec<&String> = parent.references.iter().rev().take(10).rev().collect();
        let refs: Vec<&str> = refs.iter().map(|s| s.as_str()).collect();
        h.push_str(&format!("References: {}\r\n", refs.join("\r\n ")));
        threads[t].references.push(id.clone());
        format!("Re: {}", parent.subject)
    } else {
        let s = sentence(rng, 3, 8);
        if threads.len() < 200 {
            threads.push(Thread {
                subject: s.clone(),
                references: vec![id.clone()],
            });
        }
        s
    };
    if rng.percent(20) {
        let u = *rng.pick(UTF8_SUBJECTS).unwrap_or(&"Grüße");
        let tail = sentence(rng, 1, 3);
        h.push_str(&format!(
            "Subject: {}\r\n",
            encoded_word(rng, &format!("{u} {tail}"))
        ));
    } else {
        h.push_str(&format!("Subject: {subject}\r\n"));
    }
    h.push_str("MIME-Version: 1.0\r\n");
    // Size class: most a few KB, a tail to hundreds of KB.
    let r = rng.below(1000);
    let text_len = match r {
        0..=699 => rng.range(300, 4000),
        700..=899 => rng.range(4000, 20000),
        _ => rng.range(1000, 6000),
    } as usize;
    let attach_len = match r {
        900..=979 => rng.range(20_000, 120_000) as usize,
        980.. => rng.range(120_000, 600_000) as usize,
        _ => 0,
    };
    let text = paragraphs(rng, text_len);
    let boundary = format!("=_b{i:x}_{:x}", rng.next_u64() & 0xffff_ffff);
    let kind = if attach_len > 0 { 5 } else { rng.below(10) };
    match kind {
        // text/plain
        0..=4 => {
            h.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            h.push_str(&text);
        }
        // multipart/mixed with an attachment
        5..=6 => {
            let len = if attach_len > 0 {
                attach_len
            } else {
                rng.range(2000, 15000) as usize
            };
            h.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
            ));
            h.push_str("This is a multi-part message in MIME format.\r\n");
            h.push_str(&format!(
                "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
            ));
            let name = if rng.percent(30) {
                "filename*=UTF-8''r%C3%A9sum%C3%A9.pdf".to_string()
            } else {
                format!("filename=\"report-{i}.pdf\"")
            };
            h.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\
                 Content-Disposition: attachment; {name}\r\n\r\n{}",
                base64_lines(rng, len)
            ));
            h.push_str(&format!("--{boundary}--\r\n"));
        }
        // multipart/alternative with HTML
        7..=8 => {
            h.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
            ));
            h.push_str(&format!(
                "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
            ));
            h.push_str(&format!(
                "--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{}</p></body></html>\r\n",
                text.replace("\r\n\r\n", "</p>\r\n<p>")
            ));
            h.push_str(&format!("--{boundary}--\r\n"));
        }
        // forwarded message (nested message/rfc822)
        _ => {
            h.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
            ));
            h.push_str(&format!(
                "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee below.\r\n"
            ));
            h.push_str(&format!(
                "--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
            ));
            h.push_str(&format!(
                "From: {} <{}>\r\nSubject: Fwd: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{text}",
                display(to),
                addr(to),
                sentence(rng, 2, 5),
                rfc5322_date(1_700_000_000 + i as u64 * 77),
            ));
            h.push_str(&format!("--{boundary}--\r\n"));
        }
    }
    h.into_bytes()
}

fn addr(name: &str) -> String {
    let first = name.split(' ').next().unwrap_or("user");
    let ascii: String = first.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("{}@corpus.example", ascii.to_ascii_lowercase())
}

/// A display name, as an RFC 2047 encoded-word when not ASCII.
fn display(name: &str) -> String {
    if name.is_ascii() {
        format!("\"{name}\"")
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
    }
}

/// RFC 2047 §4: B or Q encoding, chosen at random.
fn encoded_word(rng: &mut Rng, s: &str) -> String {
    if rng.percent(50) {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    } else {
        let mut q = String::new();
        for b in s.bytes() {
            match b {
                b' ' => q.push('_'),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => q.push(b as char),
                _ => q.push_str(&format!("={b:02X}")),
            }
        }
        format!("=?UTF-8?Q?{q}?=")
    }
}

fn sentence(rng: &mut Rng, lo: u64, hi: u64) -> String {
    let n = rng.range(lo, hi);
    let words: Vec<&str> = (0..n)
        .map(|_| *rng.pick(WORDS).unwrap_or(&"mail"))
        .collect();
    capitalize(&words.join(" "))
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// About `len` bytes of text in paragraphs, lines wrapped under 78 columns (RFC 5322 §2.1.1).
fn paragraphs(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len + 100);
    let mut col = 0;
    while out.len() < len {
        let w = *rng.pick(WORDS).unwrap_or(&"mail");
        if col + w.len() + 1 > 72 {
            out.push_str("\r\n");
            col = 0;
            if rng.percent(15) {
                out.push_str("\r\n");
            }
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(w);
        col += w.len();
    }
    out.push_str("\r\n");
    out
}

fn base64_lines(rng: &mut Rng, len: usize) -> String {
    let mut raw = Vec::with_capacity(len + 8);
    while raw.len() < len {
        raw.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    raw.truncate(len);
    let enc = base64::engine::general_purpose::STANDARD.encode(&raw);
    let mut out = String::with_capacity(enc.len() + enc.len() / 38);
    for chunk in enc.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

/// `Mon, 01 Jan 2024 10:00:00 +0000` for a Unix time (RFC 5322 §3.3).
pub fn rfc5322_date(t: u64) -> String {
    let days = t / 86_400;
    let secs = t % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day) — H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Splits an mbox: messages start at `From ` lines at the start of the file or after a blank
/// line; `>From ` (any number of `>`) loses one `>` (mboxrd); line ends become CRLF.
pub fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut prev_blank = true;
    for raw in data.split_inclusive(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if prev_blank && line.starts_with(b"From ") {
            if let Some(mut m) = cur.take() {
                // The blank line before `From ` belongs to the mbox format, not the message.
                if m.ends_with(b"\r\n\r\n") {
                    m.truncate(m.len() - 2);
                }
                out.push(m);
            }
            cur = Some(Vec::new());
            prev_blank = false;
            continue;
        }
        prev_blank = line.is_empty();
        let Some(m) = cur.as_mut() else { continue };
        let gt = line.iter().take_while(|&&b| b == b'>').count();
        if gt > 0 && line[gt..].starts_with(b"From ") {
            m.extend_from_slice(&line[1..]);
        } else {
            m.extend_from_slice(line);
        }
        m.extend_from_slice(b"\r\n");
    }
    if let Some(mut m) = cur {
        if m.ends_with(b"\r\n\r\n") {
            m.truncate(m.len() - 2);
        }
        out.push(m);
    }
    out.retain(|m| !m.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = Corpus::generate(42, 150);
        let b = Corpus::generate(42, 150);
        let c = Corpus::generate(43, 150);
        assert_eq!(a.messages, b.messages);
        assert_ne!(a.messages, c.messages);
        // A prefix of a bigger corpus is the smaller corpus.
        let d = Corpus::generate(42, 40);
        assert_eq!(&a.messages[..40], &d.messages[..]);
    }

    #[test]
    fn realistic_shape() {
        let c = Corpus::generate(7, 1000);
        let mut sizes: Vec<usize> = c.messages.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert!(
            sizes[500] < 10_000,
            "median {} should be a few KB",
            sizes[500]
        );
        assert!(
            sizes[999] > 100_000,
            "largest {} should reach hundreds of KB",
            sizes[999]
        );
        let has = |needle: &str| {
            c.messages
                .iter()
                .any(|m| m.windows(needle.len()).any(|w| w == needle.as_bytes()))
        };
        for needle in [
            "multipart/alternative",
            "text/html",
            "message/rfc822",
            "In-Reply-To:",
            "=?UTF-8?",
            "filename*=",
        ] {
            assert!(has(needle), "no message has {needle}");
        }
        for m in &c.messages {
            // CRLF only: every LF is preceded by CR.
            for (i, &b) in m.iter().enumerate() {
                if b == b'\n' {
                    assert!(i > 0 && m[i - 1] == b'\r');
                }
            }
            assert!(
                m.windows(4).any(|w| w == b"\r\n\r\n"),
                "header/body separator"
            );
        }
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(
            rfc5322_date(1_704_067_200),
            "Mon, 01 Jan 2024 00:00:00 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn mbox_split_and_unquote() {
        let mbox = b"From a@b Thu Jan  1 00:00:00 2024\nSubject: one\n\n>From the start\nbody\n\nFrom c@d Thu Jan  1 00:00:00 2024\nSubject: two\n\nx\n";
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            b"Subject: one\r\n\r\nFrom the start\r\nbody\r\n".to_vec()
        );
        assert_eq!(m[1], b"Subject: two\r\n\r\nx\r\n".to_vec());
    }
}
