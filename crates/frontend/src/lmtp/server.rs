//! The LMTP accept loops (TCP and Unix socket) under one connection limit.
//!
//! A connection over `max_connections` is told `421 4.3.2` with one non-blocking write and
//! closed inside the accept loop (RFC 5321 §3.8: 421 may be the greeting), so an overload costs
//! no task. On shutdown the loops stop accepting, every connection says 421 at its next wait for
//! input (a delivery in flight finishes first), and `serve` returns once they are gone or the
//! drain timeout passed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::session::Backend;
use super::{LmtpConfig, LmtpConfigError, connection};

/// First delay after a failed `accept` (e.g. out of file descriptors); doubles up to 1 s.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// How long shutdown waits for connections (a delivery in flight) to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound LMTP listener.
#[derive(Debug)]
pub enum LmtpListener {
    /// TCP (keep it off the public network: there is no authentication).
    Tcp(TcpListener),
    /// A Unix socket (access is its file permissions).
    Unix(UnixListener),
}

/// An LMTP server; clones share the connection limit, so a TCP and a Unix listener together
/// have `max_connections`.
#[derive(Debug)]
pub struct LmtpServer<B> {
    backend: Arc<B>,
    config: LmtpConfig,
    limit: Arc<Semaphore>,
}

impl<B> Clone for LmtpServer<B> {
    fn clone(&self) -> Self {
        LmtpServer { backend: self.backend.clone(), config: self.config.clone(), limit: self.limit.clone() }
    }
}

impl<B: Backend> LmtpServer<B> {
    /// A server for `config` (validated here) delivering through `backend`.
    pub fn new(config: LmtpConfig, backend: B) -> Result<Self, LmtpConfigError> {
        config.validate()?;
        let permits = config.max_connections.min(Semaphore::MAX_PERMITS);
        Ok(LmtpServer { backend: Arc::new(backend), limit: Arc::new(Semaphore::new(permits)), config })
    }

    /// Serves `listener` until `shutdown` resolves, then drains the connections.
    pub async fn serve(self, listener: LmtpListener, shutdown: impl Future) {
        let token = CancellationToken::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = FIRST_ACCEPT_BACKOFF;
        super::describe_metrics();
        tracing::info!(?listener, "LMTP listening");
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = accept(&listener) => accepted,
            };
            match accepted {
                Ok((Accepted::Tcp(stream), peer)) => {
                    let _ = stream.set_nodelay(true);
                    self.spawn(stream, peer, &token);
                    backoff = FIRST_ACCEPT_BACKOFF;
                }
                Ok((Accepted::Unix(stream), peer)) => {
                    self.spawn(stream, peer, &token);
                    backoff = FIRST_ACCEPT_BACKOFF;
                }
                Err(error) => {
                    tracing::warn!(%error, "lmtp accept failed");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        token.cancel();
        drop(listener);
        let all = u32::try_from(self.config.max_connections.min(Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        if tokio::time::timeout(DRAIN_TIMEOUT, self.limit.acquire_many(all)).await.is_err() {
            tracing::warn!("lmtp connections still open after the drain timeout");
        }
    }

    fn spawn<S>(&self, stream: S, peer: String, token: &CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static + IntoStd,
    {
        let Ok(permit) = self.limit.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "lmtp connection refused: max_connections");
            metrics::counter!(super::CONNECTIONS_TOTAL, "result" => "refused").increment(1);
            stream.refuse(b"421 4.3.2 too many connections, try again later\r\n");
            return;
        };
        metrics::counter!(super::CONNECTIONS_TOTAL, "result" => "accepted").increment(1);
        let backend = self.backend.clone();
        let config = self.config.clone();
        let token = token.clone();
        let span = tracing::info_span!("lmtp", id = next_id(), %peer);
        tokio::spawn(
            async move {
                connection::serve(stream, &*backend, config, token).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &LmtpListener) -> std::io::Result<(Accepted, String)> {
    match listener {
        LmtpListener::Tcp(l) => l.accept().await.map(|(s, peer)| (Accepted::Tcp(s), peer.to_string())),
        LmtpListener::Unix(l) => l.accept().await.map(|(s, _)| (Accepted::Unix(s), "unix".to_owned())),
    }
}

/// A refusal written with one non-blocking `send`, off the reactor: it either fits the fresh
/// socket's empty buffer or is lost, and nothing waits.
trait IntoStd {
    fn refuse(self, line: &[u8]);
}

impl IntoStd for tokio::net::TcpStream {
    fn refuse(self, line: &[u8]) {
        if let Ok(s) = self.into_std() {
            let _ = std::io::Write::write(&mut &s, line);
        }
    }
}

impl IntoStd for tokio::net::UnixStream {
    fn refuse(self, line: &[u8]) {
        if let Ok(s) = self.into_std() {
            let _ = std::io::Write::write(&mut &s, line);
        }
    }
}

/// A process-unique connection number for log correlation.
fn next_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
