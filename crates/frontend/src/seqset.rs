//! The session's message sequence number ↔ UID map.
//!
//! A selected session numbers the messages it knows 1..n in UID order (RFC 3501 §2.3.1.2). The
//! storage tier only speaks UIDs, so every sequence set a client sends is resolved here first:
//! [`SeqMap::resolve_seq`] for message sequence numbers, [`SeqMap::resolve_uid`] for `UID …`
//! commands. The session updates the map as it reports changes: [`SeqMap::push`] for each new
//! message it announces with EXISTS, [`SeqMap::remove`] for each EXPUNGE it sends (which returns
//! the sequence number to report, already renumbered for the removals before it).
//!
//! The free functions turn UID lists back into compact sets for the storage API
//! ([`to_uid_set`]) and for responses (COPYUID/APPENDUID [`to_imap_uid_set`], [`to_sequence_set`]).

use std::num::NonZeroU32;

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet as ImapUidSet};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mailraft_proto::{UidRange, UidSet};

/// Why a sequence set cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    /// A message sequence number beyond the mailbox size, or `*` in an empty mailbox (RFC 9051 §9
    /// seq-number: the server responds BAD).
    #[error("message sequence number {seq} out of range (mailbox has {len} messages)")]
    OutOfRange {
        /// The offending number (`u32::MAX` for `*`).
        seq: u32,
        /// Messages in the session's view.
        len: u32,
    },
    /// `push` with a UID not above the last one.
    #[error("uid {0} is not above the highest uid")]
    NotAscending(u32),
}

/// The session's view of the selected mailbox: UIDs ascending; sequence number n is index n-1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqMap {
    /// Strictly ascending UIDs of the messages the session has announced.
    uids: Vec<u32>,
    /// The UIDNEXT the session knows: `*` in a UID set of an empty mailbox (RFC 9051 §9
    /// seq-number). 0 when unknown.
    uid_next: u32,
}

impl SeqMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
    /// Builds a map from UIDs (sorted and deduplicated here).
    pub fn from_uids(mut uids: Vec<u32>) -> Self {
        uids.sort_unstable();
        uids.dedup();
        let uid_next = uids.last().map_or(1, |u| u.saturating_add(1));
        Self { uids, uid_next }
    }
    /// Builds a map from a SELECT response's UID ranges.
    pub fn from_uid_set(set: &UidSet) -> Self {
        Self::from_uids(expand(set).collect())
    }
    /// Records the mailbox UIDNEXT, used for `*` in UID sets when the mailbox is empty.
    pub fn set_uid_next(&mut self, uid_next: u32) {
        self.uid_next = uid_next;
    }
    /// Number of messages.
    pub fn len(&self) -> u32 {
        u32::try_from(self.uids.len()).unwrap_or(u32::MAX)
    }
    /// Whether the mailbox is empty.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }
    /// All UIDs, ascending.
    pub fn uids(&self) -> &[u32] {
        &self.uids
    }
    /// Highest UID, if any.
    pub fn last_uid(&self) -> Option<u32> {
        self.uids.last().copied()
    }
    /// UID of sequence number `seq`.
    pub fn uid_of(&self, seq: u32) -> Option<u32> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        self.uids.get(i).copied()
    }
    /// Sequence number of `uid`.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        let i = self.uids.binary_search(&uid).ok()?;
        u32::try_from(i + 1).ok()
    }
    /// Removes `uid`, returning the sequence number it had (for EXPUNGE).
    pub fn remove(&mut self, uid: u32) -> Option<u32> {
        let seq = self.seq_of(uid)?;
        self.uids.remove(usize::try_from(seq).ok()? - 1);
        Some(seq)
    }
    /// Appends a new message's UID (must exceed the last one), returning its sequence number.
    pub fn push(&mut self, uid: u32) -> Result<u32, SeqError> {
        if self.last_uid().is_some_and(|last| uid <= last) {
            return Err(SeqError::NotAscending(uid));
        }
        self.uids.push(uid);
        self.uid_next = self.uid_next.max(uid.saturating_add(1));
        Ok(self.len())
    }
    /// Resolves message sequence numbers to UIDs (ascending, unique).
    ///
    /// A number beyond the mailbox, or `*` when it is empty, is an error the caller answers with
    /// BAD: RFC 9051 §9 (seq-number) "The server should respond with a tagged BAD response to a
    /// command that uses a message sequence number greater than the number of messages in the
    /// selected mailbox. This includes "*" if the selected mailbox is empty." (RFC 3501 §9 says the
    /// same for numbers beyond the mailbox.) A range may be given high-to-low (RFC 3501 §9
    /// seq-range).
    pub fn resolve_seq(&self, set: &SequenceSet) -> Result<Vec<u32>, SeqError> {
        let len = self.len();
        let mut ranges = Vec::with_capacity(set.0.as_ref().len());
        for seq in set.0.as_ref() {
            let (a, b) = bounds(seq, len);
            let (lo, hi) = (a.min(b), a.max(b));
            if hi > len || lo == 0 {
                let bad = if a > len || a == 0 { a } else { b };
                let seq = if bad == 0 { u32::MAX } else { bad };
                return Err(SeqError::OutOfRange { seq, len });
            }
            ranges.push((lo, hi));
        }
        Ok(self.uids_of_seq_ranges(ranges))
    }

    /// Like [`Self::resolve_seq`] but silently drops numbers beyond the mailbox (and `*` when it is
    /// empty). SEARCH uses this: a sequence-set key only narrows the result (RFC 3501 §6.4.4), so
    /// a client searching "1:*" in an empty mailbox gets an empty result rather than BAD.
    pub fn resolve_seq_lenient(&self, set: &SequenceSet) -> Vec<u32> {
        let len = self.len();
        let ranges = set
            .0
            .as_ref()
            .iter()
            .filter_map(|seq| {
                let (a, b) = bounds(seq, len);
                let (lo, hi) = (a.min(b).max(1), a.max(b).min(len));
                (lo <= hi).then_some((lo, hi))
            })
            .collect();
        self.uids_of_seq_ranges(ranges)
    }

    /// Resolves a UID set to storage ranges (sorted, merged).
    ///
    /// `*` is the highest UID the session knows, or the known UIDNEXT if the mailbox is empty
    /// (RFC 9051 §9 seq-number). A range is taken regardless of order, so "559:*" includes the
    /// last UID even if it is below 559 (RFC 3501 §6.4.8). The set may name UIDs the session
    /// does not know; use [`Self::resolve_uid_known`] to restrict it to the session's view.
    pub fn resolve_uid(&self, set: &SequenceSet) -> UidSet {
        let star = self.uid_star();
        let ranges = set
            .0
            .as_ref()
            .iter()
            .map(|seq| {
                let (a, b) = bounds(seq, star);
                (a.min(b), a.max(b))
            })
            .collect();
        ranges_to_uid_set(merge(ranges))
    }

    /// The UIDs of this map that a UID set names, ascending (same `*` rule as
    /// [`Self::resolve_uid`]). Non-existent UIDs are ignored (RFC 3501 §6.4.8).
    pub fn resolve_uid_known(&self, set: &SequenceSet) -> Vec<u32> {
        let resolved = self.resolve_uid(set);
        let mut out = Vec::new();
        for r in &resolved.ranges {
            let from = self.uids.partition_point(|&u| u < r.start);
            let to = self.uids.partition_point(|&u| u <= r.end);
            out.extend_from_slice(self.uids.get(from..to).unwrap_or_default());
        }
        out
    }

    /// The value of `*` in a UID set.
    fn uid_star(&self) -> u32 {
        self.last_uid().unwrap_or(self.uid_next.max(1))
    }

    /// UIDs for validated inclusive 1-based sequence ranges.
    fn uids_of_seq_ranges(&self, ranges: Vec<(u32, u32)>) -> Vec<u32> {
        let mut out = Vec::new();
        for (lo, hi) in merge(ranges) {
            let (Ok(lo), Ok(hi)) = (usize::try_from(lo), usize::try_from(hi)) else {
                continue;
            };
            if let Some(slice) = self.uids.get(lo - 1..hi) {
                out.extend_from_slice(slice);
            }
        }
        out
    }
}

/// The two ends of a sequence (equal for a single number), with `*` replaced by `star`.
fn bounds(seq: &Sequence, star: u32) -> (u32, u32) {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => star,
    };
    match seq {
        Sequence::Single(v) => (value(v), value(v)),
        Sequence::Range(a, b) => (value(a), value(b)),
    }
}

/// Sorts inclusive ranges and merges overlapping or adjacent ones.
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Wraps inclusive ranges into the proto type.
fn ranges_to_uid_set(ranges: Vec<(u32, u32)>) -> UidSet {
    UidSet {
        ranges: ranges
            .into_iter()
            .map(|(start, end)| UidRange { start, end })
            .collect(),
    }
}

/// Compresses UIDs into sorted, merged ranges (input need not be sorted or unique).
pub fn to_uid_set(uids: &[u32]) -> UidSet {
    ranges_to_uid_set(merge(uids.iter().map(|&u| (u, u)).collect()))
}

/// Every UID in a proto set, range by range (a reversed range counts as its ascending form; the
/// result is not deduplicated).
pub fn expand(set: &UidSet) -> impl Iterator<Item = u32> + '_ {
    set.ranges
        .iter()
        .flat_map(|r| r.start.min(r.end)..=r.start.max(r.end))
}

/// An RFC 4315 uid-set for COPYUID/APPENDUID. The order of `uids` is kept, because COPYUID pairs
/// source and destination UIDs by position (RFC 4315 §3); only ascending consecutive runs are
/// compressed. `None` if `uids` is empty or contains 0.
pub fn to_imap_uid_set(uids: &[u32]) -> Option<ImapUidSet> {
    let mut elems: Vec<(NonZeroU32, NonZeroU32)> = Vec::new();
    for &u in uids {
        let u = NonZeroU32::new(u)?;
        match elems.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(u) => *hi = u,
            _ => elems.push((u, u)),
        }
    }
    let elems: Vec<UidElement> = elems
        .into_iter()
        .map(|(lo, hi)| {
            if lo == hi {
                UidElement::Single(lo)
            } else {
                UidElement::Range(lo, hi)
            }
        })
        .collect();
    Vec1::try_from(elems).ok().map(ImapUidSet)
}

/// A compressed, ascending sequence set of `nums` (UIDs or sequence numbers); `None` if `nums` is
/// empty or contains 0.
pub fn to_sequence_set(nums: &[u32]) -> Option<SequenceSet> {
    if nums.contains(&0) {
        return None;
    }
    let seqs: Vec<Sequence> = merge(nums.iter().map(|&u| (u, u)).collect())
        .into_iter()
        .filter_map(|(lo, hi)| {
            let (lo, hi) = (NonZeroU32::new(lo)?, NonZeroU32::new(hi)?);
            Some(if lo == hi {
                Sequence::Single(SeqOrUid::Value(lo))
            } else {
                Sequence::Range(SeqOrUid::Value(lo), SeqOrUid::Value(hi))
            })
        })
        .collect();
    SequenceSet::try_from(seqs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).expect("set")
    }

    fn ranges(set: &UidSet) -> Vec<(u32, u32)> {
        set.ranges.iter().map(|r| (r.start, r.end)).collect()
    }

    fn map() -> SeqMap {
        SeqMap::from_uids(vec![20, 3, 5, 7, 8, 5])
    }

    #[test]
    fn lookups() {
        let m = map();
        assert_eq!(m.uids(), &[3, 5, 7, 8, 20]);
        assert_eq!(m.len(), 5);
        assert_eq!(m.seq_of(7), Some(3));
        assert_eq!(m.seq_of(6), None);
        assert_eq!(m.uid_of(1), Some(3));
        assert_eq!(m.uid_of(0), None);
        assert_eq!(m.uid_of(6), None);
        assert_eq!(m.last_uid(), Some(20));
    }

    #[test]
    fn resolve_seq_ranges_and_star() {
        let m = map();
        assert_eq!(m.resolve_seq(&set("1")), Ok(vec![3]));
        assert_eq!(m.resolve_seq(&set("2:3,5")), Ok(vec![5, 7, 20]));
        assert_eq!(m.resolve_seq(&set("*")), Ok(vec![20]));
        assert_eq!(m.resolve_seq(&set("4:*")), Ok(vec![8, 20]));
        // Reversed and overlapping ranges.
        assert_eq!(m.resolve_seq(&set("3:1,2:4")), Ok(vec![3, 5, 7, 8]));
        assert_eq!(m.resolve_seq(&set("*:4")), Ok(vec![8, 20]));
    }

    #[test]
    fn resolve_seq_out_of_range_is_error() {
        let m = map();
        assert_eq!(
            m.resolve_seq(&set("6")),
            Err(SeqError::OutOfRange { seq: 6, len: 5 })
        );
        assert_eq!(
            m.resolve_seq(&set("2:9")),
            Err(SeqError::OutOfRange { seq: 9, len: 5 })
        );
        let empty = SeqMap::new();
        assert_eq!(
            empty.resolve_seq(&set("*")),
            Err(SeqError::OutOfRange {
                seq: u32::MAX,
                len: 0
            })
        );
        assert_eq!(
            empty.resolve_seq(&set("1:*")),
            Err(SeqError::OutOfRange { seq: 1, len: 0 })
        );
    }

    #[test]
    fn resolve_seq_lenient_clips() {
        let m = map();
        assert_eq!(m.resolve_seq_lenient(&set("4:9")), vec![8, 20]);
        assert_eq!(m.resolve_seq_lenient(&set("9")), Vec::<u32>::new());
        assert_eq!(
            SeqMap::new().resolve_seq_lenient(&set("1:*")),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn resolve_uid_star_and_reversed() {
        let m = map();
        assert_eq!(ranges(&m.resolve_uid(&set("1:*"))), vec![(1, 20)]);
        // RFC 3501 §6.4.8: 559:* includes the last UID even though 559 > 20.
        assert_eq!(ranges(&m.resolve_uid(&set("559:*"))), vec![(20, 559)]);
        assert_eq!(ranges(&m.resolve_uid(&set("*"))), vec![(20, 20)]);
        assert_eq!(
            ranges(&m.resolve_uid(&set("9,4:6,5,10"))),
            vec![(4, 6), (9, 10)]
        );
        let mut empty = SeqMap::new();
        empty.set_uid_next(42);
        assert_eq!(ranges(&empty.resolve_uid(&set("1:*"))), vec![(1, 42)]);
    }

    #[test]
    fn resolve_uid_known_filters() {
        let m = map();
        assert_eq!(m.resolve_uid_known(&set("1:*")), vec![3, 5, 7, 8, 20]);
        assert_eq!(m.resolve_uid_known(&set("4:7,100")), vec![5, 7]);
        assert_eq!(m.resolve_uid_known(&set("559:*")), vec![20]);
        assert_eq!(m.resolve_uid_known(&set("9:19")), Vec::<u32>::new());
    }

    #[test]
    fn remove_and_push_renumber() {
        let mut m = map();
        assert_eq!(m.remove(7), Some(3));
        assert_eq!(m.seq_of(8), Some(3));
        assert_eq!(m.remove(7), None);
        assert_eq!(m.push(21), Ok(5));
        assert_eq!(m.push(21), Err(SeqError::NotAscending(21)));
        assert_eq!(m.push(2), Err(SeqError::NotAscending(2)));
        assert_eq!(m.uids(), &[3, 5, 8, 20, 21]);
    }

    #[test]
    fn uid_set_compression() {
        assert_eq!(
            ranges(&to_uid_set(&[5, 1, 2, 3, 9, 10, 3])),
            vec![(1, 3), (5, 5), (9, 10)]
        );
        assert_eq!(ranges(&to_uid_set(&[])), vec![]);
        let m = SeqMap::from_uid_set(&to_uid_set(&[1, 2, 3, 7]));
        assert_eq!(m.uids(), &[1, 2, 3, 7]);
    }

    #[test]
    fn imap_uid_set_keeps_order() {
        let s = to_imap_uid_set(&[4, 5, 6, 2, 9]).expect("set");
        assert_eq!(
            s.0.as_ref(),
            &[
                UidElement::Range(
                    NonZeroU32::MIN.saturating_add(3),
                    NonZeroU32::MIN.saturating_add(5)
                ),
                UidElement::Single(NonZeroU32::MIN.saturating_add(1)),
                UidElement::Single(NonZeroU32::MIN.saturating_add(8)),
            ]
        );
        assert!(to_imap_uid_set(&[]).is_none());
        assert!(to_imap_uid_set(&[0]).is_none());
    }

    #[test]
    fn sequence_set_compression() {
        assert_eq!(to_sequence_set(&[3, 1, 2, 7]), Some(set("1:3,7")));
        assert_eq!(to_sequence_set(&[]), None);
        assert_eq!(to_sequence_set(&[0, 1]), None);
    }

    /// A sequence-set string over numbers 1..=12 and `*`.
    fn seq_set_strategy() -> impl Strategy<Value = String> {
        let item = prop_oneof![
            (1u32..=12).prop_map(|n| n.to_string()),
            Just("*".to_owned()),
            (1u32..=12, 1u32..=12).prop_map(|(a, b)| format!("{a}:{b}")),
            (1u32..=12).prop_map(|a| format!("{a}:*")),
        ];
        prop::collection::vec(item, 1..5).prop_map(|v| v.join(","))
    }

    /// Reference semantics: every number a sequence set names, with `*` = star.
    fn naive(s: &str, star: u32) -> BTreeSet<u32> {
        let num = |t: &str| {
            if t == "*" {
                star
            } else {
                t.parse().expect("num")
            }
        };
        let mut out = BTreeSet::new();
        for part in s.split(',') {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (num(a), num(b)),
                None => (num(part), num(part)),
            };
            out.extend(a.min(b)..=a.max(b));
        }
        out
    }

    proptest! {
        #[test]
        fn resolve_seq_matches_reference(
            uids in prop::collection::btree_set(1u32..200, 0..10),
            s in seq_set_strategy(),
        ) {
            let m = SeqMap::from_uids(uids.iter().copied().collect());
            let want_seqs = naive(&s, m.len());
            let got = m.resolve_seq(&set(&s));
            if want_seqs.iter().all(|&n| n >= 1 && n <= m.len()) {
                let want: Vec<u32> =
                    want_seqs.iter().filter_map(|&n| m.uid_of(n)).collect();
                prop_assert_eq!(got, Ok(want.clone()));
                prop_assert_eq!(m.resolve_seq_lenient(&set(&s)), want);
            } else {
                prop_assert!(got.is_err());
                let want: Vec<u32> = want_seqs.iter().filter_map(|&n| m.uid_of(n)).collect();
                prop_assert_eq!(m.resolve_seq_lenient(&set(&s)), want);
            }
        }

        #[test]
        fn resolve_uid_matches_reference(
            uids in prop::collection::btree_set(1u32..15, 1..10),
            s in seq_set_strategy(),
        ) {
            let m = SeqMap::from_uids(uids.iter().copied().collect());
            let want = naive(&s, m.last_uid().unwrap_or(1));
            let got: BTreeSet<u32> = expand(&m.resolve_uid(&set(&s))).collect();
            prop_assert_eq!(&got, &want);
            let known: Vec<u32> = uids.intersection(&want).copied().collect();
            prop_assert_eq!(m.resolve_uid_known(&set(&s)), known);
        }

        #[test]
        fn uid_set_round_trip(uids in prop::collection::vec(1u32..500, 0..50)) {
            let set = to_uid_set(&uids);
            let want: BTreeSet<u32> = uids.iter().copied().collect();
            let got: Vec<u32> = expand(&set).collect();
            prop_assert_eq!(got, want.iter().copied().collect::<Vec<_>>());
            // Ranges are sorted, disjoint and not adjacent.
            for w in set.ranges.windows(2) {
                prop_assert!(w[0].end.saturating_add(1) < w[1].start);
            }
        }

        #[test]
        fn remove_keeps_seq_of_consistent(
            uids in prop::collection::btree_set(1u32..100, 0..20),
            victims in prop::collection::vec(1u32..100, 0..10),
        ) {
            let mut m = SeqMap::from_uids(uids.iter().copied().collect());
            let mut model: Vec<u32> = uids.iter().copied().collect();
            for v in victims {
                let want = model.iter().position(|&u| u == v).map(|i| i as u32 + 1);
                if want.is_some() {
                    model.retain(|&u| u != v);
                }
                prop_assert_eq!(m.remove(v), want);
            }
            prop_assert_eq!(m.uids(), model.as_slice());
            for (i, &u) in model.iter().enumerate() {
                prop_assert_eq!(m.seq_of(u), Some(i as u32 + 1));
            }
        }
    }
}
