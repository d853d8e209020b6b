//! Read access to the applied state: the model's [`KvRead`] over RocksDB.
//!
//! Two flavours share one implementation, [`StateRead`]: direct reads of the latest committed
//! state (what `apply` uses, since nothing else writes the state-machine column families while
//! it runs) and point-in-time reads on a RocksDB snapshot (what queries use, so that a query
//! reading several keys never sees half of a concurrently applied batch).
//!
//! `KvRead` cannot return errors (the model is written against an infallible map). A RocksDB
//! failure is therefore logged, remembered in the reader and reported afterwards: `apply` fails
//! the whole batch with it, [`StateView::read`] returns it to the caller.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use mailraft_model::{KvRead, MailboxEvent, Table};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, SnapshotWithThreadMode};
use tokio::sync::broadcast;

use crate::db::{self, CF_SM_STATE, KEY_LAST_APPLIED};
use crate::error::{Result, StoreError};
use crate::metrics;
use crate::types::LogId;

/// A [`KvRead`] over the state-machine column families of one RocksDB instance.
pub struct StateRead<'a> {
    /// The database.
    db: &'a DB,
    /// Pins a point in time; `None` reads the latest committed state.
    snapshot: Option<SnapshotWithThreadMode<'a, DB>>,
    /// First read error, reported by [`StateRead::finish`].
    error: OnceLock<StoreError>,
}

impl<'a> StateRead<'a> {
    /// Reads the latest committed state.
    pub(crate) fn latest(db: &'a DB) -> Self {
        StateRead {
            db,
            snapshot: None,
            error: OnceLock::new(),
        }
    }

    /// Reads the state as of now, unaffected by later writes.
    pub(crate) fn pinned(db: &'a DB) -> Self {
        StateRead {
            db,
            snapshot: Some(db.snapshot()),
            error: OnceLock::new(),
        }
    }

    /// The first read error, if any read failed.
    pub(crate) fn finish(self) -> Result<()> {
        match self.error.into_inner() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn read_options(&self) -> ReadOptions {
        let mut ro = ReadOptions::default();
        if let Some(s) = &self.snapshot {
            ro.set_snapshot(s);
        }
        ro
    }

    fn try_get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = db::table_cf(self.db, table)?;
        Ok(self
            .db
            .get_pinned_cf_opt(&cf, key, &self.read_options())?
            .map(|v| v.to_vec()))
    }

    fn try_scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cf = db::table_cf(self.db, table)?;
        let mut ro = self.read_options();
        if let Some(end) = end {
            // The bound stops RocksDB itself, so no key past `end` is ever loaded (blob values
            // in particular).
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(&cf, ro, IteratorMode::From(start, Direction::Forward))
            .take(limit)
        {
            let (k, v) = item?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// Index of the last applied entry as seen by this reader (0 before the first), read from
    /// the same point in time as every other read of a pinned reader.
    pub fn applied_index(&self) -> Result<u64> {
        let cf = db::cf(self.db, CF_SM_STATE)?;
        let applied: Option<LogId> = match self.db.get_pinned_cf_opt(&cf, KEY_LAST_APPLIED, &self.read_options())? {
            Some(bytes) => Some(postcard::from_bytes(&bytes)?),
            None => None,
        };
        Ok(applied.map(|l| l.index).unwrap_or(0))
    }

    fn fail(&self, e: StoreError) {
        tracing::error!(error = %e, "state machine read failed");
        metrics::read_error();
        // Only the first error is kept: later ones are usually consequences of it.
        let _ = self.error.set(e);
    }
}

impl KvRead for StateRead<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        self.try_get(table, key).unwrap_or_else(|e| {
            self.fail(e);
            None
        })
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.try_scan(table, start, end, limit).unwrap_or_else(|e| {
            self.fail(e);
            Vec::new()
        })
    }
}

/// The dependent half of [`PinnedView`]: a pinned reader borrowing the database it owns.
type PinnedRead<'a> = StateRead<'a>;

self_cell::self_cell!(
    /// A RocksDB snapshot together with the database handle it borrows.
    struct PinnedCell {
        owner: Arc<DB>,
        #[covariant]
        dependent: PinnedRead,
    }
);

/// An owned point-in-time view of the applied state, for reads that span several steps (a
/// FETCH stream reads its messages chunk by chunk, with waits for the client in between).
///
/// It can move between threads and outlive the call that took it, so a reader need not hold
/// a thread while it waits. It pins a RocksDB snapshot, which keeps every version it can see
/// (and the files holding them) alive: drop it as soon as the read is over, and bound how long
/// a reader may keep it ([`PinnedView::age`]).
pub struct PinnedView {
    cell: PinnedCell,
    taken: Instant,
}

impl std::fmt::Debug for PinnedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedView").field("age", &self.taken.elapsed()).finish_non_exhaustive()
    }
}

impl PinnedView {
    /// Runs `f` on the pinned state; fails if a read inside failed (then `f`'s result may be
    /// built on missing data and is dropped). Blocks on RocksDB: call it off the async runtime.
    pub fn read<T>(&mut self, f: impl FnOnce(&StateRead<'_>) -> T) -> Result<T> {
        let out = f(self.cell.borrow_dependent());
        match self.cell.with_dependent_mut(|_, kv| kv.error.take()) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// How long ago the snapshot was taken.
    pub fn age(&self) -> std::time::Duration {
        self.taken.elapsed()
    }
}

/// A cheap, cloneable handle on a node's applied state for queries and watchers. It stays valid
/// after the [`crate::StateMachineStore`] has been moved into the Raft instance.
#[derive(Clone)]
pub struct StateView {
    /// Shared with the log store and the state machine.
    db: Arc<DB>,
    /// Sender side of the state machine's event channel, to hand out receivers.
    events: broadcast::Sender<MailboxEvent>,
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateView").finish_non_exhaustive()
    }
}

impl StateView {
    pub(crate) fn new(db: Arc<DB>, events: broadcast::Sender<MailboxEvent>) -> Self {
        StateView { db, events }
    }

    /// Runs `f` on a point-in-time view of the applied state; fails if any read inside failed
    /// (then `f`'s result may be built on missing data and is dropped).
    ///
    /// This is the way to run `mailraft_model::query` functions: every key they read comes from
    /// the same committed batch boundary.
    pub fn read<T>(&self, f: impl FnOnce(&StateRead<'_>) -> T) -> Result<T> {
        let kv = StateRead::pinned(&self.db);
        let out = f(&kv);
        kv.finish()?;
        Ok(out)
    }

    /// Pins the state as of now in an owned view (see [`PinnedView`]). Taking a RocksDB
    /// snapshot does no I/O, so this may run on the async runtime.
    pub fn pin(&self) -> PinnedView {
        PinnedView { cell: PinnedCell::new(self.db.clone(), |db| StateRead::pinned(db)), taken: Instant::now() }
    }

    /// Events of every batch applied from now on (see [`crate::StateMachineStore::subscribe`]).
    pub fn subscribe(&self) -> broadcast::Receiver<MailboxEvent> {
        self.events.subscribe()
    }

    /// The id of the last entry applied to this node's state.
    pub fn last_applied(&self) -> Result<Option<LogId>> {
        db::get_value(&self.db, CF_SM_STATE, KEY_LAST_APPLIED)
    }

    /// Sets the `mailraft_rocksdb_size_bytes{cf}` gauges; cheap, call it periodically.
    pub fn report_sizes(&self) {
        metrics::report_sizes(&self.db);
    }

    /// Ids of the nodes that have left the membership as far as this node has applied (kept
    /// with the state, so snapshots carry them too). One point read.
    pub fn retired_nodes(&self) -> Result<std::collections::BTreeSet<u64>> {
        crate::state_machine::retired_nodes(&self.db)
    }
}

/// Latest-committed reads. Each call is atomic with respect to applied batches, but two calls
/// may straddle one; use [`StateView::read`] when that matters. Read errors are logged and
/// yield "absent".
impl KvRead for StateView {
    fn get(&self, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        StateRead::latest(&self.db).get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        StateRead::latest(&self.db).scan(table, start, end, limit)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mailraft_model::{KvRead, MemKv, Table, WriteSet};
    use proptest::prelude::*;
    use rocksdb::WriteBatch;

    use super::StateRead;
    use crate::db;

    /// Small keys over a tiny alphabet, so that random scans hit, straddle and miss keys.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..4, 0..4)
    }

    fn table() -> impl Strategy<Value = Table> {
        prop::sample::select(vec![Table::Messages, Table::BlobData, Table::Meta])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// RocksDB reads, latest and pinned, answer exactly like the model's reference `MemKv`,
        /// including `end` bounds and `limit`.
        #[test]
        fn rocks_reads_match_memkv(
            ops in proptest::collection::vec((table(), key(), proptest::option::of(key())), 0..40),
            scans in proptest::collection::vec((table(), key(), proptest::option::of(key()), 0usize..6), 1..20),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let rocks = db::open_db(dir.path()).expect("open");
            let mut ws = WriteSet::default();
            for (t, k, v) in &ops {
                match v {
                    Some(v) => ws.put(*t, k.clone(), v.clone()),
                    None => ws.delete(*t, k.clone()),
                }
            }
            let mut batch = WriteBatch::default();
            for ((t, k), v) in &ws.ops {
                let cf = db::table_cf(&rocks, *t).expect("cf");
                match v {
                    Some(v) => batch.put_cf(&cf, k, v),
                    None => batch.delete_cf(&cf, k),
                }
            }
            db::write_sync(&rocks, batch).expect("write");
            let mut mem = MemKv::default();
            mem.commit(ws);

            let pinned = StateRead::pinned(&rocks);
            let latest = StateRead::latest(&rocks);
            for (t, start, end, limit) in &scans {
                let want = mem.scan(*t, start, end.as_deref(), *limit);
                prop_assert_eq!(&pinned.scan(*t, start, end.as_deref(), *limit), &want);
                prop_assert_eq!(&latest.scan(*t, start, end.as_deref(), *limit), &want);
                prop_assert_eq!(pinned.get(*t, start), mem.get(*t, start));
            }
            let all: BTreeMap<_, _> = mem.data.clone();
            for ((t, k), v) in &all {
                prop_assert_eq!(latest.get(*t, k), Some(v.clone()));
            }
            pinned.finish().expect("no read error");
            latest.finish().expect("no read error");
        }
    }

    #[test]
    fn owned_pinned_view_ignores_later_writes_across_threads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rocks = db::open_db(dir.path()).expect("open");
        let cf = db::table_cf(&rocks, Table::Meta).expect("cf");
        rocks.put_cf(&cf, b"k", b"old").expect("put");
        let (events, _) = tokio::sync::broadcast::channel(1);
        let mut view = super::StateView::new(rocks.clone(), events).pin();
        rocks.put_cf(&cf, b"k", b"new").expect("put");
        drop(cf);
        // The view moves to another thread, as a FETCH stream's chunks run on the blocking pool.
        let (got, view) = std::thread::spawn(move || (view.read(|kv| kv.get(Table::Meta, b"k")), view))
            .join()
            .expect("thread");
        assert_eq!(got.expect("read"), Some(b"old".to_vec()));
        drop(view);
        drop(rocks);
    }

    #[test]
    fn pinned_read_ignores_later_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rocks = db::open_db(dir.path()).expect("open");
        let cf = db::table_cf(&rocks, Table::Meta).expect("cf");
        rocks.put_cf(&cf, b"k", b"old").expect("put");
        let pinned = StateRead::pinned(&rocks);
        rocks.put_cf(&cf, b"k", b"new").expect("put");
        rocks.put_cf(&cf, b"l", b"added").expect("put");
        assert_eq!(pinned.get(Table::Meta, b"k"), Some(b"old".to_vec()));
        assert_eq!(pinned.scan(Table::Meta, b"", None, 10).len(), 1);
        assert_eq!(
            StateRead::latest(&rocks).get(Table::Meta, b"k"),
            Some(b"new".to_vec())
        );
    }
}
