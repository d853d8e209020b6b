//! The Watch stream over real sockets: the leader sends heartbeats (after a read-index round)
//! and change events; a follower refuses with NOT_LEADER and the leader's address; a leader that
//! loses its quorum ends the stream instead of going quietly stale.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use mailraft_proto as pb;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::StorageNode;
use mailraft_store::Node;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::Streaming;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(20);
const HEARTBEAT_MS: u32 = 100;

async fn start(id: u64, dir: &Path, listener: TcpListener, bootstrap: bool) -> StorageNode {
    common::start_on(listener, id, dir, bootstrap, (200, 400)).await
}

async fn client(addr: SocketAddr) -> StorageClient<Channel> {
    StorageClient::new(common::channel(addr).await)
}

fn watch_request() -> pb::WatchRequest {
    pb::WatchRequest { group_id: 1, heartbeat_ms: HEARTBEAT_MS }
}

/// The next message of the stream, failing the test after [`DEADLINE`].
async fn next(stream: &mut Streaming<pb::WatchEvent>) -> Option<Result<pb::WatchEvent, tonic::Status>> {
    tokio::time::timeout(DEADLINE, stream.next()).await.expect("watch stream went silent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sends_heartbeats_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = start(1, dir.path(), listener, true).await;
    node.ensure_tenant_user("example.test", "alice@example.test", "pw").await.unwrap();
    let mut s = client(addr).await;
    let auth = pb::AuthenticateRequest {
        ctx: Some(pb::Context { group_id: 1, ..Default::default() }),
        login: "alice@example.test".into(),
        password: "pw".into(),
        ..Default::default()
    };
    let token = s.authenticate(auth).await.unwrap().into_inner().token;
    let mut watch = s.watch(watch_request()).await.unwrap().into_inner();

    // Heartbeats arrive at about the requested interval, carrying the applied index.
    let started = Instant::now();
    let mut applied_before = 0;
    for _ in 0..3 {
        let event = next(&mut watch).await.unwrap().unwrap();
        assert!(event.heartbeat && !event.lagged && event.mailbox_id == 0, "{event:?}");
        assert!(event.applied_index > 0);
        applied_before = event.applied_index;
    }
    assert!(started.elapsed() >= Duration::from_millis(2 * u64::from(HEARTBEAT_MS)), "heartbeats come too fast");

    // A change is announced between heartbeats.
    let message = pb::AppendMessage { body: b"Subject: hi\r\n\r\nbody\r\n".to_vec(), ..Default::default() };
    let ctx = Some(pb::Context { group_id: 1, token, ..Default::default() });
    let appended = s
        .append(pb::AppendRequest { ctx, mailbox: "INBOX".into(), messages: vec![message] })
        .await
        .unwrap()
        .into_inner();
    let change = loop {
        let event = next(&mut watch).await.unwrap().unwrap();
        if !event.heartbeat {
            break event;
        }
    };
    assert_eq!(change.mailbox_id, appended.mailbox_id);
    assert!(change.modseq > 0 && !change.lagged);
    // Heartbeats after it report an applied index that includes the append.
    let heartbeat = next(&mut watch).await.unwrap().unwrap();
    assert!(heartbeat.heartbeat && heartbeat.applied_index > applied_before, "{heartbeat:?}");
    drop((s, watch));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_refuses_and_a_leader_without_quorum_ends_the_stream() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (l1, l2) = (TcpListener::bind("127.0.0.1:0").await.unwrap(), TcpListener::bind("127.0.0.1:0").await.unwrap());
    let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
    let n1 = start(1, dirs[0].path(), l1, true).await;
    let n2 = start(2, dirs[1].path(), l2, false).await;
    let r1 = n1.raft().clone();
    r1.wait(Some(DEADLINE)).metrics(|m| m.current_leader == Some(1), "node 1 leads").await.unwrap();
    r1.add_learner(2, Node { addr: format!("http://{a2}") }, true).await.unwrap();
    r1.change_membership(BTreeSet::from([1u64, 2]), false).await.unwrap();
    n2.raft().wait(Some(DEADLINE)).metrics(|m| m.current_leader == Some(1), "node 2 follows").await.unwrap();

    // The follower answers NOT_LEADER with the leader's address, like every other RPC.
    let err = client(a2).await.watch(watch_request()).await.unwrap_err();
    let md = |k: &str| err.metadata().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(md("mailraft-code").as_deref(), Some("NOT_LEADER"), "{err:?}");
    assert_eq!(md("mailraft-leader"), Some(format!("http://{a1}")));

    // The leader serves it.
    let mut watch = client(a1).await.watch(watch_request()).await.unwrap().into_inner();
    assert!(next(&mut watch).await.unwrap().unwrap().heartbeat);

    // Without its peer the leader cannot confirm it leads: the stream ends with an error
    // (no quorum or NOT_LEADER) instead of staying open and silent.
    n2.shutdown().await;
    let ended = loop {
        match next(&mut watch).await {
            Some(Ok(event)) => assert!(event.heartbeat || event.mailbox_id != 0, "{event:?}"),
            other => break other,
        }
    };
    let status = ended.expect("the stream ends with an error, not a clean end").unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    drop(watch);
    n1.shutdown().await;
}
