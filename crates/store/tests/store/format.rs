//! The on-disk format version: recorded at creation, checked at every open.

use std::path::Path;

use mailraft_store::{FORMAT_VERSION, KEY_FORMAT_VERSION, StoreError};
use rocksdb::{DB, Options};

/// Opens the raw RocksDB of a (closed) store with all its column families.
fn raw_db(data_dir: &Path) -> DB {
    let path = data_dir.join(mailraft_store::DB_DIR);
    let opts = Options::default();
    let cfs = DB::list_cf(&opts, &path).expect("list cfs");
    DB::open_cf(&opts, &path, cfs).expect("open raw db")
}

fn stored_version(data_dir: &Path) -> Option<u32> {
    let db = raw_db(data_dir);
    let cf = db.cf_handle("sm_state").expect("sm_state cf");
    db.get_cf(&cf, KEY_FORMAT_VERSION)
        .expect("get")
        .map(|b| u32::from_be_bytes(b.as_slice().try_into().expect("4 bytes")))
}

#[test]
fn new_directory_records_current_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(mailraft_store::open(dir.path()).expect("open"));
    assert_eq!(stored_version(dir.path()), Some(FORMAT_VERSION));
    // Reopening an up-to-date directory works and keeps the version.
    drop(mailraft_store::open(dir.path()).expect("reopen"));
    assert_eq!(stored_version(dir.path()), Some(FORMAT_VERSION));
}

#[test]
fn newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(mailraft_store::open(dir.path()).expect("open"));
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("sm_state").expect("sm_state cf");
        db.put_cf(&cf, KEY_FORMAT_VERSION, (FORMAT_VERSION + 1).to_be_bytes())
            .expect("put");
    }
    match mailraft_store::open(dir.path()) {
        Err(StoreError::UnsupportedFormat { found, supported }) => {
            assert_eq!(found, FORMAT_VERSION + 1);
            assert_eq!(supported, FORMAT_VERSION);
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a directory of a newer format"),
    }
    // The refusal did not rewrite the version.
    assert_eq!(stored_version(dir.path()), Some(FORMAT_VERSION + 1));
}

#[test]
fn newer_version_with_unknown_column_family_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(mailraft_store::open(dir.path()).expect("open"));
    {
        let db = raw_db(dir.path());
        db.create_cf("from_the_future", &Options::default())
            .expect("create cf");
        let cf = db.cf_handle("sm_state").expect("sm_state cf");
        db.put_cf(&cf, KEY_FORMAT_VERSION, (FORMAT_VERSION + 1).to_be_bytes())
            .expect("put");
    }
    assert!(matches!(
        mailraft_store::open(dir.path()),
        Err(StoreError::UnsupportedFormat { .. })
    ));
}

#[test]
fn data_without_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(mailraft_store::open(dir.path()).expect("open"));
    {
        let db = raw_db(dir.path());
        let log = db.cf_handle("raft_log").expect("raft_log cf");
        db.put_cf(&log, 1u64.to_be_bytes(), b"x").expect("put");
        let cf = db.cf_handle("sm_state").expect("sm_state cf");
        db.delete_cf(&cf, KEY_FORMAT_VERSION).expect("delete");
    }
    assert!(matches!(
        mailraft_store::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn pre_release_format_1_is_refused_with_advice() {
    // Format 2 changed the Raft entry encoding (requests carry an id): a format-1 log cannot be
    // read, and format 1 was never released, so there is no upgrade, only a clear refusal.
    const { assert!(FORMAT_VERSION >= 2) };
    let dir = tempfile::tempdir().expect("tempdir");
    drop(mailraft_store::open(dir.path()).expect("open"));
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("sm_state").expect("sm_state cf");
        db.put_cf(&cf, KEY_FORMAT_VERSION, 1u32.to_be_bytes())
            .expect("put");
    }
    match mailraft_store::open(dir.path()) {
        Err(e @ StoreError::PreReleaseFormat { found: 1 }) => {
            let text = e.to_string();
            assert!(text.contains("pre-release"), "{text}");
            assert!(text.contains("re-create the data directory"), "{text}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a pre-release data directory"),
    }
    assert_eq!(stored_version(dir.path()), Some(1), "the refusal rewrote nothing");
}

#[test]
fn formats_2_to_4_are_upgraded_in_place() {
    // Formats 3 to 5 only add record versions, commands, state keys and a table that older data
    // does not contain (format 4 blobs keep their count in `blob_meta`, read when `blob_refs` has
    // no row), so each upgrade rewrites nothing but the version (which keeps older builds from
    // opening the directory).
    const { assert!(FORMAT_VERSION == 5) };
    for old in [2u32, 3, 4] {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(mailraft_store::open(dir.path()).expect("open"));
        {
            let db = raw_db(dir.path());
            let cf = db.cf_handle("sm_state").expect("sm_state cf");
            db.put_cf(&cf, KEY_FORMAT_VERSION, old.to_be_bytes()).expect("put");
        }
        drop(mailraft_store::open(dir.path()).unwrap_or_else(|e| panic!("a format-{old} directory opens: {e}")));
        assert_eq!(stored_version(dir.path()), Some(FORMAT_VERSION));
    }
}
