//! Durable Raft storage for a Mailraft node: the Raft log and the mail state machine on one
//! RocksDB instance, plus all openraft-specific glue (a move to openraft 0.10 rewrites only
//! this crate).
//!
//! Flow:
//! 1. [`open`] opens `<data_dir>/db` (column families per `db.rs`), checks the on-disk format
//!    version, and returns a [`LogStore`] and a [`StateMachineStore`] sharing the database.
//! 2. Both go to `openraft::Raft::new` ([`Raft`] with [`TypeConfig`]). openraft appends proposed
//!    entries through [`LogStore`] (fsynced before they count for the quorum) and hands committed
//!    ones to [`StateMachineStore`], which runs the model's `apply` on each, commits the batch's
//!    writes together with `last_applied` in one `WriteBatch` (not fsynced again: the log's
//!    fsync already made the entries durable, and a power cut loses only whole apply batches,
//!    which openraft re-applies from the log; see `state_machine.rs`), and then replies and
//!    publishes [`mailraft_model::MailboxEvent`]s to [`StateMachineStore::subscribe`]rs.
//! 3. Queries read the applied state through a [`StateView`] (taken with
//!    [`StateMachineStore::reader`] before the store moves into Raft), preferably with
//!    [`StateView::read`] for a point-in-time view.
//! 4. Snapshots stream every state-machine column family from a RocksDB snapshot into a file
//!    (`snapshot.rs`, [`SnapshotData`]), kept as `<data_dir>/snapshots/current.snap`; installing
//!    one streams the file back in bounded write batches, resumably after a crash ([`open`]
//!    finishes an interrupted install before anything reads the state). Memory stays bounded
//!    by [`SNAPSHOT_IO_BUFFER`] plus one write batch, not by the size of the state. A backup is
//!    such a file; [`restore_backup`] makes a new cluster's store from one.
//! 5. Blocking work of the write path runs on dedicated threads ([`pool`]): the log's synced
//!    writes on `mailraft-raft_log`, apply and snapshot installs on `mailraft-raft_apply`, so
//!    no read or password hash queued on tokio's blocking pool can delay a commit.
//! 6. [`LogStore::log_bytes`] tells how many bytes of log entries follow an index, so the node
//!    can trigger a snapshot (and with it log compaction) by size as well as by entry count.

#![deny(missing_docs)]

mod db;
mod error;
mod log_store;
pub mod private_fs;
pub mod metrics;
pub mod pool;
mod reader;
mod snapshot;
mod state_machine;
mod types;

use std::path::Path;
use std::sync::Arc;

pub use db::{FORMAT_VERSION, KEY_FORMAT_VERSION};
pub use error::StoreError;
pub use log_store::{LogBytes, LogStore};
pub use pool::{Executor, LimitError, Limiter};
pub use reader::{PinnedView, StateRead, StateView};
pub use snapshot::{
    BackupInfo, IO_BUFFER as SNAPSHOT_IO_BUFFER, SnapshotBuilder, restore_backup, verify_backup, verify_backup_file,
};
pub use state_machine::{EVENT_CHANNEL_CAPACITY, StateMachineStore};
pub use types::{
    Entry, LogId, Membership, Node, NodeId, Raft, Snapshot, SnapshotData, SnapshotMeta,
    StoredMembership, TypeConfig, Vote,
};

/// Subdirectory of the data directory holding RocksDB.
pub const DB_DIR: &str = "db";
/// Subdirectory of the data directory holding the current snapshot file.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Opens (creating if needed) a node's storage under `data_dir`.
///
/// Fails with [`StoreError::UnsupportedFormat`] when the directory was written by a newer
/// Mailraft, and with [`StoreError::Fatal`] when its state is at a feature level this binary
/// cannot apply (`mailraft_model::feature`). Opening the same directory twice at once fails (RocksDB's lock). A snapshot install
/// that a crash interrupted is finished here, from its staged file; if that file is gone this
/// fails with [`StoreError::Corrupt`] instead of serving a partial state machine.
pub fn open(data_dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    // 0700 before anything is written: mail and session keys live here (`private_fs.rs`).
    private_fs::create_dir(data_dir)?;
    private_fs::create_dir(&data_dir.join(DB_DIR))?;
    let db = db::open_db(&data_dir.join(DB_DIR))?;
    let snapshots = Arc::new(snapshot::SnapshotFiles::open(&data_dir.join(SNAPSHOT_DIR))?);
    snapshot::recover(&db, &snapshots)?;
    check_feature_level(&db)?;
    // One thread each: openraft never runs two log writes, or two applies, at once.
    let log_io = Executor::new("raft_log", 1)?;
    let apply = Executor::new("raft_apply", 1)?;
    tracing::info!(path = %data_dir.display(), "opened raft storage");
    Ok((
        LogStore::new(db.clone(), log_io)?,
        StateMachineStore::new(db, snapshots, apply),
    ))
}

/// Refuses a state whose feature level this binary cannot apply (raised by newer binaries, or
/// below the oldest level it still has): starting would apply the next entries with other
/// rules than the rest of the cluster. Checked after an interrupted snapshot install is
/// finished, since the snapshot carries the level.
fn check_feature_level(db: &rocksdb::DB) -> Result<(), StoreError> {
    let state = reader::StateRead::latest(db);
    let checked = mailraft_model::feature::check_stored_level(&state);
    // A failed read showed the level as absent: report that, not a made-up level.
    state.finish()?;
    let level = checked?;
    tracing::info!(level, known = mailraft_model::KNOWN_FEATURE_LEVEL, "feature level");
    Ok(())
}
