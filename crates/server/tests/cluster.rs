//! Three storage nodes over real sockets: the Raft transport (append entries, votes, a full
//! snapshot to new members), NOT_LEADER hints from followers, and failover after the leader
//! stops.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::storage_client::StorageClient;
use common::ctx;
use mailraft_server::StorageNode;
use mailraft_store::Node;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(30);

async fn start(id: u64, dir: &Path, listener: TcpListener, bootstrap: bool) -> StorageNode {
    common::start_on(listener, id, dir, bootstrap, (200, 400)).await
}

async fn storage(addr: SocketAddr) -> StorageClient<Channel> {
    StorageClient::new(common::channel(addr).await)
}

fn auth_req() -> pb::AuthenticateRequest {
    pb::AuthenticateRequest { ctx: ctx(b""), login: "alice@example.test".into(), password: "pw".into(), ..Default::default() }
}

fn message(n: u32) -> Vec<u8> {
    format!("From: a@example.test\r\nSubject: message {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

async fn append(s: &mut StorageClient<Channel>, token: &[u8], n: u32) -> Vec<u32> {
    let m = pb::AppendMessage { body: message(n), flags: vec![], internal_date: 0, tz_offset_minutes: 0 };
    let req = pb::AppendRequest { ctx: ctx(token), mailbox: "INBOX".into(), messages: vec![m] };
    s.append(req).await.unwrap().into_inner().uids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_snapshot_and_fail_over() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut listeners = listeners.into_iter();
    let n1 = start(1, dirs[0].path(), listeners.next().unwrap(), true).await;
    let n2 = start(2, dirs[1].path(), listeners.next().unwrap(), false).await;
    let n3 = start(3, dirs[2].path(), listeners.next().unwrap(), false).await;

    // Data on the single-node cluster first.
    let ch = Channel::from_shared(format!("http://{}", addrs[0])).unwrap().connect().await.unwrap();
    let mut admin = AdminClient::new(ch.clone());
    admin.create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "example.test".into() }).await.unwrap();
    admin
        .create_user(pb::CreateUserRequest { group_id: 1, login: "alice@example.test".into(), password: "pw".into() })
        .await
        .unwrap();
    let mut s1 = StorageClient::new(ch);
    let token = s1.authenticate(auth_req()).await.unwrap().into_inner().token;
    for n in 1..=3 {
        assert_eq!(append(&mut s1, &token, n).await, vec![n]);
    }

    // Snapshot and purge the log, so new members can only catch up by InstallSnapshot.
    let r1 = n1.raft().clone();
    let applied = r1.metrics().borrow().last_applied.unwrap().index;
    r1.trigger().snapshot().await.unwrap();
    r1.wait(Some(DEADLINE)).metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "snapshot").await.unwrap();
    r1.trigger().purge_log(applied).await.unwrap();
    r1.wait(Some(DEADLINE)).metrics(|m| m.purged.is_some_and(|p| p.index >= applied), "purged").await.unwrap();

    for (id, addr) in [(2u64, addrs[1]), (3, addrs[2])] {
        r1.add_learner(id, Node { addr: format!("http://{addr}") }, true).await.unwrap();
    }
    r1.change_membership(BTreeSet::from([1u64, 2, 3]), false).await.unwrap();
    assert_eq!(append(&mut s1, &token, 4).await, vec![4]);
    let leader_applied = r1.metrics().borrow().last_applied.unwrap().index;
    for n in [&n2, &n3] {
        n.raft()
            .wait(Some(DEADLINE))
            .metrics(|m| m.last_applied.is_some_and(|a| a.index >= leader_applied), "follower caught up")
            .await
            .unwrap();
        assert!(n.raft().metrics().borrow().snapshot.is_some(), "caught up through a snapshot");
    }

    // A follower refuses with a hint to the leader.
    let mut s2 = storage(addrs[1]).await;
    let err = s2.authenticate(auth_req()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let md = |k: &str| err.metadata().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(md("mailraft-code").as_deref(), Some("NOT_LEADER"));
    assert_eq!(md("mailraft-leader"), Some(format!("http://{}", addrs[0])));

    // Watch is served by the leader only (see tests/watch.rs); it publishes the change.
    let refused = s2.watch(pb::WatchRequest { group_id: 1, heartbeat_ms: 0 }).await.unwrap_err();
    assert_eq!(refused.metadata().get("mailraft-code").and_then(|v| v.to_str().ok()), Some("NOT_LEADER"));
    let mut watch = s1.watch(pb::WatchRequest { group_id: 1, heartbeat_ms: 0 }).await.unwrap().into_inner();
    assert_eq!(append(&mut s1, &token, 5).await, vec![5]);
    let ev = tokio::time::timeout(DEADLINE, watch.next()).await.unwrap().unwrap().unwrap();
    assert!(!ev.lagged && !ev.heartbeat && ev.mailbox_id != 0);
    drop((s1, admin, watch));

    // The leader stops; the other two elect a new one that has everything.
    n1.shutdown().await;
    let m = n2
        .raft()
        .wait(Some(DEADLINE))
        .metrics(|m| matches!(m.current_leader, Some(2 | 3)), "new leader")
        .await
        .unwrap();
    let leader_addr = if m.current_leader == Some(2) { addrs[1] } else { addrs[2] };
    let mut s = storage(leader_addr).await;
    // The token was signed with the replicated session key: still valid on the new leader.
    let sel = s.select(pb::SelectRequest { ctx: ctx(&token), name: "INBOX".into() }).await.unwrap().into_inner();
    let uids: Vec<u32> = sel.uids.unwrap().ranges.iter().flat_map(|r| r.start..=r.end).collect();
    assert_eq!(uids, vec![1, 2, 3, 4, 5]);
    assert!(s.authenticate(auth_req()).await.is_ok());
    assert_eq!(append(&mut s, &token, 6).await, vec![6]);
    drop(s);
    n2.shutdown().await;
    n3.shutdown().await;
}
