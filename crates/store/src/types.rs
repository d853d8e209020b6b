//! The openraft type configuration and the aliases the rest of Mailraft uses.
//!
//! All openraft-specific names live in this crate so that moving to openraft 0.10 rewrites only
//! it. Other crates should name `mailraft_store::Raft`, `mailraft_store::Entry`, ... rather than
//! the generic openraft types.
//!
//! ## Snapshot data
//!
//! `SnapshotData = std::io::Cursor<Vec<u8>>`: a snapshot is one byte buffer in the format written
//! by `snapshot.rs` (a header with the [`SnapshotMeta`] and the format version, then a postcard
//! stream of every state-machine key/value). The gRPC layer sends it with
//! [`snapshot_into_bytes`] and rebuilds it with [`snapshot_from_bytes`], then hands it to
//! `Raft::install_full_snapshot`. The whole snapshot is held in memory on both sides; streaming
//! it in bounded chunks from a file is a known follow-up (the `generic-snapshot-data` feature
//! already allows a file-backed type here).

use std::io::Cursor;

openraft::declare_raft_types!(
    /// Mailraft's openraft type configuration: entries carry a [`mailraft_model::Request`], the
    /// state machine answers with a [`mailraft_model::Reply`].
    pub TypeConfig:
        D = mailraft_model::Request,
        R = mailraft_model::Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft node of one Mailraft storage group.
pub type Raft = openraft::Raft<TypeConfig>;
/// A node's id within its group.
pub type NodeId = u64;
/// A node's address book entry.
pub type Node = openraft::BasicNode;
/// One replicated log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// (term, leader, index) of an entry.
pub type LogId = openraft::LogId<NodeId>;
/// A persisted vote.
pub type Vote = openraft::Vote<NodeId>;
/// A membership config with the id of the entry that carried it.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Describes a snapshot: last included entry, membership, id.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot: its meta plus the data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// The snapshot payload type (see the module docs).
pub type SnapshotData = Cursor<Vec<u8>>;

/// The bytes of a snapshot, to send to a follower.
// openraft hands snapshot data out boxed; taking the box saves callers an unboxing step.
#[allow(clippy::boxed_local)]
pub fn snapshot_into_bytes(data: Box<SnapshotData>) -> Vec<u8> {
    data.into_inner()
}

/// Rebuilds snapshot data received from a leader; it is validated when installed.
pub fn snapshot_from_bytes(bytes: Vec<u8>) -> Box<SnapshotData> {
    Box::new(Cursor::new(bytes))
}
