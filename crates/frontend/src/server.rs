//! The IMAP listener: accept loop, connection limit, graceful shutdown.
//!
//! Each accepted socket needs a permit from a semaphore of `max_connections`; without one the
//! client gets `* BYE too many connections` and is closed, so overload shows up as refused
//! connections rather than as every session slowing down. On shutdown the listener stops
//! accepting, every connection says `* BYE server shutting down` at its next wait for input
//! (commands in flight finish first), and `serve` returns once all permits are back or the drain
//! timeout passed. The semaphore therefore also tracks the connections still draining.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cmd::Shared;
use crate::config::{ConfigError, FrontendConfig};
use crate::connection::Connection;
use crate::io::ImapStream;
use crate::response::Out;
use crate::storage::Storage;
use crate::storage::route::RetryPolicy;
use crate::tls::TlsMode;
use crate::watch::WatchHub;

/// First delay after a failed `accept` (e.g. out of file descriptors); doubles up to 1 s.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// How long a refused client gets to receive its BYE.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// An IMAP front-end server. Clones share one connection limit and one watch stream, so a process
/// serving several listeners (cleartext and implicit TLS) still has `max_connections` in total
/// and a single `Watch` subscription to the storage tier (DESIGN: one per front-end, not per
/// client or listener).
#[derive(Debug, Clone)]
pub struct ImapServer {
    shared: Arc<Shared>,
    /// Connection permits shared by every listener of this server.
    limit: Arc<Semaphore>,
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
        let storage = Storage::new(&config.storage_endpoints, config.group_id, policy);
        let max = config.max_connections.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        Ok(Self {
            shared: Arc::new(Shared { config, storage, watch: WatchHub::new() }),
            limit: Arc::new(Semaphore::new(max)),
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
            let _ = stream.set_nodelay(true);
            match limit.clone().try_acquire_owned() {
                Ok(permit) => {
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
                            serve_socket(shared, stream, peer, tls, token, session_id).await;
                            crate::metrics::connection_closed();
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Err(_) => {
                    crate::metrics::connection_refused();
                    tokio::spawn(refuse(stream, tls.clone()));
                }
            }
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
) {
    tracing::debug!(%peer, "connection accepted");
    let io = ImapStream::Plain(Box::new(stream));
    let (io, starttls) = match tls {
        TlsMode::Plain { starttls } => (io, starttls),
        TlsMode::Implicit(config) => {
            match tokio::time::timeout(shared.config.preauth_timeout, io.upgrade(config)).await {
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
    Connection::new(shared, io, starttls, shutdown, session_id).run().await;
    tracing::debug!("connection closed");
}

/// Tells a client over the connection limit to go away (RFC 3501 §7.1.5 BYE as greeting).
async fn refuse(stream: TcpStream, tls: TlsMode) {
    let mut out = Out::new();
    out.bye(None, "too many connections, try again later");
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async move {
        let io = ImapStream::Plain(Box::new(stream));
        let mut io = match tls {
            TlsMode::Plain { .. } => io,
            TlsMode::Implicit(config) => match io.upgrade(config).await {
                Ok(io) => io,
                Err(_) => return,
            },
        };
        let _ = out.flush_to(&mut io).await;
        let _ = io.shutdown().await;
    })
    .await;
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
