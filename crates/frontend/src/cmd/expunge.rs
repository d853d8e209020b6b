//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1): remove `\Deleted` messages
//! (only those in the UID set for UID EXPUNGE) and announce each with `* n EXPUNGE`.
//!
//! Over more than `write_chunk_messages` messages the work is split into storage calls that each
//! cover at most that many of the session's messages, so no single replicated apply gets
//! expensive for the other tenants. RFC 3501 does not make EXPUNGE atomic (every removal is its
//! own `* n EXPUNGE`). A plain EXPUNGE becomes UID EXPUNGEs over contiguous UID ranges that
//! together cover every UID ([`expunge_ranges`]), so it still removes messages the session has
//! not seen yet. If a call fails, the removals of the calls before it are announced before `NO`.

use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::limits::expunge_ranges;
use crate::seqset::to_uid_set;
use crate::session::updates::write_updates;

/// `EXPUNGE` (`uids = None`) or `UID EXPUNGE set`.
pub async fn run(ctx: &mut Ctx<'_>, uids: Option<SequenceSet>) -> Result<Reply, FrontendError> {
    let condstore = ctx.session.condstore;
    let (user, selected) = super::selected(ctx.session)?;
    if selected.read_only {
        return Err(FrontendError::ReadOnly);
    }
    let chunk = ctx.shared.config.write_chunk_messages.max(1);
    // One storage call per entry; `None` is the whole mailbox in one call.
    let calls: Vec<Option<proto::UidSet>> = match &uids {
        Some(set) => {
            let known = selected.map.resolve_uid_known(set);
            if known.is_empty() {
                return Ok(Reply::ok("EXPUNGE completed"));
            }
            known.chunks(chunk).map(|part| Some(to_uid_set(part))).collect()
        }
        None if selected.map.uids().len() <= chunk => vec![None],
        None => expunge_ranges(selected.map.uids(), chunk).into_iter().map(Some).collect(),
    };
    for uid_set in calls {
        let request = proto::ExpungeRequest {
            ctx: Some(user.ctx.clone()),
            mailbox_id: selected.mailbox_id,
            uidvalidity: selected.uidvalidity,
            has_uids: uid_set.is_some(),
            uids: uid_set,
        };
        let response = ctx.shared.storage.expunge(request).await?;
        let updates = selected.expunge_own(&response.expunged);
        write_updates(ctx.out, &updates, condstore);
    }
    Ok(Reply::ok("EXPUNGE completed"))
}
