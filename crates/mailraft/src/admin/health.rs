//! `mailraft admin health`: the group's health in one command, for operators and scripts (a Helm
//! test, a cron check, a deploy pipeline waiting for the cluster).
//!
//! 1. Ask the `--endpoint` node for its view (`ClusterInfo`). No leader known: print what is
//!    known and fail.
//! 2. Ask the leader at its admin address (learned from Raft traffic) for its view: the
//!    membership, each member's replicated (matched) index and lag. Only the leader knows those.
//! 3. Ask every other member at its admin address for its own state and applied index, each
//!    with a short deadline, so one unreachable node costs seconds, not the whole check.
//!
//! Exit status: 0 when a leader answers as leader and a majority of the voters (itself included)
//! say it is their leader in its term; non-zero when no leader is known, the leader does not
//! answer or no longer leads, or it leads no majority (a leader cut off from the others keeps
//! believing it leads), and, with `--max-lag N`, also when a member does not answer or is more
//! than N entries behind (log replicated to it, or applied, against the leader's).
//! Only existing RPCs are used: `ClusterInfo` on each node.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use mailraft_proto as pb;

use super::{Admin, connect};

/// Deadline of one node's answer.
const INFO_TIMEOUT: Duration = Duration::from_secs(5);

/// One member as the check saw it.
struct MemberHealth {
    node_id: u64,
    role: String,
    /// Its own answer, or why there is none.
    own: Result<pb::ClusterInfoResponse, String>,
    /// Highest index the leader replicated to it, when the leader knows.
    matched: Option<u64>,
    /// The leader's last log index minus `matched`.
    lag: Option<u64>,
}

impl MemberHealth {
    /// Entries its state machine is behind the leader's.
    fn applied_behind(&self, leader: &pb::ClusterInfoResponse) -> Option<u64> {
        self.own.as_ref().ok().map(|i| leader.last_applied.saturating_sub(i.last_applied))
    }
}

/// Runs the check and prints it; see the module documentation.
pub(super) async fn run(admin: &Admin, group_id: u64, json: bool, max_lag: Option<u64>) -> Result<()> {
    let asked = info(admin, &admin.endpoint, group_id).await.map_err(|e| anyhow!("{}: {e}", admin.endpoint))?;
    if asked.leader_id == 0 {
        if json {
            println!("{}", serde_json::json!({"healthy": false, "leader_id": 0, "asked": summary(&asked)}));
        }
        bail!(
            "no leader: node {} ({}, term {}) knows none (election in progress, no quorum, or not a member yet)",
            asked.node_id,
            asked.state,
            asked.term
        );
    }
    let leader = if asked.state == "leader" {
        asked
    } else if asked.leader_admin_addr.is_empty() {
        bail!(
            "node {} knows leader {} but not its admin address yet; try again, or give the leader's admin URL \
             with --endpoint",
            asked.node_id,
            asked.leader_id
        );
    } else {
        let url = asked.leader_admin_addr.clone();
        info(admin, &url, group_id)
            .await
            .map_err(|e| anyhow!("leader {} at {url} does not answer: {e}", asked.leader_id))?
    };
    if leader.state != "leader" {
        bail!("node {} no longer leads ({}); leadership is changing, try again", leader.node_id, leader.state);
    }

    let mut members = Vec::new();
    for m in &leader.members {
        let own = if m.node_id == leader.node_id {
            Ok(leader.clone())
        } else if m.admin_addr.is_empty() {
            Err("admin address not known yet".to_owned())
        } else {
            info(admin, &m.admin_addr, group_id).await.map_err(|e| format!("{}: {e}", m.admin_addr))
        };
        let (matched, lag) = if m.node_id == leader.node_id {
            (Some(leader.last_log_index), Some(0))
        } else if m.has_matched {
            (Some(m.matched_index), Some(m.lag))
        } else {
            (None, None)
        };
        members.push(MemberHealth { node_id: m.node_id, role: m.role.clone(), own, matched, lag });
    }

    let mut problems = problems(&leader, &members, max_lag);
    // A leader cut off from the others keeps saying it leads (Raft has it step down only when
    // it learns of a higher term); it is the leader only if a majority of voters follow it.
    let voters: Vec<&MemberHealth> = members.iter().filter(|m| m.role == "voter").collect();
    let following = voters
        .iter()
        .filter(|m| m.own.as_ref().is_ok_and(|i| i.leader_id == leader.node_id && i.term == leader.term))
        .count();
    let quorum = following * 2 > voters.len();
    if !quorum {
        problems.insert(0, format!("only {following} of {} voters follow leader {}", voters.len(), leader.node_id));
    }
    if json {
        println!("{}", to_json(&leader, &members, &problems));
    } else {
        print_table(&leader, &members, &problems);
    }
    if !quorum {
        bail!(
            "no leader with a quorum: node {} says it leads term {}, but only {following} of {} voters follow it",
            leader.node_id,
            leader.term,
            voters.len()
        );
    }
    if max_lag.is_some() && !problems.is_empty() {
        bail!("unhealthy: {}", problems.join("; "));
    }
    Ok(())
}

/// What is wrong with the members, in words (empty: nothing).
fn problems(leader: &pb::ClusterInfoResponse, members: &[MemberHealth], max_lag: Option<u64>) -> Vec<String> {
    let mut out = Vec::new();
    for m in members {
        if let Err(e) = &m.own {
            out.push(format!("node {} does not answer ({e})", m.node_id));
            continue;
        }
        let Some(max) = max_lag else { continue };
        match m.lag {
            Some(lag) if lag > max => out.push(format!("node {} log is {lag} entries behind", m.node_id)),
            None => out.push(format!("node {}: the leader has no replication progress for it yet", m.node_id)),
            _ => {}
        }
        if let Some(behind) = m.applied_behind(leader).filter(|b| *b > max) {
            out.push(format!("node {} applied index is {behind} entries behind", m.node_id));
        }
    }
    out
}

async fn info(admin: &Admin, url: &str, group_id: u64) -> Result<pb::ClusterInfoResponse> {
    let call = async {
        let mut client = connect(url, admin.tls.as_ref()).await?;
        let info = client.cluster_info(pb::ClusterInfoRequest { group_id }).await?.into_inner();
        anyhow::Ok(info)
    };
    tokio::time::timeout(INFO_TIMEOUT, call).await.map_err(|_| anyhow!("no answer within {INFO_TIMEOUT:?}"))?
}

fn summary(i: &pb::ClusterInfoResponse) -> serde_json::Value {
    serde_json::json!({
        "node_id": i.node_id, "state": i.state, "term": i.term, "leader_id": i.leader_id,
        "last_log_index": i.last_log_index, "last_applied": i.last_applied,
    })
}

fn to_json(leader: &pb::ClusterInfoResponse, members: &[MemberHealth], problems: &[String]) -> String {
    let members: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            let own = m.own.as_ref().ok();
            serde_json::json!({
                "node_id": m.node_id,
                "role": m.role,
                "answered": own.is_some(),
                "error": m.own.as_ref().err(),
                "state": own.map(|i| i.state.clone()),
                "term": own.map(|i| i.term),
                "applied": own.map(|i| i.last_applied),
                "applied_behind": m.applied_behind(leader),
                "matched_index": m.matched,
                "lag": m.lag,
            })
        })
        .collect();
    serde_json::json!({
        "healthy": problems.is_empty(),
        "cluster_id": format!("{:016x}", leader.cluster_id),
        "leader_id": leader.node_id,
        "leader_addr": leader.leader_addr,
        "term": leader.term,
        "last_log_index": leader.last_log_index,
        "last_applied": leader.last_applied,
        "members": members,
        "problems": problems,
    })
    .to_string()
}

fn print_table(leader: &pb::ClusterInfoResponse, members: &[MemberHealth], problems: &[String]) {
    let dash = || "-".to_owned();
    println!("cluster   {:016x}", leader.cluster_id);
    println!("leader    {} {} (term {})", leader.node_id, leader.leader_addr, leader.term);
    println!("log       last {} applied {}", leader.last_log_index, leader.last_applied);
    println!();
    println!("{:<6} {:<8} {:<10} {:>10} {:>8} {:>10} {:>8}", "id", "role", "state", "applied", "behind", "matched", "lag");
    for m in members {
        let (state, applied) = match &m.own {
            Ok(i) => (i.state.clone(), i.last_applied.to_string()),
            Err(_) => ("unreachable".to_owned(), dash()),
        };
        let behind = m.applied_behind(leader).map_or_else(dash, |b| b.to_string());
        let matched = m.matched.map_or_else(dash, |v| v.to_string());
        let lag = m.lag.map_or_else(dash, |v| v.to_string());
        println!("{:<6} {:<8} {:<10} {:>10} {:>8} {:>10} {:>8}", m.node_id, m.role, state, applied, behind, matched, lag);
    }
    for p in problems {
        println!("problem   {p}");
    }
}
