//! CREATE, DELETE, RENAME, SUBSCRIBE.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use mailraft_model::*;

fn names(s: &Sys, who: Principal) -> Vec<String> {
    query::list_mailboxes(&s.kv, who).unwrap().into_iter().map(|m| m.name).collect()
}

#[test]
fn create_makes_missing_parents_without_special_use() {
    let (mut s, who) = Sys::setup();
    let out = s.ok(Command::CreateMailbox { who, name: "Archive/2024/Q1/".into(), special_use: Some("\\archive".into()) });
    let Outcome::MailboxCreated { mailbox, uidvalidity } = out else { panic!("{out:?}") };
    assert_eq!(names(&s, who), ["Archive", "Archive/2024", "Archive/2024/Q1", "INBOX"]);
    let leaf = s.mb(who, "Archive/2024/Q1");
    assert_eq!((leaf.id, leaf.uidvalidity), (mailbox, uidvalidity));
    assert_eq!(leaf.special_use.as_deref(), Some("Archive"));
    assert_eq!((leaf.uidnext, leaf.highest_modseq, leaf.changelog_floor), (1, 1, 0));
    assert_eq!(s.mb(who, "Archive").special_use, None);
    // Every mailbox got its own, strictly increasing UIDVALIDITY.
    let v: Vec<u32> = ["INBOX", "Archive", "Archive/2024", "Archive/2024/Q1"].iter().map(|n| s.mb(who, n).uidvalidity).collect();
    assert!(v.windows(2).all(|w| w[0] < w[1]), "{v:?}");
}

#[test]
fn create_rejects_bad_and_existing_names() {
    let (mut s, who) = Sys::setup();
    for bad in ["", "/", "a//b", "/a", "x%", "a\nb"] {
        let e = s.err(Command::CreateMailbox { who, name: bad.into(), special_use: None });
        assert!(matches!(e, ModelError::Invalid(_)), "{bad:?}: {e:?}");
    }
    for dup in ["INBOX", "inbox", "Inbox/"] {
        let e = s.err(Command::CreateMailbox { who, name: dup.into(), special_use: None });
        assert!(matches!(e, ModelError::AlreadyExists(_)), "{dup:?}: {e:?}");
    }
    let e = s.err(Command::CreateMailbox { who, name: "x".into(), special_use: Some("Bogus".into()) });
    assert!(matches!(e, ModelError::Invalid(_)));
    let nobody = Principal { tenant: who.tenant, account: 999_999 };
    assert!(matches!(s.err(Command::CreateMailbox { who: nobody, name: "x".into(), special_use: None }), ModelError::NotFound(_)));
    // inbox/x is an inferior of INBOX.
    s.create(who, "inbox/x");
    assert_eq!(names(&s, who), ["INBOX", "INBOX/x"]);
}

#[test]
fn delete_removes_messages_blobs_and_log_but_not_children() {
    let (mut s, who) = Sys::setup();
    s.create(who, "a/b");
    s.append(who, "a", &[(b"one", vec![]), (b"shared", vec![])]);
    s.append(who, "INBOX", &[(b"shared", vec![])]);
    assert_eq!(s.blob_refs(who.tenant, b"shared"), Some(2));
    let a = s.mb(who, "a");
    let (reply, events) = s.run(Command::DeleteMailbox { who, name: "a".into() });
    assert_eq!(reply, Ok(Outcome::Done));
    assert_eq!(events, vec![MailboxEvent { who, mailbox: a.id, modseq: a.highest_modseq + 1 }]);
    assert_eq!(names(&s, who), ["INBOX", "a/b"]);
    assert_eq!(s.blob_refs(who.tenant, b"one"), None);
    assert_eq!(query::blob(&s.kv, who.tenant, &sha(b"one")), None);
    assert_eq!(s.blob_refs(who.tenant, b"shared"), Some(1));
    assert!(query::blob(&s.kv, who.tenant, &sha(b"shared")).is_some());
    assert_eq!(s.count(Table::Messages), 1);
    assert_eq!(s.count(Table::Changes), 1, "only INBOX's entry is left");
    assert_eq!(query::account(&s.kv, who).unwrap().used_bytes, 6);
    assert_eq!(query::tenant_by_domain(&s.kv, "example.test").unwrap().used_bytes, 6);
    assert!(matches!(query::mailbox_by_id(&s.kv, who, a.id, a.uidvalidity), Err(ModelError::NotFound(_))));
    assert!(matches!(s.err(Command::DeleteMailbox { who, name: "a".into() }), ModelError::NotFound(_)));
    assert!(matches!(s.err(Command::DeleteMailbox { who, name: "inbox".into() }), ModelError::Cannot(_)));
}

#[test]
fn recreated_name_gets_new_id_and_larger_uidvalidity_in_the_same_second() {
    let (mut s, who) = Sys::setup();
    s.create(who, "x");
    s.append(who, "x", &[(b"m", vec![])]);
    let old = s.mb(who, "x");
    s.ok(Command::DeleteMailbox { who, name: "x".into() });
    s.create(who, "x");
    let new = s.mb(who, "x");
    assert_ne!(new.id, old.id);
    assert!(new.uidvalidity > old.uidvalidity);
    assert_eq!((new.uidnext, new.exists), (1, 0));
    let e = s.err(Command::Expunge { who, mailbox: old.id, uidvalidity: old.uidvalidity, uids: None });
    assert!(matches!(e, ModelError::NotFound(_)));
    let e = s.err(Command::Expunge { who, mailbox: new.id, uidvalidity: old.uidvalidity, uids: None });
    assert_eq!(e, ModelError::UidValidityChanged);
}

#[test]
fn uidvalidity_never_goes_backwards_with_the_clock() {
    let (mut s, who) = Sys::setup();
    s.create(who, "a");
    let a = s.mb(who, "a").uidvalidity;
    s.now_ms = 0; // clock far in the past
    s.create(who, "b");
    assert_eq!(s.mb(who, "b").uidvalidity, a + 1);
    s.now_ms = T0 + 86_400_000; // a day later: follows the clock
    s.create(who, "c");
    assert_eq!(s.mb(who, "c").uidvalidity, ((T0 + 86_400_000) / 1000) as u32);
}

#[test]
fn rename_keeps_identity_and_moves_inferiors() {
    let (mut s, who) = Sys::setup();
    s.create(who, "a/b/c");
    s.create(who, "ab"); // not an inferior of "a"
    s.append(who, "a", &[(b"1", vec![])]);
    let before: Vec<Mailbox> = ["a", "a/b", "a/b/c"].iter().map(|n| s.mb(who, n)).collect();
    assert_eq!(s.ok(Command::RenameMailbox { who, from: "a".into(), to: "z/y".into() }), Outcome::Done);
    assert_eq!(names(&s, who), ["INBOX", "ab", "z", "z/y", "z/y/b", "z/y/b/c"]);
    for (old, new) in before.iter().zip(["z/y", "z/y/b", "z/y/b/c"]) {
        let m = s.mb(who, new);
        assert_eq!((m.id, m.uidvalidity, m.uidnext, m.highest_modseq), (old.id, old.uidvalidity, old.uidnext, old.highest_modseq));
    }
    assert_eq!(s.msgs(who, "z/y").len(), 1);
    assert!(matches!(query::mailbox_by_name(&s.kv, who, "a"), Err(ModelError::NotFound(_))));
}

#[test]
fn rename_errors() {
    let (mut s, who) = Sys::setup();
    s.create(who, "a/x");
    s.create(who, "b");
    s.create(who, "c/x");
    s.ok(Command::DeleteMailbox { who, name: "c".into() }); // leaves c/x
    let rename = |from: &str, to: &str| Command::RenameMailbox { who, from: from.into(), to: to.into() };
    assert!(matches!(s.err(rename("a", "b")), ModelError::AlreadyExists(_)));
    assert!(matches!(s.err(rename("a", "INBOX")), ModelError::AlreadyExists(_)));
    assert!(matches!(s.err(rename("nope", "q")), ModelError::NotFound(_)));
    assert!(matches!(s.err(rename("a", "a/x/y")), ModelError::Invalid(_)));
    assert!(matches!(s.err(rename("a", "q//r")), ModelError::Invalid(_)));
    // "a/x" would become "c/x", which exists.
    assert!(matches!(s.err(rename("a", "c")), ModelError::AlreadyExists(_)));
    assert_eq!(names(&s, who), ["INBOX", "a", "a/x", "b", "c/x"]);
}

#[test]
fn rename_inbox_moves_messages_to_a_new_mailbox() {
    let (mut s, who) = Sys::setup();
    s.create(who, "INBOX/child");
    s.append(who, "INBOX", &[(b"m1", vec![Flag::Seen]), (b"m2", vec![kw("$x")])]);
    s.store(who, "INBOX", all(), StoreOp::Add, vec![Flag::Flagged], 0).0.unwrap();
    let inbox = s.mb(who, "INBOX");
    assert_eq!((inbox.uidnext, inbox.highest_modseq), (3, 3));

    let (reply, events) = s.run(Command::RenameMailbox { who, from: "inbox".into(), to: "Old/Inbox".into() });
    assert_eq!(reply, Ok(Outcome::Done));
    let after = s.mb(who, "INBOX");
    let old = s.mb(who, "Old/Inbox");
    assert_eq!((after.id, after.uidvalidity, after.uidnext, after.highest_modseq), (inbox.id, inbox.uidvalidity, 3, 4));
    assert_eq!((after.exists, after.unseen, after.size), (0, 0, 0));
    assert_ne!(old.id, inbox.id);
    assert!(old.uidvalidity > inbox.uidvalidity);
    assert_eq!((old.uidnext, old.highest_modseq, old.exists, old.unseen), (3, 2, 2, 1));
    assert!(old.keywords.iter().any(|k| k == "$x"));
    let moved = s.msgs(who, "Old/Inbox");
    assert_eq!(moved.iter().map(|m| (m.uid, m.modseq)).collect::<Vec<_>>(), [(1, 2), (2, 2)]);
    assert_eq!(moved[0].flags, [Flag::Seen, Flag::Flagged]);
    assert_eq!(events, vec![MailboxEvent { who, mailbox: inbox.id, modseq: 4 }, MailboxEvent { who, mailbox: old.id, modseq: 2 }]);
    assert_eq!(names(&s, who), ["INBOX", "INBOX/child", "Old", "Old/Inbox"]);
    assert_eq!(s.blob_refs(who.tenant, b"m1"), Some(1));
    assert_eq!(query::account(&s.kv, who).unwrap().used_bytes, 4);
    // INBOX reports the expunges to a session that synced at modseq 3.
    let ch = query::changes(&s.kv, who, &after, 3, 100).unwrap();
    assert_eq!((ch.expunged, ch.changed, ch.resync), (vec![1, 2], vec![], false));
    // New mail in INBOX continues after the old UIDs.
    assert_eq!(s.append(who, "INBOX", &[(b"m3", vec![])]), [3]);
}

#[test]
fn subscriptions_are_independent_of_mailboxes() {
    let (mut s, who) = Sys::setup();
    let sub = |name: &str, subscribe: bool| Command::Subscribe { who, name: name.into(), subscribe };
    s.ok(sub("inbox", true));
    s.ok(sub("Later/Box", true));
    s.ok(sub("gone", false)); // unsubscribing an unknown name is fine
    assert!(matches!(s.err(sub("a//b", true)), ModelError::Invalid(_)));
    assert_eq!(query::subscriptions(&s.kv, who).unwrap(), ["INBOX", "Later/Box"]);
    s.ok(sub("INBOX", false));
    assert_eq!(query::subscriptions(&s.kv, who).unwrap(), ["Later/Box"]);
}
