//! How the fault tests observe the cluster from outside, as an operator would: `mailraft admin`
//! runs with a deadline, its `cluster-info --json` and `state-digest` output parsed, Prometheus
//! `/metrics` scraped, log tails read, and [`wait_for`], the one way tests wait: poll a probe
//! until it yields, with a deadline and the last error in the failure message.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

/// How often [`wait_for`] probes.
const POLL: Duration = Duration::from_millis(100);

/// Calls `probe` until it yields a value, failing after `timeout` with `what` and the last error
/// the probe returned (errors count as "not yet").
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(format!("{e:#}")),
        }
        if Instant::now() >= deadline {
            let detail = last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}{detail}");
        }
        std::thread::park_timeout(POLL);
    }
}

/// How a `mailraft` command ended.
pub struct Ran {
    /// It exited with status 0.
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `mailraft <args>` with `stdin`, killing it after `timeout`; returns stdout, failing on a
/// non-zero exit with stderr in the message.
pub fn run_mailraft(args: &[String], stdin: &str, timeout: Duration) -> Result<String> {
    let ran = run_mailraft_status(args, stdin, timeout)?;
    if !ran.success {
        bail!("mailraft {} failed: {}{}", args.join(" "), ran.stdout, ran.stderr);
    }
    Ok(ran.stdout)
}

/// [`run_mailraft`] for commands whose failure is the point: any exit status is returned, with
/// both outputs; only a command that does not finish within `timeout` is an error.
pub fn run_mailraft_status(args: &[String], stdin: &str, timeout: Duration) -> Result<Ran> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailraft"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn mailraft")?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read_all(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read_all(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("mailraft {} did not finish within {timeout:?}", args.join(" "));
        }
        std::thread::park_timeout(Duration::from_millis(10));
    };
    let stdout = stdout.join().map_err(|_| anyhow!("stdout reader panicked"))?;
    let stderr = stderr.join().map_err(|_| anyhow!("stderr reader panicked"))?;
    Ok(Ran { success: status.success(), stdout, stderr })
}

/// `mailraft admin cluster-info --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClusterInfo {
    /// The node that answered.
    pub node_id: u64,
    /// The leader it knows of (0: none).
    pub leader_id: u64,
    /// The leader's advertised address ("" when none).
    pub leader_addr: String,
    /// Its current term.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: u64,
    /// Its last applied index.
    pub last_applied: u64,
    /// The cluster it belongs to (hex).
    pub cluster_id: String,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub state: String,
    /// The membership as it knows it (lag only on the leader).
    pub members: Vec<Member>,
    /// Index of its last snapshot (0: none).
    pub snapshot_index: u64,
}

/// One member in [`ClusterInfo`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Member {
    /// Node id.
    pub node_id: u64,
    /// Advertised address.
    pub addr: String,
    /// "voter" or "learner".
    pub role: String,
    /// Whether the leader knows its matched index.
    pub has_matched: bool,
    /// Highest index replicated to it.
    pub matched_index: u64,
    /// How far it is behind the leader's last log index.
    pub lag: u64,
}

impl ClusterInfo {
    /// Ids of the voters.
    pub fn voters(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| m.role == "voter")
            .map(|m| m.node_id)
            .collect()
    }

    /// True if this node is the leader by its own account.
    pub fn is_leader(&self) -> bool {
        self.state == "leader" && self.leader_id == self.node_id
    }
}

/// `mailraft admin state-digest`: a digest of one node's state machine at its applied index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Digest {
    /// The index the digest was taken at.
    pub applied_index: u64,
    /// SHA-256 of the state machine's contents (hex).
    pub sha256: String,
    /// Number of entries digested.
    pub entries: u64,
}

/// `text` without ANSI colour sequences (`ESC [ … letter`), in case a child colours its logs.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip "[", parameters, and the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The JSON object in a command's output.
pub fn parse_json<T: serde::de::DeserializeOwned>(out: &str, what: &str) -> Result<T> {
    let start = out
        .find('{')
        .ok_or_else(|| anyhow!("no JSON in {what} output: {out}"))?;
    let end = out
        .rfind('}')
        .ok_or_else(|| anyhow!("no JSON in {what} output: {out}"))?;
    serde_json::from_str(&out[start..=end]).with_context(|| format!("parse {what}: {out}"))
}

/// The last `n` lines of a file (lossy), or why it could not be read.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = strip_ansi(&String::from_utf8_lossy(&bytes));
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({e})"),
    }
}

/// `GET /metrics` of a Prometheus listener.
pub fn scrape(addr: SocketAddr) -> Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.") || !out.contains(" 200 ") {
        bail!("GET /metrics: {}", out.lines().next().unwrap_or(""));
    }
    Ok(out)
}

/// Sum of the samples of metric `name` whose line also contains `filter` (e.g. a label like
/// `op="install"`; "" for all), or `None` if there is none.
pub fn metric_sum(metrics: &str, name: &str, filter: &str) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
