//! `Admin.SetFeatureLevel` (`mailraft admin set-feature-level N`): raises the cluster's feature
//! level, the version of the replicated apply rules (`mailraft_model::feature`).
//!
//! Flow, on the leader:
//! 1. A read-index round: only the leader proposes, and it must see the current membership
//!    (a follower answers NOT_LEADER with the leader's address).
//! 2. Every member of the membership, voters and learners, is asked which level its binary
//!    knows (`Raft.Identify`, concurrently, each bounded by the peer call timeout); this node
//!    answers for itself. A member that knows less, does not answer, or is not the node its
//!    address should hold is named in a FAILED_PRECONDITION refusal, and nothing is proposed:
//!    it would stop at the entry (`FatalError` in the model) instead of applying it.
//! 3. Otherwise `Command::SetFeatureLevel` goes through the log; every replica switches rules at
//!    that entry. A level at or below the current one changes nothing.
//!
//! Not closed: a node added between step 2 and the commit with an older binary is not asked.
//! It stops at the entry with the model's message (safe: it never applies the entry with the
//! old rules); upgrading its binary lets it continue.

use std::collections::BTreeMap;

use futures::future::join_all;
use mailraft_model::{Command, KNOWN_FEATURE_LEVEL, ModelError, Outcome};
use mailraft_proto as pb;

use crate::cluster_id::format_id;
use crate::error::ServerError;
use crate::mailboxes::unexpected;
use crate::network::Network;
use crate::shared::Shared;

/// What one member said about the level it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// Its binary applies levels up to this one (0: a binary from before feature levels).
    Level(u32),
    /// It could not be asked, or the process at its address is another node; why.
    Unknown(String),
}

/// The members that cannot apply `level`, each with the reason, in node id order.
fn behind(level: u32, members: &BTreeMap<u64, Known>) -> Vec<String> {
    members
        .iter()
        .filter_map(|(id, known)| match known {
            Known::Level(k) if *k >= level => None,
            Known::Level(0) => Some(format!("node {id} runs a binary without feature levels")),
            Known::Level(k) => Some(format!("node {id} knows up to level {k}")),
            Known::Unknown(why) => Some(format!("node {id}: {why}")),
        })
        .collect()
}

/// Asks every member of the current membership which level its binary knows.
async fn survey(shared: &Shared, network: &Network) -> BTreeMap<u64, Known> {
    let members: Vec<(u64, String)> = {
        let metrics = shared.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().nodes().map(|(id, node)| (*id, node.addr.clone())).collect()
    };
    let cluster = shared.cluster.get();
    let asks = members.into_iter().map(|(id, addr)| async move {
        if id == shared.node_id {
            return (id, Known::Level(KNOWN_FEATURE_LEVEL));
        }
        let known = match network.identify(&addr).await {
            // Answering is not enough: a wiped or foreign process at that address is not the member.
            Ok(info) if info.node_id == id && info.cluster_id == cluster => Known::Level(info.known_feature_level),
            Ok(info) => Known::Unknown(format!(
                "the process at {addr} is node {} of cluster {}",
                info.node_id,
                format_id(info.cluster_id)
            )),
            Err(e) => Known::Unknown(e),
        };
        (id, known)
    });
    join_all(asks).await.into_iter().collect()
}

/// `Admin.SetFeatureLevel`: see the module docs.
pub(crate) async fn set_feature_level(
    shared: &Shared,
    network: &Network,
    level: u32,
) -> Result<pb::SetFeatureLevelResponse, ServerError> {
    if level == 0 {
        return Err(ServerError::Invalid("feature levels start at 1".into()));
    }
    shared.linearize().await?;
    let members = survey(shared, network).await;
    let behind = behind(level, &members);
    if !behind.is_empty() {
        return Err(ServerError::Model(ModelError::Cannot(format!(
            "feature level {level} is not known to every member ({}); upgrade their binaries first",
            behind.join("; ")
        ))));
    }
    match shared.write(Command::SetFeatureLevel { level }).await? {
        Outcome::FeatureLevelSet { previous, level } => {
            tracing::info!(previous, level, "feature level set");
            Ok(pb::SetFeatureLevelResponse { previous, level })
        }
        other => Err(unexpected(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_behind_are_named_with_the_reason() {
        let members = BTreeMap::from([
            (1, Known::Level(3)),
            (2, Known::Level(2)),
            (3, Known::Level(0)),
            (4, Known::Unknown("no answer from http://n4 within 5s".into())),
        ]);
        assert_eq!(
            behind(3, &members),
            [
                "node 2 knows up to level 2",
                "node 3 runs a binary without feature levels",
                "node 4: no answer from http://n4 within 5s"
            ]
        );
        assert_eq!(behind(2, &members).len(), 2, "nodes 3 and 4 cannot apply even level 2");
        // A binary without feature levels cannot decode the command, even for level 1.
        assert_eq!(behind(1, &members).len(), 2);
    }
}
