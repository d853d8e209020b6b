//! An IDLE session on front-end A sees every APPEND made through front-end B: in steady state,
//! while the node carrying A's Watch stream vanishes without closing anything (every packet to
//! and from it blackholed: silence is all the front-end sees), and across a SIGKILL of the leader.
//!
//! Only the Raft leader serves Watch, so the Watch stream's node is the leader; blackholing it
//! also makes the others elect a new one, which is the case that matters: a partitioned old
//! leader must not leave IDLE sessions silent. A's `mailraft_imap_watch_reconnects_total` shows
//! its stream was replaced although nothing closed it. Which detector fires first (three missing
//! heartbeats, or the HTTP/2 keepalive ping that also times out after ~10 s) is not asserted
//! here: a mutation that disables heartbeat detection still passes through keepalive. The
//! heartbeat detector is pinned by the front-end's unit test (`watch.rs`), and the server ending
//! the stream when it loses leadership by `crates/server/tests/watch.rs`. Not yet covered across
//! processes: an old leader cut off from its peers but still reachable by the front-end.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use support::Client;
use support::check::{Ledger, Outcome, append_recorded};
use support::cluster::{Cluster, Frontend};
use support::observe::{metric_sum, scrape, wait_for};

const MAILBOX: &str = "Idle";
/// Per phase.
const APPENDS: usize = 5;
/// Front-ends give up on a request after 3 s (not 10), so B's first write after the leader
/// vanished fails over sooner.
const FRONTEND_ENV: &[(&str, &str)] = &[("MAILRAFT_STORAGE__REQUEST_TIMEOUT_MS", "3000")];

#[test]
fn idle_on_one_frontend_sees_appends_through_another_across_faults() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let fe_a = cluster.start_frontend_with(&[1, 2, 3], FRONTEND_ENV)?;
    let fe_b = cluster.start_frontend_with(&[3, 2, 1], FRONTEND_ENV)?;

    let mut writer = fe_b.client()?;
    ensure!(writer.run(&format!("CREATE {MAILBOX}"))?.is_ok());
    let mut idler = fe_a.client()?;
    idler.open(MAILBOX, false)?;
    idler.idle_start()?;
    let uidvalidity = writer.status(MAILBOX)?.2;
    let mut session = Session {
        idler,
        writer,
        seen: 0,
        ledger: Ledger::default(),
    };

    let steady = session.phase("steady", &fe_b, Duration::from_secs(20))?;

    let watch_node = cluster.leader()?;
    let before = watch_metrics(&fe_a)?;
    cluster.isolate(watch_node)?;
    let vanished = session.phase("watch node vanished", &fe_b, Duration::from_secs(40));
    let after = watch_metrics(&fe_a)?;
    let (reconnects, timeouts) = (after.0 - before.0, after.1 - before.1);
    cluster.rejoin();
    let vanished = vanished?;
    ensure!(
        reconnects >= 1.0,
        "A replaced its silent Watch stream (reconnects {reconnects})"
    );
    cluster.wait_converged(&[1, 2, 3], Duration::from_secs(60))?;

    let killed = cluster.leader()?;
    cluster.kill(killed)?;
    let failover = session.phase("leader killed", &fe_b, Duration::from_secs(40))?;

    let done = session.idler.idle_done()?;
    ensure!(done.is_ok(), "IDLE ends with OK: {}", done.status);
    let contents = BTreeMap::from([(MAILBOX.to_owned(), session.writer.read_mailbox(MAILBOX)?)]);
    let report = session
        .ledger
        .check(&contents, &HashMap::from([(MAILBOX.to_owned(), uidvalidity)]));
    let messages = contents[MAILBOX].messages.len() as u32;
    println!(
        "IDLE across front-ends: {report}; {messages} messages stored, A's IDLE saw EXISTS {}; slowest notification: steady {steady:?}, Watch node {watch_node} blackholed {vanished:?} \
         (A's Watch reconnects {reconnects}, of them for missing heartbeats {timeouts}), leader {killed} killed {failover:?}",
        session.seen
    );
    report.ensure_clean()?;
    ensure!(
        session.seen == messages,
        "A saw {} but the mailbox holds {messages}",
        session.seen
    );
    cluster.passed();
    Ok(())
}

/// A front-end's Watch reconnects and heartbeat timeouts so far.
fn watch_metrics(fe: &Frontend) -> Result<(f64, f64)> {
    let text = scrape(fe.metrics)?;
    let count = |name| metric_sum(&text, name, "").unwrap_or(0.0);
    Ok((
        count("mailraft_imap_watch_reconnects_total"),
        count("mailraft_imap_watch_heartbeat_timeouts_total"),
    ))
}

struct Session {
    idler: Client,
    writer: Client,
    /// Highest EXISTS the idler saw.
    seen: u32,
    /// Every APPEND attempt through B.
    ledger: Ledger,
}

impl Session {
    /// [`APPENDS`] appends through B (each retried until OK, reconnecting if needed); after each,
    /// the idler must see the mailbox's message count within `deadline`. Returns the longest
    /// time from an OK to the idler seeing it.
    fn phase(&mut self, name: &str, fe_b: &Frontend, deadline: Duration) -> Result<Duration> {
        let mut slowest = Duration::ZERO;
        for k in 0..APPENDS {
            // Retried until OK; each attempt is a new message (a NO may still have been applied).
            let mut attempt = 0;
            wait_for(
                &format!("APPEND {k} through B ({name})"),
                Duration::from_secs(60),
                || {
                    attempt += 1;
                    let id = format!("{name}-{k}-{attempt}").replace(' ', "-");
                    match append_recorded(&mut self.writer, MAILBOX, &id, &self.ledger) {
                        Outcome::Ok(_) => Ok(Some(())),
                        Outcome::No(status) => bail!("{status}"),
                        Outcome::Failed(error) => {
                            self.writer = fe_b.client()?;
                            bail!("{error}")
                        }
                    }
                },
            )?;
            let acked = Instant::now();
            // A NO may still have been applied: the mailbox's count is the truth.
            let target = self.writer.status(MAILBOX)?.0;
            let seen = self.idler.idle_until_exists(target, acked + deadline, &mut self.seen)?;
            ensure!(
                seen.is_some(),
                "{name}: A's IDLE saw EXISTS {} but {target} messages exist after {deadline:?}",
                self.seen
            );
            slowest = slowest.max(acked.elapsed());
        }
        Ok(slowest)
    }
}
