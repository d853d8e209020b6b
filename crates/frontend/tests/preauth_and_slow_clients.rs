//! What a client costs before it logs in (literal caps, connections per address, refusals at
//! accept), and what happens to one that stops reading (the write deadline).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Client, Env, PASSWORD, USER, WAIT};
use mailraft_frontend::TlsMode;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Counts every counter the front-end increments, by name and labels.
#[derive(Default)]
struct Counters(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Counters {
    /// The process-wide recorder, installed on first use.
    fn get() -> &'static Counters {
        static COUNTERS: OnceLock<&'static Counters> = OnceLock::new();
        COUNTERS.get_or_init(|| {
            let counters: &'static Counters = Box::leak(Box::default());
            metrics::set_global_recorder(ByRef(counters)).expect("no other recorder in this test binary");
            counters
        })
    }

    /// `name{label=value,...}` (labels sorted) → current value, 0 if never incremented.
    fn value(&self, name_and_labels: &str) -> u64 {
        let map = self.0.lock().unwrap();
        map.get(name_and_labels).map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(name).or_default().clone()
    }
}

struct ByRef(&'static Counters);

impl Recorder for ByRef {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.slot(key))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Polls `condition` until it holds, failing after `WAIT`.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn plain() -> TlsMode {
    TlsMode::Plain { starttls: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preauth_sync_literal_over_the_cap_is_refused_before_it_is_sent() {
    let counters = Counters::get();
    let env = Env::start_with(|c| c.max_preauth_literal_bytes = 1024, plain()).await;
    let mut c = env.client().await;
    // Only the announcement goes out: the answer comes without a continuation request, so the
    // 64 MiB are never sent, let alone buffered.
    c.send(b"a1 LOGIN {67108864}\r\n").await;
    assert_eq!(c.line().await, "a1 NO [TOOBIG] literal too big");
    c.send(b"a2 LOGIN {1025}\r\n").await;
    assert_eq!(c.line().await, "a2 NO [TOOBIG] literal too big");
    assert_eq!(counters.value("mailraft_imap_literals_refused_total{form=sync,stage=preauth}"), 2);
    // The connection goes on, and literals under the cap are taken.
    c.send(format!("a3 LOGIN {{{}}}\r\n", USER.len()).as_bytes()).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(format!("{USER} {{{}}}\r\n", PASSWORD.len()).as_bytes()).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(format!("{PASSWORD}\r\n").as_bytes()).await;
    assert!(c.line().await.starts_with("a3 OK"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preauth_nonsync_literal_over_literal_minus_is_refused_and_closes() {
    let counters = Counters::get();
    let env = Env::start().await;
    let mut c = env.client().await;
    let caps = c.ok("CAPABILITY").await;
    assert!(caps[0].contains("LITERAL-") && !caps[0].contains("LITERAL+"), "{caps:?}");
    // RFC 7888 §5: up to 4096 bytes are fine before login ...
    let mut id = b"a1 ID (\"name\" {4096+}\r\n".to_vec();
    id.extend(std::iter::repeat_n(b'x', 4096));
    id.extend_from_slice(b")\r\n");
    c.send(&id).await;
    let (_, tagged) = c.until_tagged("a1").await;
    assert_eq!(tagged, "a1 OK ID completed");
    // ... one byte more is refused with BAD [TOOBIG] and the connection closes without the
    // server waiting for (or reading) the literal, which is never sent here.
    c.send(b"a2 LOGIN {4097+}\r\n").await;
    assert_eq!(c.line().await, "a2 BAD [TOOBIG] literal too big");
    assert_eq!(c.line().await, "* BYE literal too big, closing");
    assert!(c.line().await.ends_with("<EOF>"));
    assert_eq!(counters.value("mailraft_imap_literals_refused_total{form=nonsync,stage=preauth}"), 1);

    // After login, LITERAL+ is back.
    let mut d = env.client().await;
    let (_, tagged) = d.run(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(tagged.contains("LITERAL+") && !tagged.contains("LITERAL-"), "{tagged}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_login_the_full_literal_cap_applies() {
    let env = Env::start_with(|c| c.max_preauth_literal_bytes = 1024, plain()).await;
    let mut c = env.login().await;
    let big = common::message("big", &"y".repeat(100 * 1024));
    // Synchronizing ...
    let appended = c.append("INBOX", "", &big).await;
    assert!(appended.contains("OK"), "{appended}");
    // ... and non-synchronizing, pipelined right behind LOGIN: the caps switch between messages.
    let mut d = env.client().await;
    let mut pipelined =
        format!("a1 LOGIN {USER} \"{PASSWORD}\"\r\na2 APPEND INBOX {{{}+}}\r\n", big.len()).into_bytes();
    pipelined.extend_from_slice(big.as_bytes());
    pipelined.extend_from_slice(b"\r\n");
    d.send(&pipelined).await;
    assert!(d.until_tagged("a1").await.1.starts_with("a1 OK"));
    let (_, tagged) = d.until_tagged("a2").await;
    assert!(tagged.starts_with("a2 OK"), "{tagged}");
    env.stop().await;
}

/// Connects and returns the first line the server sends (greeting or BYE).
async fn first_line(env: &Env) -> (Client<TcpStream>, String) {
    let mut c = Client::new(TcpStream::connect(env.imap).await.unwrap());
    let line = c.line().await;
    (c, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_per_address_are_capped() {
    let counters = Counters::get();
    let refused = "mailraft_imap_connections_refused_total{reason=preauth_per_ip}";
    let env = Env::start_with(|c| c.max_preauth_per_ip = 3, plain()).await;
    let mut first = env.client().await;
    let second = env.client().await;
    let _third = env.client().await;

    let (mut fourth, line) = first_line(&env).await;
    assert_eq!(line, "* BYE too many unauthenticated connections from your address");
    assert!(fourth.line().await.ends_with("<EOF>"));
    assert_eq!(counters.value(refused), 1);

    // Logging in gives the slot back.
    first.ok(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    let (_fourth, line) = first_line(&env).await;
    assert!(line.starts_with("* OK"), "{line}");
    let (_, line) = first_line(&env).await;
    assert!(line.starts_with("* BYE"), "{line}");

    // So does leaving, once the server has seen the connection end.
    drop(second);
    let deadline = Instant::now() + WAIT;
    let _fifth = loop {
        let (c, line) = first_line(&env).await;
        if line.starts_with("* OK") {
            break c;
        }
        assert!(line.starts_with("* BYE"), "{line}");
        assert!(Instant::now() < deadline, "the closed connection's slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(counters.value(refused) >= 2);
    first.ok("NOOP").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_inline() {
    let counters = Counters::get();
    let env = Env::start_with(|c| c.max_connections = 1, plain()).await;
    let _only = env.client().await;
    let (mut refused, line) = first_line(&env).await;
    assert_eq!(line, "* BYE too many connections, try again later");
    assert!(refused.line().await.ends_with("<EOF>"));
    assert_eq!(counters.value("mailraft_imap_connections_refused_total{reason=max_connections}"), 1);
    env.stop().await;
}

/// Pipelined FETCHes of the big message: far more bytes than socket buffers hold.
const FETCHES: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_at_the_write_deadline() {
    let counters = Counters::get();
    let timeouts = "mailraft_imap_write_timeouts_total{}";
    let env = Env::start_with(|c| c.write_timeout = Duration::from_secs(1), plain()).await;
    let mut writer = env.login().await;
    let big = common::message("big", &"z".repeat(1024 * 1024));
    let appended = writer.append("INBOX", "", &big).await;
    assert!(appended.contains("OK"), "{appended}");

    // A small receive buffer, so the client's window closes early.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = Client::new(socket.connect(env.imap).await.unwrap());
    assert!(stalled.line().await.starts_with("* OK"));
    stalled.ok(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    stalled.ok("SELECT INBOX").await;
    let fetches: String = (0..FETCHES).map(|n| format!("f{n} FETCH 1 BODY.PEEK[]\r\n")).collect();
    stalled.send(fetches.as_bytes()).await;

    // Not reading from here on: the server gives up at its write deadline ...
    eventually("the write timeout", || counters.value(timeouts) >= 1).await;
    // ... and has closed the connection: what the socket still holds ends before the last reply.
    let mut io = stalled.into_inner();
    let mut received = Vec::new();
    let mut chunk = vec![0; 1 << 16];
    let deadline = Instant::now() + WAIT;
    loop {
        let read = tokio::time::timeout_at(deadline, io.read(&mut chunk)).await;
        match read.expect("the server closed the connection") {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    let done = b" OK FETCH completed";
    let replies = received.windows(done.len()).filter(|w| w == done).count();
    assert!(replies < FETCHES, "all {replies} FETCHes were answered");

    // Everyone else is served as before.
    writer.ok("NOOP").await;
    let _ = io.shutdown().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preauth_deadline_is_not_extended_by_activity() {
    let env = Env::start_with(|c| c.preauth_timeout = Duration::from_secs(2), plain()).await;
    let (read, mut write) = TcpStream::connect(env.imap).await.unwrap().into_split();
    let mut read = tokio::io::BufReader::new(read);
    let mut line = String::new();
    let greeting = tokio::time::timeout(WAIT, read.read_line(&mut line)).await.unwrap().unwrap();
    assert!(greeting > 0 && line.starts_with("* OK"), "{line}");
    // A byte every 200 ms, never a whole line: each read used to restart the deadline.
    line.clear();
    let deadline = Instant::now() + WAIT;
    while line.is_empty() {
        assert!(Instant::now() < deadline, "the pre-login deadline never closed a trickling client");
        let _ = write.write_all(b"x").await;
        let _ = tokio::time::timeout(Duration::from_millis(200), read.read_line(&mut line)).await;
    }
    assert!(line.starts_with("* BYE"), "{line}");
    line.clear();
    let eof = tokio::time::timeout(WAIT, read.read_line(&mut line)).await.unwrap();
    assert!(matches!(eof, Ok(0) | Err(_)), "{line}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_refused_commands_before_login_close_the_connection() {
    let env = Env::start_with(|c| c.max_line_bytes = 1024, plain()).await;
    let (mut c, greeting) = first_line(&env).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    // Over-long lines and unknown commands count alike.
    let long = format!("a0 NOOP {}\r\n", "x".repeat(2000));
    c.send(long.as_bytes()).await;
    assert!(c.line().await.starts_with("a0 BAD"));
    for i in 1..mailraft_frontend::connection::MAX_PREAUTH_REFUSALS {
        c.send(format!("a{i} FROB\r\n").as_bytes()).await;
        let reply = c.line().await;
        assert!(reply.starts_with(&format!("a{i} BAD")), "{reply}");
    }
    let bye = c.line().await;
    assert!(bye.starts_with("* BYE"), "{bye}");
    assert!(c.line().await.ends_with("<EOF>"));
    // After login, BAD answers do not close the connection.
    let mut c = env.login().await;
    for i in 0..mailraft_frontend::connection::MAX_PREAUTH_REFUSALS + 1 {
        assert!(c.tagged(&format!("FROB{i}")).await.contains("BAD"));
    }
    c.ok("NOOP").await;
    env.stop().await;
}
