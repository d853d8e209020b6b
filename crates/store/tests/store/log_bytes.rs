//! `LogStore::log_bytes` counts the encoded entries in the log: those found at open, and after
//! purge and truncate (appends are counted too, see the unit test; only openraft can call
//! `append`, since only it can build the flush callback).

use mailraft_model::Command;
use mailraft_store::Entry;
use openraft::storage::RaftLogStorage;
use rocksdb::{DB, Options};

use crate::common::{entry, log_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_bytes_are_counted_from_open_through_purge_and_truncate() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(mailraft_store::open(dir.path()).expect("open"));

    // Entries as openraft's `append` stores them: big-endian index → postcard entry.
    let entries: Vec<Entry> = (1..=3)
        .map(|i| {
            entry(
                i,
                Command::CreateTenant {
                    domain: format!("t{}.test", "x".repeat(i as usize * 100)),
                },
            )
        })
        .collect();
    let sizes: Vec<u64> = entries
        .iter()
        .map(|e| postcard::to_allocvec(e).expect("encode").len() as u64)
        .collect();
    {
        let path = dir.path().join(mailraft_store::DB_DIR);
        let cfs = DB::list_cf(&Options::default(), &path).expect("list cfs");
        let db = DB::open_cf(&Options::default(), &path, cfs).expect("open raw db");
        let cf = db.cf_handle("raft_log").expect("raft_log cf");
        for e in &entries {
            db.put_cf(
                &cf,
                e.log_id.index.to_be_bytes(),
                postcard::to_allocvec(e).expect("encode"),
            )
            .expect("put");
        }
    }

    let (mut log, _sm) = mailraft_store::open(dir.path()).expect("reopen");
    let bytes = log.log_bytes();
    assert_eq!(bytes.since(None), sizes.iter().sum::<u64>());
    assert_eq!(bytes.since(Some(1)), sizes[1] + sizes[2]);
    assert_eq!(bytes.since(Some(3)), 0);

    log.purge(log_id(2)).await.expect("purge");
    assert_eq!(bytes.since(None), sizes[2]);
    log.truncate(log_id(3)).await.expect("truncate");
    assert_eq!(bytes.since(None), 0);
}
