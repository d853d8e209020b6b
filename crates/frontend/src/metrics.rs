//! Metrics of the IMAP front-end, declared in one place with bounded label values.
//!
//! Label values are static strings (command names from imap-types, a fixed result set, error
//! kinds from [`crate::error::FrontendError::kind`]), never client-controlled text, so the
//! series count stays bounded. The process installs the exporter (crate `mailraft-telemetry`);
//! without one these calls are no-ops.

use std::time::Duration;

/// Open client connections.
pub const CONNECTIONS: &str = "mailraft_imap_connections";
/// Accepted client connections since start.
pub const CONNECTIONS_TOTAL: &str = "mailraft_imap_connections_total";
/// Connections refused because `max_connections` was reached.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "mailraft_imap_connections_refused_total";
/// Completed commands by name and result (`ok`, `no`, `bad`).
pub const COMMANDS_TOTAL: &str = "mailraft_imap_commands_total";
/// Command latency by name, in seconds.
pub const COMMAND_SECONDS: &str = "mailraft_imap_command_seconds";
/// Failed storage calls by operation and error kind.
pub const STORAGE_ERRORS_TOTAL: &str = "mailraft_imap_storage_errors_total";
/// Storage call attempts that were retried, by operation and the failure that caused it.
pub const STORAGE_RETRIES_TOTAL: &str = "mailraft_imap_storage_retries_total";
/// Times the router moved to another storage node (`hint`: a NOT_LEADER hint, `rotate`: the
/// node failed and the next endpoint was chosen).
pub const STORAGE_REROUTES_TOTAL: &str = "mailraft_imap_storage_reroutes_total";
/// Reconnects of the process-wide watch stream.
pub const WATCH_RECONNECTS_TOTAL: &str = "mailraft_imap_watch_reconnects_total";
/// Watch streams dropped because no event or heartbeat arrived in time.
pub const WATCH_HEARTBEAT_TIMEOUTS_TOTAL: &str = "mailraft_imap_watch_heartbeat_timeouts_total";

/// Registers descriptions with the installed recorder (call once at start-up).
pub fn describe() {
    metrics::describe_gauge!(CONNECTIONS, "open IMAP client connections");
    metrics::describe_counter!(CONNECTIONS_TOTAL, "accepted IMAP client connections");
    metrics::describe_counter!(CONNECTIONS_REFUSED_TOTAL, "IMAP connections refused at the connection limit");
    metrics::describe_counter!(COMMANDS_TOTAL, "IMAP commands by command and result");
    metrics::describe_histogram!(COMMAND_SECONDS, metrics::Unit::Seconds, "IMAP command latency");
    metrics::describe_counter!(STORAGE_ERRORS_TOTAL, "failed storage calls by operation and kind");
    metrics::describe_counter!(STORAGE_RETRIES_TOTAL, "retried storage call attempts by operation and cause");
    metrics::describe_counter!(STORAGE_REROUTES_TOTAL, "moves to another storage node by reason");
    metrics::describe_counter!(WATCH_RECONNECTS_TOTAL, "reconnects of the watch stream");
    metrics::describe_counter!(
        WATCH_HEARTBEAT_TIMEOUTS_TOTAL,
        "watch streams dropped for missing heartbeats"
    );
}

/// A connection was accepted.
pub fn connection_opened() {
    metrics::gauge!(CONNECTIONS).increment(1.0);
    metrics::counter!(CONNECTIONS_TOTAL).increment(1);
}

/// A connection ended.
pub fn connection_closed() {
    metrics::gauge!(CONNECTIONS).decrement(1.0);
}

/// A connection was refused at the limit.
pub fn connection_refused() {
    metrics::counter!(CONNECTIONS_REFUSED_TOTAL).increment(1);
}

/// A command finished.
pub fn command(command: &'static str, result: &'static str, elapsed: Duration) {
    metrics::counter!(COMMANDS_TOTAL, "command" => command, "result" => result).increment(1);
    metrics::histogram!(COMMAND_SECONDS, "command" => command).record(elapsed.as_secs_f64());
}

/// A storage call failed (possibly retried).
pub fn storage_error(op: &'static str, kind: &'static str) {
    metrics::counter!(STORAGE_ERRORS_TOTAL, "op" => op, "kind" => kind).increment(1);
}

/// A failed storage attempt is retried.
pub fn storage_retry(op: &'static str, kind: &'static str) {
    metrics::counter!(STORAGE_RETRIES_TOTAL, "op" => op, "kind" => kind).increment(1);
}

/// The router moved to another node (`reason` is `hint` or `rotate`).
pub fn storage_reroute(reason: &'static str) {
    metrics::counter!(STORAGE_REROUTES_TOTAL, "reason" => reason).increment(1);
}

/// The watch stream went silent and is dropped.
pub fn watch_heartbeat_timeout() {
    metrics::counter!(WATCH_HEARTBEAT_TIMEOUTS_TOTAL).increment(1);
}

/// The watch stream reconnected.
pub fn watch_reconnect() {
    metrics::counter!(WATCH_RECONNECTS_TOTAL).increment(1);
}
