//! CREATE (RFC 3501 §6.3.3). A trailing delimiter only declares that the client intends to
//! create children, so it is stripped; INBOX always exists.

use imap_codec::imap_types::mailbox::Mailbox;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::{DELIMITER, decode_new_mailbox};

/// `CREATE mailbox`.
pub async fn run(ctx: &mut Ctx<'_>, mailbox: Mailbox<'static>) -> Result<Reply, FrontendError> {
    let mut name = decode_new_mailbox(&mailbox)?;
    while name.ends_with(DELIMITER) {
        name.pop();
    }
    if name.is_empty() {
        return Err(FrontendError::BadArguments("empty mailbox name".into()));
    }
    if name == "INBOX" {
        return Err(FrontendError::AlreadyExists("INBOX always exists".into()));
    }
    let user = ctx.user()?;
    ctx.shared.storage.create_mailbox(&user.ctx, &name).await?;
    Ok(Reply::ok("CREATE completed"))
}
