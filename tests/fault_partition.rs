//! A partition isolates the leader together with one front-end. The isolated minority accepts no
//! write (its client gets NO or a timeout, never OK, for as long as the partition lasts); the
//! majority elects a new leader and carries on; after healing every node holds the same data.
//! "The same" is checked on each node's own state machine: each node is made leader in turn and
//! the mailboxes are read through it.
//!
//! Raft traffic between the sides is blackholed (packets vanish, connections stay open), not
//! refused. The minority front-end knows only the old leader, which cannot point it anywhere
//! else; the majority front-end knows only the other two nodes (though it may still reach the old
//! leader it cached, as a front-end on the client network would: that leader cannot commit).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use support::check::{Ledger, WriterStats, writer};
use support::cluster::Cluster;
use support::observe::wait_for;

const MINORITY: &str = "Minority";
const MAJORITY: &str = "Majority";

#[test]
fn isolated_leader_accepts_nothing_and_the_cluster_agrees_after_healing() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let old = cluster.leader()?;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    // The minority front-end gives up on a request after 3 s instead of 10, to try more often.
    let fe_minority = cluster.start_frontend_with(&[old], &[("MAILRAFT_STORAGE__REQUEST_TIMEOUT_MS", "3000")])?;
    let fe_majority = cluster.start_frontend(&rest)?;
    let mut setup = fe_majority.client()?;
    let mut uidvalidity = HashMap::new();
    for name in [MINORITY, MAJORITY] {
        ensure!(setup.run(&format!("CREATE {name}"))?.is_ok(), "CREATE {name}");
        uidvalidity.insert(name.to_owned(), setup.status(name)?.2);
    }
    drop(setup);

    let ledger = Ledger::default();
    let stop = AtomicBool::new(false);
    let (driven, stats) = std::thread::scope(|s| {
        let minority = s.spawn(|| writer(fe_minority.imap, MINORITY, None, "minority", &ledger, &stop));
        let majority = s.spawn(|| writer(fe_majority.imap, MAJORITY, None, "majority", &ledger, &stop));
        let driven = partition_and_heal(&cluster, old, &rest, &ledger);
        stop.store(true, Ordering::SeqCst);
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<WriterStats>>| {
            h.join().unwrap_or_else(|_| Err(anyhow!("writer panicked")))
        };
        (driven, [join(minority), join(majority)])
    });
    let (partitioned_at, healed_at) = driven?;
    let [minority_stats, majority_stats] = stats;
    let (minority_stats, majority_stats) = (minority_stats?, majority_stats?);

    // Nothing the minority acknowledged was sent while it was cut off and acknowledged before
    // the partition healed.
    let writes = ledger.writes();
    let during = |w: &&support::check::Write| w.started >= partitioned_at && w.finished < healed_at;
    let minority_ok: Vec<_> = writes
        .iter()
        .filter(|w| w.mailbox == MINORITY && w.acked())
        .filter(during)
        .collect();
    let minority_tried = writes.iter().filter(|w| w.mailbox == MINORITY).filter(during).count();
    let majority_ok = writes
        .iter()
        .filter(|w| w.mailbox == MAJORITY && w.acked())
        .filter(during)
        .count();

    let info = cluster.wait_converged(&[1, 2, 3], Duration::from_secs(60))?;
    let digest = cluster.wait_same_state(&[1, 2, 3], Duration::from_secs(30))?;
    let per_node = cluster.contents_per_node(&[1, 2, 3], &fe_majority, &[MINORITY, MAJORITY])?;
    let (first_id, first) = per_node.iter().next().ok_or_else(|| anyhow!("no node read"))?;
    for (id, contents) in &per_node {
        ensure!(contents == first, "node {id} holds different data than node {first_id}");
    }
    let report = ledger.check(first, &uidvalidity);
    let messages: usize = first.values().map(|c| c.messages.len()).sum();
    println!(
        "partition of old leader {old}: minority tried {minority_tried} writes, {} acknowledged while cut off; \
         majority acknowledged {majority_ok} meanwhile; after healing all 3 nodes agree on applied index {} \
         (state digest {} of {} entries at index {}) and on {messages} messages read from each as leader; \
         {report}; reconnects minority {} majority {}",
        minority_ok.len(),
        info.last_applied,
        &digest.sha256[..digest.sha256.len().min(12)],
        digest.entries,
        digest.applied_index,
        minority_stats.reconnects,
        majority_stats.reconnects
    );
    ensure!(
        minority_ok.is_empty(),
        "the isolated minority acknowledged writes: {minority_ok:?}"
    );
    ensure!(minority_tried > 0, "the minority was tried");
    report.ensure_clean()?;
    cluster.passed();
    Ok(())
}

/// Waits for writes on both sides, partitions `old` from `rest`, waits until the majority
/// acknowledged writes sent after the partition and the minority failed some, then heals.
fn partition_and_heal(cluster: &Cluster, old: u64, rest: &[u64], ledger: &Ledger) -> Result<(Instant, Instant)> {
    wait_for(
        "writes on both sides before the partition",
        Duration::from_secs(30),
        || {
            let w = ledger.writes();
            let ok = |m: &str| w.iter().any(|w| w.mailbox == m && w.acked());
            Ok((ok(MINORITY) && ok(MAJORITY)).then_some(()))
        },
    )?;
    cluster.partition(&[old], rest)?;
    let partitioned_at = Instant::now();
    let result = wait_for(
        "the majority to carry on and the minority to fail",
        Duration::from_secs(60),
        || {
            let w = ledger.writes();
            let majority = w
                .iter()
                .filter(|w| w.mailbox == MAJORITY && w.acked() && w.started >= partitioned_at)
                .count();
            let minority_failed = w
                .iter()
                .filter(|w| w.mailbox == MINORITY && !w.acked() && w.started >= partitioned_at)
                .count();
            Ok((majority >= 20 && minority_failed >= 2).then_some(()))
        },
    );
    let new_leader = cluster.current_leader().map(|(id, _)| id);
    cluster.heal();
    let healed_at = Instant::now();
    result?;
    println!("majority leader during the partition: {new_leader:?}");
    ensure!(
        new_leader.is_some_and(|l| l != old),
        "the majority elected a new leader: {new_leader:?}"
    );
    // Let both sides write a little after healing, so the check covers the healed cluster too.
    wait_for("writes on both sides after healing", Duration::from_secs(60), || {
        let w = ledger.writes();
        let ok = |m: &str| w.iter().any(|w| w.mailbox == m && w.acked() && w.started >= healed_at);
        Ok((ok(MINORITY) && ok(MAJORITY)).then_some(()))
    })?;
    Ok((partitioned_at, healed_at))
}
