//! Slow and stalled readers cannot starve the write path (issue 7 item 4), against a real
//! `mailraft dev`.
//!
//! 500 logged-in sessions each send `FETCH 1:* BODY.PEEK[]` over a 15 MiB mailbox and never read
//! a byte of the answer (their receive buffers are made tiny, so they stall at once). Their
//! storage-side FETCH streams hold read message bytes until the account's share of the node's
//! FETCH byte budget is full (the streams beyond that wait for bytes, holding nothing but a
//! snapshot), which the test confirms from the node's `mailraft_fetch_buffered_bytes` before and
//! after the writes: the stall is real for the whole measurement. Meanwhile another session's
//! APPENDs must all complete with `OK`, and a session of another account must still be able to
//! SELECT and FETCH.
//!
//! The write and stream deadlines are raised far beyond the test's length, so nothing here relies
//! on them cutting the stalled sessions off: what keeps APPEND going is that stalled streams hold
//! no thread, no read slot and no shared flow-control window (the front-end's HTTP/2 connection
//! to the storage node is shared by every session; its connection window is what a few hundred
//! stalled streams used to exhaust, blocking every other call's reply on that connection).
//!
//! Latencies are printed, not asserted (the machines are shared and noisy): each APPEND gets a
//! generous bound that only a stall, not a slow machine, would pass.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use support::observe::{metric_sum, scrape, wait_for};
use support::{Client, Dev, PASSWORD, USER, free_port};

/// Stalled sessions.
const STALLED: usize = 500;
/// Messages in the mailbox they fetch, and the size of each.
const MESSAGES: usize = 60;
const MESSAGE_BYTES: usize = 256 * 1024;
/// APPENDs measured while the sessions are stalled.
const APPENDS: usize = 30;
/// Bound per APPEND: far above any healthy latency on a loaded CI machine; a stalled write path
/// waits for the front-end's request timeout (and then answers `NO [UNAVAILABLE]`) instead.
const APPEND_BOUND: Duration = Duration::from_secs(10);
/// Threads that log the stalled sessions in (each LOGIN is an argon2 hash on the node).
const LOGIN_THREADS: usize = 4;

const ENV: &[(&str, &str)] = &[
    ("MAILRAFT_IMAP__WRITE_TIMEOUT_SECS", "900"),
    ("MAILRAFT_LIMITS__READ_STREAM_DEADLINE_SECS", "900"),
    ("MAILRAFT_TELEMETRY__LOG_FILTER", "warn"),
];

/// The account of the fresh reader (the stalled sessions are all [`USER`]'s).
const READER: &str = "reader@example.test";

/// A message of about `MESSAGE_BYTES`, in 76-column lines.
fn big_message(n: usize) -> Vec<u8> {
    let mut m = format!("From: filler@slow.test\r\nTo: demo@example.test\r\nSubject: filler {n}\r\n\r\n").into_bytes();
    let line = format!("{:075}\r\n", n);
    while m.len() < MESSAGE_BYTES {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// Logs in, selects INBOX and sends a FETCH of every body without reading any of the answer.
/// The socket's receive buffer is set tiny before connecting, so the window the client
/// advertises (and the kernel memory the stall costs) stays small.
fn stalled_session(imap: SocketAddr) -> Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        tokio::time::timeout(Duration::from_secs(30), socket.connect(imap)).await?
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    ensure!(line.starts_with("* OK"), "greeting {line:?}");
    for (tag, command) in [("l", format!("LOGIN \"{USER}\" \"{PASSWORD}\"")), ("s", "SELECT INBOX".to_owned())] {
        reader.get_mut().write_all(format!("{tag} {command}\r\n").as_bytes())?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("closed during {command}");
            }
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                ensure!(status.starts_with("OK"), "{command}: {status}");
                break;
            }
        }
    }
    let mut stream = reader.into_inner();
    stream.write_all(b"f FETCH 1:* BODY.PEEK[]\r\n")?;
    Ok(stream)
}

/// Bytes the storage node's FETCH streams hold now (read, not yet taken by the transport).
fn buffered_bytes(metrics: SocketAddr) -> Result<f64> {
    Ok(metric_sum(&scrape(metrics)?, "mailraft_fetch_buffered_bytes", "").unwrap_or(0.0))
}

/// What the stalled streams of one account hold once its share of the FETCH byte budget is
/// full: three quarters of the share (a quarter of the default 256 MiB budget), leaving room
/// for the chunk that does not fit.
const STALLED_SHARE_BYTES: f64 = 0.75 * (64 * 1024 * 1024) as f64;

#[test]
fn stalled_fetch_readers_do_not_block_appends() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let dev = Dev::start_with(&dir.path().join("data"), &metrics.to_string(), ENV)?;

    let mut writer = Client::connect(dev.imap)?;
    writer.login(USER, PASSWORD)?;
    for n in 0..MESSAGES {
        writer.append("INBOX", "", &big_message(n))?;
    }
    // The fresh reader at the end is another account: all stalled sessions are USER's, and one
    // account's FETCH streams may hold only its share of the node's FETCH byte budget, so USER's
    // own next FETCH rightly waits behind them (docs/SECURITY.md); another account's must not.
    let mut args = dev.admin_args();
    args.extend(["create-user".to_owned(), READER.to_owned()]);
    support::mailraft(&args.iter().map(String::as_str).collect::<Vec<_>>(), &format!("{PASSWORD}\n"))?;
    let mut other = Client::connect(dev.imap)?;
    other.login(READER, PASSWORD)?;
    ensure!(other.run("CREATE Other")?.is_ok());
    other.append("Other", "", &big_message(0))?;
    drop(other);

    let started = Instant::now();
    let per_thread = STALLED.div_ceil(LOGIN_THREADS);
    let handles: Vec<_> = (0..LOGIN_THREADS)
        .map(|t| {
            let imap = dev.imap;
            let count = per_thread.min(STALLED - t * per_thread);
            std::thread::spawn(move || (0..count).map(|_| stalled_session(imap)).collect::<Result<Vec<_>>>())
        })
        .collect();
    let mut stalled = Vec::with_capacity(STALLED);
    for handle in handles {
        stalled.extend(handle.join().map_err(|_| anyhow::anyhow!("login thread panicked"))??);
    }
    eprintln!("{} stalled sessions logged in and fetching after {:?}", stalled.len(), started.elapsed());

    // The stalled FETCHes hold their account's share of read bytes: the stall is real before we measure.
    wait_for("the stalled FETCHes to fill their account's byte share", Duration::from_secs(120), || {
        let held = buffered_bytes(metrics)?;
        Ok((held >= STALLED_SHARE_BYTES).then_some(()))
    })?;

    let mut latencies = Vec::with_capacity(APPENDS);
    for n in 0..APPENDS {
        let body = support::imap::message(&format!("during-stall-{n}"));
        let t = Instant::now();
        writer.append("INBOX", "\\Seen", &body).with_context(|| format!("APPEND {n} during the stall"))?;
        let took = t.elapsed();
        ensure!(took < APPEND_BOUND, "APPEND {n} took {took:?} while {STALLED} readers were stalled");
        latencies.push(took);
    }

    // Reads are not starved either: a fresh session of another account selects and fetches.
    let mut reader = Client::connect(dev.imap)?;
    reader.login(READER, PASSWORD)?;
    ensure!(reader.run("SELECT Other")?.is_ok());
    let fetched = reader.run("FETCH 1 BODY.PEEK[]")?;
    ensure!(fetched.is_ok(), "FETCH during the stall: {}", fetched.status);
    ensure!(fetched.untagged.iter().map(Vec::len).sum::<usize>() >= MESSAGE_BYTES, "FETCH returned too little");

    // ...and the stalled sessions were stalled for the whole measurement.
    let held = buffered_bytes(metrics)?;
    ensure!(held >= STALLED_SHARE_BYTES, "the stalled FETCH streams hold only {held} bytes after the APPENDs");

    latencies.sort();
    eprintln!(
        "APPEND during the stall: p50 {:?}, max {:?} over {APPENDS}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    drop(stalled);
    Ok(())
}
