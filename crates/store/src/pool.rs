//! Where blocking work runs, so that one kind of work can never starve another.
//!
//! tokio's one blocking pool is shared by everything that calls `spawn_blocking`; once its
//! threads are all busy (for example with reads that wait for a slow client), every further
//! task queues, including the Raft log's fsync and the state machine's apply, and the leader
//! stops committing while its heartbeats keep it leader. Two tools keep the kinds apart:
//!
//! - [`Executor`]: dedicated, named OS threads fed by a queue. The Raft log I/O and the state
//!   machine's apply each get one (openraft serializes each of them anyway), so nothing else
//!   can ever be queued in front of a write. The storage node runs password hashing on one
//!   too, so argon2's memory stays on a fixed set of threads.
//! - [`Limiter`]: a semaphore in front of tokio's blocking pool. Reads take a permit before
//!   they take a thread, so at most `permits` reads hold threads at once and the pool always
//!   has room for everything else. The permit travels into the blocking task, so a caller that
//!   gives up does not free a slot that is still in use.
//!
//! Both report `mailraft_pool_queued{pool}` (work waiting to start), `mailraft_pool_active{pool}`
//! and `mailraft_pool_wait_seconds{pool}` (time from submission to start).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::{Result, StoreError};
use crate::metrics;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Queue and activity gauges of one pool. They move by increments, so several pools with the
/// same name (several nodes in one test process) add up instead of overwriting each other.
struct Gauges {
    name: &'static str,
}

impl Gauges {
    fn new(name: &'static str) -> Self {
        // Export the series at 0 from the start, so dashboards see the pool before it is busy.
        metrics::pool_gauges(name, 0.0, 0.0);
        Gauges { name }
    }

    fn enqueue(&self) {
        metrics::pool_gauges(self.name, 1.0, 0.0);
    }

    /// Work left the queue without starting (its caller gave up or it was refused).
    fn abandon(&self) {
        metrics::pool_gauges(self.name, -1.0, 0.0);
    }

    fn start(&self, submitted: Instant) {
        metrics::pool_gauges(self.name, -1.0, 1.0);
        metrics::pool_wait(self.name, submitted.elapsed());
    }

    /// Work got its slot (it starts right after, counted by [`Gauges::started`]).
    fn dequeued(&self, submitted: Instant) {
        metrics::pool_gauges(self.name, -1.0, 0.0);
        metrics::pool_wait(self.name, submitted.elapsed());
    }

    /// Admission was counted by the slot wait; only the activity changes now.
    fn started(&self) {
        metrics::pool_gauges(self.name, 0.0, 1.0);
    }

    fn finish(&self) {
        metrics::pool_gauges(self.name, 0.0, -1.0);
    }
}

/// Dedicated threads running submitted closures in order of submission.
///
/// Cloning yields a handle on the same threads. The threads end once every handle is dropped
/// and the queue is empty. A panicking job fails its own caller only; the thread goes on.
#[derive(Clone)]
pub struct Executor {
    queue: mpsc::Sender<Job>,
    gauges: Arc<Gauges>,
    /// With [`Executor::bounded`]: one permit per thread, so admitted work never waits in the
    /// queue and [`Executor::run_within`] can refuse work instead of queueing it.
    slots: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").field("pool", &self.gauges.name).finish_non_exhaustive()
    }
}

impl Executor {
    /// Starts `threads` (at least one) threads named `mailraft-{name}`; `name` is also the
    /// `pool` label of the metrics.
    pub fn new(name: &'static str, threads: usize) -> Result<Executor> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..threads.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new().name(format!("mailraft-{name}")).spawn(move || {
                loop {
                    // The lock is held only while taking a job, never while running one. A
                    // poisoned lock cannot leave the receiver inconsistent.
                    let job = jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    let Ok(job) = job else { return };
                    // The job's own result channel reports the panic to its caller (as a
                    // dropped sender); the thread must survive for the next job.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        }
        Ok(Executor { queue, gauges: Arc::new(Gauges::new(name)), slots: None })
    }

    /// Like [`Executor::new`], but admits at most one job per thread; others wait for a slot
    /// (in [`Executor::run_within`], for a bounded time).
    pub fn bounded(name: &'static str, threads: usize) -> Result<Executor> {
        let threads = threads.clamp(1, Semaphore::MAX_PERMITS);
        let mut ex = Executor::new(name, threads)?;
        ex.slots = Some(Arc::new(Semaphore::new(threads)));
        Ok(ex)
    }

    /// Runs `f` once a slot is free (bounded executors; others admit at once), giving up with
    /// [`LimitError::Busy`] if none is within `wait` (`None`: no bound).
    pub async fn run_within<T, F>(&self, wait: Option<Duration>, f: F) -> Result<T, LimitError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let Some(slots) = &self.slots else {
            return Ok(self.run(f).await?);
        };
        let permit = acquire(slots, &self.gauges, wait).await?;
        // The slot is freed when the job ends, not when the caller stops waiting for it.
        let (tx, rx) = oneshot::channel();
        self.submit(
            move || {
                let _slot: OwnedSemaphorePermit = permit;
                let _ = tx.send(f());
            },
            false,
        )?;
        rx.await.map_err(|_| LimitError::Task(StoreError::Task(format!("a {} job panicked", self.gauges.name))))
    }

    /// Runs `f` on one of the threads and returns its result. Dropping the future does not
    /// cancel `f` once it was submitted.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        // The caller may have gone away; the work is done either way.
        self.submit(move || drop(tx.send(f())), true)?;
        rx.await.map_err(|_| StoreError::Task(format!("a {} job panicked", self.gauges.name)))
    }

    /// Queues `f`; `count_queued` is false when the caller already counted the wait (slots).
    fn submit(&self, f: impl FnOnce() + Send + 'static, count_queued: bool) -> Result<()> {
        let gauges = self.gauges.clone();
        let submitted = Instant::now();
        if count_queued {
            gauges.enqueue();
        }
        let job: Job = Box::new(move || {
            if count_queued {
                gauges.start(submitted);
            } else {
                gauges.started();
            }
            let _finish = Finish(&gauges);
            f();
        });
        self.queue.send(job).map_err(|_| {
            if count_queued {
                self.gauges.abandon();
            }
            StoreError::Task(format!("{} threads are gone", self.gauges.name))
        })
    }
}

/// Marks the end of a job even when it panics.
struct Finish<'a>(&'a Gauges);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Why [`Limiter::run_within`] did not run the closure.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// No permit became free within the allowed wait.
    #[error("{0} is busy")]
    Busy(&'static str),
    /// The blocking task panicked or the runtime is shutting down.
    #[error(transparent)]
    Task(#[from] StoreError),
}

/// At most `permits` closures of one kind at a time on tokio's blocking pool.
#[derive(Clone)]
pub struct Limiter {
    permits: Arc<Semaphore>,
    gauges: Arc<Gauges>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("pool", &self.gauges.name).finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter of `permits` (at least one) concurrent closures; `name` is the `pool` label.
    pub fn new(name: &'static str, permits: usize) -> Limiter {
        let permits = permits.clamp(1, Semaphore::MAX_PERMITS);
        Limiter { permits: Arc::new(Semaphore::new(permits)), gauges: Arc::new(Gauges::new(name)) }
    }

    /// Waits for a permit (as long as it takes; dropping the future leaves the queue), then
    /// runs `f` on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.run_within(None, f).await {
            Ok(v) => Ok(v),
            Err(LimitError::Task(e)) => Err(e),
            // Unreachable without a wait bound; reported rather than assumed.
            Err(e @ LimitError::Busy(_)) => Err(StoreError::Task(e.to_string())),
        }
    }

    /// Like [`Limiter::run`], but gives up with [`LimitError::Busy`] when no permit is free
    /// within `wait` (`None`: no bound).
    pub async fn run_within<T, F>(&self, wait: Option<Duration>, f: F) -> Result<T, LimitError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = acquire(&self.permits, &self.gauges, wait).await?;
        let gauges = self.gauges.clone();
        tokio::task::spawn_blocking(move || {
            let _permit: OwnedSemaphorePermit = permit;
            gauges.started();
            let _finish = Finish(&gauges);
            f()
        })
        .await
        .map_err(|e| LimitError::Task(StoreError::from(e)))
    }

    /// Permits free right now (for tests and diagnostics).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Waits for a permit of `slots`, counted in `gauges`' queue; gives up after `wait`.
async fn acquire(slots: &Arc<Semaphore>, gauges: &Gauges, wait: Option<Duration>) -> Result<OwnedSemaphorePermit, LimitError> {
    let submitted = Instant::now();
    gauges.enqueue();
    // Leaves the queue count right even when the caller drops this future mid-wait.
    let mut waiting = Waiting(Some(gauges));
    let acquire = slots.clone().acquire_owned();
    let permit = match wait {
        None => acquire.await,
        Some(wait) => match tokio::time::timeout(wait, acquire).await {
            Ok(p) => p,
            Err(_) => {
                metrics::pool_busy(gauges.name);
                return Err(LimitError::Busy(gauges.name));
            }
        },
    };
    // The semaphore is never closed, so an error here means the pool is being torn down.
    let permit = permit.map_err(|_| LimitError::Busy(gauges.name))?;
    waiting.0 = None;
    gauges.dequeued(submitted);
    Ok(permit)
}

/// Counts a waiter out of the queue if it leaves without a permit.
struct Waiting<'a>(Option<&'a Gauges>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            g.abandon();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn executor_runs_jobs_in_order_and_survives_a_panic() {
        let ex = Executor::new("test-exec", 1).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut waits = Vec::new();
        for i in 0..10 {
            let seen = seen.clone();
            waits.push(ex.run(move || seen.lock().unwrap().push(i)));
        }
        for w in waits {
            w.await.unwrap();
        }
        assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
        assert!(ex.run(|| panic!("job fails")).await.is_err());
        assert_eq!(ex.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn bounded_executor_refuses_work_when_its_threads_stay_busy() {
        let ex = Executor::bounded("test-bounded", 1).unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = ex.clone();
        let first = tokio::spawn(async move { busy.run_within(None, move || release_rx.recv().is_ok()).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        // Wait until the first job holds the only slot.
        while ex.slots.as_ref().map(|s| s.available_permits()) != Some(0) {
            assert!(Instant::now() < deadline, "the first job never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = ex.run_within(Some(Duration::from_millis(50)), || 1).await;
        assert!(matches!(refused, Err(LimitError::Busy("test-bounded"))), "{refused:?}");
        release_tx.send(()).unwrap();
        assert!(first.await.unwrap().unwrap());
        assert_eq!(ex.run_within(Some(Duration::from_secs(10)), || 2).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn executor_runs_on_its_own_named_thread() {
        let ex = Executor::new("test-named", 1).unwrap();
        let name = ex.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert_eq!(name.as_deref(), Some("mailraft-test-named"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limiter_bounds_concurrency_and_gives_up_after_the_wait() {
        let limiter = Limiter::new("test-limit", 2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let mut held = Vec::new();
        for _ in 0..2 {
            let (running, peak, release_rx) = (running.clone(), peak.clone(), release_rx.clone());
            let l = limiter.clone();
            held.push(tokio::spawn(async move {
                l.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let _ = release_rx.lock().unwrap().recv();
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while limiter.available() > 0 {
            assert!(Instant::now() < deadline, "the two closures never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Both permits are taken: a third closure is refused after its wait, without running.
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let third = limiter.run_within(Some(Duration::from_millis(50)), move || r.fetch_add(1, Ordering::SeqCst)).await;
        assert!(matches!(third, Err(LimitError::Busy("test-limit"))), "{third:?}");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        for _ in 0..2 {
            release_tx.send(()).unwrap();
        }
        for h in held {
            h.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(limiter.run(|| 3).await.unwrap(), 3);
    }
}
