//! Concurrent linearizable reads share one read-index round (issue 8, point 3).
//!
//! A read-index round makes the leader confirm with a quorum that it still leads and then wait
//! until it has applied the commit index it saw: one network round trip to the followers per
//! round. Before this, every read ran a round of its own.
//!
//! A read may only rely on a round that STARTED AFTER the read arrived. A round already in
//! flight may have taken its read index before a write that completed before this read began,
//! and the read would then miss that write (a stale read, which linearizability forbids). So a
//! read that arrives while a round runs waits for the next round, which the driver starts as soon
//! as the current one ends and which covers every read waiting by then. A read that arrives when
//! no round runs starts one at once, so a lone client waits no longer than before.
//!
//! The rounds run on a spawned driver task, not in the first caller: a caller that gives up
//! (its client went away) must not cancel the round the others wait for.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// One read-index round.
pub type Round<E> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), E>> + Send>> + Send + Sync>;

/// Why a read could not be linearized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadIndexError<E> {
    /// The round it waited for failed (not the leader, no quorum, Raft stopped).
    Failed(E),
    /// The driver went away before answering (runtime shutting down).
    Stopped,
}

/// Coalesces concurrent read-index requests into as few rounds as linearizability allows.
pub struct ReadIndexBatcher<E> {
    round: Round<E>,
    state: Arc<Mutex<State<E>>>,
}

struct State<E> {
    /// A driver task is running rounds.
    running: bool,
    /// Reads that arrived since the current round started (or since the driver last looked).
    waiting: Vec<oneshot::Sender<Result<(), E>>>,
}

impl<E: Clone + Send + 'static> ReadIndexBatcher<E> {
    /// A batcher that runs `round` for each batch.
    pub fn new(round: Round<E>) -> Self {
        ReadIndexBatcher { round, state: Arc::new(Mutex::new(State { running: false, waiting: Vec::new() })) }
    }

    /// Returns once a round that started after this call has succeeded.
    pub async fn linearize(&self) -> Result<(), ReadIndexError<E>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.waiting.push(tx);
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            tokio::spawn(drive(self.round.clone(), self.state.clone()));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ReadIndexError::Failed(e)),
            Err(_) => Err(ReadIndexError::Stopped),
        }
    }
}

/// Runs rounds while reads are waiting: each round answers exactly the reads that were waiting
/// when it started; later arrivals go to the next round.
async fn drive<E: Clone + Send + 'static>(round: Round<E>, state: Arc<Mutex<State<E>>>) {
    loop {
        let batch = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if s.waiting.is_empty() {
                s.running = false;
                return;
            }
            std::mem::take(&mut s.waiting)
        };
        crate::metrics::read_index_round(batch.len());
        let result = round().await;
        for waiter in batch {
            // A waiter that gave up dropped its receiver: nothing to tell it.
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;

    /// A round that counts how often it ran and waits for the test to release it.
    fn gated(started: Arc<AtomicUsize>, gate: Arc<Notify>) -> Round<String> {
        Arc::new(move || {
            let (started, gate) = (started.clone(), gate.clone());
            Box::pin(async move {
                started.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok(())
            })
        })
    }

    async fn until(what: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(tokio::time::Instant::now() < deadline, "condition not reached in time");
            tokio::task::yield_now().await;
        }
    }

    /// Reads arriving while a round runs are answered by ONE next round, not by the running one
    /// (which may predate a write they must see), and not by one round each.
    #[tokio::test]
    async fn reads_during_a_round_share_the_next_round_only() {
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let b = Arc::new(ReadIndexBatcher::new(gated(started.clone(), gate.clone())));

        let first = tokio::spawn({
            let b = b.clone();
            async move { b.linearize().await }
        });
        until(|| started.load(Ordering::SeqCst) == 1).await;

        let done = Arc::new(AtomicU64::new(0));
        let mut later = Vec::new();
        for _ in 0..10 {
            let (b, done) = (b.clone(), done.clone());
            later.push(tokio::spawn(async move {
                let r = b.linearize().await;
                done.fetch_add(1, Ordering::SeqCst);
                r
            }));
        }
        // Let the ten register; none may be answered by the round that is already running.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(first.await.unwrap(), Ok(()));
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 0, "a read was answered by a round that started before it");

        until(|| started.load(Ordering::SeqCst) == 2).await;
        gate.notify_one();
        for t in later {
            assert_eq!(t.await.unwrap(), Ok(()));
        }
        assert_eq!(started.load(Ordering::SeqCst), 2, "ten concurrent reads took one round");
    }

    /// A failed round fails exactly the reads it covered; the next read starts a new round.
    #[tokio::test]
    async fn a_failed_round_fails_its_reads_and_the_next_read_retries() {
        let calls = Arc::new(AtomicUsize::new(0));
        let round: Round<String> = {
            let calls = calls.clone();
            Arc::new(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move { if n == 0 { Err("no quorum".to_string()) } else { Ok(()) } })
            })
        };
        let b = ReadIndexBatcher::new(round);
        assert_eq!(b.linearize().await, Err(ReadIndexError::Failed("no quorum".to_string())));
        assert_eq!(b.linearize().await, Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A caller that gives up does not cancel the round the others wait for.
    #[tokio::test]
    async fn a_cancelled_caller_does_not_cancel_the_round() {
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let b = Arc::new(ReadIndexBatcher::new(gated(started.clone(), gate.clone())));
        let quitter = tokio::spawn({
            let b = b.clone();
            async move { b.linearize().await }
        });
        until(|| started.load(Ordering::SeqCst) == 1).await;
        quitter.abort();
        let _ = quitter.await;
        let stayer = tokio::spawn({
            let b = b.clone();
            async move { b.linearize().await }
        });
        gate.notify_one();
        until(|| started.load(Ordering::SeqCst) == 2).await;
        gate.notify_one();
        assert_eq!(stayer.await.unwrap(), Ok(()));
    }
}
