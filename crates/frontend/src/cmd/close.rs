//! CLOSE (RFC 3501 §6.4.2): silently expunge `\Deleted` messages if the mailbox is read-write,
//! then leave the selected state. No EXPUNGE responses are sent; the state changes even if the
//! expunge fails.

use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;

/// `CLOSE`.
pub async fn run(ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    let request = match ctx.session.user_and_selected() {
        Some((user, selected)) if !selected.read_only => Some(proto::ExpungeRequest {
            ctx: Some(user.ctx.clone()),
            mailbox_id: selected.mailbox_id,
            uidvalidity: selected.uidvalidity,
            uids: None,
            has_uids: false,
        }),
        _ => None,
    };
    ctx.session.deselect();
    if let Some(request) = request {
        ctx.shared.storage.expunge(request).await?;
    }
    Ok(Reply::ok("CLOSE completed"))
}
