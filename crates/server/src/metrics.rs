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

/// Raft messages refused before reaching openraft, by reason (`cluster_mismatch`, `not_a_voter`,
/// `foreign_vote`, `removed_node`).
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

/// Creates, at zero, every series of a counter that counts rare events (refusals, blocks), so
/// that a dashboard panel or an alert over it shows 0 rather than "no data" until the first one:
/// an absent series is indistinguishable from a process that is not scraped or a misspelt name.
/// `increment(0)` (not `absolute(0)`) so that calling it again never resets a count.
pub fn register_zero() {
    for reason in ["cluster_mismatch", "not_a_voter", "foreign_vote", "removed_node"] {
        metrics::counter!(PEER_REFUSED_TOTAL, "reason" => reason).increment(0);
    }
    for (kind, reason) in [("source", "blocked"), ("login", "blocked"), ("any", "queue")] {
        metrics::counter!(AUTH_REFUSED_TOTAL, "kind" => kind, "reason" => reason).increment(0);
    }
    for kind in ["source", "login"] {
        metrics::counter!(AUTH_BLOCKS_TOTAL, "kind" => kind).increment(0);
    }
    metrics::counter!(AUTH_UNTRACKED_TOTAL).increment(0);
    for listener in ["peer", "admin"] {
        for reason in ["no_client_certificate", "unknown_issuer", "bad_certificate", "timeout", "handshake"] {
            metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => listener, "reason" => reason).increment(0);
        }
    }
    // The store's rare events: snapshots (built only every so many entries) and read errors.
    use mailraft_store::metrics as store;
    for op in ["build", "install"] {
        metrics::counter!(store::SNAPSHOTS_TOTAL, "op" => op).increment(0);
        metrics::counter!(store::SNAPSHOT_BYTES_TOTAL, "op" => op).increment(0);
        let _ = metrics::histogram!(store::SNAPSHOT_SECONDS, "op" => op);
    }
    metrics::counter!(store::READ_ERRORS_TOTAL).increment(0);
    metrics::counter!(RAFT_STAGED_BYTES).increment(0);
    metrics::counter!(RAFT_STAGED_ENTRIES).increment(0);
    metrics::counter!(RAFT_BATCHES_SPLIT).increment(0);
    // A registered histogram is rendered with empty buckets.
    let _ = metrics::histogram!(AUTH_DELAY_SECONDS);
}

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

/// Session tokens refused by reason (`invalid`, `key_retired`, `expired`, `revoked`, `ahead`).
pub const TOKENS_REFUSED: &str = "mailraft_session_tokens_refused_total";
/// Session tokens issued, by kind (`login`, `refresh`).
pub const TOKENS_ISSUED: &str = "mailraft_session_tokens_issued_total";

/// Counts a refused session token.
pub fn token_refused(reason: &'static str) {
    metrics::counter!(TOKENS_REFUSED, "reason" => reason).increment(1);
}

/// Counts an issued session token.
pub fn token_issued(kind: &'static str) {
    metrics::counter!(TOKENS_ISSUED, "kind" => kind).increment(1);
}

/// gRPC calls refused by authorization (`authz.rs`), by service and reason (`no_certificate`,
/// `bad_certificate`, `no_role`, `wrong_role`, `wrong_sender`, `retired_node`, `unchecked`).
pub const AUTHZ_DENIED_TOTAL: &str = "mailraft_grpc_authz_denied_total";
/// TLS handshakes a gRPC listener refused or that failed, by listener (`peer`, `admin`) and
/// reason (`no_client_certificate`, `unknown_issuer`, `bad_certificate`, `timeout`, `handshake`).
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "mailraft_grpc_tls_handshake_failures_total";

/// Counts a call refused by authorization.
pub fn authz_denied(service: &'static str, reason: &'static str) {
    metrics::counter!(AUTHZ_DENIED_TOTAL, "service" => service, "reason" => reason).increment(1);
}

/// Counts a failed TLS handshake on a gRPC listener.
pub fn tls_handshake_failed(listener: &'static str, reason: &'static str) {
    metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => listener, "reason" => reason).increment(1);
}

/// Authenticate attempts answered without checking the password, by key kind (`source`,
/// `login`, `any`) and reason (`blocked`, `queue`).
pub const AUTH_REFUSED_TOTAL: &str = "mailraft_auth_refused_total";
/// Authenticate attempts that waited for their slot because their source or login had failed
/// before (the wait, in seconds).
pub const AUTH_DELAY_SECONDS: &str = "mailraft_auth_delay_seconds";
/// Keys (`source`, `login`) that reached their failure budget and were blocked.
pub const AUTH_BLOCKS_TOTAL: &str = "mailraft_auth_blocks_total";
/// Failures not recorded because the budget table was full.
pub const AUTH_UNTRACKED_TOTAL: &str = "mailraft_auth_untracked_total";
/// argon2 computations, by operation (`verify`, `verify_unknown`, `hash`).
pub const PASSWORD_HASHES_TOTAL: &str = "mailraft_password_hashes_total";
/// Storage-side read streams (FETCH) by how they ended: `complete`, `client_gone`, `deadline`,
/// `error`.
pub const READ_STREAMS_TOTAL: &str = "mailraft_read_streams_total";

/// Counts an attempt refused without hashing.
pub fn auth_refused(kind: &'static str, reason: &'static str) {
    metrics::counter!(AUTH_REFUSED_TOTAL, "kind" => kind, "reason" => reason).increment(1);
}

/// Records an attempt's wait for its slot.
pub fn auth_delayed(wait: std::time::Duration) {
    metrics::histogram!(AUTH_DELAY_SECONDS).record(wait.as_secs_f64());
}

/// Counts a new block.
pub fn auth_blocked(kind: &'static str) {
    metrics::counter!(AUTH_BLOCKS_TOTAL, "kind" => kind).increment(1);
}

/// Counts a failure the full table could not record.
pub fn auth_untracked() {
    metrics::counter!(AUTH_UNTRACKED_TOTAL).increment(1);
}

/// Counts one argon2 computation.
pub fn password_hashed(op: &'static str) {
    metrics::counter!(PASSWORD_HASHES_TOTAL, "op" => op).increment(1);
}

/// Counts a finished read stream.
pub fn read_stream_ended(how: &'static str) {
    metrics::counter!(READ_STREAMS_TOTAL, "end" => how).increment(1);
}

/// Read streams (FETCH) producing right now, each holding a snapshot.
pub const READ_STREAMS_ACTIVE: &str = "mailraft_read_streams_active";

/// Moves the open-streams gauge by `delta`.
pub fn read_streams_active(delta: f64) {
    metrics::gauge!(READ_STREAMS_ACTIVE).increment(delta);
}

/// Bytes FETCH chunks hold now on this node, from being read until the transport takes them
/// (`limits::ByteBudget`; at most the budget, 256 MiB by default).
pub const FETCH_BUFFERED_BYTES: &str = "mailraft_fetch_buffered_bytes";

/// Moves the FETCH bytes gauge by `delta`.
pub fn fetch_buffered_bytes(delta: f64) {
    metrics::gauge!(FETCH_BUFFERED_BYTES).increment(delta);
}

/// Read-index rounds run (each confirms leadership with a quorum once).
pub const READ_INDEX_ROUNDS_TOTAL: &str = "mailraft_read_index_rounds_total";
/// Linearizable reads answered by those rounds; reads/rounds is how many reads share a round.
pub const READ_INDEX_READS_TOTAL: &str = "mailraft_read_index_reads_total";

/// Counts one read-index round covering `reads` reads (`read_index.rs`).
pub fn read_index_round(reads: usize) {
    metrics::counter!(READ_INDEX_ROUNDS_TOTAL).increment(1);
    metrics::counter!(READ_INDEX_READS_TOTAL).increment(reads as u64);
}
