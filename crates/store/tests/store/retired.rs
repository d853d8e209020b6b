//! Retired node ids (`state_machine.rs`): every id a membership change drops is recorded with the
//! applied state, also when several changes come in one batch; an id added again is not retired
//! any more; the set survives reopening the store.

use std::collections::{BTreeMap, BTreeSet};

use mailraft_store::{Entry, Membership, Node};
use openraft::EntryPayload;
use openraft::storage::RaftStateMachine;

use crate::common::log_id;

/// A membership entry at `index` with `voters` and `learners`.
fn change(index: u64, voters: &[u64], learners: &[u64]) -> Entry {
    let nodes: BTreeMap<u64, Node> =
        voters.iter().chain(learners).map(|id| (*id, Node { addr: format!("http://node-{id}:1") })).collect();
    let membership = Membership::new(vec![voters.iter().copied().collect::<BTreeSet<_>>()], nodes);
    Entry { log_id: log_id(index), payload: EntryPayload::Membership(membership) }
}

#[tokio::test]
async fn removed_ids_are_retired_until_added_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_log, mut sm) = mailraft_store::open(dir.path()).expect("open");
        let view = sm.reader();
        sm.apply([change(1, &[1, 2, 3], &[4])]).await.expect("apply");
        assert!(view.retired_nodes().expect("read").is_empty());
        // A voter and a learner dropped, in two changes of one batch.
        sm.apply([change(2, &[1, 2, 3], &[]), change(3, &[1, 2], &[])]).await.expect("apply");
        assert_eq!(view.retired_nodes().expect("read"), BTreeSet::from([3, 4]));
        // Node 3 is added again (a replacement under the same id): it is not refused any more.
        sm.apply([change(4, &[1, 2], &[3])]).await.expect("apply");
        assert_eq!(view.retired_nodes().expect("read"), BTreeSet::from([4]));
    }
    let (_log, sm) = mailraft_store::open(dir.path()).expect("reopen");
    assert_eq!(sm.reader().retired_nodes().expect("read"), BTreeSet::from([4]), "kept on disk");
}
