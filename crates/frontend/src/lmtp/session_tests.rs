//! The session and connection loop over an in-memory pipe, with a fake backend.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::lmtp::connection;

/// Users by local part: `bob` and `carol` exist, `dora` is disabled, `fred` is over quota at
/// delivery time (but passes RCPT), `quota` is over quota at RCPT time; the domain is
/// `example.org`.
#[derive(Default)]
struct Fake {
    delivered: Mutex<Vec<(Envelope, Vec<u8>)>>,
}

impl Backend for Fake {
    async fn check_recipient(&self, rcpt: &Address, _size: Option<u64>) -> Verdict {
        if rcpt.domain != "example.org" {
            return Verdict::UnknownDomain;
        }
        match rcpt.local.split('+').next().unwrap_or_default() {
            "bob" | "carol" | "fred" => Verdict::Ok,
            "dora" => Verdict::Disabled,
            "quota" => Verdict::OverQuota,
            _ => Verdict::UnknownUser,
        }
    }

    async fn deliver(&self, envelope: &Envelope, body: Vec<u8>) -> Vec<Verdict> {
        self.delivered.lock().unwrap().push((envelope.clone(), body));
        envelope.recipients.iter().map(|r| if r.local == "fred" { Verdict::OverQuota } else { Verdict::Ok }).collect()
    }
}

fn config() -> LmtpConfig {
    LmtpConfig {
        hostname: "lmtp.test".into(),
        max_message_bytes: 1000,
        max_recipients: 3,
        max_errors: 5,
        idle_timeout: Duration::from_secs(300),
        ..LmtpConfig::default()
    }
}

/// A client end of a connection served by `fake` in a background task.
struct Client {
    io: DuplexStream,
    seen: String,
}

impl Client {
    fn start(fake: std::sync::Arc<Fake>, config: LmtpConfig) -> (Client, tokio::task::JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move {
            connection::serve(server, &*fake, config, CancellationToken::new()).await;
        });
        (Client { io: client, seen: String::new() }, task)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    /// Reads until `n` final reply lines (`ddd ` lines) more have arrived; returns them all.
    async fn replies(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            if let Some(end) = self.seen.find("\r\n") {
                let line: String = self.seen.drain(..end + 2).collect();
                let line = line.trim_end().to_owned();
                if line.as_bytes().get(3) == Some(&b'-') {
                    continue;
                }
                out.push(line);
                continue;
            }
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut buf)).await;
            let n = read.expect("reply within 5 s").unwrap();
            assert!(n > 0, "connection closed; got {out:?}");
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        out
    }

    async fn expect(&mut self, send: &str, want: &[&str]) {
        self.send(send.as_bytes()).await;
        let got = self.replies(want.len()).await;
        let ok = got.iter().zip(want).all(|(g, w)| g.starts_with(w));
        assert!(ok, "sent {send:?}: got {got:?}, want {want:?}");
    }

    /// Reads to the end of the stream.
    async fn rest(&mut self) -> String {
        let mut all = std::mem::take(&mut self.seen);
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), self.io.read_to_end(&mut buf)).await.unwrap().unwrap();
        all.push_str(&String::from_utf8_lossy(&buf));
        all
    }
}

async fn greeted(fake: &std::sync::Arc<Fake>) -> Client {
    let (mut c, _task) = Client::start(fake.clone(), config());
    assert_eq!(c.replies(1).await, ["220 lmtp.test LMTP Mailraft ready"]);
    c
}

#[tokio::test]
async fn lhlo_advertises_exactly_what_is_implemented() {
    let fake = std::sync::Arc::new(Fake::default());
    let (mut c, _task) = Client::start(fake, config());
    c.send(b"LHLO mx.test\r\nQUIT\r\n").await;
    let all = c.rest().await;
    assert_eq!(
        all,
        "220 lmtp.test LMTP Mailraft ready\r\n250-lmtp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n\
         250-8BITMIME\r\n250-SIZE 1000\r\n250 CHUNKING\r\n221 2.0.0 lmtp.test closing connection\r\n"
    );
}

#[tokio::test]
async fn command_order_is_enforced() {
    let fake = std::sync::Arc::new(Fake::default());
    // More refusals below than the 5 the other tests allow before the connection is closed.
    let (mut c, _task) = Client::start(fake, LmtpConfig { max_errors: 20, ..config() });
    c.replies(1).await;
    c.expect("EHLO mx\r\n", &["500 5.5.1"]).await;
    c.expect("MAIL FROM:<a@b.c>\r\n", &["503 5.5.1"]).await;
    c.expect("LHLO mx\r\n", &["250 CHUNKING"]).await;
    c.expect("RCPT TO:<bob@example.org>\r\n", &["503 5.5.1"]).await;
    c.expect("DATA\r\n", &["503 5.5.1"]).await;
    c.expect("MAIL FROM:<a@b.c>\r\n", &["250 2.1.0"]).await;
    c.expect("MAIL FROM:<a@b.c>\r\n", &["503 5.5.1"]).await;
    c.expect("RCPT TO:<nobody@example.org>\r\n", &["550 5.1.1"]).await;
    // RFC 2033 §4.2: DATA without an accepted recipient is 503.
    c.expect("DATA\r\n", &["503 5.5.1"]).await;
    c.expect("RSET\r\n", &["250 2.0.0"]).await;
    c.expect("RCPT TO:<bob@example.org>\r\n", &["503 5.5.1"]).await;
    c.expect("VRFY bob\r\n", &["252 2.5.0"]).await;
    c.expect("NOOP\r\n", &["250 2.0.0"]).await;
    c.expect("QUIT\r\n", &["221 2.0.0"]).await;
    assert_eq!(c.rest().await, "");
}

#[tokio::test]
async fn one_reply_per_recipient_after_data() {
    let fake = std::sync::Arc::new(Fake::default());
    let mut c = greeted(&fake).await;
    c.expect("LHLO mx\r\n", &["250 CHUNKING"]).await;
    c.expect("MAIL FROM:<s@src.test> BODY=8BITMIME\r\n", &["250 2.1.0"]).await;
    c.expect("RCPT TO:<bob@example.org>\r\n", &["250 2.1.5"]).await;
    c.expect("RCPT TO:<ghost@example.org>\r\n", &["550 5.1.1 <ghost@example.org> no such user"]).await;
    c.expect("RCPT TO:<dora@example.org>\r\n", &["550 5.2.1"]).await;
    c.expect("RCPT TO:<quota@example.org>\r\n", &["552 5.2.2"]).await;
    c.expect("RCPT TO:<x@elsewhere.test>\r\n", &["550 5.1.2"]).await;
    c.expect("RCPT TO:<fred@example.org>\r\n", &["250 2.1.5"]).await;
    c.expect("RCPT TO:<carol+lists@example.org>\r\n", &["250 2.1.5"]).await;
    c.expect("DATA\r\n", &["354"]).await;
    c.expect(
        "Subject: hi\r\n\r\n..dot\r\n.\r\n",
        &["250 2.0.0 <bob@example.org>", "552 5.2.2 <fred@example.org>", "250 2.0.0 <carol+lists@example.org>"],
    )
    .await;
    let delivered = fake.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1);
    let (env, body) = &delivered[0];
    assert_eq!(env.from.as_ref().map(ToString::to_string).as_deref(), Some("s@src.test"));
    let rcpts: Vec<String> = env.recipients.iter().map(ToString::to_string).collect();
    assert_eq!(rcpts, ["bob@example.org", "fred@example.org", "carol+lists@example.org"]);
    assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\n");
}

#[tokio::test]
async fn a_pipelined_group_gets_its_replies_in_order() {
    let fake = std::sync::Arc::new(Fake::default());
    let mut c = greeted(&fake).await;
    c.send(b"LHLO mx\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<no@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n")
        .await;
    let got = c.replies(6).await;
    let codes: Vec<&str> = got.iter().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "550", "250", "354"]);
    c.expect("body\r\n.\r\nNOOP\r\n", &["250 2.0.0 <bob", "250 2.0.0 <carol", "250 2.0.0 OK"]).await;
    assert_eq!(fake.delivered.lock().unwrap()[0].0.from, None);
}

#[tokio::test]
async fn bdat_chunks_are_assembled_exactly() {
    let fake = std::sync::Arc::new(Fake::default());
    let mut c = greeted(&fake).await;
    c.expect("LHLO mx\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<bob@example.org>\r\n", &["250", "250 2.1.0", "250 2.1.5"]).await;
    // Pipelined chunks; the octets are taken as they are (no dot-stuffing, bare CR and LF kept).
    c.send(b"BDAT 7\r\n.\r\nab\rcBDAT 3\r\n\nx\nBDAT 0 LAST\r\n").await;
    let got = c.replies(3).await;
    assert_eq!(got, ["250 2.0.0 7 octets received", "250 2.0.0 10 octets received", "250 2.0.0 <bob@example.org> delivered"]);
    assert_eq!(fake.delivered.lock().unwrap()[0].1, b".\r\nab\rc\nx\n");
    // DATA and BDAT do not mix.
    c.expect("MAIL FROM:<a@b.c>\r\nRCPT TO:<bob@example.org>\r\nBDAT 1\r\nxDATA\r\n", &["250", "250", "250", "503 5.5.1"]).await;
    c.expect("RSET\r\n", &["250 2.0.0"]).await;
}

#[tokio::test]
async fn refused_bdat_octets_are_still_read() {
    let fake = std::sync::Arc::new(Fake::default());
    let mut c = greeted(&fake).await;
    c.expect("LHLO mx\r\n", &["250"]).await;
    // The 5 octets "NOOP\n" are chunk data, not a command.
    c.expect("BDAT 5 LAST\r\nNOOP\nQUIT\r\n", &["503 5.5.1", "221"]).await;
    assert!(fake.delivered.lock().unwrap().is_empty());
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let fake = std::sync::Arc::new(Fake::default());
    let mut c = greeted(&fake).await;
    c.expect("LHLO mx\r\nMAIL FROM:<a@b.c> SIZE=1001\r\n", &["250", "552 5.3.4"]).await;
    c.expect("MAIL FROM:<a@b.c> SIZE=10\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n", &["250", "250", "250", "354"]).await;
    let big = format!("{}\r\n.\r\n", "x".repeat(2000));
    c.expect(&big, &["552 5.3.4", "552 5.3.4"]).await;
    // BDAT: the chunk that passes the limit fails the transaction.
    c.expect("MAIL FROM:<a@b.c>\r\nRCPT TO:<bob@example.org>\r\n", &["250", "250"]).await;
    c.send(format!("BDAT 600\r\n{}BDAT 600 LAST\r\n{}NOOP\r\n", "y".repeat(600), "z".repeat(600)).as_bytes()).await;
    assert_eq!(c.replies(3).await.iter().map(|l| &l[..9]).collect::<Vec<_>>(), ["250 2.0.0", "552 5.3.4", "250 2.0.0"]);
    c.expect("NOOP\r\n", &["250 2.0.0"]).await;
    assert!(fake.delivered.lock().unwrap().is_empty());
}

#[tokio::test]
async fn recipients_per_transaction_are_bounded() {
    let fake = std::sync::Arc::new(Fake::default());
    let mut c = greeted(&fake).await;
    c.expect("LHLO mx\r\nMAIL FROM:<a@b.c>\r\n", &["250", "250"]).await;
    let rcpts = "RCPT TO:<bob@example.org>\r\n".repeat(4);
    c.expect(&rcpts, &["250", "250", "250", "452 4.5.3"]).await;
}

#[tokio::test]
async fn long_lines_and_garbage_get_replies_then_the_door() {
    let fake = std::sync::Arc::new(Fake::default());
    let mut c = greeted(&fake).await;
    let long = format!("NOOP {}\r\n", "x".repeat(5000));
    c.expect(&long, &["500 5.5.2 line too long"]).await;
    c.expect("NOOP\r\n", &["250"]).await;
    c.send(b"\xff\r\nFOO\r\nEXPN x\r\nRCPT TO:<x>\r\nHELO\r\n").await;
    let got = c.replies(6).await;
    assert_eq!(got.iter().map(|l| &l[..3]).collect::<Vec<_>>(), ["500", "500", "502", "501", "500", "421"]);
    assert_eq!(c.rest().await, "", "closed after too many errors");
}

#[tokio::test]
async fn idle_clients_are_dropped_with_421() {
    let fake = std::sync::Arc::new(Fake::default());
    let (mut c, task) = Client::start(fake, LmtpConfig { idle_timeout: Duration::from_millis(200), ..config() });
    c.replies(1).await;
    c.expect("NOOP\r\n", &["250"]).await;
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    assert_eq!(c.rest().await, "421 4.4.2 idle timeout, closing connection\r\n");
}
