//! `mix`: imaptest's default command mix. Each client loops over sessions; per session it runs
//! LOGIN, then each of LIST, STATUS, SELECT, FETCH (UID FLAGS of a range), FETCH2 (a whole
//! message), STORE flags, DELETE (mark \Deleted), EXPUNGE, APPEND with its probability, then
//! LOGOUT. `--persistent` (imaptest's `logout=0`) keeps sessions logged in and repeats the
//! middle of the list. Mailboxes are kept near `--msgs` messages, like imaptest.
//!
//! Consistency hooks: APPENDUIDs go to the shared registry; FETCH2 prefers a recently appended
//! UID and verifies it is there with the same bytes; STORE adds this client's own keyword and
//! the checker verifies it reads back; DELETE registers the UID before marking it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checks::{Appended, Cmd, digest};
use crate::client::parse::{Code, Untagged};
use crate::rng::Rng;
use crate::stats::Op;

use super::{Ctx, Outcome, Session, pause};

/// Probability in percent of each step (imaptest's `name=percent` list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MixProbs {
    /// LIST.
    pub list: u32,
    /// STATUS.
    pub status: u32,
    /// SELECT.
    pub select: u32,
    /// FETCH of a range.
    pub fetch: u32,
    /// FETCH of a whole message.
    pub fetch2: u32,
    /// STORE flags.
    pub store: u32,
    /// STORE \Deleted.
    pub delete: u32,
    /// EXPUNGE.
    pub expunge: u32,
    /// APPEND.
    pub append: u32,
    /// LOGOUT at the end of a session (otherwise the connection is just closed).
    pub logout: u32,
}

impl Default for MixProbs {
    fn default() -> Self {
        MixProbs {
            list: 50,
            status: 50,
            select: 100,
            fetch: 100,
            fetch2: 100,
            store: 50,
            delete: 100,
            expunge: 100,
            append: 100,
            logout: 100,
        }
    }
}

impl MixProbs {
    /// Parses `list=50,append=100,...` over the defaults.
    pub fn parse(spec: &str) -> Result<MixProbs, String> {
        let mut p = MixProbs::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("expected name=percent, got {item}"))?;
            let v: u32 = v.parse().map_err(|_| format!("bad percent in {item}"))?;
            if v > 100 {
                return Err(format!("percent over 100 in {item}"));
            }
            let slot = match k.to_ascii_lowercase().as_str() {
                "list" => &mut p.list,
                "status" => &mut p.status,
                "select" => &mut p.select,
                "fetch" => &mut p.fetch,
                "fetch2" => &mut p.fetch2,
                "store" => &mut p.store,
                "delete" => &mut p.delete,
                "expunge" => &mut p.expunge,
                "append" => &mut p.append,
                "logout" => &mut p.logout,
                other => return Err(format!("unknown command {other}")),
            };
            *slot = v;
        }
        Ok(p)
    }
}

/// Options of the mix workload.
#[derive(Debug, Clone, Copy)]
pub struct MixOpts {
    /// Step probabilities.
    pub probs: MixProbs,
    /// Keep sessions logged in.
    pub persistent: bool,
    /// Target mailbox size.
    pub msgs: u32,
}

/// The columns of the per-second lines: imaptest's command columns, which `Op::ALL` lists first
/// (the ops after them belong to other workloads).
pub const OPS: &[Op] = Op::ALL.split_at(11).0;

/// Runs the mix until the deadline.
pub async fn run(ctx: Arc<Ctx>, opts: MixOpts) -> Outcome {
    ctx.rec.begin();
    let mut tasks = Vec::with_capacity(ctx.clients);
    for i in 0..ctx.clients {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move { client(ctx, i, opts).await }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ctx.rec.end();
    Outcome {
        ops: OPS.to_vec(),
        unsupported: None,
    }
}

async fn client(ctx: Arc<Ctx>, i: usize, opts: MixOpts) {
    let deadline = ctx.deadline();
    // Spread connection start over the first second, as imaptest ramps up.
    let stagger = Duration::from_micros((i as u64 * 1_000_000) / ctx.clients.max(1) as u64);
    pause(stagger, deadline).await;
    let user = ctx.user(i).to_string();
    // Only the first 64 clients get their own keyword, to keep the mailbox's keyword list small.
    let keyword = (i < 64).then(|| format!("$MrBench{i}"));
    let mut rng = Rng::new(ctx.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Bounded: each iteration is one session and ends at the deadline.
    while Instant::now() < deadline {
        let Ok(mut s) = Session::open(&ctx, &user, keyword.clone()).await else {
            pause(Duration::from_millis(200), deadline).await;
            continue;
        };
        let mut st = State::default();
        let mut alive = true;
        loop {
            if round(&ctx, &mut s, &mut st, &mut rng, &opts).await.is_err() {
                alive = false;
                break;
            }
            if !opts.persistent || Instant::now() >= deadline {
                break;
            }
        }
        if alive && (opts.persistent || rng.percent(opts.probs.logout)) {
            s.logout(&ctx).await;
        }
    }
}

/// What a session learnt that later steps use.
#[derive(Debug, Default)]
struct State {
    selected: bool,
    /// UIDs seen in the last FETCH of a range.
    known: Vec<u32>,
}

type Step = Result<(), crate::error::ClientError>;

async fn round(ctx: &Ctx, s: &mut Session, st: &mut State, rng: &mut Rng, o: &MixOpts) -> Step {
    let p = &o.probs;
    if rng.percent(p.list) {
        s.exec(ctx, Op::List, Cmd::Other, "LIST \"\" *").await?;
    }
    if rng.percent(p.status) {
        s.exec(
            ctx,
            Op::Status,
            Cmd::Status("INBOX"),
            "STATUS INBOX (MESSAGES UIDNEXT UNSEEN)",
        )
        .await?;
    }
    if rng.percent(p.select) {
        st.selected = s
            .exec(ctx, Op::Select, Cmd::Select("INBOX"), "SELECT INBOX")
            .await?
            .ok();
        st.known.clear();
    }
    if !st.selected {
        return Ok(());
    }
    let exists = s.check.exists().unwrap_or(0);
    if rng.percent(p.fetch) && exists > 0 {
        let lo = rng.range(1, u64::from(exists)) as u32;
        let hi = (lo + 9).min(exists);
        let r = s
            .exec(
                ctx,
                Op::Fetch,
                Cmd::Fetch { uid: false },
                &format!("FETCH {lo}:{hi} (UID FLAGS)"),
            )
            .await?;
        st.known = r
            .untagged
            .iter()
            .filter_map(|u| match u {
                Untagged::Fetch { data, .. } => data.uid,
                _ => None,
            })
            .collect();
    }
    if rng.percent(p.fetch2) {
        fetch2(ctx, s, st, rng).await?;
    }
    if rng.percent(p.store)
        && let Some(&uid) = rng.pick(&st.known)
    {
        store(ctx, s, uid, rng).await?;
    }
    let exists = s.check.exists().unwrap_or(0);
    if rng.percent(p.delete)
        && exists > o.msgs / 2
        && let Some(uv) = s.check.uidvalidity()
        && !st.known.is_empty()
    {
        let k = rng.below(st.known.len() as u64) as usize;
        let uid = st.known.swap_remove(k);
        // Registered before the STORE so no reader can see it vanish unannounced.
        ctx.registry.deleting(&s.user, "INBOX", uv, uid);
        let cmd = format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)");
        s.exec(ctx, Op::Delete, Cmd::Store { uid: true }, &cmd)
            .await?;
    }
    if rng.percent(p.expunge) {
        s.exec(ctx, Op::Expunge, Cmd::Other, "EXPUNGE").await?;
    }
    let exists = s.check.exists().unwrap_or(0);
    if rng.percent(p.append) && exists < o.msgs {
        append(ctx, s, rng).await?;
    }
    Ok(())
}

async fn fetch2(ctx: &Ctx, s: &mut Session, st: &State, rng: &mut Rng) -> Step {
    let uv = s.check.uidvalidity().unwrap_or(0);
    let candidate = ctx
        .registry
        .recent(&s.user, "INBOX", uv, rng.below(32) as usize);
    let uid = match (candidate, rng.pick(&st.known)) {
        (Some(a), _) => a.uid,
        (None, Some(&u)) => u,
        (None, None) => return Ok(()),
    };
    let cmd = format!("UID FETCH {uid} (UID RFC822.SIZE BODY.PEEK[])");
    let r = s
        .exec(ctx, Op::Fetch2, Cmd::Fetch { uid: true }, &cmd)
        .await?;
    if let Some(a) = candidate
        && let Some(v) = ctx.registry.verify_fetch(&s.user, "INBOX", a, &r)
    {
        ctx.rec.violations(vec![v]);
    }
    Ok(())
}

async fn store(ctx: &Ctx, s: &mut Session, uid: u32, rng: &mut Rng) -> Step {
    let kw = s.check.keyword().map(str::to_string);
    let system = *rng
        .pick(&["\\Seen", "\\Flagged", "\\Answered"])
        .unwrap_or(&"\\Flagged");
    let mut flags: Vec<&str> = vec![system];
    if let Some(k) = kw.as_deref() {
        flags.push(k);
    }
    if rng.percent(70) {
        let cmd = format!("UID STORE {uid} +FLAGS ({})", flags.join(" "));
        let r = s
            .exec(ctx, Op::Store, Cmd::Store { uid: true }, &cmd)
            .await?;
        s.check.after_store_add(uid, &flags, &r);
        ctx.rec.violations(s.check.take());
    } else {
        s.check.keyword_clearing(uid);
        let cmd = format!("UID STORE {uid} -FLAGS ({})", flags.join(" "));
        s.exec(ctx, Op::Store, Cmd::Store { uid: true }, &cmd)
            .await?;
    }
    Ok(())
}

async fn append(ctx: &Ctx, s: &mut Session, rng: &mut Rng) -> Step {
    let msg = ctx.corpus.get(rng.below(ctx.corpus.len() as u64) as usize);
    let r = s
        .exec_literal(ctx, Op::Append, Cmd::Append("INBOX"), "APPEND INBOX", msg)
        .await?;
    if let Some(Code::AppendUid { uidvalidity, uid }) = r.code {
        ctx.registry.appended(
            &s.user,
            "INBOX",
            Appended {
                uidvalidity,
                uid,
                digest: digest(msg),
            },
        );
    }
    Ok(())
}
