//! Table tests: three server columns (Dovecot, Mailraft, Mailraft 3 nodes) with one ratio column
//! per Mailraft column, missing values, and the layouts without Dovecot or with one server.

use std::collections::BTreeMap;

use super::*;
use crate::report::{CpuReport, OpSummary, Report, RunInfo};

const DOVECOT: &str = "Dovecot";
const SINGLE: &str = "Mailraft";
const CLUSTER: &str = "Mailraft 3 nodes";

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

/// A report whose every op ran `count` times at `per_sec`, with latency `p50`/`p99` ms.
fn report(ops: &[(Op, u64, f64, f64, f64)], unsupported: Option<&str>) -> Report {
    Report {
        info: RunInfo {
            workload: "append".into(),
            variant: String::new(),
            server: "127.0.0.1:1".into(),
            tls: false,
            users: 10,
            clients: 10,
            secs: 15,
            seed: 7,
            corpus_messages: 200,
            corpus_bytes: 1,
            loadavg_start: [0.0; 3],
            loadavg_end: [1.5, 0.0, 0.0],
            cpus: 2,
        },
        unsupported: unsupported.map(str::to_string),
        ops: ops
            .iter()
            .map(|&(op, count, per_sec, p50_ms, p99_ms)| OpSummary {
                op: op.name(),
                count,
                per_sec,
                p50_ms,
                p90_ms: p50_ms,
                p99_ms,
                max_ms: p99_ms,
            })
            .collect(),
        total_per_sec: ops.iter().map(|o| o.2).sum(),
        errors: BTreeMap::new(),
        violation_count: 0,
        violations: Vec::new(),
        counters: BTreeMap::new(),
        timings_ms: BTreeMap::new(),
        per_second: Vec::new(),
        cpu: CpuReport {
            user_s: 1.0,
            system_s: 0.0,
            wall_s: 15.0,
            percent_of_one_core: 40.0,
        },
        hist: BTreeMap::new(),
    }
}

fn run(label: &str, server: &str, report: Report, server_cpu: f64) -> Run {
    Run {
        label: label.into(),
        server: server.into(),
        report,
        server_cpu,
    }
}

fn preload(server: &str, messages: usize, secs: f64) -> Preload {
    Preload {
        server: server.into(),
        messages,
        secs,
    }
}

/// The cells of the first row whose workload and metric match, after those two.
fn cells<'a>(table: &'a str, workload: &str, metric: &str) -> Vec<&'a str> {
    let prefix = format!("| {workload} | {metric} |");
    let line = table
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no row {prefix} in\n{table}"));
    line[prefix.len()..]
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Dovecot, Mailraft, Mailraft 3 nodes with append and append-lmtp (LMTP only on Dovecot).
fn three_columns() -> String {
    let append = |rate, p50, p99| report(&[(Op::Append, 1000, rate, p50, p99)], None);
    let runs = vec![
        run("append", DOVECOT, append(500.0, 16.0, 35.0), 1.0),
        run("append", SINGLE, append(600.0, 15.0, 38.0), 2.0),
        run("append", CLUSTER, append(250.0, 40.0, 90.0), 4.0),
        run(
            "append-lmtp",
            DOVECOT,
            report(&[(Op::Lmtp, 400, 200.0, 20.0, 50.0)], None),
            0.5,
        ),
        run(
            "append-lmtp",
            SINGLE,
            report(&[], Some("no LMTP endpoint")),
            0.0,
        ),
        run(
            "append-lmtp",
            CLUSTER,
            report(&[], Some("no LMTP endpoint")),
            0.0,
        ),
    ];
    let preloads = vec![
        preload(DOVECOT, 300, 1.0),
        preload(SINGLE, 300, 2.0),
        preload(CLUSTER, 300, 4.0),
    ];
    let caption = names(&[
        "Dovecot mail_fsync=always",
        "Mailraft 3 nodes is a Raft group",
    ]);
    render(
        &names(&[DOVECOT, SINGLE, CLUSTER]),
        &caption,
        &preloads,
        &runs,
    )
}

#[test]
fn three_columns_have_a_ratio_to_dovecot_each() {
    let t = three_columns();
    assert!(
        t.contains(
            "| workload | metric | Dovecot | Mailraft | Mailraft 3 nodes | Mailraft ÷ Dovecot | \
             Mailraft 3 nodes ÷ Dovecot |\n|---|---|---|---|---|---|---|\n"
        ),
        "header:\n{t}"
    );
    assert_eq!(
        cells(&t, "append", "messages/s"),
        ["500.0", "600.0", "250.0", "1.20", "0.50"]
    );
    assert_eq!(
        cells(&t, "append", "p99 ms"),
        ["35.00", "38.00", "90.00", "1.09", "2.57"]
    );
    // Server CPU per 1000 commands: 1000 APPENDs each.
    assert_eq!(
        cells(&t, "append", "server CPU s per 1000 commands"),
        ["1.000", "2.000", "4.000", "2.00", "4.00"]
    );
    assert_eq!(
        cells(
            &t,
            "preload",
            "messages/s (sequential APPEND, 8 users at a time)"
        ),
        ["300.0", "150.0", "75.0", "0.50", "0.25"]
    );
}

#[test]
fn unsupported_cells_are_na_without_a_ratio_and_noted() {
    let t = three_columns();
    assert_eq!(
        cells(&t, "append-lmtp", "messages/s"),
        ["200.0", "n/a", "n/a", "–", "–"]
    );
    assert!(
        t.contains("- append-lmtp on Mailraft 3 nodes: not supported by server: no LMTP endpoint"),
        "{t}"
    );
    assert!(
        t.contains(
            "; Dovecot mail_fsync=always; Mailraft 3 nodes is a Raft group; runs are sequential"
        ),
        "caption:\n{t}"
    );
}

#[test]
fn without_dovecot_the_cluster_is_compared_with_the_single_node() {
    let append = |rate| report(&[(Op::Append, 100, rate, 1.0, 2.0)], None);
    let runs = vec![
        run("append", SINGLE, append(400.0), 1.0),
        run("append", CLUSTER, append(100.0), 1.0),
    ];
    let t = render(&names(&[SINGLE, CLUSTER]), &[], &[], &runs);
    assert!(
        t.contains(
            "| Mailraft | Mailraft 3 nodes | Mailraft 3 nodes ÷ Mailraft |\n|---|---|---|---|---|\n"
        ),
        "{t}"
    );
    assert_eq!(
        cells(&t, "append", "messages/s"),
        ["400.0", "100.0", "0.25"]
    );
    // No preload ran: n/a rather than a made-up rate.
    assert_eq!(
        cells(
            &t,
            "preload",
            "messages/s (sequential APPEND, 8 users at a time)"
        ),
        ["n/a", "n/a", "–"]
    );
}

#[test]
fn one_server_has_no_ratio_column() {
    let runs = vec![run(
        "append",
        SINGLE,
        report(&[(Op::Append, 10, 5.0, 1.0, 2.0)], None),
        0.1,
    )];
    let t = render(&names(&[SINGLE]), &[], &[], &runs);
    assert!(
        t.contains("| workload | metric | Mailraft |\n|---|---|---|\n"),
        "{t}"
    );
    assert_eq!(cells(&t, "append", "messages/s"), ["5.0"]);
}
