//! The bytes FETCH streams may hold on a storage node (issue 7: stalled clients).
//!
//! A FETCH chunk carries whole message bodies, and a client that stops reading leaves up to
//! three of them on the node (one being produced, one queued, one in the transport's buffers).
//! Without a bound, N stalled clients over large messages hold N × 3 chunks, and a chunk holds at
//! least one whole message (up to the 64 MiB literal limit). So every chunk reserves its bytes
//! (bodies and structures) here *before* they are read from RocksDB, and gives them back once the
//! transport has taken it, or when its stream is dropped (`fetch.rs`).
//!
//! Reservations come from a node-wide [`ByteBudget`] and from the account's share of it (a
//! quarter), taken in that order (account first) so that one user's stalled streams wait behind
//! their own and leave three quarters to everyone else. A chunk larger than the account's share
//! (one message larger than it) reserves the whole share: it is still served, alone. Waiting for
//! bytes holds no thread and no read slot, only the stream's snapshot, and the stream's deadline
//! bounds it like every other wait of a stream.
//!
//! `mailraft_fetch_buffered_bytes` is the number of bytes reserved now.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mailraft_model::Principal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ServerError;

/// Default node-wide budget: 256 MiB.
pub const DEFAULT_FETCH_BUFFER_BYTES: usize = 256 << 20;

/// Each account's semaphore and how many reservations (held or waited for) use it.
type Shares = Arc<Mutex<HashMap<Principal, (Arc<Semaphore>, usize)>>>;

/// The node's FETCH byte budget (module docs).
#[derive(Debug)]
pub struct ByteBudget {
    total: usize,
    per_account: usize,
    global: Arc<Semaphore>,
    shares: Shares,
    held: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl ByteBudget {
    /// A budget of `total` bytes (at least 4, at most 4 GiB: a reservation is a `u32` of
    /// semaphore permits), a quarter of it per account.
    pub fn new(total: usize) -> ByteBudget {
        let total = total.clamp(4, u32::MAX as usize);
        ByteBudget {
            total,
            per_account: total / 4,
            global: Arc::new(Semaphore::new(total)),
            shares: Arc::default(),
            held: Arc::default(),
            peak: Arc::default(),
        }
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
        if n == 0 {
            // FETCH FLAGS and the like: nothing to wait for, even when the budget is spent.
            return Ok(HeldBytes { bytes: 0, global: None, account: None, held: self.held.clone(), _share: share });
        }
        let account = share.semaphore.clone().acquire_many_owned(permits).await.map_err(ServerError::internal)?;
        let global = self.global.clone().acquire_many_owned(permits).await.map_err(ServerError::internal)?;
        let now = self.held.fetch_add(n, Ordering::SeqCst) + n;
        self.peak.fetch_max(now, Ordering::SeqCst);
        crate::metrics::fetch_buffered_bytes(n as f64);
        Ok(HeldBytes { bytes: n, global: Some(global), account: Some(account), held: self.held.clone(), _share: share })
    }
}

/// Bytes of one chunk, reserved in the budget until dropped.
#[derive(Debug)]
pub struct HeldBytes {
    bytes: usize,
    global: Option<OwnedSemaphorePermit>,
    /// Declared before `_share`: fields drop in order, so the account's permits are back before
    /// the share may forget the account.
    account: Option<OwnedSemaphorePermit>,
    held: Arc<AtomicUsize>,
    _share: Share,
}

impl HeldBytes {
    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back all but `bytes` (a chunk that came out smaller than its estimate).
    pub fn shrink_to(&mut self, bytes: usize) {
        let Some(excess) = self.bytes.checked_sub(bytes).filter(|e| *e > 0) else { return };
        for permit in [self.global.as_mut(), self.account.as_mut()].into_iter().flatten() {
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

/// One user of an account's share; the account is forgotten when its last user goes, so the
/// map holds only accounts that are streaming now.
#[derive(Debug)]
struct Share {
    semaphore: Arc<Semaphore>,
    who: Principal,
    shares: Shares,
}

impl Share {
    fn join(shares: &Shares, who: Principal, per_account: usize) -> Share {
        let mut map = shares.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(who).or_insert_with(|| (Arc::new(Semaphore::new(per_account)), 0));
        entry.1 += 1;
        Share { semaphore: entry.0.clone(), who, shares: shares.clone() }
    }
}

impl Drop for Share {
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
    async fn a_cancelled_wait_forgets_the_account() {
        let budget = ByteBudget::new(400);
        let held = budget.reserve(A, 100).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(20), budget.reserve(A, 1)).await;
        assert!(waiting.is_err());
        drop(held);
        assert!(budget.shares.lock().unwrap().is_empty());
    }
}
