//! Snapshots carry the whole state machine: built on one store, installed on a fresh one, the
//! tables and the applied position match; broken snapshot data is refused without damage.

use mailraft_model::{Command, NewMessage};
use mailraft_store::{StateMachineStore, snapshot_from_bytes, snapshot_into_bytes};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

use crate::common::{dump, entry};

/// Applies a tenant, an account, a mailbox and two messages.
async fn populate(sm: &mut StateMachineStore) {
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
                    messages: vec![message(1), message(2)],
                },
            ),
        ])
        .await
        .expect("apply");
    assert!(replies.iter().all(|r| r.is_ok()), "{replies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_transfers_all_tables() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_l_log, mut leader) = mailraft_store::open(leader_dir.path()).expect("open leader");
    let (_f_log, mut follower) = mailraft_store::open(follower_dir.path()).expect("open follower");
    populate(&mut leader).await;

    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let current = leader
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some snapshot");
    assert_eq!(current.meta, built.meta);

    // What the gRPC layer does: bytes over the wire, rebuilt on the follower.
    let bytes = snapshot_into_bytes(current.snapshot);
    let mut received = follower.begin_receiving_snapshot().await.expect("begin");
    *received = *snapshot_from_bytes(bytes);
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

    // The installed snapshot and state survive a restart of the follower.
    drop((_f_log, follower));
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

    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    follower
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("install");
    assert_eq!(dump(&follower.reader()), dump(&leader.reader()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_snapshot_is_refused_and_state_kept() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_l_log, mut leader) = mailraft_store::open(leader_dir.path()).expect("open leader");
    let (_f_log, mut follower) = mailraft_store::open(follower_dir.path()).expect("open follower");
    populate(&mut leader).await;
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

    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let mut bytes = snapshot_into_bytes(snap.snapshot);
    bytes.truncate(bytes.len() - 10);
    let result = follower
        .install_snapshot(&snap.meta, snapshot_from_bytes(bytes))
        .await;
    assert!(result.is_err(), "a truncated snapshot was installed");
    assert_eq!(dump(&follower.reader()), before);
    assert!(
        follower
            .get_current_snapshot()
            .await
            .expect("current")
            .is_none()
    );
}
