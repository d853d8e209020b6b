//! The comparison harness (`mailraft-bench compare`, wrapped by `benches/compare`): in one run it
//! starts a throwaway Dovecot ([`dovecot`]), `mailraft dev` and `mailraft dev --nodes N` (a Raft
//! group of N storage processes behind a front-end process, [`mailraft`]), creates the same users
//! in each, loads the same corpus into every INBOX, runs the same workloads against each server
//! in turn (never two at once), and prints a side-by-side table ([`table`]) with each Mailraft
//! column's ratio to Dovecot, the machine, the load average, the bench client's CPU and each
//! server's CPU over its whole process tree ([`procstat`]).

pub mod dovecot;
pub mod mailraft;
pub mod procstat;
pub mod table;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::app;
use crate::cli::{AppendArgs, Common, CompareArgs, IdleArgs, MixArgs, Via, Workload};
use crate::client::Client;
use crate::corpus::Corpus;
use crate::report::Report;

/// One server under test.
pub struct Server {
    /// Display name (the table's column).
    pub name: String,
    /// Plain IMAP port on 127.0.0.1.
    pub port: u16,
    /// LMTP endpoint, when the server has one.
    pub lmtp: Option<String>,
    /// Root pid of its processes.
    pub pid: u32,
}

/// One workload run against one server.
pub struct Run {
    /// Workload label (`mix`, `mix-persistent`, ...).
    pub label: String,
    /// Server name.
    pub server: String,
    /// The bench report.
    pub report: Report,
    /// Server CPU seconds during the run.
    pub server_cpu: f64,
}

/// Preload result per server: messages and seconds.
pub struct Preload {
    /// Server name.
    pub server: String,
    /// Messages appended.
    pub messages: usize,
    /// Seconds it took.
    pub secs: f64,
}

/// Runs the comparison.
pub async fn run(common: &Common, args: &CompareArgs) -> Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("mailraft-bench-compare-")
        .tempdir()
        .context("temp dir")?;
    let logins = app::users(common);
    let corpus = Arc::new(app::load_corpus(common)?);
    let bin = args
        .mailraft_bin
        .clone()
        .or_else(mailraft::find_binary)
        .context(
            "no mailraft binary: pass --mailraft-bin, set MAILRAFT_BIN, or cargo build -p mailraft",
        )?;
    println!("machine: {}", procstat::machine());
    println!(
        "corpus: {} messages, {} bytes, seed {}",
        corpus.len(),
        corpus.bytes(),
        common.seed
    );

    let mut servers = Vec::new();
    let mut caption = Vec::new();
    let dove = if args.no_dovecot {
        None
    } else {
        let d = dir.path().join("dovecot");
        std::fs::create_dir_all(&d)?;
        let dv = dovecot::Dovecot::start(&d, &logins, &common.password, &args.dovecot_fsync)?;
        println!(
            "dovecot: imap {} lmtp {} (config {})",
            dv.imap,
            dv.lmtp,
            dv.config.display()
        );
        caption.push(format!("Dovecot mail_fsync={}", args.dovecot_fsync));
        servers.push(Server {
            name: "Dovecot".into(),
            port: dv.imap.port(),
            lmtp: Some(dv.lmtp.to_string()),
            pid: dv.pid(),
        });
        Some(dv)
    };
    let mut columns = vec![("Mailraft".to_string(), 1)];
    if args.cluster_nodes > 0 {
        let n = args.cluster_nodes;
        columns.push((format!("Mailraft {n} nodes"), n));
        caption.push(format!(
            "Mailraft {n} nodes is `mailraft dev --nodes {n}`: {n} storage processes in one Raft group \
             (a write is acknowledged once a majority has it) and the IMAP front-end in another, \
             all on this machine; server CPU counts all of them"
        ));
    }
    // Kept alive until the end: dropping one stops it.
    let mut devs = Vec::new();
    for (name, nodes) in columns {
        let m = dir.path().join(format!("mailraft-{nodes}"));
        std::fs::create_dir_all(&m)?;
        let mr = mailraft::MailraftDev::start(&bin, &m, nodes)?;
        mr.create_users(&logins, &common.password)?;
        println!(
            "mailraft dev --nodes {nodes} ({}): imap {} pid {} (log {})",
            bin.display(),
            mr.imap,
            mr.pid(),
            mr.log().display()
        );
        for n in &mr.nodes {
            println!("  node{} grpc {} pid {}", n.id, n.grpc, n.pid);
        }
        servers.push(Server {
            name,
            port: mr.imap.port(),
            lmtp: Some(mr.lmtp.to_string()),
            pid: mr.pid(),
        });
        devs.push(mr);
    }

    let mut preloads = Vec::new();
    for s in &servers {
        let t = Instant::now();
        let n = preload(common, s.port, &logins, &corpus, args.preload).await?;
        preloads.push(Preload {
            server: s.name.clone(),
            messages: n,
            secs: t.elapsed().as_secs_f64(),
        });
    }

    let mut runs = Vec::new();
    for label in args
        .workloads
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        for s in &servers {
            let w = workload(label, s, common)?;
            let mut c = common.clone();
            c.host = "127.0.0.1".into();
            c.port = Some(s.port);
            c.tls = false;
            c.quiet = true;
            c.json = None;
            c.plot = None;
            eprintln!("running {label} against {} ...", s.name);
            let cpu0 = procstat::tree_cpu(s.pid);
            let report = app::run_workload(&c, &w, corpus.clone()).await?;
            let server_cpu = procstat::tree_cpu(s.pid) - cpu0;
            println!("{}", report.render());
            runs.push(Run {
                label: label.to_string(),
                server: s.name.clone(),
                report,
                server_cpu,
            });
        }
    }
    let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
    println!("{}", table::render(&names, &caption, &preloads, &runs));
    if let Some(p) = &common.json {
        let all: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| serde_json::json!({"workload": r.label, "server": r.server, "server_cpu_s": r.server_cpu, "report": r.report}))
            .collect();
        std::fs::write(p, serde_json::to_vec_pretty(&all)?)?;
    }
    for mr in devs {
        mr.stop();
    }
    if let Some(d) = dove {
        d.stop();
    }
    if args.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    let violations: u64 = runs.iter().map(|r| r.report.violation_count).sum();
    Ok(if violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn workload(label: &str, s: &Server, common: &Common) -> Result<Workload> {
    Ok(match label {
        "mix" => Workload::Mix(MixArgs {
            persistent: false,
            mix: String::new(),
            msgs: 30,
        }),
        "mix-persistent" => Workload::Mix(MixArgs {
            persistent: true,
            mix: String::new(),
            msgs: 30,
        }),
        "append" => Workload::Append(AppendArgs {
            via: Via::Imap,
            lmtp: None,
            mailbox: "INBOX".into(),
        }),
        "append-lmtp" => Workload::Append(AppendArgs {
            via: Via::Lmtp,
            lmtp: s.lmtp.clone(),
            mailbox: "INBOX".into(),
        }),
        "idle" => Workload::Idle(IdleArgs {
            writers: common.users.clamp(1, 4),
            interval_ms: 100,
            grace: 5,
        }),
        other => bail!("unknown workload {other} (mix, mix-persistent, append, append-lmtp, idle)"),
    })
}

/// Appends corpus messages 0..n to every user's INBOX, up to 8 users at a time.
async fn preload(
    common: &Common,
    port: u16,
    logins: &[String],
    corpus: &Arc<Corpus>,
    n: usize,
) -> Result<usize> {
    let mut c = common.clone();
    c.host = "127.0.0.1".into();
    c.port = Some(port);
    c.tls = false;
    let target = app::target(&c)?;
    let mut total = 0;
    for chunk in logins.chunks(8) {
        let mut tasks = Vec::new();
        for login in chunk {
            let (target, login, pw, corpus) = (
                target.clone(),
                login.clone(),
                common.password.clone(),
                corpus.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(&target).await?;
                let r = client.authenticate(target.auth, &login, &pw).await?;
                if !r.ok() {
                    bail!("login {login} refused: {}", r.text);
                }
                for i in 0..n {
                    let r = client
                        .run_literal("APPEND INBOX", corpus.get(i), "")
                        .await?;
                    if !r.ok() {
                        bail!("preload APPEND for {login}: {}", r.text);
                    }
                }
                let _ = client.run("LOGOUT").await;
                anyhow::Ok(n)
            }));
        }
        for t in tasks {
            total += t.await??;
        }
    }
    Ok(total)
}
