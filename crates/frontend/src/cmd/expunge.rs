//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1): remove `\Deleted` messages
//! (only those in the UID set for UID EXPUNGE) and announce each with `* n EXPUNGE`.
//!
//! Over more than `write_chunk_messages` messages the work is split into storage calls that each
//! cover at most that many of the session's messages, so no single replicated apply gets
//! expensive for the other tenants. RFC 3501 does not make EXPUNGE atomic (every removal is its
//! own `* n EXPUNGE`). A plain EXPUNGE becomes UID EXPUNGEs over contiguous UID ranges that
//! together cover every UID ([`next_expunge_range`]), so it still removes messages the session
//! has not seen yet. If a call fails, the removals of the calls before it are announced before
//! `NO`.
//!
//! A part the storage refuses as splittable (`LIMIT` with `mailraft-split`: its byte or message
//! bound on one command) removed nothing, so it is retried in halves and the rest keeps the
//! smaller size ([`smaller_part`]); each call gets its own request id (`Storage::expunge`).
//! A plain `LIMIT` is reported at once.
//! The open range past the last known UID holds messages the session does not know yet, so it
//! cannot be halved by count: when it is too big, the session first learns them through its
//! normal change poll (`updates::poll`; RFC 3501 §5.2 lets a server send `EXISTS` at any time,
//! and §7.4.1 lets EXPUNGE announce expunges), which makes them known UIDs, and the split goes
//! on over them. At most [`MAX_EXPUNGE_TAIL_REFRESHES`] times per command: a mailbox that grows
//! faster than EXPUNGE can split it gets the refusal instead of an EXPUNGE that never ends.

use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::limits::{MAX_EXPUNGE_TAIL_REFRESHES, next_expunge_range, smaller_part};
use crate::response::Out;
use crate::seqset::to_uid_set;
use crate::session::updates::{self, write_updates};
use crate::session::{Selected, User};
use crate::storage::Storage;

/// `EXPUNGE` (`uids = None`) or `UID EXPUNGE set`.
pub async fn run(ctx: &mut Ctx<'_>, uids: Option<SequenceSet>) -> Result<Reply, FrontendError> {
    let condstore = ctx.session.condstore;
    let storage = &ctx.shared.storage;
    let mut size = ctx.shared.config.write_chunk_messages.max(1);
    let (user, selected) = super::selected(ctx.session)?;
    if selected.read_only {
        return Err(FrontendError::ReadOnly);
    }
    if let Some(set) = &uids {
        let known = selected.map.resolve_uid_known(set);
        let mut rest: &[u32] = &known;
        while !rest.is_empty() {
            let part = &rest[..size.min(rest.len())];
            match expunge(storage, user, selected, ctx.out, condstore, Some(to_uid_set(part))).await {
                Ok(()) => rest = &rest[part.len()..],
                Err(error) => size = smaller_part(part.len(), &error).ok_or(error)?,
            }
        }
        return Ok(Reply::ok("EXPUNGE completed"));
    }
    // A copy: the view shrinks as the calls succeed.
    let mut known = selected.map.uids().to_vec();
    if known.len() <= size {
        // The whole mailbox in one call.
        match expunge(storage, user, selected, ctx.out, condstore, None).await {
            Ok(()) => return Ok(Reply::ok("EXPUNGE completed")),
            Err(error) => match smaller_part(known.len(), &error) {
                Some(smaller) => size = smaller,
                // Too few known messages to halve: the unseen ones are too many (below).
                None if matches!(error, FrontendError::TooBig(_)) => {}
                None => return Err(error),
            },
        }
    }
    // `known[at..]` are the known UIDs from `start` on.
    let (mut start, mut at, mut refreshes) = (1u32, 0usize, 0usize);
    loop {
        let (user, selected) = super::selected(ctx.session)?;
        let (range, held, next) = next_expunge_range(start, &known[at..], size);
        let error = match expunge(storage, user, selected, ctx.out, condstore, Some(range)).await {
            Ok(()) => {
                let Some(next) = next else { break };
                start = next;
                at += held;
                continue;
            }
            Err(error) => error,
        };
        // The open range holds what the session does not know yet: learn it first (halving the
        // known part alone could not make it smaller), then split over it at full size again.
        let tail = next.is_none() && matches!(error, FrontendError::TooBig(_));
        if tail && refreshes < MAX_EXPUNGE_TAIL_REFRESHES {
            refreshes += 1;
            let last = selected.map.last_uid();
            // A poll that fails leaves the refusal as the answer (the client learns the rest on
            // its next command).
            if updates::poll(storage, ctx.session, ctx.out, ctx.io, true).await.is_err() {
                return Err(error);
            }
            let (_, selected) = super::selected(ctx.session)?;
            if selected.map.last_uid() > last {
                known = selected.map.uids().iter().copied().filter(|&uid| uid >= start).collect();
                at = 0;
                size = ctx.shared.config.write_chunk_messages.max(1);
                continue;
            }
        }
        match smaller_part(held, &error) {
            Some(smaller) => size = smaller,
            // A refusal no split helps, one message refused, or a mailbox that grows faster than
            // EXPUNGE can learn it.
            None => return Err(error),
        }
    }
    Ok(Reply::ok("EXPUNGE completed"))
}

/// One storage call over `uids` (`None`: the whole mailbox); announces what it removed.
async fn expunge(
    storage: &Storage,
    user: &User,
    selected: &mut Selected,
    out: &mut Out,
    condstore: bool,
    uids: Option<proto::UidSet>,
) -> Result<(), FrontendError> {
    let request = proto::ExpungeRequest {
        ctx: Some(user.ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        has_uids: uids.is_some(),
        uids,
    };
    let response = storage.expunge(request).await?;
    let updates = selected.expunge_own(&response.expunged);
    write_updates(out, &updates, condstore);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::limits::MAX_EXPUNGE_TAIL_REFRESHES;
    use crate::storage::mock::{Client, Mock};

    async fn selected(n: u32, limit: usize) -> Client {
        let mock = Mock::default();
        *mock.uids.lock().unwrap() = (1..=n).collect();
        *mock.write_limit.lock().unwrap() = Some(limit);
        let mut client = Client::logged_in(mock, |_| {}).await;
        let (_, done) = client.run("SELECT INBOX").await;
        assert!(done.contains(" OK "), "{done}");
        client
    }

    /// The whole-mailbox call and then a part of 6 are refused for their size: EXPUNGE goes on
    /// in UID ranges of 3 known messages and still removes everything (the mock treats every
    /// message as `\Deleted`).
    #[tokio::test]
    async fn a_part_refused_for_its_size_is_retried_in_halves() {
        let mut client = selected(12, 3).await;
        let (lines, done) = client.run("EXPUNGE").await;
        assert!(done.ends_with("OK EXPUNGE completed"), "{done}");
        assert_eq!(lines.iter().filter(|l| l.ends_with(" EXPUNGE")).count(), 12, "{lines:?}");
        let mock = &client.server.mock;
        assert!(mock.uids.lock().unwrap().is_empty());
        // Whole mailbox and 1:6 refused; 1:3, 4:6, 7:9, 10:12 and 13:* done.
        assert_eq!(mock.calls("expunge").len(), 2 + 5);
        let (lines, done) = client.run("NOOP").await;
        assert!(done.contains(" OK ") && lines.is_empty(), "{lines:?} {done}");
    }

    #[tokio::test]
    async fn uid_expunge_splits_too_and_one_message_refused_is_limit() {
        let mut client = selected(12, 2).await;
        let (lines, done) = client.run("UID EXPUNGE 3:9").await;
        assert!(done.ends_with("OK EXPUNGE completed"), "{done}");
        assert_eq!(lines.iter().filter(|l| l.ends_with(" EXPUNGE")).count(), 7, "{lines:?}");
        assert_eq!(*client.server.mock.uids.lock().unwrap(), [1, 2, 10, 11, 12]);
        *client.server.mock.write_limit.lock().unwrap() = Some(0);
        let (lines, done) = client.run("EXPUNGE").await;
        assert!(done.contains(" NO [LIMIT] "), "{done}");
        assert!(lines.is_empty(), "{lines:?}");
        assert_eq!(client.server.mock.uids.lock().unwrap().len(), 5);
    }

    /// `known` messages selected, then `unseen` more arrive behind the session's back, more
    /// than one call may take (3): the open range is refused for its size, the session learns
    /// the new messages (EXISTS) and splits over them, and every message goes, the unseen ones
    /// too (RFC 3501 §6.4.3; the mock treats every message as `\Deleted`).
    async fn unseen_messages_are_learned_and_split(known: u32, unseen: u32) {
        let mut client = selected(known, 3).await;
        let mock = client.server.mock.clone();
        mock.uids.lock().unwrap().extend(known + 1..=known + unseen);
        let before = mock.calls("expunge").len();
        let (lines, done) = client.run("EXPUNGE").await;
        assert!(done.ends_with("OK EXPUNGE completed"), "{known}+{unseen}: {done} {lines:?}");
        assert!(mock.uids.lock().unwrap().is_empty(), "{known}+{unseen}: {lines:?}");
        // Once learned, the new messages go in parts as large as the limit allows (halved from
        // the full size again), not one call each.
        let calls = mock.calls("expunge").len() - before;
        assert!(calls <= (known + unseen) as usize / 2 + 6, "{known}+{unseen}: {calls} calls");
        let expunges: Vec<usize> =
            lines.iter().enumerate().filter(|(_, l)| l.ends_with(" EXPUNGE")).map(|(i, _)| i).collect();
        assert_eq!(expunges.len() as u32, known + unseen, "{lines:?}");
        // The new messages are announced before their expunges (they are numbered from 1 again).
        let exists = lines.iter().position(|l| *l == format!("* {unseen} EXISTS"));
        assert!(exists.is_some_and(|i| i < expunges[known as usize]), "{lines:?}");
        let (lines, done) = client.run("NOOP").await;
        assert!(done.contains(" OK ") && lines.is_empty(), "{lines:?} {done}");
    }

    #[tokio::test]
    async fn unseen_messages_past_the_known_ones_are_split_too() {
        unseen_messages_are_learned_and_split(4, 8).await;
    }

    /// The whole-mailbox call is refused with too few known messages to halve.
    #[tokio::test]
    async fn unseen_messages_in_an_empty_view_are_split_too() {
        unseen_messages_are_learned_and_split(0, 7).await;
        unseen_messages_are_learned_and_split(1, 7).await;
    }

    /// A mailbox that gets more than a call's worth of messages at every refresh: the EXPUNGE
    /// refreshes a bounded number of times, then reports the refusal; what it removed was
    /// announced.
    #[tokio::test]
    async fn a_mailbox_growing_forever_ends_in_limit() {
        let mut client = selected(4, 3).await;
        let mock = client.server.mock.clone();
        mock.uids.lock().unwrap().extend(5..=12);
        mock.grow_on_changes.store(5, Ordering::SeqCst);
        let polls = mock.calls("changes").len();
        let (lines, done) = client.run("EXPUNGE").await;
        assert!(done.contains(" NO [LIMIT] "), "{done}");
        // Each refresh and the poll before the tagged reply.
        assert_eq!(mock.calls("changes").len() - polls, MAX_EXPUNGE_TAIL_REFRESHES + 1);
        let expunged = 4 + 8 + 5 * (MAX_EXPUNGE_TAIL_REFRESHES - 1);
        assert_eq!(lines.iter().filter(|l| l.ends_with(" EXPUNGE")).count(), expunged, "{lines:?}");
    }
}
