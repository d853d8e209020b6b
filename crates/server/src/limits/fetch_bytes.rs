//! The bytes FETCH streams may hold on a storage node (issue 7: stalled clients).
//!
//! A FETCH chunk carries whole message bodies, and a client that stops reading leaves up to
//! three of them on the node (one being produced, one queued, one in the transport's buffers).
//! Without a bound, N stalled clients over large messages hold N × 3 chunks, and a chunk holds at
//! least one whole message (up to the 64 MiB literal limit). So every chunk reserves its bytes
//! (bodies and structures) here *before* they are read from RocksDB, and gives them back once the
//! transport has taken it, or when its stream is dropped (`fetch.rs`).
//!
//! Reservations come from a node-wide [`ByteBudget`], from the tenant's share of it (a half) and
//! from the account's share (a quarter), taken account first, then tenant, then node, so that one
//! user's stalled streams wait behind their own and leave three quarters to everyone else, and
//! the accounts of one tenant together leave half to the other tenants. A chunk is at most
//! `CHUNK_BYTES` unless one message alone is larger; a chunk larger than the account's share
//! reserves the whole share: it is still served, alone. Waiting for bytes holds no thread and no
//! read slot, only the stream's snapshot, and the stream's deadline bounds it like every other
//! wait of a stream; at the deadline the stream gives back every byte it holds, whether or not
//! the client ever reads again (`fetch.rs`).
//!
//! An account may also have at most [`FETCH_STREAMS_PER_ACCOUNT`] FETCH streams open at once
//! ([`ByteBudget::open_stream`]): each pins a RocksDB snapshot, and the byte share alone does not
//! bound how many snapshots a user's stalled FETCH FLAGS streams keep. More are refused with
//! `LIMIT`, and the front-end answers `NO [LIMIT]`.
//!
//! What remains possible: accounts of two tenants (or four accounts) that stall enough streams
//! fill the node's budget until their streams' deadline, and other FETCHes wait (never fail, and
//! writes are not affected) until bytes come back. The budget bounds memory; it does not promise
//! every reader a share of it.
//!
//! `mailraft_fetch_buffered_bytes` is the number of bytes reserved now.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mailraft_model::{ModelError, Principal, TenantId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ServerError;

/// Default node-wide budget: 256 MiB.
pub const DEFAULT_FETCH_BUFFER_BYTES: usize = 256 << 20;

/// Most FETCH streams one account may have open on a node. IMAP clients open a handful of
/// connections per account (Thunderbird 5 by default) and each runs one command at a time.
pub const FETCH_STREAMS_PER_ACCOUNT: usize = 32;

/// Each account's (or tenant's) semaphore and how many reservations (held or waited for) use it.
type Shares<K> = Arc<Mutex<HashMap<K, (Arc<Semaphore>, usize)>>>;

/// The node's FETCH byte budget (module docs).
#[derive(Debug)]
pub struct ByteBudget {
    total: usize,
    per_account: usize,
    per_tenant: usize,
    global: Arc<Semaphore>,
    shares: Shares<Principal>,
    tenants: Shares<TenantId>,
    streams: Arc<Mutex<HashMap<Principal, usize>>>,
    held: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl ByteBudget {
    /// A budget of `total` bytes (at least 4, at most 4 GiB: a reservation is a `u32` of
    /// semaphore permits), a half of it per tenant and a quarter per account.
    pub fn new(total: usize) -> ByteBudget {
        let total = total.clamp(4, u32::MAX as usize);
        ByteBudget {
            total,
            per_account: total / 4,
            per_tenant: total / 2,
            global: Arc::new(Semaphore::new(total)),
            shares: Arc::default(),
            tenants: Arc::default(),
            streams: Arc::default(),
            held: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// Registers one more FETCH stream of `who`; `LIMIT` when the account has
    /// [`FETCH_STREAMS_PER_ACCOUNT`] open already. The stream counts until the permit drops.
    pub fn open_stream(&self, who: Principal) -> Result<StreamPermit, ServerError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let open = streams.entry(who).or_insert(0);
        if *open >= FETCH_STREAMS_PER_ACCOUNT {
            return Err(ModelError::Limit(format!("at most {FETCH_STREAMS_PER_ACCOUNT} FETCH commands of one account at once")).into());
        }
        *open += 1;
        Ok(StreamPermit { who, streams: self.streams.clone() })
    }

    /// The node-wide budget.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Most one account's streams hold at once.
    pub fn per_account(&self) -> usize {
        self.per_account
    }

    /// Bytes reserved now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Most bytes ever reserved at once (tests and diagnostics).
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Reserves `bytes` for `who` (at most the account's share), waiting as long as the caller
    /// does; dropping the future gives back whatever it got.
    pub async fn reserve(&self, who: Principal, bytes: usize) -> Result<HeldBytes, ServerError> {
        let n = bytes.min(self.per_account);
        let permits = u32::try_from(n).map_err(ServerError::internal)?;
        // Registered before waiting, so a cancelled wait still unregisters (in `Share::drop`).
        let share = Share::join(&self.shares, who, self.per_account);
        let tenant_share = Share::join(&self.tenants, who.tenant, self.per_tenant);
        if n == 0 {
            return Ok(HeldBytes {
                bytes: 0,
                permits: Vec::new(),
                held: self.held.clone(),
                _shares: (share, tenant_share),
            });
        }
        let account = share.semaphore.clone().acquire_many_owned(permits).await.map_err(ServerError::internal)?;
        let tenant = tenant_share.semaphore.clone().acquire_many_owned(permits).await.map_err(ServerError::internal)?;
        let global = self.global.clone().acquire_many_owned(permits).await.map_err(ServerError::internal)?;
        let now = self.held.fetch_add(n, Ordering::SeqCst) + n;
        self.peak.fetch_max(now, Ordering::SeqCst);
        crate::metrics::fetch_buffered_bytes(n as f64);
        Ok(HeldBytes {
            bytes: n,
            permits: vec![global, tenant, account],
            held: self.held.clone(),
            _shares: (share, tenant_share),
        })
    }
}

/// Bytes of one chunk, reserved in the budget until dropped.
#[derive(Debug)]
pub struct HeldBytes {
    bytes: usize,
    /// Node, tenant and account permits. Declared before `_shares`: fields drop in order, so the
    /// permits are back before the shares may forget the account and the tenant.
    permits: Vec<OwnedSemaphorePermit>,
    held: Arc<AtomicUsize>,
    _shares: (Share<Principal>, Share<TenantId>),
}

impl HeldBytes {
    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back all but `bytes` (a chunk that came out smaller than its estimate).
    pub fn shrink_to(&mut self, bytes: usize) {
        let Some(excess) = self.bytes.checked_sub(bytes).filter(|e| *e > 0) else { return };
        for permit in &mut self.permits {
            drop(permit.split(excess));
        }
        self.bytes = bytes;
        self.held.fetch_sub(excess, Ordering::SeqCst);
        crate::metrics::fetch_buffered_bytes(-(excess as f64));
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::SeqCst);
        crate::metrics::fetch_buffered_bytes(-(self.bytes as f64));
    }
}

/// One open FETCH stream of an account ([`ByteBudget::open_stream`]).
#[derive(Debug)]
pub struct StreamPermit {
    who: Principal,
    streams: Arc<Mutex<HashMap<Principal, usize>>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = streams.get_mut(&self.who) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.who);
            }
        }
    }
}

/// One user of an account's (or tenant's) share; the key is forgotten when its last user goes,
/// so the map holds only accounts and tenants that are streaming now.
#[derive(Debug)]
struct Share<K: Eq + Hash + Copy> {
    semaphore: Arc<Semaphore>,
    who: K,
    shares: Shares<K>,
}

impl<K: Eq + Hash + Copy> Share<K> {
    fn join(shares: &Shares<K>, who: K, size: usize) -> Share<K> {
        let mut map = shares.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(who).or_insert_with(|| (Arc::new(Semaphore::new(size)), 0));
        entry.1 += 1;
        Share { semaphore: entry.0.clone(), who, shares: shares.clone() }
    }
}

impl<K: Eq + Hash + Copy> Drop for Share<K> {
    fn drop(&mut self) {
        let mut map = self.shares.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get_mut(&self.who) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                map.remove(&self.who);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    const A: Principal = Principal { tenant: 1, account: 1 };
    const B: Principal = Principal { tenant: 1, account: 2 };

    #[tokio::test]
    async fn an_account_holds_at_most_its_share_and_others_get_the_rest() {
        let budget = ByteBudget::new(400);
        let a1 = budget.reserve(A, 60).await.unwrap();
        let a2 = budget.reserve(A, 40).await.unwrap();
        // A's share (100) is spent: its next chunk waits, B's does not.
        let mut a3 = std::pin::pin!(budget.reserve(A, 1));
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut a3).await.is_err(), "A got more than its share");
        let b = budget.reserve(B, 100).await.unwrap();
        // A chunk of no bytes (flags only) does not wait, even with A's share spent.
        assert_eq!(budget.reserve(A, 0).await.unwrap().bytes(), 0);
        assert_eq!((budget.held(), budget.peak()), (200, 200));
        drop(a1);
        let a3 = a3.await.unwrap();
        assert_eq!(budget.held(), 141);
        drop((a3, b, a2));
        assert_eq!(budget.held(), 0);
        assert!(budget.shares.lock().unwrap().is_empty(), "idle accounts are forgotten");
    }

    #[tokio::test]
    async fn a_chunk_over_the_share_takes_the_whole_share_and_shrinks() {
        let budget = ByteBudget::new(400);
        let mut big = budget.reserve(A, 10_000).await.unwrap();
        assert_eq!(big.bytes(), 100);
        big.shrink_to(30);
        assert_eq!((big.bytes(), budget.held()), (30, 30));
        // The 70 given back are usable again.
        let other = budget.reserve(A, 70).await.unwrap();
        drop((big, other));
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn the_accounts_of_one_tenant_hold_at_most_half() {
        let budget = ByteBudget::new(400);
        let c = Principal { tenant: 1, account: 3 };
        let other_tenant = Principal { tenant: 2, account: 1 };
        let a = budget.reserve(A, 100).await.unwrap();
        let b = budget.reserve(B, 100).await.unwrap();
        // Tenant 1 holds its half: its third account waits although its own share is free …
        let mut c1 = std::pin::pin!(budget.reserve(c, 1));
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut c1).await.is_err(), "tenant 1 got more than half");
        // … and another tenant does not.
        let d = budget.reserve(other_tenant, 100).await.unwrap();
        drop(a);
        let c1 = c1.await.unwrap();
        drop((b, c1, d));
        assert_eq!(budget.held(), 0);
        assert!(budget.tenants.lock().unwrap().is_empty(), "idle tenants are forgotten");
    }

    #[test]
    fn an_account_has_a_bounded_number_of_streams() {
        let budget = ByteBudget::new(400);
        let mut open: Vec<_> = (0..FETCH_STREAMS_PER_ACCOUNT).map(|_| budget.open_stream(A).unwrap()).collect();
        let refused = budget.open_stream(A).unwrap_err();
        assert!(matches!(refused, ServerError::Model(ModelError::Limit(_))), "{refused:?}");
        // Other accounts are not affected, and a closed stream frees exactly its place.
        drop(budget.open_stream(B).unwrap());
        open.pop();
        open.push(budget.open_stream(A).unwrap());
        assert!(budget.open_stream(A).is_err());
        drop(open);
        assert!(budget.streams.lock().unwrap().is_empty(), "idle accounts are forgotten");
    }

    #[tokio::test]
    async fn a_cancelled_wait_forgets_the_account() {
        let budget = ByteBudget::new(400);
        let held = budget.reserve(A, 100).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(20), budget.reserve(A, 1)).await;
        assert!(waiting.is_err());
        drop(held);
        assert!(budget.shares.lock().unwrap().is_empty());
    }
}
