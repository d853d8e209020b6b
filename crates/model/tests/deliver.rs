//! LMTP delivery (`Command::Deliver`): one entry for several recipients of a tenant, each
//! succeeding or failing on its own.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use mailraft_model::*;

fn target(who: Principal, mailbox: &str, prefix: &str) -> DeliveryTarget {
    DeliveryTarget { account: who.account, mailbox: mailbox.into(), prefix: prefix.as_bytes().to_vec(), structure: vec![9] }
}

fn deliver(s: &mut Sys, tenant: TenantId, body: &[u8], targets: Vec<DeliveryTarget>) -> (Reply, Vec<MailboxEvent>) {
    s.run(Command::Deliver { tenant, body: body.to_vec(), targets })
}

fn set_account_quota(s: &mut Sys, who: Principal, quota: Option<u64>) {
    let mut a = query::account(&s.kv, who).unwrap();
    a.quota_bytes = quota;
    s.kv.data.insert((Table::Accounts, keys::account(who.tenant, who.account)), a.encode());
}

#[test]
fn each_recipient_gets_its_own_copy_with_its_prefix() {
    let (mut s, alice) = Sys::setup();
    let bob = s.account("bob");
    s.create(bob, "lists");
    let body = b"Subject: hi\r\n\r\nbody\r\n";
    let (reply, events) = deliver(
        &mut s,
        alice.tenant,
        body,
        vec![target(alice, "INBOX", "D: alice\r\n"), target(bob, "lists", "D: bob+lists\r\n"), target(bob, "gone", "D: bob+gone\r\n")],
    );
    let inbox_a = s.mb(alice, "INBOX");
    let lists = s.mb(bob, "lists");
    let inbox_b = s.mb(bob, "INBOX");
    assert_eq!(
        reply,
        Ok(Outcome::Delivered {
            results: vec![
                Delivery::Delivered { mailbox: inbox_a.id, uidvalidity: inbox_a.uidvalidity, uid: 1 },
                Delivery::Delivered { mailbox: lists.id, uidvalidity: lists.uidvalidity, uid: 1 },
                // The named mailbox does not exist (any more): INBOX.
                Delivery::Delivered { mailbox: inbox_b.id, uidvalidity: inbox_b.uidvalidity, uid: 1 },
            ]
        })
    );
    assert_eq!(events.len(), 3);
    assert!(events.contains(&MailboxEvent { who: bob, mailbox: lists.id, modseq: lists.highest_modseq }));
    for (who, mailbox, prefix) in [(alice, "INBOX", "D: alice\r\n"), (bob, "lists", "D: bob+lists\r\n"), (bob, "INBOX", "D: bob+gone\r\n")] {
        let msgs = s.msgs(who, mailbox);
        assert_eq!(msgs.len(), 1, "{mailbox}");
        let stored = query::blob(&s.kv, who.tenant, &msgs[0].blob).unwrap();
        assert_eq!(stored, [prefix.as_bytes(), body].concat());
        assert_eq!(msgs[0].size, stored.len() as u64);
        assert_eq!(query::blob_meta(&s.kv, who.tenant, &msgs[0].blob).unwrap().structure, vec![9]);
        assert!(msgs[0].flags.is_empty());
        assert_eq!(s.mb(who, mailbox).exists, 1);
    }
    // Quota usage counts every copy.
    let used = query::account(&s.kv, bob).unwrap().used_bytes;
    assert_eq!(used, (2 * body.len() + "D: bob+lists\r\n".len() + "D: bob+gone\r\n".len()) as u64);
}

#[test]
fn refused_recipients_write_nothing_and_do_not_stop_the_others() {
    let (mut s, alice) = Sys::setup();
    let bob = s.account("bob");
    let carol = s.account("carol");
    let dora = s.account("dora");
    s.ok(Command::SetAccountDisabled { domain: "example.test".into(), login: "dora".into(), disabled: true });
    set_account_quota(&mut s, carol, Some(10));
    s.ok(Command::DeleteAccount { domain: "example.test".into(), login: "bob".into() });
    let carol_before = query::account(&s.kv, carol).unwrap();
    let (reply, events) = deliver(
        &mut s,
        alice.tenant,
        b"0123456789",
        vec![target(bob, "INBOX", "P\r\n"), target(carol, "INBOX", "P\r\n"), target(dora, "INBOX", "P\r\n"), target(alice, "INBOX", "P\r\n")],
    );
    let Ok(Outcome::Delivered { results }) = reply else { panic!("{reply:?}") };
    assert_eq!(results[..3], [Delivery::UnknownAccount, Delivery::OverQuota, Delivery::Disabled]);
    assert!(matches!(results[3], Delivery::Delivered { uid: 1, .. }));
    assert_eq!(events.len(), 1);
    assert_eq!(query::account(&s.kv, carol).unwrap(), carol_before, "no quota charged for a refused copy");
    assert!(s.msgs(carol, "INBOX").is_empty() && s.msgs(dora, "INBOX").is_empty());
    assert_eq!(s.msgs(alice, "INBOX").len(), 1);
}

#[test]
fn bounds_and_retries() {
    let (mut s, alice) = Sys::setup();
    assert!(matches!(deliver(&mut s, alice.tenant, b"x", vec![]).0, Err(ModelError::Invalid(_))));
    let many = vec![target(alice, "INBOX", ""); limits::MAX_DELIVERY_RECIPIENTS + 1];
    assert!(matches!(deliver(&mut s, alice.tenant, b"x", many).0, Err(ModelError::Limit(_))));
    assert!(matches!(deliver(&mut s, 999, b"x", vec![target(alice, "INBOX", "")]).0, Err(ModelError::NotFound(_))));
    // A retried delivery (same request id) is answered from the dedup table: one copy.
    let id = RequestId::new(vec![7; 16]).unwrap();
    let command = Command::Deliver { tenant: alice.tenant, body: b"once".to_vec(), targets: vec![target(alice, "INBOX", "")] };
    let first = s.run_with_id(command.clone(), Some(id.clone()));
    let again = s.run_with_id(command, Some(id));
    assert!(again.replayed);
    assert_eq!(first.reply, again.reply);
    assert_eq!(s.msgs(alice, "INBOX").len(), 1);
}
