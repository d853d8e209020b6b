//! The follower's staging buffers for large entries (see `network.rs`, "Large entries"): the
//! bytes of at most one entry, in memory, until the sender's `AppendStaged` hands the decoded
//! entry to Raft.
//!
//! Rules, each bounding what a sender can make the follower hold:
//! - one entry in all (only the current leader stages): a chunk with a new key (vote, log id,
//!   total) or from another sender replaces the held one, whatever node ids peers claim;
//! - an entry larger than the cap is refused before any byte is kept;
//! - chunks arrive in order: a chunk at any other offset changes nothing, and the reply says how
//!   much is held, so the sender resumes there (after a cancelled call, a reconnect, a restart);
//! - an entry that got no chunk and no commit for the idle time is dropped ([`Staging::expire`]),
//!   and so is one the leader has moved past ([`Staging::release`]).
//!
//! When the last byte arrives, [`Staging::stage`] hands the bytes to the caller, which decodes
//! them on a blocking thread and publishes the entry on a watch channel that later calls (the
//! ready probe, the commit) wait on. The decoded entry replaces the bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailraft_store::{Entry, LogId, NodeId, Vote};
use tokio::sync::watch;

/// Which entry a sender is staging: a leader term's log id names one entry, and the length
/// guards against a sender that re-encoded it differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StageKey {
    /// The sender's vote (leader term) the entry belongs to.
    pub vote: Vote,
    /// The entry's log id.
    pub log_id: LogId,
    /// Encoded length of the whole entry.
    pub total: u64,
}

/// The decoded entry once the decoder is done (`None` while it runs), or why it failed.
pub(crate) type Decoded = Option<Result<Arc<Entry>, String>>;

/// What a sender's staged entry holds.
#[derive(Debug)]
enum Buffer {
    /// Bytes received so far, in order.
    Filling(Vec<u8>),
    /// Every byte arrived; the decoder publishes the entry here.
    Complete(watch::Receiver<Decoded>),
}

#[derive(Debug)]
struct Staged {
    key: StageKey,
    buffer: Buffer,
    /// Last chunk or commit, for the idle drop.
    touched: Instant,
}

/// The outcome of a chunk.
#[derive(Debug)]
pub(crate) enum Stage {
    /// The sender's entry holds this many bytes (the chunk was added, or ignored as out of order).
    Held(u64),
    /// This chunk completed the entry: decode `bytes` and publish the result on `done`.
    Complete {
        /// The whole encoded entry.
        bytes: Vec<u8>,
        /// Where the decoded entry goes.
        done: watch::Sender<Decoded>,
    },
    /// Every byte was already here: the decoded entry comes (or came) on this channel.
    Decoding(watch::Receiver<Decoded>),
}

/// Why a chunk or a commit is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum StageError {
    #[error("staged entry of {total} bytes exceeds the limit of {cap} bytes")]
    TooLarge { total: u64, cap: u64 },
    #[error("chunk of {len} bytes at offset {offset} overruns the entry's {total} bytes")]
    Overrun { offset: u64, len: usize, total: u64 },
    #[error("a staged entry cannot be empty")]
    Empty,
    #[error("no fully staged entry from this sender under this vote")]
    NotStaged,
}

/// The staging buffers of one follower, by sender.
#[derive(Debug)]
pub(crate) struct Staging {
    /// Largest entry accepted, in encoded bytes.
    cap: u64,
    /// An entry untouched for this long is dropped.
    idle: Duration,
    by_sender: HashMap<NodeId, Staged>,
}

impl Staging {
    pub(crate) fn new(cap: u64, idle: Duration) -> Self {
        Staging { cap, idle, by_sender: HashMap::new() }
    }

    /// Adds `data`, which starts at `offset` of the entry `key`, to `from`'s buffer.
    pub(crate) fn stage(
        &mut self,
        from: NodeId,
        key: StageKey,
        offset: u64,
        data: Vec<u8>,
        now: Instant,
    ) -> Result<Stage, StageError> {
        self.expire(now);
        if key.total == 0 {
            return Err(StageError::Empty);
        }
        if key.total > self.cap {
            return Err(StageError::TooLarge { total: key.total, cap: self.cap });
        }
        // Only the current leader stages entries, so one sender's buffer at a time is enough: a
        // second sender (a new leader, or a peer lying about its id) replaces the first, which
        // bounds the memory to one capped entry whatever ids peers claim.
        self.by_sender.retain(|sender, _| *sender == from);
        let fresh = || Staged { key, buffer: Buffer::Filling(Vec::new()), touched: now };
        let staged = self
            .by_sender
            .entry(from)
            .and_modify(|s| {
                if s.key != key {
                    *s = fresh();
                }
            })
            .or_insert_with(fresh);
        staged.touched = now;
        let buf = match &mut staged.buffer {
            Buffer::Complete(rx) => return Ok(Stage::Decoding(rx.clone())),
            Buffer::Filling(buf) => buf,
        };
        let held = buf.len() as u64;
        if offset != held || data.is_empty() {
            return Ok(Stage::Held(held));
        }
        if offset.saturating_add(data.len() as u64) > key.total {
            return Err(StageError::Overrun { offset, len: data.len(), total: key.total });
        }
        // No reservation of `total` up front: memory follows the bytes that actually arrived, not
        // what a sender announced.
        buf.extend_from_slice(&data);
        if buf.len() as u64 == key.total {
            let bytes = std::mem::take(buf);
            let (done, rx) = watch::channel(None);
            staged.buffer = Buffer::Complete(rx);
            return Ok(Stage::Complete { bytes, done });
        }
        Ok(Stage::Held(buf.len() as u64))
    }

    /// The log id and decoder channel of `from`'s entry, if every byte of it arrived under `vote`.
    pub(crate) fn staged(
        &mut self,
        from: NodeId,
        vote: &Vote,
        now: Instant,
    ) -> Result<(LogId, watch::Receiver<Decoded>), StageError> {
        self.expire(now);
        match self.by_sender.get_mut(&from) {
            Some(Staged { key, buffer: Buffer::Complete(rx), touched }) if key.vote == *vote => {
                *touched = now;
                Ok((key.log_id, rx.clone()))
            }
            _ => Err(StageError::NotStaged),
        }
    }

    /// Drops `from`'s entry once the leader's AppendEntries start at or after it (`prev_log_id`
    /// reached its index): the follower has it, or the leader no longer sends it.
    pub(crate) fn release(&mut self, from: NodeId, prev_log_id: Option<&LogId>, now: Instant) {
        self.expire(now);
        if let Some(prev) = prev_log_id
            && self.by_sender.get(&from).is_some_and(|s| s.key.log_id.index <= prev.index)
        {
            self.by_sender.remove(&from);
        }
    }

    /// Drops `from`'s entry if it is still `log_id` (its bytes did not decode to that entry).
    pub(crate) fn forget(&mut self, from: NodeId, log_id: &LogId) {
        if self.by_sender.get(&from).is_some_and(|s| s.key.log_id == *log_id) {
            self.by_sender.remove(&from);
        }
    }

    /// Drops every entry untouched for the idle time.
    pub(crate) fn expire(&mut self, now: Instant) {
        let idle = self.idle;
        self.by_sender.retain(|_, s| now.saturating_duration_since(s.touched) < idle);
    }

    /// Senders with a staged entry.
    #[cfg(test)]
    fn senders(&self) -> usize {
        self.by_sender.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    const IDLE: Duration = Duration::from_secs(60);

    fn key(term: u64, index: u64, total: u64) -> StageKey {
        StageKey {
            vote: Vote::new_committed(term, 1),
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            total,
        }
    }

    fn held(stage: Result<Stage, StageError>) -> u64 {
        match stage.unwrap() {
            Stage::Held(n) => n,
            other => panic!("expected Held, got {other:?}"),
        }
    }

    #[test]
    fn chunks_must_arrive_in_order() {
        let now = Instant::now();
        let mut s = Staging::new(100, IDLE);
        let k = key(1, 5, 10);
        assert_eq!(held(s.stage(2, k, 0, vec![1; 4], now)), 4);
        // A gap or a repeat is ignored; the reply tells the sender where to resume.
        assert_eq!(held(s.stage(2, k, 6, vec![1; 2], now)), 4);
        assert_eq!(held(s.stage(2, k, 0, vec![1; 4], now)), 4);
        // An empty chunk only asks.
        assert_eq!(held(s.stage(2, k, 4, vec![], now)), 4);
        // Not complete yet: nothing to commit.
        assert_eq!(s.staged(2, &k.vote, now).unwrap_err(), StageError::NotStaged);
        // Past the end is refused.
        assert!(matches!(s.stage(2, k, 4, vec![1; 7], now), Err(StageError::Overrun { .. })));
        let Stage::Complete { bytes, done } = s.stage(2, k, 4, vec![2; 6], now).unwrap() else { panic!("complete") };
        assert_eq!(bytes, [vec![1; 4], vec![2; 6]].concat());
        // Once complete, any chunk of that entry waits for the decoder.
        let Stage::Decoding(rx) = s.stage(2, k, 0, vec![1; 4], now).unwrap() else { panic!("decoding") };
        assert!(rx.borrow().is_none());
        done.send_replace(Some(Err("test".into())));
        assert!(rx.borrow().is_some());
        // The commit finds it under the same vote only.
        assert_eq!(s.staged(2, &k.vote, now).unwrap().0, k.log_id);
        assert!(s.staged(2, &Vote::new_committed(2, 1), now).is_err());
        assert!(s.staged(3, &k.vote, now).is_err(), "another sender has nothing staged");
    }

    #[test]
    fn entries_over_the_cap_or_empty_are_refused() {
        let now = Instant::now();
        let mut s = Staging::new(100, IDLE);
        assert_eq!(
            s.stage(2, key(1, 5, 101), 0, vec![1], now).unwrap_err(),
            StageError::TooLarge { total: 101, cap: 100 }
        );
        assert_eq!(s.stage(2, key(1, 5, 0), 0, vec![], now).unwrap_err(), StageError::Empty);
        assert_eq!(s.senders(), 0, "nothing kept for a refused entry");
        assert_eq!(held(s.stage(2, key(1, 5, 100), 0, vec![1; 60], now)), 60);
    }

    #[test]
    fn a_new_key_replaces_the_senders_entry() {
        let now = Instant::now();
        let mut s = Staging::new(100, IDLE);
        assert_eq!(held(s.stage(2, key(1, 5, 10), 0, vec![1; 4], now)), 4);
        // Same sender, next entry: the old bytes go, a chunk must start at 0.
        assert_eq!(held(s.stage(2, key(1, 6, 10), 4, vec![1; 4], now)), 0);
        assert_eq!(held(s.stage(2, key(1, 5, 10), 4, vec![1; 4], now)), 0, "the old entry is gone");
        // A new term or another length is another key too.
        assert_eq!(held(s.stage(2, key(1, 5, 10), 0, vec![1; 2], now)), 2);
        assert_eq!(held(s.stage(2, key(2, 5, 10), 2, vec![1; 2], now)), 0);
        assert_eq!(held(s.stage(2, key(2, 5, 12), 0, vec![1; 2], now)), 2);
        assert_eq!(s.senders(), 1);
    }

    #[test]
    fn another_sender_replaces_the_staged_entry() {
        let now = Instant::now();
        let mut s = Staging::new(100, IDLE);
        assert_eq!(held(s.stage(2, key(1, 5, 10), 0, vec![1; 4], now)), 4);
        // Peers claiming many ids still make the node hold at most one entry.
        for sender in 3..50 {
            assert_eq!(held(s.stage(sender, key(1, 5, 10), 0, vec![1; 3], now)), 3);
            assert_eq!(s.senders(), 1, "one staged entry in all");
        }
        assert_eq!(held(s.stage(2, key(1, 5, 10), 4, vec![], now)), 0, "sender 2's bytes were dropped");
    }

    #[test]
    fn idle_and_passed_entries_are_dropped() {
        let t0 = Instant::now();
        let mut s = Staging::new(100, IDLE);
        assert_eq!(held(s.stage(3, key(1, 5, 10), 0, vec![1; 4], t0)), 4);
        // Chunks keep an entry alive; just before the idle time nothing goes.
        s.expire(t0 + IDLE - Duration::from_millis(1));
        assert_eq!(s.senders(), 1);
        s.expire(t0 + IDLE);
        assert_eq!(s.senders(), 0, "sender 3 was idle for a minute");
        assert_eq!(held(s.stage(3, key(1, 5, 10), 4, vec![1; 4], t0 + IDLE)), 0, "starts over");
        assert_eq!(held(s.stage(3, key(1, 5, 10), 0, vec![1; 4], t0 + IDLE)), 4);

        // An AppendEntries that starts before the entry keeps it; at or after it, drops it.
        let now = t0 + IDLE;
        let at = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
        s.release(3, Some(&at(4)), now);
        s.release(3, None, now);
        assert_eq!(held(s.stage(3, key(1, 5, 10), 4, vec![], now)), 4);
        s.release(3, Some(&at(5)), now);
        assert_eq!(held(s.stage(3, key(1, 5, 10), 4, vec![], now)), 0);

        // A failed decode forgets exactly that entry.
        assert_eq!(held(s.stage(3, key(1, 5, 10), 0, vec![1; 4], now)), 4);
        s.forget(3, &at(6));
        assert_eq!(s.senders(), 1);
        s.forget(3, &at(5));
        assert_eq!(s.senders(), 0);
    }
}
