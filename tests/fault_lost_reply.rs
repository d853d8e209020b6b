//! An APPEND whose entry the leader committed, but whose reply never reached the front-end, is
//! not applied a second time when the front-end retries: the state machine's dedup table answers
//! the retry with the original reply (same APPENDUID), and the message exists once.
//!
//! The front-end is configured with the leader only, through its own proxy, so every byte it
//! exchanges with storage crosses that proxy. The proxy throws away everything coming back from
//! the leader; a second front-end (another path) shows when the message was committed. Then:
//! 1. the connection is reset: the front-end sees a transport error on a request whose outcome it
//!    cannot know and must retry it with the same request id;
//! 2. the connection is left open and silent (a lost reply without any error): the front-end's
//!    attempt times out, it drops that connection and retries on a fresh one with the same id.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use support::Client;
use support::check::{Kind, Ledger, Outcome, Write, append_recorded, outcome};
use support::cluster::{Cluster, Frontend, Options};
use support::imap::message;
use support::observe::{metric_sum, scrape, wait_for};
use support::proxy::{Dir, Mode};

const MAILBOX: &str = "Replies";

#[test]
fn append_whose_reply_was_lost_is_applied_once() -> Result<()> {
    let mut cluster = Cluster::start_with(Options::new(3).with_metrics())?;
    let leader = cluster.leader()?;
    let fe = cluster.start_frontend(&[leader])?;
    let witness = cluster.start_frontend(&[leader])?;
    let mut client = fe.client()?;
    ensure!(client.run(&format!("CREATE {MAILBOX}"))?.is_ok());
    let uidvalidity = client.open(MAILBOX, false)?.uidvalidity;
    let mut observer = witness.client()?;
    let metrics = cluster
        .metrics_addr(leader)
        .ok_or_else(|| anyhow!("no metrics listener"))?;
    let dedup_before = metric_sum(&scrape(metrics)?, "mailraft_dedup_hits_total", "");

    let ledger = Ledger::default();
    append_and_record(&mut client, "warm-up", &ledger)?;

    // 1. Reply lost, then the connection reset.
    let (reply, dropped) = lose_reply(&fe, client, &mut observer, "lost-then-reset", 2, &ledger, true)?;
    client = reply;
    ensure!(dropped > 0, "the proxy threw the reply away");
    let first = ledger
        .writes()
        .last()
        .cloned()
        .ok_or_else(|| anyhow!("nothing recorded"))?;
    ensure!(
        first.acked(),
        "the front-end retried after the reset and got the original reply: {:?}",
        first.outcome
    );

    // 2. Reply lost on a connection that stays open and silent.
    let (reply, _) = lose_reply(&fe, client, &mut observer, "lost-silently", 3, &ledger, false)?;
    client = reply;
    let second = ledger
        .writes()
        .last()
        .cloned()
        .ok_or_else(|| anyhow!("nothing recorded"))?;
    ensure!(
        second.acked(),
        "the front-end gave up the silent connection, retried on a fresh one and got the original reply: {:?}",
        second.outcome
    );
    // The front-end is usable again afterwards.
    append_and_record(&mut client, "after", &ledger)?;

    let mut contents = BTreeMap::new();
    contents.insert(MAILBOX.to_owned(), observer.read_mailbox(MAILBOX)?);
    let report = ledger.check(&contents, &HashMap::from([(MAILBOX.to_owned(), uidvalidity)]));
    let dedup_after = metric_sum(&scrape(metrics)?, "mailraft_dedup_hits_total", "");
    println!(
        "lost replies: {report}; reset case {:?}, silent case {:?}; dedup metrics {dedup_before:?} -> {dedup_after:?}",
        first.outcome, second.outcome
    );
    report.ensure_clean()?;
    ensure!(
        contents[MAILBOX].messages.len() == 4,
        "exactly four messages: {:?}",
        contents[MAILBOX]
    );
    // A counter appears in /metrics once first incremented: absent means 0.
    let (before, after) = (dedup_before.unwrap_or(0.0), dedup_after.unwrap_or(0.0));
    ensure!(
        after > before,
        "the dedup table answered a retry (mailraft_dedup_hits_total {before} -> {after})"
    );
    cluster.passed();
    Ok(())
}

fn append_and_record(client: &mut Client, id: &str, ledger: &Ledger) -> Result<()> {
    let out = append_recorded(client, MAILBOX, id, ledger);
    ensure!(matches!(out, Outcome::Ok(Some(_))), "APPEND {id}: {out:?}");
    Ok(())
}

/// APPENDs `id` through `fe` while its proxy to the leader drops every reply; once `observer`
/// sees `expect` messages (the APPEND committed), resets the connection (`reset`) or just lets
/// new connections through again. Returns the client and the bytes the proxy threw away.
fn lose_reply(
    fe: &Frontend,
    mut client: Client,
    observer: &mut Client,
    id: &str,
    expect: u32,
    ledger: &Ledger,
    reset: bool,
) -> Result<(Client, u64)> {
    let proxy = fe
        .proxies
        .values()
        .next()
        .ok_or_else(|| anyhow!("front-end without endpoint"))?;
    let dropped_before = proxy.counters().down_dropped;
    proxy.set_mode(Dir::Down, Mode::Drop);
    let started = std::time::Instant::now();
    let body = message(id);
    let pending = std::thread::spawn(move || {
        let result = client.append_reply(MAILBOX, "", &body);
        (client, result)
    });
    let committed = wait_for(&format!("APPEND {id} to be committed"), Duration::from_secs(30), || {
        Ok((observer.status(MAILBOX)?.0 >= expect).then_some(()))
    });
    if reset {
        proxy.reset();
    }
    proxy.pass();
    let (client, result) = pending.join().map_err(|_| anyhow!("APPEND thread panicked"))?;
    ledger.record(Write {
        kind: Kind::Append,
        id: id.to_owned(),
        mailbox: MAILBOX.to_owned(),
        outcome: outcome(Kind::Append, &result),
        started,
        finished: std::time::Instant::now(),
    });
    committed?;
    Ok((client, proxy.counters().down_dropped - dropped_before))
}
