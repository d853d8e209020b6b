//! The feature level (`mailraft_model::feature`) at the store's boundary: an entry that raises
//! it beyond what this binary knows stops the state machine with a storage error (the entry is
//! not applied), and a data directory already at such a level is refused at open.

use mailraft_model::{Command, FatalError, KNOWN_FEATURE_LEVEL, Table, keys};
use mailraft_store::StoreError;
use openraft::storage::RaftStateMachine;
use rocksdb::{DB, Options};

use crate::common::entry;

const MESSAGE: &str =
    "cluster feature level 2 needs a newer mailraft binary (this one knows up to 1)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_level_stops_apply_with_a_storage_error() {
    assert_eq!(
        KNOWN_FEATURE_LEVEL, 1,
        "update this test when the known level is raised"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = mailraft_store::open(dir.path()).expect("open");
    let known = sm
        .apply([entry(1, Command::SetFeatureLevel { level: 1 })])
        .await
        .expect("level 1 is known");
    assert!(known[0].is_ok(), "{known:?}");

    let batch = [
        entry(
            2,
            Command::CreateTenant {
                domain: "example.test".into(),
            },
        ),
        entry(3, Command::SetFeatureLevel { level: 2 }),
    ];
    let err = sm
        .apply(batch)
        .await
        .expect_err("a refusal would count the entry as applied");
    assert!(err.to_string().contains(MESSAGE), "{err}");
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
        db.put_cf(&cf, keys::META_FEATURE_LEVEL, 2u32.to_be_bytes())
            .expect("put");
    }
    match mailraft_store::open(dir.path()) {
        Err(e @ StoreError::Fatal(FatalError::NewerFeatureLevel { level: 2, known: 1 })) => {
            assert_eq!(e.to_string(), MESSAGE);
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a state at a feature level this binary does not know"),
    }
}
