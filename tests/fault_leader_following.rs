//! Leader following: a front-end configured with a single follower's address works, because the
//! follower answers NOT_LEADER with the leader's address and the front-end goes there. The proxies
//! show the path: the follower's endpoint is used, and the leader's advertised address (which no
//! one else uses in this test) receives the requests. After leadership moves, the front-end
//! follows the new hint.

mod support;

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow, ensure};
use support::Client;
use support::check::{Ledger, Outcome, append_recorded};
use support::cluster::Cluster;

const MAILBOX: &str = "Following";

#[test]
fn frontend_knowing_only_a_follower_reaches_the_leader_by_the_hint() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.leader()?;
    let mut others = [1, 2, 3].into_iter().filter(|id| *id != leader);
    let (follower, third) = (
        others.next().ok_or_else(|| anyhow!("no follower"))?,
        others.next().ok_or_else(|| anyhow!("no third node"))?,
    );
    let fe = cluster.start_frontend(&[follower])?;
    let leader_before = cluster.advertised(leader)?.counters();

    let mut client = fe.client()?;
    ensure!(client.run(&format!("CREATE {MAILBOX}"))?.is_ok());
    let uidvalidity = client.open(MAILBOX, false)?.uidvalidity;
    let ledger = Ledger::default();
    append_all(&mut client, "first-leader", &ledger)?;
    let via_follower = fe.proxy(follower)?.counters();
    let via_leader = cluster.advertised(leader)?.counters();
    ensure!(
        via_follower.up_bytes > 0,
        "the configured follower was asked first: {via_follower:?}"
    );
    ensure!(
        via_leader.accepted > leader_before.accepted && via_leader.up_bytes > leader_before.up_bytes,
        "requests reached the leader through its advertised address: {via_leader:?}"
    );

    // Leadership moves to the third node: the front-end's cached leader now answers NOT_LEADER
    // with the new hint.
    cluster.transfer_leader(third)?;
    let third_before = cluster.advertised(third)?.counters();
    append_all(&mut client, "second-leader", &ledger)?;
    let via_third = cluster.advertised(third)?.counters();
    ensure!(
        via_third.up_bytes > third_before.up_bytes,
        "requests followed the new leader: {via_third:?}"
    );

    let mut contents = BTreeMap::new();
    contents.insert(MAILBOX.to_owned(), client.read_mailbox(MAILBOX)?);
    let report = ledger.check(&contents, &HashMap::from([(MAILBOX.to_owned(), uidvalidity)]));
    println!(
        "front-end configured with follower {follower} only: {report}; bytes to leader {leader} via hint {}, \
         to new leader {third} {}",
        via_leader.up_bytes - leader_before.up_bytes,
        via_third.up_bytes - third_before.up_bytes
    );
    report.ensure_clean()?;
    cluster.passed();
    Ok(())
}

/// Five APPENDs that must all succeed.
fn append_all(client: &mut Client, prefix: &str, ledger: &Ledger) -> Result<()> {
    for k in 0..5 {
        let id = format!("{prefix}-{k}");
        let out = append_recorded(client, MAILBOX, &id, ledger);
        ensure!(matches!(out, Outcome::Ok(Some(_))), "APPEND {id}: {out:?}");
    }
    Ok(())
}
