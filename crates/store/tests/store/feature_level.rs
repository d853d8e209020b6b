//! The feature level (`mailraft_model::feature`) at the store's boundary: an entry that raises
//! it beyond what this binary knows stops the state machine with a storage error (the entry is
//! not applied), a data directory already at such a level is refused at open, and so is a
//! snapshot or a backup of such a state, before anything of the old state is replaced.

use mailraft_model::{Command, FatalError, KNOWN_FEATURE_LEVEL, Table, WriteSet, keys};
use mailraft_store::{StateMachineStore, StoreError};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use rocksdb::{DB, Options};

use crate::common::{dump, entry, receive};

/// A level this binary does not know: what newer binaries may have raised the cluster to.
const NEWER: u32 = KNOWN_FEATURE_LEVEL + 1;

/// The model's message for a state or an entry at [`NEWER`].
fn message() -> String {
    FatalError::NewerFeatureLevel {
        level: NEWER,
        known: KNOWN_FEATURE_LEVEL,
    }
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_level_stops_apply_with_a_storage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = mailraft_store::open(dir.path()).expect("open");
    let known = sm
        .apply([entry(
            1,
            Command::SetFeatureLevel {
                level: KNOWN_FEATURE_LEVEL,
            },
        )])
        .await
        .expect("the known level is applied");
    assert!(known[0].is_ok(), "{known:?}");

    let batch = [
        entry(
            2,
            Command::CreateTenant {
                domain: "example.test".into(),
            },
        ),
        entry(3, Command::SetFeatureLevel { level: NEWER }),
    ];
    let err = sm
        .apply(batch)
        .await
        .expect_err("a refusal would count the entry as applied");
    assert!(err.to_string().contains(&message()), "{err}");
    // Nothing of the batch was committed: the node stops at entry 1.
    let (applied, _) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied.map(|l| l.index), Some(1));
}

#[test]
fn a_data_directory_at_an_unknown_level_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(mailraft_store::open(dir.path()).expect("open"));
    {
        // What a snapshot or the log of newer binaries leaves behind.
        let path = dir.path().join(mailraft_store::DB_DIR);
        let opts = Options::default();
        let db = DB::open_cf(&opts, &path, DB::list_cf(&opts, &path).expect("list cfs"))
            .expect("open raw db");
        let cf = db.cf_handle(Table::Meta.name()).expect("meta cf");
        db.put_cf(&cf, keys::META_FEATURE_LEVEL, NEWER.to_be_bytes())
            .expect("put");
    }
    match mailraft_store::open(dir.path()) {
        Err(e @ StoreError::Fatal(FatalError::NewerFeatureLevel { level, known }))
            if (level, known) == (NEWER, KNOWN_FEATURE_LEVEL) =>
        {
            assert_eq!(e.to_string(), message());
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a state at a feature level this binary does not know"),
    }
}

/// A store holding tenant `domain` at entry 1, its state then raised to `level` directly (no
/// entry this binary applies can raise it beyond [`KNOWN_FEATURE_LEVEL`]).
async fn store_at_level(dir: &std::path::Path, domain: &str, level: u32) -> StateMachineStore {
    let (_log, mut sm) = mailraft_store::open(dir).expect("open");
    let replies = sm
        .apply([entry(
            1,
            Command::CreateTenant {
                domain: domain.into(),
            },
        )])
        .await
        .expect("apply");
    assert!(replies[0].is_ok(), "{replies:?}");
    let mut level_key = WriteSet::default();
    level_key.put(
        Table::Meta,
        keys::META_FEATURE_LEVEL.to_vec(),
        level.to_be_bytes().to_vec(),
    );
    sm.write_state_for_tests(level_key).expect("write level");
    sm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_at_an_unknown_level_is_refused_and_the_old_state_kept() {
    let newer_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let mut newer = store_at_level(newer_dir.path(), "example.test", NEWER).await;
    let mut follower = store_at_level(follower_dir.path(), "other.test", KNOWN_FEATURE_LEVEL).await;
    let before = dump(&follower.reader());
    let applied_before = follower.applied_state().await.expect("state");

    // The snapshot a leader of newer binaries would send.
    let snap = newer
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let received = receive(&snap.snapshot, &mut follower, 0).await;
    let err = follower
        .install_snapshot(&snap.meta, received)
        .await
        .expect_err("installed a snapshot at a feature level this binary does not know");
    // A storage error (openraft stops the node) carrying the model's message.
    assert!(err.to_string().contains(&message()), "{err}");

    assert_eq!(dump(&follower.reader()), before, "the old state was touched");
    assert_eq!(follower.applied_state().await.expect("state"), applied_before);
    assert!(
        follower
            .get_current_snapshot()
            .await
            .expect("current")
            .is_none(),
        "the refused snapshot became the current one"
    );
    // Nothing is left half-installed: the store reopens on its old state.
    drop(follower);
    let (_log, follower) = mailraft_store::open(follower_dir.path()).expect("reopen");
    assert_eq!(dump(&follower.reader()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_at_an_unknown_level_does_not_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (level, refused) in [(KNOWN_FEATURE_LEVEL, false), (NEWER, true)] {
        let data_dir = dir.path().join(format!("level-{level}"));
        let mut sm = store_at_level(&data_dir, "example.test", level).await;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        // A backup is the snapshot file.
        let file = data_dir
            .join(mailraft_store::SNAPSHOT_DIR)
            .join("current.snap");
        match mailraft_store::verify_backup(&file) {
            Ok(info) if !refused => assert_eq!(info.feature_level, level),
            Err(e @ StoreError::Fatal(_)) if refused => assert_eq!(e.to_string(), message()),
            other => panic!("level {level}: {other:?}"),
        }
    }
}
