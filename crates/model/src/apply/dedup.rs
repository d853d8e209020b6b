//! Exactly-once writes: the replicated dedup table.
//!
//! A caller that does not learn the outcome of a write (the leader died, the connection was cut
//! after the entry reached a quorum) retries it with the same [`RequestId`]. Both entries may end
//! up committed; every replica applies them in log order, so the first one runs and records its
//! reply, and every later one within [`DEDUP_WINDOW_MS`] is answered with that reply and changes
//! nothing. A retried APPEND therefore stores the message once and returns the original
//! APPENDUID; a retried CREATE answers OK, not `[ALREADYEXISTS]`.
//!
//! Flow, inside [`super::apply_detailed`] for every request:
//! 1. [`purge`]: deletes at most [`PURGE_PER_APPLY`] entries older than the window, oldest
//!    first. The scan starts at a floor kept in `Meta` (every index row is at or after it), not
//!    at the table's start, so it does not step over the deleted rows of earlier purges (in
//!    RocksDB, tombstones that compaction has not dropped yet).
//! 2. [`lookup`] (requests with an id): a live entry of the same command and principal is a
//!    replay; one of another command or account is refused (`Invalid`) and its reply is never
//!    shown; an expired one is deleted and treated as absent, so expiry does not depend on how
//!    far the bounded purge has got.
//! 3. The command runs as usual; [`record`] stores its reply, success or error (a retry must see
//!    what the original saw), even though a failed command's own writes are discarded.
//!
//! Bounds: the table holds the writes of the last window. Each apply adds at most one entry and
//! may purge [`PURGE_PER_APPLY`], so the purge keeps up with any write rate and a backlog (after
//! a quiet period) drains within a few writes; no count bound is needed. Only `now_ms` of the
//! request and the state are used: every replica purges and answers identically.

use crate::command::{Command, ModelError, Reply, RequestId};
use crate::keys;
use crate::kv::{KvRead, Overlay, Table, WriteSet};
use crate::records::{DedupEntry, Record};

/// How long a request id is remembered, in milliseconds of the proposers' clocks: 10 minutes.
/// It must exceed any front-end's retry deadline (a retry after the window would be applied
/// again) plus the clock skew between successive leaders (each stamps `now_ms` from its own
/// clock).
pub const DEDUP_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Most expired entries one apply deletes: bounds the work a single write can trigger.
pub const PURGE_PER_APPLY: usize = 32;

/// Whether a request id has been seen.
pub(super) enum Seen {
    /// Not within the window: apply the command.
    New,
    /// Already applied: answer with this reply and do nothing else.
    Replay(Reply),
}

/// True when an entry recorded at `at_ms` is past the window at `now_ms`.
fn expired(at_ms: i64, now_ms: i64) -> bool {
    at_ms <= now_ms.saturating_sub(DEDUP_WINDOW_MS)
}

/// The purge floor; `i64::MIN` before the first purge.
fn floor(kv: &dyn KvRead) -> Result<i64, ModelError> {
    match kv.get(Table::Meta, keys::META_DEDUP_FLOOR) {
        None => Ok(i64::MIN),
        Some(v) if v.len() == 8 => keys::decode_dedup_time(&v).ok_or_else(|| ModelError::Corrupt("dedup_floor".into())),
        Some(_) => Err(ModelError::Corrupt("dedup_floor".into())),
    }
}

/// Deletes up to [`PURGE_PER_APPLY`] expired entries into `writes`; returns the floor after it.
pub(super) fn purge(kv: &dyn KvRead, writes: &mut WriteSet, now_ms: i64) -> Result<i64, ModelError> {
    let view = Overlay { base: kv, writes: &*writes };
    let old_floor = floor(&view)?;
    let cutoff = now_ms.saturating_sub(DEDUP_WINDOW_MS);
    if cutoff < old_floor {
        return Ok(old_floor);
    }
    // Rows with a time in [floor, cutoff]; `cutoff + 1` saturates only at i64::MAX, which no
    // real clock reaches.
    let range = keys::dedup_by_time_range(old_floor, cutoff.saturating_add(1));
    let rows = view.scan(Table::DedupByTime, &range.start, range.end.as_deref(), PURGE_PER_APPLY);
    let mut new_floor = old_floor;
    let mut ops = WriteSet::default();
    for (key, _) in rows {
        // Everything left is at or after this row's time: rows come in time order.
        if let Some(at) = key.get(..8).and_then(keys::decode_dedup_time) {
            new_floor = new_floor.max(at);
        }
        if let Some((_, id)) = keys::dedup_by_time_of(&key) {
            ops.delete(Table::Dedup, keys::dedup(&id));
        }
        // A malformed index row cannot name its entry; it is deleted all the same.
        ops.delete(Table::DedupByTime, key);
    }
    if new_floor != old_floor {
        ops.put(Table::Meta, keys::META_DEDUP_FLOOR.to_vec(), keys::dedup_time(new_floor).to_vec());
    }
    writes.ops.extend(ops.ops);
    Ok(new_floor)
}

/// Looks `id` up; deletes an expired entry (into `writes`) and reports it as new.
pub(super) fn lookup(
    kv: &dyn KvRead,
    writes: &mut WriteSet,
    id: &RequestId,
    command: &Command,
    now_ms: i64,
) -> Result<Seen, ModelError> {
    let key = keys::dedup(id);
    let Some(bytes) = (Overlay { base: kv, writes: &*writes }).get(Table::Dedup, &key) else {
        return Ok(Seen::New);
    };
    let entry = DedupEntry::decode(&bytes)?;
    if expired(entry.at_ms, now_ms) {
        writes.delete(Table::DedupByTime, keys::dedup_by_time(entry.at_ms, id));
        writes.delete(Table::Dedup, key);
        return Ok(Seen::New);
    }
    if entry.command != command.name() || entry.who != command.principal() {
        // A front-end bug (ids must not repeat); answering would show one account another's
        // reply, and applying would break the promise made to the first request.
        return Err(ModelError::Invalid(format!(
            "request id {} was already used for another request",
            hex::encode(id.as_bytes())
        )));
    }
    Ok(Seen::Replay(entry.reply))
}

/// Remembers `reply` as the answer to `id` from `at_ms` on.
pub(super) fn record(writes: &mut WriteSet, id: &RequestId, command: &Command, at_ms: i64, reply: &Reply) {
    let entry =
        DedupEntry { at_ms, command: command.name().to_string(), who: command.principal(), reply: reply.clone() };
    writes.put(Table::Dedup, keys::dedup(id), entry.encode());
    writes.put(Table::DedupByTime, keys::dedup_by_time(at_ms, id), Vec::new());
}
