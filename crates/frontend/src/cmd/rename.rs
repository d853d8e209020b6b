//! RENAME (RFC 3501 §6.3.5). Mailbox ids and UIDVALIDITY survive a rename, so a selected
//! mailbox stays selected; only the name the session remembers changes.

use imap_codec::imap_types::mailbox::Mailbox;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::{DELIMITER, decode_mailbox, decode_new_mailbox};

/// `RENAME from to`.
pub async fn run(ctx: &mut Ctx<'_>, from: Mailbox<'static>, to: Mailbox<'static>) -> Result<Reply, FrontendError> {
    let from = decode_mailbox(&from)?;
    let to = decode_new_mailbox(&to)?;
    let user = ctx.user()?;
    ctx.shared.storage.rename_mailbox(&user.ctx, &from, &to).await?;
    // RFC 3501 §6.3.5: renaming INBOX moves its messages and leaves INBOX in place.
    if from != "INBOX"
        && let Some(selected) = ctx.session.selected_mut()
    {
        if selected.name == from {
            selected.name = to;
        } else if let Some(rest) = selected.name.strip_prefix(&format!("{from}{DELIMITER}")) {
            selected.name = format!("{to}{DELIMITER}{rest}");
        }
    }
    Ok(Reply::ok("RENAME completed"))
}
