//! `mailraft dev --nodes 3` as a newcomer uses it: three storage child processes and an IMAP
//! front-end. Killing the leader's pid with SIGKILL leaves a logged-in IMAP client connected and
//! working, an IDLE client on the same front-end sees every new message before and after the
//! failover, and the supervisor restarts the killed node, which catches up.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use support::{Client, PASSWORD, Proc, USER, free_port};

const DEADLINE: Duration = Duration::from_secs(60);

/// `cluster-info --json` of the node whose admin listener is `admin`, with dev's operator
/// certificate from `certs`.
fn cluster_info(admin: &str, certs: &std::path::Path) -> Result<serde_json::Value> {
    let endpoint = format!("https://{}", admin.trim_start_matches("https://"));
    let certs = certs.display().to_string();
    let args = ["admin", "--endpoint", &endpoint, "--tls-dir", &certs, "cluster-info", "--json"];
    let out = support::mailraft(&args, "")?;
    Ok(serde_json::from_str(out.trim())?)
}

/// Polls `f` until it returns `Some` or the deadline passes.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// An IMAP connection sitting in IDLE on INBOX, reading EXISTS counts.
struct Idler {
    reader: BufReader<TcpStream>,
}

impl Idler {
    fn start(addr: SocketAddr) -> Result<Idler> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut idler = Idler { reader: BufReader::new(s) };
        idler.expect("* OK")?;
        idler.send(&format!("a LOGIN \"{USER}\" \"{PASSWORD}\""))?;
        idler.expect("a OK")?;
        idler.send("b SELECT INBOX")?;
        idler.expect("b OK")?;
        idler.send("c IDLE")?;
        idler.expect("+")?;
        Ok(idler)
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let s = self.reader.get_mut();
        s.write_all(line.as_bytes())?;
        s.write_all(b"\r\n")?;
        Ok(())
    }

    fn line(&mut self) -> Result<Option<String>> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => bail!("IDLE connection closed"),
            Ok(_) => Ok(Some(line)),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn expect(&mut self, prefix: &str) -> Result<()> {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Some(line) = self.line()?
                && line.starts_with(prefix)
            {
                return Ok(());
            }
        }
        bail!("no line starting with {prefix:?}")
    }

    /// Waits until the server announced at least `n` messages.
    fn wait_exists(&mut self, n: u32) -> Result<()> {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Some(line) = self.line()?
                && let Some(count) = line.strip_prefix("* ").and_then(|r| r.strip_suffix(" EXISTS\r\n"))
                && count.parse::<u32>().context("EXISTS count")? >= n
            {
                return Ok(());
            }
        }
        bail!("IDLE did not report {n} messages within {DEADLINE:?}")
    }
}

fn message(n: u32) -> Vec<u8> {
    format!("From: a@example.test\r\nSubject: dev cluster {n}\r\nMessage-ID: <dev-{n}@example.test>\r\n\r\nbody {n}\r\n")
        .into_bytes()
}

#[test]
fn dev_three_nodes_survive_leader_kill() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let args: Vec<std::ffi::OsString> = [
        "dev", "--nodes", "3", "--imap-addr", "127.0.0.1:0", "--imaps-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
        "--admin-addr", "127.0.0.1:0", "--lmtp-addr", "127.0.0.1:0",
        "--metrics-addr", &metrics, "--demo-password", PASSWORD, "--data-dir",
    ]
    .iter()
    .map(std::ffi::OsString::from)
    .chain(std::iter::once(data.clone().into_os_string()))
    .collect();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    // Fast elections so the test spends its time on checks, not on timeouts.
    let env = [
        ("MAILRAFT_RAFT__HEARTBEAT_MS", "100"),
        ("MAILRAFT_RAFT__ELECTION_MIN_MS", "500"),
        ("MAILRAFT_RAFT__ELECTION_MAX_MS", "1000"),
    ];
    let log = dir.path().join("dev.log");
    let dev = Proc::spawn_logged(&args, &env, &["imap", "node1", "node2", "node3", "grpc", "certs"], Some(&log))?;
    let imap: SocketAddr = dev.get("imap")?;
    let certs: std::path::PathBuf = dev.get("certs")?;
    let pids: Vec<(u64, u32, String)> = dev
        .lines
        .iter()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let id = words.first()?.strip_prefix("node")?.parse().ok()?;
            let pid_at = words.iter().position(|w| *w == "pid")?;
            let admin_at = words.iter().position(|w| *w == "admin")?;
            Some((id, words.get(pid_at + 1)?.parse().ok()?, words.get(admin_at + 1)?.to_string()))
        })
        .collect();
    assert_eq!(pids.len(), 3, "three node lines in {:?}", dev.lines);

    // All three are voters of one group.
    let admin1 = pids[0].2.clone();
    let info = wait_for("three voters", || {
        let info = cluster_info(&admin1, &certs).ok()?;
        let voters = info["members"].as_array()?.iter().filter(|m| m["role"] == "voter").count();
        (voters == 3 && info["leader_id"].as_u64()? != 0).then_some(info)
    })?;
    let leader = info["leader_id"].as_u64().ok_or_else(|| anyhow!("no leader"))?;

    let mut idler = Idler::start(imap)?;
    let mut client = Client::connect(imap)?;
    client.login(USER, PASSWORD)?;
    let mut acked = Vec::new();
    for n in 1..=3 {
        acked.push(client.append("INBOX", "", &message(n))?);
    }
    idler.wait_exists(3)?;

    let (_, leader_pid, _) = pids.iter().find(|(id, _, _)| *id == leader).ok_or_else(|| anyhow!("leader pid"))?;
    let killed_at = Instant::now();
    let status = Command::new("kill").args(["-9", &leader_pid.to_string()]).status()?;
    assert!(status.success());

    // The same IMAP connection keeps working: the front-end routes to the new leader.
    let mut n = 4;
    let first_after = loop {
        match client.append("INBOX", "", &message(n)) {
            Ok(uid) => break uid,
            // A command may fail while no leader exists; the connection must stay usable.
            Err(e) if killed_at.elapsed() < DEADLINE => {
                eprintln!("append during failover: {e}");
                client.run("NOOP")?;
            }
            Err(e) => return Err(e),
        }
    };
    acked.push(first_after);
    eprintln!("writes succeed again {:?} after the leader was killed", killed_at.elapsed());
    for k in 5..=6 {
        n = k;
        acked.push(client.append("INBOX", "", &message(n))?);
    }
    idler.wait_exists(acked.len() as u32)?;

    // UIDs strictly increase across the failover and every acknowledged message is there once.
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "uids {acked:?}");
    assert!(client.run("SELECT INBOX")?.is_ok());
    let r = client.run("UID SEARCH ALL")?;
    assert!(r.is_ok(), "{}", r.status);
    let found: Vec<u32> = r
        .untagged
        .iter()
        .flat_map(|l| String::from_utf8_lossy(l).split_whitespace().filter_map(|w| w.parse().ok()).collect::<Vec<u32>>())
        .collect();
    assert_eq!(found, acked, "acknowledged {} messages, found {}", acked.len(), found.len());
    println!("acknowledged {}, checked {}, lost 0, duplicated 0", acked.len(), found.len());

    // The supervisor restarted the killed node and it caught up.
    let survivor = pids.iter().find(|(id, _, _)| *id != leader).map(|p| p.2.clone()).ok_or_else(|| anyhow!("survivor"))?;
    wait_for("the killed node to be back and caught up", || {
        let info = cluster_info(&survivor, &certs).ok()?;
        let leader_admin = info["leader_admin_addr"].as_str()?.to_string();
        let leader_info = cluster_info(&leader_admin, &certs).ok()?;
        let members = leader_info["members"].as_array()?;
        let back = members.iter().any(|m| m["node_id"].as_u64() == Some(leader) && m["has_matched"] == true && m["lag"] == 0);
        back.then_some(())
    })?;
    drop(dev);
    Ok(())
}
