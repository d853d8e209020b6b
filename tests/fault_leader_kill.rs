//! The Raft leader is killed with SIGKILL while four IMAP clients, two on each of two front-ends,
//! APPEND, COPY and STORE without pause. Afterwards every acknowledged message is present exactly
//! once with the UID it was acknowledged with, UIDs per mailbox are unique and increasing,
//! UIDVALIDITY is unchanged, no client was disconnected, and the time until writes succeed again
//! is reported.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use support::check::{Ledger, WriterStats, writer};
use support::cluster::Cluster;
use support::observe::wait_for;

const WRITERS: usize = 4;
const COPIES: &str = "Copies";

#[test]
fn leader_sigkill_under_load_loses_and_duplicates_nothing() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let fe = [cluster.start_frontend(&[1, 2, 3])?, cluster.start_frontend(&[3, 2, 1])?];

    let mailboxes: Vec<String> = (0..WRITERS).map(|w| format!("Load{w}")).collect();
    let mut uidvalidity = HashMap::new();
    let mut setup = fe[0].client()?;
    for name in mailboxes.iter().map(String::as_str).chain([COPIES]) {
        ensure!(setup.run(&format!("CREATE {name}"))?.is_ok(), "CREATE {name}");
        uidvalidity.insert(name.to_owned(), setup.status(name)?.2);
    }

    let ledger = Ledger::default();
    let stop = AtomicBool::new(false);
    let (driven, stats) = std::thread::scope(|s| {
        let handles: Vec<_> = mailboxes
            .iter()
            .enumerate()
            .map(|(w, mailbox)| {
                let (imap, ledger, stop) = (fe[w % 2].imap, &ledger, &stop);
                s.spawn(move || writer(imap, mailbox, Some(COPIES), &format!("w{w}"), ledger, stop))
            })
            .collect();
        let driven = kill_leader_under_load(&mut cluster, &ledger);
        stop.store(true, Ordering::SeqCst);
        let stats: Vec<Result<WriterStats>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("writer panicked"))))
            .collect();
        (driven, stats)
    });
    let (killed, killed_at) = driven?;
    let mut reconnects = 0;
    for s in stats {
        reconnects += s?.reconnects;
    }

    // The killed node comes back and catches up, so the check reads a whole cluster.
    cluster.restart(killed)?;
    cluster.wait_converged(&[1, 2, 3], Duration::from_secs(60))?;
    let digest = cluster.wait_same_state(&[1, 2, 3], Duration::from_secs(30))?;
    let mut reader = fe[1].client()?;
    let mut contents = BTreeMap::new();
    for name in mailboxes.iter().map(String::as_str).chain([COPIES]) {
        contents.insert(name.to_owned(), reader.read_mailbox(name)?);
    }
    let report = ledger.check(&contents, &uidvalidity);

    let writes = ledger.writes();
    let first_after = writes
        .iter()
        .filter(|w| w.acked() && w.started >= killed_at)
        .map(|w| w.finished)
        .min();
    let resumed = first_after.map(|t| t.duration_since(killed_at));
    let mut acks: Vec<Instant> = writes.iter().filter(|w| w.acked()).map(|w| w.finished).collect();
    acks.sort();
    let longest_gap = acks.windows(2).map(|p| p[1] - p[0]).max().unwrap_or_default();
    println!(
        "leader {killed} SIGKILLed: {report}; writes sent after the kill first succeeded after {resumed:?}, \
         longest pause between acknowledgements {longest_gap:?}; IMAP reconnects {reconnects}; \
         all 3 state machines identical at index {}",
        digest.applied_index
    );
    report.ensure_clean()?;
    ensure!(
        reconnects == 0,
        "{reconnects} IMAP sessions broke: a session must survive a leader change"
    );
    cluster.passed();
    Ok(())
}

/// Waits for steady load, kills the leader, waits until writes sent after the kill succeed.
fn kill_leader_under_load(cluster: &mut Cluster, ledger: &Ledger) -> Result<(u64, Instant)> {
    wait_for(
        "40 acknowledged writes before the kill",
        Duration::from_secs(60),
        || Ok((ledger.acked() >= 40).then_some(())),
    )?;
    let leader = cluster.leader()?;
    let killed_at = Instant::now();
    cluster.kill(leader)?;
    wait_for(
        "40 acknowledged writes sent after the kill",
        Duration::from_secs(60),
        || Ok((ledger.acked_since(killed_at) >= 40).then_some(())),
    )?;
    Ok((leader, killed_at))
}
