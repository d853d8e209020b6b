//! FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8).
//!
//! The requested items decide what the storage must return (structure, header or full body);
//! rendering each item is `crate::render`'s job. A non-PEEK body fetch on a read-write mailbox
//! sets `\Seen` first (one STORE for the whole set; with CHANGEDSINCE only for the messages
//! changed since, found by a flags-only FETCH), so the FETCH responses carry the new FLAGS
//! (§6.4.5); on a mailbox opened with EXAMINE nothing is changed. Output is flushed while the
//! storage streams, so a large FETCH does not accumulate in memory.
//!
//! CONDSTORE (RFC 7162): the MODSEQ item (§3.1.4.2) is rendered like any other; the
//! `(CHANGEDSINCE n)` modifier (§3.1.4.1) becomes the storage's `changed_since` filter, so only
//! messages whose mod-sequence is above `n` come back, each with MODSEQ added. The QRESYNC
//! modifier `VANISHED` is refused (§3.2.6: BAD unless QRESYNC was enabled, which it never is).

use std::collections::HashSet;
use std::num::NonZeroU32;

use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::response::{Code, Data};
use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply, flush_if_large};
use crate::error::FrontendError;
use crate::render::{self, RenderOptions};
use crate::response::other_code;
use crate::seqset::{SeqMap, to_uid_set};
use crate::session::updates::write_updates;

/// Resolves a command's set to the UIDs of messages the client knows, ascending. Sequence
/// numbers beyond the mailbox are an error (RFC 9051 §6.4.5); UIDs that do not exist are ignored
/// (RFC 3501 §6.4.8).
pub fn resolve(map: &SeqMap, set: &SequenceSet, uid: bool) -> Result<Vec<u32>, FrontendError> {
    if uid {
        Ok(map.resolve_uid_known(set))
    } else {
        map.resolve_seq(set).map_err(|e| FrontendError::BadArguments(e.to_string()))
    }
}

/// `[UID] FETCH set items [(modifiers)]`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    set: SequenceSet,
    items: MacroOrMessageDataItemNames<'static>,
    uid: bool,
    modifiers: &[FetchModifier],
) -> Result<Reply, FrontendError> {
    let mut changed_since = None;
    for modifier in modifiers {
        match modifier {
            FetchModifier::ChangedSince(modseq) => changed_since = Some(modseq.get()),
            FetchModifier::Vanished => return Err(FrontendError::BadArguments("QRESYNC is not enabled".into())),
        }
    }
    let condstore = ctx.session.condstore;
    let (user, selected) = super::selected(ctx.session)?;
    let uids = resolve(&selected.map, &set, uid)?;
    let items = render::expand(&items);
    let needs = render::needs(&items);
    if uids.is_empty() {
        return Ok(Reply::ok("FETCH completed"));
    }
    let storage = &ctx.shared.storage;
    let uid_set = to_uid_set(&uids);

    let mut newly_seen = HashSet::new();
    if needs.sets_seen && !selected.read_only {
        // RFC 7162 §3.1.4.1: with CHANGEDSINCE only the messages changed since are fetched, so
        // only those may get `\Seen` (setting it on the whole set would change, and return,
        // every message). One flags-only round trip finds them.
        let seen_set = match changed_since {
            None => uid_set.clone(),
            Some(since) => {
                let changed = changed_uids(storage, user, selected, &uid_set, since).await?;
                if changed.is_empty() {
                    return Ok(Reply::ok("FETCH completed"));
                }
                to_uid_set(&changed)
            }
        };
        let request = proto::StoreRequest {
            ctx: Some(user.ctx.clone()),
            mailbox_id: selected.mailbox_id,
            uidvalidity: selected.uidvalidity,
            uids: Some(seen_set),
            op: proto::StoreOp::StoreAdd as i32,
            flags: vec!["\\Seen".to_owned()],
            unchanged_since: 0,
        };
        let stored = storage.store(request).await?;
        selected.note_own_changes(&stored.updated);
        newly_seen.extend(stored.updated.iter().map(|m| m.uid));
    }

    let request = proto::FetchRequest {
        ctx: Some(user.ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        uids: Some(uid_set),
        // The structure is also requested with full bodies: `render::fetch_items` cuts even
        // BODY[] through the MIME offsets, and the record is small next to the body.
        want_structure: needs.structure || needs.body == proto::BodyWanted::BodyFull,
        body: needs.body as i32,
        changed_since: changed_since.unwrap_or(0),
    };
    let mut stream = storage.fetch(request).await?;
    let mut unrenderable = 0usize;
    let mut unknown_cte = false;
    while let Some(chunk) = stream.next().await? {
        for message in chunk.messages {
            let Some(seq) = selected.map.seq_of(message.uid) else {
                continue;
            };
            // RFC 3501 §7.2.6: another session may have set a keyword the client has not been
            // told about yet; FLAGS announces it before this FETCH can show it.
            if let Some(update) = selected.learn_keywords(&message.flags) {
                write_updates(ctx.out, &[update], condstore);
            }
            let info = if message.structure.is_empty() {
                None
            } else {
                mailraft_mime::MessageInfo::from_bytes(&message.structure).ok()
            };
            let seen_now = newly_seen.contains(&message.uid);
            let options = RenderOptions {
                add_uid: uid,
                add_flags: seen_now,
                // RFC 7162 §3.1.4.1 (implied by CHANGEDSINCE) and §3.1 (a flag change a
                // CONDSTORE client is told about carries the new mod-sequence).
                add_modseq: changed_since.is_some() || (condstore && seen_now),
            };
            let rendered = render::fetch_items(&items, &message, info.as_ref(), seq, &options);
            match (rendered, NonZeroU32::new(seq)) {
                (Ok(rendered), Some(seq)) => {
                    if let Ok(items) = Vec1::try_from(rendered) {
                        ctx.out.data(Data::Fetch { seq, items });
                    }
                }
                (Err(render::RenderError::UnknownCte { .. }), _) => unknown_cte = true,
                (Err(error), _) => {
                    tracing::warn!(%error, uid = message.uid, "cannot render FETCH item");
                    unrenderable += 1;
                }
                (Ok(_), None) => {}
            }
        }
        flush_if_large(ctx.out, ctx.io, &mut ctx.broken).await;
        if ctx.broken {
            break;
        }
    }
    if unknown_cte && unrenderable == 0 {
        // RFC 3516 §4.2: BINARY of a part whose encoding the server cannot decode fails with
        // this code; the client can still fetch the part undecoded with BODY[section].
        return Ok(Reply::no(Some(Code::UnknownCte), "cannot decode the content transfer encoding"));
    }
    if unrenderable > 0 {
        // RFC 3501 §6.4.5: NO when some data could not be fetched.
        return Ok(Reply::no(Some(other_code("SERVERBUG")), "some messages could not be fetched"));
    }
    Ok(Reply::ok("FETCH completed"))
}

/// UIDs among `set` whose mod-sequence is above `since` (a flags-only FETCH with CHANGEDSINCE).
async fn changed_uids(
    storage: &crate::storage::Storage,
    user: &crate::session::User,
    selected: &crate::session::selected::Selected,
    set: &proto::UidSet,
    since: u64,
) -> Result<Vec<u32>, FrontendError> {
    let request = proto::FetchRequest {
        ctx: Some(user.ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        uids: Some(set.clone()),
        want_structure: false,
        body: proto::BodyWanted::BodyNone as i32,
        changed_since: since,
    };
    let mut stream = storage.fetch(request).await?;
    let mut uids = Vec::new();
    while let Some(chunk) = stream.next().await? {
        uids.extend(chunk.messages.iter().map(|m| m.uid));
    }
    Ok(uids)
}
