//! STORE and UID STORE (RFC 3501 §6.4.6, §6.4.8). Without `.SILENT` every matched message's
//! new flags are returned as `* n FETCH (UID u FLAGS (...))`; the changes are remembered so the
//! next change poll does not report them again.
//!
//! A set of more than `write_chunk_messages` messages is stored in several storage calls of at
//! most that many, so no single replicated apply gets expensive for the other tenants. RFC 3501
//! does not make STORE atomic: each message's flags change on their own (and each call gets its
//! own MODSEQ, RFC 7162 only asks that they grow). If a call fails, the messages of the calls
//! before it keep their new flags and are reported before the `NO`.

use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::seqset::to_uid_set;
use crate::session::updates::{flags_fetch, write_updates};

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
    let mut messages: Vec<proto::MessageFlags> = Vec::new();
    let mut failure = None;
    for part in uids.chunks(ctx.shared.config.write_chunk_messages.max(1)) {
        let request = proto::StoreRequest {
            ctx: Some(user.ctx.clone()),
            mailbox_id: selected.mailbox_id,
            uidvalidity: selected.uidvalidity,
            uids: Some(to_uid_set(part)),
            op: op as i32,
            flags: flags.clone(),
            unchanged_since: 0,
        };
        match ctx.shared.storage.store(request).await {
            Ok(result) => {
                selected.note_own_changes(&result.updated);
                messages.extend(result.updated);
                messages.extend(result.unchanged);
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    // RFC 3501 §7.2.6: a keyword new to the mailbox is announced with FLAGS (and PERMANENTFLAGS)
    // before any FETCH carries it; also after .SILENT, since the mailbox's flag set changed.
    if let Some(update) = selected.learn_keywords(messages.iter().flat_map(|m| &m.flags)) {
        write_updates(ctx.out, &[update]);
    }
    if response == StoreResponse::Answer {
        messages.sort_by_key(|m| m.uid);
        for message in &messages {
            if let Some(data) = selected.map.seq_of(message.uid).and_then(|seq| flags_fetch(seq, message.uid, &message.flags)) {
                ctx.out.data(data);
            }
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(Reply::ok("STORE completed")),
    }
}
