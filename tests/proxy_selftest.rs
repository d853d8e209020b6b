//! The fault-injecting proxy of `tests/support/proxy.rs` against a tiny echo server: each mode
//! does what the cluster tests rely on. Negative checks ("nothing arrives") read with a short
//! timeout; everything else polls with a deadline.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use support::observe::wait_for;
use support::proxy::{Counters, Dir, Mode, Proxy};

/// How long a "nothing arrives" check listens.
const QUIET: Duration = Duration::from_millis(300);
/// Deadline of anything that must happen.
const DEADLINE: Duration = Duration::from_secs(10);

/// An echo server on a thread per connection; lives as long as the test process.
fn echo_server() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn connect(proxy: &Proxy) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&proxy.addr(), DEADLINE)?;
    // Fails only when the proxy already reset the connection, which the next read reports.
    let _ = s.set_read_timeout(Some(DEADLINE));
    Ok(s)
}

/// True if a new connection to `proxy` is closed at once (the reset may even beat the end of
/// the handshake, and then connecting itself fails).
fn refused(proxy: &Proxy) -> Result<bool> {
    match TcpStream::connect_timeout(&proxy.addr(), DEADLINE) {
        Err(e) => Ok(matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
        )),
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(DEADLINE));
            closed(&mut s)
        }
    }
}

/// Reads exactly `n` bytes within the stream's read timeout.
fn read_n(s: &mut TcpStream, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// True if nothing (not even EOF) arrives within [`QUIET`].
fn silent(s: &mut TcpStream) -> Result<bool> {
    s.set_read_timeout(Some(QUIET))?;
    let mut buf = [0u8; 64];
    let quiet = match s.read(&mut buf) {
        Ok(_) => false,
        Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    s.set_read_timeout(Some(DEADLINE))?;
    Ok(quiet)
}

/// True once the connection is closed (EOF or reset), within [`DEADLINE`].
fn closed(s: &mut TcpStream) -> Result<bool> {
    let mut buf = [0u8; 64];
    Ok(match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    })
}

fn echo(s: &mut TcpStream, msg: &[u8]) -> Result<()> {
    s.write_all(msg)?;
    let got = read_n(s, msg.len())?;
    ensure!(got == msg, "echoed {:?}", String::from_utf8_lossy(&got));
    Ok(())
}

fn counters_until(proxy: &Proxy, what: &str, ok: impl Fn(&Counters) -> bool) -> Result<Counters> {
    wait_for(what, DEADLINE, || {
        let c = proxy.counters();
        Ok(ok(&c).then_some(c))
    })
}

#[test]
fn pass_forwards_both_ways_and_counts() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut s = connect(&proxy)?;
    echo(&mut s, b"hello")?;
    echo(&mut s, b"again")?;
    let c = counters_until(&proxy, "bytes counted", |c| c.up_bytes == 10 && c.down_bytes == 10)?;
    ensure!(c.accepted == 1 && c.active == 1 && c.refused == 0, "{c:?}");
    drop(s);
    counters_until(&proxy, "connection ends when the client closes", |c| c.active == 0)?;
    Ok(())
}

#[test]
fn target_can_be_set_after_bind() -> Result<()> {
    let proxy = Proxy::start()?;
    ensure!(refused(&proxy)?, "without a target a connection is closed");
    proxy.set_target(echo_server()?);
    let mut s = connect(&proxy)?;
    echo(&mut s, b"late target")?;
    // A new target applies to new connections; the open one keeps its server.
    proxy.set_target(echo_server()?);
    echo(&mut s, b"same server")?;
    echo(&mut connect(&proxy)?, b"new server")?;
    ensure!(proxy.counters().refused == 1, "{:?}", proxy.counters());
    Ok(())
}

#[test]
fn unreachable_target_closes_the_client() -> Result<()> {
    // A port that was just free: nothing listens there.
    let dead = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let proxy = Proxy::to(dead)?;
    ensure!(refused(&proxy)?, "client closed when the target refuses");
    counters_until(&proxy, "counted as refused", |c| c.refused == 1)?;
    Ok(())
}

#[test]
fn cut_closes_open_connections_and_refuses_new_ones_until_pass() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut s = connect(&proxy)?;
    echo(&mut s, b"before")?;
    proxy.cut();
    ensure!(closed(&mut s)?, "open connection closed by cut");
    ensure!(refused(&proxy)?, "new connection closed while cut");
    proxy.pass();
    echo(&mut connect(&proxy)?, b"after pass")?;
    counters_until(&proxy, "the cut connection is gone", |c| c.active == 1)?;
    Ok(())
}

#[test]
fn reset_closes_open_connections_but_accepts_new_ones() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut s = connect(&proxy)?;
    echo(&mut s, b"x")?;
    proxy.reset();
    ensure!(closed(&mut s)?, "open connection reset");
    echo(&mut connect(&proxy)?, b"new one works")?;
    Ok(())
}

#[test]
fn blackhole_holds_open_and_new_connections_and_heal_delivers() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut open = connect(&proxy)?;
    echo(&mut open, b"warm")?;
    proxy.blackhole();
    open.write_all(b"held")?;
    ensure!(silent(&mut open)?, "nothing comes back through a blackhole");
    // A new connection is accepted and then silent too: a partition, not a refusal.
    let mut fresh = connect(&proxy)?;
    fresh.write_all(b"fresh")?;
    ensure!(silent(&mut fresh)?, "new connection silent");
    ensure!(
        proxy.counters().up_bytes == 4,
        "nothing reached the server: {:?}",
        proxy.counters()
    );
    proxy.pass();
    ensure!(read_n(&mut open, 4)? == b"held", "held bytes delivered after heal");
    ensure!(read_n(&mut fresh, 5)? == b"fresh", "new connection resumes");
    Ok(())
}

#[test]
fn hold_one_direction_lets_the_other_through() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut s = connect(&proxy)?;
    proxy.set_mode(Dir::Down, Mode::Hold);
    s.write_all(b"request")?;
    // The request reaches the server (it echoes), but the reply is held.
    counters_until(&proxy, "request delivered", |c| c.up_bytes == 7)?;
    ensure!(silent(&mut s)?, "reply held");
    proxy.set_mode(Dir::Down, Mode::Pass);
    ensure!(read_n(&mut s, 7)? == b"request", "reply delivered after release");
    Ok(())
}

#[test]
fn drop_loses_replies_for_good_on_that_connection() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut s = connect(&proxy)?;
    echo(&mut s, b"ok")?;
    proxy.set_mode(Dir::Down, Mode::Drop);
    s.write_all(b"lost reply")?;
    counters_until(&proxy, "reply thrown away", |c| {
        c.up_bytes == 12 && c.down_dropped == 10
    })?;
    proxy.pass();
    // The stream has a hole: the connection never delivers again, even after pass.
    s.write_all(b"more")?;
    counters_until(&proxy, "later reply also dropped", |c| c.down_dropped == 14)?;
    ensure!(silent(&mut s)?, "broken connection stays silent");
    echo(&mut connect(&proxy)?, b"new connection fine")?;
    Ok(())
}

#[test]
fn drop_after_budget_passes_a_prefix() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut s = connect(&proxy)?;
    proxy.set_mode(Dir::Down, Mode::DropAfter(4));
    s.write_all(b"0123456789")?;
    ensure!(read_n(&mut s, 4)? == b"0123", "first 4 bytes pass");
    counters_until(&proxy, "rest dropped", |c| c.down_dropped == 6)?;
    ensure!(silent(&mut s)?, "nothing after the budget");
    Ok(())
}

#[test]
fn drop_requests_never_reach_the_server() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut s = connect(&proxy)?;
    proxy.set_mode(Dir::Up, Mode::Drop);
    s.write_all(b"vanishes")?;
    counters_until(&proxy, "request dropped", |c| c.up_dropped == 8)?;
    ensure!(silent(&mut s)?, "no echo");
    ensure!(proxy.counters().up_bytes == 0, "{:?}", proxy.counters());
    Ok(())
}

#[test]
fn delay_adds_latency_each_way() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let mut s = connect(&proxy)?;
    echo(&mut s, b"warm")?;
    proxy.set_delay(Dir::Up, Duration::from_millis(150));
    proxy.set_delay(Dir::Down, Duration::from_millis(150));
    let start = Instant::now();
    echo(&mut s, b"slow")?;
    let rtt = start.elapsed();
    ensure!(
        rtt >= Duration::from_millis(300),
        "round trip {rtt:?} includes both delays"
    );
    proxy.pass();
    let start = Instant::now();
    echo(&mut s, b"fast")?;
    ensure!(
        start.elapsed() < Duration::from_millis(300),
        "delay removed: {:?}",
        start.elapsed()
    );
    Ok(())
}

#[test]
fn dropping_the_proxy_ends_its_listener_and_connections() -> Result<()> {
    let proxy = Proxy::to(echo_server()?)?;
    let addr = proxy.addr();
    let mut open = connect(&proxy)?;
    echo(&mut open, b"x")?;
    let mut held = connect(&proxy)?;
    proxy.blackhole();
    held.write_all(b"y")?;
    drop(proxy);
    ensure!(closed(&mut open)?, "open connection closed when the proxy is dropped");
    ensure!(closed(&mut held)?, "held connection closed too");
    // The listener is gone: connecting is refused (poll: the accept task ends asynchronously).
    wait_for("listener closed", DEADLINE, || {
        match TcpStream::connect_timeout(&addr, DEADLINE) {
            Err(_) => Ok(Some(())),
            Ok(mut s) => {
                if closed(&mut s)? {
                    // Accepted by the kernel backlog before the listener closed; try again.
                    Ok(None)
                } else {
                    bail!("a connection to a dropped proxy stayed open")
                }
            }
        }
    })?;
    Ok(())
}

/// The parsers the fault tests' checks rely on (kept here so they run once, not in every binary).
#[test]
fn imap_reply_parsers() {
    use support::Reply;
    use support::imap::{Fetched, appenduid, copyuid, exists, parse_fetch};
    let ok = Reply {
        untagged: vec![],
        status: "OK [APPENDUID 7 42] APPEND completed".into(),
    };
    assert_eq!(appenduid(&ok), Some((7, 42)));
    let copy = Reply {
        untagged: vec![],
        status: "OK [COPYUID 9 3 17] done".into(),
    };
    assert_eq!(copyuid(&copy), Some((9, 17)));
    assert_eq!(exists(b"* 12 EXISTS\r\n"), Some(12));
    assert_eq!(exists(b"* 12 RECENT\r\n"), None);
    let want = Some(Fetched {
        uid: 5,
        flags: vec!["\\Seen".into(), "\\Flagged".into()],
        id: Some("c1-3".into()),
    });
    let header_first =
        b"* 3 FETCH (BODY[HEADER.FIELDS (X-FAULT-ID)] {20}\r\nX-Fault-Id: c1-3\r\n\r\n UID 5 FLAGS (\\Seen \\Flagged))\r\n";
    assert_eq!(parse_fetch(header_first), want);
    let uid_first =
        b"* 3 FETCH (UID 5 FLAGS (\\Seen \\Flagged) BODY[HEADER.FIELDS (X-FAULT-ID)] {20}\r\nX-Fault-Id: c1-3\r\n\r\n)\r\n";
    assert_eq!(parse_fetch(uid_first), want);
    let no_header = b"* 1 FETCH (UID 9 FLAGS () BODY[HEADER.FIELDS (X-FAULT-ID)] {2}\r\n\r\n)\r\n";
    assert_eq!(
        parse_fetch(no_header),
        Some(Fetched {
            uid: 9,
            flags: vec![],
            id: None
        })
    );
}
