//! What `apply` acknowledged survives closing and reopening the store, and is readable through
//! the model's query functions.

use mailraft_model::{Command, NewMessage, Outcome, UidSet, query};
use mailraft_store::LogId;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Vote};

use crate::common::{dump, entry, log_id};

const BODY: &[u8] = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_append_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");

    let (uid, before) = {
        let (_log, mut sm) = mailraft_store::open(dir.path()).expect("open");
        let mut events = sm.subscribe();
        let who = crate::common::tenant_and_account(&mut sm, "bob").await;

        let replies = sm
            .apply([entry(
                3,
                Command::Append {
                    who,
                    mailbox: "INBOX".into(),
                    messages: vec![NewMessage {
                        body: BODY.to_vec(),
                        flags: vec![mailraft_model::Flag::Seen],
                        internal_date: Some(1_700_000_000),
                        tz_offset_minutes: 60,
                        structure: Vec::new(),
                    }],
                },
            )])
            .await
            .expect("apply append");
        let (mailbox, uid) = match &replies[0] {
            Ok(Outcome::Appended { mailbox, uids, .. }) => (*mailbox, uids[0]),
            other => panic!("unexpected reply {other:?}"),
        };
        // The event is published once the batch is durable, i.e. before apply returned.
        let event = events.try_recv().expect("event published");
        assert_eq!((event.who, event.mailbox), (who, mailbox));
        (uid, dump(&sm.reader()))
    };

    // Everything above was dropped: RocksDB is closed. Reopen the same directory.
    let (_log, mut sm) = mailraft_store::open(dir.path()).expect("reopen");
    let (applied, _) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(3)));
    let view = sm.reader();
    assert_eq!(dump(&view), before);

    let (bytes, flags) = view
        .read(|kv| {
            let (who, _) = query::find_account(kv, "example.test", "bob").expect("account");
            let inbox = query::mailbox_by_name(kv, who, "INBOX").expect("inbox");
            let msgs =
                query::messages(kv, who, &inbox, &UidSet::range(uid, uid), 0).expect("messages");
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].uid, uid);
            let bytes = query::blob(kv, who.tenant, &msgs[0].blob).expect("blob");
            (bytes, msgs[0].flags.clone())
        })
        .expect("read");
    assert_eq!(bytes, BODY);
    assert_eq!(flags, vec![mailraft_model::Flag::Seen]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_vote_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vote = Vote::new_committed(3, 7);
    {
        let (mut log, _sm) = mailraft_store::open(dir.path()).expect("open");
        log.save_vote(&vote).await.expect("save vote");
        log.save_committed(Some(log_id(1)))
            .await
            .expect("save committed");
        // Appending needs openraft's `LogFlushed` callback, which only openraft can build; the
        // log's own behaviour is covered by the openraft suite.
    }
    let (mut log, _sm) = mailraft_store::open(dir.path()).expect("reopen");
    assert_eq!(log.read_vote().await.expect("read vote"), Some(vote));
    let committed: Option<LogId> = log.read_committed().await.expect("read committed");
    assert_eq!(committed, Some(LogId::new(CommittedLeaderId::new(1, 0), 1)));
    assert!(
        log.try_get_log_entries(0..10)
            .await
            .expect("entries")
            .is_empty()
    );
}
