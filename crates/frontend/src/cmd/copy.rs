//! COPY and UID COPY (RFC 3501 §6.4.7) with COPYUID (RFC 4315 §3), and the shared transfer
//! used by MOVE. Bytes are never copied: the storage references the same blob.

use std::num::NonZeroU32;

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Code;
use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::decode_mailbox;
use crate::seqset::{to_imap_uid_set, to_uid_set};

/// `[UID] COPY set mailbox`.
pub async fn run(ctx: &mut Ctx<'_>, set: SequenceSet, mailbox: Mailbox<'static>, uid: bool) -> Result<Reply, FrontendError> {
    match transfer(ctx, &set, &mailbox, uid, false).await? {
        Some(response) => Ok(Reply::ok_code(copyuid(&response), "COPY completed")),
        None => Ok(Reply::ok("COPY completed")),
    }
}

/// Copies (or moves) the messages of `set` to `mailbox`; `None` if the set named no message.
pub async fn transfer(
    ctx: &mut Ctx<'_>,
    set: &SequenceSet,
    mailbox: &Mailbox<'_>,
    uid: bool,
    is_move: bool,
) -> Result<Option<proto::CopyResponse>, FrontendError> {
    let destination = decode_mailbox(mailbox)?;
    let (user, selected) = super::selected(ctx.session)?;
    if is_move && selected.read_only {
        return Err(FrontendError::ReadOnly);
    }
    let uids = super::fetch::resolve(&selected.map, set, uid)?;
    if uids.is_empty() {
        return Ok(None);
    }
    // One all-or-nothing storage call (RFC 3501 §6.4.7), so a bounded one.
    crate::limits::check_copy(uids.len())?;
    let request = proto::CopyRequest {
        ctx: Some(user.ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        uids: Some(to_uid_set(&uids)),
        destination,
        is_move,
    };
    let response = ctx.shared.storage.copy(request).await.map_err(|e| match e {
        // RFC 3501 §6.4.7: a missing destination gets TRYCREATE.
        FrontendError::NonExistent(m) => FrontendError::TryCreate(m),
        other => other,
    })?;
    Ok(Some(response))
}

/// `[COPYUID uidvalidity source dest]`, if the storage returned usable UIDs.
pub fn copyuid(response: &proto::CopyResponse) -> Option<Code<'static>> {
    Some(Code::CopyUid {
        uid_validity: NonZeroU32::new(response.dest_uidvalidity)?,
        source: to_imap_uid_set(&response.source_uids)?,
        destination: to_imap_uid_set(&response.dest_uids)?,
    })
}
