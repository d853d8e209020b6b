//! openraft's own storage conformance suite, run against a fresh RocksDB store per case.

use mailraft_store::{LogStore, StateMachineStore, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use tempfile::TempDir;

/// Opens a store in a new temporary directory; the directory is the guard, removed after the
/// case (after the stores, which the case consumes, are dropped).
struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let (log, sm) = mailraft_store::open(dir.path()).map_err(|e| StorageError::IO {
            source: StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, AnyError::new(&e)),
        })?;
        Ok((dir, log, sm))
    }
}

// The suite's own signature returns openraft's (large) `StorageError`.
#[allow(clippy::result_large_err)]
#[test]
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(TempStoreBuilder)
}
