//! Consistency checker tests: each rule fires on a crafted violating reply and stays quiet on
//! the correct one.

use super::*;
use crate::client::parse::FetchData;

fn reply(untagged: Vec<Untagged>, code: Option<Code>) -> Reply {
    Reply {
        untagged,
        status: Status::Ok,
        code,
        text: "done".into(),
    }
}

fn uv(v: u32) -> Untagged {
    Untagged::Cond {
        status: Status::Ok,
        code: Some(Code::UidValidity(v)),
        text: String::new(),
    }
}

fn fetch(seq: u32, uid: u32, flags: &[&str]) -> Untagged {
    let flags = Some(flags.iter().map(|s| s.to_string()).collect());
    Untagged::Fetch {
        seq,
        data: FetchData {
            uid: Some(uid),
            flags,
            ..FetchData::default()
        },
    }
}

fn selected(n: u32) -> SessionCheck {
    let mut c = SessionCheck::new("u1", Some("$K".into()));
    let v = c.check(
        Cmd::Select("INBOX"),
        &reply(
            vec![Untagged::Flags(vec![]), Untagged::Exists(n), uv(5)],
            None,
        ),
    );
    assert!(v.is_empty(), "{v:?}");
    c
}

fn rules(v: &[Violation]) -> Vec<&'static str> {
    v.iter().map(|x| x.rule).collect()
}

#[test]
fn select_requires_flags_exists_uidvalidity() {
    let mut c = SessionCheck::new("u1", None);
    let v = c.check(
        Cmd::Select("INBOX"),
        &reply(vec![Untagged::Exists(1)], None),
    );
    assert_eq!(rules(&v), ["select-missing-required"]);
}

#[test]
fn exists_never_goes_backwards_without_expunge() {
    let mut c = selected(5);
    assert!(
        c.check(Cmd::Other, &reply(vec![Untagged::Exists(6)], None))
            .is_empty()
    );
    assert!(
        c.check(
            Cmd::Other,
            &reply(vec![Untagged::Expunge(2), Untagged::Exists(5)], None)
        )
        .is_empty()
    );
    let v = c.check(Cmd::Other, &reply(vec![Untagged::Exists(3)], None));
    assert_eq!(rules(&v), ["exists-backwards"]);
}

#[test]
fn expunge_forbidden_during_fetch_store_search() {
    let mut c = selected(5);
    let v = c.check(
        Cmd::Fetch { uid: false },
        &reply(vec![Untagged::Expunge(1)], None),
    );
    assert_eq!(rules(&v), ["expunge-during-fetch-store-search"]);
    // Allowed during UID FETCH and NOOP.
    assert!(
        c.check(
            Cmd::Fetch { uid: true },
            &reply(vec![Untagged::Expunge(1)], None)
        )
        .is_empty()
    );
    assert!(
        c.check(Cmd::Other, &reply(vec![Untagged::Expunge(1)], None))
            .is_empty()
    );
    let v = c.check(Cmd::Other, &reply(vec![Untagged::Expunge(9)], None));
    assert_eq!(rules(&v), ["expunge-out-of-range"]);
}

#[test]
fn message_data_needs_a_selected_mailbox() {
    let mut c = SessionCheck::new("u1", None);
    let v = c.check(
        Cmd::Other,
        &reply(vec![Untagged::Exists(1), fetch(1, 1, &[])], None),
    );
    assert_eq!(
        rules(&v),
        ["data-while-unselected", "data-while-unselected"]
    );
    let mut c = selected(2);
    let v = c.check(
        Cmd::Fetch { uid: false },
        &reply(vec![fetch(3, 9, &[])], None),
    );
    assert_eq!(rules(&v), ["fetch-out-of-range"]);
    // After CLOSE/UNSELECT there is no selected mailbox again.
    c.check(Cmd::Unselect, &reply(vec![], None));
    assert_eq!(c.exists(), None);
}

#[test]
fn uid_fetch_body_needs_uid() {
    let mut c = selected(2);
    let data = FetchData {
        body: Some(b"x".to_vec()),
        ..FetchData::default()
    };
    let v = c.check(
        Cmd::Fetch { uid: true },
        &reply(vec![Untagged::Fetch { seq: 1, data }], None),
    );
    assert_eq!(rules(&v), ["uid-fetch-without-uid"]);
}

#[test]
fn appenduid_must_ascend_and_match_uidvalidity() {
    let mut c = selected(0);
    let a = |uid| {
        Some(Code::AppendUid {
            uidvalidity: 5,
            uid,
        })
    };
    assert!(
        c.check(Cmd::Append("INBOX"), &reply(vec![], a(10)))
            .is_empty()
    );
    let v = c.check(Cmd::Append("INBOX"), &reply(vec![], a(10)));
    assert_eq!(rules(&v), ["uid-not-ascending"]);
    let v = c.check(
        Cmd::Append("INBOX"),
        &reply(
            vec![],
            Some(Code::AppendUid {
                uidvalidity: 6,
                uid: 1,
            }),
        ),
    );
    assert_eq!(rules(&v), ["appenduid-uidvalidity"]);
}

#[test]
fn flags_set_must_read_back() {
    let mut c = selected(3);
    let r = reply(vec![fetch(2, 20, &["\\Flagged"])], None);
    c.check(Cmd::Store { uid: true }, &r);
    c.after_store_add(20, &["\\Flagged", "$K"], &r);
    assert_eq!(rules(&c.take()), ["store-flag-missing"]);
    let r = reply(vec![fetch(2, 20, &["\\Flagged", "$K"])], None);
    c.after_store_add(20, &["\\Flagged", "$K"], &r);
    assert!(c.take().is_empty());
    // A later FETCH without our keyword is a lost flag...
    let v = c.check(
        Cmd::Fetch { uid: false },
        &reply(vec![fetch(2, 20, &["\\Flagged"])], None),
    );
    assert_eq!(rules(&v), ["flag-lost"]);
    // ...unless we removed it ourselves.
    c.keyword_clearing(20);
    assert!(
        c.check(
            Cmd::Fetch { uid: false },
            &reply(vec![fetch(2, 20, &[])], None)
        )
        .is_empty()
    );
}

#[test]
fn status_for_the_right_mailbox() {
    let mut c = SessionCheck::new("u1", None);
    let st = |m: &str| Untagged::Status {
        mailbox: m.into(),
        items: vec![],
    };
    assert!(
        c.check(Cmd::Status("INBOX"), &reply(vec![st("inbox")], None))
            .is_empty()
    );
    assert_eq!(
        rules(&c.check(Cmd::Status("INBOX"), &reply(vec![st("Sent")], None))),
        ["status-wrong-mailbox"]
    );
}

#[test]
fn registry_detects_lost_and_corrupted_appends() {
    let reg = Registry::default();
    let body = b"Subject: x\r\n\r\nhello\r\n";
    let a = Appended {
        uidvalidity: 5,
        uid: 7,
        digest: digest(body),
    };
    reg.appended("u1", "INBOX", a);
    assert_eq!(reg.recent("u1", "INBOX", 5, 3), Some(a));
    assert_eq!(reg.recent("u1", "INBOX", 6, 0), None);
    let with_body = |b: &[u8]| {
        let data = FetchData {
            uid: Some(7),
            body: Some(b.to_vec()),
            ..FetchData::default()
        };
        reply(vec![Untagged::Fetch { seq: 1, data }], None)
    };
    assert_eq!(reg.verify_fetch("u1", "INBOX", a, &with_body(body)), None);
    assert_eq!(
        reg.verify_fetch("u1", "INBOX", a, &with_body(b"other"))
            .map(|v| v.rule),
        Some("body-mismatch")
    );
    let empty = reply(vec![], None);
    assert_eq!(
        reg.verify_fetch("u1", "INBOX", a, &empty).map(|v| v.rule),
        Some("appended-message-missing")
    );
    // Once some session marks it deleted, its absence is fine.
    reg.deleting("u1", "INBOX", 5, 7);
    assert_eq!(reg.verify_fetch("u1", "INBOX", a, &empty), None);
    assert_eq!(reg.recent("u1", "INBOX", 5, 0), None);
}
