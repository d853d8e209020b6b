//! One storage watch stream per front-end process, fanned out to IDLE sessions.
//!
//! Thousands of idling clients must not mean thousands of gRPC streams, so the hub holds a single
//! `Watch` stream and routes each event by (tenant, account, mailbox) to the sessions subscribed
//! to that mailbox. An event only says "something changed": each session then pulls the details
//! with `Changes` since its own modseq, so a notification carries no state that could be lost.
//! That makes recovery simple: when the stream lags or reconnects (possibly to a new leader), the
//! hub wakes every subscriber and each one catches up by itself.
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

use crate::storage::Storage;

/// Which mailbox a subscriber waits on: (tenant, account, mailbox).
type Key = (u64, u64, u64);
/// Subscribers by mailbox: (subscription id, its wake-up).
type Subscribers = HashMap<Key, Vec<(u64, Arc<Notify>)>>;

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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

    /// Number of live subscriptions (tests, metrics).
    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers().values().map(Vec::len).sum()
    }

    /// Routes one event.
    pub fn dispatch(&self, event: &proto::WatchEvent) {
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

    /// Wakes every subscriber (after a lag or a reconnect, events may have been missed).
    pub fn notify_all(&self) {
        for list in self.inner.subscribers().values() {
            for (_, notify) in list {
                notify.notify_one();
            }
        }
    }

    /// Keeps the watch stream open until `shutdown`, reconnecting with backoff.
    pub async fn run(self, storage: Storage, shutdown: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let opened = tokio::select! {
                _ = shutdown.cancelled() => return,
                opened = storage.watch() => opened,
            };
            match opened {
                Ok(mut stream) => {
                    tracing::debug!("watch stream open");
                    // Anything may have happened while we were not listening.
                    self.notify_all();
                    loop {
                        let message = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            message = stream.message() => message,
                        };
                        match message {
                            Ok(Some(event)) => {
                                backoff = FIRST_BACKOFF;
                                self.dispatch(&event);
                            }
                            Ok(None) => {
                                tracing::debug!("watch stream ended");
                                break;
                            }
                            Err(status) => {
                                tracing::debug!(code = ?status.code(), "watch stream failed");
                                break;
                            }
                        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(mailbox_id: u64, lagged: bool) -> proto::WatchEvent {
        proto::WatchEvent { tenant_id: 1, account_id: 2, mailbox_id, modseq: 5, lagged }
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
