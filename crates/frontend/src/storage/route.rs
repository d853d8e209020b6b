//! Which storage node to call, and retrying when it is the wrong one.
//!
//! Writes and linearizable reads must reach the Raft leader. The router keeps one lazily
//! connected tonic `Channel` per address (shared by every session of the process), remembers the
//! leader a `NOT_LEADER` reply named, and otherwise rotates through the configured endpoints:
//! - `NOT_LEADER` with a hint: cache the hint and retry there at once;
//! - `NOT_LEADER` without a hint, or `UNAVAILABLE` (including transport errors): forget the
//!   cached leader, move to the next endpoint and retry after a bounded exponential backoff;
//! - anything else is the answer.
//!
//! The whole call, retries included, is bounded by the request timeout. A call that timed out is
//! not retried: it may have been applied, and repeating an APPEND would duplicate the message.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mailraft_proto::storage_client::StorageClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::error::FrontendError;

/// Largest gRPC message we send or accept: a FETCH of a big message or an APPEND of one.
const MAX_GRPC_MESSAGE: usize = 256 * 1024 * 1024;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
/// Longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(800);

/// Routes storage calls; shared by all sessions of a front-end process.
#[derive(Debug)]
pub struct Router {
    /// Configured endpoints as URIs.
    endpoints: Vec<String>,
    /// Index into `endpoints` used when no leader is cached.
    current: AtomicUsize,
    /// Leader learned from a `NOT_LEADER` hint.
    leader: Mutex<Option<String>>,
    /// One channel per address, created on first use; tonic reconnects it as needed.
    channels: Mutex<HashMap<String, Channel>>,
    /// Deadline for one call including retries.
    request_timeout: Duration,
}

impl Router {
    /// A router over `endpoints` (`host:port` or URIs).
    pub fn new(endpoints: &[String], request_timeout: Duration) -> Self {
        Self {
            endpoints: endpoints.iter().map(|e| normalize(e)).collect(),
            current: AtomicUsize::new(0),
            leader: Mutex::new(None),
            channels: Mutex::new(HashMap::new()),
            request_timeout,
        }
    }

    /// The per-call deadline.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The address the next call goes to: the cached leader, else the current endpoint.
    pub fn target(&self) -> String {
        if let Some(leader) = lock(&self.leader).clone() {
            return leader;
        }
        let index = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        self.endpoints.get(index).cloned().unwrap_or_default()
    }

    /// A client for `addr` on the shared channel.
    pub fn client(&self, addr: &str) -> Result<StorageClient<Channel>, FrontendError> {
        let channel = {
            let mut channels = lock(&self.channels);
            match channels.get(addr) {
                Some(channel) => channel.clone(),
                None => {
                    let channel = Endpoint::from_shared(addr.to_owned())
                        .map_err(|e| FrontendError::Unavailable(format!("bad storage address {addr}: {e}")))?
                        .connect_timeout(self.request_timeout.min(Duration::from_secs(5)))
                        .tcp_nodelay(true)
                        .connect_lazy();
                    channels.insert(addr.to_owned(), channel.clone());
                    channel
                }
            }
        };
        Ok(StorageClient::new(channel)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE))
    }

    /// Records a failure of `addr`: drop it as leader and move to the next endpoint.
    pub fn mark_failed(&self, addr: &str) {
        {
            let mut leader = lock(&self.leader);
            if leader.as_deref() == Some(addr) {
                *leader = None;
                return;
            }
        }
        if self.endpoints.get(self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1))
            .is_some_and(|e| e == addr)
        {
            self.current.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Caches `leader` as the node to call.
    pub fn set_leader(&self, leader: &str) {
        *lock(&self.leader) = Some(normalize(leader));
    }

    /// Runs `call` against the current target, retrying per the module rules.
    pub async fn call<Resp, F, Fut>(&self, op: &'static str, mut call: F) -> Result<Resp, FrontendError>
    where
        F: FnMut(StorageClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        let max_attempts = self.endpoints.len() * 2 + 2;
        let mut attempt = 0;
        // A hint is followed immediately once; after that hints only steer the backed-off retries,
        // so two nodes naming each other cannot spin.
        let mut followed_hint = false;
        loop {
            attempt += 1;
            let addr = self.target();
            let client = self.client(&addr)?;
            let result = tokio::time::timeout_at(deadline, call(client)).await;
            let error = match result {
                Err(_) => {
                    crate::metrics::storage_error(op, "timeout");
                    return Err(FrontendError::Timeout);
                }
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => FrontendError::from(status),
            };
            crate::metrics::storage_error(op, error.kind());
            match &error {
                FrontendError::NotLeader { leader: Some(leader) }
                    if !followed_hint && normalize(leader) != addr =>
                {
                    tracing::debug!(op, %addr, %leader, "storage node is not the leader, following hint");
                    followed_hint = true;
                    self.set_leader(leader);
                }
                FrontendError::NotLeader { .. } | FrontendError::Unavailable(_) => {
                    tracing::debug!(op, %addr, error = %error, "storage node unavailable, trying the next one");
                    self.mark_failed(&addr);
                    if let FrontendError::NotLeader { leader: Some(leader) } = &error {
                        self.set_leader(leader);
                    }
                    let backoff = FIRST_BACKOFF
                        .saturating_mul(1 << (attempt - 1).min(6))
                        .min(MAX_BACKOFF);
                    if Instant::now() + backoff >= deadline {
                        return Err(error);
                    }
                    tokio::time::sleep(backoff).await;
                }
                _ => return Err(error),
            }
            if attempt >= max_attempts {
                return Err(error);
            }
        }
    }
}

/// `host:port` → `http://host:port`; URIs pass through.
pub fn normalize(addr: &str) -> String {
    let addr = addr.trim();
    if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") }
}

/// Locks a mutex, recovering from poisoning: the guarded data (addresses) stays valid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_addresses() {
        assert_eq!(normalize("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(normalize("https://x:1"), "https://x:1");
    }

    #[tokio::test]
    async fn rotates_and_follows_leader() {
        let router = Router::new(&["a:1".into(), "b:1".into()], Duration::from_secs(1));
        assert_eq!(router.target(), "http://a:1");
        router.mark_failed("http://a:1");
        assert_eq!(router.target(), "http://b:1");
        router.set_leader("c:1");
        assert_eq!(router.target(), "http://c:1");
        router.mark_failed("http://c:1");
        assert_eq!(router.target(), "http://b:1");
    }

    #[tokio::test]
    async fn unreachable_storage_is_unavailable_within_the_deadline() {
        // Port 1 on localhost refuses connections.
        let router = Router::new(&["127.0.0.1:1".into()], Duration::from_millis(500));
        let started = Instant::now();
        let result = router
            .call("authenticate", |mut client| async move {
                client.authenticate(mailraft_proto::AuthenticateRequest::default()).await
            })
            .await;
        assert!(
            matches!(result, Err(FrontendError::Unavailable(_)) | Err(FrontendError::Timeout)),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
