//! Which storage node to call, and retrying until one answers.
//!
//! Writes and linearizable reads must reach the Raft leader. The router keeps one lazily
//! connected tonic `Channel` per address (shared by every session of the process, with HTTP/2
//! keepalive so a node that vanished without closing its connections is noticed even when idle),
//! remembers the leader a `NOT_LEADER` reply named, and otherwise rotates through the configured
//! endpoints.
//!
//! Every mutating call carries a request id that the storage deduplicates (see `storage/mod.rs`),
//! so retrying is always safe: a write whose outcome is unknown is sent again with the same id
//! and gets the original reply instead of being applied twice. One logical call therefore runs
//! attempts until it gets an answer or its deadline (`request_timeout`) passes:
//! - each attempt is bounded by the attempt timeout, doubled after each timed-out attempt (so a
//!   dead node costs little, while a call that is merely slow still gets more time later);
//! - `NOT_LEADER` with a hint: cache the hint as leader and retry there (at once the first time,
//!   after a backoff afterwards, so two nodes naming each other cannot spin);
//! - `NOT_LEADER` without a hint, `UNAVAILABLE`, a transport error or a timed-out attempt: forget
//!   the cached leader if it was that node, move to the next endpoint and retry after a bounded
//!   exponential backoff;
//! - a timed-out attempt also makes its node *silent* for one attempt timeout: [`Router::target`]
//!   skips it (unless every endpoint is silent), also when a `NOT_LEADER` hint names it, so the
//!   retry asks the node that gave the hint again after a backoff. A frozen leader (`docker
//!   pause`, SIGSTOP) keeps its followers' committed vote: openraft lets a follower campaign only
//!   after the leader lease plus an election timeout (4.5 to 6 s with the default Raft timing),
//!   so until then every follower names the frozen node. Following that hint sent the retry back
//!   into the frozen node for a doubled attempt timeout, which with the default 10 s deadline was
//!   the rest of the call: every write in flight got `NO [UNAVAILABLE]` although a new leader was
//!   elected in time. After the window the node is called again, so a leader that was merely
//!   slow (and that the followers still name) is reached;
//! - an answer (`NONEXISTENT`, `ALREADYEXISTS`, …, see [`super::status::is_answer`]) ends the call.
//!
//! Streaming calls (FETCH, Watch) go through here only to open the stream; a stream that breaks
//! later is the caller's business.
//!
//! With [`StorageTls`] every channel is mutual TLS: the node's certificate is verified against the
//! cluster CA and the host of its URL, and the front-end presents its own certificate
//! (`spiffe://mailraft/frontend/<name>`, which storage nodes admit to Storage and Watch only). An
//! `http://` URL (a configured endpoint, or a hint from a membership recorded before TLS was
//! enabled) is then upgraded to `https://`; without material an `https://` URL is refused.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mailraft_proto::storage_client::StorageClient;
use tokio::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::status::is_answer;
use crate::error::FrontendError;

/// Largest gRPC message we send or accept: a FETCH of a big message or an APPEND of one.
const MAX_GRPC_MESSAGE: usize = 256 * 1024 * 1024;
/// How often an HTTP/2 PING checks a connection, also while no call is in flight.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a PING may stay unanswered before the connection is considered dead.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive, for the kernel's view of the same question.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// HTTP/2 flow control (RFC 9113 §6.9) on the one connection every session of the process shares
/// per storage address. A session whose IMAP client stops reading stops reading its FETCH stream
/// too, and the bytes the storage node already sent on that stream count against both the stream's
/// window and the connection's until it reads them. With hyper's defaults (2 MiB per stream, 5 MiB
/// per connection) three stalled sessions used up the connection window, and then no reply of any
/// call of any session arrived on that connection until the stalled ones hit their write deadline.
/// So the connection window is the largest HTTP/2 allows, and a stream's window small enough that
/// every session the front-end admits can be stalled at once with room to spare:
/// [`MAX_STALLED_STREAMS`] bounds `max_connections`. A stream window well above one round trip's
/// worth of bytes still streams a large FETCH at full speed on a data-centre network.
pub const STREAM_WINDOW: u32 = 192 * 1024;
/// The largest window RFC 9113 §6.9.1 allows.
pub const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
/// Streams that may all hold a full, unread window while the connection still carries everyone
/// else's replies: the connection window over the stream window, less room for the Watch stream
/// and the unary calls of the sessions that still read.
pub const MAX_STALLED_STREAMS: usize = (CONNECTION_WINDOW / STREAM_WINDOW) as usize - 64;

/// When a call gives up and how it spaces its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deadline of one logical call, all attempts included.
    pub request_timeout: Duration,
    /// Bound on the first attempt; doubled after every attempt that timed out.
    pub attempt_timeout: Duration,
    /// Delay before the first backed-off retry; doubles per retry up to `max_backoff`.
    pub first_backoff: Duration,
    /// Longest delay between two attempts.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The policy for a call deadline of `request_timeout`: an attempt gets at most a third of it
    /// (so at least three nodes can be tried), and at most `max_attempt_timeout`.
    pub fn new(request_timeout: Duration, max_attempt_timeout: Duration) -> Self {
        Self {
            request_timeout,
            attempt_timeout: max_attempt_timeout.min(request_timeout / 3).max(Duration::from_millis(1)),
            first_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(800),
        }
    }
}

/// The cluster CA and this front-end's certificate and key (PEM) for mutual TLS to storage.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageTls {
    /// CA certificate(s) that storage nodes' certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// This front-end's certificate chain.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for StorageTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("StorageTls { .. }")
    }
}

impl StorageTls {
    fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

/// An endpoint for `addr` (see the module docs on TLS).
fn endpoint(addr: &str, tls: Option<&StorageTls>) -> Result<Endpoint, FrontendError> {
    let bad = |e: &dyn std::fmt::Display| FrontendError::Unavailable(format!("bad storage address {addr}: {e}"));
    match tls {
        None if addr.starts_with("https://") => Err(FrontendError::Unavailable(format!(
            "storage address {addr} is https:// but no TLS material is configured (tls.ca, tls.cert, tls.key)"
        ))),
        None => Endpoint::from_shared(addr.to_owned()).map_err(|e| bad(&e)),
        Some(tls) => {
            let url = match addr.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => addr.to_owned(),
            };
            let endpoint = Endpoint::from_shared(url).map_err(|e| bad(&e))?;
            let mut config = tls.client_config();
            // rustls wants an IPv6 literal without the URL's brackets.
            if let Some(host) = endpoint.uri().host().filter(|h| h.starts_with('[')) {
                config = config.domain_name(host.trim_start_matches('[').trim_end_matches(']'));
            }
            endpoint.tls_config(config).map_err(|e| bad(&e))
        }
    }
}

/// Routes storage calls; shared by all sessions of a front-end process.
#[derive(Debug)]
pub struct Router {
    /// Configured endpoints as URIs.
    endpoints: Vec<String>,
    /// Index into `endpoints` used when no leader is cached (taken modulo the length).
    current: AtomicUsize,
    /// Leader learned from a `NOT_LEADER` hint.
    leader: Mutex<Option<String>>,
    /// One channel per address, created on first use; tonic reconnects it as needed.
    channels: Mutex<HashMap<String, Channel>>,
    /// Nodes whose last attempt timed out, and when: silent for `policy.attempt_timeout` from
    /// then (see the module docs), or until they answer anything.
    silent: Mutex<HashMap<String, Instant>>,
    policy: RetryPolicy,
    /// Mutual TLS for every channel; `None` is plaintext.
    tls: Option<StorageTls>,
}

impl Router {
    /// A plaintext router over `endpoints` (`host:port` or URIs).
    pub fn new(endpoints: &[String], policy: RetryPolicy) -> Self {
        Self::with_tls(endpoints, policy, None)
    }

    /// A router over `endpoints` whose channels use `tls` when given.
    pub fn with_tls(endpoints: &[String], policy: RetryPolicy, tls: Option<StorageTls>) -> Self {
        Self {
            endpoints: endpoints.iter().map(|e| normalize(e)).collect(),
            current: AtomicUsize::new(0),
            leader: Mutex::new(None),
            channels: Mutex::new(HashMap::new()),
            silent: Mutex::new(HashMap::new()),
            policy,
            tls,
        }
    }

    /// The deadline of one call including retries.
    pub fn request_timeout(&self) -> Duration {
        self.policy.request_timeout
    }

    /// The retry policy.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// The address the next call goes to: the cached leader, else the current endpoint, each
    /// only if it is not silent; the first endpoint after the current one that is not silent;
    /// and when every node is silent, the cached leader or current endpoint all the same.
    pub fn target(&self) -> String {
        let leader = lock(&self.leader).clone();
        let len = self.endpoints.len();
        let current = self.current.load(Ordering::Relaxed);
        let endpoints = (0..len).filter_map(|i| self.endpoints.get(current.wrapping_add(i) % len));
        let mut candidates = leader.iter().chain(endpoints);
        if let Some(addr) = candidates.clone().find(|addr| !self.is_silent(addr)) {
            return addr.clone();
        }
        candidates.next().cloned().unwrap_or_default()
    }

    /// Whether an attempt to `addr` timed out less than an attempt timeout ago.
    pub fn is_silent(&self, addr: &str) -> bool {
        let mut silent = lock(&self.silent);
        match silent.get(addr) {
            Some(since) if since.elapsed() < self.policy.attempt_timeout => true,
            Some(_) => {
                silent.remove(addr);
                false
            }
            None => false,
        }
    }

    /// Records that an attempt to `addr` timed out just now.
    fn mark_silent(&self, addr: &str) {
        lock(&self.silent).insert(addr.to_owned(), Instant::now());
    }

    /// Records that `addr` answered: it is not silent (any more).
    fn mark_answered(&self, addr: &str) {
        let mut silent = lock(&self.silent);
        if !silent.is_empty() {
            silent.remove(addr);
        }
    }

    /// The cached leader, if a `NOT_LEADER` hint named one and it has not failed since.
    pub fn leader(&self) -> Option<String> {
        lock(&self.leader).clone()
    }

    /// A client for `addr` on the shared channel.
    pub fn client(&self, addr: &str) -> Result<StorageClient<Channel>, FrontendError> {
        let channel = {
            let mut channels = lock(&self.channels);
            match channels.get(addr) {
                Some(channel) => channel.clone(),
                None => {
                    let channel = endpoint(addr, self.tls.as_ref())?
                        .connect_timeout(self.policy.attempt_timeout)
                        .tcp_nodelay(true)
                        .initial_stream_window_size(STREAM_WINDOW)
                        .initial_connection_window_size(CONNECTION_WINDOW)
                        .tcp_keepalive(Some(TCP_KEEPALIVE))
                        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                        .keep_alive_while_idle(true)
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

    /// Records a failure of `addr`: drop it as cached leader, and if it is the current endpoint
    /// move to the next one. Many sessions may report the same failure at once; only the first
    /// advances the rotation, so they do not skip healthy endpoints.
    pub fn mark_failed(&self, addr: &str) {
        {
            let mut leader = lock(&self.leader);
            if leader.as_deref() == Some(addr) {
                *leader = None;
            }
        }
        let len = self.endpoints.len();
        if len == 0 {
            return;
        }
        let current = self.current.load(Ordering::Relaxed);
        if self.endpoints[current % len] == addr {
            let next = current.wrapping_add(1);
            let _ = self.current.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Drops the cached channel to `addr`; the next call connects anew. Calls already running on
    /// the old channel keep it until they finish.
    pub fn forget_channel(&self, addr: &str) {
        lock(&self.channels).remove(addr);
    }

    /// Caches `leader` as the node to call.
    pub fn set_leader(&self, leader: &str) {
        *lock(&self.leader) = Some(normalize(leader));
    }

    /// Runs `call` until it gets an answer, per the module rules.
    pub async fn call<Resp, F, Fut>(&self, op: &'static str, call: F) -> Result<Resp, FrontendError>
    where
        F: FnMut(StorageClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.call_traced(op, call).await.map(|(response, _)| response)
    }

    /// Like [`Router::call`], and also says which node answered (the watch hub must know which
    /// node its stream is on, to move away from it when the stream goes silent).
    pub async fn call_traced<Resp, F, Fut>(
        &self,
        op: &'static str,
        mut call: F,
    ) -> Result<(Resp, String), FrontendError>
    where
        F: FnMut(StorageClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.policy.request_timeout;
        let mut attempt_timeout = self.policy.attempt_timeout;
        let mut backoff = self.policy.first_backoff;
        let mut followed_hint = false;
        loop {
            let addr = self.target();
            let client = self.client(&addr)?;
            let budget = attempt_timeout.min(deadline.saturating_duration_since(Instant::now()));
            let result = tokio::time::timeout(budget, call(client)).await;
            if result.is_ok() {
                // Whatever it said, it is not frozen.
                self.mark_answered(&addr);
            }
            let error = match result {
                Ok(Ok(response)) => return Ok((response.into_inner(), addr)),
                Ok(Err(status)) if is_answer(&status) => {
                    let error = FrontendError::from(status);
                    crate::metrics::storage_error(op, error.kind());
                    return Err(error);
                }
                Ok(Err(status)) => FrontendError::from(status),
                Err(_) => {
                    // The node may be gone without a word (blackholed, paused): give the next
                    // attempt, elsewhere, more time in case the call is merely slow. The HTTP/2
                    // connection itself may be the silent part (a reply lost on a half-dead
                    // path), so the next call to this node opens a fresh one rather than queueing
                    // behind it until keepalive notices.
                    attempt_timeout = attempt_timeout.saturating_mul(2);
                    self.forget_channel(&addr);
                    self.mark_silent(&addr);
                    FrontendError::Timeout
                }
            };
            crate::metrics::storage_error(op, error.kind());
            let immediate = match &error {
                FrontendError::NotLeader { leader: Some(hint) } if normalize(hint) != addr => {
                    tracing::debug!(op, %addr, leader = %hint, "storage node is not the leader, following hint");
                    self.set_leader(hint);
                    !std::mem::replace(&mut followed_hint, true)
                }
                _ => {
                    tracing::debug!(op, %addr, %error, "storage attempt failed, trying the next node");
                    self.mark_failed(&addr);
                    false
                }
            };
            let next = self.target();
            if next != addr {
                crate::metrics::storage_reroute(if immediate { "hint" } else { "rotate" });
            }
            if !immediate {
                if Instant::now() + backoff >= deadline {
                    return Err(error);
                }
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(self.policy.max_backoff);
            }
            if Instant::now() >= deadline {
                return Err(error);
            }
            crate::metrics::storage_retry(op, error.kind());
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

    fn policy(request_timeout: Duration) -> RetryPolicy {
        RetryPolicy::new(request_timeout, Duration::from_secs(5))
    }

    #[test]
    fn normalizes_addresses() {
        assert_eq!(normalize("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(normalize("https://x:1"), "https://x:1");
    }

    #[test]
    fn attempt_timeout_is_a_fraction_of_the_deadline() {
        assert_eq!(policy(Duration::from_secs(30)).attempt_timeout, Duration::from_secs(5));
        assert_eq!(policy(Duration::from_secs(3)).attempt_timeout, Duration::from_secs(1));
    }

    #[test]
    fn tls_upgrades_plain_urls_and_plaintext_refuses_https() {
        let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let pem = generated.cert.pem().into_bytes();
        let key_pem = generated.signing_key.serialize_pem().into_bytes();
        let tls = StorageTls { ca_pem: pem.clone(), cert_pem: pem, key_pem };
        assert_eq!(endpoint("http://127.0.0.1:1", Some(&tls)).unwrap().uri().scheme_str(), Some("https"));
        assert_eq!(endpoint("http://127.0.0.1:1", None).unwrap().uri().scheme_str(), Some("http"));
        assert!(endpoint("https://127.0.0.1:1", None).is_err());
        assert!(!format!("{tls:?}").contains("PRIVATE"));
    }

    #[tokio::test]
    async fn rotates_and_follows_leader() {
        let router = Router::new(&["a:1".into(), "b:1".into()], policy(Duration::from_secs(1)));
        assert_eq!(router.target(), "http://a:1");
        router.mark_failed("http://a:1");
        assert_eq!(router.target(), "http://b:1");
        router.set_leader("c:1");
        assert_eq!(router.target(), "http://c:1");
        router.mark_failed("http://c:1");
        assert_eq!(router.target(), "http://b:1");
        // A failed leader that is also the current endpoint is skipped, not called again.
        router.set_leader("http://b:1");
        router.mark_failed("http://b:1");
        assert_eq!(router.leader(), None);
        assert_eq!(router.target(), "http://a:1");
        // Two sessions reporting the same failure advance the rotation once.
        router.mark_failed("http://a:1");
        router.mark_failed("http://a:1");
        assert_eq!(router.target(), "http://b:1");
    }

    #[tokio::test]
    async fn unreachable_storage_is_unavailable_within_the_deadline() {
        // Port 1 on localhost refuses connections.
        let router = Router::new(&["127.0.0.1:1".into()], policy(Duration::from_millis(500)));
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
