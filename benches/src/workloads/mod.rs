//! Workloads and what they share: the run context ([`Ctx`]), a measured session
//! ([`Session`]) whose every command is timed, counted and checked, and the runner that wraps a
//! workload with the per-second ticker, CPU measurement and the report.

pub mod append;
pub mod bigbox;
pub mod idle;
pub mod mix;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checks::{Cmd, Registry, SessionCheck};
use crate::client::parse::Status;
use crate::client::{Client, Reply, Target};
use crate::corpus::Corpus;
use crate::error::ClientError;
use crate::report::{Report, RunInfo};
use crate::rusage;
use crate::stats::{Op, Recorder};

/// Everything a run's sessions share.
pub struct Ctx {
    /// Server to connect to.
    pub target: Target,
    /// Logins, one per user.
    pub users: Vec<String>,
    /// Password of every user.
    pub password: String,
    /// Concurrent sessions.
    pub clients: usize,
    /// Measured duration.
    pub secs: u64,
    /// Seed of the corpus and of every session's choices.
    pub seed: u64,
    /// Messages to append.
    pub corpus: Arc<Corpus>,
    /// Measurements.
    pub rec: Arc<Recorder>,
    /// Cross-session consistency state.
    pub registry: Registry,
    /// Suppress per-second lines.
    pub quiet: bool,
}

impl Ctx {
    /// The login of user slot `i` (wrapping).
    pub fn user(&self, i: usize) -> &str {
        match self.users.len() {
            0 => "",
            n => &self.users[i % n],
        }
    }

    /// When the measured phase ends.
    pub fn deadline(&self) -> Instant {
        self.rec.start() + Duration::from_secs(self.secs)
    }
}

/// A connection whose commands are timed, counted and checked.
pub struct Session {
    /// The IMAP connection.
    pub client: Client,
    /// Its consistency checker.
    pub check: SessionCheck,
    /// Its login.
    pub user: String,
}

impl Session {
    /// Connects and logs in, recording LOGIN's latency. Errors are counted before returning.
    pub async fn open(
        ctx: &Ctx,
        user: &str,
        keyword: Option<String>,
    ) -> Result<Session, ClientError> {
        let mut client = match Client::connect(&ctx.target).await {
            Ok(c) => c,
            Err(e) => {
                ctx.rec.error(e.kind());
                return Err(e);
            }
        };
        let t = Instant::now();
        let reply = match client
            .authenticate(ctx.target.auth, user, &ctx.password)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                ctx.rec.error(e.kind());
                return Err(e);
            }
        };
        ctx.rec.record(Op::Login, t.elapsed());
        if !reply.ok() {
            ctx.rec
                .error(format!("{:?} login", reply.status).to_uppercase());
            return Err(ClientError::Protocol(format!(
                "login refused: {}",
                reply.text
            )));
        }
        Ok(Session {
            client,
            check: SessionCheck::new(user, keyword),
            user: user.to_string(),
        })
    }

    /// Runs `command`, records `op` and checks the reply as `cmd`. NO/BAD are counted as errors
    /// and returned as a reply (the session goes on); I/O errors end the session.
    pub async fn exec(
        &mut self,
        ctx: &Ctx,
        op: Op,
        cmd: Cmd<'_>,
        command: &str,
    ) -> Result<Reply, ClientError> {
        let t = Instant::now();
        let r = self.client.run(command).await;
        self.finish(ctx, op, cmd, t, r)
    }

    /// Like [`Session::exec`] for a command with one literal (APPEND).
    pub async fn exec_literal(
        &mut self,
        ctx: &Ctx,
        op: Op,
        cmd: Cmd<'_>,
        prefix: &str,
        literal: &[u8],
    ) -> Result<Reply, ClientError> {
        let t = Instant::now();
        let r = self.client.run_literal(prefix, literal, "").await;
        self.finish(ctx, op, cmd, t, r)
    }

    fn finish(
        &mut self,
        ctx: &Ctx,
        op: Op,
        cmd: Cmd<'_>,
        t: Instant,
        r: Result<Reply, ClientError>,
    ) -> Result<Reply, ClientError> {
        match r {
            Ok(reply) => {
                ctx.rec.record(op, t.elapsed());
                match reply.status {
                    Status::Ok => {}
                    s => {
                        // The response code says why (`NO [UNAVAILABLE]`, `NO [LIMIT]`…): a
                        // report that only says "NO append" cannot tell an outage from a bound.
                        let why = match &reply.code {
                            Some(crate::client::parse::Code::Other(name, _)) => format!(" [{name}]"),
                            _ => String::new(),
                        };
                        ctx.rec.error(format!(
                            "{} {}{why}",
                            format!("{s:?}").to_uppercase(),
                            op.name()
                        ))
                    }
                }
                ctx.rec.violations(self.check.check(cmd, &reply));
                Ok(reply)
            }
            Err(e) => {
                ctx.rec.error(e.kind());
                if let ClientError::Parse(p) = &e {
                    ctx.rec.violations(vec![crate::checks::Violation {
                        rule: "malformed-response",
                        detail: p.to_string(),
                        user: self.user.clone(),
                    }]);
                }
                Err(e)
            }
        }
    }

    /// LOGOUT, recorded as `Logout`; the connection is consumed.
    pub async fn logout(mut self, ctx: &Ctx) {
        let _ = self.exec(ctx, Op::Logout, Cmd::Other, "LOGOUT").await;
    }
}

/// The result of a workload before it becomes a report.
pub struct Outcome {
    /// Columns of the per-second lines.
    pub ops: Vec<Op>,
    /// Set when the server lacks what the workload needs.
    pub unsupported: Option<String>,
}

/// Sleeps until `until` or for `d`, whichever comes first (bounded back-off between retries).
pub async fn pause(d: Duration, until: Instant) {
    let now = Instant::now();
    if now < until {
        tokio::time::sleep(d.min(until - now)).await;
    }
}

/// Runs a workload with the ticker and builds the report. The workload calls
/// `ctx.rec.begin()` when its setup is done and the measured phase starts.
pub async fn measure<F, Fut>(ctx: Arc<Ctx>, mut info: RunInfo, ops: Vec<Op>, body: F) -> Report
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    info.loadavg_start = rusage::load_average();
    info.cpus = rusage::cpus();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ticker = tokio::spawn(crate::report::ticker(
        ctx.rec.clone(),
        ops,
        ctx.secs,
        ctx.quiet,
        stop_rx,
    ));
    let outcome = body(ctx.clone()).await;
    // A workload that failed before its measured phase never called `begin`.
    let wall = ctx.rec.measured().max(Duration::from_millis(1));
    let _ = stop_tx.send(true);
    let _ = ticker.await;
    let cpu = ctx.rec.cpu_used();
    info.loadavg_end = rusage::load_average();
    Report::build(info, outcome.unsupported, ctx.rec.snapshot(), cpu, wall)
}
