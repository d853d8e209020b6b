//! Restoring a backup (`mailraft storage --restore-from`): every mailbox gets a new UIDVALIDITY.
//!
//! RFC 3501 §2.3.1.1: a UID, with its mailbox's UIDVALIDITY, must never name another message.
//! A backup is a point in the past: after it was taken, the old cluster may have handed out
//! UIDs (and MODSEQs) that the restored state would hand out again for other messages, and a
//! client that saw them would take the new messages for the old ones. So the restore renews
//! every UIDVALIDITY (clients then resynchronize those mailboxes from scratch, which RFC 3501
//! and RFC 7162 §3.2.10 require of them), above anything the old cluster can have handed out.
//!
//! Pure: reads the restored state, returns the writes; the store writes them with the restore.

use super::Txn;
use crate::kv::{KvRead, Table, WriteSet};
use crate::records::{Mailbox, Record};
use crate::{ModelError, keys};

/// How far above `max(last UIDVALIDITY + 1, clock)` the renewed values start. The allocator
/// hands out `max(last + 1, clock)`, so the old cluster ran ahead of the clock only by the
/// mailboxes it created faster than one a second; this leaves room for a million of them.
pub const RESTORE_UIDVALIDITY_MARGIN: u32 = 1 << 20;

/// Mailbox rows read per scan.
const PAGE: usize = 1024;

/// The writes that give every mailbox of the state in `kv` a new UIDVALIDITY, allocated (in key
/// order) from `max(last + 1, now) + RESTORE_UIDVALIDITY_MARGIN` upwards; how many were renewed.
pub fn renew_uidvalidities(kv: &dyn KvRead, now_ms: i64) -> Result<(WriteSet, u64), ModelError> {
    let empty = WriteSet::default();
    let mut txn = Txn::new(kv, &empty, now_ms, crate::feature::stored_level(kv)?);
    // One allocation moves the counter to max(last + 1, clock); the margin goes on top of it.
    let first = txn.alloc_uidvalidity()?;
    let start = first
        .checked_add(RESTORE_UIDVALIDITY_MARGIN)
        .ok_or_else(|| ModelError::Cannot("uidvalidity space exhausted".into()))?;
    txn.put_raw(Table::Meta, keys::META_LAST_UIDVALIDITY.to_vec(), (start - 1).to_be_bytes().to_vec());

    let mut renewed = 0u64;
    let mut from: Vec<u8> = Vec::new();
    loop {
        // Read from the restored state, not the overlay: the rows this loop rewrites must not
        // come back in a later page.
        let rows = kv.scan(Table::Mailboxes, &from, None, PAGE);
        let Some((last_key, _)) = rows.last() else { break };
        from = last_key.clone();
        from.push(0);
        for (key, value) in &rows {
            let mut mb = Mailbox::decode(value)?;
            mb.uidvalidity = txn.alloc_uidvalidity()?;
            txn.put_raw(Table::Mailboxes, key.clone(), mb.encode_at(txn.level()));
            renewed += 1;
        }
        if rows.len() < PAGE {
            break;
        }
    }
    Ok((txn.ws, renewed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Outcome, Principal, Request};
    use crate::kv::MemKv;

    fn run(kv: &mut MemKv, now_ms: i64, command: Command) -> Outcome {
        let mut ws = WriteSet::default();
        let (reply, _) = crate::apply(kv, &mut ws, &Request { now_ms, request_id: None, command }).expect("known level");
        kv.commit(ws);
        reply.expect("command applies")
    }

    fn validities(kv: &MemKv) -> Vec<u32> {
        kv.scan(Table::Mailboxes, &[], None, usize::MAX)
            .iter()
            .map(|(_, v)| Mailbox::decode(v).expect("mailbox").uidvalidity)
            .collect()
    }

    #[test]
    fn every_mailbox_gets_a_larger_uidvalidity_than_anything_before_and_the_clock() {
        let mut kv = MemKv::default();
        let t0 = 1_700_000_000_000;
        run(&mut kv, t0, Command::Init { session_key: vec![7; 32].into() });
        run(&mut kv, t0, Command::CreateTenant { domain: "example.test".into() });
        let Outcome::AccountCreated { tenant, account } = run(
            &mut kv,
            t0,
            Command::CreateAccount { domain: "example.test".into(), login: "a".into(), password_hash: "h".into() },
        ) else {
            panic!("account")
        };
        let who = Principal { tenant, account };
        // Created faster than the clock moves: the counter runs ahead of it.
        for name in ["A", "B", "C", "D"] {
            run(&mut kv, t0, Command::CreateMailbox { who, name: name.into(), special_use: None });
        }
        let before = validities(&kv);
        assert_eq!(before.len(), 5, "INBOX and four more");
        let max_before = *before.iter().max().expect("some");

        let now_ms = t0 + 5_000;
        let (ws, renewed) = renew_uidvalidities(&kv, now_ms).expect("renew");
        kv.commit(ws);
        assert_eq!(renewed, 5);
        let after = validities(&kv);
        let floor = max_before.max((now_ms / 1000) as u32) + RESTORE_UIDVALIDITY_MARGIN;
        for (old, new) in before.iter().zip(&after) {
            assert!(*new > *old && *new >= floor, "{old} -> {new}, floor {floor}");
        }
        let mut distinct = after.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), after.len(), "renewed values are distinct");

        // A mailbox created after the restore continues above the renewed ones.
        run(&mut kv, now_ms, Command::CreateMailbox { who, name: "E".into(), special_use: None });
        let newest = *validities(&kv).iter().max().expect("some");
        assert!(newest > *after.iter().max().expect("some"));
    }
}
