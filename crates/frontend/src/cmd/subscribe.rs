//! SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7).

use imap_codec::imap_types::mailbox::Mailbox;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::{decode_mailbox, decode_new_mailbox};

/// `SUBSCRIBE mailbox` (`subscribe = true`) or `UNSUBSCRIBE mailbox`.
pub async fn run(ctx: &mut Ctx<'_>, mailbox: Mailbox<'static>, subscribe: bool) -> Result<Reply, FrontendError> {
    // A name that cannot exist cannot be subscribed (NO [CANNOT]); unsubscribing it finds
    // nothing (NO [NONEXISTENT]). Neither is a syntax error (RFC 3501 §9 mailbox = astring).
    let name = if subscribe { decode_new_mailbox(&mailbox)? } else { decode_mailbox(&mailbox)? };
    let user = ctx.user()?;
    ctx.shared.storage.subscribe(&user.ctx, &name, subscribe).await?;
    Ok(Reply::ok(if subscribe { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }))
}
