//! Output: imaptest-style per-second lines while running, then totals with HDR percentiles,
//! errors by kind, violations, the client's own CPU, and a JSON document of all of it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::checks::Violation;
use crate::rusage::CpuTime;
use crate::stats::{Data, Op, Recorder};

/// What was run against what.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Workload name (`mix`, `append`, ...).
    pub workload: String,
    /// Extra description (e.g. `persistent`, `lmtp`).
    pub variant: String,
    /// `host:port`.
    pub server: String,
    /// Whether TLS was used.
    pub tls: bool,
    /// Number of users.
    pub users: usize,
    /// Concurrent sessions.
    pub clients: usize,
    /// Requested duration.
    pub secs: u64,
    /// Seed of the corpus and of the command choices.
    pub seed: u64,
    /// Corpus messages and bytes.
    pub corpus_messages: usize,
    /// Corpus total size.
    pub corpus_bytes: usize,
    /// Load average (1, 5, 15 min) at the start.
    pub loadavg_start: [f64; 3],
    /// Load average at the end.
    pub loadavg_end: [f64; 3],
    /// CPUs of the machine.
    pub cpus: usize,
}

/// One op's totals.
#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    /// Op name.
    pub op: &'static str,
    /// Completed count.
    pub count: u64,
    /// Count per second of measured time.
    pub per_sec: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// The client's CPU use over the measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub system_s: f64,
    /// Wall seconds of the measured phase.
    pub wall_s: f64,
    /// (user+system)/wall as a percentage of one core.
    pub percent_of_one_core: f64,
}

/// The whole report (also the JSON document).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Run parameters.
    pub info: RunInfo,
    /// Set when the server lacks what the workload needs.
    pub unsupported: Option<String>,
    /// Per-op totals in column order.
    pub ops: Vec<OpSummary>,
    /// All ops per second of measured time.
    pub total_per_sec: f64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Violation count (all).
    pub violation_count: u64,
    /// Kept violations.
    pub violations: Vec<Violation>,
    /// Named counters.
    pub counters: BTreeMap<String, u64>,
    /// Named timings, milliseconds.
    pub timings_ms: BTreeMap<String, Vec<f64>>,
    /// Per-second counts by op name.
    pub per_second: Vec<BTreeMap<&'static str, u64>>,
    /// The client's CPU.
    pub cpu: CpuReport,
    /// Histograms kept for the plot (not serialized).
    #[serde(skip)]
    pub hist: BTreeMap<Op, Histogram<u64>>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    /// Builds the report from the recorder's data.
    pub fn build(
        info: RunInfo,
        unsupported: Option<String>,
        data: Data,
        cpu: CpuTime,
        wall: Duration,
    ) -> Report {
        let wall_s = wall.as_secs_f64().max(1e-9);
        let ops: Vec<OpSummary> = data
            .hist
            .iter()
            .map(|(op, h)| OpSummary {
                op: op.name(),
                count: h.len(),
                per_sec: h.len() as f64 / wall_s,
                p50_ms: ms(h.value_at_quantile(0.50)),
                p90_ms: ms(h.value_at_quantile(0.90)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                max_ms: ms(h.max()),
            })
            .collect();
        let total_per_sec = ops
            .iter()
            .filter(|o| o.op != Op::Notify.name())
            .map(|o| o.per_sec)
            .sum();
        let per_second = data
            .per_sec
            .iter()
            .map(|row| {
                Op::ALL
                    .iter()
                    .filter(|o| row[**o as usize] > 0)
                    .map(|o| (o.name(), row[*o as usize]))
                    .collect()
            })
            .collect();
        let timings_ms = data
            .timings
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|&u| ms(u)).collect()))
            .collect();
        let used = cpu.total().as_secs_f64();
        Report {
            info,
            unsupported,
            ops,
            total_per_sec,
            errors: data.errors,
            violation_count: data.violation_count,
            violations: data.violations,
            counters: data.counters,
            timings_ms,
            per_second,
            cpu: CpuReport {
                user_s: cpu.user.as_secs_f64(),
                system_s: cpu.system.as_secs_f64(),
                wall_s,
                percent_of_one_core: 100.0 * used / wall_s,
            },
            hist: data.hist,
        }
    }

    /// Count per second of `op`, 0 if absent.
    pub fn rate(&self, op: Op) -> f64 {
        self.ops
            .iter()
            .find(|o| o.op == op.name())
            .map(|o| o.per_sec)
            .unwrap_or(0.0)
    }

    /// The summary of `op`.
    pub fn op(&self, op: Op) -> Option<&OpSummary> {
        self.ops.iter().find(|o| o.op == op.name())
    }

    /// Human-readable totals.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let i = &self.info;
        s.push_str(&format!(
            "\n{} {} against {}{}: {} users, {} clients, {} s, seed {}\n",
            i.workload,
            i.variant,
            i.server,
            if i.tls { " (TLS)" } else { "" },
            i.users,
            i.clients,
            i.secs,
            i.seed
        ));
        if let Some(u) = &self.unsupported {
            s.push_str(&format!("not supported by server: {u}\n"));
        }
        s.push_str(&format!(
            "{:<8} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}\n",
            "op", "count", "per sec", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        for o in &self.ops {
            s.push_str(&format!(
                "{:<8} {:>9} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                o.op, o.count, o.per_sec, o.p50_ms, o.p90_ms, o.p99_ms, o.max_ms
            ));
        }
        s.push_str(&format!(
            "total    {:>20.1} commands/s\n",
            self.total_per_sec
        ));
        for (k, v) in &self.timings_ms {
            let parts: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
            s.push_str(&format!("timing   {k}: {} ms\n", parts.join(", ")));
        }
        for (k, v) in &self.counters {
            s.push_str(&format!("counter  {k}: {v}\n"));
        }
        if self.errors.is_empty() {
            s.push_str("errors   none\n");
        }
        for (k, v) in &self.errors {
            s.push_str(&format!("error    {k}: {v}\n"));
        }
        s.push_str(&format!("violations: {}\n", self.violation_count));
        for v in self.violations.iter().take(20) {
            s.push_str(&format!("  [{}] {} ({})\n", v.rule, v.detail, v.user));
        }
        s.push_str(&format!(
            "bench client CPU: {:.2} s user + {:.2} s sys over {:.1} s = {:.0}% of one core ({} cores); load average {:.2} -> {:.2}\n",
            self.cpu.user_s, self.cpu.system_s, self.cpu.wall_s, self.cpu.percent_of_one_core, i.cpus, i.loadavg_start[0], i.loadavg_end[0]
        ));
        s
    }
}

/// The imaptest-style column header for `ops`.
pub fn header(ops: &[Op]) -> String {
    let mut s: Vec<String> = ops.iter().map(|o| o.short().to_string()).collect();
    s.push(" sec  viol".to_string());
    s.join(" ")
}

/// One per-second line.
pub fn line(ops: &[Op], counts: &[u64; Op::ALL.len()], sec: usize, violations: u64) -> String {
    let mut s: Vec<String> = ops
        .iter()
        .map(|o| format!("{:>4}", counts[*o as usize]))
        .collect();
    s.push(format!("{:>4} {:>5}", sec + 1, violations));
    s.join(" ")
}

/// Prints one line per completed second until `secs` seconds passed or `stop` fires; shows a
/// progress bar when stdout is a terminal.
pub async fn ticker(
    rec: Arc<Recorder>,
    ops: Vec<Op>,
    secs: u64,
    quiet: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tty = std::io::stdout().is_terminal() && !quiet;
    let bar = if tty {
        let pb = indicatif::ProgressBar::new(secs);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s {msg}") {
            pb.set_style(style);
        }
        Some(pb)
    } else {
        None
    };
    let say = |text: String| match &bar {
        Some(pb) => pb.println(text),
        None if !quiet => println!("{text}"),
        None => {}
    };
    tokio::select! {
        _ = rec.began() => {}
        _ = stop.changed() => return,
    }
    say(header(&ops));
    let mut interval = tokio::time::interval_at(rec.start().into(), Duration::from_secs(1));
    interval.tick().await;
    for sec in 0..secs as usize {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => break,
        }
        if sec > 0 && sec % 20 == 0 {
            say(header(&ops));
        }
        say(line(&ops, &rec.second(sec), sec, rec.violation_count()));
        if let Some(pb) = &bar {
            pb.set_position(sec as u64 + 1);
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
}
