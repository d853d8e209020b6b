//! The operator-facing pieces of issue 10 against the real binary: `mailraft admin` reading
//! passwords from files (`--password-file`), re-runnable `--if-not-exists` jobs, `admin health`,
//! and the storage node's HTTP readiness (`GET /ready`: caught up with the leader) beside
//! liveness (`GET /health`), on a `mailraft dev` node and on a three-node cluster.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use support::cluster::{Cluster, Options};
use support::observe::{Ran, parse_json, run_mailraft_status, wait_for};
use support::{Client, Dev, free_port};

/// Longest one admin command may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `mailraft <args>` with `stdin`, killed after [`TIMEOUT`]; any exit status is returned.
fn run(args: &[String], stdin: &str) -> Result<Ran> {
    run_mailraft_status(args, stdin, TIMEOUT)
}

/// `mailraft admin … <action>` against `dev`.
fn admin(dev: &Dev, action: &[&str], stdin: &str) -> Result<Ran> {
    let mut args = dev.admin_args();
    args.extend(action.iter().map(|a| a.to_string()));
    run(&args, stdin)
}

/// [`admin`] that must succeed; returns stdout.
fn admin_ok(dev: &Dev, action: &[&str], stdin: &str) -> Result<String> {
    let r = admin(dev, action, stdin)?;
    ensure!(r.success, "admin {action:?} failed: {}{}", r.stdout, r.stderr);
    Ok(r.stdout)
}

/// Writes `text` to `dir/name` with `mode`; returns the path as a string.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(path.display().to_string())
}

/// Whether `user` can log in with `password` on `dev`'s IMAP listener.
fn can_login(dev: &Dev, user: &str, password: &str) -> Result<bool> {
    let mut c = Client::connect(dev.imap)?;
    Ok(c.login(user, password).is_ok())
}

/// `GET path` on an HTTP listener: status code and body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {out:?}"))?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

#[test]
fn password_file_creates_and_changes_passwords() -> Result<()> {
    let dev = Dev::start()?;
    let dir = tempfile::tempdir()?;
    admin_ok(&dev, &["create-tenant", "pwfile.test"], "")?;

    // A private file with the usual trailing newline: the newline is not part of the password.
    let first = secret_file(dir.path(), "first", "first-Secret-1\n", 0o600)?;
    let r = admin(&dev, &["create-user", "alice@pwfile.test", "--password-file", &first], "")?;
    ensure!(r.success, "create-user failed: {}{}", r.stdout, r.stderr);
    ensure!(!r.stderr.contains("readable by every user"), "warned about a 0600 file: {}", r.stderr);
    ensure!(can_login(&dev, "alice@pwfile.test", "first-Secret-1")?, "password from the file does not log in");

    // set-password from a world-readable file with CRLF: works, with a warning.
    let second = secret_file(dir.path(), "second", "second-Secret-2\r\n", 0o644)?;
    let r = admin(&dev, &["set-password", "alice@pwfile.test", "--password-file", &second], "")?;
    ensure!(r.success, "set-password failed: {}{}", r.stdout, r.stderr);
    ensure!(r.stderr.contains("readable by every user"), "no warning for a 0644 file: {}", r.stderr);
    ensure!(can_login(&dev, "alice@pwfile.test", "second-Secret-2")?, "new password does not log in");
    ensure!(!can_login(&dev, "alice@pwfile.test", "first-Secret-1")?, "old password still logs in");

    // Files that are not a password are refused before anything is sent.
    let two_lines = secret_file(dir.path(), "two", "one\ntwo\n", 0o600)?;
    let r = admin(&dev, &["set-password", "alice@pwfile.test", "--password-file", &two_lines], "")?;
    ensure!(!r.success && r.stderr.contains("more than one line"), "two-line file: {}{}", r.stdout, r.stderr);
    let missing = dir.path().join("missing").display().to_string();
    let r = admin(&dev, &["set-password", "alice@pwfile.test", "--password-file", &missing], "")?;
    ensure!(!r.success && r.stderr.contains("open password file"), "missing file: {}", r.stderr);
    ensure!(can_login(&dev, "alice@pwfile.test", "second-Secret-2")?, "a refused file changed the password");
    Ok(())
}

#[test]
fn if_not_exists_makes_creation_re_runnable() -> Result<()> {
    let dev = Dev::start()?;
    let out = admin_ok(&dev, &["create-tenant", "rerun.test", "--if-not-exists"], "")?;
    ensure!(out.contains("created"), "{out}");
    // Without the flag a second creation is still an error, pointing at the flag.
    let r = admin(&dev, &["create-tenant", "rerun.test"], "")?;
    ensure!(!r.success && r.stderr.contains("--if-not-exists"), "{}{}", r.stdout, r.stderr);
    // With it, exit 0 and say so; as often as the job runs.
    for _ in 0..2 {
        let out = admin_ok(&dev, &["create-tenant", "rerun.test", "--if-not-exists"], "")?;
        ensure!(out.contains("already exists"), "{out}");
    }

    let out = admin_ok(&dev, &["create-user", "bob@rerun.test", "--if-not-exists"], "bob-Secret-1\n")?;
    ensure!(out.contains("created"), "{out}");
    // A re-run (say with a password rotated since in the job's Secret) leaves the user as it is.
    let out = admin_ok(&dev, &["create-user", "bob@rerun.test", "--if-not-exists"], "other-Secret-2\n")?;
    ensure!(out.contains("already exists"), "{out}");
    ensure!(can_login(&dev, "bob@rerun.test", "bob-Secret-1")?, "the re-run changed the password");
    let r = admin(&dev, &["create-user", "bob@rerun.test"], "bob-Secret-1\n")?;
    ensure!(!r.success, "a duplicate user without --if-not-exists succeeded: {}", r.stdout);
    // Other errors are not swallowed: no tenant, no user.
    let r = admin(&dev, &["create-user", "carol@nowhere.test", "--if-not-exists"], "pw-Secret-3\n")?;
    ensure!(!r.success, "create-user in a missing tenant succeeded: {}", r.stdout);
    Ok(())
}

#[test]
fn health_and_readiness_of_a_dev_node() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let dev = Dev::start_with(&dir.path().join("data"), &metrics.to_string(), &[])?;

    let (status, body) = wait_for("the dev node to be ready", Duration::from_secs(30), || {
        let (status, body) = http_get(metrics, "/ready")?;
        Ok((status == 200).then_some((status, body)))
    })?;
    let ready: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("/ready body {body:?}"))?;
    ensure!(status == 200 && ready["ready"] == true && ready["state"] == "leader", "{body}");
    ensure!(ready["leader"] == 1 && ready["leader_commit"].as_u64().is_some(), "{body}");
    ensure!(http_get(metrics, "/health")? == (200, "OK".to_owned()), "liveness is not plain OK");
    let (status, text) = http_get(metrics, "/metrics")?;
    ensure!(status == 200 && text.contains("mailraft_raft_"), "metrics are still served: {status}");

    let out = admin_ok(&dev, &["health"], "")?;
    ensure!(out.contains("leader    1 "), "{out}");
    let health: serde_json::Value = parse_json(&admin_ok(&dev, &["health", "--json", "--max-lag", "10"], "")?, "health")?;
    ensure!(health["healthy"] == true && health["leader_id"] == 1, "{health}");
    let members = health["members"].as_array().ok_or_else(|| anyhow!("no members in {health}"))?;
    ensure!(members.len() == 1 && members[0]["state"] == "leader", "{health}");
    ensure!(members[0]["applied"].as_u64().is_some_and(|a| a > 0), "{health}");
    Ok(())
}

/// Node `id`'s `/ready` status.
fn ready_status(cluster: &Cluster, id: u64) -> Result<u16> {
    let addr = cluster.metrics_addr(id).ok_or_else(|| anyhow!("node {id} has no metrics listener"))?;
    Ok(http_get(addr, "/ready")?.0)
}

/// Waits until node `id`'s `/ready` answers `want`.
fn wait_ready(cluster: &Cluster, id: u64, want: u16, timeout: Duration) -> Result<()> {
    wait_for(&format!("node {id} /ready to answer {want}"), timeout, || {
        Ok((ready_status(cluster, id)? == want).then_some(()))
    })
}

#[test]
fn cluster_readiness_follows_the_leader_and_health_fails_without_one() -> Result<()> {
    let mut cluster = Cluster::start_with(Options::new(3).with_metrics())?;
    for id in 1..=3 {
        wait_ready(&cluster, id, 200, Duration::from_secs(30))?;
    }
    let out = cluster.admin(&["health", "--json", "--max-lag", "1000"], "")?;
    let health: serde_json::Value = parse_json(&out, "health")?;
    let members = health["members"].as_array().ok_or_else(|| anyhow!("no members in {health}"))?;
    ensure!(health["healthy"] == true && members.len() == 3, "{health}");
    ensure!(members.iter().all(|m| m["answered"] == true && m["applied"].as_u64().is_some()), "{health}");

    // A follower cut off from the leader stops being ready; the leader, with the other
    // follower as its quorum, stays ready.
    let leader = cluster.leader()?;
    let follower = (1..=3).find(|id| *id != leader).ok_or_else(|| anyhow!("no follower"))?;
    cluster.isolate(follower)?;
    wait_ready(&cluster, follower, 503, Duration::from_secs(30))?;
    let now_leader = cluster.leader()?;
    wait_ready(&cluster, now_leader, 200, Duration::from_secs(30))?;
    cluster.rejoin();
    wait_ready(&cluster, follower, 200, Duration::from_secs(60))?;

    // One follower down: the leader still has its quorum, so health passes, but not with
    // --max-lag, which wants every member answering.
    let leader = cluster.leader()?;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    cluster.kill(followers[0])?;
    let out = cluster.admin_via(leader, &["health"], "", TIMEOUT)?;
    ensure!(out.contains(&format!("node {} does not answer", followers[0])), "{out}");
    let strict = cluster.admin_via(leader, &["health", "--max-lag", "1000"], "", TIMEOUT);
    ensure!(strict.is_err(), "--max-lag passed with a member down: {strict:?}");

    // Both followers down: the leader still believes it leads, but no majority follows it:
    // health fails and the leader is no longer ready.
    cluster.kill(followers[1])?;
    let failure = cluster.admin_via(leader, &["health"], "", TIMEOUT).err().map(|e| format!("{e:#}"));
    ensure!(
        failure.as_deref().is_some_and(|e| e.contains("no leader with a quorum")),
        "health did not fail for a leader no majority follows: {failure:?}"
    );
    wait_ready(&cluster, leader, 503, Duration::from_secs(30))?;

    // A node that comes back alone knows no leader at all: health fails, /ready says 503.
    cluster.kill(leader)?;
    let survivor = followers[1];
    cluster.restart(survivor)?;
    let failure = wait_for("`admin health` to fail for want of a leader", Duration::from_secs(60), || {
        let out = cluster.admin_via(survivor, &["health"], "", TIMEOUT);
        Ok(out.err().map(|e| format!("{e:#}")).filter(|e| e.contains("no leader:")))
    })?;
    ensure!(failure.contains(&format!("node {survivor}")), "{failure}");
    wait_ready(&cluster, survivor, 503, Duration::from_secs(30))?;
    cluster.passed();
    Ok(())
}
