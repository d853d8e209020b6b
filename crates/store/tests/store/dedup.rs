//! The apply path deduplicates by request id, within one batch (the second entry reads the
//! first's dedup record from the batch's pending writes) and across batches, and publishes
//! events only for the entry that was really applied.

use mailraft_model::{Command, NewMessage, Outcome, Request, RequestId, UidSet, query};
use mailraft_store::Entry;
use openraft::EntryPayload;
use openraft::storage::RaftStateMachine;

use crate::common::log_id;

fn append_with_id(index: u64, who: mailraft_model::Principal, id: &[u8]) -> Entry {
    let command = Command::Append {
        who,
        mailbox: "INBOX".into(),
        messages: vec![NewMessage {
            body: b"Subject: once\r\n\r\nbody\r\n".to_vec(),
            flags: vec![],
            internal_date: None,
            tz_offset_minutes: 0,
            structure: Vec::new(),
        }],
    };
    let mut req = Request::new(1_700_000_000_000 + index as i64, command);
    req.request_id = Some(RequestId::new(id.to_vec()).expect("valid id"));
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(req),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_applied_once_within_and_across_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = mailraft_store::open(dir.path()).expect("open");
    let who = crate::common::tenant_and_account(&mut sm, "bob").await;
    let mut events = sm.subscribe();

    let replies = sm
        .apply([append_with_id(3, who, b"r1"), append_with_id(4, who, b"r1")])
        .await
        .expect("apply batch");
    assert!(
        matches!(&replies[0], Ok(Outcome::Appended { uids, .. }) if uids == &[1]),
        "{replies:?}"
    );
    assert_eq!(
        replies[1], replies[0],
        "the retry in the same batch gets the first reply"
    );
    let later = sm
        .apply([append_with_id(5, who, b"r1")])
        .await
        .expect("apply retry");
    assert_eq!(later[0], replies[0], "a retry in a later batch too");
    let other = sm
        .apply([append_with_id(6, who, b"r2")])
        .await
        .expect("apply other");
    assert!(
        matches!(&other[0], Ok(Outcome::Appended { uids, .. }) if uids == &[2]),
        "{other:?}"
    );

    let uids = sm
        .reader()
        .read(|kv| {
            let inbox = query::mailbox_by_name(kv, who, "INBOX")?;
            query::messages(kv, who, &inbox, &UidSet::range(1, u32::MAX), 0)
        })
        .expect("read")
        .expect("query")
        .iter()
        .map(|m| m.uid)
        .collect::<Vec<_>>();
    assert_eq!(uids, vec![1, 2]);
    // One event per applied append, none for the replays.
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        seen.push(ev.modseq);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}
