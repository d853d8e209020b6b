//! Typed reads shared by `apply` and `query`: decode records, scan whole ranges page by page.

use crate::command::ModelError;
use crate::keys::{self, KeyRange};
use crate::kv::{KvRead, Table};
use crate::records::Record;

/// Rows fetched per scan call: bounds the memory of one step (and of `Overlay`'s merge).
const PAGE: usize = 1024;

/// Reads and decodes one record; `Ok(None)` when absent.
pub(crate) fn get<R: Record>(kv: &dyn KvRead, table: Table, key: &[u8]) -> Result<Option<R>, ModelError> {
    kv.get(table, key).map(|v| R::decode(&v)).transpose()
}

/// Reads an id-valued index entry (TenantByDomain, AccountByLogin, MailboxByName).
pub(crate) fn get_id(kv: &dyn KvRead, table: Table, key: &[u8]) -> Result<Option<u64>, ModelError> {
    match kv.get(table, key) {
        None => Ok(None),
        Some(v) => keys::decode_id_value(&v)
            .map(Some)
            .ok_or_else(|| ModelError::Corrupt(format!("{} index value", table.name()))),
    }
}

/// Every entry of `range`, ascending, fetched in pages.
pub(crate) fn scan_all(kv: &dyn KvRead, table: Table, range: &KeyRange) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan_up_to(kv, table, range, usize::MAX)
}

/// At most `max` entries of `range`, ascending, fetched in pages.
pub(crate) fn scan_up_to(kv: &dyn KvRead, table: Table, range: &KeyRange, max: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = range.start.clone();
    while out.len() < max {
        let want = PAGE.min(max - out.len());
        let page = kv.scan(table, &start, range.end.as_deref(), want);
        // A full page may have more after it: continue at the next key, `last ++ [0]`.
        let next = if page.len() == want {
            page.last().map(|(k, _)| {
                let mut k = k.clone();
                k.push(0);
                k
            })
        } else {
            None
        };
        out.extend(page);
        match next {
            Some(k) => start = k,
            None => break,
        }
    }
    out
}
