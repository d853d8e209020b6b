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
/// Connections refused at accept, by reason (`max_connections`: the process-wide limit,
/// `preauth_per_ip`: too many unauthenticated connections from the source address).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "mailraft_imap_connections_refused_total";
/// Open connections that have not authenticated yet.
pub const PREAUTH_CONNECTIONS: &str = "mailraft_imap_preauth_connections";
/// Connections closed because the client did not take a response within the write timeout.
pub const WRITE_TIMEOUTS_TOTAL: &str = "mailraft_imap_write_timeouts_total";
/// Literals refused as too big, by login state (`preauth`, `auth`) and form (`sync`: answered
/// before the client sends it, `nonsync`: the connection is closed).
pub const LITERALS_REFUSED_TOTAL: &str = "mailraft_imap_literals_refused_total";
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

/// Session token renewals by result (`ok`, `refused`: the session ended, `failed`: retried).
pub const TOKEN_REFRESHES_TOTAL: &str = "mailraft_imap_token_refreshes_total";

/// Registers descriptions with the installed recorder (call once at start-up).
pub fn describe() {
    metrics::describe_counter!(TOKEN_REFRESHES_TOTAL, "session token renewals by result");
    metrics::describe_gauge!(CONNECTIONS, "open IMAP client connections");
    metrics::describe_counter!(CONNECTIONS_TOTAL, "accepted IMAP client connections");
    metrics::describe_counter!(CONNECTIONS_REFUSED_TOTAL, "IMAP connections refused at accept by reason");
    metrics::describe_gauge!(PREAUTH_CONNECTIONS, "open IMAP connections not authenticated yet");
    metrics::describe_counter!(WRITE_TIMEOUTS_TOTAL, "IMAP connections closed for not reading responses in time");
    metrics::describe_counter!(LITERALS_REFUSED_TOTAL, "IMAP literals refused as too big by login state and form");
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
    // Rare events start at zero, so that dashboards and alerts over them show 0, not "no data"
    // (an absent series looks like a process that is not scraped). `increment(0)` never resets.
    for result in ["ok", "refused", "failed"] {
        metrics::counter!(TOKEN_REFRESHES_TOTAL, "result" => result).increment(0);
    }
    metrics::counter!(WRITE_TIMEOUTS_TOTAL).increment(0);
    for (stage, form) in [("preauth", "sync"), ("preauth", "nonsync"), ("auth", "sync"), ("auth", "nonsync")] {
        metrics::counter!(LITERALS_REFUSED_TOTAL, "stage" => stage, "form" => form).increment(0);
    }
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

/// A connection was refused at accept (`reason`: `max_connections` or `preauth_per_ip`).
pub fn connection_refused(reason: &'static str) {
    metrics::counter!(CONNECTIONS_REFUSED_TOTAL, "reason" => reason).increment(1);
}

/// A connection started (`1.0`) or stopped (`-1.0`) counting as unauthenticated.
pub fn preauth_connections(delta: f64) {
    metrics::gauge!(PREAUTH_CONNECTIONS).increment(delta);
}

/// A connection missed the write deadline and is closed.
pub fn write_timeout() {
    metrics::counter!(WRITE_TIMEOUTS_TOTAL).increment(1);
}

/// A literal was refused as too big (`stage`: `preauth` or `auth`; `form`: `sync` or `nonsync`).
pub fn literal_refused(stage: &'static str, form: &'static str) {
    metrics::counter!(LITERALS_REFUSED_TOTAL, "stage" => stage, "form" => form).increment(1);
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

/// A session token renewal ended with `result`.
pub fn token_refresh(result: &'static str) {
    metrics::counter!(TOKEN_REFRESHES_TOTAL, "result" => result).increment(1);
}
