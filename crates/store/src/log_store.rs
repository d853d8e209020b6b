//! The Raft log and vote on RocksDB (`raft_log` and `raft_meta` column families).
//!
//! Durability contract with openraft: `append` acknowledges (calls the `LogFlushed` callback)
//! only after the entries' `WriteBatch` was written with the WAL fsynced; `save_vote` returns
//! only after the vote is fsynced. Writes that block on an fsync run on the log's own thread
//! ([`Executor`] `raft_log`), never on tokio's shared blocking pool: however many reads or
//! password hashes are queued there, a log write never waits behind them. openraft serializes
//! the calls (`&mut self`), so no two log writes overlap and one thread is enough.
//!
//! Log size: [`LogBytes`] keeps, per append batch, the index range and encoded size of the
//! entries still in the log (seeded from the log at open, trimmed by `truncate` and `purge`), so
//! the node can ask how many bytes follow its last snapshot and trigger a snapshot by size.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageError};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::db::{self, CF_RAFT_LOG, CF_RAFT_META, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE};
use crate::error::{IntoStorage, Result, StoreError};
use crate::metrics;
use crate::pool::Executor;
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// The Raft log store of one node. Cloning is cheap and yields a reader over the same log.
#[derive(Clone)]
pub struct LogStore {
    /// Shared with the state machine.
    db: Arc<DB>,
    /// Sizes of the entries in the log.
    bytes: LogBytes,
    /// The thread that runs synced log writes.
    io: Executor,
}

/// How many bytes of Raft log entries the store holds, by index: for compacting the log by
/// size. Cloning yields a handle on the same counts; take one with [`LogStore::log_bytes`]
/// before the log store moves into Raft.
///
/// Sizes are postcard-encoded entry sizes (what the log stores, before RocksDB compression),
/// counted per append batch: a batch that straddles the index asked about counts whole, so
/// the answer may be a little high, never low.
#[derive(Clone, Default)]
pub struct LogBytes {
    /// Append batches in index order.
    spans: Arc<Mutex<VecDeque<Span>>>,
}

/// One append batch (or, for entries found at open, one entry).
#[derive(Debug, Clone, Copy)]
struct Span {
    first: u64,
    last: u64,
    bytes: u64,
}

impl Debug for LogBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBytes")
            .field("total", &self.since(None))
            .finish()
    }
}

impl LogBytes {
    fn spans(&self) -> std::sync::MutexGuard<'_, VecDeque<Span>> {
        // The deque is consistent after every operation, so a panic elsewhere cannot leave it
        // half-updated.
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes of the log entries with an index above `index` (`None`: all of them). With the
    /// index of the last snapshot, this is what a new snapshot would let the log drop:
    /// `if log_bytes.since(metrics.snapshot.map(|id| id.index)) > limit { raft.trigger().snapshot() }`.
    pub fn since(&self, index: Option<u64>) -> u64 {
        self.spans()
            .iter()
            .rev()
            .take_while(|s| index.is_none_or(|i| s.last > i))
            .map(|s| s.bytes)
            .sum()
    }

    fn appended(&self, first: u64, last: u64, bytes: u64) {
        let mut spans = self.spans();
        // openraft truncates before it overwrites, but a stale span must never hide a new one.
        while spans.back().is_some_and(|s| s.last >= first) {
            spans.pop_back();
        }
        spans.push_back(Span { first, last, bytes });
    }

    /// Entries from `index` on were deleted.
    fn truncated(&self, index: u64) {
        let mut spans = self.spans();
        while spans.back().is_some_and(|s| s.first >= index) {
            spans.pop_back();
        }
    }

    /// Entries up to and including `index` were deleted.
    fn purged(&self, index: u64) {
        let mut spans = self.spans();
        while spans.front().is_some_and(|s| s.last <= index) {
            spans.pop_front();
        }
    }
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Wraps the shared database; reads the sizes of the entries already in the log. Synced
    /// writes run on `io`.
    pub(crate) fn new(db: Arc<DB>, io: Executor) -> Result<Self> {
        let bytes = LogBytes::default();
        {
            let cf = db::cf(&db, CF_RAFT_LOG)?;
            let mut spans = bytes.spans();
            let mut it = db.raw_iterator_cf(&cf);
            it.seek_to_first();
            while let (Some(key), Some(value)) = (it.key(), it.value()) {
                let index = decode_index(key)?;
                spans.push_back(Span {
                    first: index,
                    last: index,
                    bytes: value.len() as u64,
                });
                it.next();
            }
            it.status()?;
        }
        Ok(LogStore { db, bytes, io })
    }

    /// A handle on the sizes of the entries in this log (see [`LogBytes`]).
    pub fn log_bytes(&self) -> LogBytes {
        self.bytes.clone()
    }

    /// Entries with index in `[start, end)` (`end = None`: to the last), ascending.
    fn read_range(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>> {
        let cf = db::cf(&self.db, CF_RAFT_LOG)?;
        let from = db::log_key(start);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item?;
            let index = decode_index(&key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry: Entry = postcard::from_bytes(&value)?;
            if entry.log_id.index != index {
                return Err(StoreError::Corrupt(format!(
                    "log key {index} holds entry {}",
                    entry.log_id
                )));
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Id of the last entry present in the log.
    fn last_entry_id(&self) -> Result<Option<LogId>> {
        let cf = db::cf(&self.db, CF_RAFT_LOG)?;
        match self.db.iterator_cf(&cf, IteratorMode::End).next() {
            Some(item) => {
                let (_, value) = item?;
                let entry: Entry = postcard::from_bytes(&value)?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }

    /// Runs a synced batch on the log's thread.
    async fn write_sync(&self, batch: WriteBatch) -> Result<()> {
        let db = self.db.clone();
        self.io.run(move || db::write_sync(&db, batch)).await?
    }
}

/// Decodes a `raft_log` key.
fn decode_index(key: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("raft log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(arr))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e.saturating_add(1)),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        self.read_range(start, end)
            .storage(ErrorSubject::Logs, ErrorVerb::Read)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged_log_id: Option<LogId> =
            db::get_value(&self.db, CF_RAFT_META, KEY_LAST_PURGED)
                .storage(ErrorSubject::Logs, ErrorVerb::Read)?;
        let last = self
            .last_entry_id()
            .storage(ErrorSubject::Logs, ErrorVerb::Read)?;
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<u64>> {
        let result = async {
            let mut batch = WriteBatch::default();
            batch.put_cf(
                &db::cf(&self.db, CF_RAFT_META)?,
                KEY_VOTE,
                db::encode(vote)?,
            );
            self.write_sync(batch).await
        }
        .await;
        result.storage(ErrorSubject::Vote, ErrorVerb::Write)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<u64>> {
        db::get_value(&self.db, CF_RAFT_META, KEY_VOTE).storage(ErrorSubject::Vote, ErrorVerb::Read)
    }

    /// Not fsynced: a lost `committed` only means re-learning it from the leader (or, on a
    /// single node, re-committing on election), after which openraft re-applies the log from
    /// the durable `last_applied`. It reaches disk with the next synced write anyway (the WAL
    /// is sequential).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<u64>> {
        let result = (|| -> Result<()> {
            let cf = db::cf(&self.db, CF_RAFT_META)?;
            let mut batch = WriteBatch::default();
            match committed {
                Some(id) => batch.put_cf(&cf, KEY_COMMITTED, db::encode(&id)?),
                None => batch.delete_cf(&cf, KEY_COMMITTED),
            }
            self.db.write_opt(batch, &WriteOptions::default())?;
            Ok(())
        })();
        result.storage(ErrorSubject::Store, ErrorVerb::Write)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<u64>> {
        db::get_value(&self.db, CF_RAFT_META, KEY_COMMITTED)
            .storage(ErrorSubject::Store, ErrorVerb::Read)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = Instant::now();
        let result = async {
            let cf = db::cf(&self.db, CF_RAFT_LOG)?;
            let mut batch = WriteBatch::default();
            let mut count = 0usize;
            let mut span: Option<Span> = None;
            for entry in entries {
                let value = db::encode(&entry)?;
                let index = entry.log_id.index;
                let s = span.get_or_insert(Span {
                    first: index,
                    last: index,
                    bytes: 0,
                });
                s.last = index;
                s.bytes += value.len() as u64;
                batch.put_cf(&cf, db::log_key(index), value);
                count += 1;
            }
            drop(cf);
            self.write_sync(batch).await?;
            if let Some(s) = span {
                self.bytes.appended(s.first, s.last, s.bytes);
            }
            Ok::<usize, StoreError>(count)
        }
        .await;
        match result {
            Ok(count) => {
                metrics::appended(count, started.elapsed());
                // Only now are the entries durable: openraft may count this node in a quorum.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        tracing::debug!(from = %log_id, "truncating raft log");
        let result = async {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                &db::cf(&self.db, CF_RAFT_LOG)?,
                db::log_key(log_id.index),
                db::log_key(u64::MAX),
            );
            self.write_sync(batch).await
        }
        .await;
        if result.is_ok() {
            self.bytes.truncated(log_id.index);
        }
        result.storage(ErrorSubject::Logs, ErrorVerb::Delete)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        tracing::debug!(upto = %log_id, "purging raft log");
        let result = async {
            let mut batch = WriteBatch::default();
            // The marker and the deletion go in one batch, so the log never looks like it has a
            // hole at its start.
            batch.put_cf(
                &db::cf(&self.db, CF_RAFT_META)?,
                KEY_LAST_PURGED,
                db::encode(&log_id)?,
            );
            batch.delete_range_cf(
                &db::cf(&self.db, CF_RAFT_LOG)?,
                db::log_key(0),
                db::log_key(log_id.index.saturating_add(1)),
            );
            self.write_sync(batch).await
        }
        .await;
        if result.is_ok() {
            self.bytes.purged(log_id.index);
        }
        result.storage(ErrorSubject::Logs, ErrorVerb::Delete)
    }
}

#[cfg(test)]
mod tests {
    use super::LogBytes;

    #[test]
    fn log_bytes_follow_append_truncate_purge() {
        let b = LogBytes::default();
        b.appended(1, 3, 300);
        b.appended(4, 4, 40);
        b.appended(5, 9, 500);
        assert_eq!(b.since(None), 840);
        assert_eq!(b.since(Some(3)), 540);
        assert_eq!(b.since(Some(4)), 500);
        // A batch straddling the index counts whole: high, never low.
        assert_eq!(b.since(Some(6)), 500);
        assert_eq!(b.since(Some(9)), 0);

        b.truncated(5);
        assert_eq!(b.since(None), 340);
        b.appended(5, 5, 7);
        assert_eq!(b.since(Some(4)), 7);
        // Overwriting without a truncate first replaces the stale batches.
        b.appended(4, 4, 1);
        assert_eq!(b.since(None), 301);

        b.purged(3);
        assert_eq!(b.since(None), 1);
        b.purged(10);
        assert_eq!(b.since(None), 0);
    }
}
