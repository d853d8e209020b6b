//! Credential generations, disabled accounts and session key rotation: what the storage nodes
//! check every session token against.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use mailraft_model::*;

fn set_password(login: &str) -> Command {
    Command::SetPassword { domain: "example.test".into(), login: login.into(), password_hash: "new".into() }
}

fn disable(login: &str, disabled: bool) -> Command {
    Command::SetAccountDisabled { domain: "example.test".into(), login: login.into(), disabled }
}

fn generation(s: &Sys, who: Principal) -> u64 {
    query::account(&s.kv, who).unwrap().generation
}

/// The account-level event that tells front-ends to check the account's sessions.
fn account_event(who: Principal) -> MailboxEvent {
    MailboxEvent { who, mailbox: ACCOUNT_EVENT, modseq: 0 }
}

#[test]
fn a_new_password_raises_the_generation_and_announces_it() {
    let (mut s, alice) = Sys::setup();
    let bob = s.account("bob");
    assert_eq!(generation(&s, alice), 0);
    let (reply, events) = s.run(set_password("Alice"));
    assert_eq!(reply, Ok(Outcome::Done));
    assert_eq!(events, vec![account_event(alice)]);
    assert_eq!(generation(&s, alice), 1);
    assert_eq!(generation(&s, bob), 0, "other accounts keep their sessions");
    s.ok(set_password("alice"));
    assert_eq!(generation(&s, alice), 2);
}

#[test]
fn disabling_revokes_and_enabling_does_not_revive() {
    let (mut s, alice) = Sys::setup();
    let (reply, events) = s.run(disable("alice", true));
    assert_eq!(reply, Ok(Outcome::Done));
    assert_eq!(events, vec![account_event(alice)]);
    let account = query::account(&s.kv, alice).unwrap();
    assert_eq!((account.disabled, account.generation), (true, 1));
    // Disabling again is a no-op: no new generation, no event.
    let (_, events) = s.run(disable("alice", true));
    assert!(events.is_empty());
    assert_eq!(generation(&s, alice), 1);
    // Enabling lets the account log in again, but tokens of generation 0 stay refused.
    let (_, events) = s.run(disable("alice", false));
    assert!(events.is_empty());
    let account = query::account(&s.kv, alice).unwrap();
    assert_eq!((account.disabled, account.generation), (false, 1));
    assert!(matches!(s.err(disable("zed", true)), ModelError::NotFound(_)));
}

#[test]
fn rotation_keeps_the_replaced_key_for_the_grace_period_from_the_request_clock() {
    let (mut s, _) = Sys::setup();
    let before = query::session_keys(&s.kv).unwrap().unwrap();
    let at = s.now_ms;
    let rotate = |key: u8, grace_ms| Command::RotateSessionKey { session_key: vec![key; 32].into(), grace_ms };
    let outcome = s.ok(rotate(7, 5_000));
    let expected = Outcome::SessionKeyRotated { key_id: before.current.id + 1, previous_valid_until_ms: at + 5_000 };
    assert_eq!(outcome, expected);
    let keys = query::session_keys(&s.kv).unwrap().unwrap();
    assert_eq!(keys.current, SessionKey { id: before.current.id + 1, secret: vec![7; 32] });
    assert_eq!(keys.previous, Some(RetiredKey { key: before.current.clone(), valid_until_ms: at + 5_000 }));
    assert_eq!(query::session_key(&s.kv), Some(vec![7; 32]), "new tokens are signed with the new key");

    // A second rotation drops the first key at once.
    let at = s.now_ms;
    s.ok(rotate(8, 0));
    let keys = query::session_keys(&s.kv).unwrap().unwrap();
    assert_eq!(keys.previous.as_ref().map(|p| (p.key.id, p.valid_until_ms)), Some((before.current.id + 1, at)));
    assert!(keys.verifying(before.current.id, i64::MIN).is_none());

    assert!(matches!(s.err(rotate(9, -1)), ModelError::Invalid(_)));
    let empty = Command::RotateSessionKey { session_key: vec![].into(), grace_ms: 0 };
    assert!(matches!(s.err(empty), ModelError::Invalid(_)));
}

#[test]
fn rotation_needs_an_initialized_cluster() {
    let mut s = Sys::new();
    let rotate = Command::RotateSessionKey { session_key: vec![1; 32].into(), grace_ms: 0 };
    assert!(matches!(s.err(rotate), ModelError::Cannot(_)));
}

/// A state written before rotation existed holds one raw key: it reads as key 0, `Init` leaves
/// it alone, and the first rotation moves it into the key ring and deletes the old copy.
#[test]
fn a_pre_rotation_key_is_key_0_and_the_first_rotation_replaces_it() {
    let mut s = Sys::new();
    let mut ws = WriteSet::default();
    ws.put(Table::Meta, keys::META_SESSION_KEY.to_vec(), vec![5; 32]);
    s.kv.commit(ws);
    let keys = query::session_keys(&s.kv).unwrap().unwrap();
    assert_eq!((keys.current.id, keys.current.secret.clone(), keys.previous), (0, vec![5; 32], None));
    s.ok(Command::Init { session_key: vec![6; 32].into() });
    assert_eq!(query::session_key(&s.kv), Some(vec![5; 32]));

    s.ok(Command::RotateSessionKey { session_key: vec![6; 32].into(), grace_ms: 10 });
    assert_eq!(s.kv.get(Table::Meta, keys::META_SESSION_KEY), None);
    let keys = query::session_keys(&s.kv).unwrap().unwrap();
    assert_eq!((keys.current.id, keys.previous.map(|p| p.key.id)), (1, Some(0)));
}
