//! A node removed from the cluster keeps a certificate the CA signed (there is no revocation
//! list). Its Raft messages are refused by id (`membership.rs` tests); so are its Storage and
//! Watch calls (`authz.rs`, `Authz::refusing_retired`; a Watch stream it opened before ends at the
//! next heartbeat) and its Raft.Identify calls, while front-end certificates keep working.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Cert, Pki, code_of, start_tls, tls_channel};
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::raft_client::RaftClient;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::authz::Role;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(30);

/// What a Storage call and a Watch call with `cert` get from the node at `peer`: `Ok` when the
/// service itself answered (a wrong login, a Watch stream), the refusal otherwise.
async fn storage_and_watch(pki: &Pki, peer: SocketAddr, cert: &Cert) -> (Result<(), tonic::Status>, Result<(), tonic::Status>) {
    let mut storage = StorageClient::new(tls_channel(peer, &pki.ca_pem, Some(cert)));
    let login = pb::AuthenticateRequest {
        ctx: common::ctx(&[]),
        login: "nobody@example.test".into(),
        password: "x".into(),
        ..Default::default()
    };
    let authenticate = match storage.authenticate(login).await {
        Err(s) if s.code() == Code::Unauthenticated => Ok(()),
        Err(s) => Err(s),
        Ok(r) => panic!("a made-up login was accepted: {r:?}"),
    };
    let watch = storage.watch(pb::WatchRequest { group_id: 1, heartbeat_ms: 100 }).await.map(|_| ());
    (authenticate, watch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_nodes_certificate_may_not_call_storage_or_watch() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let pki = Pki::new();
    let (n1, p1, a1) = start_tls(1, dirs[0].path(), true, &pki).await;
    let (n2, p2, _) = start_tls(2, dirs[1].path(), false, &pki).await;
    let (node2, frontend) = (pki.issue(&Role::Node(2)), pki.issue(&Role::Frontend("imap-1".into())));

    // Until node 1 leads, the services answer UNAVAILABLE / NOT_LEADER: wait for a real answer.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match storage_and_watch(&pki, p1, &node2).await {
            (Ok(()), Ok(())) => break,
            other => assert!(tokio::time::Instant::now() < deadline, "node 1 never served node 2's certificate: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A Watch stream node 2 opened before its removal. Heartbeats every second: each also
    // bounds a read-index round by two intervals, which a busy machine can exceed at 100 ms and
    // end the stream for that reason instead.
    let mut storage = StorageClient::new(tls_channel(p1, &pki.ca_pem, Some(&node2)));
    let request = pb::WatchRequest { group_id: 1, heartbeat_ms: 1000 };
    let mut open_watch = storage.watch(request).await.unwrap().into_inner();

    // Node 2 joins (as a learner) and is removed again.
    let mut ops = AdminClient::new(tls_channel(a1, &pki.ca_pem, Some(&pki.issue(&Role::Operator("alice".into())))));
    let add = pb::AddNodeRequest { group_id: 1, node_id: 2, addr: format!("https://{p2}"), learner_only: true };
    ops.add_node(add).await.unwrap();
    ops.remove_node(pb::RemoveNodeRequest { group_id: 1, node_id: 2, force: false }).await.unwrap();

    // The removal is applied on node 1 once RemoveNode returns; poll anyway, bounded, so a
    // slower apply does not fail the test.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (authenticate, watch) = loop {
        let answers = storage_and_watch(&pki, p1, &node2).await;
        if answers.0.is_err() && answers.1.is_err() {
            break answers;
        }
        assert!(tokio::time::Instant::now() < deadline, "node 2's certificate still served after its removal: {answers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for refused in [authenticate.unwrap_err(), watch.unwrap_err()] {
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert_eq!(code_of(&refused), "PERMISSION_DENIED");
        assert!(refused.message().contains("node 2 was removed"), "{}", refused.message());
    }
    // The stream it opened before ends at a heartbeat with the same refusal.
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match open_watch.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the watch stream ended without saying why"),
                Err(status) => break status,
            }
        }
    });
    let ended = ended.await.expect("node 2's open watch stream outlived its removal");
    assert!(ended.message().contains("node 2 was removed"), "{ended:?}");

    // Nor does it learn who the cluster is any more (Raft.Identify), while node 1 itself may ask.
    let mut raft = RaftClient::new(tls_channel(p1, &pki.ca_pem, Some(&node2)));
    let refused = raft.identify(pb::IdentifyRequest { group_id: 1 }).await.unwrap_err();
    assert!(refused.message().contains("node 2 was removed"), "{refused:?}");
    let mut raft = RaftClient::new(tls_channel(p1, &pki.ca_pem, Some(&pki.issue(&Role::Node(1)))));
    assert_eq!(raft.identify(pb::IdentifyRequest { group_id: 1 }).await.unwrap().into_inner().node_id, 1);

    // A front-end certificate is not affected.
    let (authenticate, watch) = storage_and_watch(&pki, p1, &frontend).await;
    authenticate.unwrap();
    watch.unwrap();
    n2.shutdown().await;
    n1.shutdown().await;
}
