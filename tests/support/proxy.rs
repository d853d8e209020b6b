//! A fault-injecting TCP proxy for the cluster tests, so partitions and lost replies are real and
//! repeatable on one machine.
//!
//! A [`Proxy`] listens on `127.0.0.1:0` and forwards every accepted connection to its target,
//! which may be set (or changed) after the proxy is bound: the tests create a node's proxies first,
//! pass their addresses on the node's command line, and learn the node's own port-0 address only
//! once it has started. Each connection is two pipes, "up" (client → target, the requests) and
//! "down" (target → client, the replies); each pipe is a reader and a writer joined by a small
//! bounded queue that doubles as a delay line. Controls, per direction where that makes sense:
//! - [`Mode::Pass`]: forward (after the configured delay);
//! - [`Mode::Hold`]: read nothing and forward nothing. Bytes wait in the kernel buffers and the
//!   sender's writes eventually stall, as when packets vanish in a partition; switching back to
//!   pass delivers what waited, as TCP retransmission would once the partition heals;
//! - [`Mode::Drop`] and [`Mode::DropAfter`]: read and throw away (after a byte budget), so a reply
//!   is lost for good. A pipe that lost bytes never forwards again (its byte stream has a hole);
//!   only a new connection works;
//! - [`Proxy::cut`] closes every open connection with a reset and refuses new ones;
//!   [`Proxy::reset`] closes open connections but keeps accepting.
//!
//! Everything runs on one shared tokio runtime. Every task watches the control channel, whose
//! sender the [`Proxy`] owns, so dropping the proxy ends its listener and all its connections.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Bytes read per chunk.
const CHUNK: usize = 16 * 1024;
/// Chunks queued per pipe between reader and writer: bounds memory per connection.
const QUEUE: usize = 16;

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → target: requests.
    Up,
    /// Target → client: replies.
    Down,
}

/// What a pipe does with the bytes it could read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward them.
    Pass,
    /// Leave them unread (a partition whose packets vanish; healing delivers them).
    Hold,
    /// Read and discard them; the pipe stays broken afterwards.
    Drop,
    /// Forward this many more bytes (counted over all connections from when it was set), then
    /// behave as [`Mode::Drop`].
    DropAfter(u64),
}

/// The state every task of one proxy watches.
#[derive(Debug, Clone)]
struct Control {
    target: Option<SocketAddr>,
    up: Mode,
    down: Mode,
    delay_up: Duration,
    delay_down: Duration,
    /// New connections are closed at once.
    refuse: bool,
    /// Bumped to close every connection opened before.
    epoch: u64,
}

impl Control {
    fn mode(&self, dir: Dir) -> Mode {
        match dir {
            Dir::Up => self.up,
            Dir::Down => self.down,
        }
    }

    fn delay(&self, dir: Dir) -> Duration {
        match dir {
            Dir::Up => self.delay_up,
            Dir::Down => self.delay_down,
        }
    }
}

/// Counters of one proxy, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted (including refused ones).
    pub accepted: u64,
    /// Connections closed at once (cut, no target, target unreachable).
    pub refused: u64,
    /// Connections currently forwarding (or holding).
    pub active: u64,
    /// Bytes delivered to the target.
    pub up_bytes: u64,
    /// Bytes delivered to the client.
    pub down_bytes: u64,
    /// Bytes from the client thrown away.
    pub up_dropped: u64,
    /// Bytes from the target thrown away.
    pub down_dropped: u64,
}

#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    refused: AtomicU64,
    active: AtomicU64,
    up_bytes: AtomicU64,
    down_bytes: AtomicU64,
    up_dropped: AtomicU64,
    down_dropped: AtomicU64,
    /// Remaining [`Mode::DropAfter`] budgets, per direction.
    up_budget: AtomicU64,
    down_budget: AtomicU64,
}

impl Stats {
    fn delivered(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.up_bytes,
            Dir::Down => &self.down_bytes,
        }
    }

    fn dropped(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.up_dropped,
            Dir::Down => &self.down_dropped,
        }
    }

    fn budget(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.up_budget,
            Dir::Down => &self.down_budget,
        }
    }

    /// Takes up to `n` bytes from `dir`'s budget; returns how many may pass.
    fn take_budget(&self, dir: Dir, n: u64) -> u64 {
        let before = self
            .budget(dir)
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| Some(b.saturating_sub(n)))
            .unwrap_or(0);
        before.min(n)
    }
}

/// The runtime all proxies of this test process share.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .expect("build the proxies' tokio runtime")
    })
}

/// A fault-injecting TCP proxy; see the module documentation.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    stats: Arc<Stats>,
}

impl Proxy {
    /// Binds `127.0.0.1:0` with no target yet (connections are closed until one is set).
    pub fn start() -> Result<Proxy> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind proxy")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let _guard = runtime().enter();
        let listener = TcpListener::from_std(std_listener)?;
        let (control, rx) = watch::channel(Control {
            target: None,
            up: Mode::Pass,
            down: Mode::Pass,
            delay_up: Duration::ZERO,
            delay_down: Duration::ZERO,
            refuse: false,
            epoch: 0,
        });
        let stats = Arc::new(Stats::default());
        runtime().spawn(accept_loop(listener, rx, stats.clone()));
        Ok(Proxy { addr, control, stats })
    }

    /// A proxy already forwarding to `target`.
    pub fn to(target: SocketAddr) -> Result<Proxy> {
        let proxy = Proxy::start()?;
        proxy.set_target(target);
        Ok(proxy)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, as gRPC clients want it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where new connections go; open ones keep their old target.
    pub fn set_target(&self, target: SocketAddr) {
        self.control.send_modify(|c| c.target = Some(target));
    }

    /// No target: new connections are closed at once (the node behind it is down).
    pub fn clear_target(&self) {
        self.control.send_modify(|c| c.target = None);
    }

    /// Back to normal: both directions pass without delay and new connections are accepted.
    /// Connections held by [`Mode::Hold`] resume; broken ones ([`Mode::Drop`]) stay broken.
    pub fn pass(&self) {
        self.control.send_modify(|c| {
            c.up = Mode::Pass;
            c.down = Mode::Pass;
            c.delay_up = Duration::ZERO;
            c.delay_down = Duration::ZERO;
            c.refuse = false;
        });
    }

    /// Sets what `dir` does, for open and new connections.
    pub fn set_mode(&self, dir: Dir, mode: Mode) {
        if let Mode::DropAfter(n) = mode {
            self.stats.budget(dir).store(n, Ordering::SeqCst);
        }
        self.control.send_modify(|c| match dir {
            Dir::Up => c.up = mode,
            Dir::Down => c.down = mode,
        });
    }

    /// Both directions [`Mode::Hold`]: open and new connections stay open and silent.
    pub fn blackhole(&self) {
        self.set_mode(Dir::Up, Mode::Hold);
        self.set_mode(Dir::Down, Mode::Hold);
    }

    /// Adds `delay` of latency to every byte going `dir` from now on.
    pub fn set_delay(&self, dir: Dir, delay: Duration) {
        self.control.send_modify(|c| match dir {
            Dir::Up => c.delay_up = delay,
            Dir::Down => c.delay_down = delay,
        });
    }

    /// Closes every open connection with a reset and refuses new ones until [`Proxy::pass`].
    pub fn cut(&self) {
        self.control.send_modify(|c| {
            c.refuse = true;
            c.epoch += 1;
        });
    }

    /// Closes every open connection with a reset; new connections are accepted as before.
    pub fn reset(&self) {
        self.control.send_modify(|c| c.epoch += 1);
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let s = &self.stats;
        Counters {
            accepted: s.accepted.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
            active: s.active.load(Ordering::SeqCst),
            up_bytes: s.up_bytes.load(Ordering::SeqCst),
            down_bytes: s.down_bytes.load(Ordering::SeqCst),
            up_dropped: s.up_dropped.load(Ordering::SeqCst),
            down_dropped: s.down_dropped.load(Ordering::SeqCst),
        }
    }
}

/// Closes `stream` with a reset rather than a FIN, as a crashed peer or a cut link would.
fn reset_close(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn accept_loop(listener: TcpListener, mut control: watch::Receiver<Control>, stats: Arc<Stats>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = control.changed() => {
                if changed.is_err() {
                    return; // the Proxy was dropped
                }
                continue;
            }
        };
        // Accept errors concern one connection (reset before accept) or are transient (out of file
        // descriptors): pause briefly so a persistent one cannot spin this loop.
        let Ok((client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let now = control.borrow().clone();
        match now.target {
            Some(target) if !now.refuse => {
                tokio::spawn(connection(client, target, now.epoch, control.clone(), stats.clone()));
            }
            _ => {
                stats.refused.fetch_add(1, Ordering::SeqCst);
                reset_close(client);
            }
        }
    }
}

/// Resolves when connections of `epoch` must close: the epoch moved on or the proxy is gone.
async fn killed(control: &mut watch::Receiver<Control>, epoch: u64) {
    loop {
        if control.borrow_and_update().epoch != epoch {
            return;
        }
        if control.changed().await.is_err() {
            return;
        }
    }
}

/// Decrements the active-connection gauge however the connection ends.
struct ActiveGuard(Arc<Stats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    epoch: u64,
    mut control: watch::Receiver<Control>,
    stats: Arc<Stats>,
) {
    let connected = tokio::select! {
        connected = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)) => connected,
        () = killed(&mut control, epoch) => {
            reset_close(client);
            return;
        }
    };
    let Ok(Ok(mut server)) = connected else {
        stats.refused.fetch_add(1, Ordering::SeqCst);
        reset_close(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    stats.active.fetch_add(1, Ordering::SeqCst);
    let _active = ActiveGuard(stats.clone());

    let clean = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let mut up = pin!(pipe(Dir::Up, client_read, server_write, control.clone(), stats.clone()));
        let mut down = pin!(pipe(
            Dir::Down,
            server_read,
            client_write,
            control.clone(),
            stats.clone()
        ));
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                result = &mut up, if !up_done => match result {
                    Ok(()) => up_done = true,
                    Err(()) => break false,
                },
                result = &mut down, if !down_done => match result {
                    Ok(()) => down_done = true,
                    Err(()) => break false,
                },
                () = killed(&mut control, epoch) => break false,
            }
            if up_done && down_done {
                break true;
            }
        }
    };
    if !clean {
        // One side failed, the link was cut or the proxy dropped: reset both sides so neither
        // waits for a FIN that will never come.
        reset_close(client);
        reset_close(server);
    }
}

/// Waits while `dir` is held; returns the control state that ended the hold. `Err` when the
/// proxy is dropped.
async fn unheld(control: &mut watch::Receiver<Control>, dir: Dir) -> Result<Control, ()> {
    loop {
        let now = control.borrow_and_update().clone();
        if now.mode(dir) != Mode::Hold {
            return Ok(now);
        }
        control.changed().await.map_err(|_| ())?;
    }
}

/// Copies `from` to `to` under the control's mode and delay for `dir`. `Ok` when `from` ended
/// cleanly and the end was passed on; `Err` on any failure or when the proxy is dropped.
async fn pipe<R, W>(
    dir: Dir,
    mut from: R,
    mut to: W,
    mut control: watch::Receiver<Control>,
    stats: Arc<Stats>,
) -> Result<(), ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let mut writer_control = control.clone();
    let reader_stats = stats.clone();
    let reader = async move {
        let stats = reader_stats;
        // Once bytes were thrown away the stream has a hole: nothing after it may be delivered.
        let mut broken = false;
        let mut buf = vec![0u8; CHUNK];
        loop {
            if !broken {
                unheld(&mut control, dir).await?;
            }
            let n = tokio::select! {
                // A mode change first: bytes must not be read after a hold began.
                biased;
                changed = control.changed() => {
                    changed.map_err(|_| ())?;
                    continue;
                }
                read = from.read(&mut buf) => match read {
                    Ok(0) => return Ok::<(), ()>(()),
                    Ok(n) => n,
                    Err(_) => return Err(()),
                },
            };
            // Bytes that arrived together with a hold wait for its end like the unread ones.
            let now = if broken {
                control.borrow().clone()
            } else {
                unheld(&mut control, dir).await?
            };
            let pass = if broken {
                0
            } else {
                match now.mode(dir) {
                    Mode::Pass | Mode::Hold => n,
                    Mode::Drop => 0,
                    Mode::DropAfter(_) => stats.take_budget(dir, n as u64) as usize,
                }
            };
            if pass < n {
                broken = true;
                stats.dropped(dir).fetch_add((n - pass) as u64, Ordering::SeqCst);
            }
            if pass > 0 {
                let due = Instant::now() + now.delay(dir);
                tx.send((due, buf[..pass].to_vec())).await.map_err(|_| ())?;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // Bytes still in the proxy when a hold begins are held too, not delivered late.
            unheld(&mut writer_control, dir).await?;
            to.write_all(&bytes).await.map_err(|_| ())?;
            stats.delivered(dir).fetch_add(bytes.len() as u64, Ordering::SeqCst);
        }
        // The source ended cleanly: pass the half-close on.
        let _ = to.shutdown().await;
        Ok::<(), ()>(())
    };
    tokio::try_join!(reader, writer).map(|_| ())
}
