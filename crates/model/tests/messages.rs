//! APPEND, STORE, EXPUNGE, COPY, MOVE, the change log and blob/quota accounting.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use mailraft_model::*;

fn set_quota(s: &mut Sys, who: Principal, account: Option<u64>, tenant: Option<u64>) {
    let mut a = query::account(&s.kv, who).unwrap();
    a.quota_bytes = account;
    s.kv.data.insert((Table::Accounts, keys::account(who.tenant, who.account)), a.encode());
    let mut t = query::tenant_by_domain(&s.kv, "example.test").unwrap();
    t.quota_bytes = tenant;
    s.kv.data.insert((Table::Tenants, keys::tenant(who.tenant)), t.encode());
}

#[test]
fn append_assigns_uids_and_one_modseq() {
    let (mut s, who) = Sys::setup();
    let inbox = s.mb(who, "INBOX");
    let mut m2 = msg(b"Subject: b\r\n\r\nx", vec![Flag::Seen, kw("$Work"), kw("$work"), Flag::Seen]);
    m2.internal_date = Some(1234);
    let (reply, events) =
        s.run(Command::Append { who, mailbox: "inbox".into(), messages: vec![msg(b"Subject: a\r\n\r\n", vec![]), m2] });
    assert_eq!(
        reply,
        Ok(Outcome::Appended { mailbox: inbox.id, uidvalidity: inbox.uidvalidity, uids: vec![1, 2], highest_modseq: 2 })
    );
    assert_eq!(events, vec![MailboxEvent { who, mailbox: inbox.id, modseq: 2 }]);
    let mb = s.mb(who, "INBOX");
    assert_eq!((mb.uidnext, mb.highest_modseq, mb.exists, mb.unseen, mb.deleted, mb.size), (3, 2, 2, 1, 0, 14 + 15));
    assert_eq!(mb.keywords.iter().collect::<Vec<_>>(), ["$Work"]);
    let msgs = s.msgs(who, "INBOX");
    assert_eq!(msgs[1].flags, vec![Flag::Seen, kw("$Work")]);
    assert_eq!((msgs[0].internal_date, msgs[1].internal_date), (T0 / 1000, 1234));
    assert_eq!((msgs[1].modseq, msgs[1].save_date, msgs[1].tz_offset_minutes, msgs[1].size), (2, T0 / 1000, 60, 15));
    let meta = query::blob_meta(&s.kv, who.tenant, &msgs[0].blob).unwrap();
    assert_eq!((meta.size, meta.structure), (14, vec![7]));
    assert_eq!(query::blob_refcount(&s.kv, who.tenant, &msgs[0].blob).unwrap(), 1);
    assert_eq!(query::blob(&s.kv, who.tenant, &msgs[1].blob).unwrap(), b"Subject: b\r\n\r\nx");
    assert_eq!(query::uids(&s.kv, who, &mb).unwrap(), [1, 2]);
    assert_eq!(query::first_unseen(&s.kv, who, &mb).unwrap(), Some(1));
    assert_eq!(query::account(&s.kv, who).unwrap().used_bytes, 29);
}

#[test]
fn append_errors() {
    let (mut s, who) = Sys::setup();
    let e = s.err(Command::Append { who, mailbox: "nope".into(), messages: vec![msg(b"x", vec![])] });
    assert!(matches!(e, ModelError::NotFound(_)));
    let e = s.err(Command::Append { who, mailbox: "INBOX".into(), messages: vec![] });
    assert!(matches!(e, ModelError::Invalid(_)));
    let e = s.err(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"x", vec![kw("\\Recent")])] });
    assert!(matches!(e, ModelError::Invalid(_)));
}

#[test]
fn identical_bodies_share_one_blob() {
    let (mut s, who) = Sys::setup();
    let bob = s.account("bob");
    s.append(who, "INBOX", &[(b"same", vec![]), (b"same", vec![])]);
    s.append(bob, "INBOX", &[(b"same", vec![])]);
    assert_eq!(s.blob_refs(who.tenant, b"same"), Some(3));
    assert_eq!(s.count(Table::BlobData), 1);
    assert_eq!(query::account(&s.kv, who).unwrap().used_bytes, 8);
    assert_eq!(query::tenant_by_domain(&s.kv, "example.test").unwrap().used_bytes, 12);
}

#[test]
fn quota_limits_append_and_copy_but_not_move() {
    let (mut s, who) = Sys::setup();
    s.create(who, "b");
    s.append(who, "INBOX", &[(b"12345", vec![])]);
    set_quota(&mut s, who, Some(8), None);
    let over = |s: &mut Sys| s.err(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"6789", vec![])] });
    assert_eq!(over(&mut s), ModelError::OverQuota);
    assert_eq!(s.copy(who, "INBOX", all(), "b", false).0, Err(ModelError::OverQuota));
    assert!(s.copy(who, "INBOX", all(), "b", true).0.is_ok());
    assert_eq!(query::account(&s.kv, who).unwrap().used_bytes, 5);
    s.append(who, "b", &[(b"678", vec![])]); // exactly at quota
    set_quota(&mut s, who, None, Some(8));
    assert_eq!(over(&mut s), ModelError::OverQuota);
    // Expunging frees quota.
    s.store(who, "b", all(), StoreOp::Add, vec![Flag::Deleted], 0).0.unwrap();
    s.expunge(who, "b", None).0.unwrap();
    assert_eq!(query::account(&s.kv, who).unwrap().used_bytes, 0);
    assert_eq!(query::tenant_by_domain(&s.kv, "example.test").unwrap().used_bytes, 0);
    s.append(who, "INBOX", &[(b"6789", vec![])]);
}

#[test]
fn uids_are_never_reused_and_exhaust_cleanly() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"a", vec![Flag::Deleted])]);
    s.expunge(who, "INBOX", None).0.unwrap();
    assert_eq!(s.mb(who, "INBOX").uidnext, 2);
    assert_eq!(s.append(who, "INBOX", &[(b"b", vec![])]), [2]);

    let mut mb = s.mb(who, "INBOX");
    mb.uidnext = u32::MAX - 1;
    s.kv.data.insert((Table::Mailboxes, keys::mailbox(who.tenant, who.account, mb.id)), mb.encode());
    let two = Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"x", vec![]), msg(b"y", vec![])] };
    assert_eq!(s.err(two), ModelError::UidsExhausted);
    assert_eq!(s.append(who, "INBOX", &[(b"x", vec![])]), [u32::MAX - 1]);
    assert_eq!(s.mb(who, "INBOX").uidnext, u32::MAX);
    let one = Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"z", vec![])] };
    assert_eq!(s.err(one), ModelError::UidsExhausted);
}

#[test]
fn store_reports_updated_unchanged_and_modified() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"1", vec![]), (b"2", vec![Flag::Seen]), (b"3", vec![])]); // modseq 2
    s.store(who, "INBOX", UidSet::range(3, 3), StoreOp::Add, vec![Flag::Flagged], 0).0.unwrap(); // uid 3 → 3
    let inbox = s.mb(who, "INBOX");
    let (reply, events) = s.store(who, "INBOX", UidSet::range(1, 9), StoreOp::Add, vec![Flag::Seen, kw("Tag")], 2);
    let Ok(Outcome::Stored { updated, unchanged, modified, highest_modseq }) = reply else { panic!("{reply:?}") };
    assert_eq!(updated, vec![
        FlagsUpdate { uid: 1, flags: vec![Flag::Seen, kw("Tag")], modseq: 4 },
        FlagsUpdate { uid: 2, flags: vec![Flag::Seen, kw("Tag")], modseq: 4 },
    ]);
    assert!(unchanged.is_empty());
    assert_eq!(modified, vec![3], "RFC 7162 §3.1.3: uid 3 changed at modseq 3 > 2");
    assert_eq!(highest_modseq, 4);
    assert_eq!(events, vec![MailboxEvent { who, mailbox: inbox.id, modseq: 4 }]);
    let mb = s.mb(who, "INBOX");
    assert_eq!((mb.unseen, mb.highest_modseq), (1, 4));
    assert!(mb.keywords.iter().any(|k| k == "Tag"));

    // A no-op store (case-insensitive keyword) bumps nothing.
    let (reply, events) = s.store(who, "INBOX", UidSet::range(1, 2), StoreOp::Add, vec![kw("tag")], 0);
    let Ok(Outcome::Stored { updated, unchanged, modified, highest_modseq }) = reply else { panic!() };
    assert!(updated.is_empty() && modified.is_empty() && events.is_empty());
    assert_eq!(unchanged.iter().map(|u| (u.uid, u.modseq)).collect::<Vec<_>>(), [(1, 4), (2, 4)]);
    assert_eq!(highest_modseq, 4);

    // Replace and remove; counters follow.
    s.store(who, "INBOX", all(), StoreOp::Replace, vec![Flag::Deleted], 0).0.unwrap();
    let mb = s.mb(who, "INBOX");
    assert_eq!((mb.unseen, mb.deleted, mb.highest_modseq), (3, 3, 5));
    s.store(who, "INBOX", UidSet::range(2, 2), StoreOp::Remove, vec![Flag::Deleted], 0).0.unwrap();
    assert_eq!(s.mb(who, "INBOX").deleted, 2);
    assert_eq!(query::first_unseen(&s.kv, who, &s.mb(who, "INBOX")).unwrap(), Some(1));
}

#[test]
fn store_on_a_stale_or_foreign_mailbox_fails() {
    let (mut s, who) = Sys::setup();
    let inbox = s.mb(who, "INBOX");
    let cmd = Command::Store {
        who,
        mailbox: inbox.id,
        uidvalidity: inbox.uidvalidity + 1,
        uids: all(),
        op: StoreOp::Add,
        flags: vec![],
        unchanged_since: 0,
    };
    assert_eq!(s.err(cmd), ModelError::UidValidityChanged);
}

#[test]
fn expunge_only_deleted_and_only_in_the_uid_set() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"1", vec![Flag::Deleted]), (b"2", vec![]), (b"3", vec![Flag::Deleted]), (b"4", vec![Flag::Deleted])]);
    let inbox = s.mb(who, "INBOX");
    let (reply, events) = s.expunge(who, "INBOX", Some(UidSet::range(2, 3)));
    assert_eq!(reply, Ok(Outcome::Expunged { uids: vec![3], highest_modseq: 3 }));
    assert_eq!(events, vec![MailboxEvent { who, mailbox: inbox.id, modseq: 3 }]);
    assert_eq!(s.expunge(who, "INBOX", None).0, Ok(Outcome::Expunged { uids: vec![1, 4], highest_modseq: 4 }));
    let (reply, events) = s.expunge(who, "INBOX", None);
    assert_eq!(reply, Ok(Outcome::Expunged { uids: vec![], highest_modseq: 4 }));
    assert!(events.is_empty());
    let mb = s.mb(who, "INBOX");
    assert_eq!((mb.exists, mb.deleted, mb.unseen, mb.size, mb.uidnext), (1, 0, 1, 1, 5));
    assert_eq!(s.count(Table::BlobData), 1);
}

#[test]
fn copy_shares_blobs_and_reports_copyuid() {
    let (mut s, who) = Sys::setup();
    s.create(who, "dst");
    s.append(who, "dst", &[(b"pre", vec![])]);
    s.append(who, "INBOX", &[(b"1", vec![Flag::Seen]), (b"2", vec![kw("k")]), (b"3", vec![])]);
    let (src, dst) = (s.mb(who, "INBOX"), s.mb(who, "dst"));
    s.now_ms += 5000;
    let (reply, events) = s.copy(who, "INBOX", UidSet { ranges: vec![(3, 3), (1, 2), (7, 9)] }, "dst", false);
    assert_eq!(
        reply,
        Ok(Outcome::Copied {
            dest_mailbox: dst.id,
            dest_uidvalidity: dst.uidvalidity,
            source_uids: vec![1, 2, 3],
            dest_uids: vec![2, 3, 4],
            highest_modseq: 2,
        })
    );
    assert_eq!(events, vec![MailboxEvent { who, mailbox: dst.id, modseq: 3 }]);
    let d = s.mb(who, "dst");
    assert_eq!((d.exists, d.unseen, d.size, d.highest_modseq, d.uidnext), (4, 3, 6, 3, 5));
    assert!(d.keywords.iter().any(|k| k == "k"));
    let copied = s.msgs(who, "dst");
    assert_eq!(copied[1].flags, vec![Flag::Seen]);
    assert_eq!(copied[1].save_date, (s.now_ms - 1) / 1000);
    assert_eq!(copied[1].internal_date, T0 / 1000);
    assert_eq!(s.blob_refs(who.tenant, b"1"), Some(2));
    assert_eq!(s.mb(who, "INBOX"), src, "plain COPY leaves the source alone");
    assert_eq!(query::account(&s.kv, who).unwrap().used_bytes, 3 + 6);
    // Nothing matched: nothing changes.
    let (reply, events) = s.copy(who, "INBOX", UidSet::range(50, 60), "dst", false);
    assert!(matches!(reply, Ok(Outcome::Copied { ref source_uids, .. }) if source_uids.is_empty()));
    assert!(events.is_empty());
    assert!(matches!(s.copy(who, "INBOX", all(), "nope", false).0, Err(ModelError::NotFound(_))));
}

#[test]
fn move_is_copy_plus_expunge_in_one_command() {
    let (mut s, who) = Sys::setup();
    s.create(who, "dst");
    s.append(who, "INBOX", &[(b"1", vec![]), (b"2", vec![])]);
    let (src, dst) = (s.mb(who, "INBOX"), s.mb(who, "dst"));
    let (reply, events) = s.copy(who, "INBOX", UidSet::range(2, 2), "dst", true);
    assert_eq!(
        reply,
        Ok(Outcome::Copied { dest_mailbox: dst.id, dest_uidvalidity: dst.uidvalidity, source_uids: vec![2], dest_uids: vec![1], highest_modseq: 3 })
    );
    assert_eq!(events, vec![MailboxEvent { who, mailbox: dst.id, modseq: 2 }, MailboxEvent { who, mailbox: src.id, modseq: 3 }]);
    assert_eq!(query::uids(&s.kv, who, &s.mb(who, "INBOX")).unwrap(), [1]);
    assert_eq!(s.blob_refs(who.tenant, b"2"), Some(1));
    let ch = query::changes(&s.kv, who, &src, 2, 10).unwrap();
    assert_eq!((ch.expunged, ch.changed.len(), ch.highest_modseq, ch.uidnext), (vec![2], 0, 3, 3));
    assert_eq!(query::account(&s.kv, who).unwrap().used_bytes, 2);
}

#[test]
fn copy_and_move_within_one_mailbox() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"1", vec![Flag::Seen])]);
    let inbox = s.mb(who, "INBOX");
    let (reply, events) = s.copy(who, "INBOX", all(), "INBOX", false);
    assert!(matches!(reply, Ok(Outcome::Copied { ref dest_uids, highest_modseq: 3, .. }) if dest_uids == &[2]));
    assert_eq!(events, vec![MailboxEvent { who, mailbox: inbox.id, modseq: 3 }]);
    let (reply, events) = s.copy(who, "INBOX", all(), "INBOX", true);
    let Ok(Outcome::Copied { source_uids, dest_uids, highest_modseq, .. }) = reply else { panic!("{reply:?}") };
    assert_eq!((source_uids, dest_uids, highest_modseq), (vec![1, 2], vec![3, 4], 4));
    assert_eq!(events, vec![MailboxEvent { who, mailbox: inbox.id, modseq: 4 }]);
    let mb = s.mb(who, "INBOX");
    assert_eq!((mb.exists, mb.unseen, mb.uidnext, mb.size), (2, 0, 5, 2));
    let ch = query::changes(&s.kv, who, &mb, 3, 10).unwrap();
    assert_eq!(ch.expunged, vec![1, 2]);
    assert_eq!(ch.changed.iter().map(|c| (c.uid, c.modseq)).collect::<Vec<_>>(), [(3, 4), (4, 4)]);
    assert_eq!(s.blob_refs(who.tenant, b"1"), Some(2));
}

#[test]
fn changes_and_changed_since() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"1", vec![]), (b"2", vec![])]); // 2
    s.append(who, "INBOX", &[(b"3", vec![])]); // 3
    s.store(who, "INBOX", UidSet::range(1, 1), StoreOp::Add, vec![Flag::Deleted], 0).0.unwrap(); // 4
    s.store(who, "INBOX", UidSet::range(1, 1), StoreOp::Add, vec![Flag::Seen], 0).0.unwrap(); // 5
    s.expunge(who, "INBOX", None).0.unwrap(); // 6
    let mb = s.mb(who, "INBOX");
    let view = |since, max| query::changes(&s.kv, who, &mb, since, max).unwrap();
    let v = view(2, 100);
    assert_eq!((v.expunged.clone(), v.changed.iter().map(|c| c.uid).collect::<Vec<_>>()), (vec![1], vec![3]));
    assert_eq!((v.highest_modseq, v.uidnext, v.resync), (6, 4, false));
    let v = view(0, 100);
    assert_eq!((v.expunged, v.changed.iter().map(|c| c.uid).collect::<Vec<_>>()), (vec![1], vec![2, 3]));
    assert!(view(6, 100).changed.is_empty() && view(6, 0).expunged.is_empty() && !view(6, 0).resync);
    assert!(view(0, 2).resync);
    assert!(view(0, 2).changed.is_empty());
    // Superseded entries are dropped: one log entry per UID.
    assert_eq!(s.count(Table::Changes), 3);
    let got = query::messages(&s.kv, who, &mb, &all(), 2).unwrap();
    assert_eq!(got.iter().map(|m| m.uid).collect::<Vec<_>>(), [3]);
    // Resync below the floor.
    let mut floored = mb.clone();
    floored.changelog_floor = 4;
    s.kv.data.insert((Table::Mailboxes, keys::mailbox(who.tenant, who.account, mb.id)), floored.encode());
    assert!(query::changes(&s.kv, who, &mb, 3, 100).unwrap().resync);
    assert!(!query::changes(&s.kv, who, &mb, 4, 100).unwrap().resync);
}

#[test]
fn a_failed_command_leaves_the_batch_untouched() {
    let (mut s, who) = Sys::setup();
    set_quota(&mut s, who, Some(3), None);
    let mut ws = WriteSet::default();
    let req = |command| Request::new(T0, command);
    let (r, _) = apply(&s.kv, &mut ws, &req(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"a", vec![])] })).unwrap();
    assert!(r.is_ok());
    let before = ws.clone();
    // 1 pending + 3 > 3, although the committed state alone (0 + 3) would allow it.
    let big = Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"bbb", vec![])] };
    let (r, events) = apply(&s.kv, &mut ws, &req(big)).unwrap();
    assert_eq!(r, Err(ModelError::OverQuota), "batch sees its own earlier append of 1 byte");
    assert!(events.is_empty());
    assert_eq!(ws, before);
    // A later command in the batch sees the first one's writes.
    let (r, _) = apply(&s.kv, &mut ws, &req(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"a", vec![])] })).unwrap();
    assert!(matches!(r, Ok(Outcome::Appended { ref uids, .. }) if uids == &[2]));
    s.kv.commit(ws);
    assert_eq!(s.blob_refs(who.tenant, b"a"), Some(2));
}

/// A blob stored before the `BlobRefs` table existed has only its `BlobMeta` count: copies and
/// expunges continue from that count, and the last expunge still removes the blob.
#[test]
fn a_blob_counted_in_its_old_record_keeps_its_count() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"old", vec![]), (b"old", vec![])]);
    let key = keys::blob(who.tenant, &sha(b"old"));
    // As an older version left it: the count (2) in BlobMeta, no BlobRefs row.
    s.kv.data.remove(&(Table::BlobRefs, key.clone()));
    let mut meta = BlobMeta::decode(&s.kv.data[&(Table::BlobMeta, key.clone())]).unwrap();
    meta.refcount = 2;
    s.kv.data.insert((Table::BlobMeta, key.clone()), meta.encode());
    assert_eq!(s.blob_refs(who.tenant, b"old"), Some(2));

    s.copy(who, "INBOX", UidSet::range(1, 1), "INBOX", false).0.unwrap();
    assert_eq!(s.blob_refs(who.tenant, b"old"), Some(3), "the copy counted on from the old record");
    s.store(who, "INBOX", all(), StoreOp::Add, vec![Flag::Deleted], 0).0.unwrap();
    s.expunge(who, "INBOX", None).0.unwrap();
    assert_eq!(s.blob_refs(who.tenant, b"old"), None);
    for table in [Table::BlobRefs, Table::BlobMeta, Table::BlobData] {
        assert!(!s.kv.data.contains_key(&(table, key.clone())), "{table:?} left behind");
    }
}
