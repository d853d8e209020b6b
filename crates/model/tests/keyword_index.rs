//! Feature level 2: message records name their keywords by index into the mailbox's keyword
//! list (`mailraft_model::message_record`). A cluster upgraded in place holds records of both
//! versions; these tests follow single records across the raise.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use mailraft_model::*;

/// The stored version (1 or 2) of message `uid` of mailbox `name`.
fn version(s: &Sys, who: Principal, name: &str, uid: Uid) -> u8 {
    let mb = s.mb(who, name);
    let bytes = s.kv.get(Table::Messages, &keys::message(who.tenant, mb.id, uid)).unwrap();
    MessageMeta::record_version(&bytes).unwrap()
}

fn mailbox_version(s: &Sys, who: Principal, name: &str) -> u8 {
    let mb = s.mb(who, name);
    s.kv.get(Table::Mailboxes, &keys::mailbox(who.tenant, who.account, mb.id)).unwrap()[0] + 1
}

#[test]
fn level_1_writes_version_1_records_and_a_sorted_list() {
    let (mut s, who) = Sys::setup_at(1);
    s.append(who, "INBOX", &[(b"a", vec![kw("zz"), kw("$Aa"), Flag::Seen])]);
    s.store(who, "INBOX", UidSet::range(1, 1), StoreOp::Add, vec![kw("mm")], 0).0.unwrap();
    assert_eq!((version(&s, who, "INBOX", 1), mailbox_version(&s, who, "INBOX")), (1, 1));
    assert_eq!(s.mb(who, "INBOX").keywords, ["$Aa", "mm", "zz"], "level 1 keeps the old set's order");
}

#[test]
fn records_of_level_1_read_the_same_after_the_raise_and_are_rewritten_on_change() {
    let (mut s, who) = Sys::setup_at(1);
    s.create(who, "Other");
    s.append(who, "INBOX", &[(b"a", vec![kw("zz"), kw("$Aa")]), (b"b", vec![Flag::Flagged, kw("mm")])]);
    let before = s.msgs(who, "INBOX");
    s.ok(Command::SetFeatureLevel { level: KNOWN_FEATURE_LEVEL });
    assert_eq!(s.msgs(who, "INBOX"), before, "untouched version 1 records read as before");
    assert_eq!(version(&s, who, "INBOX", 1), 1);

    // A new keyword goes to the end of the (so far sorted) list; the rewritten record and the
    // ones still in version 1 both read right.
    s.store(who, "INBOX", UidSet::range(1, 1), StoreOp::Add, vec![kw("$new"), Flag::Seen], 0).0.unwrap();
    assert_eq!((version(&s, who, "INBOX", 1), version(&s, who, "INBOX", 2)), (2, 1));
    assert_eq!(mailbox_version(&s, who, "INBOX"), 2);
    assert_eq!(s.mb(who, "INBOX").keywords, ["$Aa", "mm", "zz", "$new"]);
    let after = s.msgs(who, "INBOX");
    assert_eq!(after[0].flags, vec![Flag::Seen, kw("$Aa"), kw("$new"), kw("zz")]);
    assert_eq!(after[1], before[1]);

    // COPY re-indexes into the destination's own list (in the order it first sees them).
    s.append(who, "Other", &[(b"c", vec![kw("ZZ")])]);
    s.copy(who, "INBOX", UidSet::range(1, 2), "Other", false).0.unwrap();
    assert_eq!(s.mb(who, "Other").keywords, ["ZZ", "$Aa", "$new", "mm"]);
    let copied = s.msgs(who, "Other");
    assert_eq!(copied[1].flags, vec![Flag::Seen, kw("$Aa"), kw("$new"), kw("ZZ")], "the destination's spelling");
    assert_eq!(copied[2].flags, vec![Flag::Flagged, kw("mm")]);
    assert!((1..=3).all(|uid| version(&s, who, "Other", uid) == 2));
}

#[test]
fn a_keyword_is_stored_and_reported_in_the_mailboxs_first_spelling() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"a", vec![kw("$Label1")]), (b"b", vec![])]);
    let (reply, _) = s.store(who, "INBOX", UidSet::range(2, 2), StoreOp::Add, vec![kw("$LABEL1")], 0);
    match reply.unwrap() {
        Outcome::Stored { updated, .. } => assert_eq!(updated[0].flags, vec![kw("$Label1")], "the reply shows what FETCH will"),
        o => panic!("{o:?}"),
    }
    assert_eq!(s.msgs(who, "INBOX")[1].flags, vec![kw("$Label1")]);
    assert_eq!(s.mb(who, "INBOX").keywords, ["$Label1"]);
}

#[test]
fn removing_every_keyword_keeps_the_list_and_its_indices() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"a", vec![kw("one"), kw("two")]), (b"b", vec![kw("two")])]);
    s.store(who, "INBOX", UidSet::range(1, 2), StoreOp::Remove, vec![kw("one"), kw("two")], 0).0.unwrap();
    s.store(who, "INBOX", UidSet::range(2, 2), StoreOp::Add, vec![kw("three"), kw("ONE")], 0).0.unwrap();
    assert_eq!(s.mb(who, "INBOX").keywords, ["one", "two", "three"], "FLAGS never shrinks, indices never move");
    assert_eq!(s.msgs(who, "INBOX")[1].flags, vec![kw("one"), kw("three")]);
}
