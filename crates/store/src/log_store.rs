//! The Raft log and vote on RocksDB (`raft_log` and `raft_meta` column families).
//!
//! Durability contract with openraft: `append` acknowledges (calls the `LogFlushed` callback)
//! only after the entries' `WriteBatch` was written with the WAL fsynced; `save_vote` returns
//! only after the vote is fsynced. Writes that block on an fsync run on tokio's blocking pool so
//! they never stall a runtime worker. openraft serializes the calls (`&mut self`), so no two log
//! writes overlap.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageError};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::db::{self, CF_RAFT_LOG, CF_RAFT_META, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE};
use crate::error::{IntoStorage, Result, StoreError};
use crate::metrics;
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// The Raft log store of one node. Cloning is cheap and yields a reader over the same log.
#[derive(Clone)]
pub struct LogStore {
    /// Shared with the state machine.
    db: Arc<DB>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        LogStore { db }
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

    /// Runs a synced batch on the blocking pool.
    async fn write_sync(&self, batch: WriteBatch) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db::write_sync(&db, batch)).await?
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

    /// Not fsynced: the state machine persists its own position before replying, so a lost
    /// `committed` only means re-learning it from the leader. It reaches disk with the next
    /// synced write anyway (the WAL is sequential).
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
            for entry in entries {
                batch.put_cf(&cf, db::log_key(entry.log_id.index), db::encode(&entry)?);
                count += 1;
            }
            drop(cf);
            self.write_sync(batch).await?;
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
        result.storage(ErrorSubject::Logs, ErrorVerb::Delete)
    }
}
