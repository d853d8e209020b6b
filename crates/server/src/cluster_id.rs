//! The cluster identity of a node: which Raft cluster it belongs to, and the checks every Raft
//! RPC passes before it reaches openraft.
//!
//! A cluster id is a random u64 chosen when a node bootstraps a new cluster. It lives in
//! `<data_dir>/cluster-id` (written to a temporary file, fsynced and renamed, so a crash leaves
//! the old file or the new one). A node started without `--bootstrap` has no id yet: it adopts the
//! id of the first leader that replicates to it (an operator ran `mailraft admin add-node`) and
//! persists it *before* handing that first message to openraft, so after a restart it still
//! refuses every other cluster.
//!
//! Why a file and not the replicated state: the check must hold before a node has any state (the
//! first AppendEntries of a join), and it must not depend on which entries happen to be applied.
//!
//! Checks ([`ClusterIdentity::admit`]): a message without a cluster id, or from another cluster,
//! is refused. A vote request is refused when the candidate is not a voter of this node's current
//! membership, or when this node has no cluster yet: a node that was removed (and restarted with
//! its old log, where it still believes it is a voter) therefore cannot start elections that
//! disturb the group. AppendEntries and snapshots are not checked against the membership: a
//! lagging follower may not yet know a newly added member that has since become leader, and
//! refusing it would keep the follower behind forever.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mailraft_store::Raft;

use crate::error::ServerError;

/// File name of the cluster id inside the data directory.
pub const CLUSTER_ID_FILE: &str = "cluster-id";

/// What kind of Raft message is being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftMessage {
    /// Log replication or heartbeat from a leader.
    AppendEntries,
    /// A candidate asking for a vote.
    Vote,
    /// A leader sending a snapshot.
    InstallSnapshot,
}

/// This node's cluster membership identity, shared by the Raft client and server sides.
#[derive(Debug)]
pub struct ClusterIdentity {
    /// `<data_dir>/cluster-id`.
    path: PathBuf,
    /// 0 while the node belongs to no cluster.
    id: AtomicU64,
    /// Serializes adoption so two concurrent first messages write the file once.
    adopt: Mutex<()>,
}

impl ClusterIdentity {
    /// Loads the id from `data_dir` (0 when the node never joined a cluster).
    pub fn load(data_dir: &Path) -> Result<Self, ServerError> {
        let path = data_dir.join(CLUSTER_ID_FILE);
        let id = match fs::read_to_string(&path) {
            Ok(text) => parse(&text)
                .ok_or_else(|| ServerError::Internal(format!("{} does not hold a cluster id", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(ClusterIdentity { path, id: AtomicU64::new(id), adopt: Mutex::new(()) })
    }

    /// The cluster id, 0 when none yet.
    pub fn get(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    /// Makes sure the node has a cluster id, choosing a random one for a new cluster; returns it.
    pub fn ensure(&self) -> Result<u64, ServerError> {
        let _guard = self.adopt.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.get();
        if current != 0 {
            return Ok(current);
        }
        let id = loop {
            let candidate = rand::random::<u64>();
            if candidate != 0 {
                break candidate;
            }
        };
        self.persist(id)?;
        Ok(id)
    }

    /// Joins cluster `id` if this node has none; fails if it belongs to another one.
    fn adopt(&self, id: u64) -> Result<(), ServerError> {
        let _guard = self.adopt.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.get() {
            0 => {
                self.persist(id)?;
                tracing::info!(cluster_id = %format_id(id), "joined cluster");
                Ok(())
            }
            mine if mine == id => Ok(()),
            mine => Err(mismatch(mine, id)),
        }
    }

    /// Writes the file durably, then publishes the id in memory.
    fn persist(&self, id: u64) -> Result<(), ServerError> {
        let dir = self.path.parent().ok_or_else(|| ServerError::internal("cluster-id path has no parent"))?;
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{CLUSTER_ID_FILE}.tmp"));
        {
            let mut file = File::create(&tmp)?;
            writeln!(file, "{}", format_id(id))?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()?;
        self.id.store(id, Ordering::Release);
        Ok(())
    }

    /// Decides whether a Raft message from node `from` of cluster `cluster_id` may reach the
    /// local openraft instance (see the module docs for the rules).
    pub fn admit(&self, raft: &Raft, kind: RaftMessage, cluster_id: u64, from: u64) -> Result<(), ServerError> {
        if cluster_id == 0 {
            return Err(ServerError::PeerRefused(format!("raft message from node {from} carries no cluster id")));
        }
        match kind {
            RaftMessage::AppendEntries | RaftMessage::InstallSnapshot => self.adopt(cluster_id),
            RaftMessage::Vote => {
                let mine = self.get();
                if mine == 0 {
                    return Err(ServerError::PeerRefused("this node has not joined a cluster yet".into()));
                }
                if mine != cluster_id {
                    return Err(mismatch(mine, cluster_id));
                }
                let metrics = raft.metrics().borrow().clone();
                let is_voter = metrics.membership_config.membership().voter_ids().any(|id| id == from);
                if is_voter {
                    Ok(())
                } else {
                    crate::metrics::peer_refused("not_a_voter");
                    Err(ServerError::PeerRefused(format!(
                        "node {from} is not a voter of this cluster (was it removed?); it must not start elections"
                    )))
                }
            }
        }
    }
}

fn mismatch(mine: u64, theirs: u64) -> ServerError {
    crate::metrics::peer_refused("cluster_mismatch");
    ServerError::PeerRefused(format!(
        "node belongs to cluster {} but the message is from cluster {}",
        format_id(mine),
        format_id(theirs)
    ))
}

/// Cluster ids are shown as 16 hex digits.
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

fn parse(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim(), 16).ok().filter(|id| *id != 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ensure_persists_and_reload_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let ident = ClusterIdentity::load(dir.path()).unwrap();
        assert_eq!(ident.get(), 0);
        let id = ident.ensure().unwrap();
        assert_ne!(id, 0);
        assert_eq!(ident.ensure().unwrap(), id, "ensure keeps an existing id");
        assert_eq!(ClusterIdentity::load(dir.path()).unwrap().get(), id);
    }

    #[test]
    fn adopt_once_then_refuse_others() {
        let dir = tempfile::tempdir().unwrap();
        let ident = ClusterIdentity::load(dir.path()).unwrap();
        ident.adopt(42).unwrap();
        ident.adopt(42).unwrap();
        assert!(matches!(ident.adopt(43), Err(ServerError::PeerRefused(_))));
        assert_eq!(ClusterIdentity::load(dir.path()).unwrap().get(), 42);
    }

    #[test]
    fn garbage_file_is_an_error_not_a_new_cluster() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CLUSTER_ID_FILE), "not hex\n").unwrap();
        assert!(ClusterIdentity::load(dir.path()).is_err());
    }
}
