//! Nodes that fall behind catch up and serve: a follower killed and restarted; a follower down
//! while the leader snapshots (every 50 entries) and purges its log past the follower's position,
//! so it must install a snapshot (its `mailraft_raft_snapshots_total{op="install"}` shows it did);
//! a node wiped and re-added under a new id. After each, the node has applied what the leader
//! applied and, made leader, serves every acknowledged message from its own state machine.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use support::Client;
use support::check::{Ledger, Outcome, Report, append_recorded, writer};
use support::cluster::{Cluster, Frontend, Options};
use support::observe::{ClusterInfo, metric_sum, scrape, wait_for};

const MAILBOX: &str = "CatchUp";
const SNAPSHOT_EVERY: u64 = 50;
/// Concurrent clients writing while a node is down: openraft keeps 1000 entries behind its last
/// snapshot (`max_in_snapshot_log_to_keep`), so the snapshot phase needs over 1000 entries.
const WRITERS: usize = 4;
/// Node log filter: the usual, plus the store's "purging raft log" lines.
const NODE_LOG: &str = "info,openraft=warn,mailraft_store::log_store=debug";

#[test]
fn lagging_restarted_and_replaced_nodes_catch_up_and_serve() -> Result<()> {
    let mut cluster = Cluster::start_with(
        Options::new(3)
            .with_metrics()
            .env("MAILRAFT_RAFT__SNAPSHOT_LOGS_SINCE_LAST", &SNAPSHOT_EVERY.to_string())
            .env("RUST_LOG", NODE_LOG),
    )?;
    let fe = cluster.start_frontend(&[1, 2, 3])?;
    let mut client = fe.client()?;
    ensure!(client.run(&format!("CREATE {MAILBOX}"))?.is_ok());
    let uidvalidity = client.status(MAILBOX)?.2;
    let ledger = Ledger::default();

    // 1. A follower killed and restarted.
    let follower = a_follower(&cluster, None)?;
    cluster.kill(follower)?;
    append_many(&mut client, "restart", 20, &ledger)?;
    cluster.restart(follower)?;
    let info = cluster.wait_converged(&[1, 2, 3], Duration::from_secs(60))?;
    println!(
        "restarted follower {follower} caught up to applied index {}",
        info.last_applied
    );
    serves(&cluster, &fe, follower, &ledger, uidvalidity)?;

    // 2. A follower down while the leader snapshots and purges its log past it.
    let lagging = a_follower(&cluster, Some(follower))?;
    let behind = cluster.info(lagging)?;
    cluster.kill(lagging)?;
    let leader_info = write_until_purged_past(&cluster, &fe, behind.last_log_index, &ledger)?;
    cluster.restart(lagging)?;
    let info = cluster.wait_converged(&[1, 2, 3], Duration::from_secs(90))?;
    let metrics = cluster
        .metrics_addr(lagging)
        .ok_or_else(|| anyhow!("no metrics listener"))?;
    let installs = metric_sum(&scrape(metrics)?, "mailraft_raft_snapshots_total", "op=\"install\"").unwrap_or(0.0);
    println!(
        "follower {lagging} was down at log index {}; the leader moved to {} with a snapshot at {}; \
         it caught up to applied index {} by installing {installs} snapshot(s)",
        behind.last_log_index, leader_info.last_log_index, leader_info.snapshot_index, info.last_applied
    );
    ensure!(installs >= 1.0, "the lagging node caught up by installing a snapshot");
    serves(&cluster, &fe, lagging, &ledger, uidvalidity)?;

    // 3. A node wiped and re-added under a new id.
    let replaced = a_follower(&cluster, None)?;
    cluster.kill(replaced)?;
    cluster.remove_node(replaced, false)?;
    cluster.wipe(replaced)?;
    append_many(&mut client, "replaced", 10, &ledger)?;
    let newcomer = 4;
    cluster.add_node(newcomer)?;
    let members: Vec<u64> = [1, 2, 3, newcomer].into_iter().filter(|id| *id != replaced).collect();
    let info = cluster.wait_converged(&members, Duration::from_secs(60))?;
    ensure!(
        info.voters().len() == 3 && !info.voters().contains(&replaced),
        "voters {:?}",
        info.voters()
    );
    serves(&cluster, &fe, newcomer, &ledger, uidvalidity)?;

    let digest = cluster.wait_same_state(&members, Duration::from_secs(30))?;
    let report = check(&mut fe.client()?, &ledger, uidvalidity)?;
    println!(
        "catch-up: {report}; nodes {members:?} hold identical state at index {}",
        digest.applied_index
    );
    report.ensure_clean()?;
    cluster.passed();
    Ok(())
}

/// A running follower other than `not`.
fn a_follower(cluster: &Cluster, not: Option<u64>) -> Result<u64> {
    let leader = cluster.leader()?;
    cluster
        .running()
        .into_iter()
        .find(|id| *id != leader && Some(*id) != not)
        .ok_or_else(|| anyhow!("no follower to pick"))
}

/// `n` APPENDs that must all succeed.
fn append_many(client: &mut Client, prefix: &str, n: usize, ledger: &Ledger) -> Result<()> {
    for k in 0..n {
        let id = format!("{prefix}-{k}");
        let out = append_recorded(client, MAILBOX, &id, ledger);
        ensure!(
            matches!(out, Outcome::Ok(Some(_))),
            "APPEND {id} with one node down: {out:?}"
        );
    }
    Ok(())
}

/// Writes from several clients until the leader has purged its log past `index` (so a node
/// that has applied only up to `index` can catch up by snapshot alone); returns the leader's view
/// then.
fn write_until_purged_past(cluster: &Cluster, fe: &Frontend, index: u64, ledger: &Ledger) -> Result<ClusterInfo> {
    let stop = AtomicBool::new(false);
    let (reached, stats) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (stop, prefix) = (&stop, format!("snapshot{w}"));
                s.spawn(move || writer(fe.imap, MAILBOX, None, &prefix, ledger, stop))
            })
            .collect();
        let reached = wait_for(
            &format!("the leader to purge its log past index {index}"),
            Duration::from_secs(100),
            || {
                let leader = cluster.leader()?;
                let purged = purged_upto(&std::fs::read_to_string(cluster.log_file(leader)?)?);
                if purged.is_some_and(|p| p > index) {
                    Ok(Some(cluster.info(leader)?))
                } else {
                    Ok(None)
                }
            },
        );
        stop.store(true, Ordering::SeqCst);
        let stats: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("writer panicked"))))
            .collect();
        (reached, stats)
    });
    for s in stats {
        ensure!(
            s?.reconnects == 0,
            "a writer lost its IMAP session with one follower down"
        );
    }
    reached
}

/// The highest index a node's log says it purged its Raft log up to: the store's debug line
/// `purging raft log upto=T<term>-N<node>-<index>` (enabled by [`NODE_LOG`]). openraft purges
/// only when no replication to the down follower is in flight, so a snapshot alone is no proof.
fn purged_upto(log: &str) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains("purging raft log"))
        .filter_map(|l| {
            l.split("upto=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .rsplit('-')
                .next()?
                .parse()
                .ok()
        })
        .max()
}

/// Makes `id` the leader and checks every acknowledged message is served from its state.
fn serves(cluster: &Cluster, fe: &Frontend, id: u64, ledger: &Ledger, uidvalidity: u32) -> Result<ClusterInfo> {
    cluster.transfer_leader(id)?;
    let report = check(&mut fe.client()?, ledger, uidvalidity)?;
    println!("node {id} as leader: {report}");
    report.ensure_clean()?;
    cluster.info(id)
}

fn check(client: &mut Client, ledger: &Ledger, uidvalidity: u32) -> Result<Report> {
    let mut contents = BTreeMap::new();
    contents.insert(MAILBOX.to_owned(), client.read_mailbox(MAILBOX)?);
    Ok(ledger.check(&contents, &HashMap::from([(MAILBOX.to_owned(), uidvalidity)])))
}
