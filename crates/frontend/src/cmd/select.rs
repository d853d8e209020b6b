//! SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2).
//!
//! The previous selection ends first, even if the new one fails (§6.3.1). The responses are the
//! ones §6.3.1 requires: FLAGS, EXISTS, RECENT (always 0: this server does not track `\Recent`),
//! UNSEEN (sequence number of the first unseen message), PERMANENTFLAGS, UIDNEXT, UIDVALIDITY, and
//! the tagged OK with READ-WRITE or READ-ONLY. Once CONDSTORE is on (the `(CONDSTORE)` parameter,
//! RFC 7162 §3.1.8, or an earlier enabling command) `OK [HIGHESTMODSEQ n]` follows (§3.1.2.1).

use std::num::NonZeroU32;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, Data, StatusKind};

use super::{Ctx, Reply, condstore};
use crate::error::FrontendError;
use crate::names::decode_mailbox;
use crate::session::Selected;

/// `SELECT mailbox [(params)]` (`read_only = false`) or `EXAMINE mailbox [(params)]`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    mailbox: Mailbox<'static>,
    parameters: &[SelectParameter],
    read_only: bool,
) -> Result<Reply, FrontendError> {
    // RFC 7162 §3.2.5: QRESYNC without ENABLE QRESYNC (which this server never grants) is BAD,
    // before anything changes: a BAD command leaves the current selection alone.
    if parameters.iter().any(|p| matches!(p, SelectParameter::QResync { .. })) {
        return Err(FrontendError::BadArguments("QRESYNC is not enabled".into()));
    }
    let name = decode_mailbox(&mailbox)?;
    ctx.session.deselect();
    let user = ctx.user()?;
    let response = ctx.shared.storage.select(&user.ctx, &name).await?;
    let status = response.status.clone().unwrap_or_default();
    let selected = Selected::new(name, &response, read_only);

    let out = &mut *ctx.out;
    out.data(Data::Flags(crate::flags::mailbox_flags(&status.keywords)));
    out.data(Data::Exists(selected.exists()));
    out.data(Data::Recent(0));
    if let Some(seq) = selected.map.seq_of(response.first_unseen_uid).and_then(NonZeroU32::new) {
        out.untagged(StatusKind::Ok, Some(Code::Unseen(seq)), "first unseen message");
    }
    // §6.3.2: a read-only mailbox has no permanent flags.
    let permanent = if read_only { Vec::new() } else { crate::flags::permanent_flags(&status.keywords) };
    out.untagged(StatusKind::Ok, Some(Code::PermanentFlags(permanent)), "flags permitted");
    if let Some(uidnext) = NonZeroU32::new(status.uidnext) {
        out.untagged(StatusKind::Ok, Some(Code::UidNext(uidnext)), "predicted next UID");
    }
    if let Some(uidvalidity) = NonZeroU32::new(status.uidvalidity) {
        out.untagged(StatusKind::Ok, Some(Code::UidValidity(uidvalidity)), "UIDs valid");
    }
    if ctx.session.condstore {
        out.untagged(StatusKind::Ok, Some(condstore::highest_modseq_code(status.highest_modseq)), "highest");
    }
    ctx.session.select(selected);
    Ok(if read_only {
        Reply::ok_code(Some(Code::ReadOnly), "EXAMINE completed")
    } else {
        Reply::ok_code(Some(Code::ReadWrite), "SELECT completed")
    })
}
