//! Log compaction by size: with the entry-count trigger out of reach, appending more bytes than
//! `snapshot_log_bytes` still builds a snapshot (and lets openraft purge the log).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::{NodeConfig, StorageNode};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(30);

use common::ctx;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_over_its_byte_limit_is_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = NodeConfig::new(1, dir.path().to_path_buf(), addr);
    cfg.bootstrap = true;
    cfg.snapshot_logs_since_last = 1_000_000;
    cfg.snapshot_log_bytes = 200 * 1024;
    let node = StorageNode::start(cfg, listener).await.unwrap();

    let ch = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut admin = AdminClient::new(ch.clone());
    admin.create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "example.test".into() }).await.unwrap();
    let user = pb::CreateUserRequest { group_id: 1, login: "a@example.test".into(), password: "pw".into() };
    admin.create_user(user).await.unwrap();
    let mut s = StorageClient::new(ch);
    let auth = pb::AuthenticateRequest { ctx: ctx(b""), login: "a@example.test".into(), password: "pw".into(), ..Default::default() };
    let token = s.authenticate(auth).await.unwrap().into_inner().token;

    assert!(node.raft().metrics().borrow().snapshot.is_none(), "no snapshot before the log grows");
    let body = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(20_000)).into_bytes();
    for _ in 0..15 {
        let m = pb::AppendMessage { body: body.clone(), flags: vec![], internal_date: 0, tz_offset_minutes: 0 };
        let req = pb::AppendRequest { ctx: ctx(&token), mailbox: "INBOX".into(), messages: vec![m] };
        s.append(req).await.unwrap();
    }
    node.raft()
        .wait(Some(DEADLINE))
        .metrics(|m| m.snapshot.is_some(), "a snapshot triggered by the log's size")
        .await
        .unwrap();
    drop(s);
    drop(admin);
    node.shutdown().await;
}
