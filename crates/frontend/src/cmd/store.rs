//! STORE and UID STORE (RFC 3501 §6.4.6, §6.4.8). Without `.SILENT` every matched message's
//! new flags are returned as `* n FETCH (UID u FLAGS (...))`; the changes are remembered so the
//! next change poll does not report them again.
//!
//! A set of more than `write_chunk_messages` messages is stored in several storage calls of at
//! most that many, so no single replicated apply gets expensive for the other tenants. RFC 3501
//! does not make STORE atomic: each message's flags change on their own (and each call gets its
//! own MODSEQ, RFC 7162 only asks that they grow). If a call fails, the messages of the calls
//! before it keep their new flags and are reported before the `NO`.
//!
//! A part can still exceed the storage's byte bound on one command (messages with many long
//! keywords): refused with `LIMIT`, it changed nothing, so it is retried in halves, and the rest
//! of the command keeps the smaller size ([`smaller_part`]). Each retry is a new storage call
//! with its own request id (`Storage::store` stamps one per call), so no id is ever sent with
//! two different message sets; the storage's deduplication only ever sees retries of one call.
//!
//! CONDSTORE (RFC 7162 §3.1.3): with `(UNCHANGEDSINCE n)` the storage leaves alone every message
//! whose mod-sequence is above `n` and names it; those are answered in `[MODIFIED set]`
//! (sequence numbers for STORE, UIDs for UID STORE) on the tagged OK, or on a NO when some of the
//! set no longer exists (RFC 7162 Example 11, after RFC 2180 §4.2.3). Every message the
//! conditional STORE did change gets an untagged FETCH with MODSEQ even under `.SILENT`. Once
//! CONDSTORE is on, the FETCHes of any STORE carry MODSEQ (§3.1).

use std::collections::HashSet;
use std::num::NonZeroU32;

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::response::{Code, Data};
use imap_codec::imap_types::sequence::SequenceSet;
use mailraft_proto as proto;

use super::{Ctx, Reply, condstore};
use crate::error::FrontendError;
use crate::limits::smaller_part;
use crate::seqset::{to_sequence_set, to_uid_set};
use crate::session::updates::{flags_fetch, write_updates};

/// The arguments of `[UID] STORE set [(modifiers)] (+|-)FLAGS[.SILENT] (flags)`.
#[derive(Debug)]
pub struct StoreCommand {
    /// The messages, as sequence numbers or (`uid`) UIDs.
    pub set: SequenceSet,
    /// Replace, add or remove.
    pub kind: StoreType,
    /// `.SILENT` or not.
    pub response: StoreResponse,
    /// The flags to store.
    pub flags: Vec<Flag<'static>>,
    /// UID STORE.
    pub uid: bool,
    /// RFC 4466 store modifiers; UNCHANGEDSINCE is the only one defined (RFC 7162 §3.1.3).
    pub modifiers: Vec<StoreModifier>,
}

/// `[UID] STORE set [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] (flags)`.
pub async fn run(ctx: &mut Ctx<'_>, command: StoreCommand) -> Result<Reply, FrontendError> {
    let StoreCommand { set, kind, response, flags, uid, modifiers } = command;
    // RFC 7162 §7: "Only a single UNCHANGEDSINCE may be specified in a STORE operation."
    let unchanged_since = match modifiers.as_slice() {
        [] => None,
        [StoreModifier::UnchangedSince(modseq)] => Some(*modseq),
        _ => return Err(FrontendError::BadArguments("only one UNCHANGEDSINCE is allowed".into())),
    };
    let condstore = ctx.session.condstore;
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
    let mut updated: Vec<proto::MessageFlags> = Vec::new();
    let mut unchanged: Vec<proto::MessageFlags> = Vec::new();
    let mut modified: Vec<u32> = Vec::new();
    let mut failure = None;
    if unchanged_since == Some(0) {
        // RFC 7162 §3.1.3: "UNCHANGEDSINCE 0 always fails if the metadata item exists", and
        // flags always exist. The storage reads 0 as "unconditional", so it is not asked.
        modified.clone_from(&uids);
    } else {
        let mut size = ctx.shared.config.write_chunk_messages.max(1);
        let mut rest: &[u32] = &uids;
        while !rest.is_empty() {
            let part = &rest[..size.min(rest.len())];
            let request = proto::StoreRequest {
                ctx: Some(user.ctx.clone()),
                mailbox_id: selected.mailbox_id,
                uidvalidity: selected.uidvalidity,
                uids: Some(to_uid_set(part)),
                op: op as i32,
                flags: flags.clone(),
                unchanged_since: unchanged_since.unwrap_or(0),
            };
            match ctx.shared.storage.store(request).await {
                Ok(result) => {
                    selected.note_own_changes(&result.updated);
                    updated.extend(result.updated);
                    unchanged.extend(result.unchanged);
                    modified.extend(result.modified);
                    rest = &rest[part.len()..];
                }
                Err(error) => match smaller_part(part.len(), &error) {
                    Some(smaller) => size = smaller,
                    None => {
                        failure = Some(error);
                        break;
                    }
                },
            }
        }
    }
    // RFC 3501 §7.2.6: a keyword new to the mailbox is announced with FLAGS (and PERMANENTFLAGS)
    // before any FETCH carries it; also after .SILENT, since the mailbox's flag set changed.
    if let Some(update) = selected.learn_keywords(updated.iter().chain(&unchanged).flat_map(|m| &m.flags)) {
        write_updates(ctx.out, &[update], condstore);
    }
    let changed: HashSet<u32> = updated.iter().map(|m| m.uid).collect();
    let mut messages = updated;
    messages.extend(unchanged);
    messages.sort_by_key(|m| m.uid);
    for message in &messages {
        let Some(seq) = selected.map.seq_of(message.uid) else {
            continue;
        };
        let data = if response == StoreResponse::Answer {
            flags_fetch(seq, message.uid, &message.flags, condstore.then_some(message.modseq))
        } else if unchanged_since.is_some() && changed.contains(&message.uid) {
            // RFC 7162 §3.1.3: "An untagged FETCH response MUST be sent, even if the .SILENT
            // suffix is specified, and the response MUST include the MODSEQ message data item."
            modseq_fetch(seq, message.uid, message.modseq)
        } else {
            None
        };
        if let Some(data) = data {
            ctx.out.data(data);
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    if modified.is_empty() {
        return Ok(Reply::ok("STORE completed"));
    }
    let mut numbers: Vec<u32> =
        if uid { modified.clone() } else { modified.iter().filter_map(|u| selected.map.seq_of(*u)).collect() };
    numbers.sort_unstable();
    numbers.dedup();
    let code = to_sequence_set(&numbers).map(Code::Modified);
    // Messages of the set the storage no longer has (expunged by another session, still in this
    // client's view): RFC 7162 Example 11 answers NO [MODIFIED ...] for that mixture.
    let answered: HashSet<u32> = messages.iter().map(|m| m.uid).chain(modified.iter().copied()).collect();
    if uids.iter().any(|u| !answered.contains(u)) {
        return Ok(Reply::no(code, "some of the messages no longer exist"));
    }
    Ok(Reply::ok_code(code, "conditional STORE failed"))
}

/// `* seq FETCH (UID uid MODSEQ (m))`: what a `.SILENT` conditional STORE reports of a message
/// it changed (RFC 7162 §3.1.3, Example 3).
fn modseq_fetch(seq: u32, uid: u32, modseq: u64) -> Option<Data<'static>> {
    let items = vec![MessageDataItem::Uid(NonZeroU32::new(uid)?), condstore::modseq_item(modseq)];
    Some(Data::Fetch { seq: NonZeroU32::new(seq)?, items: Vec1::try_from(items).ok()? })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::storage::mock::{Client, Mock};

    /// A mailbox of `n` messages behind a storage that refuses writes over `limit` messages.
    async fn selected(n: u32, limit: usize, chunk: usize) -> Client {
        let mock = Mock::default();
        *mock.uids.lock().unwrap() = (1..=n).collect();
        *mock.write_limit.lock().unwrap() = Some(limit);
        let mut client = Client::logged_in(mock, |c| c.write_chunk_messages = chunk).await;
        let (_, done) = client.run("SELECT INBOX").await;
        assert!(done.contains(" OK "), "{done}");
        client
    }

    /// A part over the storage's byte bound is refused with LIMIT and changed nothing: it is
    /// retried in halves, the rest of the command keeps the smaller size, every message is
    /// stored exactly once, and every call carries its own request id.
    #[tokio::test]
    async fn a_part_refused_for_its_size_is_retried_in_halves() {
        let mut client = selected(12, 3, 5).await;
        let (fetches, done) = client.run("STORE 1:12 +FLAGS (\\Flagged)").await;
        assert!(done.ends_with("OK STORE completed"), "{done}");
        let expected: Vec<String> = (1..=12).map(|n| format!("* {n} FETCH (UID {n} FLAGS (\\Flagged))")).collect();
        assert_eq!(fetches, expected);
        let mock = &client.server.mock;
        let mut stored = mock.stored.lock().unwrap().clone();
        stored.sort_unstable();
        assert_eq!(stored, (1..=12).collect::<Vec<u32>>(), "every message stored once");
        // 5 refused, then parts of 2 to the end: one refusal, not one per part of 5.
        let calls = mock.calls("store");
        assert_eq!(calls.len(), 1 + 6, "{calls:?}");
        let ids: HashSet<&Vec<u8>> = calls.iter().map(|c| &c.request_id).collect();
        assert_eq!(ids.len(), calls.len(), "a smaller retry never reuses a request id");
    }

    #[tokio::test]
    async fn a_single_message_refused_is_reported_as_limit() {
        let mut client = selected(12, 0, 5000).await;
        let (fetches, done) = client.run("STORE 1:12 +FLAGS (\\Flagged)").await;
        assert!(done.contains(" NO [LIMIT] "), "{done}");
        assert!(fetches.is_empty(), "{fetches:?}");
        let mock = &client.server.mock;
        assert!(mock.stored.lock().unwrap().is_empty());
        // 12, 6, 3 and 1 message: halved down to one before giving up.
        assert_eq!(mock.calls("store").len(), 4);
    }
}
