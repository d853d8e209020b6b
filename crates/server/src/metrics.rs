//! Per-RPC metrics and tracing spans of the storage node.
//!
//! Every service method runs its body through [`observe`] inside the span from [`rpc_span`]:
//! one place counts requests by method and outcome, times them, converts the error to a
//! `Status` and logs failures. Labels are bounded (method names and gRPC code names are static
//! strings), so the series count cannot grow with traffic.
//!
//! - `mailraft_grpc_requests_total{method,code}`: calls, by gRPC code name (`OK`, `UNAVAILABLE`, …).
//! - `mailraft_grpc_request_seconds{method}`: latency; for streaming methods, until the stream is
//!   set up (the first chunk is ready), not until the client has drained it.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Status};
use tracing::Span;

use crate::error::ServerError;

/// Counter name.
pub const REQUESTS_TOTAL: &str = "mailraft_grpc_requests_total";
/// Histogram name.
pub const REQUEST_SECONDS: &str = "mailraft_grpc_request_seconds";

/// The span one RPC runs in. `tenant` is filled in once the token is verified
/// (`Span::current().record("tenant", id)`).
pub fn rpc_span(method: &'static str, session_id: &str) -> Span {
    tracing::info_span!("rpc", method, session_id = %session_id, tenant = tracing::field::Empty)
}

/// Records the authenticated tenant on the current RPC span.
pub fn record_tenant(tenant: u64) {
    Span::current().record("tenant", tenant);
}

/// Runs one RPC body: counts, times, maps the error to a `Status` and logs it.
pub async fn observe<T>(method: &'static str, fut: impl Future<Output = Result<T, ServerError>>) -> Result<T, Status> {
    let start = Instant::now();
    let result = fut.await;
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(e) => e.codes().0,
    };
    metrics::counter!(REQUESTS_TOTAL, "method" => method, "code" => code_name(code)).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "method" => method).record(start.elapsed().as_secs_f64());
    result.map_err(|e| {
        match code {
            Code::Internal | Code::Unknown | Code::DataLoss => tracing::error!(error = %e, "rpc failed"),
            _ => tracing::debug!(error = %e, "rpc refused"),
        }
        Status::from(e)
    })
}

/// Static, bounded label for a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Raft messages refused before reaching openraft, by reason (`cluster_mismatch`, `not_a_voter`).
pub const PEER_REFUSED_TOTAL: &str = "mailraft_raft_peer_refused_total";
/// Current term of this node.
pub const RAFT_TERM: &str = "mailraft_raft_term";
/// Id of the leader this node knows, 0 when none.
pub const RAFT_LEADER_ID: &str = "mailraft_raft_leader_id";
/// 1 on the leader, 0 elsewhere.
pub const RAFT_IS_LEADER: &str = "mailraft_raft_is_leader";
/// Last log, applied, snapshot and purged index of this node (label `kind`).
pub const RAFT_LOG_INDEX: &str = "mailraft_raft_log_index";
/// On the leader: entries each follower is behind the leader's last log index, label `follower`.
pub const RAFT_FOLLOWER_LAG: &str = "mailraft_raft_follower_lag_entries";
/// Leader changes this node observed (a new term with a known leader).
pub const RAFT_LEADER_CHANGES: &str = "mailraft_raft_leader_changes_total";
/// Elections this node started (it became a candidate).
pub const RAFT_ELECTIONS: &str = "mailraft_raft_elections_total";
/// Members of the group by role (`voter`, `learner`).
pub const RAFT_MEMBERS: &str = "mailraft_raft_members";

/// Counts a refused Raft message.
pub fn peer_refused(reason: &'static str) {
    metrics::counter!(PEER_REFUSED_TOTAL, "reason" => reason).increment(1);
}

/// Bytes of large Raft entries a leader staged on followers (chunks the follower accepted).
pub const RAFT_STAGED_BYTES: &str = "mailraft_raft_staged_bytes_total";
/// Large Raft entries replicated by staging them in chunks (counted once per follower).
pub const RAFT_STAGED_ENTRIES: &str = "mailraft_raft_staged_entries_total";
/// AppendEntries batches the leader cut to a byte-bounded prefix.
pub const RAFT_BATCHES_SPLIT: &str = "mailraft_raft_batches_split_total";

/// Counts bytes of a large entry that a follower accepted into its staging buffer.
pub fn raft_staged_bytes(bytes: u64) {
    metrics::counter!(RAFT_STAGED_BYTES).increment(bytes);
}

/// Counts a large entry a follower appended from its staging buffer.
pub fn raft_staged_entry() {
    metrics::counter!(RAFT_STAGED_ENTRIES).increment(1);
}

/// Counts an AppendEntries cut to a byte-bounded prefix.
pub fn raft_batch_split() {
    metrics::counter!(RAFT_BATCHES_SPLIT).increment(1);
}
