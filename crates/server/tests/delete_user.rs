//! `DeleteUser` finishing an interrupted deletion (`admin_service.rs`): if a deletion of the login
//! was cut short and the login was created again since, the rerun purges only the old account,
//! by id, and keeps the new user and its login; the next run deletes the new one.
#![allow(clippy::unwrap_used)]

mod common;

use mailraft_model::{Command, Request};
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::storage_client::StorageClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_finishes_the_old_deletion_and_keeps_the_new_user() {
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = common::start(1, dir.path(), true, (300, 500)).await;
    let (_, old) = node.ensure_tenant_user("example.test", "alice", "first-password").await.unwrap();

    // A deletion cut short: the account is gone, its purge never ran.
    let delete = Command::DeleteAccount { domain: "example.test".into(), login: "alice".into() };
    node.raft().client_write(Request { now_ms: 0, request_id: None, command: delete }).await.unwrap();
    let (_, new) = node.ensure_tenant_user("example.test", "alice", "second-password").await.unwrap();
    assert_ne!(old, new, "account ids are never reused");

    let mut admin = AdminClient::new(common::channel(addr).await);
    let delete_user = || pb::DeleteUserRequest { group_id: 1, login: "alice@example.test".into() };
    let first = admin.delete_user(delete_user()).await.unwrap().into_inner();
    assert_eq!(first.account_ids, vec![old], "only the interrupted deletion is finished");
    let pending = admin.pending_deletions(pb::PendingDeletionsRequest { group_id: 1 }).await.unwrap().into_inner();
    assert!(pending.deletions.is_empty(), "{pending:?}");

    // The user created since is untouched.
    let mut storage = StorageClient::new(common::channel(addr).await);
    let login = |password: &str| pb::AuthenticateRequest {
        ctx: common::ctx(b""),
        login: "alice@example.test".into(),
        password: password.into(),
        ..Default::default()
    };
    storage.authenticate(login("second-password")).await.expect("the new alice still logs in");

    // Running the command again deletes the new user.
    let second = admin.delete_user(delete_user()).await.unwrap().into_inner();
    assert_eq!(second.account_ids, vec![new]);
    assert!(storage.authenticate(login("second-password")).await.is_err(), "the new alice is deleted now");
    node.shutdown().await;
}
