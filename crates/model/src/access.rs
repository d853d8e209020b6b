//! Typed reads shared by `apply` and `query`: decode records, scan whole ranges page by page.

use std::ops::ControlFlow;

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
    let all: Result<(), std::convert::Infallible> = for_each_page(kv, table, range, max, |page| {
        out.extend(page);
        Ok(ControlFlow::Continue(()))
    });
    match all {
        Ok(()) => out,
        Err(never) => match never {},
    }
}

/// Hands at most `max` entries of `range` to `f`, ascending, one page at a time, until `f`
/// breaks: a caller that keeps only part of each entry (a UID, a sum) holds one page of values,
/// never the whole range's.
pub(crate) fn for_each_page<E>(
    kv: &dyn KvRead,
    table: Table,
    range: &KeyRange,
    max: usize,
    mut f: impl FnMut(Vec<(Vec<u8>, Vec<u8>)>) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let mut start = range.start.clone();
    let mut left = max;
    while left > 0 {
        let want = PAGE.min(left);
        let page = kv.scan(table, &start, range.end.as_deref(), want);
        left -= page.len();
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
        if f(page)?.is_break() {
            break;
        }
        match next {
            Some(k) => start = k,
            None => break,
        }
    }
    Ok(())
}
