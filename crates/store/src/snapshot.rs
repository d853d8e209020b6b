//! State-machine snapshots: the byte format, building one from a RocksDB snapshot, installing
//! one into the column families, and keeping the current one as a file.
//!
//! Format (all postcard): a [`Header`] (magic, format version, [`SnapshotMeta`]) followed by a
//! stream of [`Record`]s: `Cf(name)` switches the column family, each `Kv(key, value)` is one
//! entry of it, and `End(count)` closes the stream so that a truncated transfer is detected.
//! Every state-machine column family is dumped, `sm_state` included, from one RocksDB snapshot,
//! so the data and its `last_applied` are consistent.
//!
//! The current snapshot lives in `<data_dir>/snapshots/current.snap`, replaced by write-to-temp,
//! fsync, rename, fsync-dir. Installing writes the column families first and the file second: a
//! crash in between leaves an older (still valid) current snapshot, never one the state lacks.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::{ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageError};
use rocksdb::{DB, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::db::{
    self, CF_SM_STATE, FORMAT_VERSION, KEY_FORMAT_VERSION, KEY_LAST_APPLIED, KEY_LAST_MEMBERSHIP,
};
use crate::error::{IntoStorage, Result, StoreError};
use crate::metrics;
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// Identifies Mailraft snapshot data.
const MAGIC: [u8; 8] = *b"MRSNAP\r\n";
/// File name of the current snapshot.
const CURRENT: &str = "current.snap";
/// Prefix of snapshot files being written.
const TMP_PREFIX: &str = "tmp-";
/// The header is small (meta + membership); reading this much of a file always covers it.
const HEADER_READ_LIMIT: u64 = 1 << 20;

/// Start of every snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// [`MAGIC`].
    magic: [u8; 8],
    /// On-disk format of the records ([`FORMAT_VERSION`] when built by this version).
    format_version: u32,
    /// What the snapshot contains.
    meta: SnapshotMeta,
}

/// One element of the record stream; borrows from the buffer when decoding.
#[derive(Debug, Serialize, Deserialize)]
enum Record<'a> {
    /// Following `Kv`s belong to this column family.
    Cf(&'a str),
    /// One key/value of the current column family.
    Kv(&'a [u8], &'a [u8]),
    /// End of stream with the number of `Kv` records, to detect truncation.
    End(u64),
}

/// Dumps the state machine as of now. Returns the meta and the snapshot bytes.
pub(crate) fn build(db: &DB) -> Result<(SnapshotMeta, Vec<u8>)> {
    let snap = db.snapshot();
    let read_opts = || {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        ro
    };
    let sm_state = db::cf(db, CF_SM_STATE)?;
    let decode_opt = |key: &[u8]| -> Result<Option<Vec<u8>>> {
        Ok(db.get_cf_opt(&sm_state, key, &read_opts())?)
    };
    let last_log_id: Option<LogId> = decode_opt(KEY_LAST_APPLIED)?
        .map(|b| postcard::from_bytes(&b))
        .transpose()?;
    let last_membership: StoredMembership = decode_opt(KEY_LAST_MEMBERSHIP)?
        .map(|b| postcard::from_bytes(&b))
        .transpose()?
        .unwrap_or_default();
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let snapshot_id = match &last_log_id {
        Some(id) => format!("{}-{}-{millis}", id.leader_id, id.index),
        None => format!("none-{millis}"),
    };
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    };

    let mut out = postcard::to_stdvec(&Header {
        magic: MAGIC,
        format_version: FORMAT_VERSION,
        meta: meta.clone(),
    })?;
    let mut count = 0u64;
    for name in db::state_machine_cfs() {
        out = postcard::to_extend(&Record::Cf(name), out)?;
        let cf = db::cf(db, name)?;
        for item in db.iterator_cf_opt(&cf, read_opts(), IteratorMode::Start) {
            let (k, v) = item?;
            out = postcard::to_extend(&Record::Kv(&k[..], &v[..]), out)?;
            count += 1;
        }
    }
    out = postcard::to_extend(&Record::End(count), out)?;
    Ok((meta, out))
}

/// Decodes the header and checks that this build can read the records after it.
fn read_header(bytes: &[u8]) -> Result<(Header, &[u8])> {
    let (header, rest): (Header, &[u8]) = postcard::take_from_bytes(bytes)?;
    if header.magic != MAGIC {
        return Err(StoreError::Corrupt("not a mailraft snapshot".into()));
    }
    db::check_supported(header.format_version)?;
    if header.format_version != FORMAT_VERSION {
        // Older snapshots will be converted here once a second format exists.
        return Err(StoreError::Corrupt(format!(
            "no upgrade path from snapshot format {}",
            header.format_version
        )));
    }
    Ok((header, rest))
}

/// Replaces the state machine's column families with the snapshot's contents, in one synced
/// batch: a crash leaves either the old state or the new one.
pub(crate) fn install(db: &DB, meta: &SnapshotMeta, bytes: &[u8]) -> Result<()> {
    let (header, mut rest) = read_header(bytes)?;
    if header.meta.last_log_id != meta.last_log_id
        || header.meta.last_membership != meta.last_membership
    {
        return Err(StoreError::Corrupt(format!(
            "snapshot data is for {:?}, meta says {:?}",
            header.meta.last_log_id, meta.last_log_id
        )));
    }

    let mut batch = WriteBatch::default();
    for name in db::state_machine_cfs() {
        clear_cf(db, name, &mut batch)?;
    }
    let mut current: Option<&'static str> = None;
    let mut count = 0u64;
    loop {
        let (record, tail): (Record<'_>, &[u8]) = postcard::take_from_bytes(rest)?;
        rest = tail;
        match record {
            Record::Cf(name) => {
                let known = db::state_machine_cfs().find(|n| *n == name);
                current = Some(known.ok_or_else(|| {
                    StoreError::Corrupt(format!("snapshot has unknown table {name}"))
                })?);
            }
            Record::Kv(key, value) => {
                let name = current
                    .ok_or_else(|| StoreError::Corrupt("snapshot entry before any table".into()))?;
                count += 1;
                // The format version describes this directory, not the sender's.
                if name == CF_SM_STATE && key == KEY_FORMAT_VERSION {
                    continue;
                }
                batch.put_cf(&db::cf(db, name)?, key, value);
            }
            Record::End(expected) => {
                if expected != count {
                    return Err(StoreError::Corrupt(format!(
                        "snapshot has {count} entries, trailer says {expected}"
                    )));
                }
                break;
            }
        }
    }
    if !rest.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "{} bytes after the snapshot trailer",
            rest.len()
        )));
    }
    let sm_state = db::cf(db, CF_SM_STATE)?;
    batch.put_cf(&sm_state, KEY_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes());
    match &meta.last_log_id {
        Some(id) => batch.put_cf(&sm_state, KEY_LAST_APPLIED, db::encode(id)?),
        None => batch.delete_cf(&sm_state, KEY_LAST_APPLIED),
    }
    batch.put_cf(
        &sm_state,
        KEY_LAST_MEMBERSHIP,
        db::encode(&meta.last_membership)?,
    );
    drop(sm_state);
    db::write_sync(db, batch)
}

/// Adds deletions of every key of a column family to `batch`: one range tombstone up to the
/// last key plus a point delete of the last key itself (range ends are exclusive).
fn clear_cf(db: &DB, name: &'static str, batch: &mut WriteBatch) -> Result<()> {
    let cf = db::cf(db, name)?;
    if let Some(item) = db.iterator_cf(&cf, IteratorMode::End).next() {
        let (last, _) = item?;
        batch.delete_range_cf(&cf, &[][..], &last[..]);
        batch.delete_cf(&cf, &last);
    }
    Ok(())
}

/// The snapshot directory and the meta of the current snapshot in it.
#[derive(Debug)]
pub(crate) struct SnapshotFiles {
    /// `<data_dir>/snapshots`.
    dir: PathBuf,
    /// Meta of `current.snap`; the lock also serializes replacing it.
    current: Mutex<Option<SnapshotMeta>>,
}

impl SnapshotFiles {
    /// Opens the directory, dropping half-written files left by a crash.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        for item in fs::read_dir(dir)? {
            let item = item?;
            if item.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                fs::remove_file(item.path())?;
            }
        }
        let path = dir.join(CURRENT);
        let current = if path.exists() {
            let mut prefix = Vec::new();
            File::open(&path)?
                .take(HEADER_READ_LIMIT)
                .read_to_end(&mut prefix)?;
            Some(read_header(&prefix)?.0.meta)
        } else {
            None
        };
        Ok(SnapshotFiles {
            dir: dir.to_path_buf(),
            current: Mutex::new(current),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Option<SnapshotMeta>>> {
        self.current
            .lock()
            .map_err(|_| StoreError::Task("snapshot lock poisoned".into()))
    }

    /// Makes `bytes` the current snapshot unless a newer one is already current (a slow build
    /// racing an install must not replace it).
    pub(crate) fn save(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<()> {
        let mut current = self.lock()?;
        if let Some(cur) = current.as_ref()
            && cur.last_log_id > meta.last_log_id
        {
            tracing::info!(current = ?cur.last_log_id, built = ?meta.last_log_id, "keeping newer snapshot");
            return Ok(());
        }
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}", meta.snapshot_id));
        {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(CURRENT))?;
        File::open(&self.dir)?.sync_all()?;
        *current = Some(meta.clone());
        Ok(())
    }

    /// The current snapshot, read from its file.
    pub(crate) fn load(&self) -> Result<Option<Snapshot>> {
        let current = self.lock()?;
        let Some(meta) = current.clone() else {
            return Ok(None);
        };
        let bytes = fs::read(self.dir.join(CURRENT))?;
        drop(current);
        Ok(Some(Snapshot {
            meta,
            snapshot: crate::types::snapshot_from_bytes(bytes),
        }))
    }
}

/// Builds snapshots for openraft, which runs it on its own task concurrently with `apply`; the
/// RocksDB snapshot taken in [`build`] keeps the dump consistent.
pub struct SnapshotBuilder {
    /// Shared database.
    db: Arc<DB>,
    /// Where the result is kept.
    files: Arc<SnapshotFiles>,
}

impl SnapshotBuilder {
    pub(crate) fn new(db: Arc<DB>, files: Arc<SnapshotFiles>) -> Self {
        SnapshotBuilder { db, files }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError<u64>> {
        let db = self.db.clone();
        let files = self.files.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<Snapshot> {
            let (meta, bytes) = build(&db)?;
            files.save(&meta, &bytes)?;
            tracing::info!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "built snapshot");
            metrics::snapshot("build");
            Ok(Snapshot {
                meta,
                snapshot: crate::types::snapshot_from_bytes(bytes),
            })
        })
        .await
        .map_err(StoreError::from)
        .and_then(|r| r);
        result.storage(ErrorSubject::Snapshot(None), ErrorVerb::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::Record;

    /// Records are encoded from borrowed slices (serde: a sequence) and decoded by borrowing
    /// (serde: bytes); postcard writes both as length + raw bytes, which this pins down.
    #[test]
    fn record_round_trips_borrowed() {
        let key = vec![0u8, 1, 2, 255];
        let value = vec![7u8; 300];
        let mut buf = postcard::to_stdvec(&Record::Cf("messages")).expect("encode");
        buf = postcard::to_extend(&Record::Kv(&key, &value), buf).expect("encode");
        buf = postcard::to_extend(&Record::End(1), buf).expect("encode");

        let (r, rest): (Record<'_>, &[u8]) = postcard::take_from_bytes(&buf).expect("decode");
        assert!(matches!(r, Record::Cf("messages")));
        let (r, rest): (Record<'_>, &[u8]) = postcard::take_from_bytes(rest).expect("decode");
        match r {
            Record::Kv(k, v) => assert_eq!((k, v), (key.as_slice(), value.as_slice())),
            other => panic!("unexpected {other:?}"),
        }
        let (r, rest): (Record<'_>, &[u8]) = postcard::take_from_bytes(rest).expect("decode");
        assert!(matches!(r, Record::End(1)));
        assert!(rest.is_empty());
    }
}
