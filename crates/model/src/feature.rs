//! The cluster's feature level: which version of the apply rules every replica runs.
//!
//! `apply` must give the same result on every replica. A release that changes an apply rule (a
//! new bound that refuses what the old rule accepted, a new check, another allocation) would
//! break that during a rolling upgrade: old and new binaries would apply the same log entry
//! differently and their states would diverge without anyone noticing. So a changed rule is not
//! switched on by the binary but by the replicated *feature level* (the scheme of CockroachDB's
//! and etcd's cluster version), a u32 in `Meta/feature_level` ([`keys::META_FEATURE_LEVEL`];
//! absent = [`BASE_FEATURE_LEVEL`]):
//!
//! 1. A release that changes a rule raises [`KNOWN_FEATURE_LEVEL`] to N, adds "Level N" below,
//!    and writes the rule as `if txn.level() >= N { new rule } else { old rule }` (see
//!    `limits.rs`). Until the cluster is at level N it behaves exactly as the old release.
//! 2. The operator upgrades every node's binary, then runs `mailraft admin set-feature-level N`:
//!    the leader checks that every member knows level N (`Raft.Identify`) and proposes
//!    [`Command::SetFeatureLevel`](crate::Command::SetFeatureLevel). Every replica switches at that same log index.
//! 3. One release later the old branch is deleted, and that release raises
//!    [`OLDEST_FEATURE_LEVEL`] to N: it refuses to apply (or to start on) a state still below N,
//!    whose entries it could no longer apply the way the older replicas did.
//!
//! A binary that meets a level it does not know (a `SetFeatureLevel` entry, a snapshot or a
//! data directory from newer binaries) must not guess: apply returns a [`FatalError`], which the
//! store turns into a storage error, so openraft stops this node before the entry counts as
//! applied, and the operator sees which binary is needed. A refusal ([`ModelError`] as the
//! command's reply) would not do: the entry would count as applied, with the old rules.
//!
//! Levels:
//! - Level 1: the first release's rules (every apply rule of the release that introduced
//!   feature levels).
//! - Level 2 ([`LEVEL_KEYWORD_INDEX`]): message records name their keywords by index into
//!   their mailbox's keyword list (message record and mailbox record version 2,
//!   [`crate::message_record`]), and FETCH FLAGS gives each keyword of such a record in its
//!   mailbox's first spelling (a version 1 record keeps its own until rewritten); a
//!   refusal that a smaller command would avoid (the message and byte bounds of one command) is
//!   [`ModelError::TooBig`] instead of `Limit`, so a front-end splits only what splitting helps.
//!   A new cluster starts at the level its bootstrapping binary knows.

use crate::apply::Txn;
use crate::command::{ModelError, Outcome, Reply};
use crate::keys;
use crate::kv::{KvRead, Table};

/// The level of a state that has never stored one: a cluster bootstrapped before feature levels
/// existed, or that never raised its level, runs the first release's rules.
pub const BASE_FEATURE_LEVEL: u32 = 1;

/// The highest level whose rules this binary has: it refuses to apply a higher one.
pub const KNOWN_FEATURE_LEVEL: u32 = 2;

/// Level 2: version 2 message records (keyword indices) and [`ModelError::TooBig`].
pub const LEVEL_KEYWORD_INDEX: u32 = 2;

/// The lowest level whose rules this binary still has (old branches are deleted one release
/// after their level was raised): it refuses to apply a state below it.
pub const OLDEST_FEATURE_LEVEL: u32 = 1;

/// Why this binary must stop applying: going on would not give the result every other replica
/// gives. Not a refusal of the command (those are [`ModelError`]s, recorded as its reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatalError {
    /// The cluster is at (or an entry raises it to) a level newer than this binary knows.
    #[error("cluster feature level {level} needs a newer mailraft binary (this one knows up to {known})")]
    NewerFeatureLevel {
        /// The cluster's level, or the one the entry sets.
        level: u32,
        /// [`KNOWN_FEATURE_LEVEL`] of this binary.
        known: u32,
    },
    /// The cluster is at a level whose rules this binary no longer has.
    #[error(
        "cluster feature level {level} needs an older mailraft binary (this one supports level {oldest} and up); \
         run the previous release until `mailraft admin set-feature-level {oldest}` has been applied"
    )]
    OlderFeatureLevel {
        /// The cluster's level.
        level: u32,
        /// [`OLDEST_FEATURE_LEVEL`] of this binary.
        oldest: u32,
    },
    /// The stored level does not decode: which rules apply is unknown.
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

/// The range of levels one binary can apply; [`Supported::THIS_BINARY`] except in tests, which
/// also need a binary that knows more levels than this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Supported {
    /// [`OLDEST_FEATURE_LEVEL`].
    pub oldest: u32,
    /// [`KNOWN_FEATURE_LEVEL`].
    pub known: u32,
}

impl Supported {
    /// This binary's levels.
    pub const THIS_BINARY: Supported = Supported { oldest: OLDEST_FEATURE_LEVEL, known: KNOWN_FEATURE_LEVEL };

    /// `Ok` when a state at `level` can be applied.
    pub fn check(self, level: u32) -> Result<(), FatalError> {
        if level > self.known {
            return Err(FatalError::NewerFeatureLevel { level, known: self.known });
        }
        if level < self.oldest {
            return Err(FatalError::OlderFeatureLevel { level, oldest: self.oldest });
        }
        Ok(())
    }
}

/// The state's feature level ([`BASE_FEATURE_LEVEL`] when none is stored).
pub fn stored_level(kv: &dyn KvRead) -> Result<u32, ModelError> {
    match kv.get(Table::Meta, keys::META_FEATURE_LEVEL) {
        None => Ok(BASE_FEATURE_LEVEL),
        Some(v) => {
            let bytes: [u8; 4] = v.as_slice().try_into().map_err(|_| ModelError::Corrupt("feature_level".into()))?;
            Ok(u32::from_be_bytes(bytes))
        }
    }
}

/// Checks the level of a state this binary is about to serve (the store calls it at start-up,
/// so a data directory of newer binaries is refused before any entry is applied to it).
pub fn check_stored_level(kv: &dyn KvRead) -> Result<u32, FatalError> {
    let level = stored_level(kv).map_err(|e| FatalError::Corrupt(e.to_string()))?;
    Supported::THIS_BINARY.check(level)?;
    Ok(level)
}

/// `SetFeatureLevel`: raises the level to `level`; a level at or below the current one is a
/// no-op success (levels never go down: the rules of the higher level may already have been
/// used). `apply` has checked that this binary knows `level`.
pub(crate) fn set_level(txn: &mut Txn<'_>, level: u32) -> Reply {
    let previous = txn.level();
    if level > previous {
        txn.put_raw(Table::Meta, keys::META_FEATURE_LEVEL.to_vec(), level.to_be_bytes().to_vec());
    }
    Ok(Outcome::FeatureLevelSet { previous, level: level.max(previous) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::apply::{apply_detailed, apply_with};
    use crate::command::{Command, Request};
    use crate::kv::{MemKv, WriteSet};

    /// A level this binary does not know, and a binary that knows it and one more.
    const NEXT: u32 = KNOWN_FEATURE_LEVEL + 1;
    const NEWER: Supported = Supported { oldest: 1, known: NEXT + 1 };

    fn set(kv: &mut MemKv, level: u32, binary: Supported) -> Result<Reply, FatalError> {
        let mut ws = WriteSet::default();
        let applied = apply_with(kv, &mut ws, &Request::new(1_000, Command::SetFeatureLevel { level }), binary)?;
        kv.commit(ws);
        Ok(applied.reply)
    }

    fn level(kv: &MemKv) -> u32 {
        stored_level(kv).unwrap()
    }

    #[test]
    fn a_state_without_a_level_is_at_level_1_and_this_binary_knows_it() {
        let kv = MemKv::default();
        assert_eq!(level(&kv), 1);
        assert_eq!(check_stored_level(&kv), Ok(1));
        assert_eq!((KNOWN_FEATURE_LEVEL, OLDEST_FEATURE_LEVEL, BASE_FEATURE_LEVEL), (2, 1, 1));
    }

    #[test]
    fn raising_works_is_idempotent_and_never_goes_down() {
        let mut kv = MemKv::default();
        assert_eq!(set(&mut kv, 2, NEWER), Ok(Ok(Outcome::FeatureLevelSet { previous: 1, level: 2 })));
        assert_eq!(level(&kv), 2);
        assert_eq!(set(&mut kv, 2, NEWER), Ok(Ok(Outcome::FeatureLevelSet { previous: 2, level: 2 })));
        assert_eq!(set(&mut kv, 1, NEWER), Ok(Ok(Outcome::FeatureLevelSet { previous: 2, level: 2 })));
        assert_eq!(level(&kv), 2, "lowering is a no-op");
        assert_eq!(set(&mut kv, 3, NEWER), Ok(Ok(Outcome::FeatureLevelSet { previous: 2, level: 3 })));
        assert_eq!(level(&kv), 3);
    }

    #[test]
    fn this_binary_accepts_level_1_as_a_no_op_and_writes_nothing() {
        let mut kv = MemKv::default();
        let mut ws = WriteSet::default();
        let applied = apply_detailed(&kv, &mut ws, &Request::new(1_000, Command::SetFeatureLevel { level: 1 })).unwrap();
        assert_eq!(applied.reply, Ok(Outcome::FeatureLevelSet { previous: 1, level: 1 }));
        kv.commit(ws);
        assert_eq!(kv.get(Table::Meta, keys::META_FEATURE_LEVEL), None);
    }

    #[test]
    fn a_level_above_the_known_one_is_fatal_not_a_refusal() {
        let kv = MemKv::default();
        let mut ws = WriteSet::default();
        let err = apply_detailed(&kv, &mut ws, &Request::new(1_000, Command::SetFeatureLevel { level: NEXT })).unwrap_err();
        assert_eq!(err, FatalError::NewerFeatureLevel { level: NEXT, known: KNOWN_FEATURE_LEVEL });
        assert_eq!(
            err.to_string(),
            format!("cluster feature level {NEXT} needs a newer mailraft binary (this one knows up to {KNOWN_FEATURE_LEVEL})")
        );
        assert!(ws.is_empty(), "nothing of the entry may be written");
        let mut kv = MemKv::default();
        assert_eq!(set(&mut kv, NEXT + 2, NEWER), Err(FatalError::NewerFeatureLevel { level: NEXT + 2, known: NEXT + 1 }));
        assert_eq!(level(&kv), 1);
    }

    #[test]
    fn a_state_above_the_known_level_stops_every_command() {
        // What a snapshot or a data directory of newer binaries looks like to this one.
        let mut kv = MemKv::default();
        set(&mut kv, NEXT, NEWER).unwrap().unwrap();
        let create = Request::new(1_000, Command::CreateTenant { domain: "example.test".into() });
        let err = apply_detailed(&kv, &mut WriteSet::default(), &create).unwrap_err();
        assert_eq!(err, FatalError::NewerFeatureLevel { level: NEXT, known: KNOWN_FEATURE_LEVEL });
        assert_eq!(check_stored_level(&kv), Err(FatalError::NewerFeatureLevel { level: NEXT, known: KNOWN_FEATURE_LEVEL }));
        // A binary whose oldest level is above the state's refuses it too.
        let newest = Supported { oldest: NEXT + 1, known: NEXT + 1 };
        let err = apply_with(&kv, &mut WriteSet::default(), &create, newest).unwrap_err();
        assert_eq!(err, FatalError::OlderFeatureLevel { level: NEXT, oldest: NEXT + 1 });
    }

    #[test]
    fn a_raise_earlier_in_the_batch_counts_for_the_next_entries() {
        let kv = MemKv::default();
        let mut ws = WriteSet::default();
        apply_with(&kv, &mut ws, &Request::new(1_000, Command::SetFeatureLevel { level: NEXT }), NEWER).unwrap();
        let create = Request::new(1_000, Command::CreateTenant { domain: "example.test".into() });
        let err = apply_detailed(&kv, &mut ws, &create).unwrap_err();
        assert_eq!(err, FatalError::NewerFeatureLevel { level: NEXT, known: KNOWN_FEATURE_LEVEL });
    }

    #[test]
    fn the_level_is_state_and_survives_a_copy_of_every_table() {
        // A snapshot carries every row of every table (`Table::ALL`; the store's
        // `snapshot_transfers_all_tables` checks that): the level is one of them.
        let mut kv = MemKv::default();
        set(&mut kv, 2, NEWER).unwrap().unwrap();
        let mut copy = WriteSet::default();
        for table in Table::ALL {
            for (k, v) in kv.scan(table, b"", None, usize::MAX) {
                copy.put(table, k, v);
            }
        }
        let mut installed = MemKv::default();
        installed.commit(copy);
        assert_eq!(level(&installed), 2);
    }

    #[test]
    fn an_undecodable_level_is_fatal() {
        let mut kv = MemKv::default();
        let mut ws = WriteSet::default();
        ws.put(Table::Meta, keys::META_FEATURE_LEVEL.to_vec(), vec![1, 2]);
        kv.commit(ws);
        assert!(matches!(check_stored_level(&kv), Err(FatalError::Corrupt(_))));
        let create = Request::new(1_000, Command::CreateTenant { domain: "example.test".into() });
        assert!(matches!(apply_detailed(&kv, &mut WriteSet::default(), &create), Err(FatalError::Corrupt(_))));
    }
}
