//! The storage abstraction the model runs on: an ordered key-value space split into tables.
//!
//! The model never sees RocksDB. `apply` reads through [`KvRead`] and records its writes in a
//! [`WriteSet`]; the store crate maps each [`Table`] to a RocksDB column family and commits the
//! write set in the same `WriteBatch` as `last_applied`. Unit and property tests run the model on
//! [`MemKv`], a `BTreeMap`, so the whole mail model is tested without Raft, disks or sockets.

use std::collections::BTreeMap;
use std::ops::Bound;

/// One key family. Each maps to its own RocksDB column family, so scans of one family never
/// step over another's keys and each family can be tuned (blobs live in blob files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Table {
    /// Global counters and settings (next id, last UIDVALIDITY, session key).
    Meta,
    /// tenant_id → `Tenant`; `TenantByDomain` indexes it.
    Tenants,
    /// domain → tenant_id
    TenantByDomain,
    /// (tenant, account) → `Account`
    Accounts,
    /// (tenant, login) → account_id
    AccountByLogin,
    /// (tenant, account, mailbox) → `Mailbox`
    Mailboxes,
    /// (tenant, account, name) → mailbox_id
    MailboxByName,
    /// (tenant, account, name) → () — subscriptions may name mailboxes that do not exist.
    Subscriptions,
    /// (tenant, mailbox, uid) → `MessageMeta`
    Messages,
    /// (tenant, mailbox, modseq, uid) → `Change` (one command touches several UIDs at one modseq)
    Changes,
    /// (tenant, blob hash) → `BlobMeta` (size, structure; written once, when the blob is stored)
    BlobMeta,
    /// (tenant, blob hash) → raw message bytes
    BlobData,
    /// request id → `DedupEntry` (the reply the request got, when): exactly-once writes.
    Dedup,
    /// (time, request id) → () — the dedup entries in expiry order, for the bounded purge.
    DedupByTime,
    /// (tenant, blob hash) → how many message records point at the blob (u64 BE). Kept apart
    /// from `BlobMeta` so that COPY and MOVE rewrite 8 bytes per message, not the blob's whole
    /// precomputed structure (several KiB), which made a large COPY the most expensive apply.
    BlobRefs,
}

impl Table {
    /// Every table, in a fixed order (column family creation, snapshots).
    pub const ALL: [Table; 15] = [
        Table::Meta,
        Table::Tenants,
        Table::TenantByDomain,
        Table::Accounts,
        Table::AccountByLogin,
        Table::Mailboxes,
        Table::MailboxByName,
        Table::Subscriptions,
        Table::Messages,
        Table::Changes,
        Table::BlobMeta,
        Table::BlobData,
        Table::Dedup,
        Table::DedupByTime,
        Table::BlobRefs,
    ];

    /// Stable name, used as the RocksDB column family name. Never rename: it is on disk.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "sm_meta",
            Table::Tenants => "tenants",
            Table::TenantByDomain => "tenant_by_domain",
            Table::Accounts => "accounts",
            Table::AccountByLogin => "account_by_login",
            Table::Mailboxes => "mailboxes",
            Table::MailboxByName => "mailbox_by_name",
            Table::Subscriptions => "subscriptions",
            Table::Messages => "messages",
            Table::Changes => "changes",
            Table::BlobMeta => "blob_meta",
            Table::BlobData => "blob_data",
            Table::Dedup => "dedup",
            Table::DedupByTime => "dedup_by_time",
            Table::BlobRefs => "blob_refs",
        }
    }
}

/// Read access to a consistent view of the state.
pub trait KvRead {
    /// The value stored under `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Option<Vec<u8>>;
    /// Entries with `start <= key < end` (`end = None`: to the end of the table), ascending,
    /// at most `limit` of them.
    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// Writes produced by one or more applied commands, in order. Applying them after the commands'
/// reads is equivalent to applying each command in turn, because [`Overlay`] lets later commands
/// of the same batch read earlier commands' writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteSet {
    /// `None` deletes the key.
    pub ops: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl WriteSet {
    /// Records a put.
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.ops.insert((table, key), Some(value));
    }
    /// Records a delete.
    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.ops.insert((table, key), None);
    }
    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A base view plus the not-yet-committed writes of the batch being applied.
pub struct Overlay<'a, R: KvRead + ?Sized> {
    /// Committed state.
    pub base: &'a R,
    /// Pending writes, newest wins.
    pub writes: &'a WriteSet,
}

impl<R: KvRead + ?Sized> KvRead for Overlay<'_, R> {
    fn get(&self, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        match self.writes.ops.get(&(table, key.to_vec())) {
            Some(v) => v.clone(),
            None => self.base.get(table, key),
        }
    }

    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        // Pending writes can delete base keys, so ask the base for more than `limit` to still have
        // `limit` after the merge: at most one base key is hidden per pending write in range.
        let lo = (table, start.to_vec());
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self
            .writes
            .ops
            .range((Bound::Included(lo), Bound::Unbounded))
            .take_while(|((t, k), _)| *t == table && end.is_none_or(|e| k.as_slice() < e))
            .map(|((_, k), v)| (k, v))
            .collect();
        let base = self.base.scan(table, start, end, limit.saturating_add(pending.len()));
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
        for (k, v) in pending {
            match v {
                Some(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                None => {
                    merged.remove(k);
                }
            }
        }
        merged.into_iter().take(limit).collect()
    }
}

/// In-memory state: the model's reference backend for tests and simulations.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemKv {
    /// All tables in one ordered map.
    pub data: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
}

impl MemKv {
    /// Applies a write set.
    pub fn commit(&mut self, ws: WriteSet) {
        for ((t, k), v) in ws.ops {
            match v {
                Some(v) => {
                    self.data.insert((t, k), v);
                }
                None => {
                    self.data.remove(&(t, k));
                }
            }
        }
    }
}

impl KvRead for MemKv {
    fn get(&self, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        self.data.get(&(table, key.to_vec())).cloned()
    }

    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.data
            .range((Bound::Included((table, start.to_vec())), Bound::Unbounded))
            .take_while(|((t, k), _)| *t == table && end.is_none_or(|e| k.as_slice() < e))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }
}
