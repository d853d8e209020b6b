//! `Admin.SetFeatureLevel` (`admin_service/feature_level.rs`) on a single node: the level this
//! binary knows is accepted (a no-op: a new cluster starts at it), a lower one changes nothing, a higher one is refused
//! with FAILED_PRECONDITION naming the node that does not know it, before anything is proposed;
//! `ClusterInfo` and `Identify` report the levels.
#![allow(clippy::unwrap_used)]

mod common;

use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::raft_client::RaftClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_level_is_accepted_and_a_newer_one_refused_naming_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = common::start(1, dir.path(), true, (300, 500)).await;
    let mut admin = AdminClient::new(common::channel(addr).await);
    let info = || pb::ClusterInfoRequest { group_id: 1 };
    let set = |level| pb::SetFeatureLevelRequest { group_id: 1, level };

    let before = admin.cluster_info(info()).await.unwrap().into_inner();
    let known = mailraft_model::KNOWN_FEATURE_LEVEL;
    assert_eq!((before.feature_level, before.known_feature_level), (known, known), "a new cluster starts at the known level");
    let identity = RaftClient::new(common::channel(addr).await)
        .identify(pb::IdentifyRequest { group_id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(identity.known_feature_level, mailraft_model::KNOWN_FEATURE_LEVEL);

    let r = admin.set_feature_level(set(known)).await.unwrap().into_inner();
    assert_eq!((r.previous, r.level), (known, known));
    let r = admin.set_feature_level(set(1)).await.unwrap().into_inner();
    assert_eq!((r.previous, r.level), (known, known), "never lowered");

    let next = mailraft_model::KNOWN_FEATURE_LEVEL + 1;
    let refused = admin.set_feature_level(set(next)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert_eq!(common::code_of(&refused), "CANNOT");
    let named = format!("node 1 knows up to level {}", mailraft_model::KNOWN_FEATURE_LEVEL);
    assert!(refused.message().contains(&named), "{}", refused.message());

    let refused = admin.set_feature_level(set(0)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    // Nothing was proposed: the node would have stopped at the entry (UNAVAILABLE, raft
    // stopped) instead of answering FAILED_PRECONDITION, and it still serves.
    let after = admin.cluster_info(info()).await.unwrap().into_inner();
    assert_eq!(after.feature_level, known);
    assert_eq!(admin.set_feature_level(set(known)).await.unwrap().into_inner().level, known);
    node.shutdown().await;
}
