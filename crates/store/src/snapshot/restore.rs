//! Backups and restores. A backup is a snapshot file (layout in `format.rs`) that a running
//! cluster built and streamed to an operator; restoring it makes the state machine of a NEW
//! cluster, so nothing of the old cluster's Raft identity comes along.
//!
//! [`restore_backup`] works on a data directory that holds no store yet:
//! 1. the file's header is read; [`install`] then stages a copy as `installing.snap`, verifies
//!    it completely (records, count, CRC-32C, a feature level this binary can apply) before any
//!    write, and applies it in bounded write batches, exactly like a snapshot received from a
//!    leader (crash-safe the same way);
//! 2. one synced batch replaces the old cluster's membership with a single voter, this node,
//!    drops this node from the retired ids (they are the old cluster's history, and node ids
//!    of the new cluster are the operator's choice again), and seeds the Raft metadata: the log
//!    counts as purged up to the backup's last entry (the snapshot holds it), that entry is
//!    committed, and the vote is this node's in the backup's last term, so the first election
//!    of the new cluster is in a later term than every entry it keeps and its log ids increase;
//!    The same batch gives every mailbox a new UIDVALIDITY
//!    (`mailraft_model::apply::restore`): the old cluster may have handed out UIDs and MODSEQs
//!    after the backup that the restored state would hand out again for other messages, which
//!    RFC 3501 §2.3.1.1 forbids under the same UIDVALIDITY; clients resynchronize instead;
//! 3. a fresh snapshot is built, so the first node added to the new cluster receives the new
//!    membership rather than the backup's.
//!
//! Everything else the users see is in the state machine and comes back unchanged: accounts and
//! password hashes, mailboxes with their UIDNEXT and HIGHESTMODSEQ, messages with their UIDs,
//! MODSEQs and flags, and the session key ring.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use mailraft_model::apply::restore::renew_uidvalidities;
use rocksdb::WriteBatch;

use super::{InstallLimits, SnapshotFiles, build, files, install, verify};
use crate::db::{
    self, CF_RAFT_META, CF_SM_STATE, KEY_COMMITTED, KEY_LAST_MEMBERSHIP, KEY_LAST_PURGED,
    KEY_RETIRED_NODES, KEY_VOTE,
};
use crate::error::{Result, StoreError};
use crate::reader::StateRead;
use crate::types::{Membership, Node, NodeId, SnapshotMeta, StoredMembership, Vote};
use crate::{DB_DIR, SNAPSHOT_DIR, private_fs};

/// What a backup file holds, from its header.
#[derive(Debug, Clone)]
pub struct BackupInfo {
    /// The Raft position and membership of the cluster the backup was taken from.
    pub meta: SnapshotMeta,
    /// On-disk format version of its records.
    pub format_version: u32,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The feature level of its state (`mailraft_model::feature`).
    pub feature_level: u32,
}

/// Reads a whole backup file and checks it as an install would (magic, header, every record,
/// the record count, the CRC-32C trailer, a format this build reads, a feature level this
/// binary can apply: else [`StoreError::Fatal`] with the model's message); returns its header.
pub fn verify_backup(path: &Path) -> Result<BackupInfo> {
    let verified = verify(path, None)?;
    let feature_level = verified.check_feature_level()?;
    backup_info(path, verified, feature_level)
}

/// [`verify_backup`] without the feature-level check: the file is whole and readable, whatever
/// level its state is at. `mailraft admin backup` keeps a backup that its own binary could not
/// restore (a CLI one release behind the cluster): taking a backup needs no apply rules, and
/// throwing a good one away would be worse; [`BackupInfo::feature_level`] says which binary can
/// restore it.
pub fn verify_backup_file(path: &Path) -> Result<BackupInfo> {
    let verified = verify(path, None)?;
    let feature_level = verified.feature_level()?;
    backup_info(path, verified, feature_level)
}

fn backup_info(path: &Path, verified: super::Verified, feature_level: u32) -> Result<BackupInfo> {
    let bytes = std::fs::metadata(path)?.len();
    Ok(BackupInfo { meta: verified.header.meta, format_version: verified.header.format_version, bytes, feature_level })
}

/// Restores the backup at `backup` into `data_dir`, which must hold no store (no `db` or
/// `snapshots` directory), as the state of a new cluster whose only member is `node_id` at
/// `node` (see the module docs). The caller gives the new cluster its id.
///
/// A damaged file, or one at a feature level this binary cannot apply, is refused before
/// anything is written to the database, but after the store's directories were created: run
/// [`verify_backup`] first to create nothing (`mailraft storage --restore-from` does). A refusal
/// or a crash part-way leaves a directory that must be emptied before trying again.
pub fn restore_backup(
    data_dir: &Path,
    backup: &Path,
    node_id: NodeId,
    node: Node,
) -> Result<BackupInfo> {
    for name in [DB_DIR, SNAPSHOT_DIR] {
        if data_dir.join(name).exists() {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} already holds a node's store ({name}); restore into a new data directory",
                    data_dir.display()
                ),
            )));
        }
    }
    // `install` below refuses a file at a feature level this binary cannot apply before it
    // writes to the database; a caller that must not even create the directories runs
    // `verify_backup` first (`mailraft storage --restore-from` does).
    let source = SnapshotFiles::open_file(backup)?;
    let header = files::read_header(&source)?;
    let bytes = source.size()?;
    let Some(last) = header.meta.last_log_id else {
        return Err(StoreError::Corrupt(
            "the backup is of a cluster that never committed an entry".into(),
        ));
    };

    private_fs::create_dir(data_dir)?;
    private_fs::create_dir(&data_dir.join(DB_DIR))?;
    let database = db::open_db(&data_dir.join(DB_DIR))?;
    let files = SnapshotFiles::open(&data_dir.join(SNAPSHOT_DIR))?;
    install(
        &database,
        &files,
        &header.meta,
        source,
        InstallLimits::default(),
    )?;

    let membership = Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(node_id, node)]),
    );
    let mut retired: BTreeSet<u64> =
        db::get_value(&database, CF_SM_STATE, KEY_RETIRED_NODES)?.unwrap_or_default();
    retired.remove(&node_id);
    let sm_state = db::cf(&database, CF_SM_STATE)?;
    let raft_meta = db::cf(&database, CF_RAFT_META)?;
    let mut batch = WriteBatch::default();
    // New UIDVALIDITYs for every mailbox, in the same synced batch (see `renew_uidvalidities`).
    let state = StateRead::latest(&database);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let renewed = renew_uidvalidities(&state, now_ms);
    let feature_level = mailraft_model::feature::stored_level(&state);
    state.finish()?;
    let feature_level = feature_level.map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let (renew, mailboxes) = renewed.map_err(|e| StoreError::Corrupt(format!("renewing UIDVALIDITY: {e}")))?;
    db::add_write_set(&database, &mut batch, renew)?;
    batch.put_cf(
        &sm_state,
        KEY_LAST_MEMBERSHIP,
        db::encode(&StoredMembership::new(Some(last), membership))?,
    );
    batch.put_cf(&sm_state, KEY_RETIRED_NODES, db::encode(&retired)?);
    batch.put_cf(&raft_meta, KEY_LAST_PURGED, db::encode(&last)?);
    batch.put_cf(&raft_meta, KEY_COMMITTED, db::encode(&last)?);
    batch.put_cf(
        &raft_meta,
        KEY_VOTE,
        db::encode(&Vote::new(last.leader_id.term, node_id))?,
    );
    db::write_sync(&database, batch)?;
    build(&database, &files)?;
    tracing::info!(
        path = %data_dir.display(),
        last_log_id = %last,
        node_id,
        mailboxes,
        "restored a backup as a new single-node cluster; every mailbox has a new UIDVALIDITY"
    );
    Ok(BackupInfo {
        meta: header.meta,
        format_version: header.format_version,
        bytes,
        feature_level,
    })
}
