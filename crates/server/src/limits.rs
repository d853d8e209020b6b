//! The storage node's resource bounds, and the pools that enforce them.
//!
//! Each kind of blocking work has its own place, so no kind can starve another (see
//! `mailraft_store::pool`): the Raft log and apply run on the store's own threads; reads
//! ([`Pools::read`]) hold at most `max_concurrent_reads` threads of tokio's blocking pool;
//! password hashing ([`Pools::hash`]) runs on `max_concurrent_password_hashes` dedicated threads
//! and waits at most `password_hash_wait` for one, then answers UNAVAILABLE without hashing.
//! Dedicated hashing threads also keep argon2's 19 MiB blocks on a fixed set of threads (and
//! malloc arenas), so a burst of logins cannot leave gigabytes behind.
//!
//! A FETCH stream ends with DEADLINE_EXCEEDED once it is older than `read_stream_deadline`, so
//! no client can pin a RocksDB snapshot (and the versions it keeps alive) for longer.
//!
//! Long reads (SEARCH, FETCH chunks: [`Pools::read_as`]) also take a place of their account
//! first, at most [`Limits::reads_per_account`] at once, so one user looping SEARCH on many
//! connections waits behind their own searches instead of holding every read slot; then one of
//! the [`Limits::long_reads`] places (three quarters of the read slots), so short reads always
//! find a quarter of the slots that no long read can take, however many accounts run long reads
//! at once. Short reads of an account (SELECT, STATUS, LIST, Changes, token refresh:
//! [`Pools::read_short_as`]) take one of that account's short-read places (as many as its
//! long-read places, counted apart), so one user looping SELECT on dozens of connections cannot
//! hold every slot either; reads on nobody's behalf yet (the login lookup, LMTP recipients,
//! admin) use [`Pools::read`] directly, bounded by the hashing cap and their callers.
//!
//! No read waits forever: a read that gets no place and slot within [`Limits::read_wait`] is
//! answered UNAVAILABLE (`NO [UNAVAILABLE]` in IMAP) without running.
//!
//! The bytes FETCH chunks hold between the snapshot and the transport come from a byte budget
//! ([`ByteBudget`], `fetch_bytes.rs`), node-wide, per tenant and per account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mailraft_model::Principal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use mailraft_store::{Executor, LimitError, Limiter};

use crate::auth_budget::{AuthBudget, AuthBudgetConfig};
use crate::error::ServerError;

mod fetch_bytes;

pub use fetch_bytes::{ByteBudget, DEFAULT_FETCH_BUFFER_BYTES, FETCH_STREAMS_PER_ACCOUNT, HeldBytes, StreamPermit};

/// Operator-tunable bounds; the binary's `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Blocking reads (queries, FETCH chunks, SEARCH) running at once.
    pub max_concurrent_reads: usize,
    /// Longest life of a FETCH stream, and so of the snapshot it pins.
    pub read_stream_deadline: Duration,
    /// Longest a read waits for its places and a read slot before it is refused (THROTTLED).
    pub read_wait: Duration,
    /// argon2 computations at once; 0 means twice the number of CPU cores.
    pub max_concurrent_password_hashes: usize,
    /// Longest wait for a hashing thread before the call is answered UNAVAILABLE.
    pub password_hash_wait: Duration,
    /// Password-guessing budgets.
    pub auth: AuthBudgetConfig,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_reads: 32,
            read_stream_deadline: Duration::from_secs(300),
            read_wait: Duration::from_secs(10),
            max_concurrent_password_hashes: 0,
            password_hash_wait: Duration::from_secs(2),
            auth: AuthBudgetConfig::default(),
        }
    }
}

impl Limits {
    /// Long reads one account may run at once, and short reads too (counted apart): a quarter
    /// of the read slots, at least one.
    pub fn reads_per_account(&self) -> usize {
        (self.max_concurrent_reads / 4).max(1)
    }

    /// Long reads (all accounts together) running at once: the read slots minus a quarter (at
    /// least one) kept for short reads; all of them with a single slot, which cannot be split.
    pub fn long_reads(&self) -> usize {
        let slots = self.max_concurrent_reads.max(1);
        if slots == 1 { 1 } else { slots - (slots / 4).max(1) }
    }

    /// `max_concurrent_password_hashes` with 0 resolved to twice the CPU cores.
    pub fn password_hash_threads(&self) -> usize {
        match self.max_concurrent_password_hashes {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_mul(2),
            n => n,
        }
    }
}

/// The node's pools and the guessing budget, built once from [`Limits`].
#[derive(Debug)]
pub struct Pools {
    /// The bounds they were built from.
    pub limits: Limits,
    reads: Limiter,
    /// Places of each account that runs a long read now.
    accounts: AccountPlaces,
    /// Places of each account that runs a short read now.
    short: AccountPlaces,
    /// Places of long reads of all accounts: [`Limits::long_reads`].
    long: Semaphore,
    hashes: Executor,
    /// Failure budgets of Authenticate.
    pub auth: AuthBudget,
    /// Bytes FETCH chunks may hold ([`ByteBudget`]).
    pub fetch_bytes: ByteBudget,
}

impl Pools {
    /// Starts the hashing threads.
    pub fn new(limits: Limits) -> Result<Pools, ServerError> {
        let hashes = Executor::bounded("password", limits.password_hash_threads())
            .map_err(|e| ServerError::internal(format!("start password hashing threads: {e}")))?;
        Ok(Pools {
            reads: Limiter::new("read", limits.max_concurrent_reads),
            accounts: AccountPlaces::new(limits.reads_per_account()),
            short: AccountPlaces::new(limits.reads_per_account()),
            long: Semaphore::new(limits.long_reads()),
            hashes,
            auth: AuthBudget::new(limits.auth.clone()),
            fetch_bytes: ByteBudget::new(DEFAULT_FETCH_BUFFER_BYTES),
            limits,
        })
    }

    /// Sets the FETCH byte budget to `bytes` (`NodeConfig::fetch_buffer_bytes`).
    pub fn with_fetch_buffer(mut self, bytes: usize) -> Self {
        self.fetch_bytes = ByteBudget::new(bytes);
        self
    }

    /// Runs a blocking read once a read slot is free, or refuses it (THROTTLED) when none is
    /// within [`Limits::read_wait`].
    pub async fn read<T, F>(&self, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.read_until(Instant::now() + self.limits.read_wait, f).await
    }

    async fn read_until<T, F>(&self, until: Instant, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let wait = until.saturating_duration_since(Instant::now());
        match self.reads.run_within(Some(wait), f).await {
            Ok(v) => Ok(v),
            Err(LimitError::Busy(_)) => Err(self.busy()),
            Err(LimitError::Task(e)) => Err(e.into()),
        }
    }

    fn busy(&self) -> ServerError {
        let ms = self.limits.read_wait.as_millis();
        ServerError::Throttled(format!("storage node busy: no read slot within {ms} ms, try again"))
    }

    /// [`Pools::read`] for a long read of `who`'s: waits for one of the account's places first,
    /// then for a long-read place, then for a read slot (module docs), all within
    /// [`Limits::read_wait`].
    pub async fn read_as<T, F>(&self, who: Principal, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let until = Instant::now() + self.limits.read_wait;
        let _place = self.accounts.take(who, until).await.ok_or_else(|| self.busy())?;
        let _long = tokio::time::timeout_at(until.into(), self.long.acquire())
            .await
            .map_err(|_| self.busy())?
            .map_err(ServerError::internal)?;
        self.read_until(until, f).await
    }

    /// [`Pools::read`] for a short read of `who`'s: one of the account's short-read places,
    /// then any free read slot, within [`Limits::read_wait`] (module docs).
    pub async fn read_short_as<T, F>(&self, who: Principal, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let until = Instant::now() + self.limits.read_wait;
        let _place = self.short.take(who, until).await.ok_or_else(|| self.busy())?;
        self.read_until(until, f).await
    }

    /// Runs argon2 work on a hashing thread, or answers UNAVAILABLE (without running `f`) if
    /// none is free within `password_hash_wait`.
    pub async fn hash<T, F>(&self, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.hashes.run_within(Some(self.limits.password_hash_wait), f).await {
            Ok(v) => Ok(v),
            Err(LimitError::Busy(_)) => Err(ServerError::Throttled("too many logins at once, try again".into())),
            Err(LimitError::Task(e)) => Err(e.into()),
        }
    }
}

/// Each account's places of one kind of read, created on first use and forgotten when unused.
#[derive(Debug)]
struct AccountPlaces {
    per_account: usize,
    map: Arc<Mutex<HashMap<Principal, Arc<Semaphore>>>>,
}

impl AccountPlaces {
    fn new(per_account: usize) -> Self {
        AccountPlaces { per_account, map: Arc::default() }
    }

    /// One of `who`'s places, or `None` if none is free before `until`.
    async fn take(&self, who: Principal, until: Instant) -> Option<AccountPlace> {
        let places = {
            let mut accounts = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            accounts.entry(who).or_insert_with(|| Arc::new(Semaphore::new(self.per_account))).clone()
        };
        // Built before waiting, so a wait that times out still forgets an unused account.
        let mut place = AccountPlace { permit: None, places: places.clone(), who, accounts: self.map.clone() };
        let permit = tokio::time::timeout_at(until.into(), places.acquire_owned()).await.ok()?.ok()?;
        place.permit = Some(permit);
        Some(place)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

/// One of an account's read places; the account's entry goes when its last place does.
struct AccountPlace {
    permit: Option<OwnedSemaphorePermit>,
    places: Arc<Semaphore>,
    who: Principal,
    accounts: Arc<Mutex<HashMap<Principal, Arc<Semaphore>>>>,
}

impl Drop for AccountPlace {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        // Nobody else holds or waits for the semaphore (the map and we are its only owners; a new
        // user would have cloned it under this lock): forget the account.
        if Arc::strong_count(&self.places) == 2 {
            accounts.remove(&self.who);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_account_cannot_hold_every_read_slot() {
        // 4 slots, 1 per account; A asks for all four with reads that block until released.
        let pools = Arc::new(Pools::new(Limits { max_concurrent_reads: 4, ..Limits::default() }).unwrap());
        let a = Principal { tenant: 1, account: 1 };
        let b = Principal { tenant: 1, account: 2 };
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let started = Arc::new(AtomicUsize::new(0));
        let mut hogs = Vec::new();
        for _ in 0..4 {
            let (pools, gate, started) = (pools.clone(), gate.clone(), started.clone());
            hogs.push(tokio::spawn(async move {
                pools
                    .read_as(a, move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.lock().unwrap().recv();
                    })
                    .await
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < 1 {
            assert!(Instant::now() < deadline, "no read of A started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // B still gets a slot (without the account cap A's four reads would hold all four), and
        // only one of A's reads has run.
        let b_read = tokio::time::timeout(Duration::from_secs(5), pools.read_as(b, || 7)).await;
        assert_eq!(b_read.expect("B waited behind A's reads").unwrap(), 7);
        assert_eq!(started.load(Ordering::SeqCst), 1, "A ran more than its share at once");
        for _ in 0..4 {
            release.send(()).unwrap();
        }
        for hog in hogs {
            hog.await.unwrap().unwrap();
        }
        assert!(pools.accounts.is_empty(), "idle accounts are forgotten");
    }

    /// Four accounts each run as many long reads as they may, which fills every place long reads
    /// have; a short read (of yet another account) still gets one of the slots kept for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_reads_keep_a_quarter_of_the_slots() {
        // 8 slots: 2 per account, 6 for long reads, 2 only for short reads.
        let limits = Limits { max_concurrent_reads: 8, ..Limits::default() };
        assert_eq!((limits.reads_per_account(), limits.long_reads()), (2, 6));
        let pools = Arc::new(Pools::new(limits).unwrap());
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let started = Arc::new(AtomicUsize::new(0));
        let mut hogs = Vec::new();
        for account in 1..=4 {
            for _ in 0..2 {
                let (pools, gate, started) = (pools.clone(), gate.clone(), started.clone());
                hogs.push(tokio::spawn(async move {
                    pools
                        .read_as(Principal { tenant: 1, account }, move || {
                            started.fetch_add(1, Ordering::SeqCst);
                            let _ = gate.lock().unwrap().recv();
                        })
                        .await
                }));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < 6 {
            assert!(Instant::now() < deadline, "the long reads never filled their places");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Without the reservation the eight long reads would hold all eight slots.
        let short = tokio::time::timeout(Duration::from_secs(5), pools.read(|| 7)).await;
        assert_eq!(short.expect("a short read waited behind long reads").unwrap(), 7);
        assert_eq!(started.load(Ordering::SeqCst), 6, "long reads took a slot kept for short reads");
        for _ in 0..8 {
            release.send(()).unwrap();
        }
        for hog in hogs {
            hog.await.unwrap().unwrap();
        }
    }

    /// One account runs as many short reads (SELECT, STATUS …) as it may and asks for more:
    /// another account's short read still runs at once, and the first account's extra read waits
    /// behind its own until `read_wait`, then is refused without running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_account_cannot_hold_every_short_read_slot() {
        let limits = Limits { max_concurrent_reads: 8, read_wait: Duration::from_millis(300), ..Limits::default() };
        let pools = Arc::new(Pools::new(limits).unwrap());
        let a = Principal { tenant: 1, account: 1 };
        let b = Principal { tenant: 2, account: 1 };
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let started = Arc::new(AtomicUsize::new(0));
        let mut hogs = Vec::new();
        for _ in 0..2 {
            let (pools, gate, started) = (pools.clone(), gate.clone(), started.clone());
            hogs.push(tokio::spawn(async move {
                pools
                    .read_short_as(a, move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.lock().unwrap().recv();
                    })
                    .await
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "A's short reads never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A's third read waits for A's own places (6 slots are free) and is refused at read_wait.
        let ran = Arc::new(AtomicUsize::new(0));
        let extra = {
            let ran = ran.clone();
            tokio::time::timeout(Duration::from_secs(10), pools.read_short_as(a, move || ran.fetch_add(1, Ordering::SeqCst)))
                .await
                .expect("the read waited past read_wait")
        };
        assert!(matches!(extra, Err(ServerError::Throttled(_))), "{extra:?}");
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a refused read does not run");
        // B is not affected.
        let b_read = tokio::time::timeout(Duration::from_secs(5), pools.read_short_as(b, || 7)).await;
        assert_eq!(b_read.expect("B waited behind A's reads").unwrap(), 7);
        for _ in 0..2 {
            release.send(()).unwrap();
        }
        for hog in hogs {
            hog.await.unwrap().unwrap();
        }
        assert!(pools.short.is_empty(), "idle accounts are forgotten");
    }

    /// With every read slot held, a read on nobody's account is refused after `read_wait`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waits_at_most_read_wait() {
        let limits = Limits { max_concurrent_reads: 1, read_wait: Duration::from_millis(200), ..Limits::default() };
        let pools = Arc::new(Pools::new(limits).unwrap());
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let hog = {
            let pools = pools.clone();
            tokio::spawn(async move {
                pools
                    .read(move || {
                        let _ = started_tx.send(());
                        let _ = gate.recv();
                    })
                    .await
            })
        };
        started.await.unwrap();
        // Bounded here too, so a broken read_wait fails the test instead of hanging it.
        let bound = Duration::from_secs(10);
        let waited = tokio::time::timeout(bound, pools.read(|| ())).await.expect("the read waited past read_wait");
        assert!(matches!(waited, Err(ServerError::Throttled(_))), "{waited:?}");
        let long = tokio::time::timeout(bound, pools.read_as(Principal { tenant: 1, account: 1 }, || ()))
            .await
            .expect("the long read waited past read_wait");
        assert!(matches!(long, Err(ServerError::Throttled(_))), "{long:?}");
        release.send(()).unwrap();
        hog.await.unwrap().unwrap();
        pools.read(|| ()).await.unwrap();
    }

    #[test]
    fn long_reads_leave_a_quarter_of_the_slots() {
        let long = |n| Limits { max_concurrent_reads: n, ..Limits::default() }.long_reads();
        assert_eq!([long(0), long(1), long(2), long(3), long(4), long(32)], [1, 1, 1, 2, 3, 24]);
    }

    #[test]
    fn zero_hash_threads_means_twice_the_cores() {
        let limits = Limits::default();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(limits.password_hash_threads(), 2 * cores);
        assert_eq!(Limits { max_concurrent_password_hashes: 3, ..Limits::default() }.password_hash_threads(), 3);
    }

    /// More logins than hashing threads: at most the cap hash at once, and those that cannot
    /// get a thread within the wait are answered THROTTLED without running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_is_capped_and_overflow_is_refused_without_hashing() {
        let limits = Limits {
            max_concurrent_password_hashes: 2,
            password_hash_wait: Duration::from_millis(100),
            ..Limits::default()
        };
        let pools = Arc::new(Pools::new(limits).unwrap());
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let mut calls = Vec::new();
        for _ in 0..8 {
            let (pools, running, peak, ran) = (pools.clone(), running.clone(), peak.clone(), ran.clone());
            calls.push(tokio::spawn(async move {
                pools
                    .hash(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        ran.fetch_add(1, Ordering::SeqCst);
                        // Far longer than the wait: whoever did not start at once cannot.
                        let until = Instant::now() + Duration::from_secs(2);
                        while Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }));
        }
        let mut refused = 0;
        for c in calls {
            match c.await.unwrap() {
                Ok(()) => {}
                Err(ServerError::Throttled(_)) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "never more than the cap at once");
        assert_eq!(ran.load(Ordering::SeqCst), 2, "only the admitted calls hashed");
        assert_eq!(refused, 6);
    }
}
