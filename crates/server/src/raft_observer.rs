//! Turns openraft's metrics into Prometheus gauges and log lines, for as long as the node runs.
//!
//! openraft publishes a `RaftMetrics` value on a watch channel whenever its state changes; this
//! task follows that channel and
//! - sets the gauges declared in [`crate::metrics`] (term, leader, log/applied/snapshot index,
//!   per-follower lag on the leader, members by role; `kind=purged` is the last index dropped
//!   from the log by compaction);
//! - logs ONE line at INFO when the leader changes (`leader changed`, with term and leader id),
//!   so an operator reading any node's log sees every failover, and one when this node starts an
//!   election. openraft's own INFO lines are noisy and are filtered out by the default log filter.
//!
//! Follower labels are node ids: bounded by the group's size.

use std::collections::BTreeSet;

use mailraft_store::Raft;
use openraft::ServerState;
use tokio::sync::watch;

use crate::metrics::{
    RAFT_ELECTIONS, RAFT_FOLLOWER_LAG, RAFT_IS_LEADER, RAFT_LEADER_CHANGES, RAFT_LEADER_ID, RAFT_LOG_INDEX, RAFT_MEMBERS,
    RAFT_TERM,
};

/// Follows `raft`'s metrics until `stop` turns true or Raft shuts down.
pub async fn run(raft: Raft, mut stop: watch::Receiver<bool>) {
    let mut rx = raft.metrics();
    let mut last_leader: Option<(u64, Option<u64>)> = None;
    let mut last_state = ServerState::Learner;
    let mut followers_seen: BTreeSet<u64> = BTreeSet::new();
    loop {
        let m = rx.borrow_and_update().clone();
        metrics::gauge!(RAFT_TERM).set(m.current_term as f64);
        metrics::gauge!(RAFT_LEADER_ID).set(m.current_leader.unwrap_or(0) as f64);
        metrics::gauge!(RAFT_IS_LEADER).set(if m.state == ServerState::Leader { 1.0 } else { 0.0 });
        let last_log = m.last_log_index.unwrap_or(0);
        metrics::gauge!(RAFT_LOG_INDEX, "kind" => "last_log").set(last_log as f64);
        metrics::gauge!(RAFT_LOG_INDEX, "kind" => "applied").set(m.last_applied.map(|l| l.index).unwrap_or(0) as f64);
        metrics::gauge!(RAFT_LOG_INDEX, "kind" => "snapshot").set(m.snapshot.map(|l| l.index).unwrap_or(0) as f64);
        metrics::gauge!(RAFT_LOG_INDEX, "kind" => "purged").set(m.purged.map(|l| l.index).unwrap_or(0) as f64);
        let membership = m.membership_config.membership();
        metrics::gauge!(RAFT_MEMBERS, "role" => "voter").set(membership.voter_ids().count() as f64);
        metrics::gauge!(RAFT_MEMBERS, "role" => "learner").set(membership.learner_ids().count() as f64);

        // Per-follower lag only exists on the leader; zero the series of followers this node no
        // longer replicates to so a dashboard does not show a stale lag forever.
        let mut now_seen = BTreeSet::new();
        if let Some(replication) = &m.replication {
            for (id, matched) in replication.iter() {
                if *id == m.id {
                    continue;
                }
                let matched = matched.map(|l| l.index).unwrap_or(0);
                metrics::gauge!(RAFT_FOLLOWER_LAG, "follower" => id.to_string())
                    .set(last_log.saturating_sub(matched) as f64);
                now_seen.insert(*id);
            }
        }
        for gone in followers_seen.difference(&now_seen) {
            metrics::gauge!(RAFT_FOLLOWER_LAG, "follower" => gone.to_string()).set(0.0);
        }
        followers_seen = now_seen;

        if m.state == ServerState::Candidate && last_state != ServerState::Candidate {
            metrics::counter!(RAFT_ELECTIONS).increment(1);
            tracing::info!(node_id = m.id, term = m.current_term, "starting an election");
        }
        last_state = m.state;

        let leader = (m.current_term, m.current_leader);
        if m.current_leader.is_some() && last_leader.map(|(_, l)| l) != Some(m.current_leader) {
            metrics::counter!(RAFT_LEADER_CHANGES).increment(1);
            let addr = m.current_leader.and_then(|id| membership.get_node(&id)).map(|n| n.addr.clone()).unwrap_or_default();
            tracing::info!(
                node_id = m.id,
                term = m.current_term,
                leader_id = m.current_leader.unwrap_or(0),
                leader_addr = %addr,
                this_node_leads = m.current_leader == Some(m.id),
                "leader changed"
            );
        }
        if m.current_leader.is_some() {
            last_leader = Some(leader);
        }

        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
