//! Timers the connection loop races against client input: the IDLE poll retry schedule and
//! futures that wait for an optional deadline or subscription.

use std::time::Duration;

use tokio::time::Instant;

/// First delay before an IDLE poll that failed is retried.
const IDLE_RETRY_FIRST: Duration = Duration::from_secs(1);

/// The pending retry of a failed IDLE poll: due after a delay that doubles per failure, up to
/// the keepalive interval (which polls anyway). Cleared by any successful poll.
#[derive(Debug)]
pub(super) struct IdleRetry {
    due: Option<Instant>,
    delay: Duration,
    max: Duration,
}

impl IdleRetry {
    pub(super) fn new(max: Duration) -> Self {
        Self { due: None, delay: IDLE_RETRY_FIRST.min(max), max }
    }

    /// Records a failure at `now`; returns when to try again.
    pub(super) fn schedule(&mut self, now: Instant) -> Instant {
        let due = now + self.delay;
        self.due = Some(due);
        self.delay = self.delay.saturating_mul(2).min(self.max);
        due
    }

    /// A poll succeeded: nothing is pending.
    pub(super) fn clear(&mut self) {
        self.due = None;
        self.delay = IDLE_RETRY_FIRST.min(self.max);
    }

    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }
}

/// Sleeps until `at`; forever if there is nothing to wait for.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the subscription fires; never without one (IDLE in authenticated state).
pub(super) async fn changed(subscription: Option<&crate::watch::Subscription>) {
    match subscription {
        Some(subscription) => subscription.changed().await,
        None => std::future::pending().await,
    }
}
