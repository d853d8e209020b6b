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
