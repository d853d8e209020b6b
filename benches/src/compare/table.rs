//! The side-by-side table (Markdown, so it can go straight into the README): one block of rows
//! per workload, one column per server (Dovecot, Mailraft, Mailraft N nodes), then one ratio
//! column per further server against the first one (each Mailraft column ÷ Dovecot, or, without
//! Dovecot, the cluster ÷ the single node).

use std::fmt::Write;

use super::{Preload, Run};
use crate::stats::Op;

/// Renders the comparison. `servers` are the column names in order (the first is the baseline of
/// the ratios); `caption` are notes about the setup, joined into the caption line.
pub fn render(
    servers: &[String],
    caption: &[String],
    preloads: &[Preload],
    runs: &[Run],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Comparison on {}", super::procstat::machine());
    if let Some(r) = runs.first() {
        let i = &r.report.info;
        let notes: String = caption.iter().map(|c| format!("; {c}")).collect();
        let _ = writeln!(
            s,
            "{} users, {} clients, {} s per run, seed {}, corpus {} messages{notes}; runs are sequential\n",
            i.users, i.clients, i.secs, i.seed, i.corpus_messages
        );
    }
    let _ = write!(s, "| workload | metric |");
    for n in servers {
        let _ = write!(s, " {n} |");
    }
    // Every server after the first is compared with the first.
    let ratios = servers.len().saturating_sub(1);
    for n in servers.iter().skip(1) {
        let _ = write!(s, " {n} ÷ {} |", servers[0]);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|{}", "---|".repeat(2 + servers.len() + ratios));
    let mut body = String::new();
    let mut row = |w: &str, metric: &str, vals: Vec<Option<f64>>, fmt: fn(f64) -> String| {
        let _ = write!(body, "| {w} | {metric} |");
        for v in &vals {
            let _ = write!(body, " {} |", v.map(fmt).unwrap_or_else(|| "n/a".into()));
        }
        let base = vals.first().copied().flatten();
        for v in vals.iter().skip(1) {
            let r = match (base, *v) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
                _ => "–".into(),
            };
            let _ = write!(body, " {r} |");
        }
        let _ = writeln!(body);
    };
    let pre: Vec<Option<f64>> = servers
        .iter()
        .map(|n| {
            preloads
                .iter()
                .find(|p| p.server == *n)
                .map(|p| p.messages as f64 / p.secs.max(1e-9))
        })
        .collect();
    row(
        "preload",
        "messages/s (sequential APPEND, 8 users at a time)",
        pre,
        f1,
    );

    let mut notes: Vec<String> = Vec::new();
    let mut labels: Vec<&str> = Vec::new();
    for r in runs {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    for label in labels {
        let get = |n: &str| runs.iter().find(|r| r.label == label && r.server == n);
        let each = |f: &dyn Fn(&Run) -> Option<f64>| {
            servers
                .iter()
                .map(|n| get(n).and_then(f))
                .collect::<Vec<_>>()
        };
        let supported = |r: &Run| r.report.unsupported.is_none();
        match label {
            l if l.starts_with("mix") => {
                row(
                    label,
                    "commands/s",
                    each(&|r| Some(r.report.total_per_sec)),
                    f1,
                );
                for op in [
                    Op::Login,
                    Op::Select,
                    Op::Fetch,
                    Op::Fetch2,
                    Op::Store,
                    Op::Expunge,
                    Op::Append,
                ] {
                    row(
                        label,
                        &format!("{} p50 ms", op.name()),
                        each(&|r| r.report.op(op).map(|o| o.p50_ms)),
                        f2,
                    );
                    row(
                        label,
                        &format!("{} p99 ms", op.name()),
                        each(&|r| r.report.op(op).map(|o| o.p99_ms)),
                        f2,
                    );
                }
            }
            l if l.starts_with("append") => {
                let op = if l.ends_with("lmtp") {
                    Op::Lmtp
                } else {
                    Op::Append
                };
                row(
                    label,
                    "messages/s",
                    each(&|r| supported(r).then(|| r.report.rate(op))),
                    f1,
                );
                row(
                    label,
                    "p50 ms",
                    each(&|r| r.report.op(op).map(|o| o.p50_ms)),
                    f2,
                );
                row(
                    label,
                    "p99 ms",
                    each(&|r| r.report.op(op).map(|o| o.p99_ms)),
                    f2,
                );
            }
            "idle" => {
                row(
                    label,
                    "EXISTS after append OK, p50 ms",
                    each(&|r| r.report.op(Op::Notify).map(|o| o.p50_ms)),
                    f2,
                );
                row(
                    label,
                    "p99 ms",
                    each(&|r| r.report.op(Op::Notify).map(|o| o.p99_ms)),
                    f2,
                );
                row(
                    label,
                    "max ms",
                    each(&|r| r.report.op(Op::Notify).map(|o| o.max_ms)),
                    f2,
                );
            }
            _ => {}
        }
        let server_cpu_per_k = |r: &Run| {
            let n: u64 = r
                .report
                .ops
                .iter()
                .filter(|o| o.op != Op::Notify.name())
                .map(|o| o.count)
                .sum();
            (n > 0 && supported(r)).then(|| 1000.0 * r.server_cpu / n as f64)
        };
        row(
            label,
            "server CPU s per 1000 commands",
            each(&server_cpu_per_k),
            f3,
        );
        row(
            label,
            "errors",
            each(&|r| Some(r.report.errors.values().sum::<u64>() as f64)),
            f0,
        );
        row(
            label,
            "violations",
            each(&|r| Some(r.report.violation_count as f64)),
            f0,
        );
        row(
            label,
            "bench client CPU % of one core",
            each(&|r| supported(r).then_some(r.report.cpu.percent_of_one_core)),
            f0,
        );
        row(
            label,
            "load average (1 min) at end",
            each(&|r| Some(r.report.info.loadavg_end[0])),
            f2,
        );
        for r in runs.iter().filter(|r| r.label == label) {
            if let Some(u) = &r.report.unsupported {
                notes.push(format!(
                    "- {label} on {}: not supported by server: {u}",
                    r.server
                ));
            }
        }
    }
    s.push_str(&body);
    if !notes.is_empty() {
        let _ = writeln!(s, "\n{}", notes.join("\n"));
    }
    s
}

fn f0(v: f64) -> String {
    format!("{v:.0}")
}
fn f1(v: f64) -> String {
    format!("{v:.1}")
}
fn f2(v: f64) -> String {
    format!("{v:.2}")
}
fn f3(v: f64) -> String {
    format!("{v:.3}")
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
