//! `bigbox`: one mailbox with `--messages` messages (filled first, by `--clients` parallel
//! appenders, with the corpus' smaller messages). Then, `--repeat` times on a fresh connection:
//! SELECT, FETCH 1:* (UID FLAGS), UID SEARCH UNSEEN, UID SEARCH SUBJECT, and — when the server
//! offers QRESYNC (RFC 7162) — a resync: flags change on another connection, then
//! `SELECT mailbox (QRESYNC (uidvalidity modseq))` must report at least those changes.
//!
//! Checks besides the session rules: FETCH 1:* returns exactly EXISTS messages with strictly
//! ascending UIDs (RFC 3501 §2.3.1.1), and SEARCH returns only UIDs that exist.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checks::{Cmd, Violation};
use crate::cli::BigboxArgs;
use crate::client::parse::{Code, Untagged};
use crate::client::{Client, quote};
use crate::stats::Op;

use super::{Ctx, Outcome, Session, pause};

/// Largest corpus message used to fill the box (keeps a million-message box a few GB at most).
const FILL_MAX_BYTES: usize = 8 * 1024;

/// Runs the bigbox workload.
pub async fn run(ctx: Arc<Ctx>, a: BigboxArgs) -> Outcome {
    let ops = vec![Op::Append, Op::Select, Op::Fetch, Op::Search, Op::Resync];
    let user = ctx.user(0).to_string();
    let mbox = quote(&a.mailbox);
    let have = match prepare(&ctx, &user, &mbox).await {
        Ok(n) => n,
        Err(e) => {
            return Outcome {
                ops,
                unsupported: Some(format!("cannot prepare {}: {e}", a.mailbox)),
            };
        }
    };
    if have < u64::from(a.messages) {
        fill(&ctx, &user, &a.mailbox, u64::from(a.messages) - have).await;
    }
    // The measured phase is the timed passes, not the fill.
    ctx.rec.begin();
    let mut unsupported = None;
    for _ in 0..a.repeat.max(1) {
        match measure_once(&ctx, &user, &a.mailbox).await {
            Ok(Some(note)) => unsupported = Some(note),
            Ok(None) => {}
            Err(e) => ctx.rec.error(format!("bigbox {}", e.kind())),
        }
    }
    Outcome { ops, unsupported }
}

/// CREATE (an existing mailbox is fine) and STATUS MESSAGES.
async fn prepare(ctx: &Ctx, user: &str, mbox: &str) -> Result<u64, crate::error::ClientError> {
    let mut s = Session::open(ctx, user, None).await?;
    let _ = s.client.run(&format!("CREATE {mbox}")).await?;
    let r = s.client.run(&format!("STATUS {mbox} (MESSAGES)")).await?;
    let n = r.untagged.iter().find_map(|u| match u {
        Untagged::Status { items, .. } => {
            items.iter().find(|(k, _)| k == "MESSAGES").map(|(_, v)| *v)
        }
        _ => None,
    });
    let _ = s.client.run("LOGOUT").await;
    Ok(n.unwrap_or(0))
}

async fn fill(ctx: &Arc<Ctx>, user: &str, mailbox: &str, need: u64) {
    let small: Arc<Vec<usize>> = Arc::new(
        (0..ctx.corpus.len())
            .filter(|&i| ctx.corpus.get(i).len() <= FILL_MAX_BYTES)
            .collect(),
    );
    let workers = ctx.clients.max(1) as u64;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let share = need / workers + u64::from(w < need % workers);
        let (ctx, user, mailbox, small) = (
            ctx.clone(),
            user.to_string(),
            mailbox.to_string(),
            small.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let prefix = format!("APPEND {}", quote(&mailbox));
            let mut done = 0;
            // Bounded by `share`; a broken connection is retried a few times only.
            for _attempt in 0..5 {
                // The fill is setup, not measured: plain client, no histograms.
                let Ok(mut c) = Client::connect(&ctx.target).await else {
                    pause(
                        Duration::from_millis(500),
                        Instant::now() + Duration::from_secs(1),
                    )
                    .await;
                    continue;
                };
                if !c
                    .authenticate(ctx.target.auth, &user, &ctx.password)
                    .await
                    .is_ok_and(|r| r.ok())
                {
                    ctx.rec.error("fill login");
                    break;
                }
                while done < share {
                    let pick = small
                        .get((done as usize * workers as usize + w as usize) % small.len().max(1));
                    let msg = ctx.corpus.get(pick.copied().unwrap_or(0));
                    match c.run_literal(&prefix, msg, "").await {
                        Ok(r) if r.ok() => done += 1,
                        Ok(_) => {
                            ctx.rec.error("fill NO/BAD");
                            return;
                        }
                        Err(e) => {
                            ctx.rec.error(format!("fill {}", e.kind()));
                            break;
                        }
                    }
                }
                if done >= share {
                    let _ = c.run("LOGOUT").await;
                    break;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    ctx.rec.timing("fill", t.elapsed());
    ctx.rec.count("fill messages", need);
}

/// One timed pass; returns a note when resync is not supported.
async fn measure_once(
    ctx: &Ctx,
    user: &str,
    mailbox: &str,
) -> Result<Option<String>, crate::error::ClientError> {
    let mbox = quote(mailbox);
    let mut s = Session::open(ctx, user, None).await?;
    let qresync = s.client.has_cap("QRESYNC");
    if qresync {
        s.client.run("ENABLE QRESYNC").await?;
    }
    let t = Instant::now();
    let sel = s
        .exec(
            ctx,
            Op::Select,
            Cmd::Select(mailbox),
            &format!("SELECT {mbox}"),
        )
        .await?;
    ctx.rec.timing("select", t.elapsed());
    let exists = s.check.exists().unwrap_or(0);
    let uidvalidity = s.check.uidvalidity().unwrap_or(0);
    let modseq = sel.untagged.iter().find_map(|u| match u {
        Untagged::Cond {
            code: Some(Code::HighestModseq(m)),
            ..
        } => Some(*m),
        _ => None,
    });

    let t = Instant::now();
    let r = s
        .exec(
            ctx,
            Op::Fetch,
            Cmd::Fetch { uid: false },
            "FETCH 1:* (UID FLAGS)",
        )
        .await?;
    ctx.rec.timing("fetch 1:* flags", t.elapsed());
    let uids: Vec<u32> = r
        .untagged
        .iter()
        .filter_map(|u| match u {
            Untagged::Fetch { data, .. } => data.uid,
            _ => None,
        })
        .collect();
    let mut bad = Vec::new();
    if uids.len() != exists as usize {
        bad.push(format!(
            "FETCH 1:* returned {} messages, EXISTS is {exists}",
            uids.len()
        ));
    }
    if uids.windows(2).any(|w| w[0] >= w[1]) {
        bad.push("FETCH 1:* UIDs not strictly ascending".to_string());
    }
    let max_uid = uids.last().copied().unwrap_or(0);
    for (name, cmd) in [
        ("search unseen", "UID SEARCH UNSEEN"),
        ("search subject", "UID SEARCH SUBJECT \"meeting\""),
    ] {
        let t = Instant::now();
        let r = s
            .exec(ctx, Op::Search, Cmd::Search { uid: true }, cmd)
            .await?;
        ctx.rec.timing(name, t.elapsed());
        for u in &r.untagged {
            if let Untagged::Search(found) = u
                && found.iter().any(|&x| x > max_uid)
            {
                bad.push(format!(
                    "{cmd} returned a UID above the highest existing {max_uid}"
                ));
            }
        }
    }
    ctx.rec.violations(
        bad.into_iter()
            .map(|detail| Violation {
                rule: "bigbox-inconsistent",
                detail,
                user: user.to_string(),
            })
            .collect(),
    );
    let _ = s.client.run("LOGOUT").await;

    let Some(modseq) = modseq.filter(|_| qresync) else {
        return Ok(Some(
            "QRESYNC/CONDSTORE (RFC 7162): resync not measured".into(),
        ));
    };
    // Change flags of up to 10 messages on another connection, then resync from `modseq`.
    let changed = uids.iter().rev().take(10).copied().collect::<Vec<u32>>();
    let mut w = Session::open(ctx, user, None).await?;
    w.exec(
        ctx,
        Op::Select,
        Cmd::Select(mailbox),
        &format!("SELECT {mbox}"),
    )
    .await?;
    for uid in &changed {
        w.client
            .run(&format!("UID STORE {uid} +FLAGS.SILENT (\\Flagged)"))
            .await?;
        w.client
            .run(&format!("UID STORE {uid} -FLAGS.SILENT (\\Flagged)"))
            .await?;
    }
    let _ = w.client.run("LOGOUT").await;
    let mut s = Session::open(ctx, user, None).await?;
    s.client.run("ENABLE QRESYNC").await?;
    let t = Instant::now();
    let cmd = format!("SELECT {mbox} (QRESYNC ({uidvalidity} {modseq}))");
    let r = s.exec(ctx, Op::Resync, Cmd::Select(mailbox), &cmd).await?;
    ctx.rec.timing("qresync select", t.elapsed());
    let reported = r
        .untagged
        .iter()
        .filter(|u| matches!(u, Untagged::Fetch { .. }))
        .count();
    if reported < changed.len() {
        ctx.rec.violations(vec![Violation {
            rule: "qresync-missed-changes",
            detail: format!(
                "{} messages changed since MODSEQ {modseq}, QRESYNC reported {reported}",
                changed.len()
            ),
            user: user.to_string(),
        }]);
    }
    let _ = s.client.run("LOGOUT").await;
    Ok(None)
}
