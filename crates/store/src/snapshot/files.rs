//! The snapshot directory and [`SnapshotData`], the file handle openraft passes around.
//!
//! `<data_dir>/snapshots/` holds:
//! - `current.snap`: the newest complete snapshot, what `get_current_snapshot` hands out;
//! - `installing.snap`: a received snapshot while (and only while) it is being installed; it is
//!   what a crash in the middle of an install resumes from (see the parent module);
//! - `tmp-*`: files being built or received; removed when their handle is dropped and at open.
//!
//! Every file becomes `current.snap` or `installing.snap` by fsync, rename, fsync of the
//! directory, so a crash leaves either the old or the new file under that name, complete.
//! A [`SnapshotData`] holds an open descriptor: a reader keeps reading the file it got even if
//! a newer snapshot replaces `current.snap` meanwhile (POSIX keeps the unlinked inode alive).

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::IO_BUFFER;
use super::format::{FormatReader, Header};
use crate::error::{Result, StoreError};
use crate::private_fs;
use crate::types::{Snapshot, SnapshotMeta};

/// File name of the current snapshot.
const CURRENT: &str = "current.snap";
/// File name of the snapshot being installed.
const INSTALLING: &str = "installing.snap";
/// Prefix of files being written.
const TMP_PREFIX: &str = "tmp-";

/// Makes temporary names unique within the process (RocksDB's lock keeps other processes out
/// of the data directory).
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// A snapshot's bytes: an open file in the layout of `format.rs`.
///
/// Handed out by `get_current_snapshot` and `build_snapshot` (read-only) and by
/// `begin_receiving_snapshot` (an empty temporary file in the snapshot directory, filled with
/// [`SnapshotData::append`]). The network layer streams it with [`SnapshotData::read_chunk`];
/// nothing here reads a whole snapshot into memory.
pub struct SnapshotData {
    /// The open file.
    file: File,
    /// Where it was opened; for logs, and for the rename when a received file is installed.
    path: PathBuf,
    /// A temporary file owned by this handle: removed when the handle is dropped.
    remove_on_drop: bool,
    /// Bytes appended so far (receiving only).
    appended: u64,
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotData")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for SnapshotData {
    fn drop(&mut self) {
        if self.remove_on_drop
            && let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove snapshot temp file");
        }
    }
}

impl SnapshotData {
    fn new(file: File, path: PathBuf, remove_on_drop: bool) -> Self {
        SnapshotData {
            file,
            path,
            remove_on_drop,
            appended: 0,
        }
    }

    /// Size of the snapshot in bytes.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Up to `max` bytes starting at `offset`; empty at the end of the file. Runs on tokio's
    /// blocking pool; the handle's own position is not used, so reads never interfere.
    pub async fn read_chunk(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let file = self.file.try_clone()?;
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; max];
            let mut filled = 0;
            while filled < max {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Appends received bytes (a handle from `begin_receiving_snapshot` only; others are
    /// read-only and fail). Runs on tokio's blocking pool. Not fsynced: installing does that.
    pub async fn append(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        let file = self.file.try_clone()?;
        let at = self.appended;
        let len = bytes.len() as u64;
        tokio::task::spawn_blocking(move || file.write_all_at(&bytes, at))
            .await
            .map_err(io::Error::other)??;
        self.appended += len;
        Ok(())
    }

    /// A buffered reader from the start of the file (positional, so shared descriptors do not
    /// matter).
    pub(crate) fn reader(&self) -> BufReader<PositionalReader<'_>> {
        BufReader::with_capacity(
            IO_BUFFER,
            PositionalReader {
                file: &self.file,
                pos: 0,
            },
        )
    }
}

/// `Read` over a file with `pread`, starting at 0, independent of the descriptor's offset.
pub(crate) struct PositionalReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads the header of a snapshot file without reading the rest.
pub(crate) fn read_header(data: &SnapshotData) -> Result<Header> {
    Ok(FormatReader::open(data.reader(), data.size()?)?.1)
}

/// The snapshot directory of one store.
#[derive(Debug)]
pub(crate) struct SnapshotFiles {
    /// `<data_dir>/snapshots`.
    dir: PathBuf,
    /// Meta of `current.snap`; the lock also serializes renames onto that name.
    current: Mutex<Option<SnapshotMeta>>,
    /// Held exclusively for a whole install and shared while a build takes its RocksDB
    /// snapshot, so a build never captures a half-installed state.
    install: RwLock<()>,
}

impl SnapshotFiles {
    /// Opens the directory, dropping temporary files left by a crash. An unreadable
    /// `current.snap` (damaged, or an older layout) is dropped too: a snapshot can always be
    /// rebuilt from the state machine, which openraft does when it finds none.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        // Snapshots hold the whole state, session keys included: owner only.
        private_fs::create_dir(dir)?;
        private_fs::restrict_file(&dir.join(CURRENT))?;
        private_fs::restrict_file(&dir.join(INSTALLING))?;
        for item in fs::read_dir(dir)? {
            let item = item?;
            if item.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                fs::remove_file(item.path())?;
            }
        }
        let path = dir.join(CURRENT);
        let current = match File::open(&path) {
            Ok(file) => match read_header(&SnapshotData::new(file, path.clone(), false)) {
                Ok(header) => Some(header.meta),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "dropping unreadable snapshot file");
                    fs::remove_file(&path)?;
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(SnapshotFiles {
            dir: dir.to_path_buf(),
            current: Mutex::new(current),
            install: RwLock::new(()),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Option<SnapshotMeta>>> {
        self.current
            .lock()
            .map_err(|_| StoreError::Task("snapshot lock poisoned".into()))
    }

    /// Exclusive: held for a whole install.
    pub(crate) fn install_guard(&self) -> Result<RwLockWriteGuard<'_, ()>> {
        self.install
            .write()
            .map_err(|_| StoreError::Task("snapshot install lock poisoned".into()))
    }

    /// Shared: held by a build while it takes its RocksDB snapshot.
    pub(crate) fn build_guard(&self) -> Result<RwLockReadGuard<'_, ()>> {
        self.install
            .read()
            .map_err(|_| StoreError::Task("snapshot install lock poisoned".into()))
    }

    /// A fresh temporary path; `kind` is for humans looking at the directory.
    pub(crate) fn tmp_path(&self, kind: &str) -> PathBuf {
        let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{TMP_PREFIX}{kind}-{n}"))
    }

    /// Path of the file an install works from.
    pub(crate) fn installing_path(&self) -> PathBuf {
        self.dir.join(INSTALLING)
    }

    /// An empty, writable temporary file for a snapshot arriving from the leader.
    pub(crate) fn receiving(&self) -> Result<SnapshotData> {
        let path = self.tmp_path("recv");
        let file = private_fs::file_options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(SnapshotData::new(file, path, true))
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Makes the built (and fsynced) file at `tmp` the current snapshot unless a newer one is
    /// already current (a slow build racing an install must not replace it). Either way the
    /// returned handle reads the built file.
    pub(crate) fn save_built(&self, meta: &SnapshotMeta, tmp: PathBuf) -> Result<SnapshotData> {
        let file = File::open(&tmp)?;
        let mut current = self.lock()?;
        if let Some(cur) = current.as_ref()
            && cur.last_log_id > meta.last_log_id
        {
            tracing::info!(current = ?cur.last_log_id, built = ?meta.last_log_id, "keeping newer snapshot");
            // The open handle keeps the unlinked file readable for whoever asked for it.
            fs::remove_file(&tmp)?;
            return Ok(SnapshotData::new(file, tmp, false));
        }
        let path = self.dir.join(CURRENT);
        fs::rename(&tmp, &path)?;
        self.sync_dir()?;
        *current = Some(meta.clone());
        Ok(SnapshotData::new(file, path, false))
    }

    /// Makes `data` durable as `installing.snap` and returns that path: a received file in
    /// this directory is fsynced and renamed, anything else (a handle on another store's file,
    /// as in tests and openraft's suite) is copied in a stream first.
    pub(crate) fn stage(&self, mut data: SnapshotData) -> Result<PathBuf> {
        let target = self.installing_path();
        if data.remove_on_drop && data.path.parent() == Some(self.dir.as_path()) {
            data.file.sync_all()?;
            fs::rename(&data.path, &target)?;
            data.remove_on_drop = false;
        } else {
            let tmp = self.tmp_path("copy");
            let copy = (|| -> Result<()> {
                let mut out = private_fs::create_file(&tmp)?;
                io::copy(&mut data.reader(), &mut out)?;
                out.sync_all()?;
                fs::rename(&tmp, &target)?;
                Ok(())
            })();
            if let Err(e) = copy {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        self.sync_dir()?;
        Ok(target)
    }

    /// Removes `installing.snap` (refused, or left over from an install that never started).
    pub(crate) fn discard_installing(&self) -> Result<()> {
        match fs::remove_file(self.installing_path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Makes the installed `installing.snap` the current snapshot.
    pub(crate) fn promote_installing(&self, meta: &SnapshotMeta) -> Result<()> {
        let mut current = self.lock()?;
        fs::rename(self.installing_path(), self.dir.join(CURRENT))?;
        self.sync_dir()?;
        *current = Some(meta.clone());
        Ok(())
    }

    /// Opens a file of this directory read-only (no ownership).
    pub(crate) fn open_file(path: &Path) -> Result<SnapshotData> {
        Ok(SnapshotData::new(
            File::open(path)?,
            path.to_path_buf(),
            false,
        ))
    }

    /// A handle on the current snapshot; nothing is read.
    pub(crate) fn current(&self) -> Result<Option<Snapshot>> {
        let current = self.lock()?;
        let Some(meta) = current.clone() else {
            return Ok(None);
        };
        let data = Self::open_file(&self.dir.join(CURRENT))?;
        drop(current);
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(data),
        }))
    }
}
