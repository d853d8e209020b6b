//! Init, tenants and accounts.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use mailraft_model::*;

#[test]
fn init_stores_the_session_key_once() {
    let mut s = Sys::new();
    assert_eq!(query::session_key(&s.kv), None);
    assert_eq!(s.ok(Command::Init { session_key: vec![1].into() }), Outcome::Done);
    assert_eq!(s.ok(Command::Init { session_key: vec![2].into() }), Outcome::Done);
    assert_eq!(query::session_key(&s.kv), Some(vec![1]));
    let keys = query::session_keys(&s.kv).unwrap().unwrap();
    assert_eq!((keys.current.id, keys.previous), (1, None));
    assert!(matches!(s.err(Command::Init { session_key: vec![].into() }), ModelError::Invalid(_)));
}

#[test]
fn tenants_are_unique_by_lowercase_domain() {
    let mut s = Sys::new();
    let Outcome::TenantCreated { tenant } = s.ok(Command::CreateTenant { domain: "Example.TEST".into() }) else { panic!() };
    assert!(matches!(s.err(Command::CreateTenant { domain: "example.test".into() }), ModelError::AlreadyExists(_)));
    assert!(matches!(s.err(Command::CreateTenant { domain: "".into() }), ModelError::Invalid(_)));
    let t = query::tenant_by_domain(&s.kv, "EXAMPLE.test").unwrap();
    assert_eq!((t.id, t.domain.as_str(), t.used_bytes, t.quota_bytes), (tenant, "example.test", 0, None));
}

#[test]
fn create_account_makes_an_inbox_and_lowercases_login() {
    let (mut s, _) = Sys::setup();
    let bob = s.account("Bob");
    let (who, acc) = query::find_account(&s.kv, "example.TEST", "BOB").unwrap();
    assert_eq!(who, bob);
    assert_eq!(acc.login, "bob");
    assert_eq!(acc.password_hash, "$argon2id$x");
    let boxes = query::list_mailboxes(&s.kv, bob).unwrap();
    assert_eq!(boxes.len(), 1);
    let inbox = &boxes[0];
    assert_eq!((inbox.name.as_str(), inbox.uidnext, inbox.highest_modseq, inbox.exists), ("INBOX", 1, 1, 0));
    assert!(inbox.uidvalidity >= (T0 / 1000) as u32);

    let dup = Command::CreateAccount { domain: "example.test".into(), login: "bob".into(), password_hash: "h".into() };
    assert!(matches!(s.err(dup), ModelError::AlreadyExists(_)));
    let nodomain = Command::CreateAccount { domain: "nope.test".into(), login: "bob".into(), password_hash: "h".into() };
    assert!(matches!(s.err(nodomain), ModelError::NotFound(_)));
    assert!(matches!(query::find_account(&s.kv, "example.test", "carol"), Err(ModelError::NotFound(_))));
}

#[test]
fn set_password_replaces_the_hash() {
    let (mut s, who) = Sys::setup();
    s.ok(Command::SetPassword { domain: "example.test".into(), login: "ALICE".into(), password_hash: "new".into() });
    assert_eq!(query::account(&s.kv, who).unwrap().password_hash, "new");
    let missing = Command::SetPassword { domain: "example.test".into(), login: "zed".into(), password_hash: "x".into() };
    assert!(matches!(s.err(missing), ModelError::NotFound(_)));
}

#[test]
fn accounts_cannot_see_each_other() {
    let (mut s, alice) = Sys::setup();
    let bob = s.account("bob");
    let inbox = s.mb(alice, "INBOX");
    assert!(matches!(query::mailbox_by_id(&s.kv, bob, inbox.id, inbox.uidvalidity), Err(ModelError::NotFound(_))));
    assert!(matches!(query::uids(&s.kv, bob, &inbox), Err(ModelError::NotFound(_))));
    assert!(matches!(query::changes(&s.kv, bob, &inbox, 0, 10), Err(ModelError::NotFound(_))));
    let other_tenant = Principal { tenant: alice.tenant + 1000, account: alice.account };
    assert!(matches!(query::messages(&s.kv, other_tenant, &inbox, &all(), 0), Err(ModelError::NotFound(_))));
    // Commands too: bob cannot store into alice's INBOX by id.
    let e = s.err(Command::Store {
        who: bob,
        mailbox: inbox.id,
        uidvalidity: inbox.uidvalidity,
        uids: all(),
        op: StoreOp::Add,
        flags: vec![Flag::Seen],
        unchanged_since: 0,
    });
    assert!(matches!(e, ModelError::NotFound(_)));
}
