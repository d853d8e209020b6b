//! End-to-end test of one storage node over real sockets: admin, authentication, every mailbox
//! and message RPC, Watch, and a restart on the same data directory.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::search_key::Key;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::StorageNode;
use tonic::transport::Channel;
use tonic::{Code, Status};

const DEADLINE: Duration = Duration::from_secs(20);

const MSG1: &[u8] = b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: Hello world\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nI like bananas.\r\n";
const MSG2: &[u8] = b"From: Carol <carol@example.test>\r\nSubject: =?utf-8?q?caf=C3=A9?= meeting\r\n\r\nagenda\r\n";
const MSG3: &[u8] = b"From: Dan <dan@example.test>\r\nSubject: Report\r\n\r\nnumbers\r\n";

async fn start(dir: &Path) -> StorageNode {
    common::start(1, dir, true, (150, 300)).await.0
}

async fn clients(addr: SocketAddr) -> (StorageClient<Channel>, AdminClient<Channel>) {
    let ch = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    (StorageClient::new(ch.clone()).max_decoding_message_size(usize::MAX), AdminClient::new(ch))
}

use common::{code_of, ctx};

fn key(k: Key) -> pb::SearchKey {
    pb::SearchKey { key: Some(k) }
}

fn uids(set: &pb::UidSet) -> Vec<u32> {
    set.ranges.iter().flat_map(|r| r.start..=r.end).collect()
}

async fn authenticate(s: &mut StorageClient<Channel>, password: &str) -> Result<pb::AuthenticateResponse, Status> {
    let req = pb::AuthenticateRequest { ctx: ctx(b""), login: "Alice@Example.TEST".into(), password: password.into(), ..Default::default() };
    s.authenticate(req).await.map(|r| r.into_inner())
}

async fn select(s: &mut StorageClient<Channel>, token: &[u8], name: &str) -> pb::SelectResponse {
    s.select(pb::SelectRequest { ctx: ctx(token), name: name.into() }).await.unwrap().into_inner()
}

async fn fetch(
    s: &mut StorageClient<Channel>,
    token: &[u8],
    sel: &pb::SelectResponse,
    body: pb::BodyWanted,
) -> Vec<pb::FetchedMessage> {
    let st = sel.status.clone().unwrap();
    let req = pb::FetchRequest {
        ctx: ctx(token),
        mailbox_id: st.mailbox_id,
        uidvalidity: st.uidvalidity,
        uids: Some(pb::UidSet { ranges: vec![pb::UidRange { start: 1, end: u32::MAX }] }),
        want_structure: true,
        body: body as i32,
        changed_since: 0,
    };
    let mut stream = s.fetch(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend(chunk.unwrap().messages);
    }
    out
}

async fn search(s: &mut StorageClient<Channel>, token: &[u8], st: &pb::MailboxStatus, k: pb::SearchKey) -> Vec<u32> {
    let req = pb::SearchRequest { ctx: ctx(token), mailbox_id: st.mailbox_id, uidvalidity: st.uidvalidity, key: Some(k) };
    s.search(req).await.unwrap().into_inner().uids
}

fn append_msg(body: &[u8], flags: &[&str]) -> pb::AppendMessage {
    pb::AppendMessage {
        body: body.to_vec(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internal_date: 0,
        tz_offset_minutes: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_node_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (mut s, mut admin) = clients(node.local_addr()).await;

    // Admin: tenant and user.
    let tenant = admin
        .create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "example.test".into() })
        .await
        .unwrap()
        .into_inner()
        .tenant_id;
    let user = admin
        .create_user(pb::CreateUserRequest { group_id: 1, login: "alice@example.test".into(), password: "pw1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.tenant_id, tenant);
    let dup = admin.create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "EXAMPLE.test".into() }).await;
    assert_eq!(code_of(&dup.unwrap_err()), "ALREADYEXISTS");

    // Authentication failures look the same.
    let wrong = authenticate(&mut s, "nope").await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(code_of(&wrong), "AUTHFAILED");
    let unknown = s
        .authenticate(pb::AuthenticateRequest { ctx: ctx(b""), login: "bob@example.test".into(), password: "pw1".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(unknown.message(), wrong.message());

    let auth = authenticate(&mut s, "pw1").await.unwrap();
    assert_eq!(auth.login, "alice@example.test");
    assert_eq!((auth.tenant_id, auth.account_id), (user.tenant_id, user.account_id));
    let token = auth.token.clone();

    // Forged and missing tokens.
    let mut forged = token.clone();
    let mid = forged.len() / 2;
    forged[mid] ^= 0x40;
    let err = s.list_mailboxes(pb::ListMailboxesRequest { ctx: ctx(&forged) }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = s.list_mailboxes(pb::ListMailboxesRequest { ctx: ctx(b"") }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Watch before writing.
    let mut watch = s.watch(pb::WatchRequest { group_id: 1, heartbeat_ms: 0 }).await.unwrap().into_inner();

    // Mailboxes.
    let created = s
        .create_mailbox(pb::CreateMailboxRequest { ctx: ctx(&token), name: "Work".into(), special_use: String::new() })
        .await
        .unwrap()
        .into_inner()
        .mailbox
        .unwrap();
    assert_eq!(created.name, "Work");
    let list = s.list_mailboxes(pb::ListMailboxesRequest { ctx: ctx(&token) }).await.unwrap().into_inner();
    let names: Vec<&str> = list.mailboxes.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"INBOX") && names.contains(&"Work"), "{names:?}");

    // Append: \Recent refused, then three messages get UIDs 1, 2, 3.
    let bad = s
        .append(pb::AppendRequest { ctx: ctx(&token), mailbox: "Work".into(), messages: vec![append_msg(MSG1, &["\\Recent"])] })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let appended = s
        .append(pb::AppendRequest {
            ctx: ctx(&token),
            mailbox: "Work".into(),
            messages: vec![append_msg(MSG1, &["\\Seen"]), append_msg(MSG2, &["$Important"]), append_msg(MSG3, &[])],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(appended.uids, vec![1, 2, 3]);
    assert_eq!(appended.uidvalidity, created.uidvalidity);
    assert_eq!(appended.mailbox_id, created.mailbox_id);

    // Select.
    let sel = select(&mut s, &token, "Work").await;
    let st = sel.status.clone().unwrap();
    assert_eq!(st.messages, 3);
    assert_eq!(st.unseen, 2);
    assert_eq!(st.uidnext, 4);
    assert_eq!(uids(sel.uids.as_ref().unwrap()), vec![1, 2, 3]);
    assert_eq!(sel.first_unseen_uid, 2);

    // Fetch with structure and full body, then header only.
    let msgs = fetch(&mut s, &token, &sel, pb::BodyWanted::BodyFull).await;
    assert_eq!(msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(msgs[0].body, MSG1);
    assert_eq!(msgs[2].body, MSG3);
    assert_eq!(msgs[0].size, MSG1.len() as u64);
    assert_eq!(msgs[0].flags, vec!["\\Seen".to_string()]);
    let info = mailraft_mime::MessageInfo::from_bytes(&msgs[0].structure).unwrap();
    assert_eq!(info.size, MSG1.len() as u64);
    let headers = fetch(&mut s, &token, &sel, pb::BodyWanted::BodyHeader).await;
    assert_eq!(headers[0].body, &MSG1[..info.header_len as usize]);
    assert!(headers[0].body.ends_with(b"\r\n\r\n"));
    let append_modseq = msgs[0].modseq;
    assert!(msgs.iter().all(|m| m.modseq == append_modseq));

    // Store with UNCHANGEDSINCE: succeeds once, then the same condition fails (MODIFIED).
    let store = |uid: u32, op: pb::StoreOp, flag: &str, since: u64| pb::StoreRequest {
        ctx: ctx(&token),
        mailbox_id: st.mailbox_id,
        uidvalidity: st.uidvalidity,
        uids: Some(pb::UidSet { ranges: vec![pb::UidRange { start: uid, end: uid }] }),
        op: op as i32,
        flags: vec![flag.to_string()],
        unchanged_since: since,
    };
    let stored = s.store(store(1, pb::StoreOp::StoreAdd, "\\Flagged", append_modseq)).await.unwrap().into_inner();
    assert_eq!(stored.updated.len(), 1);
    assert!(stored.updated[0].flags.contains(&"\\Flagged".to_string()));
    let flag_modseq = stored.updated[0].modseq;
    assert!(flag_modseq > append_modseq);
    let again = s.store(store(1, pb::StoreOp::StoreAdd, "$Later", append_modseq)).await.unwrap().into_inner();
    assert_eq!(again.modified, vec![1], "{again:?} after {stored:?}");
    assert!(again.updated.is_empty());

    // Search on flags, decoded headers and body text.
    assert_eq!(search(&mut s, &token, &st, key(Key::Flag("\\Flagged".into()))).await, vec![1]);
    assert_eq!(search(&mut s, &token, &st, key(Key::NotFlag("\\Seen".into()))).await, vec![2, 3]);
    let subject = pb::HeaderMatch { name: "Subject".into(), value: "CAFÉ".into() };
    assert_eq!(search(&mut s, &token, &st, key(Key::Header(subject))).await, vec![2]);
    assert_eq!(search(&mut s, &token, &st, key(Key::Body("BANANA".into()))).await, vec![1]);
    assert_eq!(search(&mut s, &token, &st, key(Key::Text("report".into()))).await, vec![3]);
    let and = pb::SearchKeys { keys: vec![key(Key::NotFlag("\\Seen".into())), key(Key::Body("numbers".into()))] };
    assert_eq!(search(&mut s, &token, &st, key(Key::And(and))).await, vec![3]);
    assert_eq!(search(&mut s, &token, &st, key(Key::Modseq(flag_modseq))).await, vec![1]);
    assert_eq!(search(&mut s, &token, &st, key(Key::SentOn(19723))).await, vec![1]);

    // Changes since the append.
    let changes = s
        .changes(pb::ChangesRequest {
            ctx: ctx(&token),
            mailbox_id: st.mailbox_id,
            uidvalidity: st.uidvalidity,
            since_modseq: append_modseq,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!changes.resync);
    assert_eq!(changes.changed.iter().map(|c| c.uid).collect::<Vec<_>>(), vec![1]);
    assert_eq!(changes.changed[0].modseq, flag_modseq);
    assert_eq!(changes.uidnext, 4);

    // Copy uid 2 and move uid 3 into INBOX (COPYUID).
    let copy = |uid: u32, is_move: bool| pb::CopyRequest {
        ctx: ctx(&token),
        mailbox_id: st.mailbox_id,
        uidvalidity: st.uidvalidity,
        uids: Some(pb::UidSet { ranges: vec![pb::UidRange { start: uid, end: uid }] }),
        destination: "INBOX".into(),
        is_move,
    };
    let copied = s.copy(copy(2, false)).await.unwrap().into_inner();
    assert_eq!((copied.source_uids.clone(), copied.dest_uids.clone()), (vec![2], vec![1]));
    let moved = s.copy(copy(3, true)).await.unwrap().into_inner();
    assert_eq!((moved.source_uids.clone(), moved.dest_uids.clone()), (vec![3], vec![2]));
    let inbox = select(&mut s, &token, "inbox").await;
    assert_eq!(uids(inbox.uids.as_ref().unwrap()), vec![1, 2]);
    assert_eq!(inbox.status.unwrap().uidvalidity, copied.dest_uidvalidity);

    // Expunge uid 1 after marking it \Deleted.
    s.store(store(1, pb::StoreOp::StoreAdd, "\\Deleted", 0)).await.unwrap();
    let expunged = s
        .expunge(pb::ExpungeRequest {
            ctx: ctx(&token),
            mailbox_id: st.mailbox_id,
            uidvalidity: st.uidvalidity,
            uids: None,
            has_uids: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expunged.expunged, vec![1]);
    let work = select(&mut s, &token, "Work").await;
    assert_eq!(uids(work.uids.as_ref().unwrap()), vec![2]);

    // Wrong UIDVALIDITY is reported as such.
    let stale = s
        .changes(pb::ChangesRequest { ctx: ctx(&token), mailbox_id: st.mailbox_id, uidvalidity: st.uidvalidity ^ 1, since_modseq: 0 })
        .await
        .unwrap_err();
    assert_eq!(code_of(&stale), "UIDVALIDITY");

    // Watch saw the append on Work.
    let saw_append = tokio::time::timeout(DEADLINE, async {
        while let Some(ev) = watch.next().await {
            let ev = ev.unwrap();
            if ev.mailbox_id == st.mailbox_id && ev.modseq >= append_modseq && ev.tenant_id == tenant {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(saw_append);

    // Restart on the same directory: everything is still there, the old token still works.
    node.shutdown().await;
    // Watch ends at shutdown (after the events still buffered in it).
    tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(_)) = watch.next().await {}
    })
    .await
    .unwrap();
    drop((s, admin));
    let node = start(dir.path()).await;
    let (mut s, _admin) = clients(node.local_addr()).await;
    let work = select(&mut s, &token, "Work").await;
    assert_eq!(uids(work.uids.as_ref().unwrap()), vec![2]);
    assert_eq!(work.status.as_ref().unwrap().uidvalidity, st.uidvalidity);
    let inbox = select(&mut s, &token, "INBOX").await;
    assert_eq!(uids(inbox.uids.as_ref().unwrap()), vec![1, 2]);
    let bodies: Vec<Vec<u8>> =
        fetch(&mut s, &token, &inbox, pb::BodyWanted::BodyFull).await.into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, vec![MSG2.to_vec(), MSG3.to_vec()]);
    assert!(authenticate(&mut s, "pw1").await.is_ok());

    // Idempotent dev-mode helper.
    let ids = node.ensure_tenant_user("example.test", "alice", "ignored").await.unwrap();
    assert_eq!(ids, (user.tenant_id, user.account_id));
    let demo = node.ensure_tenant_user("demo.test", "demo", "demo").await.unwrap();
    assert_eq!(node.ensure_tenant_user("demo.test", "demo", "demo").await.unwrap(), demo);
    node.shutdown().await;
}
