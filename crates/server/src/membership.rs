//! Changing who is in the Raft group, run on the leader for `mailraft admin`.
//!
//! - **add-node**: the new node must answer at its address with the expected node id and must not
//!   belong to another cluster (it is asked with `Raft.Identify`, over mTLS as node to node). It is added as a learner;
//!   openraft replicates the log (or a snapshot) until the leader believes it is up to date, and
//!   only then is it promoted to voter. A node that is a voter while still empty would count
//!   toward the quorum without having the data, so the order matters.
//! - **promote**: a learner becomes a voter, refused while it lags by more than [`PROMOTE_MAX_LAG`].
//! - **remove-node**: refused, unless forced, for the leader itself (transfer leadership first) and
//!   when the voters that remain and answer right now would not form a majority of the new voter
//!   set — the change could not commit, or would leave a group that cannot make progress. The last
//!   voter is never removed. A removed node's id should not be reused; a removed node that comes
//!   back is refused by its former peers (see `cluster_id.rs`).
//! - **transfer-leader**: openraft 0.9 has no leadership transfer, so it is built from what it
//!   has: the leader stops sending heartbeats, waits until the followers' leader lease (the
//!   election timeout's upper bound) has expired, then asks the target to start an election. A
//!   follower only starts its own election a further election timeout later, so the caught-up
//!   target normally wins; the leader checks the outcome and retries until a deadline.
//!   Heartbeats are switched back on whatever happens.
//!
//! Every change is a joint-consensus membership change committed through the log
//! (`Raft::change_membership`), so it survives failover like any other entry.
//!
//! The calls to other nodes (identify, trigger an election) go through [`Network`] to their peer
//! URLs with this node's certificate, and are Raft-service RPCs: Admin is for operators only.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mailraft_proto as pb;
use mailraft_store::{Node, Raft};
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use tokio::time::Instant;

use crate::cluster_id::format_id;
use crate::error::ServerError;
use crate::network::Network;
use crate::shared::Shared;

/// A learner is promoted only when at most this many entries behind the leader.
pub const PROMOTE_MAX_LAG: u64 = 100;
/// How long add-node waits for the new node to catch up before it answers (it keeps catching up).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);
/// Overall bound on a leadership transfer.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(20);

type Metrics = RaftMetrics<u64, Node>;

/// The current metrics if this node leads; `NOT_LEADER` with the leader's address otherwise.
fn require_leader(shared: &Shared) -> Result<Metrics, ServerError> {
    let m = shared.raft.metrics().borrow().clone();
    if m.state == ServerState::Leader && m.current_leader == Some(shared.node_id) {
        return Ok(m);
    }
    let leader = m.current_leader.and_then(|id| m.membership_config.membership().get_node(&id).map(|n| n.addr.clone()));
    Err(ServerError::NotLeader { leader })
}

fn voters(m: &Metrics) -> BTreeSet<u64> {
    m.membership_config.membership().voter_ids().collect()
}

fn learners(m: &Metrics) -> BTreeSet<u64> {
    m.membership_config.membership().learner_ids().collect()
}

/// Entries `id` is behind the leader's last log index (`None` when the leader has no data on it).
fn lag(m: &Metrics, id: u64) -> Option<u64> {
    let matched = m.replication.as_ref()?.get(&id)?.as_ref().map(|l| l.index).unwrap_or(0);
    Some(m.last_log_index.unwrap_or(0).saturating_sub(matched))
}

/// `mailraft admin add-node`: see the module docs.
pub async fn add_node(
    shared: &Shared,
    network: &Network,
    id: u64,
    addr: &str,
    learner_only: bool,
) -> Result<pb::AddNodeResponse, ServerError> {
    let m = require_leader(shared)?;
    if id == 0 {
        return Err(ServerError::Invalid("node id 0 is reserved".into()));
    }
    if !(addr.starts_with("http://") || addr.starts_with("https://")) {
        return Err(ServerError::Invalid(format!("node address must be an http:// or https:// URL, got {addr:?}")));
    }
    // A removed id is refused by the Raft service (its certificate stays valid) until an operator
    // adds it again, here: the membership entry that adds it takes it off the retired list
    // (`mailraft_store` state machine). It joins as a learner with whatever it has, so a
    // replacement with an empty volume is safe; a node must never rejoin with a copy of another
    // member's data.
    let membership = m.membership_config.membership();
    if voters(&m).contains(&id) {
        return Err(ServerError::Membership(format!("node {id} is already a voter")));
    }
    if let Some(existing) = membership.get_node(&id)
        && existing.addr != addr
    {
        return Err(ServerError::Membership(format!(
            "node {id} is already a learner at {}; remove it first to change its address",
            existing.addr
        )));
    }
    let info = network
        .identify(addr)
        .await
        .map_err(|e| ServerError::Membership(format!("cannot reach node {id}: {e}")))?;
    if info.node_id != id {
        return Err(ServerError::Membership(format!("the node at {addr} is node {}, not node {id}", info.node_id)));
    }
    let ours = shared.cluster.get();
    if info.cluster_id != 0 && info.cluster_id != ours {
        return Err(ServerError::Membership(format!(
            "the node at {addr} belongs to cluster {}, this is cluster {}; wipe its data directory to join",
            format_id(info.cluster_id),
            format_id(ours)
        )));
    }
    let level = mailraft_model::feature::stored_level(&shared.view)?;
    can_apply_level(addr, info.known_feature_level, level)?;

    tracing::info!(node_id = id, %addr, "adding node as learner");
    let added = tokio::time::timeout(CATCH_UP_TIMEOUT, shared.raft.add_learner(id, Node { addr: addr.to_string() }, true));
    let resp = match added.await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ServerError::Unavailable(format!(
                "node {id} was added as a learner but has not caught up within {CATCH_UP_TIMEOUT:?}; \
                 it keeps catching up: run `mailraft admin promote {id}` later"
            )));
        }
    };
    let caught_up_index = resp.log_id.index;
    if learner_only {
        return Ok(pb::AddNodeResponse { promoted: false, caught_up_index });
    }
    tracing::info!(node_id = id, "node caught up; promoting to voter");
    shared.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await?;
    Ok(pb::AddNodeResponse { promoted: true, caught_up_index })
}

/// Refuses a joining node whose binary cannot apply the cluster's feature level: it would stop at
/// its first entry (docs/OPERATIONS.md, "Rolling upgrades and the feature level"). `known` 0 is a
/// binary from before feature levels, which cannot even decode the command that set one.
fn can_apply_level(addr: &str, known: u32, level: u32) -> Result<(), ServerError> {
    if known < level {
        return Err(ServerError::Membership(format!(
            "the node at {addr} runs a binary that knows feature level {known}, but the cluster is at level \
             {level}; upgrade its binary first"
        )));
    }
    Ok(())
}

/// `mailraft admin promote`: a caught-up learner becomes a voter.
pub async fn promote(shared: &Shared, id: u64) -> Result<(), ServerError> {
    let m = require_leader(shared)?;
    if voters(&m).contains(&id) {
        return Err(ServerError::Membership(format!("node {id} is already a voter")));
    }
    if !learners(&m).contains(&id) {
        return Err(ServerError::Membership(format!("node {id} is not a member; add it with add-node first")));
    }
    match lag(&m, id) {
        Some(behind) if behind <= PROMOTE_MAX_LAG => {}
        Some(behind) => {
            return Err(ServerError::Membership(format!(
                "node {id} is {behind} entries behind the leader; promote it once it has caught up"
            )));
        }
        None => return Err(ServerError::Membership(format!("no replication progress known for node {id} yet"))),
    }
    shared.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await?;
    tracing::info!(node_id = id, "node promoted to voter");
    Ok(())
}

/// `mailraft admin remove-node`: see the module docs for what is refused.
pub async fn remove(shared: &Shared, network: &Network, id: u64, force: bool) -> Result<(), ServerError> {
    let m = require_leader(shared)?;
    let voters = voters(&m);
    if learners(&m).contains(&id) {
        shared.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await?;
        tracing::info!(node_id = id, "learner removed");
        return Ok(());
    }
    if !voters.contains(&id) {
        return Err(ServerError::Membership(format!("node {id} is not a member")));
    }
    if voters.len() == 1 {
        return Err(ServerError::Membership("cannot remove the last voter".into()));
    }
    if id == shared.node_id && !force {
        return Err(ServerError::Membership(format!(
            "node {id} is the leader; move leadership first (mailraft admin transfer-leader <id>) or use --force"
        )));
    }
    let remaining: BTreeSet<u64> = voters.iter().copied().filter(|v| *v != id).collect();
    let mut healthy = 0usize;
    let mut down = Vec::new();
    for voter in &remaining {
        if *voter == shared.node_id {
            healthy += 1;
            continue;
        }
        let addr = m.membership_config.membership().get_node(voter).map(|n| n.addr.clone()).unwrap_or_default();
        // Answering is not enough: a wiped or foreign process at that address is no voter.
        match network.identify(&addr).await {
            Ok(info) if info.node_id == *voter && info.cluster_id == shared.cluster.get() => healthy += 1,
            Ok(info) => down.push(format!(
                "node {voter}: the process at {addr} is node {} of cluster {}",
                info.node_id,
                format_id(info.cluster_id)
            )),
            Err(e) => down.push(format!("node {voter}: {e}")),
        }
    }
    let majority = remaining.len() / 2 + 1;
    if healthy < majority && !force {
        return Err(ServerError::Membership(format!(
            "after removing node {id}, only {healthy} of the {} remaining voters answer ({}), fewer than the \
             majority of {majority} the group needs; bring them back first or use --force",
            remaining.len(),
            down.join("; ")
        )));
    }
    shared.raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await?;
    tracing::info!(node_id = id, forced = force, "voter removed");
    Ok(())
}

/// Turns the leader's heartbeats off for as long as it lives.
struct HeartbeatsOff<'a>(&'a mailraft_store::Raft);

impl<'a> HeartbeatsOff<'a> {
    fn new(raft: &'a mailraft_store::Raft) -> Self {
        raft.runtime_config().heartbeat(false);
        HeartbeatsOff(raft)
    }
}

impl Drop for HeartbeatsOff<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}

/// `mailraft admin transfer-leader`: see the module docs.
pub async fn transfer_leader(shared: &Arc<Shared>, network: &Network, target: u64) -> Result<u64, ServerError> {
    let m = require_leader(shared)?;
    if target == shared.node_id {
        return Ok(target);
    }
    if !voters(&m).contains(&target) {
        return Err(ServerError::Membership(format!("node {target} is not a voter")));
    }
    match lag(&m, target) {
        Some(behind) if behind <= PROMOTE_MAX_LAG => {}
        other => {
            return Err(ServerError::Membership(format!(
                "node {target} is not caught up ({}); try again when it is",
                other.map(|b| format!("{b} entries behind")).unwrap_or_else(|| "no progress known".into())
            )));
        }
    }
    let addr = m.membership_config.membership().get_node(&target).map(|n| n.addr.clone()).unwrap_or_default();
    let config = shared.raft.config().clone();
    // The followers accept a vote only after the lease of the current leader has expired.
    let lease = Duration::from_millis(config.election_timeout_max + config.heartbeat_interval);

    // Heartbeats come back on when the guard drops: also when the admin client goes away and
    // tonic drops this future half-way.
    let _heartbeats_off = HeartbeatsOff::new(&shared.raft);
    let outcome = async {
        let deadline = Instant::now() + TRANSFER_TIMEOUT;
        let mut rx = shared.raft.metrics();
        while Instant::now() < deadline {
            tokio::time::sleep(lease).await;
            if let Err(e) = network.trigger_election(&addr).await {
                tracing::warn!(node_id = target, error = %e, "trigger election failed");
            }
            let settle = Instant::now() + Duration::from_millis(config.election_timeout_max * 2);
            let result = tokio::time::timeout_at(
                settle,
                rx.wait_for(|m| m.current_leader.is_some_and(|l| l != shared.node_id)),
            )
            .await;
            if let Ok(Ok(m)) = result {
                return match m.current_leader {
                    Some(l) if l == target => Ok(l),
                    Some(l) => Err(ServerError::Membership(format!("leadership went to node {l}, not node {target}"))),
                    None => Err(ServerError::internal("leader vanished")),
                };
            }
        }
        Err(ServerError::Unavailable(format!("node {target} did not take over within {TRANSFER_TIMEOUT:?}")))
    }
    .await;
    drop(_heartbeats_off);
    if let Ok(leader) = &outcome {
        tracing::info!(from = shared.node_id, to = leader, "leadership transferred");
    }
    outcome
}

/// Starts an election on this node (the target of a leadership transfer); refused unless it is a
/// voter.
pub async fn elect_self(raft: &Raft) -> Result<(), ServerError> {
    let m = raft.metrics().borrow().clone();
    if !m.membership_config.membership().voter_ids().any(|id| id == m.id) {
        return Err(ServerError::Membership(format!("node {} is not a voter", m.id)));
    }
    tracing::info!("election requested by the leader (leadership transfer)");
    raft.trigger().elect().await?;
    Ok(())
}

/// `Admin.ClusterInfo`: this node's view of the group.
pub fn cluster_info(shared: &Shared, network: &Network) -> Result<pb::ClusterInfoResponse, ServerError> {
    let directory = network.directory();
    let m = shared.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let leader_id = m.current_leader.unwrap_or(0);
    let leader_addr = m.current_leader.and_then(|id| membership.get_node(&id).map(|n| n.addr.clone())).unwrap_or_default();
    let voter_ids = voters(&m);
    let members = membership
        .nodes()
        .map(|(id, node)| {
            let matched = m.replication.as_ref().and_then(|r| r.get(id)).map(|l| l.as_ref().map(|l| l.index).unwrap_or(0));
            pb::MemberInfo {
                node_id: *id,
                addr: node.addr.clone(),
                role: if voter_ids.contains(id) { "voter" } else { "learner" }.into(),
                has_matched: matched.is_some(),
                matched_index: matched.unwrap_or(0),
                lag: lag(&m, *id).unwrap_or(0),
                admin_addr: directory.admin_addr(*id).unwrap_or_default(),
            }
        })
        .collect();
    let state = match m.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    Ok(pb::ClusterInfoResponse {
        node_id: shared.node_id,
        leader_id,
        leader_addr,
        last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        raft_metrics_json: serde_json::to_string(&m).map_err(ServerError::internal)?,
        cluster_id: shared.cluster.get(),
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        state: state.into(),
        members,
        snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
        leader_admin_addr: m.current_leader.and_then(|id| directory.admin_addr(id)).unwrap_or_default(),
        // 0 (never a level) says "unreadable": the rest of the answer is what an operator needs
        // to find out why, so a corrupt level must not hide it.
        feature_level: mailraft_model::feature::stored_level(&shared.view).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "feature level unreadable");
            0
        }),
        known_feature_level: mailraft_model::KNOWN_FEATURE_LEVEL,
    })
}

/// Entries read per scan while digesting; bounds memory, not the total.
const DIGEST_SCAN: usize = 1024;

/// `Admin.StateDigest`: SHA-256 over every (table, key, value) of one point-in-time view, with
/// the applied index of that same view. Two replicas at the same applied index must agree.
pub async fn state_digest(shared: &Shared) -> Result<pb::StateDigestResponse, ServerError> {
    use mailraft_model::{KvRead, Table};
    use sha2::{Digest, Sha256};
    let view = shared.view.clone();
    tokio::task::spawn_blocking(move || {
        view.read(|kv| -> Result<pb::StateDigestResponse, ServerError> {
            let applied_index = kv.applied_index()?;
            let mut hash = Sha256::new();
            let mut entries = 0u64;
            for table in Table::ALL {
                let mut start: Vec<u8> = Vec::new();
                loop {
                    let chunk = kv.scan(table, &start, None, DIGEST_SCAN);
                    for (k, v) in &chunk {
                        for part in [table.name().as_bytes(), k, v] {
                            hash.update((part.len() as u64).to_be_bytes());
                            hash.update(part);
                        }
                        entries += 1;
                    }
                    match chunk.last() {
                        Some((last, _)) if chunk.len() == DIGEST_SCAN => {
                            start = last.clone();
                            start.push(0);
                        }
                        _ => break,
                    }
                }
            }
            Ok(pb::StateDigestResponse { applied_index, sha256: hash.finalize().to_vec(), entries })
        })?
    })
    .await?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_node_behind_the_feature_level_cannot_join() {
        assert!(can_apply_level("https://n4", 2, 2).is_ok());
        assert!(can_apply_level("https://n4", 3, 2).is_ok());
        let refused = can_apply_level("https://n4", 1, 2).unwrap_err().to_string();
        assert!(refused.contains("knows feature level 1") && refused.contains("level 2"), "{refused}");
        // A binary without feature levels reports 0 and cannot join even a level-1 cluster.
        assert!(can_apply_level("https://n4", 0, 1).is_err());
    }
}
