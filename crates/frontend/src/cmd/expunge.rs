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
//! A part the storage refuses with `LIMIT` (its byte bound on one command) removed nothing, so
//! it is retried in halves and the rest keeps the smaller size ([`smaller_part`]); each call
//! gets its own request id (`Storage::expunge`). Only the open range past the last known UID
//! cannot be split further: it holds messages the session does not know yet.

use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::limits::{next_expunge_range, smaller_part};
use crate::response::Out;
use crate::seqset::to_uid_set;
use crate::session::updates::write_updates;
use crate::session::{Selected, User};
use crate::storage::Storage;

/// `EXPUNGE` (`uids = None`) or `UID EXPUNGE set`.
pub async fn run(ctx: &mut Ctx<'_>, uids: Option<SequenceSet>) -> Result<Reply, FrontendError> {
    let condstore = ctx.session.condstore;
    let (user, selected) = super::selected(ctx.session)?;
    if selected.read_only {
        return Err(FrontendError::ReadOnly);
    }
    let storage = &ctx.shared.storage;
    let mut call = Call { storage, user, out: &mut *ctx.out, condstore };
    let mut size = ctx.shared.config.write_chunk_messages.max(1);
    if let Some(set) = &uids {
        let known = selected.map.resolve_uid_known(set);
        let mut rest: &[u32] = &known;
        while !rest.is_empty() {
            let part = &rest[..size.min(rest.len())];
            match call.expunge(selected, Some(to_uid_set(part))).await {
                Ok(()) => rest = &rest[part.len()..],
                Err(error) => size = smaller_part(part.len(), &error).ok_or(error)?,
            }
        }
        return Ok(Reply::ok("EXPUNGE completed"));
    }
    // A copy: the view shrinks as the calls succeed.
    let known = selected.map.uids().to_vec();
    if known.len() <= size {
        // The whole mailbox in one call.
        match call.expunge(selected, None).await {
            Ok(()) => return Ok(Reply::ok("EXPUNGE completed")),
            Err(error) => size = smaller_part(known.len(), &error).ok_or(error)?,
        }
    }
    let (mut start, mut rest) = (1u32, &known[..]);
    loop {
        let (range, held, next) = next_expunge_range(start, rest, size);
        match call.expunge(selected, Some(range)).await {
            Ok(()) => {
                let Some(next) = next else { break };
                start = next;
                rest = &rest[held..];
            }
            Err(error) => size = smaller_part(held, &error).ok_or(error)?,
        }
    }
    Ok(Reply::ok("EXPUNGE completed"))
}

/// What every storage call of one EXPUNGE shares.
struct Call<'a> {
    storage: &'a Storage,
    user: &'a User,
    out: &'a mut Out,
    condstore: bool,
}

impl Call<'_> {
    /// One storage call over `uids` (`None`: the whole mailbox); announces what it removed.
    async fn expunge(&mut self, selected: &mut Selected, uids: Option<proto::UidSet>) -> Result<(), FrontendError> {
        let request = proto::ExpungeRequest {
            ctx: Some(self.user.ctx.clone()),
            mailbox_id: selected.mailbox_id,
            uidvalidity: selected.uidvalidity,
            has_uids: uids.is_some(),
            uids,
        };
        let response = self.storage.expunge(request).await?;
        let updates = selected.expunge_own(&response.expunged);
        write_updates(self.out, &updates, self.condstore);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
}
