//! Deleting an account: `DeleteAccount` ends it at once (login, record, sessions), then bounded
//! `PurgeAccount` steps remove its mail until no key of it is left, keeping the blobs it shares
//! with other accounts of the tenant and the tenant's quota usage right.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use mailraft_model::records::DeletedAccount;
use mailraft_model::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn delete(login: &str) -> Command {
    Command::DeleteAccount { domain: "example.test".into(), login: login.into() }
}

fn purge(who: Principal, max_rows: u32) -> Command {
    Command::PurgeAccount { tenant: who.tenant, account: who.account, max_rows }
}

/// Purges `who` in steps of `max_rows` until done; returns the steps' outcomes.
fn purge_all(s: &mut Sys, who: Principal, max_rows: u32) -> Vec<(u64, u64, u64)> {
    let mut steps = Vec::new();
    loop {
        match s.ok(purge(who, max_rows)) {
            Outcome::AccountPurged { messages, mailboxes, rows, done } => {
                assert!(rows <= u64::from(max_rows), "a step removed {rows} rows, more than {max_rows}");
                steps.push((messages, mailboxes, rows));
                if done {
                    return steps;
                }
            }
            o => panic!("{o:?}"),
        }
        assert!(steps.len() < 10_000, "the purge does not finish");
    }
}

/// Mailbox ids of `who`, for recognising its Messages and Changes rows (keyed by mailbox).
fn mailbox_ids(s: &Sys, who: Principal) -> BTreeSet<MailboxId> {
    query::list_mailboxes(&s.kv, who).unwrap().iter().map(|m| m.id).collect()
}

/// Asserts that no key of `who` is left in any table, and that blob refcounts, blob data and
/// the tenant's quota usage agree with the messages that are left.
fn assert_gone_and_consistent(s: &Sys, who: Principal, mailboxes: &BTreeSet<MailboxId>) {
    let account_prefix = keys::account_prefix(who.tenant, who.account);
    let mut refs: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut used = 0u64;
    // Keyword lists of every mailbox left, for decoding their messages.
    let lists: BTreeMap<MailboxId, Vec<String>> = s
        .kv
        .data
        .iter()
        .filter(|((t, _), _)| *t == Table::Mailboxes)
        .map(|(_, v)| Mailbox::decode(v).unwrap())
        .map(|m| (m.id, m.keywords))
        .collect();
    for ((table, key), value) in &s.kv.data {
        let mailbox = key.get(8..16).map(|b| u64::from_be_bytes(b.try_into().unwrap()));
        match table {
            Table::Accounts | Table::AccountByLogin | Table::Mailboxes | Table::MailboxByName | Table::Subscriptions => {
                assert!(!key.starts_with(&account_prefix), "{table:?} row {key:?} of the deleted account is left");
            }
            Table::Messages | Table::Changes => {
                assert!(!mailboxes.contains(&mailbox.unwrap()), "{table:?} row {key:?} of the deleted account is left");
            }
            Table::Meta => assert!(!key.starts_with(keys::META_DELETED_ACCOUNT), "deletion record left"),
            _ => {}
        }
        if *table == Table::Messages {
            let m = MessageMeta::decode_in(value, lists.get(&mailbox.unwrap()).map_or(&[][..], |l| l)).unwrap();
            *refs.entry(keys::blob(who.tenant, &m.blob)).or_default() += 1;
            used += m.size;
        }
    }
    let metas: BTreeMap<Vec<u8>, u64> = s
        .kv
        .data
        .iter()
        .filter(|((t, _), _)| *t == Table::BlobRefs)
        .map(|((_, k), v)| (k.clone(), keys::decode_id_value(v).unwrap()))
        .collect();
    let described: BTreeSet<&Vec<u8>> = s.kv.data.keys().filter(|(t, _)| *t == Table::BlobMeta).map(|(_, k)| k).collect();
    assert_eq!(described, metas.keys().collect::<BTreeSet<_>>(), "blob bookkeeping exists exactly for the referenced blobs");
    assert_eq!(metas, refs, "blob refcounts match the messages left");
    let data: BTreeSet<&Vec<u8>> = s.kv.data.keys().filter(|(t, _)| *t == Table::BlobData).map(|(_, k)| k).collect();
    assert_eq!(data, metas.keys().collect::<BTreeSet<_>>(), "blob bytes exist exactly for the referenced blobs");
    assert_eq!(query::tenant_by_domain(&s.kv, "example.test").unwrap().used_bytes, used, "tenant quota usage");
}

#[test]
fn deleting_ends_the_account_at_once_and_frees_the_login() {
    let (mut s, alice) = Sys::setup();
    s.append(alice, "INBOX", &[(b"old mail", vec![])]);
    let (reply, events) = s.run(delete("Alice"));
    assert_eq!(reply, Ok(Outcome::AccountDeleted { tenant: alice.tenant, account: alice.account }));
    assert_eq!(events, vec![MailboxEvent { who: alice, mailbox: ACCOUNT_EVENT, modseq: 0 }], "sessions are told");
    assert!(matches!(query::account(&s.kv, alice), Err(ModelError::NotFound(_))), "every token is refused");
    assert!(matches!(query::find_account(&s.kv, "example.test", "alice"), Err(ModelError::NotFound(_))));
    let pending = apply::pending_deletions(&s.kv).unwrap();
    let expected = DeletedAccount {
        tenant: alice.tenant,
        account: alice.account,
        login: "alice".into(),
        deleted_ms: s.now_ms - 1,
        cursor: None,
    };
    assert_eq!(pending, vec![expected]);

    // A command proposed before the deletion was applied must not touch the mail being purged.
    let inbox = s.mb(alice, "INBOX");
    for command in [
        Command::Append { who: alice, mailbox: "INBOX".into(), messages: vec![msg(b"late", vec![])] },
        Command::CreateMailbox { who: alice, name: "Late".into(), special_use: None },
        Command::RenameMailbox { who: alice, from: "INBOX".into(), to: "Moved".into() },
        Command::Store {
            who: alice,
            mailbox: inbox.id,
            uidvalidity: inbox.uidvalidity,
            uids: all(),
            op: StoreOp::Add,
            flags: vec![Flag::Seen],
            unchanged_since: 0,
        },
    ] {
        assert!(matches!(s.err(command), ModelError::NotFound(_)));
    }

    // The login is free again, under a new id, with none of the old mail.
    let again = s.account("alice");
    assert_ne!(again.account, alice.account, "ids are never reused");
    assert_eq!(s.msgs(again, "INBOX"), vec![]);
    assert_eq!(query::list_mailboxes(&s.kv, again).unwrap().len(), 1);
    // Deleting the new account does not disturb the purge of the old one.
    let old_mailboxes = mailbox_ids(&s, alice);
    purge_all(&mut s, alice, 2);
    assert_eq!(s.msgs(again, "INBOX"), vec![]);
    assert_gone_and_consistent(&s, alice, &old_mailboxes);
}

#[test]
fn unknown_accounts_and_live_ones_are_refused() {
    let (mut s, alice) = Sys::setup();
    assert!(matches!(s.err(delete("zed")), ModelError::NotFound(_)));
    let unknown_domain = Command::DeleteAccount { domain: "nowhere.test".into(), login: "alice".into() };
    assert!(matches!(s.err(unknown_domain), ModelError::NotFound(_)));
    // Only a deleted account can be purged.
    assert!(matches!(s.err(purge(alice, 10)), ModelError::NotFound(_)));
    s.ok(delete("alice"));
    assert!(matches!(s.err(delete("alice")), ModelError::NotFound(_)), "deleting twice");
    assert!(matches!(s.err(purge(alice, 0)), ModelError::Invalid(_)));
    let over = u32::try_from(limits::MAX_MESSAGES_PER_COMMAND + 1).unwrap();
    assert!(matches!(s.err(purge(alice, over)), ModelError::Invalid(_)));
    assert!(matches!(s.ok(purge(alice, 10)), Outcome::AccountPurged { done: true, .. }));
    assert!(matches!(s.err(purge(alice, 10)), ModelError::NotFound(_)), "a finished purge is gone");
    assert_eq!(apply::pending_deletions(&s.kv).unwrap(), vec![]);
}

#[test]
fn small_steps_remove_everything_and_keep_shared_blobs() {
    let (mut s, alice) = Sys::setup();
    let bob = s.account("bob");
    s.create(alice, "Work/Old");
    s.ok(Command::Subscribe { who: alice, name: "Work".into(), subscribe: true });
    s.ok(Command::Subscribe { who: alice, name: "Gone".into(), subscribe: true });
    let shared: &[u8] = b"the same newsletter for everyone";
    s.append(alice, "INBOX", &[(shared, vec![]), (b"alice only", vec![Flag::Deleted]), (b"second", vec![])]);
    s.append(alice, "Work/Old", &[(shared, vec![Flag::Seen]), (b"work", vec![])]);
    s.append(bob, "INBOX", &[(shared, vec![])]);
    // Expunged UIDs keep change-log entries; flag changes move them.
    assert!(s.expunge(alice, "INBOX", None).0.is_ok());
    assert!(s.store(alice, "INBOX", all(), StoreOp::Add, vec![Flag::Flagged], 0).0.is_ok());
    assert_eq!(s.blob_refs(alice.tenant, shared), Some(3));
    let bob_before = (query::list_mailboxes(&s.kv, bob).unwrap(), s.msgs(bob, "INBOX"));
    let mailboxes = mailbox_ids(&s, alice);
    assert_eq!(mailboxes.len(), 3, "INBOX, Work, Work/Old");

    s.ok(delete("alice"));
    // A step that stops inside a mailbox records where, so the next one starts there (INBOX has
    // UIDs 1 and 3 left and three change-log entries).
    let inbox = s.mb(alice, "INBOX");
    assert!(matches!(s.ok(purge(alice, 3)), Outcome::AccountPurged { messages: 2, mailboxes: 0, rows: 3, done: false }));
    let cursor = apply::pending_deletions(&s.kv).unwrap()[0].cursor.unwrap();
    assert_eq!((cursor.mailbox, cursor.last_uid), (inbox.id, Some(3)));
    assert!(cursor.last_change.is_some());
    let mut steps = vec![(2, 0, 3)];
    steps.extend(purge_all(&mut s, alice, 3));
    assert!(steps.len() >= 4, "the purge took several steps: {steps:?}");
    let (messages, mailboxes_removed) = steps.iter().fold((0, 0), |(m, b), (sm, sb, _)| (m + sm, b + sb));
    assert_eq!((messages, mailboxes_removed), (4, 3));
    assert_gone_and_consistent(&s, alice, &mailboxes);
    assert_eq!(s.blob_refs(alice.tenant, shared), Some(1), "bob's copy keeps the shared blob");
    assert_eq!(s.blob_refs(alice.tenant, b"work"), None);
    assert_eq!((query::list_mailboxes(&s.kv, bob).unwrap(), s.msgs(bob, "INBOX")), bob_before, "bob is untouched");
    let bob_used = query::account(&s.kv, bob).unwrap().used_bytes;
    assert_eq!(query::tenant_by_domain(&s.kv, "example.test").unwrap().used_bytes, bob_used);
}

/// One step of the mail two accounts build up before one of them is deleted.
#[derive(Debug, Clone)]
enum Op {
    Append { alice: bool, mailbox: usize, body: usize, deleted: bool },
    Create { alice: bool, mailbox: usize },
    Copy { alice: bool, from: usize, to: usize, is_move: bool },
    Expunge { alice: bool, mailbox: usize },
    Subscribe { alice: bool, mailbox: usize },
}

const NAMES: [&str; 3] = ["INBOX", "a", "a/b"];
const BODIES: [&[u8]; 4] = [b"shared body zero", b"shared body one", b"two", b"three three"];

fn op() -> impl Strategy<Value = Op> {
    let who = any::<bool>();
    let mailbox = 0..NAMES.len();
    prop_oneof![
        4 => (who, mailbox.clone(), 0..BODIES.len(), any::<bool>())
            .prop_map(|(alice, mailbox, body, deleted)| Op::Append { alice, mailbox, body, deleted }),
        1 => (who, mailbox.clone()).prop_map(|(alice, mailbox)| Op::Create { alice, mailbox }),
        2 => (who, mailbox.clone(), mailbox.clone(), any::<bool>())
            .prop_map(|(alice, from, to, is_move)| Op::Copy { alice, from, to, is_move }),
        1 => (who, mailbox.clone()).prop_map(|(alice, mailbox)| Op::Expunge { alice, mailbox }),
        1 => (who, mailbox).prop_map(|(alice, mailbox)| Op::Subscribe { alice, mailbox }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever mail two accounts of a tenant built (sharing blobs), deleting one and purging it
    /// in steps of any size leaves no key of it, leaves the other's mailboxes and messages exactly
    /// as they were, and keeps blob refcounts, blob bytes and the tenant's usage right.
    #[test]
    fn purging_in_any_step_size_leaves_the_rest_intact(ops in vec(op(), 0..40), max_rows in 1u32..8) {
        let (mut s, alice) = Sys::setup();
        let bob = s.account("bob");
        for op in ops {
            let who = |alice_side: bool| if alice_side { alice } else { bob };
            // Commands may fail (a missing mailbox, nothing to expunge): that is part of the mix.
            match op {
                Op::Append { alice, mailbox, body, deleted } => {
                    let flags = if deleted { vec![Flag::Deleted] } else { vec![] };
                    let messages = vec![msg(BODIES[body], flags)];
                    let _ = s.run(Command::Append { who: who(alice), mailbox: NAMES[mailbox].into(), messages });
                }
                Op::Create { alice, mailbox } => {
                    let _ = s.run(Command::CreateMailbox { who: who(alice), name: NAMES[mailbox].into(), special_use: None });
                }
                Op::Copy { alice, from, to, is_move } => {
                    if query::mailbox_id(&s.kv, who(alice), NAMES[from]).unwrap().is_some() {
                        let _ = s.copy(who(alice), NAMES[from], all(), NAMES[to], is_move);
                    }
                }
                Op::Expunge { alice, mailbox } => {
                    if query::mailbox_id(&s.kv, who(alice), NAMES[mailbox]).unwrap().is_some() {
                        let _ = s.expunge(who(alice), NAMES[mailbox], None);
                    }
                }
                Op::Subscribe { alice, mailbox } => {
                    let _ = s.run(Command::Subscribe { who: who(alice), name: NAMES[mailbox].into(), subscribe: true });
                }
            }
        }
        let bob_view = |s: &Sys| {
            let boxes = query::list_mailboxes(&s.kv, bob).unwrap();
            let msgs: Vec<Vec<MessageMeta>> = boxes.iter().map(|b| s.msgs(bob, &b.name)).collect();
            (boxes, msgs, query::subscriptions(&s.kv, bob).unwrap(), query::account(&s.kv, bob).unwrap())
        };
        let before = bob_view(&s);
        let mailboxes = mailbox_ids(&s, alice);
        s.ok(delete("alice"));
        purge_all(&mut s, alice, max_rows);
        assert_gone_and_consistent(&s, alice, &mailboxes);
        prop_assert_eq!(bob_view(&s), before);
    }
}
