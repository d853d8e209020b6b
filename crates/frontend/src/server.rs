//! The IMAP listener: accept loop, connection limits, graceful shutdown.
//!
//! Each accepted socket needs a permit from a semaphore of `max_connections` and a slot among the
//! unauthenticated connections of its source address (`max_preauth_per_ip`, see [`preauth`]);
//! without either it is refused, so overload shows up as refused connections rather than as
//! every session slowing down. A refusal is settled inside the accept loop and costs one
//! non-blocking write at most: no task, no TLS handshake, no wait for the client. On a cleartext
//! listener the client gets `* BYE` as its greeting (RFC 3501 §7.1.5) if the socket takes it at
//! once; an implicit-TLS listener just closes, since anything it could say needs a handshake
//! first. On shutdown the listener stops
//! accepting, every connection says `* BYE server shutting down` at its next wait for input
//! (commands in flight finish first), and `serve` returns once all permits are back or the drain
//! timeout passed. The semaphore therefore also tracks the connections still draining.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cmd::Shared;
use crate::config::{ConfigError, FrontendConfig};
use crate::connection::Connection;
use crate::io::ImapStream;
use crate::preauth::{self, PreauthLimiter};
use crate::response::Out;
use crate::storage::Storage;
use crate::storage::route::RetryPolicy;
use crate::tls::TlsMode;
use crate::watch::WatchHub;

/// First delay after a failed `accept` (e.g. out of file descriptors); doubles up to 1 s.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// An IMAP front-end server. Clones share one connection limit and one watch stream, so a process
/// serving several listeners (cleartext and implicit TLS) still has `max_connections` in total
/// and a single `Watch` subscription to the storage tier (DESIGN: one per front-end, not per
/// client or listener).
#[derive(Debug, Clone)]
pub struct ImapServer {
    shared: Arc<Shared>,
    /// Connection permits shared by every listener of this server.
    limit: Arc<Semaphore>,
    /// Unauthenticated connections per source address, across every listener of this server.
    preauth: Arc<PreauthLimiter>,
    /// Listeners currently serving, and how to stop the watch hub when the last one ends.
    listeners: Arc<std::sync::Mutex<Listeners>>,
}

/// Bookkeeping for the shared watch hub.
#[derive(Debug, Default)]
struct Listeners {
    active: usize,
    watch_stop: Option<CancellationToken>,
}

impl ImapServer {
    /// A server for `config` (validated here).
    pub fn new(config: FrontendConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let policy = RetryPolicy::new(config.request_timeout, config.storage_attempt_timeout);
        let storage = Storage::with_tls(&config.storage_endpoints, config.group_id, policy, config.storage_tls.clone());
        let max = config.max_connections.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        let preauth = PreauthLimiter::new(config.max_preauth_per_ip);
        Ok(Self {
            shared: Arc::new(Shared { config, storage, watch: WatchHub::new() }),
            limit: Arc::new(Semaphore::new(max)),
            preauth,
            listeners: Arc::default(),
        })
    }

    /// The storage client this server uses (shared channels and leader cache).
    pub fn storage(&self) -> &Storage {
        &self.shared.storage
    }

    /// Serves clients from `listener` until `shutdown` resolves, then drains connections.
    pub async fn serve(self, listener: TcpListener, tls: TlsMode, shutdown: impl Future) {
        crate::metrics::describe();
        let config = &self.shared.config;
        let token = CancellationToken::new();
        self.listener_started();
        let max = config.max_connections.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        let limit = self.limit.clone();
        tracing::info!(addr = ?listener.local_addr().ok(), ?tls, "IMAP front-end listening");

        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = FIRST_ACCEPT_BACKOFF;
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    backoff = FIRST_ACCEPT_BACKOFF;
                    accepted
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                refuse(stream, peer, &tls, Refusal::MaxConnections);
                continue;
            };
            let Some(preauth) = self.preauth.try_acquire(peer.ip()) else {
                drop(permit);
                refuse(stream, peer, &tls, Refusal::PreauthPerIp);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let tls = tls.clone();
            let token = token.clone();
            let session_id = next_session_id();
            let span = tracing::info_span!(
                "imap",
                session_id = %session_id,
                %peer,
                tenant = tracing::field::Empty
            );
            tokio::spawn(
                async move {
                    crate::metrics::connection_opened();
                    serve_socket(shared, stream, peer, tls, token, session_id, preauth).await;
                    crate::metrics::connection_closed();
                    drop(permit);
                }
                .instrument(span),
            );
        }

        tracing::info!("IMAP front-end shutting down");
        token.cancel();
        drop(listener);
        let drain = config.request_timeout.saturating_mul(2).max(Duration::from_secs(5));
        if tokio::time::timeout(drain, limit.acquire_many(max as u32)).await.is_err() {
            tracing::warn!("connections still open after the drain timeout");
        }
        self.listener_stopped();
    }

    /// Starts the shared watch hub with the first listener.
    fn listener_started(&self) {
        let mut l = self.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if l.active == 0 {
            let stop = CancellationToken::new();
            let heartbeat = self.shared.config.watch_heartbeat;
            tokio::spawn(self.shared.watch.clone().run(self.shared.storage.clone(), heartbeat, stop.clone()));
            l.watch_stop = Some(stop);
        }
        l.active += 1;
    }

    /// Stops the shared watch hub with the last listener.
    fn listener_stopped(&self) {
        let mut l = self.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        l.active = l.active.saturating_sub(1);
        if l.active == 0
            && let Some(stop) = l.watch_stop.take()
        {
            stop.cancel();
        }
    }
}

/// Runs one accepted socket: TLS handshake for implicit TLS, then the connection loop.
async fn serve_socket(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsMode,
    shutdown: CancellationToken,
    session_id: String,
    preauth: preauth::PreauthGuard,
) {
    tracing::debug!(%peer, "connection accepted");
    // One pre-login deadline from accept to login, the implicit TLS handshake included.
    let accepted = tokio::time::Instant::now();
    let io = ImapStream::Plain(Box::new(stream));
    let (io, starttls) = match tls {
        TlsMode::Plain { starttls } => (io, starttls),
        TlsMode::Implicit(config) => {
            match tokio::time::timeout_at(accepted + shared.config.preauth_timeout, io.upgrade(config)).await {
                Ok(Ok(io)) => (io, None),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            }
        }
    };
    Connection::new(shared, io, starttls, shutdown, session_id)
        .with_preauth_guard(preauth)
        .with_preauth_deadline_from(accepted)
        .with_peer(peer.ip())
        .run()
        .await;
    tracing::debug!("connection closed");
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `max_connections` are open.
    MaxConnections,
    /// The source address has `max_preauth_per_ip` unauthenticated connections.
    PreauthPerIp,
}

impl Refusal {
    /// Metrics label.
    fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PreauthPerIp => "preauth_per_ip",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "too many connections, try again later",
            Refusal::PreauthPerIp => "too many unauthenticated connections from your address",
        }
    }
}

/// Turns a client away inside the accept loop. On a cleartext listener it writes `* BYE` as the
/// greeting (RFC 3501 §7.1.5) with one non-blocking write: a fresh socket's send buffer is empty,
/// so the line fits unless the peer is already gone, and nothing here ever waits. An
/// implicit-TLS client gets a plain close: telling it anything would take a handshake, the very
/// cost the limit exists to avoid.
fn refuse(stream: TcpStream, peer: SocketAddr, tls: &TlsMode, why: Refusal) {
    crate::metrics::connection_refused(why.label());
    tracing::debug!(%peer, reason = why.label(), "connection refused");
    if let TlsMode::Plain { .. } = tls
        && let Ok(stream) = stream.into_std()
    {
        let mut out = Out::new();
        out.bye(None, why.text());
        // The std socket is still non-blocking (tokio set it so), and it is off the reactor, so
        // this write is one `send` call that either takes the line or fails.
        let _ = std::io::Write::write(&mut &stream, out.as_bytes());
    }
}

/// A process-unique, hard-to-guess-enough session id for log correlation (not a secret).
fn next_session_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
    });
    format!("{:08x}-{:06x}", (start >> 16) as u32, COUNTER.fetch_add(1, Ordering::Relaxed))
}
