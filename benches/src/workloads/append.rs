//! `append`: ingest as fast as the server takes it. Each client delivers corpus messages in a
//! loop, over IMAP APPEND or over LMTP (RFC 2033), until the deadline.
//!
//! Check: every acknowledged delivery must be there afterwards — per user, STATUS MESSAGES at
//! the end equals the count at the start plus the acknowledged deliveries (nothing else touches
//! those mailboxes during the run). Over LMTP the workload first probes the endpoint; a server
//! without one reports "not supported by server" instead of a stream of errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::checks::{Appended, Cmd, Violation, digest};
use crate::cli::{AppendArgs, Via};
use crate::client::lmtp::Lmtp;
use crate::client::parse::{Code, Untagged};
use crate::client::{Client, quote};
use crate::error::ClientError;
use crate::stats::Op;

use super::{Ctx, Outcome, Session, pause};

/// Runs the append workload.
pub async fn run(ctx: Arc<Ctx>, a: AppendArgs) -> Outcome {
    let op = if a.via == Via::Lmtp {
        Op::Lmtp
    } else {
        Op::Append
    };
    let outcome = |unsupported: Option<String>| Outcome {
        ops: vec![op],
        unsupported,
    };
    if a.via == Via::Lmtp {
        let Some(ep) = a.lmtp.clone() else {
            return outcome(Some("LMTP (no LMTP endpoint; pass --lmtp)".into()));
        };
        match Lmtp::connect(&ep, ctx.target.timeout).await {
            Ok(l) => l.quit().await,
            Err(e) => return outcome(Some(format!("LMTP at {ep}: {e}"))),
        }
    }
    let users: Vec<String> = (0..ctx.clients.min(ctx.users.len()))
        .map(|i| ctx.user(i).to_string())
        .collect();
    let before = match counts(&ctx, &users, &a.mailbox).await {
        Ok(c) => c,
        Err(e) => return outcome(Some(format!("cannot read mailbox sizes: {e}"))),
    };
    ctx.rec.begin();
    let acked: Arc<Vec<AtomicU64>> =
        Arc::new((0..users.len()).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for i in 0..ctx.clients {
        let (ctx, a, acked) = (ctx.clone(), a.clone(), acked.clone());
        tasks.push(tokio::spawn(async move { client(ctx, i, a, acked).await }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ctx.rec.end();
    // The end-of-run check runs after the measured phase.
    match counts(&ctx, &users, &a.mailbox).await {
        Ok(after) => {
            for (k, user) in users.iter().enumerate() {
                let n = acked[k].load(Ordering::Relaxed);
                let (b, f) = (
                    before.get(user).copied().unwrap_or(0),
                    after.get(user).copied().unwrap_or(0),
                );
                ctx.rec.count("acknowledged deliveries", n);
                if f < b + n {
                    ctx.rec.violations(vec![Violation {
                        rule: "acked-delivery-missing",
                        detail: format!(
                            "{} had {b} messages, {n} deliveries acknowledged, now {f}",
                            a.mailbox
                        ),
                        user: user.clone(),
                    }]);
                }
            }
        }
        Err(e) => ctx.rec.error(format!("final STATUS: {}", e.kind())),
    }
    outcome(None)
}

/// STATUS MESSAGES of `mailbox` for each user, on unmeasured connections.
async fn counts(
    ctx: &Ctx,
    users: &[String],
    mailbox: &str,
) -> Result<HashMap<String, u64>, ClientError> {
    let mut out = HashMap::new();
    for u in users {
        let mut c = Client::connect(&ctx.target).await?;
        let r = c.authenticate(ctx.target.auth, u, &ctx.password).await?;
        if !r.ok() {
            return Err(ClientError::Protocol(format!("login of {u} refused")));
        }
        let r = c
            .run(&format!("STATUS {} (MESSAGES)", quote(mailbox)))
            .await?;
        let n = r.untagged.iter().find_map(|x| match x {
            Untagged::Status { items, .. } => {
                items.iter().find(|(k, _)| k == "MESSAGES").map(|(_, v)| *v)
            }
            _ => None,
        });
        out.insert(u.clone(), n.unwrap_or(0));
        let _ = c.run("LOGOUT").await;
    }
    Ok(out)
}

async fn client(ctx: Arc<Ctx>, i: usize, a: AppendArgs, acked: Arc<Vec<AtomicU64>>) {
    let deadline = ctx.deadline();
    let slot = i % acked.len().max(1);
    let user = ctx.user(slot).to_string();
    let mut n = i;
    // Bounded: every iteration is a connection that ends at the deadline.
    while Instant::now() < deadline {
        let done = match a.via {
            Via::Imap => imap_loop(&ctx, &user, &a.mailbox, &mut n, deadline, &acked[slot]).await,
            Via::Lmtp => {
                lmtp_loop(
                    &ctx,
                    &user,
                    a.lmtp.as_deref().unwrap_or(""),
                    &mut n,
                    deadline,
                    &acked[slot],
                )
                .await
            }
        };
        if !done {
            pause(Duration::from_millis(200), deadline).await;
        }
    }
}

/// APPENDs on one connection until the deadline; false if the connection failed.
async fn imap_loop(
    ctx: &Ctx,
    user: &str,
    mailbox: &str,
    n: &mut usize,
    deadline: Instant,
    acked: &AtomicU64,
) -> bool {
    let Ok(mut s) = Session::open(ctx, user, None).await else {
        return false;
    };
    let prefix = format!("APPEND {}", quote(mailbox));
    while Instant::now() < deadline {
        let msg = ctx.corpus.get(*n);
        *n += ctx.clients;
        match s
            .exec_literal(ctx, Op::Append, Cmd::Append(mailbox), &prefix, msg)
            .await
        {
            Ok(r) if r.ok() => {
                acked.fetch_add(1, Ordering::Relaxed);
                if let Some(Code::AppendUid { uidvalidity, uid }) = r.code {
                    ctx.registry.appended(
                        user,
                        mailbox,
                        Appended {
                            uidvalidity,
                            uid,
                            digest: digest(msg),
                        },
                    );
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    s.logout(ctx).await;
    true
}

/// LMTP deliveries on one connection until the deadline; false if the connection failed.
async fn lmtp_loop(
    ctx: &Ctx,
    user: &str,
    ep: &str,
    n: &mut usize,
    deadline: Instant,
    acked: &AtomicU64,
) -> bool {
    let mut l = match Lmtp::connect(ep, ctx.target.timeout).await {
        Ok(l) => l,
        Err(e) => {
            ctx.rec.error(format!("lmtp {}", e.kind()));
            return false;
        }
    };
    while Instant::now() < deadline {
        let msg = ctx.corpus.get(*n);
        *n += ctx.clients;
        let t = Instant::now();
        match l.deliver(user, msg).await {
            Ok(250) => {
                ctx.rec.record(Op::Lmtp, t.elapsed());
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(code) => {
                ctx.rec.record(Op::Lmtp, t.elapsed());
                ctx.rec.error(format!("lmtp reply {code}"));
            }
            Err(e) => {
                ctx.rec.error(format!("lmtp {}", e.kind()));
                return false;
            }
        }
    }
    l.quit().await;
    true
}
