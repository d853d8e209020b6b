//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1): remove `\Deleted` messages
//! (only those in the UID set for UID EXPUNGE) and announce each with `* n EXPUNGE`.

use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::seqset::to_uid_set;
use crate::session::updates::write_updates;

/// `EXPUNGE` (`uids = None`) or `UID EXPUNGE set`.
pub async fn run(ctx: &mut Ctx<'_>, uids: Option<SequenceSet>) -> Result<Reply, FrontendError> {
    let (user, selected) = super::selected(ctx.session)?;
    if selected.read_only {
        return Err(FrontendError::ReadOnly);
    }
    let (uid_set, has_uids) = match &uids {
        Some(set) => {
            let known = selected.map.resolve_uid_known(set);
            if known.is_empty() {
                return Ok(Reply::ok("EXPUNGE completed"));
            }
            (Some(to_uid_set(&known)), true)
        }
        None => (None, false),
    };
    let request = proto::ExpungeRequest {
        ctx: Some(user.ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        uids: uid_set,
        has_uids,
    };
    let response = ctx.shared.storage.expunge(request).await?;
    let updates = selected.expunge_own(&response.expunged);
    write_updates(ctx.out, &updates);
    Ok(Reply::ok("EXPUNGE completed"))
}
