//! Helpers shared by the test modules.

use mailraft_model::{Command, KvRead, Request, Table};
use mailraft_store::{Entry, LogId, StateView};
use openraft::{CommittedLeaderId, EntryPayload};

/// Log id in term 1, leader 0.
pub fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

/// A normal entry carrying `command` at `index`.
pub fn entry(index: u64, command: Command) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Request {
            now_ms: 1_700_000_000_000,
            command,
        }),
    }
}

/// Every key/value of every table, in table then key order.
pub fn dump(view: &StateView) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
    view.read(|kv| {
        Table::ALL
            .iter()
            .flat_map(|&t| {
                kv.scan(t, b"", None, usize::MAX)
                    .into_iter()
                    .map(move |(k, v)| (t, k, v))
            })
            .collect()
    })
    .expect("read state")
}
