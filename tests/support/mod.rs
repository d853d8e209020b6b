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

/// The demo account `mailraft dev` creates on first start.
pub const USER: &str = "demo@example.test";
/// Its password in these tests.
pub const PASSWORD: &str = "demo-e2e-secret";

/// A running `mailraft dev` process.
pub struct Dev {
    child: Child,
    /// Plain IMAP listener.
    pub imap: SocketAddr,
    /// Implicit-TLS IMAP listener.
    pub imaps: SocketAddr,
    /// The self-signed certificate dev mode generated (PEM).
    pub cert: PathBuf,
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
        let mut dev = Dev::start_in(&data)?;
        dev._dir = Some(dir);
        Ok(dev)
    }

    /// Starts dev mode on an existing data dir (restart after a crash).
    pub fn start_in(data_dir: &Path) -> Result<Dev> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailraft"))
            .args(["dev", "--data-dir"])
            .arg(data_dir)
            .args([
                "--imap-addr",
                "127.0.0.1:0",
                "--imaps-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--demo-password",
                PASSWORD,
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn mailraft dev")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        // Read the banner on a thread so the deadline holds even if the process prints nothing.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining so the child never blocks on a pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut imap, mut imaps, mut cert) = (None, None, None);
        while imap.is_none() || imaps.is_none() || cert.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    bail!("mailraft dev did not print its addresses within 60s");
                }
            };
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("imap"), Some(a)) => imap = Some(a.parse()?),
                (Some("imaps"), Some(a)) => imaps = Some(a.parse()?),
                (Some("cert"), Some(p)) => cert = Some(PathBuf::from(p)),
                _ => {}
            }
        }
        Ok(Dev {
            child,
            imap: imap.ok_or_else(|| anyhow!("no imap"))?,
            imaps: imaps.ok_or_else(|| anyhow!("no imaps"))?,
            cert: cert.ok_or_else(|| anyhow!("no cert"))?,
            _dir: None,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// SIGKILL: no shutdown path runs, exactly like a power cut of the process.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking IMAP client that understands literals in responses.
pub struct Client {
    stream: BufReader<TcpStream>,
    next_tag: u32,
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
        let mut c = Client { stream: BufReader::new(s), next_tag: 1 };
        let greeting = c.read_line()?;
        if !greeting.starts_with(b"* OK") {
            bail!("bad greeting {:?}", String::from_utf8_lossy(&greeting));
        }
        Ok(c)
    }

    fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        self.stream.read_until(b'\n', &mut line)?;
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
