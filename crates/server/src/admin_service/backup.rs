//! Backups (`Admin.Backup`, `mailraft admin backup`) and restores (`mailraft storage
//! --restore-from`).
//!
//! **Backup.** A backup is a Raft snapshot file, so it is one consistent point of the replicated
//! state, never a mix, and it is taken while the cluster keeps serving:
//! 1. a read-index round on the leader (a follower answers NOT_LEADER, which `mailraft admin`
//!    follows): every entry committed before the call is applied once it returns;
//! 2. unless the current snapshot already covers the applied index, a snapshot is triggered and
//!    awaited (openraft ignores a trigger while a build runs, so it is repeated whenever a build
//!    ends without covering that index);
//! 3. the snapshot file is opened (the handle keeps reading the same file even if a newer
//!    snapshot replaces it meanwhile) and streamed in chunks of [`CHUNK_BYTES`] through a
//!    one-chunk channel, so the node holds one chunk per backup whatever the state's size; the
//!    first chunk carries the header, the last the SHA-256 of the whole file. A client that
//!    takes no chunk for [`STALL_TIMEOUT`] is dropped, releasing the file.
//!
//! **Restore** ([`restore`]) makes a NEW cluster from a backup on a data directory that holds no
//! node state: the file is verified completely first, then a `restore-in-progress` marker is
//! written, the store installs the file as a single-member cluster of this node
//! (`mailraft_store::restore_backup`), the node gets a new random cluster id (so no node of the
//! old cluster can talk to it), and the marker goes. A node never starts on a directory with
//! the marker ([`check_no_interrupted_restore`]): a crash part-way leaves a directory to empty
//! and restore again, not a half-restored cluster.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailraft_proto as pb;
use mailraft_store::{BackupInfo, DB_DIR, Node, SNAPSHOT_DIR, Snapshot};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::cluster_id::{CLUSTER_ID_FILE, ClusterIdentity};
use crate::error::ServerError;
use crate::shared::Shared;

/// Bytes of the file per streamed chunk (well under the 4 MiB default message limit).
pub const CHUNK_BYTES: usize = 1 << 20;
/// A backup whose client pulls no chunk for this long is abandoned.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a snapshot that covers the applied index (a large state takes minutes).
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long one wait for snapshot progress lasts before the trigger is repeated.
const SNAPSHOT_POLL: Duration = Duration::from_secs(5);
/// Marker file of a restore that has not finished.
pub const RESTORING_FILE: &str = "restore-in-progress";

/// The stream `Admin.Backup` answers with.
pub type BackupStream = ReceiverStream<Result<pb::BackupChunk, Status>>;

/// Steps 1 to 3 of the module docs: returns the chunk stream once a snapshot covering every
/// committed entry is open.
pub(crate) async fn backup(shared: &Shared) -> Result<BackupStream, ServerError> {
    shared.linearize().await?;
    let target = shared.raft.metrics().borrow().last_applied.map_or(0, |id| id.index);
    let snapshot = covering_snapshot(shared, target).await?;
    let data = snapshot.snapshot;
    let size = data.size()?;
    let last = snapshot.meta.last_log_id;
    let header = pb::BackupHeader {
        cluster_id: shared.cluster.get(),
        last_log_index: last.map_or(0, |id| id.index),
        last_log_term: last.map_or(0, |id| id.leader_id.term),
        size,
        snapshot_id: snapshot.meta.snapshot_id.clone(),
        node_id: shared.node_id,
    };
    tracing::info!(last_log_id = ?last, bytes = size, "streaming a backup");
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        if let Err(e) = send_file(&data, header, &tx).await {
            tracing::warn!(error = %e, "backup stream ended early");
            // The client may be gone already; then nobody needs the error.
            let _ = tx.try_send(Err(Status::from(e)));
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// A snapshot whose last entry is at least `target`, building one if the current one is older.
async fn covering_snapshot(shared: &Shared, target: u64) -> Result<Snapshot, ServerError> {
    let raft = &shared.raft;
    let covers = |snapshot: Option<mailraft_store::LogId>| snapshot.is_some_and(|id| id.index >= target);
    let deadline = tokio::time::Instant::now() + SNAPSHOT_TIMEOUT;
    while !covers(raft.metrics().borrow().snapshot) {
        let before = raft.metrics().borrow().snapshot;
        raft.trigger().snapshot().await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(ServerError::Unavailable(format!(
                "no snapshot covering log index {target} was built within {} s",
                SNAPSHOT_TIMEOUT.as_secs()
            )));
        }
        // Ends early when any build finishes; the loop then checks whether it was ours.
        let _ = raft
            .wait(Some(left.min(SNAPSHOT_POLL)))
            .metrics(|m| m.snapshot != before || covers(m.snapshot), "a snapshot was built")
            .await;
    }
    let snapshot = raft
        .get_snapshot()
        .await
        .map_err(|e| ServerError::Unavailable(format!("read the current snapshot: {e}")))?
        .ok_or_else(|| ServerError::internal("the snapshot just built is gone"))?;
    if !covers(snapshot.meta.last_log_id) {
        return Err(ServerError::internal(format!(
            "the current snapshot ends at {:?}, before log index {target}",
            snapshot.meta.last_log_id
        )));
    }
    Ok(snapshot)
}

/// Sends the header, the file in chunks and the checksum, in order (step 3).
async fn send_file(
    data: &mailraft_store::SnapshotData,
    header: pb::BackupHeader,
    tx: &mpsc::Sender<Result<pb::BackupChunk, Status>>,
) -> Result<(), ServerError> {
    let size = header.size;
    let mut header = Some(header);
    let mut hash = Sha256::new();
    let mut offset = 0u64;
    loop {
        let bytes = if offset < size { data.read_chunk(offset, CHUNK_BYTES).await? } else { Vec::new() };
        if offset < size && bytes.is_empty() {
            return Err(ServerError::internal(format!("snapshot file ended at {offset} of {size} bytes")));
        }
        offset += bytes.len() as u64;
        hash.update(&bytes);
        let last = offset >= size;
        let sha256 = if last { std::mem::take(&mut hash).finalize().to_vec() } else { Vec::new() };
        let chunk = pb::BackupChunk { header: header.take(), data: bytes, sha256 };
        match tokio::time::timeout(STALL_TIMEOUT, tx.send(Ok(chunk))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ServerError::Unavailable("the backup client went away".into())),
            Err(_) => {
                return Err(ServerError::DeadlineExceeded(format!(
                    "the backup client took no data for {} s",
                    STALL_TIMEOUT.as_secs()
                )));
            }
        }
        if last {
            return Ok(());
        }
    }
}

/// What [`restore`] made.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The new cluster's id.
    pub cluster_id: u64,
    /// The backup's header.
    pub backup: BackupInfo,
}

/// Files whose presence means a data directory already belongs to a node.
fn state_files(data_dir: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    [DB_DIR, SNAPSHOT_DIR, CLUSTER_ID_FILE, RESTORING_FILE].into_iter().map(|name| data_dir.join(name))
}

/// Restores `backup` into `data_dir` as a new one-node cluster whose member is `node_id`,
/// reachable by peers at `advertise` (see the module docs). Blocking: call it from a blocking
/// thread. Refuses a directory that holds node state (other files, like `lost+found` or dev
/// mode's `certs`, are left alone).
pub fn restore(data_dir: &Path, backup: &Path, node_id: u64, advertise: &str) -> Result<Restored, ServerError> {
    if let Some(found) = state_files(data_dir).find(|p| p.exists()) {
        return Err(ServerError::Invalid(format!(
            "{} already holds a node's state ({}): a restore needs a data directory without one",
            data_dir.display(),
            found.display()
        )));
    }
    // A damaged or truncated file is refused here, before the directory is touched.
    let info = mailraft_store::verify_backup(backup)
        .map_err(|e| ServerError::Invalid(format!("backup {}: {e}", backup.display())))?;
    mailraft_store::private_fs::create_dir(data_dir)?;
    let marker = data_dir.join(RESTORING_FILE);
    let mut file = File::create(&marker)?;
    writeln!(file, "restoring {}", backup.display())?;
    file.sync_all()?;
    File::open(data_dir)?.sync_all()?;

    let node = Node { addr: advertise.to_owned() };
    let backup_info = mailraft_store::restore_backup(data_dir, backup, node_id, node)?;
    let cluster_id = ClusterIdentity::load(data_dir)?.ensure()?;
    std::fs::remove_file(&marker)?;
    File::open(data_dir)?.sync_all()?;
    tracing::info!(
        cluster_id = %crate::cluster_id::format_id(cluster_id),
        from = %backup.display(),
        bytes = info.bytes,
        "restored a backup as a new cluster"
    );
    Ok(Restored { cluster_id, backup: backup_info })
}

/// Fails when a restore into `data_dir` was interrupted: its state is incomplete.
pub fn check_no_interrupted_restore(data_dir: &Path) -> Result<(), ServerError> {
    let marker = data_dir.join(RESTORING_FILE);
    if marker.exists() {
        return Err(ServerError::Invalid(format!(
            "a restore into {} did not finish ({} exists): empty the directory and restore again",
            data_dir.display(),
            marker.display()
        )));
    }
    Ok(())
}
