//! Password guessing against a real `mailraft dev` (issue 7 item 5): failure budgets per client
//! address and per login, kept by the storage leader from the addresses the front-end reports,
//! refuse further attempts without any argon2 work; other addresses and the right password from
//! a fresh address still get in; an operator lists and lifts blocks with `mailraft admin`.
//!
//! Clients connect from different loopback addresses (127.0.0.0/8 all reach the front-end on
//! Linux), so one process plays many sources. "Without hashing" is read from the storage node's
//! `mailraft_password_hashes_total`, which counts every argon2 computation.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use support::observe::{metric_sum, scrape};
use support::{Dev, PASSWORD, USER, free_port, mailraft};

/// Budgets small enough for a test: attempts are spaced after 2 failures, a source is blocked
/// after 6, a login after 5.
const ENV: &[(&str, &str)] = &[
    ("MAILRAFT_LIMITS__AUTH_DELAY_AFTER_FAILURES", "2"),
    ("MAILRAFT_LIMITS__AUTH_DELAY_MS", "20"),
    ("MAILRAFT_LIMITS__AUTH_MAX_DELAY_MS", "2000"),
    ("MAILRAFT_LIMITS__AUTH_SOURCE_BLOCK_AFTER", "6"),
    ("MAILRAFT_LIMITS__AUTH_LOGIN_BLOCK_AFTER", "5"),
    ("MAILRAFT_LIMITS__AUTH_BLOCK_SECS", "3600"),
    ("MAILRAFT_TELEMETRY__LOG_FILTER", "warn"),
];

fn start() -> Result<(Dev, SocketAddr, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let dev = Dev::start_with(&dir.path().join("data"), &metrics.to_string(), ENV)?;
    Ok((dev, metrics, dir))
}

/// A TCP connection to `to` from the local address `from`.
fn connect_from(from: IpAddr, to: SocketAddr) -> Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        tokio::time::timeout(Duration::from_secs(10), socket.connect(to)).await?
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(stream)
}

/// LOGIN from `from` on a fresh connection; returns the tagged status (`OK …`, `NO […] …`).
fn login_from(dev: &Dev, from: &str, user: &str, password: &str) -> Result<String> {
    let mut stream = BufReader::new(connect_from(from.parse()?, dev.imap)?);
    let mut line = String::new();
    stream.read_line(&mut line)?;
    ensure!(line.starts_with("* OK"), "greeting {line:?}");
    stream.get_mut().write_all(format!("a LOGIN \"{user}\" \"{password}\"\r\n").as_bytes())?;
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            bail!("connection closed before the LOGIN reply");
        }
        if let Some(status) = line.strip_prefix("a ") {
            return Ok(status.trim_end().to_owned());
        }
    }
}

/// argon2 computations the node has run so far.
fn hashes(metrics: SocketAddr) -> Result<f64> {
    Ok(metric_sum(&scrape(metrics)?, "mailraft_password_hashes_total", "").unwrap_or(0.0))
}

/// `mailraft admin <action>` against dev's admin listener.
fn admin(dev: &Dev, action: &[&str]) -> Result<String> {
    let mut args = dev.admin_args();
    args.extend(action.iter().map(|a| a.to_string()));
    mailraft(&args.iter().map(String::as_str).collect::<Vec<_>>(), "")
}

fn is_failure(status: &str) -> bool {
    status.starts_with("NO [AUTHENTICATIONFAILED]")
}

fn is_refusal(status: &str) -> bool {
    status.starts_with("NO [UNAVAILABLE]")
}

#[test]
fn a_guessing_address_is_refused_without_hashing_and_others_still_log_in() -> Result<()> {
    let (dev, metrics, _dir) = start()?;
    let guesser = "127.0.0.2";
    // Six wrong guesses, each at another (unknown) login so only the address's budget fills.
    for i in 0..6 {
        let status = login_from(&dev, guesser, &format!("guess{i}@example.test"), "wrong")?;
        ensure!(is_failure(&status), "guess {i}: {status}");
    }
    // From now on the address is refused, even with the right password, and nothing is hashed.
    let before = hashes(metrics)?;
    for i in 0..5 {
        let status = login_from(&dev, guesser, &format!("more{i}@example.test"), "wrong")?;
        ensure!(is_refusal(&status), "blocked guess {i}: {status}");
    }
    let right = login_from(&dev, guesser, USER, PASSWORD)?;
    ensure!(is_refusal(&right), "right password from the blocked address: {right}");
    ensure!(hashes(metrics)? == before, "refused attempts were hashed ({before} before)");
    let refused = metric_sum(&scrape(metrics)?, "mailraft_auth_refused_total", "kind=\"source\"").unwrap_or(0.0);
    ensure!(refused >= 6.0, "mailraft_auth_refused_total{{kind=\"source\"}} = {refused}");

    // Another address gets in at once (and is hashed: the check is real).
    let other = login_from(&dev, "127.0.0.3", USER, PASSWORD)?;
    ensure!(other.starts_with("OK"), "another address: {other}");
    ensure!(hashes(metrics)? > before, "the allowed login was not checked");

    // The operator sees the block and lifts it.
    let blocks = admin(&dev, &["auth-blocks"])?;
    let line = blocks.lines().find(|l| l.contains(guesser)).unwrap_or_default();
    ensure!(line.starts_with("source\t127.0.0.2\t6\t"), "auth-blocks: {blocks}");
    admin(&dev, &["auth-unblock", guesser])?;
    ensure!(!admin(&dev, &["auth-blocks"])?.contains(guesser), "still listed after auth-unblock");
    let after = login_from(&dev, guesser, USER, PASSWORD)?;
    ensure!(after.starts_with("OK"), "after auth-unblock: {after}");
    // Lifting what is not blocked says so.
    ensure!(admin(&dev, &["auth-unblock", "127.0.0.99"]).is_err(), "unblocking an unknown key succeeded");
    Ok(())
}

#[test]
fn a_login_guessed_from_many_addresses_is_blocked_for_all_of_them() -> Result<()> {
    let (dev, metrics, _dir) = start()?;
    // One wrong guess each from five addresses: no address is near its budget, the login is.
    for i in 0..5 {
        let status = login_from(&dev, &format!("127.0.1.{}", i + 1), USER, "wrong")?;
        ensure!(is_failure(&status), "guess from address {i}: {status}");
    }
    let before = hashes(metrics)?;
    let fresh = login_from(&dev, "127.0.2.1", USER, PASSWORD)?;
    ensure!(is_refusal(&fresh), "right password from a fresh address on a blocked login: {fresh}");
    ensure!(hashes(metrics)? == before, "the refused attempt was hashed");
    // Other logins are not affected.
    let mut args = dev.admin_args();
    args.extend(["create-user".to_owned(), "other@example.test".to_owned()]);
    mailraft(&args.iter().map(String::as_str).collect::<Vec<_>>(), "other-Secret-5521\n")?;
    let other = login_from(&dev, "127.0.2.1", "other@example.test", "other-Secret-5521")?;
    ensure!(other.starts_with("OK"), "another login from the same address: {other}");
    let blocks = admin(&dev, &["auth-blocks", "--json"])?;
    ensure!(blocks.contains("\"kind\":\"login\"") && blocks.contains(USER), "auth-blocks: {blocks}");
    admin(&dev, &["auth-unblock", USER])?;
    let after = login_from(&dev, "127.0.2.1", USER, PASSWORD)?;
    ensure!(after.starts_with("OK"), "after auth-unblock: {after}");
    Ok(())
}
