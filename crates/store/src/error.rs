//! The store layer's error type and its mapping onto openraft's `StorageError`.
//!
//! Everything inside the crate returns [`StoreError`]; only the trait impls in `log_store.rs` and
//! `state_machine.rs` convert it, at the boundary, into the `StorageError` openraft expects (which
//! makes openraft stop the node: a storage failure must never be papered over).

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

/// Why opening, reading or writing the node's on-disk state failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error (I/O, corruption, options).
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    /// A file outside RocksDB (the snapshot files) could not be read or written.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value did not encode or decode.
    #[error("codec: {0}")]
    Codec(#[from] postcard::Error),
    /// The data directory was written by a newer Mailraft; opening it could corrupt it.
    #[error("on-disk format version {found} is newer than the supported version {supported}")]
    UnsupportedFormat {
        /// Version recorded in the data directory (or snapshot).
        found: u32,
        /// Newest version this build understands.
        supported: u32,
    },
    /// The data directory was written by a pre-release build whose format cannot be upgraded.
    #[error(
        "on-disk format version {found} was created by a pre-release build and cannot be upgraded; re-create the data directory"
    )]
    PreReleaseFormat {
        /// Version recorded in the data directory.
        found: u32,
    },
    /// The stored data violates an invariant of the store itself.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A column family the store needs is missing (the database was not opened by [`crate::open`]).
    #[error("missing column family {0}")]
    MissingColumnFamily(&'static str),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
    /// The model cannot apply the state or an entry the way every other replica does (a
    /// feature level this binary does not know): the node must stop, not skip the entry.
    #[error(transparent)]
    Fatal(#[from] mailraft_model::FatalError),
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Task(e.to_string())
    }
}

impl StoreError {
    /// Wraps the error for openraft, naming what was being done when it happened.
    pub(crate) fn into_storage(
        self,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
    ) -> StorageError<u64> {
        StorageError::IO {
            source: StorageIOError::new(subject, verb, AnyError::new(&self)),
        }
    }
}

/// Shorthand for the crate's results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Error mapping helpers used by the openraft trait impls.
// openraft's `StorageError` is large, but it is the type its traits require.
#[allow(clippy::result_large_err)]
pub(crate) trait IntoStorage<T> {
    /// Converts a store error into openraft's, with the operation it interrupted.
    fn storage(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> Result<T, StorageError<u64>>;
}

impl<T> IntoStorage<T> for Result<T, StoreError> {
    fn storage(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> Result<T, StorageError<u64>> {
        self.map_err(|e| e.into_storage(subject, verb))
    }
}
