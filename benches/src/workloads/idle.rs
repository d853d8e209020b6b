//! `idle`: `--clients` sessions sit in IDLE (RFC 2177) on the INBOXes of `--writers` users while
//! one writer per user appends at `--interval-ms`. For every append the time from the writer's
//! tagged OK to each watching session's untagged EXISTS is recorded as `notify`; an EXISTS that
//! arrives before the writer's OK counts as 0. Appends whose EXISTS never reaches a session
//! within `--grace` seconds after the last append are violations (`idle-exists-missing`).
//!
//! Matching without UIDs: each writer appends sequentially to its own user and nothing else
//! writes there, so its j-th OK is the message that makes EXISTS reach E0 + j, where E0 is what
//! SELECT reported before any writer started (all sessions are in IDLE before writing begins).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checks::{Cmd, Violation};
use crate::cli::IdleArgs;
use crate::client::Client;
use crate::client::parse::{Response, Untagged};
use crate::error::ClientError;
use crate::stats::Op;

use super::{Ctx, Outcome, Session, pause};

/// One writer's acknowledged appends, in order.
#[derive(Default)]
struct Feed {
    ok: Mutex<Vec<Instant>>,
    total: AtomicU64,
    done: AtomicBool,
}

impl Feed {
    fn ok_at(&self, j: usize) -> Option<Instant> {
        self.ok
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(j)
            .copied()
    }
}

/// Runs the idle workload.
pub async fn run(ctx: Arc<Ctx>, a: IdleArgs) -> Outcome {
    let ops = vec![Op::Login, Op::Select, Op::Append, Op::Notify];
    match Client::connect(&ctx.target).await {
        Ok(c) if !c.has_cap("IDLE") => {
            return Outcome {
                ops,
                unsupported: Some("IDLE (RFC 2177)".into()),
            };
        }
        Ok(_) => {}
        Err(e) => ctx.rec.error(e.kind()),
    }
    let writers = a.writers.clamp(1, ctx.users.len().max(1));
    let feeds: Arc<Vec<Feed>> = Arc::new((0..writers).map(|_| Feed::default()).collect());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(ctx.clients.max(1));
    // The idlers learn when to stop once the measured phase starts.
    let (go_tx, go_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let mut idlers = Vec::new();
    for i in 0..ctx.clients {
        let (ctx, feeds, tx, go) = (ctx.clone(), feeds.clone(), ready_tx.clone(), go_rx.clone());
        idlers.push(tokio::spawn(async move {
            idler(ctx, i, i % writers, feeds, tx, go).await
        }));
    }
    drop(ready_tx);
    // Setup: writers start only when every idler is in IDLE (or failed), within a bound.
    let setup_until = Instant::now() + Duration::from_secs(120);
    let mut ready = 0;
    while ready < ctx.clients {
        let left = setup_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ready_rx.recv()).await {
            Ok(Some(_)) => ready += 1,
            _ => break,
        }
    }
    ctx.rec.begin();
    go_tx.send_replace(Some(ctx.deadline() + Duration::from_secs(a.grace)));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (ctx, feeds, interval) = (
            ctx.clone(),
            feeds.clone(),
            Duration::from_millis(a.interval_ms),
        );
        tasks.push(tokio::spawn(async move {
            writer(ctx, w, feeds, interval).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ctx.rec.end();
    for t in idlers {
        let _ = t.await;
    }
    Outcome {
        ops,
        unsupported: None,
    }
}

async fn writer(ctx: Arc<Ctx>, w: usize, feeds: Arc<Vec<Feed>>, interval: Duration) {
    let deadline = ctx.deadline();
    let feed = &feeds[w];
    let user = ctx.user(w).to_string();
    if let Ok(mut s) = Session::open(&ctx, &user, None).await {
        let mut n = w;
        while Instant::now() < deadline {
            let msg = ctx.corpus.get(n);
            n += feeds.len();
            match s
                .exec_literal(&ctx, Op::Append, Cmd::Append("INBOX"), "APPEND INBOX", msg)
                .await
            {
                Ok(r) if r.ok() => {
                    let now = Instant::now();
                    feed.ok.lock().unwrap_or_else(|p| p.into_inner()).push(now);
                    feed.total.fetch_add(1, Ordering::Release);
                }
                Ok(_) => {}
                Err(_) => break,
            }
            pause(interval, deadline).await;
        }
        s.logout(&ctx).await;
    }
    feed.done.store(true, Ordering::Release);
}

async fn idler(
    ctx: Arc<Ctx>,
    i: usize,
    w: usize,
    feeds: Arc<Vec<Feed>>,
    ready: tokio::sync::mpsc::Sender<bool>,
    mut go: tokio::sync::watch::Receiver<Option<Instant>>,
) {
    let user = ctx.user(w).to_string();
    // Spread the logins over the first moments rather than all at once.
    tokio::time::sleep(Duration::from_micros(i as u64 * 2000).min(Duration::from_secs(2))).await;
    let mut s = match Session::open(&ctx, &user, None).await {
        Ok(s) => s,
        Err(_) => {
            let _ = ready.send(false).await;
            return;
        }
    };
    let base = match s
        .exec(&ctx, Op::Select, Cmd::Select("INBOX"), "SELECT INBOX")
        .await
    {
        Ok(r) if r.ok() => s.check.exists().unwrap_or(0),
        _ => {
            let _ = ready.send(false).await;
            return;
        }
    };
    let tag = match s.client.idle_start().await {
        Ok(t) => t,
        Err(e) => {
            ctx.rec.error(format!("idle {}", e.kind()));
            let _ = ready.send(false).await;
            return;
        }
    };
    let _ = ready.send(true).await;
    drop(ready);
    let stop_at = match go.wait_for(Option::is_some).await {
        Ok(v) => v.unwrap_or_else(Instant::now),
        Err(_) => return,
    };
    let feed = &feeds[w];
    let seen = watch(&ctx, &mut s, feed, base, stop_at).await;
    let total = feed.total.load(Ordering::Acquire);
    if seen < total {
        ctx.rec.count("notifications missed", total - seen);
        ctx.rec.violations(vec![Violation {
            rule: "idle-exists-missing",
            detail: format!(
                "{} of {total} appends never announced by EXISTS during IDLE",
                total - seen
            ),
            user: user.clone(),
        }]);
    }
    ctx.rec.count("notifications seen", seen);
    if s.client.idle_done(&tag).await.is_ok() {
        s.logout(&ctx).await;
    }
}

/// Reads IDLE responses until every append was seen (after the writer finished) or `stop_at`.
/// Returns how many appends this session saw.
async fn watch(ctx: &Ctx, s: &mut Session, feed: &Feed, base: u32, stop_at: Instant) -> u64 {
    let mut last = base;
    let mut pending: Vec<(usize, Instant)> = Vec::new();
    let mut seen: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= stop_at
            || (feed.done.load(Ordering::Acquire) && seen >= feed.total.load(Ordering::Acquire))
        {
            break;
        }
        // Wake at least every 200 ms to notice the end conditions.
        let wait = (stop_at - now).min(Duration::from_millis(200));
        let u = match s.client.read_response_within(wait).await {
            Ok(Response::Untagged(u)) => u,
            Ok(_) => continue,
            Err(ClientError::Timeout) => continue,
            Err(e) => {
                ctx.rec.error(format!("idle {}", e.kind()));
                break;
            }
        };
        s.check.on_untagged(Cmd::Other, &u);
        ctx.rec.violations(s.check.take());
        let Untagged::Exists(n) = u else { continue };
        let at = Instant::now();
        for k in last.saturating_add(1)..=n {
            let j = (k - base - 1) as usize;
            seen += 1;
            match feed.ok_at(j) {
                Some(ok) => ctx.rec.record(Op::Notify, at.saturating_duration_since(ok)),
                None => pending.push((j, at)),
            }
        }
        last = last.max(n);
    }
    // EXISTS that came before the writer's OK: latency 0 by definition.
    for (j, _) in pending {
        if feed.ok_at(j).is_some() {
            ctx.rec.record(Op::Notify, Duration::ZERO);
            ctx.rec.count("exists before append OK", 1);
        }
    }
    seen
}
