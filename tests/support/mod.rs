//! Test harness: starts the real `mailraft` binary (`dev` mode) on port 0 in a temp dir, and a
//! tiny blocking IMAP client for assertions. Shared by the end-to-end tests in this folder.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Ledger of a fault test's writes and the exactly-once check.
pub mod check;
/// Multi-process cluster on loopback behind fault-injecting proxies.
pub mod cluster;
/// IMAP client extensions: SELECT/STATUS values, reading a mailbox back, IDLE.
pub mod imap;
/// Admin CLI, cluster-info and digests, /metrics, log tails, and waiting with a deadline.
pub mod observe;
/// Fault-injecting TCP proxy.
pub mod proxy;

/// The demo account `mailraft dev` creates on first start.
pub const USER: &str = "demo@example.test";
/// Its password in these tests.
pub const PASSWORD: &str = "demo-e2e-secret";

/// A running `mailraft` process whose banner lines (`<key> <value> …`) were read.
pub struct Proc {
    child: Child,
    /// First two words of each banner line seen before the wanted keys were complete.
    pub banner: std::collections::HashMap<String, String>,
    /// Those banner lines whole, in order.
    pub lines: Vec<String>,
    /// Held open for the process's life: a child started with `--exit-on-stdin-eof` stops when
    /// it closes, even if this test process is killed before it can kill the child.
    _stdin: Option<std::process::ChildStdin>,
}

impl Proc {
    /// Spawns `mailraft <args>` with `env`, and waits (up to 60 s) until its stdout has printed a
    /// line starting with each of `keys`.
    pub fn spawn(args: &[&std::ffi::OsStr], env: &[(&str, &str)], keys: &[&str]) -> Result<Proc> {
        Proc::spawn_logged(args, env, keys, None)
    }

    /// [`Proc::spawn`] with stderr (the logs) written to `log` instead of the test's stderr.
    pub fn spawn_logged(
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
        keys: &[&str],
        log: Option<&Path>,
    ) -> Result<Proc> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailraft"));
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::inherit(),
        };
        cmd.args(args).env("RUST_LOG", "warn").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawn mailraft")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        // Read the banner on a thread so the deadline holds even if the process prints nothing.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Keep draining after the receiver is gone so the child never blocks on a pipe.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut banner = std::collections::HashMap::new();
        let mut lines = Vec::new();
        while !keys.iter().all(|k| banner.contains_key(*k)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                bail!("mailraft {args:?} did not print {keys:?} within 60s (saw {banner:?})");
            };
            let mut words = line.split_whitespace();
            if let (Some(k), Some(v)) = (words.next(), words.next()) {
                banner.insert(k.to_string(), v.to_string());
            }
            lines.push(line);
        }
        let stdin = child.stdin.take();
        Ok(Proc { child, banner, lines, _stdin: stdin })
    }

    /// A banner value parsed, e.g. `addr("imap")`.
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Result<T>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let v = self.banner.get(key).ok_or_else(|| anyhow!("no {key} in banner"))?;
        Ok(v.parse()?)
    }

    /// The process id (e.g. to read its `/proc/<pid>/status`).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: a process crash. No shutdown path runs, but whatever the process wrote is still
    /// in the kernel's page cache and survives without fsync; a power cut is simulated by
    /// `mailraft_faultfs` (tests/durability_power_loss.rs), not by this.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then wait for a clean exit (bounded).
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("process did not exit within 30s of SIGTERM");
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mailraft dev` flags with every listener on loopback port 0, metrics on `metrics` and the
/// demo account's password `demo_password`; the caller adds `--data-dir` and anything else.
pub fn dev_flags(metrics: &str, demo_password: &str) -> Vec<String> {
    [
        "dev",
        "--imap-addr",
        "127.0.0.1:0",
        "--imaps-addr",
        "127.0.0.1:0",
        "--lmtp-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        metrics,
        "--demo-password",
        demo_password,
    ]
    .map(String::from)
    .to_vec()
}

/// A running `mailraft dev` process.
pub struct Dev {
    /// The process.
    pub proc: Proc,
    /// Plain IMAP listener.
    pub imap: SocketAddr,
    /// Implicit-TLS IMAP listener.
    pub imaps: SocketAddr,
    /// LMTP listener.
    pub lmtp: SocketAddr,
    /// The storage node's gRPC (peer) listener.
    pub grpc: SocketAddr,
    /// The storage node's admin listener.
    pub admin: SocketAddr,
    /// The self-signed certificate dev mode generated (PEM).
    pub cert: PathBuf,
    /// The directory of the gRPC certificates dev mode generated (CA, operator, ...).
    pub certs: PathBuf,
    /// Kept so the directory outlives the process; `None` when the caller owns it.
    _dir: Option<tempfile::TempDir>,
    /// Data directory (stable across restarts).
    pub data_dir: PathBuf,
}

impl Dev {
    /// Starts dev mode in a fresh temp dir.
    pub fn start() -> Result<Dev> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let mut dev = Dev::start_with(&data, "127.0.0.1:0", &[])?;
        dev._dir = Some(dir);
        Ok(dev)
    }

    /// Starts dev mode on an existing data dir (restart after a crash).
    pub fn start_in(data_dir: &Path) -> Result<Dev> {
        Dev::start_with(data_dir, "127.0.0.1:0", &[])
    }

    /// Starts dev mode with a given metrics address and extra environment.
    pub fn start_with(data_dir: &Path, metrics: &str, env: &[(&str, &str)]) -> Result<Dev> {
        Dev::start_logged(data_dir, metrics, env, None)
    }

    /// [`Dev::start_with`], logs to `log`.
    pub fn start_logged(data_dir: &Path, metrics: &str, env: &[(&str, &str)], log: Option<&Path>) -> Result<Dev> {
        let mut flags = dev_flags(metrics, PASSWORD);
        flags.push("--data-dir".into());
        let args: Vec<&std::ffi::OsStr> = flags
            .iter()
            .map(std::ffi::OsStr::new)
            .chain(std::iter::once(data_dir.as_os_str()))
            .collect();
        let proc = Proc::spawn_logged(&args, env, &["imap", "imaps", "lmtp", "grpc", "admin", "cert", "certs"], log)?;
        Ok(Dev {
            imap: proc.get("imap")?,
            imaps: proc.get("imaps")?,
            lmtp: proc.get("lmtp")?,
            grpc: proc.get("grpc")?,
            admin: proc.get("admin")?,
            cert: proc.get("cert")?,
            certs: proc.get("certs")?,
            proc,
            _dir: None,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// SIGKILL the process.
    pub fn kill(&mut self) -> Result<()> {
        self.proc.kill()
    }

    /// `mailraft admin` arguments that reach this node's admin listener with dev's operator
    /// certificate; append the action.
    pub fn admin_args(&self) -> Vec<String> {
        let endpoint = format!("https://{}", self.admin);
        let dir = self.certs.display().to_string();
        ["admin", "--endpoint", &endpoint, "--tls-dir", &dir].map(String::from).to_vec()
    }
}

/// A free loopback port (for listeners that cannot report a port-0 binding back, like the
/// Prometheus exporter). The port is released before use, so a clash is possible but rare.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `mailraft <args>` to completion with `stdin` piped in; returns stdout, failing on a
/// non-zero exit.
pub fn mailraft(args: &[&str], stdin: &str) -> Result<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailraft"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?.write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("mailraft {args:?} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

/// A minimal blocking IMAP client that understands literals in responses.
pub struct Client {
    stream: BufReader<TcpStream>,
    next_tag: u32,
    /// A line cut short by a read timeout, completed by the next read.
    partial: Vec<u8>,
}

/// One tagged exchange: untagged lines (literals inlined as bytes) and the tagged status line.
#[derive(Debug)]
pub struct Reply {
    /// Untagged / continuation data, each with its literals appended.
    pub untagged: Vec<Vec<u8>>,
    /// The tagged line without the tag.
    pub status: String,
}

impl Reply {
    /// True for a tagged OK.
    pub fn is_ok(&self) -> bool {
        self.status.starts_with("OK")
    }
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> Result<Client> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Client { stream: BufReader::new(s), next_tag: 1, partial: Vec::new() };
        let greeting = c.read_line()?;
        if !greeting.starts_with(b"* OK") {
            bail!("bad greeting {:?}", String::from_utf8_lossy(&greeting));
        }
        Ok(c)
    }

    fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut line = std::mem::take(&mut self.partial);
        if let Err(e) = self.stream.read_until(b'\n', &mut line) {
            // Keep what arrived so a retry after a timeout sees the whole line.
            self.partial = line;
            return Err(e.into());
        }
        if line.is_empty() {
            bail!("connection closed");
        }
        Ok(line)
    }

    /// Reads one response line plus any literals it announces.
    fn read_response(&mut self) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let line = self.read_line()?;
            all.extend_from_slice(&line);
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
            let Some(n) = literal_len(trimmed) else { return Ok(all) };
            let mut lit = vec![0u8; n];
            self.stream.read_exact(&mut lit)?;
            all.extend_from_slice(&lit);
        }
    }

    /// Sends `command` (without tag) and collects the reply.
    pub fn run(&mut self, command: &str) -> Result<Reply> {
        self.run_bytes(command.as_bytes())
    }

    /// Like [`Client::run`] for commands containing LITERAL+ data.
    pub fn run_bytes(&mut self, command: &[u8]) -> Result<Reply> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        let s = self.stream.get_mut();
        s.write_all(tag.as_bytes())?;
        s.write_all(b" ")?;
        s.write_all(command)?;
        s.write_all(b"\r\n")?;
        let mut untagged = Vec::new();
        loop {
            let resp = self.read_response()?;
            if let Some(rest) = resp.strip_prefix(format!("{tag} ").as_bytes()) {
                return Ok(Reply { untagged, status: String::from_utf8_lossy(rest).trim_end().to_string() });
            }
            untagged.push(resp);
        }
    }

    /// LOGIN, asserting OK.
    pub fn login(&mut self, user: &str, pass: &str) -> Result<()> {
        let r = self.run(&format!("LOGIN \"{user}\" \"{pass}\""))?;
        if !r.is_ok() {
            bail!("login failed: {}", r.status);
        }
        Ok(())
    }

    /// APPEND with LITERAL+; returns the APPENDUID uid.
    pub fn append(&mut self, mailbox: &str, flags: &str, body: &[u8]) -> Result<u32> {
        let mut cmd = format!("APPEND \"{mailbox}\" ({flags}) {{{}+}}\r\n", body.len()).into_bytes();
        cmd.extend_from_slice(body);
        let r = self.run_bytes(&cmd)?;
        if !r.is_ok() {
            bail!("append failed: {}", r.status);
        }
        let code = r.status.split("APPENDUID ").nth(1).ok_or_else(|| anyhow!("no APPENDUID in {}", r.status))?;
        let uid = code.split([' ', ']']).nth(1).ok_or_else(|| anyhow!("bad APPENDUID {}", r.status))?;
        Ok(uid.parse()?)
    }
}

/// `{123}` or `{123+}` at the end of a line.
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = std::str::from_utf8(&line[open + 1..]).ok()?.trim_end_matches('+');
    digits.parse().ok()
}

/// Runs an external client program, failing with its output when it fails.
pub fn run_client(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program} (installed by scripts/setup.sh)"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{program} {args:?} failed:\n{text}");
    }
    Ok(text)
}

/// Path of a file under `tests/clients/`.
pub fn client_script(name: &str) -> String {
    format!("{}/../../tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}
