//! LMTP delivery (RFC 2033) end to end against `mailraft dev`: swaks and a raw socket deliver,
//! IMAP reads the result back.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use support::{Client, Dev, PASSWORD, USER};

/// The domain of the demo tenant.
const DOMAIN: &str = "example.test";

/// A blocking LMTP client that reads whole (multi-line) replies.
struct Lmtp {
    reader: BufReader<TcpStream>,
}

impl Lmtp {
    fn connect(addr: SocketAddr) -> Result<Lmtp> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Lmtp { reader: BufReader::new(s) };
        let greeting = c.reply()?;
        ensure!(greeting.starts_with("220 "), "greeting {greeting:?}");
        Ok(c)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.reader.get_mut().write_all(bytes)?;
        Ok(())
    }

    /// One reply: its lines joined, the last one decides.
    fn reply(&mut self) -> Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            ensure!(self.reader.read_line(&mut line)? > 0, "connection closed after {all:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(all.trim_end().to_owned());
            }
        }
    }

    /// The final lines of the next `n` replies.
    fn replies(&mut self, n: usize) -> Result<Vec<String>> {
        (0..n).map(|_| self.reply().map(|r| r.lines().last().unwrap_or_default().to_owned())).collect()
    }
}

/// Creates `login@example.test` with the test password.
fn create_user(dev: &Dev, local: &str) -> Result<()> {
    let mut args = dev.admin_args();
    args.extend(["create-user".to_owned(), format!("{local}@{DOMAIN}")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::mailraft(&args, &format!("{PASSWORD}\n"))?;
    Ok(())
}

/// Every message of `mailbox` of `user`, whole (`BODY.PEEK[]`), in sequence order.
fn messages(dev: &Dev, user: &str, mailbox: &str) -> Result<Vec<Vec<u8>>> {
    let mut c = Client::login_to(dev.imap, user, PASSWORD)?;
    let info = c.open(mailbox, true)?;
    if info.exists == 0 {
        return Ok(Vec::new());
    }
    let r = c.run("FETCH 1:* BODY.PEEK[]")?;
    ensure!(r.is_ok(), "FETCH: {}", r.status);
    let mut out = Vec::new();
    for resp in &r.untagged {
        let Some(at) = find(resp, b"BODY[] {") else { continue };
        let rest = &resp[at + 8..];
        let close = find(rest, b"}\r\n").ok_or_else(|| anyhow!("no literal"))?;
        let n: usize = std::str::from_utf8(&rest[..close])?.parse()?;
        out.push(rest[close + 3..close + 3 + n].to_vec());
    }
    ensure!(out.len() == info.exists as usize, "{} EXISTS, {} bodies", info.exists, out.len());
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The messages of `user`'s `mailbox` whose text contains `marker`.
fn with_marker(dev: &Dev, user: &str, mailbox: &str, marker: &str) -> Result<Vec<Vec<u8>>> {
    Ok(messages(dev, user, mailbox)?.into_iter().filter(|m| find(m, marker.as_bytes()).is_some()).collect())
}

#[test]
fn swaks_delivers_to_several_recipients_in_one_transaction() -> Result<()> {
    let dev = Dev::start()?;
    create_user(&dev, "bob")?;
    create_user(&dev, "dora")?;
    let mut args = dev.admin_args();
    args.extend(["disable-user".to_owned(), format!("dora@{DOMAIN}")]);
    support::mailraft(&args.iter().map(String::as_str).collect::<Vec<_>>(), "")?;

    let to = format!("{USER},nobody@{DOMAIN},dora@{DOMAIN},bob@{DOMAIN}");
    let port = dev.lmtp.port().to_string();
    let out = std::process::Command::new("swaks")
        .args(["--protocol", "LMTP", "--server", "127.0.0.1", "--port", &port, "--from", "sender@remote.test"])
        .args(["--to", &to, "--header", "Subject: swaks-marker-1", "--body", "hello from swaks"])
        .output()
        .context("run swaks (installed by scripts/setup.sh)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("<** 550 5.1.1 <nobody@example.test> no such user"), "{text}");
    assert!(text.contains("<** 550 5.2.1 <dora@example.test> mailbox disabled"), "{text}");
    // RFC 2033 §4.2: after DATA one reply per accepted recipient, in RCPT order.
    let after_data = text.split("\n -> .\n").nth(1).ok_or_else(|| anyhow!("no DATA in swaks output:\n{text}"))?;
    let demo = after_data.find("<-  250 2.0.0 <demo@example.test> delivered");
    let bob = after_data.find("<-  250 2.0.0 <bob@example.test> delivered");
    assert!(matches!((demo, bob), (Some(d), Some(b)) if d < b), "{text}");

    for user in [USER.to_owned(), format!("bob@{DOMAIN}")] {
        let got = with_marker(&dev, &user, "INBOX", "swaks-marker-1")?;
        assert_eq!(got.len(), 1, "{user} has the message once");
        let head = String::from_utf8_lossy(&got[0][..200.min(got[0].len())]).into_owned();
        let want = format!("Return-Path: <sender@remote.test>\r\nDelivered-To: {user}\r\n");
        assert!(head.starts_with(&want), "{user}: {head:?}");
    }
    Ok(())
}

/// Postfix's own LMTP client, as an MTA delivers: several sessions at once, several messages
/// per session; every message it was told was delivered is in the INBOX exactly once.
#[test]
fn postfix_smtp_source_delivers_every_message() -> Result<()> {
    let dev = Dev::start()?;
    create_user(&dev, "pat")?;
    let user = format!("pat@{DOMAIN}");
    let target = format!("127.0.0.1:{}", dev.lmtp.port());
    let (sessions, per_session) = (4, 5);
    let out = std::process::Command::new("/usr/sbin/smtp-source")
        .args(["-L", "-c", "-s", &sessions.to_string(), "-m", &(sessions * per_session).to_string()])
        .args(["-f", "mta@remote.test", "-t", &user, "-S", "smtp-source-marker", &target])
        .output()
        .context("run smtp-source (Debian's postfix, installed by scripts/setup.sh)")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // smtp-source exits non-zero and prints the server's reply when any delivery is refused.
    assert!(out.status.success(), "smtp-source failed: {text}");
    let got = with_marker(&dev, &user, "INBOX", "smtp-source-marker")?;
    assert_eq!(got.len(), sessions * per_session, "delivered messages in INBOX; smtp-source said: {text}");
    for m in &got {
        assert!(m.starts_with(b"Return-Path: <mta@remote.test>\r\nDelivered-To: "), "{:?}", String::from_utf8_lossy(&m[..80.min(m.len())]));
    }
    Ok(())
}

#[test]
fn pipelined_data_round_trips_exactly() -> Result<()> {
    let dev = Dev::start()?;
    create_user(&dev, "bob")?;
    // Lines that need dot-stuffing, an 8-bit line, a lone CR and trailing spaces.
    let message: &[u8] = b"Subject: dots-marker\r\nX-Test: 1\r\n\r\n.\r\n..\r\n.leading\r\nmiddle . dot\r\n\
        caf\xc3\xa9 8bit\r\nlone\rcr  \r\n.\r\n";
    let mut wire = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    let mut c = Lmtp::connect(dev.lmtp)?;
    // RFC 2920: the whole envelope in one write, DATA last.
    let group = format!(
        "LHLO test\r\nMAIL FROM:<> BODY=8BITMIME SIZE={}\r\nRCPT TO:<{USER}>\r\nRCPT TO:<ghost@{DOMAIN}>\r\n\
         RCPT TO:<bob@{DOMAIN}>\r\nDATA\r\n",
        message.len()
    );
    c.send(group.as_bytes())?;
    let lhlo = c.reply()?;
    for ext in ["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE ", "CHUNKING"] {
        assert!(lhlo.contains(ext), "{lhlo}");
    }
    let replies = c.replies(5)?;
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "550", "250", "354"], "{replies:?}");
    assert!(replies[2].starts_with("550 5.1.1"), "{replies:?}");
    c.send(&wire)?;
    c.send(b".\r\nQUIT\r\n")?;
    let done = c.replies(3)?;
    assert!(done[0].starts_with("250 2.0.0") && done[1].starts_with("250 2.0.0"), "{done:?}");
    assert!(done[2].starts_with("221"), "{done:?}");

    for user in [USER.to_owned(), format!("bob@{DOMAIN}")] {
        let got = with_marker(&dev, &user, "INBOX", "dots-marker")?;
        assert_eq!(got.len(), 1, "{user}");
        let mut want = format!("Return-Path: <>\r\nDelivered-To: {user}\r\n").into_bytes();
        want.extend_from_slice(message);
        assert_eq!(String::from_utf8_lossy(&got[0]), String::from_utf8_lossy(&want), "{user}");
        assert_eq!(got[0], want);
    }
    Ok(())
}

#[test]
fn bdat_chunks_and_plus_detail_routing() -> Result<()> {
    let dev = Dev::start()?;
    let mut imap = Client::login_to(dev.imap, USER, PASSWORD)?;
    ensure!(imap.run("CREATE lists")?.is_ok());
    let (local, domain) = USER.split_once('@').ok_or_else(|| anyhow!("bad USER"))?;

    let mut c = Lmtp::connect(dev.lmtp)?;
    let part1: &[u8] = b"Subject: bdat-marker\r\n\r\n.not stuffed\r\n";
    // 8-bit octets and a bare CR (no NUL: IMAP literals cannot carry it without BINARY).
    let part2: &[u8] = b"\xfe\xff 8-bit\rbare CR\r\n.\r\n";
    let mut wire = format!(
        "LHLO test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<{local}+lists@{domain}>\r\nRCPT TO:<{local}+nosuch@{domain}>\r\n\
         BDAT {}\r\n",
        part1.len()
    )
    .into_bytes();
    wire.extend_from_slice(part1);
    wire.extend_from_slice(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    wire.extend_from_slice(part2);
    c.send(&wire)?;
    let replies = c.replies(7)?;
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "250", "250", "250", "250"], "{replies:?}");
    assert!(replies[5].contains("+lists@") && replies[6].contains("+nosuch@"), "{replies:?}");

    let mut body = part1.to_vec();
    body.extend_from_slice(part2);
    // +lists goes to the existing mailbox "lists", +nosuch to INBOX.
    for (mailbox, detail) in [("lists", "lists"), ("INBOX", "nosuch")] {
        let got = with_marker(&dev, USER, mailbox, "bdat-marker")?;
        assert_eq!(got.len(), 1, "{mailbox}");
        let mut want = format!("Return-Path: <s@remote.test>\r\nDelivered-To: {local}+{detail}@{domain}\r\n").into_bytes();
        want.extend_from_slice(&body);
        assert_eq!(got[0], want, "{mailbox}");
    }
    Ok(())
}

#[test]
fn oversized_messages_are_refused_on_tcp_and_the_socket_serves_too() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("lmtp.sock");
    let env = [("MAILRAFT_LMTP__MAX_MESSAGE_BYTES", "4096"), ("MAILRAFT_LMTP__SOCKET", socket.to_str().unwrap_or_default())];
    let dev = Dev::start_with(&dir.path().join("data"), "127.0.0.1:0", &env)?;
    // The Unix socket serves the same protocol.
    let mut unix = std::os::unix::net::UnixStream::connect(&socket).context("connect to lmtp.socket")?;
    unix.set_read_timeout(Some(Duration::from_secs(30)))?;
    unix.write_all(b"LHLO test\r\nQUIT\r\n")?;
    let mut text = String::new();
    unix.read_to_string(&mut text)?;
    assert!(text.starts_with("220 ") && text.contains("250 CHUNKING") && text.ends_with("221 2.0.0 localhost closing connection\r\n"), "{text}");

    let mut c = Lmtp::connect(dev.lmtp)?;
    c.send(b"LHLO test\r\n")?;
    assert!(c.reply()?.contains("SIZE 4096"));
    // Declared too big: refused at MAIL (RFC 1870 §6.2).
    c.send(b"MAIL FROM:<s@remote.test> SIZE=5000\r\n")?;
    assert!(c.reply()?.starts_with("552 5.3.4"));
    // Undeclared and too big: read to its end, then refused for each recipient.
    c.send(format!("MAIL FROM:<s@remote.test>\r\nRCPT TO:<{USER}>\r\nDATA\r\n").as_bytes())?;
    assert_eq!(c.replies(3)?.iter().map(|r| &r[..3]).collect::<Vec<_>>(), ["250", "250", "354"]);
    let big = format!("Subject: big-marker\r\n\r\n{}\r\n.\r\nNOOP\r\n", "x".repeat(5000));
    c.send(big.as_bytes())?;
    let replies = c.replies(2)?;
    assert!(replies[0].starts_with("552 5.3.4"), "{replies:?}");
    assert!(replies[1].starts_with("250"), "the connection goes on: {replies:?}");
    assert!(with_marker(&dev, USER, "INBOX", "big-marker")?.is_empty());
    Ok(())
}

#[test]
fn an_idle_session_sees_the_delivery() -> Result<()> {
    let dev = Dev::start()?;
    let mut imap = Client::login_to(dev.imap, USER, PASSWORD)?;
    let before = imap.open("INBOX", false)?.exists;
    imap.idle_start()?;

    let mut c = Lmtp::connect(dev.lmtp)?;
    c.send(format!("LHLO t\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<{USER}>\r\nDATA\r\n").as_bytes())?;
    assert_eq!(c.replies(4)?.last().map(|r| &r[..3]), Some("354"));
    c.send(b"Subject: idle-marker\r\n\r\nhi\r\n.\r\n")?;
    assert!(c.reply()?.starts_with("250 2.0.0"));

    let mut seen = before;
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = imap.idle_until_exists(before + 1, deadline, &mut seen)?;
    assert_eq!(got, Some(before + 1), "IDLE reported the delivered message");
    imap.idle_done()?;
    Ok(())
}

/// Bytes until the peer closes, for the raw protocol checks below.
fn read_all(c: &mut Lmtp) -> Result<String> {
    let mut out = String::new();
    c.reader.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn bad_input_gets_replies_not_crashes() -> Result<()> {
    let dev = Dev::start()?;
    let mut c = Lmtp::connect(dev.lmtp)?;
    let long = format!("NOOP {}\r\n", "x".repeat(10_000));
    c.send(long.as_bytes())?;
    assert!(c.reply()?.starts_with("500 5.5.2"));
    c.send(b"HELO x\r\nMAIL FROM:<a@b.test>\r\nLHLO x\r\nRCPT TO:<x@y.test>\r\nVRFY demo\r\nBDAT 3 LAST\r\nabcQUIT\r\n")?;
    let replies = c.replies(7)?;
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["500", "503", "250", "503", "252", "503", "221"], "{replies:?}");
    assert_eq!(read_all(&mut c)?, "");
    Ok(())
}
