//! The openraft type configuration and the aliases the rest of Mailraft uses.
//!
//! All openraft-specific names live in this crate so that moving to openraft 0.10 rewrites only
//! it. Other crates should name `mailraft_store::Raft`, `mailraft_store::Entry`, ... rather than
//! the generic openraft types.
//!
//! ## Snapshot data
//!
//! With openraft's `generic-snapshot-data` feature the snapshot payload is ours:
//! [`SnapshotData`] is an open file in the snapshot directory (layout in `snapshot/format.rs`).
//! The leader's gRPC layer streams it in chunks with [`SnapshotData::read_chunk`]; the follower
//! gets an empty file from `Raft::begin_receiving_snapshot`, fills it with
//! [`SnapshotData::append`] and hands it to `Raft::install_full_snapshot`, which installs it
//! from the file. No side holds a whole snapshot in memory.

openraft::declare_raft_types!(
    /// Mailraft's openraft type configuration: entries carry a [`mailraft_model::Request`], the
    /// state machine answers with a [`mailraft_model::Reply`].
    pub TypeConfig:
        D = mailraft_model::Request,
        R = mailraft_model::Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

pub use crate::snapshot::SnapshotData;

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
/// A membership config (voters and learners).
pub type Membership = openraft::Membership<NodeId, Node>;
/// Describes a snapshot: last included entry, membership, id.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot: its meta plus a handle on its file.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
