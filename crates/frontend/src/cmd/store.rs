//! STORE and UID STORE (RFC 3501 §6.4.6, §6.4.8). Without `.SILENT` every matched message's
//! new flags are returned as `* n FETCH (UID u FLAGS (...))`; the changes are remembered so the
//! next change poll does not report them again.

use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::seqset::to_uid_set;
use crate::session::updates::flags_fetch;

/// `[UID] STORE set (+|-)FLAGS[.SILENT] (flags)`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    set: SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: Vec<Flag<'static>>,
    uid: bool,
) -> Result<Reply, FrontendError> {
    let (user, selected) = super::selected(ctx.session)?;
    if selected.read_only {
        return Err(FrontendError::ReadOnly);
    }
    let uids = super::fetch::resolve(&selected.map, &set, uid)?;
    if uids.is_empty() {
        return Ok(Reply::ok("STORE completed"));
    }
    let flags = crate::flags::to_wire_list(&flags).map_err(|e| FrontendError::BadArguments(e.to_string()))?;
    let op = match kind {
        StoreType::Replace => proto::StoreOp::StoreReplace,
        StoreType::Add => proto::StoreOp::StoreAdd,
        StoreType::Remove => proto::StoreOp::StoreRemove,
    };
    let request = proto::StoreRequest {
        ctx: Some(user.ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        uids: Some(to_uid_set(&uids)),
        op: op as i32,
        flags,
        unchanged_since: 0,
    };
    let result = ctx.shared.storage.store(request).await?;
    selected.note_own_changes(&result.updated);
    if response == StoreResponse::Answer {
        let mut messages: Vec<&proto::MessageFlags> = result.updated.iter().chain(&result.unchanged).collect();
        messages.sort_by_key(|m| m.uid);
        for message in messages {
            if let Some(data) = selected.map.seq_of(message.uid).and_then(|seq| flags_fetch(seq, message.uid, &message.flags)) {
                ctx.out.data(data);
            }
        }
    }
    Ok(Reply::ok("STORE completed"))
}
