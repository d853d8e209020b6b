//! Exactly-once writes: requests with an id are applied once within the dedup window, retries
//! get the original reply (errors included) without events, and expired ids are purged a
//! bounded number per apply.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mailraft_model::*;

fn append_cmd(who: Principal, mailbox: &str, body: &[u8]) -> Command {
    Command::Append { who, mailbox: mailbox.into(), messages: vec![msg(body, vec![])] }
}

/// Every dedup entry has exactly one index row at its time, and no index row sorts before the
/// purge floor.
fn assert_dedup_consistent(s: &Sys) {
    let entries = s.kv.scan(Table::Dedup, &[], None, usize::MAX);
    let index = s.kv.scan(Table::DedupByTime, &[], None, usize::MAX);
    assert_eq!(entries.len(), index.len(), "one index row per entry");
    for (id, v) in &entries {
        let entry = DedupEntry::decode(v).unwrap();
        let id = RequestId::new(id.clone()).unwrap();
        assert!(s.kv.get(Table::DedupByTime, &keys::dedup_by_time(entry.at_ms, &id)).is_some(), "{id:?}");
    }
    if let Some(floor) = s.kv.get(Table::Meta, keys::META_DEDUP_FLOOR) {
        let floor = keys::decode_dedup_time(&floor).unwrap();
        for (k, _) in &index {
            assert!(keys::dedup_by_time_of(k).unwrap().0 >= floor, "index row before the floor");
        }
    }
}

#[test]
fn a_retried_append_is_applied_once_and_answered_identically() {
    let (mut s, who) = Sys::setup();
    let first = s.run_with_id(append_cmd(who, "INBOX", b"hello"), Some(rid("a1")));
    assert!(!first.replayed);
    assert_eq!(first.events.len(), 1);
    let before = s.kv.clone();
    s.now_ms += 5_000;
    let retry = s.run_with_id(append_cmd(who, "INBOX", b"hello"), Some(rid("a1")));
    assert_eq!(retry, Applied { reply: first.reply.clone(), events: vec![], replayed: true });
    assert!(s.kv == before, "a replay changes nothing");
    assert_eq!(s.msgs(who, "INBOX").len(), 1);
    // Another id is another append.
    let other = s.run_with_id(append_cmd(who, "INBOX", b"hello"), Some(rid("a2")));
    assert!(matches!(other.reply, Ok(Outcome::Appended { ref uids, .. }) if uids == &[2]));
    assert_eq!(s.msgs(who, "INBOX").len(), 2);
    assert_dedup_consistent(&s);
}

#[test]
fn a_retried_create_answers_ok_not_already_exists() {
    let (mut s, who) = Sys::setup();
    let create = || Command::CreateMailbox { who, name: "Work".into(), special_use: None };
    let first = s.run_with_id(create(), Some(rid("c1")));
    assert!(matches!(first.reply, Ok(Outcome::MailboxCreated { .. })));
    let retry = s.run_with_id(create(), Some(rid("c1")));
    assert_eq!((retry.reply, retry.replayed), (first.reply, true));
    // Without the id it is a new CREATE, and the name exists.
    assert!(matches!(s.run_with_id(create(), None).reply, Err(ModelError::AlreadyExists(_))));
}

#[test]
fn an_error_reply_is_replayed_even_when_the_command_would_now_succeed() {
    let (mut s, who) = Sys::setup();
    let first = s.run_with_id(append_cmd(who, "Later", b"x"), Some(rid("e1")));
    assert!(matches!(first.reply, Err(ModelError::NotFound(_))));
    assert_eq!(s.count(Table::Dedup), 1, "the error is recorded");
    s.create(who, "Later");
    let retry = s.run_with_id(append_cmd(who, "Later", b"x"), Some(rid("e1")));
    assert_eq!((retry.reply, retry.events, retry.replayed), (first.reply, vec![], true));
    assert!(s.msgs(who, "Later").is_empty(), "the retry did not append");
}

#[test]
fn a_replay_publishes_no_events() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"m", vec![])]);
    let mb = s.mb(who, "INBOX");
    let store = Command::Store {
        who,
        mailbox: mb.id,
        uidvalidity: mb.uidvalidity,
        uids: all(),
        op: StoreOp::Add,
        flags: vec![Flag::Seen],
        unchanged_since: 0,
    };
    let first = s.run_with_id(store.clone(), Some(rid("s1")));
    assert_eq!(first.events.len(), 1);
    let highest = s.mb(who, "INBOX").highest_modseq;
    let retry = s.run_with_id(store, Some(rid("s1")));
    assert!(retry.replayed);
    assert!(retry.events.is_empty());
    assert_eq!(retry.reply, first.reply);
    assert_eq!(s.mb(who, "INBOX").highest_modseq, highest, "no new modseq");
}

#[test]
fn an_id_expires_after_the_window() {
    let (mut s, who) = Sys::setup();
    // More entries of the same millisecond sorting ahead of "x" than one purge deletes: "x" is
    // still in the table when it expires, so its lookup (not the purge) must notice.
    let t = s.now_ms;
    for i in 0..=PURGE_PER_APPLY {
        s.now_ms = t;
        s.run_with_id(Command::Subscribe { who, name: format!("f{i}"), subscribe: true }, Some(rid(&format!("f{i}"))));
    }
    s.now_ms = t;
    let first = s.run_with_id(append_cmd(who, "INBOX", b"m"), Some(rid("x")));
    // Still remembered just inside the window...
    s.now_ms = t + DEDUP_WINDOW_MS - 1;
    assert!(s.run_with_id(append_cmd(who, "INBOX", b"m"), Some(rid("x"))).replayed);
    // ...and forgotten at its end, although no purge has deleted it yet: applied again.
    s.now_ms = t + DEDUP_WINDOW_MS;
    let x = rid("x");
    assert!(s.kv.get(Table::Dedup, &keys::dedup(&x)).is_some(), "not purged yet");
    let again = s.run_with_id(append_cmd(who, "INBOX", b"m"), Some(x));
    assert!(!again.replayed);
    assert_ne!(again.reply, first.reply);
    assert_eq!(s.msgs(who, "INBOX").len(), 2);
    // 32 fillers purged, one left; the new application replaced the expired entry of "x".
    assert_eq!(s.count(Table::Dedup), 2);
    assert_dedup_consistent(&s);
    // The new entry is remembered for a window from its own time.
    s.now_ms = t + 2 * DEDUP_WINDOW_MS - 1;
    assert_eq!(s.run_with_id(append_cmd(who, "INBOX", b"m"), Some(rid("x"))).reply, again.reply);
}

#[test]
fn the_purge_deletes_a_bounded_number_of_expired_entries_per_apply() {
    let (mut s, who) = Sys::setup();
    let n = 2 * PURGE_PER_APPLY + 10;
    for i in 0..n {
        let cmd = Command::Subscribe { who, name: format!("box{i}"), subscribe: true };
        s.run_with_id(cmd, Some(rid(&format!("sub{i}"))));
    }
    assert_eq!(s.count(Table::Dedup), n);
    // Nothing has expired yet: a write purges nothing.
    s.run_with_id(Command::Subscribe { who, name: "y".into(), subscribe: true }, None);
    assert_eq!(s.count(Table::Dedup), n);

    s.now_ms += DEDUP_WINDOW_MS;
    let mut ws = WriteSet::default();
    let req = Request::new(s.now_ms, Command::Subscribe { who, name: "z".into(), subscribe: true });
    assert!(apply(&s.kv, &mut ws, &req).unwrap().0.is_ok());
    let deleted = ws.ops.iter().filter(|((t, _), v)| *t == Table::Dedup && v.is_none()).count();
    assert_eq!(deleted, PURGE_PER_APPLY, "one apply deletes at most PURGE_PER_APPLY entries");
    s.kv.commit(ws);
    assert_eq!(s.count(Table::Dedup), n - PURGE_PER_APPLY);
    assert_dedup_consistent(&s);

    // A failed command purges too (the bookkeeping does not depend on the outcome), and a new
    // entry recorded meanwhile survives.
    let fresh = s.run_with_id(append_cmd(who, "INBOX", b"new"), Some(rid("fresh")));
    assert_eq!(s.count(Table::Dedup), n - 2 * PURGE_PER_APPLY + 1);
    assert!(s.run_with_id(append_cmd(who, "Nope", b"x"), None).reply.is_err());
    assert_eq!(s.count(Table::Dedup), 1);
    assert_dedup_consistent(&s);
    assert_eq!(s.run_with_id(append_cmd(who, "INBOX", b"new"), Some(rid("fresh"))).reply, fresh.reply);
}

#[test]
fn a_clock_far_behind_the_purge_floor_still_records_purgeable_entries() {
    let (mut s, who) = Sys::setup();
    let t = s.now_ms;
    s.run_with_id(Command::Subscribe { who, name: "a".into(), subscribe: true }, Some(rid("old")));
    // A purge three windows later moves the floor up to the purged entry's time.
    s.now_ms = t + 3 * DEDUP_WINDOW_MS;
    s.run_with_id(Command::Subscribe { who, name: "b".into(), subscribe: true }, None);
    assert_eq!(s.count(Table::Dedup), 0);
    // A new leader whose clock is two windows behind the floor.
    s.now_ms = t - 2 * DEDUP_WINDOW_MS;
    s.run_with_id(Command::Subscribe { who, name: "c".into(), subscribe: true }, Some(rid("behind")));
    assert_dedup_consistent(&s);
    // It is purged once the clock passes the floor by a window.
    s.now_ms = t + DEDUP_WINDOW_MS;
    s.run_with_id(Command::Subscribe { who, name: "d".into(), subscribe: true }, None);
    assert_eq!(s.count(Table::Dedup), 0);
}

#[test]
fn a_reused_id_never_answers_another_command_or_account() {
    let (mut s, alice) = Sys::setup();
    let bob = s.account("bob");
    let first = s.run_with_id(append_cmd(alice, "INBOX", b"secret"), Some(rid("dup")));
    assert!(first.reply.is_ok());
    for (who, cmd) in [
        (bob, append_cmd(bob, "INBOX", b"other")),
        (alice, Command::CreateMailbox { who: alice, name: "x".into(), special_use: None }),
    ] {
        let before = s.kv.clone();
        let r = s.run_with_id(cmd, Some(rid("dup")));
        assert!(matches!(r.reply, Err(ModelError::Invalid(_))), "{who:?}: {:?}", r.reply);
        assert!(!r.replayed);
        assert!(s.kv == before, "refused without writing");
    }
    assert!(s.msgs(bob, "INBOX").is_empty());
}

#[test]
fn request_ids_are_validated_on_construction_and_decoding() {
    assert!(RequestId::new(vec![]).is_err());
    assert_eq!(RequestId::new(vec![1; RequestId::MAX_LEN + 1]).unwrap_err().len, RequestId::MAX_LEN + 1);
    assert!(RequestId::new(vec![1; RequestId::MAX_LEN]).is_ok());
    assert_eq!(RequestId::from_wire(vec![]).unwrap(), None);
    assert_eq!(RequestId::from_wire(vec![7]).unwrap(), Some(rid("\x07")));
    assert!(RequestId::from_wire(vec![0; 65]).unwrap_err().to_string().contains("1 to 64 bytes"));

    let req = Request { now_ms: T0, request_id: Some(rid("abc")), command: Command::Init { session_key: vec![].into() } };
    let bytes = postcard::to_stdvec(&req).unwrap();
    assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), req);
    // The same encoding with an id one byte too long does not decode.
    let long = postcard::to_stdvec(&(T0, Some(vec![1u8; 65]), Command::Init { session_key: vec![].into() })).unwrap();
    assert!(postcard::from_bytes::<Request>(&long).is_err());
    let ok = postcard::to_stdvec(&(T0, Some(vec![1u8; 64]), Command::Init { session_key: vec![].into() })).unwrap();
    assert!(postcard::from_bytes::<Request>(&ok).is_ok());
}
