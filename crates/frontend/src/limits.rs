//! Bounds on what one IMAP command may ask of the storage tier.
//!
//! The storage tier enforces its own bounds deterministically in the replicated model
//! (`mailraft_model::limits`), which this crate does not link; the constants here mirror them so
//! that a command over a bound is refused before a storage call, and a test checks they agree.
//! Every tenant of a Raft group shares one apply loop, so commands that need not be atomic are
//! split into calls of at most `write_chunk_messages` messages (see [`expunge_ranges`]).
//!
//! A call of that many messages can still be too big: the storage also refuses a command whose
//! records exceed a byte bound (`mailraft_model::limits::MAX_COMMAND_BYTES`, 64 MiB), and 5,000
//! messages with 256 long keywords each are well over it. A refusal caused by a size bound comes
//! as splittable (`mailraft-split`, [`FrontendError::TooBig`]): such a part is split in halves and retried
//! ([`smaller_part`]); only a single message refused is reported. A bound no split can help (a
//! mailbox's keyword cap) comes as `LIMIT` and is reported at once, after one call. Both reach
//! the client as `NO [LIMIT]` (RFC 5530 §3).

use mailraft_proto::{UidRange, UidSet};

use crate::error::FrontendError;

/// Keywords a mailbox may hold (`mailraft_model::limits::MAX_MAILBOX_KEYWORDS`). Once a mailbox
/// has this many, PERMANENTFLAGS no longer offers `\*` (RFC 3501 §7.1: clients cannot create
/// new keywords) and a command that would add one gets `NO [LIMIT]`.
pub const MAX_MAILBOX_KEYWORDS: usize = 256;

/// Most messages one COPY or MOVE may name (`mailraft_model::limits::MAX_MESSAGES_PER_COMMAND`).
/// RFC 3501 §6.4.7 requires a failed COPY to leave the destination unchanged, so COPY is one
/// storage call and cannot be split; MOVE shares it, so one MOVE answers with one COPYUID.
pub const MAX_COPY_MESSAGES: usize = 100_000;

/// `NO [LIMIT]` for a COPY or MOVE of `count` messages over [`MAX_COPY_MESSAGES`].
pub fn check_copy(count: usize) -> Result<(), FrontendError> {
    if count > MAX_COPY_MESSAGES {
        return Err(FrontendError::Limit(format!(
            "COPY and MOVE take at most {MAX_COPY_MESSAGES} messages at once, this one names {count}"
        )));
    }
    Ok(())
}

/// After a storage call over `len` messages was refused with `error`: the smaller part size to
/// retry with, or `None` when the refusal stands. Only a splittable `LIMIT` is worth retrying smaller (the
/// storage sends it only for size bounds, which a smaller part can meet), and it is safe to: a
/// command the storage refuses for a bound changes nothing (the model checks its bounds before
/// writing, or discards the command's writes), so no message of the part was touched. Halving
/// reaches one message after log2(len) refusals. A plain `LIMIT` (a mailbox's keyword cap) would
/// refuse every part alike, so it stands after its one call.
pub fn smaller_part(len: usize, error: &FrontendError) -> Option<usize> {
    (matches!(error, FrontendError::TooBig(_)) && len > 1).then_some(len / 2)
}

/// How often one plain EXPUNGE may learn new messages because its open range (the UIDs past
/// every known one) was too big for one call. Each refresh makes the new messages known so the
/// split can go on over them; a mailbox that receives more than a call's worth between every
/// two calls would otherwise keep one EXPUNGE going forever. Past this many, the refusal stands.
pub const MAX_EXPUNGE_TAIL_REFRESHES: usize = 4;

/// The next UID range of a plain EXPUNGE split over the session's known UIDs: from `start` to
/// the last of the next `chunk` UIDs of `rest` (ascending). Returns the range, how many known
/// UIDs it holds, and the first UID after it; `None` there means the range reaches `u32::MAX`
/// (no known UIDs were left, so it holds the messages the session does not know yet): the
/// split is complete.
pub fn next_expunge_range(start: u32, rest: &[u32], chunk: usize) -> (UidSet, usize, Option<u32>) {
    let part = &rest[..chunk.max(1).min(rest.len())];
    let (end, next) = match part.last() {
        Some(&end) if end < u32::MAX => (end, Some(end + 1)),
        _ => (u32::MAX, None),
    };
    (UidSet { ranges: vec![UidRange { start, end }] }, part.len(), next)
}

/// UID ranges covering every UID from 1 to `u32::MAX`, each holding at most `chunk` of the
/// session's `known` UIDs (ascending): EXPUNGE over all of them removes exactly what one
/// EXPUNGE of the whole mailbox would (RFC 3501 §6.4.3). Messages the session does not know yet
/// have UIDs above all known ones (UIDs only grow), so they fall into the last, open range.
pub fn expunge_ranges(known: &[u32], chunk: usize) -> Vec<UidSet> {
    let mut out = Vec::with_capacity(known.len() / chunk.max(1) + 1);
    let (mut start, mut rest) = (1u32, known);
    loop {
        let (set, held, next) = next_expunge_range(start, rest, chunk);
        out.push(set);
        let Some(next) = next else { return out };
        start = next;
        rest = &rest[held..];
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bounds_match_the_replicated_model() {
        assert_eq!(MAX_MAILBOX_KEYWORDS, mailraft_model::limits::MAX_MAILBOX_KEYWORDS);
        assert_eq!(MAX_COPY_MESSAGES, mailraft_model::limits::MAX_MESSAGES_PER_COMMAND);
    }

    #[test]
    fn copy_over_the_bound_is_refused() {
        assert!(check_copy(MAX_COPY_MESSAGES).is_ok());
        assert!(matches!(check_copy(MAX_COPY_MESSAGES + 1), Err(FrontendError::Limit(_))));
    }

    #[test]
    fn only_too_big_over_several_messages_is_retried_smaller() {
        let too_big = FrontendError::TooBig("a command may write at most 64 MiB of records".into());
        assert_eq!(smaller_part(5000, &too_big), Some(2500));
        assert_eq!(smaller_part(3, &too_big), Some(1));
        assert_eq!(smaller_part(2, &too_big), Some(1));
        assert_eq!(smaller_part(1, &too_big), None, "one message refused: the refusal stands");
        assert_eq!(smaller_part(0, &too_big), None);
        let cap = FrontendError::Limit("the mailbox has 256 keywords".into());
        assert_eq!(smaller_part(5000, &cap), None, "no split helps against a plain LIMIT");
        assert_eq!(smaller_part(5000, &FrontendError::Internal("x".into())), None);
        assert_eq!(smaller_part(5000, &FrontendError::Timeout), None);
    }

    #[test]
    fn ranges_of_a_small_mailbox() {
        let r = |ranges: Vec<UidSet>| ranges.iter().map(|s| (s.ranges[0].start, s.ranges[0].end)).collect::<Vec<_>>();
        assert_eq!(r(expunge_ranges(&[], 3)), [(1, u32::MAX)]);
        assert_eq!(r(expunge_ranges(&[2, 5, 9, 10], 2)), [(1, 5), (6, 10), (11, u32::MAX)]);
        assert_eq!(r(expunge_ranges(&[1, u32::MAX], 1)), [(1, 1), (2, u32::MAX)]);
    }

    proptest! {
        /// The ranges are contiguous, cover 1..=u32::MAX, and hold at most `chunk` known UIDs each.
        #[test]
        fn ranges_cover_everything_in_bounded_pieces(
            mut known in proptest::collection::vec(1..=u32::MAX, 0..200),
            chunk in 1usize..20,
        ) {
            known.sort_unstable();
            known.dedup();
            let sets = expunge_ranges(&known, chunk);
            let mut next = 1u64;
            for set in &sets {
                prop_assert_eq!(set.ranges.len(), 1);
                let r = &set.ranges[0];
                prop_assert_eq!(u64::from(r.start), next);
                prop_assert!(r.start <= r.end);
                let inside = known.iter().filter(|&&u| r.start <= u && u <= r.end).count();
                prop_assert!(inside <= chunk, "{} known UIDs in {:?}", inside, r);
                next = u64::from(r.end) + 1;
            }
            prop_assert_eq!(next, u64::from(u32::MAX) + 1);
        }
    }
}
