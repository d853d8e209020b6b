//! Large Raft entries over real sockets: with 50 ms heartbeats (so every AppendEntries must answer
//! within 50 ms), a 20 MiB APPEND and then several concurrent 3 MiB APPENDs on a 3-node group all
//! succeed, every replica ends with the same state, and no election happens on the way (the
//! followers keep hearing from the leader while the big entries travel in staged chunks).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::StorageNode;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

async fn start(id: u64, dir: &Path, bootstrap: bool) -> (StorageNode, SocketAddr) {
    common::start(id, dir, bootstrap, (300, 500)).await
}

use common::channel;

async fn admin(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::new(channel(addr).await)
}

async fn add(leader: SocketAddr, id: u64, addr: SocketAddr) {
    let req = pb::AddNodeRequest { group_id: 1, node_id: id, addr: format!("http://{addr}"), learner_only: false };
    assert!(admin(leader).await.add_node(req).await.unwrap().into_inner().promoted);
}

use common::ctx;

/// A plain-text message of about `size` bytes whose lines differ, so nothing compresses it away.
fn message(n: usize, size: usize) -> Vec<u8> {
    let mut body = format!("From: a@example.test\r\nSubject: large {n}\r\n\r\n").into_bytes();
    let mut line = 0usize;
    while body.len() < size {
        body.extend_from_slice(format!("{n:04} {line:010} the quick brown fox jumps over the lazy dog\r\n").as_bytes());
        line += 1;
    }
    body
}

async fn append(
    mut s: StorageClient<Channel>,
    token: Vec<u8>,
    n: usize,
    size: usize,
) -> Result<Vec<u32>, tonic::Status> {
    let m = pb::AppendMessage { body: message(n, size), flags: vec![], internal_date: 0, tz_offset_minutes: 0 };
    let req = pb::AppendRequest { ctx: ctx(&token), mailbox: "INBOX".into(), messages: vec![m] };
    s.append(req).await.map(|r| r.into_inner().uids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_appends_replicate_without_an_election() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (n1, a1) = start(1, dirs[0].path(), true).await;
    let (n2, a2) = start(2, dirs[1].path(), false).await;
    let (n3, a3) = start(3, dirs[2].path(), false).await;
    n1.raft().wait(Some(DEADLINE)).metrics(|m| m.current_leader == Some(1), "node 1 leads").await.unwrap();
    add(a1, 2, a2).await;
    add(a1, 3, a3).await;

    let mut a = admin(a1).await;
    a.create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "example.test".into() }).await.unwrap();
    let user = pb::CreateUserRequest { group_id: 1, login: "alice@example.test".into(), password: "pw".into() };
    a.create_user(user).await.unwrap();
    let ch = channel(a1).await;
    let mut s = StorageClient::new(ch.clone()).max_encoding_message_size(usize::MAX);
    let auth = pb::AuthenticateRequest { ctx: ctx(b""), login: "alice@example.test".into(), password: "pw".into(), ..Default::default() };
    let token = s.authenticate(auth).await.unwrap().into_inner().token;
    let term = n1.raft().metrics().borrow().current_term;

    // One 20 MiB message: far more than one heartbeat interval's worth of bytes per RPC.
    assert_eq!(append(s.clone(), token.clone(), 0, 20 * MIB).await.unwrap(), vec![1]);

    // Then several 3 MiB messages at once: openraft batches them into one AppendEntries unless the
    // transport bounds it.
    let calls: Vec<_> = (1..=5).map(|n| tokio::spawn(append(s.clone(), token.clone(), n, 3 * MIB))).collect();
    let mut uids = Vec::new();
    for call in calls {
        uids.extend(call.await.unwrap().unwrap());
    }
    uids.sort_unstable();
    assert_eq!(uids, vec![2, 3, 4, 5, 6]);

    // Every replica applies the same entries and ends with the same state.
    let leader_applied = n1.raft().metrics().borrow().last_applied.unwrap().index;
    for n in [&n2, &n3] {
        n.raft()
            .wait(Some(DEADLINE))
            .metrics(|m| m.last_applied.is_some_and(|a| a.index >= leader_applied), "follower caught up")
            .await
            .unwrap();
    }
    let mut digests = Vec::new();
    for addr in [a1, a2, a3] {
        let d = admin(addr).await.state_digest(pb::StateDigestRequest { group_id: 1 }).await.unwrap().into_inner();
        assert_eq!(d.applied_index, leader_applied, "no write after the appends");
        digests.push(d);
    }
    assert_eq!(digests[0].sha256, digests[1].sha256, "node 2 differs from the leader");
    assert_eq!(digests[0].sha256, digests[2].sha256, "node 3 differs from the leader");

    // No follower gave up on the leader while the big entries travelled.
    for n in [&n1, &n2, &n3] {
        let m = n.raft().metrics().borrow().clone();
        assert_eq!((m.current_term, m.current_leader), (term, Some(1)), "node {} saw an election", m.id);
    }

    drop((s, a, ch));
    n1.shutdown().await;
    n2.shutdown().await;
    n3.shutdown().await;
}
