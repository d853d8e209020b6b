//! One storage watch stream per front-end process, fanned out to IDLE sessions.
//!
//! Thousands of idling clients must not mean thousands of gRPC streams, so the hub holds a single
//! `Watch` stream and routes each event by (tenant, account, mailbox) to the sessions subscribed
//! to that mailbox. An event only says "something changed": each session then pulls the details
//! with `Changes` since its own modseq, so a notification carries no state that could be lost.
//! That makes recovery simple: when the stream lags or reconnects (possibly to a new leader), the
//! hub wakes every subscriber and each one catches up by itself.
//!
//! Only the Raft leader serves Watch, and it sends a heartbeat every `heartbeat` interval after
//! confirming with a quorum that it still leads (read index). The hub's loop:
//! 1. open the stream through the router (which follows `NOT_LEADER` hints and rotates through
//!    the endpoints), then wake every session: anything may have happened while nobody listened;
//! 2. dispatch events until the stream ends, fails, or stays silent for [`MISSED_HEARTBEATS`]
//!    intervals: a node that vanished without closing the connection, or a partitioned old
//!    leader that can no longer confirm its leadership, stops sending heartbeats;
//! 3. steer the router away from that node (follow the hint of a `NOT_LEADER` ending, else
//!    forget it as leader and rotate), wake every session again, back off, reconnect.
//!
//! Account events (mailbox id [`ACCOUNT_MAILBOX`]: the account's credentials changed) go to the
//! account subscription every logged-in session holds ([`WatchHub::subscribe_account`]), which
//! then checks its token (`session/lifetime.rs`). A reconnect does not wake those: a revocation
//! missed meanwhile is still caught by the session's next storage call, and waking every session
//! of the process on each leader change would cost one call per session.
//!
//! Notifications use `tokio::sync::Notify`, which keeps one permit: bursts of events coalesce into
//! one wake-up, and a wake-up that arrives while the session is busy is not lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailraft_proto as proto;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use crate::error::FrontendError;
use crate::storage::Storage;

/// Which mailbox a subscriber waits on: (tenant, account, mailbox).
type Key = (u64, u64, u64);
/// Subscribers by mailbox: (subscription id, its wake-up).
type Subscribers = HashMap<Key, Vec<(u64, Arc<Notify>)>>;

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Heartbeat intervals without any message after which the stream is considered dead.
pub const MISSED_HEARTBEATS: u32 = 3;
/// The mailbox id of account events (no mailbox has it; see `WatchEvent` in the proto).
pub const ACCOUNT_MAILBOX: u64 = 0;

/// Why one watch stream ended.
#[derive(Debug)]
enum End {
    /// The hub is shutting down.
    Shutdown,
    /// Nothing arrived for [`MISSED_HEARTBEATS`] intervals.
    Silent,
    /// The server closed the stream (e.g. the node shut down).
    Closed,
    /// The server ended the stream with an error (e.g. `NOT_LEADER` after losing leadership).
    Failed(tonic::Status),
}

#[derive(Debug, Default)]
struct Inner {
    subscribers: Mutex<Subscribers>,
    next_id: AtomicU64,
}

impl Inner {
    fn subscribers(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Fan-out of storage change events to sessions; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WatchHub {
    inner: Arc<Inner>,
}

/// A session's registration for one mailbox; unregisters on drop.
#[derive(Debug)]
pub struct Subscription {
    inner: Arc<Inner>,
    key: Key,
    id: u64,
    notify: Arc<Notify>,
}

impl Subscription {
    /// Resolves when the mailbox may have changed since the last call.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subscribers = self.inner.subscribers();
        if let Some(list) = subscribers.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                subscribers.remove(&self.key);
            }
        }
    }
}

impl WatchHub {
    /// A hub with no subscribers and no stream yet (see [`WatchHub::run`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers interest in one mailbox.
    pub fn subscribe(&self, tenant_id: u64, account_id: u64, mailbox_id: u64) -> Subscription {
        let key = (tenant_id, account_id, mailbox_id);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.inner.subscribers().entry(key).or_default().push((id, notify.clone()));
        Subscription { inner: self.inner.clone(), key, id, notify }
    }

    /// Registers for the account events of one account (its credentials changed).
    pub fn subscribe_account(&self, tenant_id: u64, account_id: u64) -> Subscription {
        self.subscribe(tenant_id, account_id, ACCOUNT_MAILBOX)
    }

    /// Number of live subscriptions (tests, metrics).
    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers().values().map(Vec::len).sum()
    }

    /// Routes one event.
    pub fn dispatch(&self, event: &proto::WatchEvent) {
        if event.heartbeat {
            return;
        }
        if event.lagged {
            self.notify_all();
            return;
        }
        let key = (event.tenant_id, event.account_id, event.mailbox_id);
        if let Some(list) = self.inner.subscribers().get(&key) {
            for (_, notify) in list {
                notify.notify_one();
            }
        }
    }

    /// Wakes every mailbox subscriber (after a lag or a reconnect, events may have been missed);
    /// account subscriptions are left alone (module docs).
    pub fn notify_all(&self) {
        let subscribers = self.inner.subscribers();
        let mailboxes = subscribers.iter().filter(|((_, _, mailbox), _)| *mailbox != ACCOUNT_MAILBOX);
        for (_, list) in mailboxes {
            for (_, notify) in list {
                notify.notify_one();
            }
        }
    }

    /// Keeps the watch stream open until `shutdown`, reconnecting with backoff (module docs).
    pub async fn run(self, storage: Storage, heartbeat: Duration, shutdown: CancellationToken) {
        let silence = heartbeat.saturating_mul(MISSED_HEARTBEATS);
        let router = storage.router().clone();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let opened = tokio::select! {
                _ = shutdown.cancelled() => return,
                opened = storage.watch(heartbeat) => opened,
            };
            match opened {
                Ok((mut stream, addr)) => {
                    tracing::debug!(%addr, "watch stream open");
                    // Anything may have happened while we were not listening.
                    self.notify_all();
                    let (end, received) = self.pump(&mut stream, silence, &shutdown).await;
                    if received {
                        backoff = FIRST_BACKOFF;
                    }
                    match end {
                        End::Shutdown => return,
                        End::Silent => {
                            crate::metrics::watch_heartbeat_timeout();
                            tracing::warn!(%addr, ?silence, "watch stream silent, reconnecting elsewhere");
                            router.mark_failed(&addr);
                        }
                        End::Closed => {
                            tracing::info!(%addr, "watch stream ended, reconnecting");
                            router.mark_failed(&addr);
                        }
                        End::Failed(status) => match FrontendError::from(status) {
                            FrontendError::NotLeader { leader: Some(leader) } => {
                                tracing::info!(%addr, %leader, "watch node lost leadership, following hint");
                                router.set_leader(&leader);
                            }
                            error => {
                                tracing::info!(%addr, %error, "watch stream failed, reconnecting");
                                router.mark_failed(&addr);
                            }
                        },
                    }
                }
                Err(error) => tracing::debug!(%error, "cannot open watch stream"),
            }
            crate::metrics::watch_reconnect();
            self.notify_all();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Dispatches the stream's events until it ends; also says whether anything arrived.
    async fn pump(
        &self,
        stream: &mut Streaming<proto::WatchEvent>,
        silence: Duration,
        shutdown: &CancellationToken,
    ) -> (End, bool) {
        let mut received = false;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return (End::Shutdown, received),
                message = tokio::time::timeout(silence, stream.message()) => message,
            };
            match message {
                Err(_) => return (End::Silent, received),
                Ok(Ok(Some(event))) => {
                    received = true;
                    self.dispatch(&event);
                }
                Ok(Ok(None)) => return (End::Closed, received),
                Ok(Err(status)) => return (End::Failed(status), received),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(mailbox_id: u64, lagged: bool) -> proto::WatchEvent {
        proto::WatchEvent { tenant_id: 1, account_id: 2, mailbox_id, modseq: 5, lagged, ..Default::default() }
    }

    /// Whether the subscription has a pending wake-up, without waiting.
    async fn woken(sub: &Subscription) -> bool {
        tokio::time::timeout(Duration::from_millis(1), sub.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn routes_by_mailbox_and_coalesces() {
        let hub = WatchHub::new();
        let a = hub.subscribe(1, 2, 10);
        let b = hub.subscribe(1, 2, 11);
        hub.dispatch(&event(10, false));
        hub.dispatch(&event(10, false));
        assert!(woken(&a).await);
        assert!(!woken(&a).await, "two events coalesce into one wake-up");
        assert!(!woken(&b).await);
    }

    #[tokio::test]
    async fn account_events_reach_the_account_only_and_lag_does_not() {
        let hub = WatchHub::new();
        let account = hub.subscribe_account(1, 2);
        let other = hub.subscribe_account(1, 3);
        let mailbox = hub.subscribe(1, 2, 10);
        hub.dispatch(&event(ACCOUNT_MAILBOX, false));
        assert!(woken(&account).await);
        assert!(!woken(&other).await);
        assert!(!woken(&mailbox).await, "a mailbox session learns of it from its own calls");
        hub.dispatch(&event(10, true));
        assert!(woken(&mailbox).await);
        assert!(!woken(&account).await, "a lag or reconnect does not make every session refresh");
    }

    #[tokio::test]
    async fn heartbeats_wake_nobody() {
        let hub = WatchHub::new();
        let a = hub.subscribe(1, 2, 10);
        hub.dispatch(&proto::WatchEvent { heartbeat: true, applied_index: 7, ..Default::default() });
        assert!(!woken(&a).await);
    }

    /// Polls `condition` every 10 ms until it holds or 10 s passed.
    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_silent_stream_is_dropped_and_reopened_at_another_node() {
        use crate::storage::mock::{Mock, serve};
        use crate::storage::route::RetryPolicy;

        // The first node sends one heartbeat and then nothing, without closing the connection.
        let silent = Mock::default();
        *silent.watch_silent_after.lock().unwrap() = Some(1);
        let silent = serve(silent).await;
        let healthy = serve(Mock::default()).await;
        let endpoints = vec![silent.addr.clone(), healthy.addr.clone()];
        let storage = Storage::new(&endpoints, 1, RetryPolicy::new(Duration::from_secs(5), Duration::from_secs(1)));
        let hub = WatchHub::new();
        let session = hub.subscribe(1, 2, 10);
        let stop = CancellationToken::new();
        let task = tokio::spawn(hub.clone().run(storage, Duration::from_millis(100), stop.clone()));

        eventually("the stream to open at the first node", || !silent.mock.calls("watch").is_empty()).await;
        assert_eq!(silent.mock.calls("watch")[0].heartbeat_ms, 100);
        // Drain the wake-up of the first open; the reconnect must wake the session again.
        tokio::time::timeout(Duration::from_secs(10), session.changed()).await.unwrap();
        eventually("the stream to move to the healthy node", || !healthy.mock.calls("watch").is_empty()).await;
        tokio::time::timeout(Duration::from_secs(10), session.changed()).await.unwrap();
        assert_eq!(silent.mock.calls("watch").len(), 1, "the silent node was not retried first");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn lag_wakes_everyone_and_drop_unsubscribes() {
        let hub = WatchHub::new();
        let a = hub.subscribe(1, 2, 10);
        let b = hub.subscribe(3, 4, 11);
        assert_eq!(hub.subscriber_count(), 2);
        hub.dispatch(&event(99, true));
        assert!(woken(&a).await);
        assert!(woken(&b).await);
        drop(a);
        drop(b);
        assert_eq!(hub.subscriber_count(), 0);
    }
}
