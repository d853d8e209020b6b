//! Starts `mailraft dev` (one storage node in-process, or `--nodes N` storage child processes
//! forming one Raft group behind a front-end in the parent) on port 0 in a directory of ours,
//! reads the addresses it prints, creates users through `mailraft admin`, and stops it again.
//! Used by the comparison harness and the smoke test.
//!
//! Flow: spawn with stdout piped → a thread forwards stdout lines → [`parse_banner_line`] until
//! `imap`, `imaps`, `grpc`, `cert` (and, for a cluster, one `nodeI` line per node) are known →
//! `mailraft admin --endpoint http://GRPC` (any node: admin follows the leader hint) → on stop,
//! SIGTERM so the parent shuts its children down in order, SIGKILL only after a deadline, then
//! wait until the storage children are gone so the caller can delete their data directories.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// How long `mailraft dev` may take to print its banner (a cluster forms and adds members first).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a SIGTERMed `mailraft dev` may take to stop its listeners and children.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `mailraft` binary: `$MAILRAFT_BIN`, else `$CARGO_TARGET_DIR/debug/mailraft`, else the
/// project's default target dir. `None` when none exists.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MAILRAFT_BIN").map(PathBuf::from) {
        return p.exists().then_some(p);
    }
    let mut candidates = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug/mailraft"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(h).join(".cache/mailraft-target/debug/mailraft"));
    }
    candidates.into_iter().find(|p| p.exists())
}

/// One storage child of `mailraft dev --nodes N`, as its banner announced it.
#[derive(Debug, Clone, PartialEq)]
pub struct DevNode {
    /// Node id (1-based).
    pub id: u64,
    /// Its gRPC address.
    pub grpc: SocketAddr,
    /// Its process id at start (the parent restarts a child that dies, under a new pid).
    pub pid: u32,
    /// Its data directory.
    pub data_dir: PathBuf,
}

/// One banner line of `mailraft dev` that the harness needs.
#[derive(Debug, Clone, PartialEq)]
pub enum BannerLine {
    /// `imap ADDR ...`
    Imap(SocketAddr),
    /// `imaps ADDR ...`
    Imaps(SocketAddr),
    /// `grpc ADDR`
    Grpc(SocketAddr),
    /// `cert PATH`
    Cert(PathBuf),
    /// `admin ADDR`: the admin listener (node 1's in cluster mode).
    Admin(SocketAddr),
    /// `lmtp ADDR`: the front-end's LMTP delivery listener.
    Lmtp(SocketAddr),
    /// `certs DIR`: the gRPC certificates, with the operator's for `mailraft admin --tls-dir`.
    Certs(PathBuf),
    /// `nodeI ADDR pid P data DIR` (cluster mode only).
    Node(DevNode),
}

/// Parses one stdout line; `None` for lines the harness does not need. Only the first words are
/// relied upon (main.rs keeps them stable for tests).
pub fn parse_banner_line(line: &str) -> Result<Option<BannerLine>> {
    let mut w = line.split_whitespace();
    let (Some(key), Some(value)) = (w.next(), w.next()) else {
        return Ok(None);
    };
    let addr = || -> Result<SocketAddr> {
        value
            .parse()
            .with_context(|| format!("bad address in banner line {line:?}"))
    };
    Ok(Some(match key {
        "imap" => BannerLine::Imap(addr()?),
        "imaps" => BannerLine::Imaps(addr()?),
        "grpc" => BannerLine::Grpc(addr()?),
        // The path is the rest of the line: a data dir may contain spaces.
        "cert" => BannerLine::Cert(PathBuf::from(line.trim_start()[key.len()..].trim())),
        "admin" => BannerLine::Admin(addr()?),
        "lmtp" => BannerLine::Lmtp(addr()?),
        "certs" => BannerLine::Certs(PathBuf::from(line.trim_start()[key.len()..].trim())),
        k if k.strip_prefix("node").is_some_and(is_number) => {
            let id = k[4..]
                .parse()
                .with_context(|| format!("bad node id in {line:?}"))?;
            let (mut pid, mut data_dir) = (None, None);
            while let Some(word) = w.next() {
                match word {
                    "pid" => pid = w.next().and_then(|p| p.parse().ok()),
                    // The data dir is the rest of the line (it may contain spaces).
                    "data" => {
                        let rest: Vec<&str> = w.by_ref().collect();
                        data_dir = Some(PathBuf::from(rest.join(" ")));
                    }
                    _ => {}
                }
            }
            BannerLine::Node(DevNode {
                id,
                grpc: addr()?,
                pid: pid.with_context(|| format!("no pid in banner line {line:?}"))?,
                data_dir: data_dir.with_context(|| format!("no data dir in {line:?}"))?,
            })
        }
        _ => return Ok(None),
    }))
}

/// A running `mailraft dev`; stopped on drop.
pub struct MailraftDev {
    child: Child,
    bin: PathBuf,
    log: PathBuf,
    stopped: bool,
    /// Plain IMAP.
    pub imap: SocketAddr,
    /// Implicit TLS IMAP.
    pub imaps: SocketAddr,
    /// gRPC (peer): the single node, or node 1 of a cluster.
    pub grpc: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// The gRPC certificates (`mailraft admin --tls-dir`).
    pub certs: PathBuf,
    /// The front-end's LMTP listener.
    pub lmtp: SocketAddr,
    /// The self-signed certificate.
    pub cert: PathBuf,
    /// The storage child processes (empty for a single node, which runs in-process).
    pub nodes: Vec<DevNode>,
}

impl MailraftDev {
    /// Starts `bin dev --nodes nodes` with its data in `dir`, every listener on a free loopback
    /// port. `nodes` 1 is the classic single process.
    pub fn start(bin: &Path, dir: &Path, nodes: u32) -> Result<MailraftDev> {
        if nodes == 0 {
            bail!("mailraft dev needs at least one storage node");
        }
        let log = dir.join("mailraft.log");
        let log_file = std::fs::File::create(&log).context("create mailraft.log")?;
        let mut cmd = Command::new(bin);
        cmd.arg("dev")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--imap-addr",
                "127.0.0.1:0",
                "--imaps-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--lmtp-addr",
                "127.0.0.1:0",
            ])
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--demo-password",
                "demo-bench-unused",
            ]);
        // Only pass --nodes when needed, so a single node still works with older binaries.
        if nodes > 1 {
            cmd.args(["--nodes", &nodes.to_string()]);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("spawn {} dev", bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel::<String>();
        // Keep draining stdout on a thread so the server never blocks on a full pipe (it prints
        // a line per leader change in cluster mode).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut imap, mut imaps, mut grpc, mut cert) = (None, None, None, None);
        let (mut admin, mut certs, mut lmtp) = (None, None, None);
        let mut dev_nodes = Vec::new();
        let want_nodes = if nodes > 1 { nodes as usize } else { 0 };
        while imap.is_none()
            || imaps.is_none()
            || grpc.is_none()
            || cert.is_none()
            || admin.is_none()
            || certs.is_none()
            || lmtp.is_none()
            || dev_nodes.len() < want_nodes
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => "did not print its addresses in time",
                        mpsc::RecvTimeoutError::Disconnected => "exited before its banner",
                    };
                    bail!(
                        "mailraft dev --nodes {nodes} {why}; {} says:\n{}",
                        log.display(),
                        tail(&log, 8)
                    );
                }
            };
            match parse_banner_line(&line)? {
                Some(BannerLine::Imap(a)) => imap = Some(a),
                Some(BannerLine::Imaps(a)) => imaps = Some(a),
                Some(BannerLine::Grpc(a)) => grpc = Some(a),
                Some(BannerLine::Cert(p)) => cert = Some(p),
                Some(BannerLine::Admin(a)) => admin = Some(a),
                Some(BannerLine::Certs(p)) => certs = Some(p),
                Some(BannerLine::Lmtp(a)) => lmtp = Some(a),
                Some(BannerLine::Node(n)) => dev_nodes.push(n),
                None => {}
            }
        }
        Ok(MailraftDev {
            child,
            bin: bin.to_path_buf(),
            log,
            stopped: false,
            imap: imap.ok_or_else(|| anyhow!("no imap"))?,
            imaps: imaps.ok_or_else(|| anyhow!("no imaps"))?,
            grpc: grpc.ok_or_else(|| anyhow!("no grpc"))?,
            admin: admin.ok_or_else(|| anyhow!("no admin"))?,
            certs: certs.ok_or_else(|| anyhow!("no certs"))?,
            lmtp: lmtp.ok_or_else(|| anyhow!("no lmtp"))?,
            cert: cert.ok_or_else(|| anyhow!("no cert"))?,
            nodes: dev_nodes,
        })
    }

    /// Creates the tenants of `logins` (already existing is fine) and the users with `password`.
    pub fn create_users(&self, logins: &[String], password: &str) -> Result<()> {
        let mut domains: Vec<&str> = logins
            .iter()
            .filter_map(|l| l.split_once('@').map(|(_, d)| d))
            .collect();
        domains.sort_unstable();
        domains.dedup();
        for d in domains {
            let out = self.admin(&["create-tenant", d], None)?;
            if !out.status.success()
                && !String::from_utf8_lossy(&out.stderr).contains("already exists")
            {
                bail!("create-tenant {d}: {}", first_line(&out.stderr));
            }
        }
        for l in logins {
            let out = self.admin(&["create-user", l], Some(password))?;
            if !out.status.success()
                && !String::from_utf8_lossy(&out.stderr).contains("already exists")
            {
                bail!("create-user {l}: {}", first_line(&out.stderr));
            }
        }
        Ok(())
    }

    fn admin(&self, args: &[&str], stdin: Option<&str>) -> Result<std::process::Output> {
        let mut child = Command::new(&self.bin)
            .arg("admin")
            .arg("--endpoint")
            .arg(format!("https://{}", self.admin))
            .arg("--tls-dir")
            .arg(&self.certs)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn mailraft admin")?;
        if let Some(mut input) = child.stdin.take()
            && let Some(pw) = stdin
        {
            input.write_all(pw.as_bytes())?;
            input.write_all(b"\n")?;
        }
        Ok(child.wait_with_output()?)
    }

    /// The process id of `mailraft dev` (for CPU accounting: its storage children are direct
    /// children, so [`super::procstat::tree_cpu`] of this pid counts them too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its stderr (and its children's, prefixed `[nodeI]`) goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Stops the server and waits for its storage children.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// SIGTERM first: `mailraft dev` then closes its listeners and its children's stdin, and
    /// waits for them. SIGKILL only when that takes too long; the children still stop on their
    /// own then (their stdin pipe closes), which is why we wait for their pids afterwards.
    fn shutdown(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        // Our own unreaped child: its pid cannot have been reused. (kill(1) as dovecot.rs does,
        // to stay free of unsafe code.)
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.nodes.iter().any(|n| alive(n.pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MailraftDev {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Whether `pid` is a live (not zombie) process. A child orphaned by a killed parent is reaped by
/// init, but a container's pid 1 may never reap it: a zombie counts as gone.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The last `n` lines of a log file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_node_banner() {
        let banner = "Mailraft dev node ready (single-node cluster, data in /tmp/x)\n\
                      imap     127.0.0.1:40001   plain IMAP, LOGIN allowed (dev only), STARTTLS offered\n\
                      imaps    127.0.0.1:40002   implicit TLS, self-signed certificate\n\
                      grpc     127.0.0.1:40003\n\
                      metrics  http://127.0.0.1:40004/metrics\n\
                      lmtp     127.0.0.1:40005   LMTP delivery (RFC 2033), no authentication: keep it off public networks\n\
                      cert     /tmp/x/tls/cert.pem\n";
        let got: Vec<BannerLine> = banner
            .lines()
            .filter_map(|l| parse_banner_line(l).unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                BannerLine::Imap("127.0.0.1:40001".parse().unwrap()),
                BannerLine::Imaps("127.0.0.1:40002".parse().unwrap()),
                BannerLine::Grpc("127.0.0.1:40003".parse().unwrap()),
                BannerLine::Lmtp("127.0.0.1:40005".parse().unwrap()),
                BannerLine::Cert("/tmp/x/tls/cert.pem".into()),
            ]
        );
    }

    #[test]
    fn parses_cluster_node_lines() {
        let line = "node2    127.0.0.1:41002   pid 4242   data /tmp/my data/node-2";
        assert_eq!(
            parse_banner_line(line).unwrap(),
            Some(BannerLine::Node(DevNode {
                id: 2,
                grpc: "127.0.0.1:41002".parse().unwrap(),
                pid: 4242,
                data_dir: "/tmp/my data/node-2".into(),
            }))
        );
        // The leader-change line and the status hint are not node lines.
        assert_eq!(parse_banner_line("leader   node1 (pid 7)").unwrap(), None);
        assert_eq!(
            parse_banner_line("status   mailraft admin --endpoint http://x cluster-info").unwrap(),
            None
        );
        assert!(parse_banner_line("node3    127.0.0.1:41003   data /d").is_err());
    }

    #[test]
    fn own_process_is_alive_and_a_missing_pid_is_not() {
        assert!(alive(std::process::id()));
        // pid_max is at most 2^22 on Linux.
        assert!(!alive(u32::MAX - 1));
    }
}
