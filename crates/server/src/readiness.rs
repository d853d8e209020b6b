//! Readiness of a storage node: "caught up with the leader", for Kubernetes readiness probes and
//! rolling upgrades (the next node may stop only once the restarted one has caught up).
//!
//! A node is ready when
//! - it is the leader, and has applied its commit index to within [`READY_MAX_LAG`] entries, and
//!   (if openraft knows when) a quorum acknowledged it within the freshness window; or
//! - it is a follower or learner, the leader it knows is the one whose AppendEntries it last
//!   accepted, that message arrived within the freshness window, and its applied index is within
//!   [`READY_MAX_LAG`] entries of the commit index that message carried.
//!
//! Everything else is not ready: no leader known (an election, a partition, or a node that was
//! never added to a cluster), a candidate, a node installing a snapshot or still replaying a long
//! log, Raft stopped.
//!
//! Why the leader's commit index comes from AppendEntries: openraft's metrics give a follower its
//! own applied index but not the leader's commit index, and the follower's own commit index only
//! covers the log it already holds, so a follower far behind would look caught up. Every
//! AppendEntries (heartbeats included, every `raft.heartbeat_ms`) carries the leader's commit
//! index; [`LeaderCommit`] keeps the last one accepted (`raft_service.rs` records it). The
//! freshness window (twice the longest election timeout) is how long a follower trusts that
//! number: a follower that hears nothing for that long would have started an election anyway.
//!
//! Liveness is separate (the process and its runtime answer at all): a node that is merely
//! behind must not be restarted, which would only put it further behind.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mailraft_store::{LogId, Raft, Vote};
use openraft::ServerState;

/// A node is ready when its applied index is at most this many entries behind the leader's
/// commit index. Small enough that a ready node serves reads without a long wait for its state
/// machine, large enough that a follower under steady write load (a few batches in flight
/// between heartbeats) does not flap.
pub const READY_MAX_LAG: u64 = 100;

/// The last leader commit index this node accepted in an AppendEntries.
#[derive(Debug, Default)]
pub struct LeaderCommit {
    heard: Mutex<Option<Heard>>,
}

/// One accepted AppendEntries, as far as readiness cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heard {
    /// The sender (the leader of `term`).
    leader: u64,
    term: u64,
    /// Its commit index (0 when it has committed nothing yet).
    commit: u64,
    at: Instant,
}

impl LeaderCommit {
    /// Notes that an AppendEntries of `vote`'s leader carrying `leader_commit` was accepted.
    pub fn record(&self, vote: &Vote, leader_commit: Option<LogId>) {
        let heard = Heard {
            leader: vote.leader_id().node_id,
            term: vote.leader_id().term,
            commit: leader_commit.map_or(0, |l| l.index),
            at: Instant::now(),
        };
        let mut slot = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        // Only ever forward: a delayed message of an older term must not replace a newer one.
        // (A term has one leader, so term and commit order them.)
        if slot.is_none_or(|old| (heard.term, heard.commit) >= (old.term, old.commit)) {
            *slot = Some(heard);
        }
    }

    fn get(&self) -> Option<Heard> {
        *self.heard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The answer of a readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Whether the node is caught up with a leader.
    pub ready: bool,
    /// This node's Raft state ("leader", "follower", "learner", "candidate", "shutdown").
    pub state: &'static str,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// Its applied index.
    pub applied: u64,
    /// The leader's commit index as this node knows it.
    pub leader_commit: Option<u64>,
    /// Why (not) ready, for the probe's body and the operator.
    pub reason: String,
}

impl Readiness {
    /// One JSON object, the body of `GET /ready`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "ready": self.ready,
            "state": self.state,
            "leader": self.leader,
            "applied": self.applied,
            "leader_commit": self.leader_commit,
            "max_lag": READY_MAX_LAG,
            "reason": self.reason,
        })
        .to_string()
    }
}

/// Checks one node's readiness; cheap to clone, one per process's HTTP listener.
#[derive(Clone)]
pub struct ReadinessProbe {
    pub(crate) raft: Raft,
    pub(crate) heard: Arc<LeaderCommit>,
    /// How long a leader's commit index (follower) or quorum acknowledgement (leader) counts.
    pub(crate) fresh: Duration,
}

impl ReadinessProbe {
    /// Asks Raft for its state and decides.
    pub async fn check(&self) -> Readiness {
        let m = self.raft.metrics().borrow().clone();
        let leader_commit = if m.state == ServerState::Leader {
            // Only the leader's own commit index is authoritative for it; a stopped core
            // answers an error, which is "not ready" below.
            match self.raft.with_raft_state(|st| st.committed.map_or(0, |l| l.index)).await {
                Ok(c) => Some(c),
                Err(_) => return not_ready(Inputs::from_metrics(&m), "raft is stopped"),
            }
        } else {
            None
        };
        let mut inputs = Inputs::from_metrics(&m);
        inputs.own_commit = leader_commit;
        decide(&inputs, self.heard.get(), self.fresh, Instant::now())
    }
}

/// What [`decide`] looks at, taken from openraft's metrics.
#[derive(Debug, Clone, Copy)]
struct Inputs {
    state: ServerState,
    leader: Option<u64>,
    term: u64,
    applied: u64,
    /// The leader's own commit index (leaders only).
    own_commit: Option<u64>,
    /// Milliseconds since a quorum last acknowledged this leader.
    quorum_ack_ms: Option<u64>,
}

impl Inputs {
    fn from_metrics(m: &openraft::RaftMetrics<u64, mailraft_store::Node>) -> Self {
        Inputs {
            state: m.state,
            leader: m.current_leader,
            term: m.current_term,
            applied: m.last_applied.map_or(0, |l| l.index),
            own_commit: None,
            quorum_ack_ms: m.millis_since_quorum_ack,
        }
    }
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    }
}

fn not_ready(i: Inputs, reason: impl Into<String>) -> Readiness {
    Readiness {
        ready: false,
        state: state_name(i.state),
        leader: i.leader,
        applied: i.applied,
        leader_commit: None,
        reason: reason.into(),
    }
}

/// The readiness rule of the module documentation, as a pure function of Raft's state, the last
/// accepted AppendEntries and the time.
fn decide(i: &Inputs, heard: Option<Heard>, fresh: Duration, now: Instant) -> Readiness {
    let Some(leader) = i.leader else {
        return not_ready(*i, "no leader known (election in progress, no quorum, or not a member yet)");
    };
    let commit = match i.state {
        ServerState::Leader => {
            if let Some(ms) = i.quorum_ack_ms.filter(|ms| u128::from(*ms) > fresh.as_millis()) {
                return not_ready(*i, format!("leader without a quorum acknowledgement for {ms} ms"));
            }
            i.own_commit.unwrap_or(0)
        }
        ServerState::Follower | ServerState::Learner => {
            let Some(h) = heard.filter(|h| h.leader == leader && h.term == i.term) else {
                return not_ready(*i, format!("no AppendEntries accepted from leader {leader} in term {} yet", i.term));
            };
            let age = now.saturating_duration_since(h.at);
            if age > fresh {
                return not_ready(*i, format!("nothing heard from leader {leader} for {} ms", age.as_millis()));
            }
            h.commit
        }
        ServerState::Candidate | ServerState::Shutdown => return not_ready(*i, "not a leader, follower or learner"),
    };
    let lag = commit.saturating_sub(i.applied);
    let ready = lag <= READY_MAX_LAG;
    let reason = if ready {
        format!("caught up: applied {} of leader commit {commit}", i.applied)
    } else {
        format!("catching up: applied {} of leader commit {commit} ({lag} behind, at most {READY_MAX_LAG})", i.applied)
    };
    Readiness { ready, state: state_name(i.state), leader: Some(leader), applied: i.applied, leader_commit: Some(commit), reason }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const FRESH: Duration = Duration::from_secs(4);

    fn follower(applied: u64) -> Inputs {
        Inputs {
            state: ServerState::Follower,
            leader: Some(1),
            term: 3,
            applied,
            own_commit: None,
            quorum_ack_ms: None,
        }
    }

    fn heard(commit: u64, at: Instant) -> Option<Heard> {
        Some(Heard { leader: 1, term: 3, commit, at })
    }

    #[test]
    fn follower_is_ready_within_the_bound_of_the_leaders_commit() {
        let now = Instant::now();
        assert!(decide(&follower(500), heard(500, now), FRESH, now).ready);
        assert!(decide(&follower(400), heard(400 + READY_MAX_LAG, now), FRESH, now).ready);
        let behind = decide(&follower(399), heard(400 + READY_MAX_LAG, now), FRESH, now);
        assert!(!behind.ready, "{behind:?}");
        assert!(behind.reason.contains("catching up"), "{}", behind.reason);
    }

    #[test]
    fn follower_needs_a_fresh_message_of_the_leader_it_knows() {
        let now = Instant::now();
        assert!(!decide(&follower(10), None, FRESH, now).ready);
        let stale = decide(&follower(10), heard(10, now), FRESH, now + FRESH + Duration::from_millis(1));
        assert!(!stale.ready && stale.reason.contains("nothing heard"), "{stale:?}");
        let other_term = Some(Heard { leader: 1, term: 2, commit: 10, at: now });
        assert!(!decide(&follower(10), other_term, FRESH, now).ready);
        let other_leader = Some(Heard { leader: 3, term: 3, commit: 10, at: now });
        assert!(!decide(&follower(10), other_leader, FRESH, now).ready);
    }

    #[test]
    fn no_leader_or_candidate_is_not_ready() {
        let now = Instant::now();
        let mut i = follower(10);
        i.leader = None;
        assert!(!decide(&i, heard(10, now), FRESH, now).ready);
        let mut c = follower(10);
        c.state = ServerState::Candidate;
        assert!(!decide(&c, heard(10, now), FRESH, now).ready);
    }

    #[test]
    fn leader_compares_with_its_own_commit_and_quorum() {
        let now = Instant::now();
        let leader = Inputs {
            state: ServerState::Leader,
            leader: Some(1),
            term: 3,
            applied: 50,
            own_commit: Some(52),
            quorum_ack_ms: Some(100),
        };
        assert!(decide(&leader, None, FRESH, now).ready);
        let lost = Inputs { quorum_ack_ms: Some(10_000), ..leader };
        assert!(!decide(&lost, None, FRESH, now).ready);
        let behind = Inputs { own_commit: Some(50 + READY_MAX_LAG + 1), ..leader };
        assert!(!decide(&behind, None, FRESH, now).ready);
    }

    #[test]
    fn an_older_message_never_replaces_a_newer_one() {
        let lc = LeaderCommit::default();
        lc.record(&Vote::new_committed(3, 1), Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 20)));
        lc.record(&Vote::new_committed(3, 1), Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 15)));
        assert_eq!(lc.get().map(|h| h.commit), Some(20));
        // A new leader's lower commit index does replace it (a new term starts from its own).
        lc.record(&Vote::new_committed(4, 2), Some(LogId::new(openraft::CommittedLeaderId::new(4, 2), 18)));
        assert_eq!(lc.get().map(|h| (h.leader, h.commit)), Some((2, 18)));
    }
}
