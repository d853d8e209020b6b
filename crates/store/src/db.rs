//! The node's single RocksDB instance: column families, options, the on-disk format version and
//! small typed helpers shared by the log store and the state machine.
//!
//! Layout under `<data_dir>/db`:
//! - `raft_log`: log index (big-endian u64, so keys sort by index) → postcard [`crate::Entry`];
//! - `raft_meta`: `vote`, `committed`, `last_purged` (postcard);
//! - `sm_state`: `last_applied`, `last_membership` (postcard) and `format_version` (big-endian u32);
//! - one column family per [`Table`], named by [`Table::name`]; `blob_data` keeps values of 4 KiB
//!   and more in blob files, so compactions do not rewrite message bodies.
//!
//! Every write that must survive a crash goes through [`write_sync`] (WAL fsync before returning).
//! RocksDB applies a `WriteBatch` atomically across column families, which is what lets the state
//! machine commit a batch's writes together with `last_applied`.

use std::path::Path;
use std::sync::Arc;

use mailraft_model::Table;
use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, IteratorMode, Options,
    WriteBatch, WriteOptions,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StoreError};

/// The on-disk format this build writes. Bump it (and add an upgrade step in [`upgrade_step`])
/// whenever the meaning of stored bytes changes.
///
/// History: 1 = first pre-release format; 2 = Raft entries carry a request id
/// (`mailraft_model::Request::request_id`) and the state machine has the `dedup` and
/// `dedup_by_time` tables; 3 = account records V2 (credential generation, disabled flag), the
/// session key ring (`session_keys`, key rotation) and the commands `RotateSessionKey` and
/// `SetAccountDisabled`. Format 2 data reads unchanged under format 3 (account records V1 decode
/// as generation 0, the single session key as key 0), so the upgrade only records the version;
/// the bump exists so that an older build refuses a directory it could no longer read. 4 = the
/// commands `DeleteAccount` and `PurgeAccount` with their deletion records, and the retired node
/// ids (`retired_nodes`); format 3 data reads unchanged, so again only the version is recorded.
/// 5 = blob reference counts in their own table (`blob_refs`); a blob of format 4 has no row
/// there and its count is still read from its `blob_meta` record, so format 4 data reads
/// unchanged, but a format 4 build would read stale counts from format 5 data: it must refuse it.
pub const FORMAT_VERSION: u32 = 5;
/// Oldest format whose data (and snapshot files) this build reads as they are.
pub const OLDEST_READABLE_FORMAT: u32 = 2;

/// Raft log entries.
pub(crate) const CF_RAFT_LOG: &str = "raft_log";
/// Vote, committed and last-purged log ids.
pub(crate) const CF_RAFT_META: &str = "raft_meta";
/// State-machine bookkeeping (applied position, membership, format version).
pub(crate) const CF_SM_STATE: &str = "sm_state";

/// `raft_meta` key of the persisted vote.
pub(crate) const KEY_VOTE: &[u8] = b"vote";
/// `raft_meta` key of the persisted committed log id.
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
/// `raft_meta` key of the last purged log id.
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// `sm_state` key of the last applied log id.
pub(crate) const KEY_LAST_APPLIED: &[u8] = b"last_applied";
/// `sm_state` key of the last applied membership.
pub(crate) const KEY_LAST_MEMBERSHIP: &[u8] = b"last_membership";
/// `sm_state` key of the ids of nodes that left the membership (`BTreeSet<u64>`): their Raft
/// messages are refused for good, since node ids are never reused.
pub(crate) const KEY_RETIRED_NODES: &[u8] = b"retired_nodes";
/// `sm_state` key of the on-disk format version (big-endian u32).
pub const KEY_FORMAT_VERSION: &[u8] = b"format_version";

/// Values at least this large go to blob files in `blob_data` (message bodies, mostly).
const MIN_BLOB_SIZE: u64 = 4096;

/// Column families owned by the state machine: replaced wholesale by a snapshot install and
/// dumped wholesale by a snapshot build. `sm_state` first, then the tables in [`Table::ALL`] order.
pub(crate) fn state_machine_cfs() -> impl Iterator<Item = &'static str> {
    std::iter::once(CF_SM_STATE).chain(Table::ALL.iter().map(|t| t.name()))
}

/// Every column family the store uses.
pub(crate) fn all_cfs() -> impl Iterator<Item = &'static str> {
    [CF_RAFT_LOG, CF_RAFT_META]
        .into_iter()
        .chain(state_machine_cfs())
}

/// Per column family tuning.
fn cf_options(name: &str) -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
    if name == Table::BlobData.name() {
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(MIN_BLOB_SIZE);
        opts.set_blob_compression_type(DBCompressionType::Lz4);
        opts.set_enable_blob_gc(true);
    }
    opts
}

/// Opens (creating if needed) the database at `path` and checks its format version.
pub(crate) fn open_db(path: &Path) -> Result<Arc<DB>> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(8);

    // Column families a newer version may have added must be opened too, or RocksDB refuses to
    // open at all and the operator never sees the clearer format-version error below.
    let existing = if path.join("CURRENT").exists() {
        DB::list_cf(&opts, path)?
    } else {
        Vec::new()
    };
    let mut descriptors: Vec<ColumnFamilyDescriptor> = all_cfs()
        .map(|name| ColumnFamilyDescriptor::new(name, cf_options(name)))
        .collect();
    for name in existing {
        if name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !all_cfs().any(|n| n == name) {
            tracing::warn!(cf = %name, "unknown column family in data directory");
            descriptors.push(ColumnFamilyDescriptor::new(name, Options::default()));
        }
    }

    let db = DB::open_cf_descriptors(&opts, path, descriptors)?;
    check_format(&db)?;
    Ok(Arc::new(db))
}

/// Records the format version of a fresh database, refuses newer ones, upgrades older ones.
fn check_format(db: &DB) -> Result<()> {
    let found = match db.get_cf(&cf(db, CF_SM_STATE)?, KEY_FORMAT_VERSION)? {
        Some(bytes) => decode_version(&bytes)?,
        None => {
            if !is_empty(db)? {
                return Err(StoreError::Corrupt(
                    "data directory has data but no format version".into(),
                ));
            }
            let mut batch = WriteBatch::default();
            batch.put_cf(
                &cf(db, CF_SM_STATE)?,
                KEY_FORMAT_VERSION,
                FORMAT_VERSION.to_be_bytes(),
            );
            write_sync(db, batch)?;
            tracing::info!(version = FORMAT_VERSION, "initialized a new data directory");
            return Ok(());
        }
    };
    check_supported(found)?;
    let mut version = found;
    while version < FORMAT_VERSION {
        version = upgrade_step(db, version)?;
    }
    Ok(())
}

/// Fails for a format this build cannot read.
pub(crate) fn check_supported(found: u32) -> Result<()> {
    if found > FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Rewrites the data from format `from` to `from + 1`, records the new version, returns it.
///
/// One arm per released format will go here, e.g. `2 => { upgrade_v2_to_v3(db)?; Ok(3) }`.
/// Format 1 was never released: its log entries do not decode as format 2's (no request id),
/// so it is refused rather than upgraded. Anything older is not Mailraft's.
fn upgrade_step(db: &DB, from: u32) -> Result<u32> {
    match from {
        1 => Err(StoreError::PreReleaseFormat { found: from }),
        // Each of these formats reads unchanged under the next: only the version moves.
        2..=4 => {
            let to = from + 1;
            let mut batch = WriteBatch::default();
            batch.put_cf(&cf(db, CF_SM_STATE)?, KEY_FORMAT_VERSION, to.to_be_bytes());
            write_sync(db, batch)?;
            tracing::info!(from, to, "upgraded the on-disk format");
            Ok(to)
        }
        _ => Err(StoreError::Corrupt(format!(
            "no upgrade path from on-disk format version {from}"
        ))),
    }
}

/// Decodes the stored format version.
pub(crate) fn decode_version(bytes: &[u8]) -> Result<u32> {
    let arr: [u8; 4] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("format version has {} bytes", bytes.len())))?;
    Ok(u32::from_be_bytes(arr))
}

/// True when no column family holds a key (a directory created by this open).
fn is_empty(db: &DB) -> Result<bool> {
    for name in all_cfs() {
        if let Some(item) = db.iterator_cf(&cf(db, name)?, IteratorMode::Start).next() {
            item?;
            return Ok(false);
        }
    }
    Ok(true)
}

/// The handle of a column family the store created at open.
pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> Result<Arc<BoundColumnFamily<'a>>> {
    db.cf_handle(name)
        .ok_or(StoreError::MissingColumnFamily(name))
}

/// Writes a batch and fsyncs the WAL before returning: after `Ok`, the batch survives a crash.
pub(crate) fn write_sync(db: &DB, batch: WriteBatch) -> Result<()> {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(batch, &wo)?;
    Ok(())
}

/// Writes a batch to the WAL without waiting for an fsync: it survives a process crash (the
/// bytes are in the page cache) and the next synced write makes it durable; a power cut before
/// that may lose it, whole. Only for writes that can be rebuilt from something already durable.
pub(crate) fn write_unsynced(db: &DB, batch: WriteBatch) -> Result<()> {
    db.write_opt(batch, &WriteOptions::default())?;
    Ok(())
}

/// Reads and decodes a postcard value.
pub(crate) fn get_value<T: DeserializeOwned>(
    db: &DB,
    cf_name: &'static str,
    key: &[u8],
) -> Result<Option<T>> {
    match db.get_pinned_cf(&cf(db, cf_name)?, key)? {
        Some(bytes) => Ok(Some(postcard::from_bytes(&bytes)?)),
        None => Ok(None),
    }
}

/// Encodes a value with postcard.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    Ok(postcard::to_allocvec(value)?)
}

/// Raft log key: big-endian so that RocksDB's byte order is index order.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The column family of a model table.
pub(crate) fn table_cf(db: &DB, table: Table) -> Result<Arc<BoundColumnFamily<'_>>> {
    cf(db, table.name())
}

/// Adds the model's `writes` to `batch`, each table in its column family.
pub(crate) fn add_write_set(db: &DB, batch: &mut rocksdb::WriteBatch, writes: mailraft_model::WriteSet) -> Result<()> {
    let mut cfs: std::collections::HashMap<Table, Arc<BoundColumnFamily<'_>>> = std::collections::HashMap::new();
    for ((table, key), value) in writes.ops {
        let cf = match cfs.get(&table) {
            Some(cf) => cf.clone(),
            None => {
                let cf = table_cf(db, table)?;
                cfs.insert(table, cf.clone());
                cf
            }
        };
        match value {
            Some(value) => batch.put_cf(&cf, key, value),
            None => batch.delete_cf(&cf, key),
        }
    }
    Ok(())
}
