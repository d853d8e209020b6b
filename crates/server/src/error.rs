//! The storage node's one error type and its single mapping to the wire.
//!
//! Every service method returns `Result<_, ServerError>` internally; the conversion to a
//! `tonic::Status` happens here and only here, so the gRPC code, the stable `mailraft-code`
//! metadata entry (which the front-end maps to IMAP response codes) and the message wording stay
//! consistent. Messages are lowercase without a trailing period and never contain passwords or
//! message text: they are logged and shown to IMAP clients.

use mailraft_model::ModelError;
use mailraft_store::{Node, NodeId, StoreError};
use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader, RaftError};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key carrying the stable error code.
pub const CODE_KEY: &str = "mailraft-code";
/// Metadata key carrying the leader's gRPC address on `NOT_LEADER`.
pub const LEADER_KEY: &str = "mailraft-leader";
/// Metadata key on a `LIMIT` refusal of a write: `1` when the same work split into smaller
/// commands would pass (`ModelError::TooBig`), `0` when no split helps ([`ServerError::FinalLimit`]).
/// Absent (a cluster still at feature level 1, where the model does not tell the two apart, or a
/// read's limit), a front-end splits a STORE or EXPUNGE as before. A key beside `LIMIT` rather
/// than a code of its own, so a front-end of an older release still says `NO [LIMIT]`.
pub const SPLIT_KEY: &str = "mailraft-split";

/// Everything that can go wrong in the storage node.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The replicated model refused the command (deterministic, same on every replica).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The model's `Limit` from a cluster at feature level 2 or above, where a refusal that
    /// smaller commands would pass is `TooBig` instead: no split helps this one (a mailbox's
    /// keyword cap), so the front-end reports it at once (`SPLIT_KEY` "0").
    #[error("limit exceeded: {0}")]
    FinalLimit(String),
    /// This node is not the Raft leader; `leader` is the leader's advertised gRPC address when
    /// known, so the caller can retry there.
    #[error("not the leader")]
    NotLeader {
        /// `http://host:port` of the current leader, if known.
        leader: Option<String>,
    },
    /// Wrong login or password. Deliberately does not say which.
    #[error("authentication failed")]
    AuthFailed,
    /// The session token is missing, malformed, forged or expired.
    #[error("invalid or expired session token")]
    BadToken,
    /// A request argument the node refuses before proposing anything.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Something named in a read does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The node cannot serve right now (no quorum, shutting down, not initialized).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Refused to protect the node or an account (hashing slots full, too many failed logins):
    /// an answer, not a fault of this node, so front-ends do not retry it elsewhere.
    #[error("unavailable: {0}")]
    Throttled(String),
    /// A read stream outlived its deadline (`limits.read_stream_deadline_secs`) and was ended so
    /// that it stops pinning a snapshot.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A Raft message from a node of another cluster, or a vote from a node that is not a voter.
    #[error("refused: {0}")]
    PeerRefused(String),
    /// A membership change the node will not make (it would lose the quorum, the node is unknown,
    /// not caught up, …); the message says what to do instead.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A bug or corruption: never the client's fault.
    #[error("internal error: {0}")]
    Internal(String),
    /// Local I/O while starting or serving.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl ServerError {
    /// Shorthand for internal errors from any displayable cause.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ServerError::Internal(e.to_string())
    }

    /// The gRPC status code and the stable `mailraft-code` for this error.
    pub fn codes(&self) -> (Code, &'static str) {
        match self {
            ServerError::Model(m) => match m {
                ModelError::NotFound(_) => (Code::NotFound, "NONEXISTENT"),
                ModelError::AlreadyExists(_) => (Code::AlreadyExists, "ALREADYEXISTS"),
                ModelError::UidValidityChanged => (Code::FailedPrecondition, "UIDVALIDITY"),
                ModelError::Invalid(_) => (Code::InvalidArgument, "INVALID"),
                ModelError::Cannot(_) => (Code::FailedPrecondition, "CANNOT"),
                ModelError::OverQuota => (Code::ResourceExhausted, "OVERQUOTA"),
                ModelError::UidsExhausted => (Code::ResourceExhausted, "CANNOT"),
                ModelError::Corrupt(_) => (Code::Internal, "INTERNAL"),
                // `TooBig` also carries `SPLIT_KEY`.
                ModelError::Limit(_) | ModelError::TooBig(_) => (Code::ResourceExhausted, "LIMIT"),
            },
            ServerError::FinalLimit(_) => (Code::ResourceExhausted, "LIMIT"),
            ServerError::NotLeader { .. } => (Code::Unavailable, "NOT_LEADER"),
            ServerError::AuthFailed | ServerError::BadToken => (Code::Unauthenticated, "AUTHFAILED"),
            ServerError::Invalid(_) => (Code::InvalidArgument, "INVALID"),
            ServerError::NotFound(_) => (Code::NotFound, "NONEXISTENT"),
            ServerError::Unavailable(_) => (Code::Unavailable, "UNAVAILABLE"),
            ServerError::Throttled(_) => (Code::Unavailable, "THROTTLED"),
            ServerError::DeadlineExceeded(_) => (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
            ServerError::PeerRefused(_) => (Code::PermissionDenied, "PEER_REFUSED"),
            ServerError::Membership(_) => (Code::FailedPrecondition, "CANNOT"),
            ServerError::Internal(_) | ServerError::Io(_) | ServerError::Transport(_) => (Code::Internal, "INTERNAL"),
        }
    }
}

/// The leader's advertised address from openraft's forwarding hint.
fn not_leader(f: ForwardToLeader<NodeId, Node>) -> ServerError {
    ServerError::NotLeader { leader: f.leader_node.map(|n| n.addr) }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, Node>>> for ServerError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => ServerError::Membership(c.to_string()),
            RaftError::Fatal(f) => ServerError::Unavailable(format!("raft stopped: {f}")),
        }
    }
}

impl From<RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>> for ServerError {
    fn from(e: RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(f),
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                ServerError::Unavailable(format!("no quorum: {q}"))
            }
            RaftError::Fatal(f) => ServerError::Unavailable(format!("raft stopped: {f}")),
        }
    }
}

impl From<Fatal<NodeId>> for ServerError {
    fn from(f: Fatal<NodeId>) -> Self {
        ServerError::Unavailable(format!("raft stopped: {f}"))
    }
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        ServerError::internal(e)
    }
}

impl From<mailraft_store::LimitError> for ServerError {
    fn from(e: mailraft_store::LimitError) -> Self {
        match e {
            mailraft_store::LimitError::Busy(pool) => ServerError::Throttled(format!("{pool} slots are all busy")),
            mailraft_store::LimitError::Task(e) => ServerError::internal(e),
        }
    }
}

impl From<tokio::task::JoinError> for ServerError {
    fn from(e: tokio::task::JoinError) -> Self {
        ServerError::internal(format!("task failed: {e}"))
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        let (code, stable) = e.codes();
        let mut status = Status::new(code, e.to_string());
        let md = status.metadata_mut();
        md.insert(CODE_KEY, MetadataValue::from_static(stable));
        match &e {
            ServerError::Model(ModelError::TooBig(_)) => {
                md.insert(SPLIT_KEY, MetadataValue::from_static("1"));
            }
            ServerError::FinalLimit(_) => {
                md.insert(SPLIT_KEY, MetadataValue::from_static("0"));
            }
            _ => {}
        }
        if let ServerError::NotLeader { leader: Some(addr) } = &e {
            // An address that is not valid ASCII metadata is dropped: the caller then falls back
            // to trying other nodes, which is correct, only slower.
            if let Ok(v) = MetadataValue::try_from(addr.as_str()) {
                md.insert(LEADER_KEY, v);
            }
        }
        status
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_carries_code_and_hint() {
        let s: Status = ServerError::NotLeader { leader: Some("http://10.0.0.2:7000".into()) }.into();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.metadata().get(CODE_KEY).and_then(|v| v.to_str().ok()), Some("NOT_LEADER"));
        assert_eq!(s.metadata().get(LEADER_KEY).and_then(|v| v.to_str().ok()), Some("http://10.0.0.2:7000"));
    }

    #[test]
    fn model_errors_map_to_stable_codes() {
        let s: Status = ServerError::from(ModelError::NotFound("mailbox x".into())).into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.metadata().get(CODE_KEY).and_then(|v| v.to_str().ok()), Some("NONEXISTENT"));
        assert_eq!(s.message(), "mailbox x does not exist");
        let s: Status = ServerError::BadToken.into();
        assert_eq!(s.code(), Code::Unauthenticated);
        let s: Status = ServerError::from(ModelError::Limit("too many keywords".into())).into();
        assert_eq!(s.metadata().get(CODE_KEY).and_then(|v| v.to_str().ok()), Some("LIMIT"));
        assert!(s.metadata().get(SPLIT_KEY).is_none(), "level 1 cannot tell");
        let s: Status = ServerError::FinalLimit("too many keywords".into()).into();
        assert_eq!(s.metadata().get(CODE_KEY).and_then(|v| v.to_str().ok()), Some("LIMIT"));
        assert_eq!(s.metadata().get(SPLIT_KEY).and_then(|v| v.to_str().ok()), Some("0"), "a keyword cap is not split");
        let s: Status = ServerError::from(ModelError::TooBig("64 MiB of records".into())).into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get(CODE_KEY).and_then(|v| v.to_str().ok()), Some("LIMIT"), "what older front-ends know");
        assert_eq!(s.metadata().get(SPLIT_KEY).and_then(|v| v.to_str().ok()), Some("1"));
    }
}
