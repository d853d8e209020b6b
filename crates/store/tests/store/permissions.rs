//! Secrets at rest: the data directory, RocksDB's directory and every snapshot file (which hold
//! all mail and the session keys) are readable by the owner only. The modes are set explicitly,
//! so they do not depend on the umask (under the usual 022 these would be 0755 and 0644).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mailraft_model::Command;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

use crate::common::{entry, receive, tenant_and_account};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_directory_and_snapshots_are_private() {
    let root = tempfile::tempdir().expect("tempdir");
    let leader_dir = root.path().join("leader");
    let follower_dir = root.path().join("follower");
    // An existing, world-readable directory (e.g. made by an installer) is tightened too.
    std::fs::create_dir(&follower_dir).expect("mkdir");
    std::fs::set_permissions(&follower_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let (_l_log, mut leader) = mailraft_store::open(&leader_dir).expect("open leader");
    let (_f_log, mut follower) = mailraft_store::open(&follower_dir).expect("open follower");
    tenant_and_account(&mut leader, "alice").await;
    leader
        .apply([entry(
            3,
            Command::Init {
                session_key: vec![7; 32].into(),
            },
        )])
        .await
        .expect("init");
    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let received = receive(&built.snapshot, &mut follower, 0).await;
    follower
        .install_snapshot(&built.meta, received)
        .await
        .expect("install");

    for dir in [&leader_dir, &follower_dir] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        assert_eq!(mode(&dir.join(mailraft_store::DB_DIR)), 0o700);
        let snapshots = dir.join(mailraft_store::SNAPSHOT_DIR);
        assert_eq!(mode(&snapshots), 0o700);
        let current = snapshots.join("current.snap");
        assert_eq!(mode(&current), 0o600, "{}", current.display());
    }
}
