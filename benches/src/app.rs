//! From parsed options to a finished run: build the context, run the workload, print and save
//! the report, and choose the exit code (1 when any consistency violation was seen).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::checks::Registry;
use crate::cli::{Cli, Common, MixArgs, Workload};
use crate::client::{Target, tls};
use crate::corpus::Corpus;
use crate::report::{Report, RunInfo};
use crate::stats::{Op, Recorder};
use crate::workloads::{self, Ctx, mix};

/// Runs the command line.
pub async fn main(cli: Cli) -> Result<ExitCode> {
    let workload = cli
        .workload
        .clone()
        .unwrap_or(Workload::Mix(MixArgs::default()));
    match workload {
        Workload::Compare(args) => crate::compare::run(&cli.common, &args).await,
        Workload::Corpus(args) => {
            let corpus = load_corpus(&cli.common)?;
            write_mbox(&corpus, &args.out)?;
            println!(
                "wrote {} messages ({} bytes) to {}",
                corpus.len(),
                corpus.bytes(),
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        w => {
            let corpus = Arc::new(load_corpus(&cli.common)?);
            let report = run_workload(&cli.common, &w, corpus).await?;
            println!("{}", report.render());
            save(&cli.common, &report)?;
            Ok(if report.violation_count > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Writes the JSON and SVG outputs requested in `common`.
pub fn save(common: &Common, report: &Report) -> Result<()> {
    if let Some(p) = &common.json {
        std::fs::write(p, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("write {}", p.display()))?;
    }
    if let Some(p) = &common.plot {
        std::fs::write(p, crate::plot::svg(report))
            .with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

/// The generated or mbox corpus.
pub fn load_corpus(common: &Common) -> Result<Corpus> {
    match &common.mbox {
        Some(p) => Corpus::from_mbox(p).with_context(|| format!("read mbox {}", p.display())),
        None => Ok(Corpus::generate(common.seed, common.corpus.max(1))),
    }
}

fn write_mbox(corpus: &Corpus, out: &Path) -> Result<()> {
    let mut data = Vec::with_capacity(corpus.bytes() + corpus.len() * 64);
    for i in 0..corpus.len() {
        data.extend_from_slice(b"From bench@mailraft.test Thu Jan  1 00:00:00 2024\n");
        for line in corpus.get(i).split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r\n").unwrap_or(line);
            // mboxrd quoting: one more `>` before any `>*From `.
            let gt = line.iter().take_while(|&&b| b == b'>').count();
            if line[gt..].starts_with(b"From ") {
                data.push(b'>');
            }
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        data.push(b'\n');
    }
    std::fs::write(out, data).with_context(|| format!("write {}", out.display()))
}

/// The connection target from the options.
pub fn target(common: &Common) -> Result<Target> {
    let tls = if common.tls {
        Some(tls::client_config(
            common.ca_file.as_deref(),
            common.insecure,
        )?)
    } else {
        None
    };
    Ok(Target {
        host: common.host.clone(),
        port: common.port.unwrap_or(if common.tls { 993 } else { 143 }),
        tls,
        timeout: Duration::from_secs(common.timeout.max(1)),
        auth: common.auth,
        ca_file: common.ca_file.clone(),
    })
}

/// Logins from the pattern.
pub fn users(common: &Common) -> Vec<String> {
    (1..=common.users.max(1))
        .map(|i| common.user_pattern.replace("%d", &i.to_string()))
        .collect()
}

/// Runs one workload (not `compare`/`corpus`) and returns its report.
pub async fn run_workload(common: &Common, w: &Workload, corpus: Arc<Corpus>) -> Result<Report> {
    let ctx = Arc::new(Ctx {
        target: target(common)?,
        users: users(common),
        password: common.password.clone(),
        clients: common.clients.max(1),
        secs: common.secs.max(1),
        seed: common.seed,
        corpus: corpus.clone(),
        rec: Arc::new(Recorder::new()),
        registry: Registry::default(),
        quiet: common.quiet,
    });
    let mut info = RunInfo {
        workload: String::new(),
        variant: String::new(),
        server: format!("{}:{}", ctx.target.host, ctx.target.port),
        tls: ctx.target.tls.is_some(),
        users: ctx.users.len(),
        clients: ctx.clients,
        secs: ctx.secs,
        seed: ctx.seed,
        corpus_messages: corpus.len(),
        corpus_bytes: corpus.bytes(),
        loadavg_start: [0.0; 3],
        loadavg_end: [0.0; 3],
        cpus: 0,
    };
    let report = match w {
        Workload::Mix(a) => {
            let probs = mix::MixProbs::parse(&a.mix).map_err(anyhow::Error::msg)?;
            let opts = mix::MixOpts {
                probs,
                persistent: a.persistent,
                msgs: a.msgs.max(2),
            };
            info.workload = "mix".into();
            info.variant = if a.persistent {
                "persistent".into()
            } else {
                "sessions".into()
            };
            workloads::measure(ctx, info, mix::OPS.to_vec(), |c| mix::run(c, opts)).await
        }
        Workload::Append(a) => {
            info.workload = "append".into();
            info.variant = format!("{:?}", a.via).to_lowercase();
            let a = a.clone();
            let ops = vec![if a.via == crate::cli::Via::Lmtp {
                Op::Lmtp
            } else {
                Op::Append
            }];
            workloads::measure(ctx, info, ops, |c| workloads::append::run(c, a)).await
        }
        Workload::Idle(a) => {
            info.workload = "idle".into();
            info.variant = format!("{} writers", a.writers);
            let a = a.clone();
            let ops = vec![Op::Login, Op::Select, Op::Append, Op::Notify];
            workloads::measure(ctx, info, ops, |c| workloads::idle::run(c, a)).await
        }
        Workload::Bigbox(a) => {
            info.workload = "bigbox".into();
            info.variant = format!("{} messages", a.messages);
            let a = a.clone();
            let ops = vec![Op::Append, Op::Select, Op::Fetch, Op::Search, Op::Resync];
            workloads::measure(ctx, info, ops, |c| workloads::bigbox::run(c, a)).await
        }
        Workload::Compare(_) | Workload::Corpus(_) => anyhow::bail!("not a load workload"),
    };
    Ok(report)
}
