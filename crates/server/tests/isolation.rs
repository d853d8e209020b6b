//! Blocking work of one kind cannot starve another (issue 7 item 4), at the storage node's gRPC
//! surface: writes commit while tokio's blocking pool is exhausted (the Raft log and apply have
//! threads of their own), FETCH streams whose client does not read hold no read slot, and a
//! stream older than `read_stream_deadline` ends with DEADLINE_EXCEEDED.
//!
//! Each test runs its own runtime and leaves it with `shutdown_background`, and reports failures
//! as errors instead of panicking inside it: when the code under test is wrong, threads stay
//! blocked, and a runtime dropped while unwinding would wait for them forever.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::limits::Limits;
use mailraft_server::{NodeConfig, StorageNode};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tonic::Code;
use tonic::transport::Channel;

use common::{config, ctx};

/// Far above what any call here takes unstarved; a starved call never returns.
const BOUND: Duration = Duration::from_secs(20);
/// The whole of one test.
const TEST_BOUND: Duration = Duration::from_secs(120);
/// The largest HTTP/2 flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;
/// Messages per mailbox: 12 MiB, far more than the chunks and windows between the snapshot and a
/// client that stopped reading can hold, so such a stream cannot complete.
const MESSAGES: usize = 20;

type Outcome = Result<(), String>;

/// Fails the test with a message unless `cond`.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs `body` on a fresh runtime with `max_blocking` blocking threads, bounded in time.
fn run<F: Future<Output = Outcome>>(max_blocking: usize, body: impl FnOnce() -> F) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(max_blocking)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let outcome = rt.block_on(async { timeout(TEST_BOUND, body()).await.unwrap_or_else(|_| Err("test timed out".into())) });
    rt.shutdown_background();
    outcome
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

async fn start(dir: &std::path::Path, limits: Limits) -> Result<(StorageNode, SocketAddr), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let mut cfg: NodeConfig = config(1, dir, addr, true, (300, 600));
    cfg.limits = limits;
    let node = StorageNode::start(cfg, listener).await.map_err(err)?;
    node.ensure_tenant_user("example.test", "alice", "pw").await.map_err(err)?;
    Ok((node, addr))
}

/// A channel to `addr`; `wide` gives it the largest HTTP/2 connection window.
async fn connect(addr: SocketAddr, wide: bool) -> Result<Channel, String> {
    let mut endpoint = Channel::from_shared(format!("http://{addr}")).map_err(err)?;
    if wide {
        endpoint = endpoint.initial_connection_window_size(MAX_WINDOW);
    }
    endpoint.connect().await.map_err(err)
}

fn storage(ch: Channel) -> StorageClient<Channel> {
    StorageClient::new(ch).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX)
}

fn message(n: usize, bytes: usize) -> pb::AppendMessage {
    let mut body = format!("Subject: m{n}\r\n\r\n").into_bytes();
    body.resize(bytes, b'x');
    pb::AppendMessage { body, ..Default::default() }
}

/// A logged-in mailbox of [`MESSAGES`] messages of 600 KiB.
struct Mailbox {
    token: Vec<u8>,
    mailbox_id: u64,
    uidvalidity: u32,
}

impl Mailbox {
    async fn fill(s: &mut StorageClient<Channel>) -> Result<Mailbox, String> {
        let auth = pb::AuthenticateRequest {
            ctx: ctx(b""),
            login: "alice@example.test".into(),
            password: "pw".into(),
            ..Default::default()
        };
        let token = s.authenticate(auth).await.map_err(err)?.into_inner().token;
        let messages = (0..MESSAGES).map(|n| message(n, 600 * 1024)).collect();
        s.append(pb::AppendRequest { ctx: ctx(&token), mailbox: "INBOX".into(), messages }).await.map_err(err)?;
        let sel = s.select(pb::SelectRequest { ctx: ctx(&token), name: "INBOX".into() }).await.map_err(err)?;
        let st = sel.into_inner().status.ok_or("no status")?;
        Ok(Mailbox { token, mailbox_id: st.mailbox_id, uidvalidity: st.uidvalidity })
    }

    fn fetch(&self, start: u32, end: u32) -> pb::FetchRequest {
        pb::FetchRequest {
            ctx: ctx(&self.token),
            mailbox_id: self.mailbox_id,
            uidvalidity: self.uidvalidity,
            uids: Some(pb::UidSet { ranges: vec![pb::UidRange { start, end }] }),
            want_structure: false,
            body: pb::BodyWanted::BodyFull as i32,
            changed_since: 0,
        }
    }

    /// A FETCH of every message whose first chunk was read, and nothing after it.
    async fn stall(&self, client: &mut StorageClient<Channel>) -> Result<tonic::Streaming<pb::FetchResponse>, String> {
        let mut stream = client.fetch(self.fetch(1, u32::MAX)).await.map_err(err)?.into_inner();
        let first = timeout(BOUND, stream.message()).await.map_err(|_| "no first chunk in time".to_owned())?;
        check!(first.map_err(err)?.is_some_and(|c| !c.messages.is_empty()), "empty first chunk");
        Ok(stream)
    }
}

/// The log's fsync and the apply used to share tokio's blocking pool with every read; with the
/// pool exhausted no write could commit. Now they run on their own threads.
#[test]
fn writes_commit_while_the_blocking_pool_is_exhausted() -> Outcome {
    const POOL: usize = 4;
    run(POOL, || async {
        let dir = tempfile::tempdir().map_err(err)?;
        let (node, addr) = start(dir.path(), Limits::default()).await?;
        let mut admin = AdminClient::new(connect(addr, false).await?);

        // Every blocking thread waits on a channel (as a read waiting for its client would).
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let started = Arc::new(AtomicUsize::new(0));
        for _ in 0..POOL {
            let (held, started) = (held.clone(), started.clone());
            tokio::task::spawn_blocking(move || {
                started.fetch_add(1, Ordering::SeqCst);
                let _ = held.lock().map(|rx| rx.recv());
            });
        }
        let deadline = tokio::time::Instant::now() + BOUND;
        while started.load(Ordering::SeqCst) < POOL {
            check!(tokio::time::Instant::now() < deadline, "the blocking pool never filled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The pool is really exhausted: other blocking work waits.
        let queued = tokio::task::spawn_blocking(|| ());
        let mut queued = std::pin::pin!(queued);
        check!(timeout(Duration::from_millis(300), &mut queued).await.is_err(), "the blocking pool still had room");

        // Writes go through the log and the apply, and commit.
        for n in 0..5 {
            let req = pb::CreateTenantRequest { group_id: 1, domain: format!("t{n}.test") };
            let created = timeout(BOUND, admin.create_tenant(req)).await;
            check!(matches!(created, Ok(Ok(_))), "write {n} with the blocking pool exhausted: {created:?}");
        }

        for _ in 0..POOL {
            let _ = release.send(());
        }
        node.shutdown().await;
        Ok(())
    })
}

/// Stalled FETCH streams hold no read slot: with two slots and eight streams whose client reads
/// nothing after the first chunk, every other read and write still completes.
#[test]
fn stalled_streams_hold_no_read_slot() -> Outcome {
    run(512, || async {
        let dir = tempfile::tempdir().map_err(err)?;
        // No deadline in sight: only the design can keep the slots free.
        let limits = Limits { max_concurrent_reads: 2, read_stream_deadline: Duration::from_secs(3600), ..Limits::default() };
        let (node, addr) = start(dir.path(), limits).await?;
        // Data a client does not read holds its HTTP/2 connection's window as well as the
        // stream's, so the stalled streams get a connection of their own whose window does not
        // run out first (the front-end's storage channels are set up the same way).
        let mut s = storage(connect(addr, false).await?);
        let mut stalled_client = storage(connect(addr, true).await?);
        let mailbox = Mailbox::fill(&mut s).await?;
        let mut stalled = Vec::new();
        for n in 0..8 {
            stalled.push(mailbox.stall(&mut stalled_client).await.map_err(|e| format!("stalled stream {n}: {e}"))?);
        }

        let token = mailbox.token.clone();
        for n in 0..5 {
            let one = timeout(BOUND, async {
                let mut f = s.fetch(mailbox.fetch(1, 1)).await?.into_inner();
                let mut got = 0;
                while let Some(chunk) = f.message().await? {
                    got += chunk.messages.len();
                }
                Ok::<usize, tonic::Status>(got)
            })
            .await;
            check!(matches!(one, Ok(Ok(1))), "FETCH {n} beside stalled streams: {one:?}");
            let status = timeout(BOUND, s.status(pb::StatusRequest { ctx: ctx(&token), name: "INBOX".into() })).await;
            check!(matches!(status, Ok(Ok(_))), "STATUS {n} beside stalled streams: {status:?}");
            let req = pb::AppendRequest { ctx: ctx(&token), mailbox: "INBOX".into(), messages: vec![message(100 + n, 1024)] };
            let appended = timeout(BOUND, s.append(req)).await;
            check!(matches!(appended, Ok(Ok(_))), "APPEND {n} beside stalled streams: {appended:?}");
        }
        drop(stalled);
        node.shutdown().await;
        Ok(())
    })
}

/// A stream older than its deadline is cut: its client, reading again, gets at most what the
/// transport already held, then DEADLINE_EXCEEDED.
#[test]
fn a_stalled_stream_ends_at_its_deadline() -> Outcome {
    run(512, || async {
        let deadline = Duration::from_secs(2);
        let dir = tempfile::tempdir().map_err(err)?;
        let (node, addr) = start(dir.path(), Limits { read_stream_deadline: deadline, ..Limits::default() }).await?;
        let mut s = storage(connect(addr, false).await?);
        let mailbox = Mailbox::fill(&mut s).await?;
        let mut stream = mailbox.stall(&mut s).await?;
        // The client does not read for longer than the deadline: that pause is the test's subject.
        tokio::time::sleep(deadline + Duration::from_secs(1)).await;
        let mut got = 1;
        let end = loop {
            match timeout(BOUND, stream.message()).await.map_err(|_| "the stream neither ended nor sent".to_owned())? {
                Ok(Some(chunk)) => got += chunk.messages.len(),
                Ok(None) => return Err(format!("the stream completed ({got} messages) instead of being cut")),
                Err(status) => break status,
            }
        };
        check!(end.code() == Code::DeadlineExceeded, "ended with {end:?}");
        check!(got < MESSAGES, "{got} messages arrived");
        node.shutdown().await;
        Ok(())
    })
}
