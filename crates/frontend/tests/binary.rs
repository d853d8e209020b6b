//! BINARY (RFC 3516) over real sockets against a real storage node: the capability, FETCH
//! BINARY[section]<partial>, BINARY.PEEK, BINARY.SIZE, `NO [UNKNOWN-CTE]`, `~{n}` literal8 in
//! APPEND (synchronizing and, after login, non-synchronizing), and SEARCH matching the text
//! BINARY decodes (issue 9: one decoder for both).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{Client, Env};
use tokio::net::TcpStream;

/// Three parts: quoted-printable text with the defects decoders disagree on (lowercase hex, a
/// malformed escape, a soft line break, white space before the line break), base64 without
/// its padding that decodes to NUL octets, and an encoding nobody knows.
const MULTIPART: &str = "From: Bob <bob@example.org>\r\n\
Subject: binary\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
caf=C3=A9 lower=c3=a9 bad=ZZ soft=\r\n\
break trailing  \r\n\
--b\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAwRo\r\n\
ZWxsbw\r\n\
--b\r\n\
Content-Type: application/x-thing\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\
\r\n\
begin 644 thing\r\n\
--b--\r\n";

/// Part 1 of [`MULTIPART`] decoded.
const TEXT: &str = "café loweré bad=ZZ softbreak trailing";

/// Part 2 of [`MULTIPART`] decoded.
const OCTETS: &[u8] = b"\0\x01\x02\x03\x04hello";

/// A logged-in client with INBOX selected, holding [`MULTIPART`] as message 1.
async fn with_multipart(env: &Env) -> Client<TcpStream> {
    let mut c = env.login().await;
    let appended = c.append("INBOX", "", MULTIPART).await;
    assert!(appended.contains("OK"), "{appended}");
    c.ok("SELECT INBOX").await;
    c
}

/// The single `* n FETCH (...)` line among `lines`.
fn fetch_line(lines: &[String]) -> &str {
    let fetches: Vec<&String> = lines.iter().filter(|l| l.contains(" FETCH (")).collect();
    assert_eq!(fetches.len(), 1, "{lines:?}");
    fetches[0]
}

/// RFC 3516 §4.1: BINARY is advertised, before and after login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_is_advertised() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let caps = c.ok("CAPABILITY").await;
    assert!(caps[0].split(' ').any(|cap| cap == "BINARY"), "{caps:?}");
    c.ok(&format!("LOGIN {} \"{}\"", common::USER, common::PASSWORD)).await;
    let caps = c.ok("CAPABILITY").await;
    assert!(caps[0].split(' ').any(|cap| cap == "BINARY"), "{caps:?}");
    env.stop().await;
}

/// RFC 3516 §4.2: BINARY decodes, BINARY.PEEK does not set `\Seen`, BINARY does; `<partial>`
/// cuts the decoded data; BINARY.SIZE is the decoded size; NUL octets come as `literal8`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_binary_peek_partial_and_size() {
    let env = Env::start().await;
    let mut c = with_multipart(&env).await;

    let peek = c.ok("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])").await;
    let line = fetch_line(&peek);
    assert!(line.contains(&format!("BINARY[1] {{{}}}\r\n{TEXT}", TEXT.len())), "{line}");
    assert!(line.contains(&format!("BINARY.SIZE[1] {}", TEXT.len())), "{line}");
    assert!(!line.contains("FLAGS"), "{line}");
    let flags = c.ok("FETCH 1 FLAGS").await;
    assert!(!fetch_line(&flags).contains("\\Seen"), "BINARY.PEEK set \\Seen: {flags:?}");

    // `café ` is 6 octets: the origin counts decoded octets.
    let partial = c.ok("FETCH 1 BINARY.PEEK[1]<6.5>").await;
    assert!(fetch_line(&partial).contains("BINARY[1] {5}\r\nlower"), "{partial:?}");

    // Base64 decoding to NUL octets: a literal8 (`~{n}`); without them a plain literal.
    let octets = c.ok("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])").await;
    let line = fetch_line(&octets);
    let expected = format!("BINARY[2] ~{{{}}}\r\n{}", OCTETS.len(), String::from_utf8_lossy(OCTETS));
    assert!(line.contains(&expected), "{line:?}");
    assert!(line.contains(&format!("BINARY.SIZE[2] {}", OCTETS.len())), "{line}");
    let tail = c.ok("FETCH 1 BINARY.PEEK[2]<5.100>").await;
    assert!(fetch_line(&tail).contains("BINARY[2] {5}\r\nhello"), "{tail:?}");

    // Without .PEEK the message becomes \Seen, and the FETCH says so (RFC 3501 §6.4.5).
    let seen = c.ok("FETCH 1 BINARY[1]").await;
    assert!(fetch_line(&seen).contains("\\Seen"), "{seen:?}");
    env.stop().await;
}

/// RFC 3516 §4.2: a part whose encoding the server cannot decode fails the FETCH with
/// `NO [UNKNOWN-CTE]`; BODY[] of the same part still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_encoding_is_unknown_cte() {
    let env = Env::start().await;
    let mut c = with_multipart(&env).await;
    let (_, tagged) = c.run("FETCH 1 BINARY.PEEK[3]").await;
    assert!(tagged.contains(" NO [UNKNOWN-CTE]"), "{tagged}");
    let (_, tagged) = c.run("FETCH 1 BINARY.SIZE[3]").await;
    assert!(tagged.contains(" NO [UNKNOWN-CTE]"), "{tagged}");
    let body = c.ok("FETCH 1 BODY.PEEK[3]").await;
    assert!(fetch_line(&body).contains("begin 644 thing"), "{body:?}");
    c.ok("NOOP").await;
    env.stop().await;
}

/// Issue 9: SEARCH matches the text as BINARY decodes it, defects included: the soft line
/// break joins `soft` and `break`, and the malformed `=ZZ` stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_what_binary_decodes() {
    let env = Env::start().await;
    let mut c = with_multipart(&env).await;
    for needle in ["softbreak", "bad=ZZ"] {
        assert_eq!(c.ok(&format!("SEARCH BODY \"{needle}\"")).await, vec!["* SEARCH 1".to_owned()], "{needle}");
    }
    // The raw quoted-printable is not what is searched.
    assert_eq!(c.ok("SEARCH BODY \"soft=\"").await, vec!["* SEARCH".to_owned()]);
    env.stop().await;
}

/// RFC 3516 §4.4: APPEND takes a `~{n}` literal8, whose octets may include NUL; BINARY gives
/// them back unchanged. After login LITERAL+ (RFC 7888) applies to literal8 too: `~{n+}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_literal8() {
    let env = Env::start().await;
    let mut c = env.login().await;
    let mut message = b"Subject: nul\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n".to_vec();
    message.extend_from_slice(b"\0\x01\x02 raw\r\n");

    // Synchronizing: the continuation request comes first.
    c.send(format!("b1 APPEND INBOX ~{{{}}}\r\n", message.len()).as_bytes()).await;
    let cont = c.line().await;
    assert!(cont.starts_with("+ "), "{cont}");
    c.send(&message).await;
    c.send(b"\r\n").await;
    let (_, tagged) = c.until_tagged("b1").await;
    assert!(tagged.starts_with("b1 OK [APPENDUID "), "{tagged}");

    // Non-synchronizing: all in one go.
    let mut nonsync = format!("b2 APPEND INBOX ~{{{}+}}\r\n", message.len()).into_bytes();
    nonsync.extend_from_slice(&message);
    nonsync.extend_from_slice(b"\r\n");
    c.send(&nonsync).await;
    let (_, tagged) = c.until_tagged("b2").await;
    assert!(tagged.starts_with("b2 OK [APPENDUID "), "{tagged}");

    c.ok("SELECT INBOX").await;
    let whole = String::from_utf8_lossy(&message).into_owned();
    for seq in [1, 2] {
        let fetched = c.ok(&format!("FETCH {seq} (BINARY.PEEK[] BINARY.PEEK[1] BINARY.SIZE[])")).await;
        let line = fetch_line(&fetched);
        assert!(line.contains(&format!("BINARY[] ~{{{}}}\r\n{whole}", message.len())), "{line:?}");
        assert!(line.contains("BINARY[1] ~{9}\r\n\0\x01\x02 raw\r\n"), "{line:?}");
        assert!(line.contains(&format!("BINARY.SIZE[] {}", message.len())), "{line:?}");
    }
    env.stop().await;
}
