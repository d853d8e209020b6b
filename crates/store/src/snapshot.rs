//! State-machine snapshots in bounded memory: building one from a RocksDB snapshot into a file,
//! installing one from a file, and keeping the current one (layout in `snapshot/format.rs`,
//! files in `snapshot/files.rs`).
//!
//! Memory: a build or an install holds one I/O buffer ([`IO_BUFFER`]), the largest single
//! key/value, and on install one RocksDB write batch of about [`BATCH_BYTES`], whatever the
//! size of the state. A snapshot is never a `Vec<u8>`.
//!
//! ## Build
//! Under the shared install lock (so never in the middle of an install) take a RocksDB snapshot
//! and read `last_applied`/`last_membership` from it; then, without the lock, iterate every
//! state-machine column family of that snapshot into `tmp-build-N` through a buffered,
//! checksumming writer, fsync, and rename it to `current.snap` (unless a newer snapshot became
//! current meanwhile). The data and its meta come from one RocksDB snapshot, so they agree.
//!
//! ## Install
//! 1. Stage: the received file is fsynced and renamed to `installing.snap` (a foreign handle is
//!    copied there), then the directory is fsynced.
//! 2. Verify: one read pass checks the header against the meta openraft gave, every record, the
//!    record count and the CRC-32C trailer, and then the state's feature level
//!    (`mailraft_model::feature`). A truncated or damaged file, or one at a level this binary
//!    cannot apply, fails here, before the database is touched, and `installing.snap` is removed.
//! 3. Apply, in RocksDB write batches of about [`BATCH_BYTES`]:
//!    - batch 1 (fsynced) deletes every state-machine key (range tombstones) and writes the
//!      `install_in_progress` marker (the snapshot id) and the format version;
//!    - the following batches write the file's key/values, except the `sm_state` bookkeeping
//!      keys (`last_applied`, `last_membership`, the marker, the format version);
//!    - the last batch (fsynced) writes `last_applied` and `last_membership` from the meta and
//!      deletes the marker.
//! 4. Promote: `installing.snap` is renamed to `current.snap`.
//!
//! ## Why a crash at any point is safe
//! RocksDB recovers a prefix of the writes (one WAL, replayed in order; the first and last
//! batches are fsynced), so after a crash the database is in one of three states:
//! - before batch 1: the old state, complete, without the marker. A leftover `installing.snap`
//!   is removed at open, unless `last_applied` already equals its meta (the crash came after
//!   step 3), in which case it becomes `current.snap`. openraft then asks for the snapshot again
//!   or carries on.
//! - between batch 1 and the last batch: the marker is set and the state machine is a mix. This
//!   state is never served: [`recover`] runs inside [`crate::open`] before openraft or any reader
//!   sees the database, finds the marker, and re-runs step 3 from `installing.snap` (staged and
//!   fsynced before batch 1 was written, and verified; the marker names its snapshot id). Rolling
//!   forward rather than back is required: openraft may already have purged the log the
//!   snapshot covers, so the old state could not be rebuilt from the log. If the file is missing
//!   or does not match the marker, [`crate::open`] fails with [`StoreError::Corrupt`] rather
//!   than serve a partial state: the node must be wiped and re-added.
//! - after the last batch: the new state, complete; `last_applied` matches the snapshot.
//!
//! Readers on this node may see a partial state while an install runs. Only a follower or a
//! learner installs snapshots and queries are served by the leader, so none are affected.

mod crc32c;
mod files;
mod format;
mod restore;

use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mailraft_model::{Table, keys};
use openraft::{ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageError};
use rocksdb::{DB, IteratorMode, ReadOptions, WriteBatch};

pub use files::SnapshotData;
pub(crate) use files::SnapshotFiles;
pub use restore::{BackupInfo, restore_backup, verify_backup, verify_backup_file};
use format::{FormatReader, FormatWriter, Record};

use crate::db::{
    self, CF_SM_STATE, FORMAT_VERSION, KEY_FORMAT_VERSION, KEY_LAST_APPLIED, KEY_LAST_MEMBERSHIP,
};
use crate::error::{IntoStorage, Result, StoreError};
use crate::metrics;
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// Size of the read or write buffer of one build, install or copy: the snapshot memory budget.
pub const IO_BUFFER: usize = 1 << 20;
/// An install writes a batch once it holds this many bytes.
pub const BATCH_BYTES: usize = 4 << 20;
/// `sm_state` key set while an install is between its first and last batch; holds the
/// snapshot id (postcard string). See the module docs.
pub(crate) const KEY_INSTALLING: &[u8] = b"install_in_progress";

/// `sm_state` keys that describe this database rather than the replicated state: an install
/// does not copy them from the file.
fn is_bookkeeping(cf: &str, key: &[u8]) -> bool {
    cf == CF_SM_STATE
        && [
            KEY_FORMAT_VERSION,
            KEY_LAST_APPLIED,
            KEY_LAST_MEMBERSHIP,
            KEY_INSTALLING,
        ]
        .contains(&key)
}

/// Builds a snapshot of the state machine as of now into the snapshot directory; returns it
/// and its size in bytes.
pub(crate) fn build(db: &DB, files: &SnapshotFiles) -> Result<(Snapshot, u64)> {
    let snap = {
        let _guard = files.build_guard()?;
        db.snapshot()
    };
    let read_opts = || {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        // A full scan must not evict the working set from the block cache.
        ro.fill_cache(false);
        ro
    };
    let sm_state = db::cf(db, CF_SM_STATE)?;
    let get = |key: &[u8]| -> Result<Option<Vec<u8>>> {
        Ok(db.get_cf_opt(&sm_state, key, &read_opts())?)
    };
    let last_log_id: Option<LogId> = get(KEY_LAST_APPLIED)?
        .map(|b| postcard::from_bytes(&b))
        .transpose()?;
    let last_membership: StoredMembership = get(KEY_LAST_MEMBERSHIP)?
        .map(|b| postcard::from_bytes(&b))
        .transpose()?
        .unwrap_or_default();
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let snapshot_id = match &last_log_id {
        Some(id) => format!("{}-{}-{millis}", id.leader_id, id.index),
        None => format!("none-{millis}"),
    };
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    };

    let tmp = files.tmp_path("build");
    let written = (|| -> Result<u64> {
        let file = crate::private_fs::create_file(&tmp)?;
        let mut w = FormatWriter::new(BufWriter::with_capacity(IO_BUFFER, file), &meta)?;
        for name in db::state_machine_cfs() {
            w.cf(name)?;
            let cf = db::cf(db, name)?;
            // The raw iterator lends key and value slices: no allocation per entry.
            let mut it = db.raw_iterator_cf_opt(&cf, read_opts());
            it.seek_to_first();
            while let (Some(key), Some(value)) = (it.key(), it.value()) {
                if !(name == CF_SM_STATE && key == KEY_INSTALLING) {
                    w.kv(key, value)?;
                }
                it.next();
            }
            it.status()?;
        }
        let (out, len) = w.finish()?;
        let file = out
            .into_inner()
            .map_err(|e| StoreError::Io(e.into_error()))?;
        file.sync_all()?;
        Ok(len)
    })();
    let len = match written {
        Ok(len) => len,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let data = files.save_built(&meta, tmp)?;
    Ok((
        Snapshot {
            meta,
            snapshot: Box::new(data),
        },
        len,
    ))
}

/// What one verifying read of a snapshot file found.
pub(crate) struct Verified {
    /// The file's header.
    header: format::Header,
    /// The value of the state's feature level record (`Meta/feature_level`), if it has one.
    feature_level: Option<Vec<u8>>,
}

impl Verified {
    /// The state's feature level, refused with the model's [`FatalError`] (the message the
    /// apply path and [`crate::open`] give) when this binary cannot apply a state at it: the
    /// entries after the snapshot would be applied with other rules than the cluster's.
    ///
    /// [`FatalError`]: mailraft_model::FatalError
    fn check_feature_level(&self) -> Result<u32> {
        Ok(mailraft_model::feature::check_stored_level(&self.level_state())?)
    }

    /// The file's feature level, whether or not this binary can apply it (a backup is kept
    /// whole by any binary; only a restore needs to apply it). `Corrupt` if it does not decode.
    pub(crate) fn feature_level(&self) -> Result<u32> {
        mailraft_model::feature::stored_level(&self.level_state()).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// A state holding only the file's level record, for the model's level functions.
    fn level_state(&self) -> mailraft_model::MemKv {
        let mut state = mailraft_model::MemKv::default();
        if let Some(value) = &self.feature_level {
            let mut record = mailraft_model::WriteSet::default();
            record.put(Table::Meta, keys::META_FEATURE_LEVEL.to_vec(), value.clone());
            state.commit(record);
        }
        state
    }
}

/// Reads a whole snapshot file, checking every record and the trailer; returns its header and
/// feature level record. `expected`, if given, must match the header.
fn verify(path: &Path, expected: Option<&SnapshotMeta>) -> Result<Verified> {
    let data = SnapshotFiles::open_file(path)?;
    let (mut reader, header) = FormatReader::open(data.reader(), data.size()?)?;
    if let Some(meta) = expected {
        check_meta(&header.meta, meta)?;
    }
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut in_meta = false;
    let mut feature_level = None;
    loop {
        match reader.next(&mut key, &mut value)? {
            Record::Cf(name) => in_meta = name == Table::Meta.name(),
            Record::Kv if in_meta && key == keys::META_FEATURE_LEVEL => feature_level = Some(value.clone()),
            Record::Kv => {}
            Record::End => break,
        }
    }
    Ok(Verified { header, feature_level })
}

fn check_meta(found: &SnapshotMeta, meta: &SnapshotMeta) -> Result<()> {
    if found.last_log_id != meta.last_log_id
        || found.last_membership != meta.last_membership
        || found.snapshot_id != meta.snapshot_id
    {
        return Err(StoreError::Corrupt(format!(
            "snapshot data is {} for {:?}, meta says {} for {:?}",
            found.snapshot_id, found.last_log_id, meta.snapshot_id, meta.last_log_id
        )));
    }
    Ok(())
}

/// How an install proceeds; the defaults are what production uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InstallLimits {
    /// Write a batch once it holds this many bytes.
    pub(crate) batch_bytes: usize,
    /// Tests: stop (as a crash would) after writing this many batches.
    pub(crate) crash_after_batches: Option<usize>,
}

impl Default for InstallLimits {
    fn default() -> Self {
        InstallLimits {
            batch_bytes: BATCH_BYTES,
            crash_after_batches: None,
        }
    }
}

/// Whether step 3 ran to the end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The state machine is the snapshot's.
    Complete,
    /// Stopped by [`InstallLimits::crash_after_batches`].
    Interrupted,
}

/// Installs `data` as the state machine (steps 1 to 4 of the module docs); returns the
/// snapshot's size in bytes.
pub(crate) fn install(
    db: &DB,
    files: &SnapshotFiles,
    meta: &SnapshotMeta,
    data: SnapshotData,
    limits: InstallLimits,
) -> Result<(Applied, u64)> {
    let _guard = files.install_guard()?;
    let staged = files.stage(data)?;
    // A snapshot at a feature level this binary cannot apply is refused here, before the old
    // state is touched, like an entry that raises the level beyond it: the node stops on the
    // model's error with its state as it was.
    if let Err(e) = verify(&staged, Some(meta)).and_then(|v| v.check_feature_level()) {
        files.discard_installing()?;
        return Err(e);
    }
    let size = std::fs::metadata(&staged)?.len();
    let applied = apply_file(db, &staged, meta, limits)?;
    if applied == Applied::Complete {
        files.promote_installing(meta)?;
    }
    Ok((applied, size))
}

/// Step 3 of the module docs: replaces the state machine with the (verified) file's contents.
fn apply_file(db: &DB, path: &Path, meta: &SnapshotMeta, limits: InstallLimits) -> Result<Applied> {
    let data = SnapshotFiles::open_file(path)?;
    let (mut reader, header) = FormatReader::open(data.reader(), data.size()?)?;
    check_meta(&header.meta, meta)?;
    let sm_state = db::cf(db, CF_SM_STATE)?;

    let mut batch = WriteBatch::default();
    for name in db::state_machine_cfs() {
        clear_cf(db, name, &mut batch)?;
    }
    // Later operations of a batch win over its range deletions.
    batch.put_cf(&sm_state, KEY_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes());
    batch.put_cf(&sm_state, KEY_INSTALLING, db::encode(&meta.snapshot_id)?);
    db::write_sync(db, batch)?;
    let mut batches = 1;

    let mut batch = WriteBatch::default();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut current = None;
    loop {
        match reader.next(&mut key, &mut value)? {
            Record::Cf(name) => current = Some((name, db::cf(db, name)?)),
            Record::Kv => {
                let (name, cf) = current
                    .as_ref()
                    .ok_or_else(|| StoreError::Corrupt("snapshot entry before any table".into()))?;
                if is_bookkeeping(name, &key) {
                    continue;
                }
                batch.put_cf(cf, &key, &value);
                if batch.size_in_bytes() >= limits.batch_bytes {
                    if limits.crash_after_batches == Some(batches) {
                        return Ok(Applied::Interrupted);
                    }
                    // Not fsynced: the last batch's fsync covers the WAL before it.
                    db.write(std::mem::take(&mut batch))?;
                    batches += 1;
                }
            }
            Record::End => break,
        }
    }
    if limits.crash_after_batches.is_some_and(|n| n <= batches) {
        return Ok(Applied::Interrupted);
    }
    match &meta.last_log_id {
        Some(id) => batch.put_cf(&sm_state, KEY_LAST_APPLIED, db::encode(id)?),
        None => batch.delete_cf(&sm_state, KEY_LAST_APPLIED),
    }
    batch.put_cf(
        &sm_state,
        KEY_LAST_MEMBERSHIP,
        db::encode(&meta.last_membership)?,
    );
    batch.delete_cf(&sm_state, KEY_INSTALLING);
    db::write_sync(db, batch)?;
    Ok(Applied::Complete)
}

/// Adds deletions of every key of a column family to `batch`: one range tombstone up to the
/// last key plus a point delete of the last key itself (range ends are exclusive).
fn clear_cf(db: &DB, name: &'static str, batch: &mut WriteBatch) -> Result<()> {
    let cf = db::cf(db, name)?;
    if let Some(item) = db.iterator_cf(&cf, IteratorMode::End).next() {
        let (last, _) = item?;
        batch.delete_range_cf(&cf, &[][..], &last[..]);
        batch.delete_cf(&cf, &last);
    }
    Ok(())
}

/// Finishes or cleans up after an install a crash interrupted (see the module docs). Runs at
/// open, before anything reads the state machine.
pub(crate) fn recover(db: &DB, files: &SnapshotFiles) -> Result<()> {
    let marker: Option<String> = db::get_value(db, CF_SM_STATE, KEY_INSTALLING)?;
    let path = files.installing_path();
    let staged = path.exists();
    match marker {
        Some(id) => {
            if !staged {
                return Err(StoreError::Corrupt(format!(
                    "a snapshot install ({id}) was interrupted and {} is missing: the state \
                     machine is incomplete; wipe this node's data directory and add it again",
                    path.display()
                )));
            }
            // The level was checked before the install began; `open` checks it again after.
            let header = verify(&path, None)?.header;
            if header.meta.snapshot_id != id {
                return Err(StoreError::Corrupt(format!(
                    "an interrupted install was of snapshot {id}, but {} holds {}: wipe this \
                     node's data directory and add it again",
                    path.display(),
                    header.meta.snapshot_id
                )));
            }
            tracing::warn!(snapshot = %id, "resuming a snapshot install interrupted by a crash");
            apply_file(db, &path, &header.meta, InstallLimits::default())?;
            files.promote_installing(&header.meta)?;
        }
        None if staged => {
            let applied: Option<LogId> = db::get_value(db, CF_SM_STATE, KEY_LAST_APPLIED)?;
            let header = SnapshotFiles::open_file(&path).and_then(|d| files::read_header(&d));
            match header {
                Ok(h) if h.meta.last_log_id.is_some() && h.meta.last_log_id == applied => {
                    files.promote_installing(&h.meta)?;
                }
                _ => files.discard_installing()?,
            }
        }
        None => {}
    }
    Ok(())
}

/// Builds snapshots for openraft, which runs it on its own task concurrently with `apply`; the
/// RocksDB snapshot taken in [`build`] keeps the dump consistent.
pub struct SnapshotBuilder {
    /// Shared database.
    db: Arc<DB>,
    /// Where the result is kept.
    files: Arc<SnapshotFiles>,
}

impl SnapshotBuilder {
    pub(crate) fn new(db: Arc<DB>, files: Arc<SnapshotFiles>) -> Self {
        SnapshotBuilder { db, files }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError<u64>> {
        let db = self.db.clone();
        let files = self.files.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<Snapshot> {
            let started = Instant::now();
            let (snapshot, bytes) = build(&db, &files)?;
            tracing::info!(
                last_log_id = ?snapshot.meta.last_log_id,
                bytes,
                seconds = started.elapsed().as_secs_f64(),
                "built snapshot"
            );
            metrics::snapshot("build", bytes, started.elapsed());
            Ok(snapshot)
        })
        .await
        .map_err(StoreError::from)
        .and_then(|r| r);
        result.storage(ErrorSubject::Snapshot(None), ErrorVerb::Write)
    }
}
