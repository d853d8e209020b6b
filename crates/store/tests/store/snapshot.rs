//! Snapshots carry the whole state machine through files: built on one store, received in
//! chunks and installed on a fresh one, the tables and the applied position match; broken
//! snapshot data is refused without damage; an install cut short by a crash is finished when the
//! store reopens, or the store refuses to open.

use std::path::Path;

use mailraft_model::{Command, NewMessage};
use mailraft_store::{Snapshot, StateMachineStore, StoreError};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

use crate::common::{dump, entry, receive};

/// Applies a tenant, an account, a mailbox and `messages` messages.
async fn populate(sm: &mut StateMachineStore, messages: usize) {
    let who = crate::common::tenant_and_account(sm, "alice").await;
    let message = |n: usize| NewMessage {
        // Large enough for the blob file path of `blob_data`.
        body: format!("Subject: {n}\r\n\r\n{}\r\n", "x".repeat(8192)).into_bytes(),
        flags: Vec::new(),
        internal_date: None,
        tz_offset_minutes: 0,
        structure: Vec::new(),
    };
    let replies = sm
        .apply([
            entry(
                3,
                Command::CreateMailbox {
                    who,
                    name: "Archive".into(),
                    special_use: None,
                },
            ),
            entry(
                4,
                Command::Append {
                    who,
                    mailbox: "INBOX".into(),
                    messages: (1..=messages).map(message).collect(),
                },
            ),
        ])
        .await
        .expect("apply");
    assert!(replies.iter().all(|r| r.is_ok()), "{replies:?}");
}

async fn build(sm: &mut StateMachineStore) -> Snapshot {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build")
}

/// Names of the files in a store's snapshot directory, sorted.
fn snapshot_files(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join(mailraft_store::SNAPSHOT_DIR))
        .expect("read snapshot dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_transfers_all_tables() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_l_log, mut leader) = mailraft_store::open(leader_dir.path()).expect("open leader");
    let (_f_log, mut follower) = mailraft_store::open(follower_dir.path()).expect("open follower");
    populate(&mut leader, 2).await;

    let built = build(&mut leader).await;
    let current = leader
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some snapshot");
    assert_eq!(current.meta, built.meta);

    // Chunks over the wire into a file the follower provides.
    let received = receive(&current.snapshot, &mut follower, 0).await;
    follower
        .install_snapshot(&current.meta, received)
        .await
        .expect("install");

    // Size gauges read RocksDB properties; without a recorder installed this is a smoke test.
    leader.reader().report_sizes();
    let leader_tables = dump(&leader.reader());
    assert!(!leader_tables.is_empty());
    assert_eq!(dump(&follower.reader()), leader_tables);
    assert_eq!(
        follower.applied_state().await.expect("state"),
        leader.applied_state().await.expect("state")
    );
    let installed = follower
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some snapshot");
    assert_eq!(installed.meta, built.meta);
    // The received file became the current snapshot; nothing else is left behind.
    assert_eq!(snapshot_files(follower_dir.path()), ["current.snap"]);
    assert_eq!(
        installed.snapshot.size().expect("size"),
        current.snapshot.size().expect("size")
    );

    // The installed snapshot and state survive a restart of the follower.
    drop((_f_log, follower, installed));
    let (_f_log, mut follower) =
        mailraft_store::open(follower_dir.path()).expect("reopen follower");
    assert_eq!(dump(&follower.reader()), leader_tables);
    let installed = follower
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some snapshot");
    assert_eq!(installed.meta, built.meta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_replaces_existing_state() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_l_log, mut leader) = mailraft_store::open(leader_dir.path()).expect("open leader");
    let (_f_log, mut follower) = mailraft_store::open(follower_dir.path()).expect("open follower");
    // The follower has diverging state of its own (e.g. from an older term) that must vanish.
    follower
        .apply([entry(
            1,
            Command::CreateTenant {
                domain: "other.test".into(),
            },
        )])
        .await
        .expect("apply");
    leader
        .apply([entry(
            1,
            Command::CreateTenant {
                domain: "example.test".into(),
            },
        )])
        .await
        .expect("apply");

    // A handle on the leader's own file (as openraft's suite passes it) is copied in.
    let snap = build(&mut leader).await;
    follower
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("install");
    assert_eq!(dump(&follower.reader()), dump(&leader.reader()));
    assert_eq!(snapshot_files(leader_dir.path()), ["current.snap"]);
    assert_eq!(snapshot_files(follower_dir.path()), ["current.snap"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_snapshot_is_refused_and_state_kept() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_l_log, mut leader) = mailraft_store::open(leader_dir.path()).expect("open leader");
    let (_f_log, mut follower) = mailraft_store::open(follower_dir.path()).expect("open follower");
    populate(&mut leader, 2).await;
    follower
        .apply([entry(
            1,
            Command::CreateTenant {
                domain: "other.test".into(),
            },
        )])
        .await
        .expect("apply");
    let before = dump(&follower.reader());
    let applied_before = follower.applied_state().await.expect("state");

    let snap = build(&mut leader).await;
    // Cut inside the trailer and inside the last value; both must be caught before any write.
    for cut in [3, 10, 5000] {
        let received = receive(&snap.snapshot, &mut follower, cut).await;
        let result = follower.install_snapshot(&snap.meta, received).await;
        assert!(
            result.is_err(),
            "a snapshot missing {cut} bytes was installed"
        );
        assert_eq!(dump(&follower.reader()), before);
        assert_eq!(
            follower.applied_state().await.expect("state"),
            applied_before
        );
        assert!(
            follower
                .get_current_snapshot()
                .await
                .expect("current")
                .is_none()
        );
        assert!(snapshot_files(follower_dir.path()).is_empty());
    }

    // The refusal left the store healthy: the complete snapshot installs.
    let received = receive(&snap.snapshot, &mut follower, 0).await;
    follower
        .install_snapshot(&snap.meta, received)
        .await
        .expect("install");
    assert_eq!(dump(&follower.reader()), dump(&leader.reader()));
}

/// The follower side of a crash test: a store with state of its own that diverges from
/// `leader`'s, which is populated and snapshotted. Returns the snapshot.
async fn crash_setup(leader: &mut StateMachineStore, follower: &mut StateMachineStore) -> Snapshot {
    populate(leader, 40).await;
    follower
        .apply([entry(
            1,
            Command::CreateTenant {
                domain: "other.test".into(),
            },
        )])
        .await
        .expect("apply");
    build(leader).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_interrupted_by_crash_is_finished_at_open() {
    // 1: only the first batch (wipe + marker) is durable; 5: some of the data as well.
    for batches in [1, 5] {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let (_l_log, mut leader) = mailraft_store::open(leader_dir.path()).expect("open leader");
        let (f_log, mut follower) =
            mailraft_store::open(follower_dir.path()).expect("open follower");
        let snap = crash_setup(&mut leader, &mut follower).await;
        let leader_tables = dump(&leader.reader());

        let received = receive(&snap.snapshot, &mut follower, 0).await;
        follower
            .install_snapshot_then_crash(&snap.meta, received, 16 << 10, batches)
            .await
            .expect("partial install");
        // The "crashed" state is a mix: neither the old state nor the snapshot's.
        let partial = dump(&follower.reader());
        assert_ne!(
            partial, leader_tables,
            "the crash came too late ({batches} batches)"
        );
        drop((f_log, follower));

        let (_f_log, mut follower) =
            mailraft_store::open(follower_dir.path()).expect("reopen follower");
        assert_eq!(
            dump(&follower.reader()),
            leader_tables,
            "after {batches} batches"
        );
        assert_eq!(
            follower.applied_state().await.expect("state"),
            leader.applied_state().await.expect("state")
        );
        let current = follower
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some snapshot");
        assert_eq!(current.meta, snap.meta);
        assert_eq!(snapshot_files(follower_dir.path()), ["current.snap"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_interrupted_without_its_file_refuses_to_open() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_l_log, mut leader) = mailraft_store::open(leader_dir.path()).expect("open leader");
    let (f_log, mut follower) = mailraft_store::open(follower_dir.path()).expect("open follower");
    let snap = crash_setup(&mut leader, &mut follower).await;

    let received = receive(&snap.snapshot, &mut follower, 0).await;
    follower
        .install_snapshot_then_crash(&snap.meta, received, 16 << 10, 3)
        .await
        .expect("partial install");
    drop((f_log, follower));
    let staged = follower_dir
        .path()
        .join(mailraft_store::SNAPSHOT_DIR)
        .join("installing.snap");
    std::fs::remove_file(&staged).expect("remove the staged snapshot");

    // A partial state machine must not be served as if it were complete.
    for _ in 0..2 {
        match mailraft_store::open(follower_dir.path()) {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("interrupted"), "{message}")
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("opened a store with a half-installed snapshot"),
        }
    }
}
