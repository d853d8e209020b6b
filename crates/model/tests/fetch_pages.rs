//! `query::messages_page`, the paged listing a long FETCH reads as it goes: walking the pages
//! from UID 0 gives exactly what `query::messages` lists at once, for any UID set, CHANGEDSINCE
//! and page size, and no page is larger than asked.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use mailraft_model::*;
use proptest::prelude::*;

/// INBOX with `n` messages, `expunged` of them removed and `stored` of them flagged later (so
/// modseqs differ), and the owner.
fn mailbox(n: usize, expunged: &[u32], stored: &[u32]) -> (Sys, Principal) {
    let (mut s, who) = Sys::setup();
    for _ in 0..n {
        s.append(who, "INBOX", &[(b"Subject: x\r\n\r\nbody", vec![])]);
    }
    for &uid in stored {
        assert!(s.store(who, "INBOX", UidSet::range(uid, uid), StoreOp::Add, vec![Flag::Flagged], 0).0.is_ok());
    }
    for &uid in expunged {
        assert!(s.store(who, "INBOX", UidSet::range(uid, uid), StoreOp::Add, vec![Flag::Deleted], 0).0.is_ok());
    }
    if !expunged.is_empty() {
        assert!(s.expunge(who, "INBOX", None).0.is_ok());
    }
    (s, who)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn pages_add_up_to_the_whole_listing(
        n in 0usize..40,
        expunged in proptest::collection::vec(1u32..40, 0..8),
        stored in proptest::collection::vec(1u32..40, 0..8),
        ranges in proptest::collection::vec((0u32..45, 0u32..45), 1..4),
        open_end in any::<bool>(),
        changed_since in 0u64..60,
        limit in 1usize..8,
    ) {
        let (s, who) = mailbox(n, &expunged, &stored);
        let mb = s.mb(who, "INBOX");
        let mut uids = UidSet { ranges: ranges.into_iter().map(|(a, b)| (a.max(1), b.max(1))).collect() };
        if open_end {
            uids.ranges.push((30, Uid::MAX));
        }
        let whole = query::messages(&s.kv, who, &mb, &uids, changed_since).unwrap();
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = query::messages_page(&s.kv, who, &mb, &uids.normalized(), changed_since, after, limit).unwrap();
            prop_assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            after = last.uid;
            paged.extend(page);
        }
        prop_assert_eq!(paged, whole);
    }
}

#[test]
fn a_page_after_the_last_uid_is_empty_and_other_accounts_are_refused() {
    let (mut s, who) = mailbox(3, &[], &[]);
    let mb = s.mb(who, "INBOX");
    let all = UidSet::range(1, Uid::MAX).normalized();
    assert!(query::messages_page(&s.kv, who, &mb, &all, 0, Uid::MAX, 10).unwrap().is_empty());
    assert_eq!(query::messages_page(&s.kv, who, &mb, &all, 0, 1, 10).unwrap().len(), 2);
    let bob = s.account("bob");
    assert!(matches!(query::messages_page(&s.kv, bob, &mb, &all, 0, 0, 10), Err(ModelError::NotFound(_))));
}
