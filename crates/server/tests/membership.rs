//! Membership through the Admin service, over real sockets: a bootstrapped node grows to three and
//! four voters with AddNode, ClusterInfo shows members and lag, leadership moves with
//! TransferLeader, RemoveNode refuses the leader and a quorum-breaking removal, a node of another
//! cluster cannot be added, and a removed node's votes and claims to lead are refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::raft_client::RaftClient;
use mailraft_server::StorageNode;
use mailraft_store::{TypeConfig, Vote};
use openraft::raft::AppendEntriesRequest;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(30);

async fn start(id: u64, dir: &Path, bootstrap: bool) -> (StorageNode, SocketAddr) {
    common::start(id, dir, bootstrap, (300, 500)).await
}

async fn admin(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::new(common::channel(addr).await)
}

async fn info(addr: SocketAddr) -> pb::ClusterInfoResponse {
    admin(addr).await.cluster_info(pb::ClusterInfoRequest { group_id: 1 }).await.unwrap().into_inner()
}

fn voters(info: &pb::ClusterInfoResponse) -> Vec<u64> {
    info.members.iter().filter(|m| m.role == "voter").map(|m| m.node_id).collect()
}

use common::code_of as code;

async fn add(leader: SocketAddr, id: u64, addr: SocketAddr) -> Result<pb::AddNodeResponse, tonic::Status> {
    let req = pb::AddNodeRequest { group_id: 1, node_id: id, addr: format!("http://{addr}"), learner_only: false };
    admin(leader).await.add_node(req).await.map(|r| r.into_inner())
}

/// Polls until `f` holds for the node's ClusterInfo.
async fn wait_info(addr: SocketAddr, what: &str, f: impl Fn(&pb::ClusterInfoResponse) -> bool) -> pb::ClusterInfoResponse {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let i = info(addr).await;
        if f(&i) {
            return i;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {i:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_shrink_transfer_and_refuse() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let (n1, a1) = start(1, dirs[0].path(), true).await;
    let (n2, a2) = start(2, dirs[1].path(), false).await;
    let (n3, a3) = start(3, dirs[2].path(), false).await;
    let (n4, a4) = start(4, dirs[3].path(), false).await;

    let i1 = wait_info(a1, "node 1 leads", |i| i.leader_id == 1).await;
    assert_ne!(i1.cluster_id, 0, "bootstrap chose a cluster id");
    assert_eq!(info(a2).await.cluster_id, 0, "a node that was never added has no cluster");

    // A wrong id for the address is refused before anything changes.
    let err = add(a1, 9, a2).await.unwrap_err();
    assert_eq!(code(&err), "CANNOT", "{err:?}");
    assert!(err.message().contains("is node 2"), "{}", err.message());

    // Grow to three, then four voters; each new node adopts the cluster id.
    assert!(add(a1, 2, a2).await.unwrap().promoted);
    assert!(add(a1, 3, a3).await.unwrap().promoted);
    let i = info(a1).await;
    assert_eq!(voters(&i), vec![1, 2, 3]);
    assert_eq!(info(a3).await.cluster_id, i1.cluster_id);
    assert!(add(a1, 4, a4).await.unwrap().promoted);
    let i = wait_info(a1, "four caught-up voters", |i| voters(i) == vec![1, 2, 3, 4] && i.members.iter().all(|m| m.lag == 0)).await;
    assert_eq!(i.state, "leader");
    assert!(i.members.iter().filter(|m| m.node_id != 1).all(|m| m.has_matched), "{i:?}");

    // Adding through a follower answers NOT_LEADER with the leader's address.
    let err = add(a2, 5, a4).await.unwrap_err();
    assert_eq!(code(&err), "NOT_LEADER");

    // The leader is not removed without --force.
    let err = admin(a1).await.remove_node(pb::RemoveNodeRequest { group_id: 1, node_id: 1, force: false }).await.unwrap_err();
    assert_eq!(code(&err), "CANNOT", "{err:?}");
    assert!(err.message().contains("leader"), "{}", err.message());

    // Leadership moves to node 2.
    let r = admin(a1).await.transfer_leader(pb::TransferLeaderRequest { group_id: 1, node_id: 2 }).await.unwrap();
    assert_eq!(r.into_inner().leader_id, 2);
    wait_info(a2, "node 2 leads", |i| i.leader_id == 2 && i.state == "leader").await;

    // Shrink back to three: remove node 4.
    admin(a2).await.remove_node(pb::RemoveNodeRequest { group_id: 1, node_id: 4, force: false }).await.unwrap();
    let i = wait_info(a2, "three voters", |i| voters(i) == vec![1, 2, 3]).await;
    assert!(i.members.iter().all(|m| m.node_id != 4));

    // A removed node's votes are refused by its former peers.
    let ch = Channel::from_shared(format!("http://{a1}")).unwrap().connect().await.unwrap();
    let vote = pb::RaftRequest { group_id: 1, cluster_id: i1.cluster_id, from_node: 4, ..Default::default() };
    let err = RaftClient::new(ch.clone()).vote(vote).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    // So is anything else it sends in its own name, e.g. a claim to lead a later term, which
    // would make its former peers step down and follow it...
    let claim: AppendEntriesRequest<TypeConfig> =
        AppendEntriesRequest { vote: Vote::new_committed(1_000, 4), prev_log_id: None, entries: vec![], leader_commit: None };
    let payload = postcard::to_allocvec(&claim).unwrap();
    let append = pb::RaftRequest { group_id: 1, cluster_id: i1.cluster_id, from_node: 4, payload, ..Default::default() };
    let err = RaftClient::new(ch.clone()).append_entries(append).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("node 4 was removed"), "{}", err.message());
    assert_eq!(info(a1).await.leader_id, 2, "nobody followed the removed node");
    // And any message of another cluster is refused.
    let append = pb::RaftRequest { group_id: 1, cluster_id: i1.cluster_id ^ 1, from_node: 2, ..Default::default() };
    let err = RaftClient::new(ch).append_entries(append).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    n4.shutdown().await;

    // A node of another cluster cannot be added.
    let (other, a5) = start(5, dirs[4].path(), true).await;
    wait_info(a5, "other cluster has a leader", |i| i.leader_id == 5).await;
    let err = add(a2, 5, a5).await.unwrap_err();
    assert!(err.message().contains("belongs to cluster"), "{}", err.message());
    other.shutdown().await;

    // With node 3 down, removing node 1 would leave one answering voter of two: refused.
    n3.shutdown().await;
    let err = admin(a2).await.remove_node(pb::RemoveNodeRequest { group_id: 1, node_id: 1, force: false }).await.unwrap_err();
    assert_eq!(code(&err), "CANNOT", "{err:?}");
    assert!(err.message().contains("majority"), "{}", err.message());
    assert_eq!(voters(&info(a2).await), vec![1, 2, 3], "nothing changed");

    n1.shutdown().await;
    n2.shutdown().await;
}
