//! Starts `mailraft dev` on port 0 in a directory of ours, reads the addresses it prints, and
//! creates users through `mailraft admin`. Used by the comparison harness and the smoke test.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

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

/// A running `mailraft dev`; killed on drop.
pub struct MailraftDev {
    child: Child,
    bin: PathBuf,
    /// Plain IMAP.
    pub imap: SocketAddr,
    /// Implicit TLS IMAP.
    pub imaps: SocketAddr,
    /// gRPC (admin).
    pub grpc: SocketAddr,
    /// The self-signed certificate.
    pub cert: PathBuf,
}

impl MailraftDev {
    /// Starts `bin dev` with its data in `dir`, every listener on a free loopback port.
    pub fn start(bin: &Path, dir: &Path) -> Result<MailraftDev> {
        let log = std::fs::File::create(dir.join("mailraft.log")).context("create mailraft.log")?;
        let mut child = Command::new(bin)
            .arg("dev")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--imap-addr",
                "127.0.0.1:0",
                "--imaps-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
            ])
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--demo-password",
                "demo-bench-unused",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {} dev", bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel::<String>();
        // Keep draining stdout on a thread so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut imap, mut imaps, mut grpc, mut cert) = (None, None, None, None);
        while imap.is_none() || imaps.is_none() || grpc.is_none() || cert.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "mailraft dev did not print its addresses (see {})",
                    dir.join("mailraft.log").display()
                );
            };
            let mut w = line.split_whitespace();
            match (w.next(), w.next()) {
                (Some("imap"), Some(a)) => imap = Some(a.parse()?),
                (Some("imaps"), Some(a)) => imaps = Some(a.parse()?),
                (Some("grpc"), Some(a)) => grpc = Some(a.parse()?),
                (Some("cert"), Some(p)) => cert = Some(PathBuf::from(p)),
                _ => {}
            }
        }
        Ok(MailraftDev {
            child,
            bin: bin.to_path_buf(),
            imap: imap.ok_or_else(|| anyhow!("no imap"))?,
            imaps: imaps.ok_or_else(|| anyhow!("no imaps"))?,
            grpc: grpc.ok_or_else(|| anyhow!("no grpc"))?,
            cert: cert.ok_or_else(|| anyhow!("no cert"))?,
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
            .arg(format!("http://{}", self.grpc))
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

    /// The process id (for CPU accounting).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MailraftDev {
    fn drop(&mut self) {
        self.kill();
    }
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}
