//! MOVE and UID MOVE (RFC 6851): copy and expunge in one storage operation. The COPYUID goes
//! in an untagged OK before the EXPUNGE responses (RFC 6851 §4.3).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::StatusKind;
use imap_codec::imap_types::sequence::SequenceSet;

use super::copy::{copyuid, transfer};
use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::session::updates::write_updates;

/// `[UID] MOVE set mailbox`.
pub async fn run(ctx: &mut Ctx<'_>, set: SequenceSet, mailbox: Mailbox<'static>, uid: bool) -> Result<Reply, FrontendError> {
    let Some(response) = transfer(ctx, &set, &mailbox, uid, true).await? else {
        return Ok(Reply::ok("MOVE completed"));
    };
    if let Some(code) = copyuid(&response) {
        ctx.out.untagged(StatusKind::Ok, Some(code), "moved");
    }
    let condstore = ctx.session.condstore;
    let (_, selected) = super::selected(ctx.session)?;
    let updates = selected.expunge_own(&response.source_uids);
    write_updates(ctx.out, &updates, condstore);
    Ok(Reply::ok("MOVE completed"))
}
