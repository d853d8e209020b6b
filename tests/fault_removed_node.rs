//! A node that was removed from the cluster and comes back with its old data (so it still
//! believes it is a voter and starts elections when it hears no leader) is refused: the remaining
//! members keep their leader and term for many election timeouts, the membership does not change,
//! and writes go on. The members' `mailraft_raft_peer_refused_total` shows the node did try.
//!
//! This is an end-to-end check that nothing is disturbed; it does not isolate the vote refusal:
//! openraft's leader lease and the returning node's shorter log also reject its votes, so the
//! test passes even without Mailraft's check. The refusal itself (`cluster_id.rs`) is pinned by
//! `crates/server/tests/membership.rs`, which sends a removed node's vote directly.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use support::check::{Ledger, Outcome, append_recorded};
use support::cluster::{Cluster, Options};
use support::observe::{metric_sum, scrape, wait_for};

/// How long the cluster is watched for disruption: many election timeouts (1–2 s here).
const WATCH: Duration = Duration::from_secs(8);

#[test]
fn removed_node_that_returns_is_refused_and_disturbs_nothing() -> Result<()> {
    let mut cluster = Cluster::start_with(Options::new(3).with_metrics())?;
    let leader = cluster.leader()?;
    let removed = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .ok_or_else(|| anyhow!("no follower"))?;
    let stay: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != removed).collect();
    let fe = cluster.start_frontend(&stay)?;
    let mut client = fe.client()?;
    ensure!(client.run("CREATE Returning")?.is_ok());
    let uidvalidity = client.status("Returning")?.2;
    let ledger = Ledger::default();

    cluster.kill(removed)?;
    cluster.remove_node(removed, false)?;
    let before = cluster.wait_converged(&stay, Duration::from_secs(30))?;
    let first = append_recorded(&mut client, "Returning", "before-return", &ledger);
    ensure!(
        matches!(first, Outcome::Ok(Some(_))),
        "write before the return: {first:?}"
    );

    // It comes back with its old data and its old idea of the membership.
    cluster.restart(removed)?;
    let until = Instant::now() + WATCH;
    let mut returned_terms = Vec::new();
    let mut disturbed = None;
    // A bounded observation: nothing may change during it, so it is watched to the end.
    wait_for::<()>("the observation window to pass", WATCH + Duration::from_secs(5), || {
        for id in &stay {
            let info = cluster.info(*id)?;
            if info.term != before.term || info.leader_id != before.node_id {
                disturbed.get_or_insert(format!(
                    "node {id} moved to term {} leader {}",
                    info.term, info.leader_id
                ));
            }
            if info.members.iter().any(|m| m.node_id == removed) {
                disturbed.get_or_insert(format!("node {id} lists removed node {removed} as a member again"));
            }
        }
        if let Ok(info) = cluster.info(removed) {
            returned_terms.push(info.term);
        }
        Ok((Instant::now() >= until).then_some(()))
    })?;
    let out = append_recorded(&mut client, "Returning", "after-return", &ledger);
    let last = cluster.info(before.node_id)?;
    let mut refused = 0.0;
    for id in &stay {
        let metrics = cluster
            .metrics_addr(*id)
            .ok_or_else(|| anyhow!("no metrics listener"))?;
        refused += metric_sum(&scrape(metrics)?, "mailraft_raft_peer_refused_total", "").unwrap_or(0.0);
    }
    let contents = BTreeMap::from([("Returning".to_owned(), client.read_mailbox("Returning")?)]);
    let report = ledger.check(&contents, &HashMap::from([("Returning".to_owned(), uidvalidity)]));
    println!(
        "removed node {removed} returned: leader {} kept term {} -> {} over {WATCH:?}; the returned node's \
         terms {:?}..{:?}; Raft requests refused by the members {refused}; {report}",
        before.node_id,
        before.term,
        last.term,
        returned_terms.first(),
        returned_terms.last()
    );
    if let Some(what) = disturbed {
        anyhow::bail!("the returned node disturbed the cluster: {what}");
    }
    ensure!(matches!(out, Outcome::Ok(Some(_))), "writes go on: {out:?}");
    report.ensure_clean()?;
    ensure!(
        refused > 0.0,
        "the returned node's Raft requests were refused (it did try)"
    );
    cluster.passed();
    Ok(())
}
