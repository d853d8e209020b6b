//! Metrics of the store. Names are declared here once; labels are bounded (column family names
//! and fixed operation names only).

use std::time::Duration;

use metrics::Unit;
use rocksdb::DB;

use crate::db;

/// Wall time of one applied batch: model apply plus the synced write.
pub const APPLY_SECONDS: &str = "mailraft_raft_apply_seconds";
/// Raft entries applied to the state machine.
pub const APPLY_ENTRIES_TOTAL: &str = "mailraft_raft_apply_entries_total";
/// Raft log entries appended (synced).
pub const LOG_APPEND_ENTRIES_TOTAL: &str = "mailraft_raft_log_append_entries_total";
/// Wall time of one synced log append.
pub const LOG_APPEND_SECONDS: &str = "mailraft_raft_log_append_seconds";
/// On-disk size of a column family (SST files plus live blob files).
pub const ROCKSDB_SIZE_BYTES: &str = "mailraft_rocksdb_size_bytes";
/// State reads that failed inside RocksDB (reported as absent keys to the model).
pub const READ_ERRORS_TOTAL: &str = "mailraft_store_read_errors_total";
/// Snapshots built or installed.
pub const SNAPSHOTS_TOTAL: &str = "mailraft_raft_snapshots_total";
/// Bytes of snapshots built or installed, label `op` (`build`, `install`).
pub const SNAPSHOT_BYTES_TOTAL: &str = "mailraft_raft_snapshot_bytes_total";
/// Wall time of one snapshot build or install, label `op`.
pub const SNAPSHOT_SECONDS: &str = "mailraft_raft_snapshot_seconds";
/// Applied entries answered from the dedup table: retries of requests already applied (counted
/// on every replica, as each applies the log).
pub const DEDUP_HITS_TOTAL: &str = "mailraft_dedup_hits_total";

/// Work waiting to start on a pool (`pool`: `raft_log`, `raft_apply`, `read`, `password`).
pub const POOL_QUEUED: &str = "mailraft_pool_queued";
/// Work running on a pool, label `pool`.
pub const POOL_ACTIVE: &str = "mailraft_pool_active";
/// Time from submitting work to a pool until it starts, label `pool`.
pub const POOL_WAIT_SECONDS: &str = "mailraft_pool_wait_seconds";
/// Work refused because a pool had no free slot within its bounded wait, label `pool`.
pub const POOL_BUSY_TOTAL: &str = "mailraft_pool_busy_total";

/// Registers descriptions and units with the installed recorder; call once at start-up.
pub fn describe() {
    metrics::describe_gauge!(POOL_QUEUED, Unit::Count, "work waiting to start on a pool");
    metrics::describe_gauge!(POOL_ACTIVE, Unit::Count, "work running on a pool");
    metrics::describe_histogram!(POOL_WAIT_SECONDS, Unit::Seconds, "time from submission to start on a pool");
    metrics::describe_counter!(POOL_BUSY_TOTAL, Unit::Count, "work refused because a pool stayed full");
    metrics::describe_histogram!(
        APPLY_SECONDS,
        Unit::Seconds,
        "time to apply and persist one batch of raft entries"
    );
    metrics::describe_counter!(
        APPLY_ENTRIES_TOTAL,
        Unit::Count,
        "raft entries applied to the state machine"
    );
    metrics::describe_counter!(
        LOG_APPEND_ENTRIES_TOTAL,
        Unit::Count,
        "raft entries appended to the log"
    );
    metrics::describe_histogram!(
        LOG_APPEND_SECONDS,
        Unit::Seconds,
        "time to append and fsync raft log entries"
    );
    metrics::describe_gauge!(
        ROCKSDB_SIZE_BYTES,
        Unit::Bytes,
        "on-disk size of a rocksdb column family"
    );
    metrics::describe_counter!(READ_ERRORS_TOTAL, Unit::Count, "failed state machine reads");
    metrics::describe_counter!(
        DEDUP_HITS_TOTAL,
        Unit::Count,
        "retried requests answered with the recorded reply instead of being applied again"
    );
    metrics::describe_counter!(
        SNAPSHOTS_TOTAL,
        Unit::Count,
        "state machine snapshots built or installed"
    );
    metrics::describe_counter!(SNAPSHOT_BYTES_TOTAL, Unit::Bytes, "bytes of snapshots built or installed");
    metrics::describe_histogram!(SNAPSHOT_SECONDS, Unit::Seconds, "time to build or install one snapshot");
}

/// Records one applied batch.
pub(crate) fn applied(entries: usize, took: Duration) {
    metrics::histogram!(APPLY_SECONDS).record(took.as_secs_f64());
    metrics::counter!(APPLY_ENTRIES_TOTAL).increment(entries as u64);
}

/// Counts entries of one batch that were dedup hits. Called for every batch, so the series is
/// exported (at 0) before the first hit.
pub(crate) fn dedup_hits(hits: u64) {
    metrics::counter!(DEDUP_HITS_TOTAL).increment(hits);
}

/// Records one log append.
pub(crate) fn appended(entries: usize, took: Duration) {
    metrics::histogram!(LOG_APPEND_SECONDS).record(took.as_secs_f64());
    metrics::counter!(LOG_APPEND_ENTRIES_TOTAL).increment(entries as u64);
}

/// Moves a pool's queue and activity gauges by the given amounts.
pub(crate) fn pool_gauges(pool: &'static str, queued: f64, active: f64) {
    metrics::gauge!(POOL_QUEUED, "pool" => pool).increment(queued);
    metrics::gauge!(POOL_ACTIVE, "pool" => pool).increment(active);
}

/// Records how long work waited for a pool.
pub(crate) fn pool_wait(pool: &'static str, waited: Duration) {
    metrics::histogram!(POOL_WAIT_SECONDS, "pool" => pool).record(waited.as_secs_f64());
}

/// Counts work refused by a full pool.
pub(crate) fn pool_busy(pool: &'static str) {
    metrics::counter!(POOL_BUSY_TOTAL, "pool" => pool).increment(1);
}

/// Records a failed read.
pub(crate) fn read_error() {
    metrics::counter!(READ_ERRORS_TOTAL).increment(1);
}

/// Records a snapshot; `op` is "build" or "install".
pub(crate) fn snapshot(op: &'static str, bytes: u64, elapsed: Duration) {
    metrics::counter!(SNAPSHOTS_TOTAL, "op" => op).increment(1);
    metrics::counter!(SNAPSHOT_BYTES_TOTAL, "op" => op).increment(bytes);
    metrics::histogram!(SNAPSHOT_SECONDS, "op" => op).record(elapsed.as_secs_f64());
}

/// Sets `mailraft_rocksdb_size_bytes{cf}` for every column family from RocksDB's properties.
/// Cheap (no I/O); call it periodically, e.g. from the node's metrics task.
pub(crate) fn report_sizes(db: &DB) {
    for name in db::all_cfs() {
        let Ok(cf) = db::cf(db, name) else { continue };
        let mut total = 0u64;
        for prop in [
            "rocksdb.total-sst-files-size",
            "rocksdb.live-blob-file-size",
        ] {
            match db.property_int_value_cf(&cf, prop) {
                Ok(Some(v)) => total = total.saturating_add(v),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(cf = name, prop, error = %e, "rocksdb property unavailable")
                }
            }
        }
        metrics::gauge!(ROCKSDB_SIZE_BYTES, "cf" => name).set(total as f64);
    }
}
