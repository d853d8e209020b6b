//! Exactly-once writes over real sockets: a mutating call repeated with the same
//! `Context.request_id` (what the front-end does when it retries after an unknown outcome) is
//! applied once and answered with the first reply; different ids are different writes.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::StorageNode;
use tonic::transport::Channel;
use tonic::Code;

const MSG: &[u8] = b"From: Bob <bob@example.test>\r\nSubject: once\r\n\r\nexactly once\r\n";

async fn start(dir: &Path) -> StorageNode {
    common::start(1, dir, true, (150, 300)).await.0
}

fn ctx(token: &[u8], request_id: &[u8]) -> Option<pb::Context> {
    Some(pb::Context {
        group_id: 1,
        token: token.to_vec(),
        session_id: "dedup-test".into(),
        request_id: request_id.to_vec(),
    })
}

use common::code_of;

fn append(token: &[u8], request_id: &[u8], mailbox: &str) -> pb::AppendRequest {
    pb::AppendRequest {
        ctx: ctx(token, request_id),
        mailbox: mailbox.into(),
        messages: vec![pb::AppendMessage { body: MSG.to_vec(), flags: vec![], internal_date: 0, tz_offset_minutes: 0 }],
    }
}

fn create(token: &[u8], request_id: &[u8], name: &str) -> pb::CreateMailboxRequest {
    pb::CreateMailboxRequest { ctx: ctx(token, request_id), name: name.into(), special_use: String::new() }
}

async fn messages(s: &mut StorageClient<Channel>, token: &[u8], name: &str) -> u32 {
    let status = s.status(pb::StatusRequest { ctx: ctx(token, b""), name: name.into() }).await.unwrap().into_inner();
    status.status.unwrap().messages
}

/// A node with tenant example.test and user alice; returns it with a client and alice's token.
async fn node_with_alice(dir: &Path) -> (StorageNode, StorageClient<Channel>, Vec<u8>) {
    let node = start(dir).await;
    let ch = Channel::from_shared(format!("http://{}", node.local_addr())).unwrap().connect().await.unwrap();
    let (mut s, mut admin) = (StorageClient::new(ch.clone()), AdminClient::new(ch));
    admin.create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "example.test".into() }).await.unwrap();
    admin
        .create_user(pb::CreateUserRequest { group_id: 1, login: "alice@example.test".into(), password: "pw".into() })
        .await
        .unwrap();
    let auth =
        pb::AuthenticateRequest { ctx: ctx(b"", b""), login: "alice@example.test".into(), password: "pw".into(), ..Default::default() };
    let token = s.authenticate(auth).await.unwrap().into_inner().token;
    (node, s, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_writes_are_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let (node, mut s, token) = node_with_alice(dir.path()).await;

    // APPEND twice with one id: the same APPENDUID, one message.
    let first = s.append(append(&token, b"append-1", "INBOX")).await.unwrap().into_inner();
    let retry = s.append(append(&token, b"append-1", "INBOX")).await.unwrap().into_inner();
    assert_eq!(retry, first);
    assert_eq!(first.uids, vec![1]);
    assert_eq!(messages(&mut s, &token, "INBOX").await, 1);

    // Both copies in flight at once (a retry sent before the first reply): still one message.
    let (mut s1, mut s2) = (s.clone(), s.clone());
    let (a, b) =
        tokio::join!(s1.append(append(&token, b"append-2", "INBOX")), s2.append(append(&token, b"append-2", "INBOX")),);
    let (a, b) = (a.unwrap().into_inner(), b.unwrap().into_inner());
    assert_eq!(a, b);
    assert_eq!(a.uids, vec![2]);
    assert_eq!(messages(&mut s, &token, "INBOX").await, 2);

    // A different id is a different APPEND; so is no id at all, twice.
    let other = s.append(append(&token, b"append-3", "INBOX")).await.unwrap().into_inner();
    assert_eq!(other.uids, vec![3]);
    s.append(append(&token, b"", "INBOX")).await.unwrap();
    s.append(append(&token, b"", "INBOX")).await.unwrap();
    assert_eq!(messages(&mut s, &token, "INBOX").await, 5);

    // CREATE retried with its id answers OK with the same mailbox, not ALREADYEXISTS...
    let made = s.create_mailbox(create(&token, b"create-1", "Work")).await.unwrap().into_inner();
    let again = s.create_mailbox(create(&token, b"create-1", "Work")).await.unwrap().into_inner();
    assert_eq!(again.mailbox.as_ref().unwrap().mailbox_id, made.mailbox.as_ref().unwrap().mailbox_id);
    // ...while a new CREATE of the same name (new id) is refused.
    let dup = s.create_mailbox(create(&token, b"create-2", "Work")).await.unwrap_err();
    assert_eq!(code_of(&dup), "ALREADYEXISTS");
    // And the refusal itself is what a retry of that call sees, even after the name is free.
    s.delete_mailbox(pb::DeleteMailboxRequest { ctx: ctx(&token, b"delete-1"), name: "Work".into() }).await.unwrap();
    let dup_retry = s.create_mailbox(create(&token, b"create-2", "Work")).await.unwrap_err();
    assert_eq!(code_of(&dup_retry), "ALREADYEXISTS");
    let delete_retry =
        s.delete_mailbox(pb::DeleteMailboxRequest { ctx: ctx(&token, b"delete-1"), name: "Work".into() }).await;
    assert!(delete_retry.is_ok(), "a retried DELETE answers OK, not NONEXISTENT: {delete_retry:?}");

    // Ids longer than 64 bytes are refused before anything is proposed.
    let long = s.append(append(&token, &[7; 65], "INBOX")).await.unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert!(long.message().contains("request id"), "{}", long.message());
    assert!(s.append(append(&token, &[7; 64], "INBOX")).await.is_ok());
    assert_eq!(messages(&mut s, &token, "INBOX").await, 6);

    // The dedup table is replicated state: it survives a restart.
    node.shutdown().await;
    drop(s);
    let node = start(dir.path()).await;
    let ch = Channel::from_shared(format!("http://{}", node.local_addr())).unwrap().connect().await.unwrap();
    let mut s = StorageClient::new(ch);
    let after_restart = s.append(append(&token, b"append-1", "INBOX")).await.unwrap().into_inner();
    assert_eq!(after_restart, first);
    assert_eq!(messages(&mut s, &token, "INBOX").await, 6);
    node.shutdown().await;
}
