//! Smoke tests against a real `mailraft dev`: a 3-second `mix` (and a short TLS + AUTHENTICATE
//! PLAIN run) must complete commands with zero consistency violations, on a single node and on
//! `mailraft dev --nodes 3` as the comparison harness runs them. Timing is never asserted.
//!
//! The server is always this checkout's: the test has cargo build the `mailraft` binary from the
//! current sources and takes the executable cargo names in its build messages. (The benchmark
//! crate depends on no Mailraft crate, so `CARGO_BIN_EXE_mailraft` does not exist here; a binary
//! found on disk could be stale, and `MAILRAFT_BIN` is for the comparison harness.) A build that
//! fails fails the test: nothing is skipped.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use clap::Parser;
use mailraft_bench::app;
use mailraft_bench::cli::Cli;
use mailraft_bench::compare::mailraft::{MailraftDev, alive};
use mailraft_bench::compare::procstat::{process_ticks, tree_ticks};

/// The `mailraft` executable cargo builds from this checkout (once per test process; cargo
/// does nothing when it is up to date).
fn mailraft_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let out = Command::new(cargo)
            .args(["build", "-p", "mailraft", "--bin", "mailraft", "--message-format=json-render-diagnostics"])
            .arg("--manifest-path")
            .arg(&manifest)
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build -p mailraft");
        assert!(out.status.success(), "cargo build -p mailraft failed: {}", out.status);
        let executable = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "mailraft")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from));
        let executable = executable.expect("cargo named no mailraft executable");
        eprintln!("smoke: testing {}", executable.display());
        executable
    })
}

fn start(nodes: u32) -> (tempfile::TempDir, MailraftDev) {
    let dir = tempfile::tempdir().unwrap();
    let dev = MailraftDev::start(mailraft_binary(), dir.path(), nodes).unwrap();
    let users: Vec<String> = (1..=2).map(|i| format!("user{i}@example.test")).collect();
    dev.create_users(&users, "smoke-pass").unwrap();
    (dir, dev)
}

async fn run(args: &[&str]) -> mailraft_bench::report::Report {
    let cli = Cli::parse_from(args);
    let corpus = Arc::new(app::load_corpus(&cli.common).unwrap());
    let w = cli.workload.clone().unwrap();
    let report = app::run_workload(&cli.common, &w, corpus).await.unwrap();
    println!("{}", report.render());
    report
}

/// The bench arguments every smoke run shares: the two users `start` created, against `port`.
fn common_args(port: &str) -> Vec<&str> {
    vec!["mailraft-bench", "--port", port, "--users", "2", "--password", "smoke-pass", "--quiet"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_smoke_has_no_violations() {
    let (_dir, dev) = start(1);
    let port = dev.imap.port().to_string();
    let mut args = common_args(&port);
    args.extend(["--clients", "4", "--secs", "3", "--corpus", "20", "mix"]);
    let r = run(&args).await;
    assert_eq!(r.violation_count, 0, "violations: {:?}", r.violations);
    assert!(
        r.ops.iter().any(|o| o.op == "select" && o.count > 0),
        "no SELECT completed"
    );
    assert!(
        r.ops.iter().any(|o| o.op == "append" && o.count > 0),
        "no APPEND completed"
    );

    // Persistent sessions over implicit TLS with AUTHENTICATE PLAIN.
    let tls_port = dev.imaps.port().to_string();
    let mut args = common_args(&tls_port);
    args.extend([
        "--tls",
        "--insecure",
        "--auth",
        "plain",
        "--host",
        "localhost",
    ]);
    args.extend([
        "--clients",
        "2",
        "--secs",
        "2",
        "--corpus",
        "10",
        "mix",
        "--persistent",
    ]);
    let r = run(&args).await;
    assert_eq!(r.violation_count, 0, "violations: {:?}", r.violations);
    assert!(
        r.ops.iter().any(|o| o.op == "login" && o.count > 0),
        "no login over TLS"
    );
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    dev.stop();
}

/// `append --via lmtp` delivers through Mailraft's own LMTP listener (the `lmtp` banner line),
/// and the workload's end check finds every acknowledged delivery in the INBOX.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_append_smoke_delivers_every_acknowledged_message() {
    let (_dir, dev) = start(1);
    let port = dev.imap.port().to_string();
    let lmtp = dev.lmtp.to_string();
    let mut args = common_args(&port);
    args.extend(["--clients", "2", "--secs", "2", "--corpus", "10", "append", "--via", "lmtp", "--lmtp", &lmtp]);
    let r = run(&args).await;
    assert_eq!(r.unsupported, None, "LMTP not usable");
    assert_eq!(r.violation_count, 0, "violations: {:?}", r.violations);
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert!(
        r.ops.iter().any(|o| o.op == "lmtp" && o.count > 0),
        "no LMTP delivery completed"
    );
    dev.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_smoke_has_no_violations_and_counts_every_node() {
    let (_dir, dev) = start(3);
    assert_eq!(dev.nodes.len(), 3, "one banner line per storage node");
    let port = dev.imap.port().to_string();
    let mut args = common_args(&port);
    args.extend(["--clients", "4", "--secs", "3", "--corpus", "20", "mix"]);
    let r = run(&args).await;
    assert_eq!(r.violation_count, 0, "violations: {:?}", r.violations);
    assert!(
        r.ops.iter().any(|o| o.op == "append" && o.count > 0),
        "no APPEND completed"
    );

    // The harness's server CPU is tree_cpu of the dev parent: it must include the storage nodes
    // (its direct children), which did the replicated writes. Read the parts first: times only grow.
    // Compared in whole clock ticks: as f64 seconds, 0.69 + 5.36 > 6.05.
    let parent = process_ticks(dev.pid());
    let nodes: u64 = dev.nodes.iter().map(|n| process_ticks(n.pid)).sum();
    let tree = tree_ticks(dev.pid());
    assert!(nodes > 0, "storage nodes used no CPU");
    assert!(
        tree >= parent + nodes,
        "tree {tree} ticks < parent {parent} + nodes {nodes} ticks"
    );

    // Stopping waits for the children, so their data directories can be removed afterwards.
    let pids: Vec<u32> = dev.nodes.iter().map(|n| n.pid).collect();
    dev.stop();
    for pid in pids {
        assert!(!alive(pid), "storage node pid {pid} outlived mailraft dev");
    }
}
