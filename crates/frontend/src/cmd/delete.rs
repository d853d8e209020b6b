//! DELETE (RFC 3501 §6.3.4). Deleting the selected mailbox also leaves the selected state,
//! since the session's view of it is gone.

use imap_codec::imap_types::mailbox::Mailbox;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::decode_mailbox;

/// `DELETE mailbox`.
pub async fn run(ctx: &mut Ctx<'_>, mailbox: Mailbox<'static>) -> Result<Reply, FrontendError> {
    let name = decode_mailbox(&mailbox)?;
    let user = ctx.user()?;
    ctx.shared.storage.delete_mailbox(&user.ctx, &name).await?;
    if ctx.session.selected().is_some_and(|s| s.name == name) {
        ctx.session.deselect();
    }
    Ok(Reply::ok("DELETE completed"))
}
