//! The bytes FETCH streams hold on a storage node are bounded (`limits::ByteBudget`): one
//! account's streams that are never read hold at most its share of the budget, another account's
//! FETCH completes beside them, and the bytes come back when the streams go, or at the streams'
//! deadline while their client still holds them open. Flags count: a FETCH of flags alone
//! reserves bytes too.
//!
//! Like `isolation.rs`, the test runs its own runtime, left with `shutdown_background`, and
//! reports failures as errors instead of panicking inside it.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mailraft_proto as pb;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::{NodeConfig, StorageNode};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};
use tonic::transport::Channel;

use common::{config, ctx};

/// Far above what any call here takes unstarved; a starved call never returns.
const BOUND: Duration = Duration::from_secs(20);
/// The whole test.
const TEST_BOUND: Duration = Duration::from_secs(120);
/// Each message is this big, so with the 128 bytes the budget counts per message (`fetch.rs`
/// `MESSAGE_OVERHEAD`; no flags) it weighs exactly 256 KiB, and a chunk (at most 1 MiB) is 4.
const MESSAGE: usize = (256 << 10) - 128;
/// The node's budget: 8 MiB, so 2 MiB (two chunks) per account.
const BUDGET: usize = 8 << 20;
/// Streams of the stalled account: together they would hold far more than the budget.
const STALLED: usize = 6;

type Outcome = Result<(), String>;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn run<F: Future<Output = Outcome>>(body: impl FnOnce() -> F) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(err)?;
    let outcome = rt.block_on(async { timeout(TEST_BOUND, body()).await.unwrap_or_else(|_| Err("test timed out".into())) });
    rt.shutdown_background();
    outcome
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

fn storage(ch: Channel) -> StorageClient<Channel> {
    StorageClient::new(ch).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX)
}

async fn connect(addr: SocketAddr) -> Result<StorageClient<Channel>, String> {
    Ok(storage(Channel::from_shared(format!("http://{addr}")).map_err(err)?.connect().await.map_err(err)?))
}

/// A logged-in user's INBOX filled with `count` messages of [`MESSAGE`] bytes.
struct Inbox {
    token: Vec<u8>,
    mailbox_id: u64,
    uidvalidity: u32,
}

impl Inbox {
    async fn fill(s: &mut StorageClient<Channel>, user: &str, count: usize) -> Result<Inbox, String> {
        Self::fill_sized(s, user, count, MESSAGE).await
    }

    async fn fill_sized(s: &mut StorageClient<Channel>, user: &str, count: usize, size: usize) -> Result<Inbox, String> {
        let auth = pb::AuthenticateRequest {
            ctx: ctx(b""),
            login: format!("{user}@example.test"),
            password: "pw".into(),
            ..Default::default()
        };
        let token = s.authenticate(auth).await.map_err(err)?.into_inner().token;
        for batch in 0..count.div_ceil(8) {
            let messages = (batch * 8..count.min(batch * 8 + 8))
                .map(|n| {
                    let mut body = format!("Subject: m{n}\r\n\r\n").into_bytes();
                    body.resize(size, b'x');
                    pb::AppendMessage { body, ..Default::default() }
                })
                .collect();
            s.append(pb::AppendRequest { ctx: ctx(&token), mailbox: "INBOX".into(), messages }).await.map_err(err)?;
        }
        let sel = s.select(pb::SelectRequest { ctx: ctx(&token), name: "INBOX".into() }).await.map_err(err)?;
        let st = sel.into_inner().status.ok_or("no status")?;
        Ok(Inbox { token, mailbox_id: st.mailbox_id, uidvalidity: st.uidvalidity })
    }

    fn fetch_all(&self) -> pb::FetchRequest {
        pb::FetchRequest {
            ctx: ctx(&self.token),
            mailbox_id: self.mailbox_id,
            uidvalidity: self.uidvalidity,
            uids: Some(pb::UidSet { ranges: vec![pb::UidRange { start: 1, end: u32::MAX }] }),
            want_structure: false,
            body: pb::BodyWanted::BodyFull as i32,
            changed_since: 0,
        }
    }
}

/// Polls until `f` holds, at most [`BOUND`].
async fn until(what: &str, f: impl Fn() -> bool) -> Outcome {
    let deadline = Instant::now() + BOUND;
    while !f() {
        check!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A single node with a [`BUDGET`] of FETCH bytes and the user alice, `tune`d first.
async fn start(dir: &std::path::Path, tune: impl FnOnce(&mut NodeConfig)) -> Result<(StorageNode, SocketAddr), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let mut cfg: NodeConfig = config(1, dir, addr, true, (300, 600));
    cfg.fetch_buffer_bytes = BUDGET;
    tune(&mut cfg);
    let node = StorageNode::start(cfg, listener).await.map_err(err)?;
    node.ensure_tenant_user("example.test", "alice", "pw").await.map_err(err)?;
    Ok((node, addr))
}

#[test]
fn byte_budget_bounds_stalled_fetch_streams() -> Outcome {
    run(|| async {
        let dir = tempfile::tempdir().map_err(err)?;
        let (node, addr) = start(dir.path(), |_| {}).await?;
        node.ensure_tenant_user("example.test", "bob", "pw").await.map_err(err)?;
        let budget = node.fetch_budget();
        let share = budget.per_account();
        check!(share == BUDGET / 4, "share {share}");

        // Alice's 8 MiB are fetched by streams nobody reads, on a connection of their own (as
        // a front-end whose IMAP clients stopped reading).
        let mut alice = connect(addr).await?;
        let inbox = Inbox::fill(&mut alice, "alice", 32).await?;
        let stalled_client = connect(addr).await?;
        let mut stalled = Vec::new();
        for _ in 0..STALLED {
            let (mut client, req) = (stalled_client.clone(), inbox.fetch_all());
            // The call returns once its first chunk has its bytes; the stream is then held and
            // never read, until the task is aborted.
            stalled.push(tokio::spawn(async move {
                let stream = client.fetch(req).await;
                std::future::pending::<()>().await;
                drop(stream);
            }));
        }
        // Every stalled stream wants three chunks and more: alice's share fills up, and stays
        // at most that.
        until("alice's streams hold her whole share", || budget.held() == share).await?;

        // Bob's FETCH of 3 MiB (more than his share too, but he reads) completes.
        let mut bob = connect(addr).await?;
        let bob_inbox = Inbox::fill(&mut bob, "bob", 12).await?;
        let fetched = timeout(BOUND, async {
            let mut stream = bob.fetch(bob_inbox.fetch_all()).await?.into_inner();
            let mut got = 0;
            while let Some(chunk) = stream.message().await? {
                got += chunk.messages.len();
            }
            Ok::<usize, tonic::Status>(got)
        })
        .await;
        check!(matches!(fetched, Ok(Ok(12))), "bob's FETCH beside alice's stalled streams: {fetched:?}");
        check!(
            budget.peak() <= 2 * share,
            "{} bytes held at once; alice's share and bob's are {share} each",
            budget.peak()
        );
        // Bob's bytes are back; alice's streams still hold her share.
        until("only alice's share is held", || budget.held() == share).await?;

        // The streams go (the front-end dropped them): every byte comes back.
        for task in &stalled {
            task.abort();
        }
        until("the dropped streams' bytes are back", || budget.held() == 0).await?;
        node.shutdown().await;
        Ok(())
    })
}

/// Alice's 256 small messages carry 200 keywords each; a `FETCH 1:* FLAGS` stream nobody reads
/// reserves bytes for them (flags count in the budget), at most her share. Past the stream's
/// deadline the chunks it holds stay counted while they exist; the client's next read ends the
/// stream with DEADLINE_EXCEEDED, and then every byte is back.
#[test]
fn stalled_flag_streams_reserve_and_release_at_their_deadline() -> Outcome {
    run(|| async {
        let dir = tempfile::tempdir().map_err(err)?;
        let (node, addr) = start(dir.path(), |cfg| cfg.limits.read_stream_deadline = Duration::from_secs(3)).await?;
        let budget = node.fetch_budget();

        let mut alice = connect(addr).await?;
        let inbox = Inbox::fill_sized(&mut alice, "alice", 256, 100).await?;
        let keywords: Vec<String> = (0..200).map(|i| format!("{i:k>120}")).collect();
        let store = pb::StoreRequest {
            ctx: ctx(&inbox.token),
            mailbox_id: inbox.mailbox_id,
            uidvalidity: inbox.uidvalidity,
            uids: Some(pb::UidSet { ranges: vec![pb::UidRange { start: 1, end: u32::MAX }] }),
            op: pb::StoreOp::StoreAdd as i32,
            flags: keywords,
            unchanged_since: 0,
        };
        alice.store(store).await.map_err(err)?;

        let flags_only = pb::FetchRequest { body: pb::BodyWanted::BodyNone as i32, ..inbox.fetch_all() };
        let mut stalled_client = connect(addr).await?;
        let mut stream = stalled_client.fetch(flags_only).await.map_err(err)?.into_inner();
        // 256 messages × 200 keywords × 120 bytes is about 6 MiB of flag names, more than the
        // transport's windows take: the stream fills alice's share (2 MiB) and waits.
        until("the flags-only stream holds bytes", || budget.held() > 1 << 20).await?;
        check!(budget.held() <= budget.per_account(), "{} held, over alice's share", budget.held());
        // The client does not read past the deadline: that pause is the test's subject.
        tokio::time::sleep(Duration::from_secs(4)).await;
        check!(budget.held() <= budget.per_account(), "{} held past the deadline", budget.held());
        let end = timeout(BOUND, async {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => break None,
                    Err(status) => break Some(status),
                }
            }
        })
        .await
        .map_err(|_| "the stream neither ended nor sent".to_owned())?;
        check!(
            end.as_ref().is_some_and(|s| s.code() == tonic::Code::DeadlineExceeded),
            "a stream past its deadline ended with {end:?}"
        );
        until("the ended stream's bytes are back", || budget.held() == 0).await?;
        node.shutdown().await;
        Ok(())
    })
}
