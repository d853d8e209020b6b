//! STORE and UID STORE (RFC 3501 §6.4.6, §6.4.8). Without `.SILENT` every matched message's
//! new flags are returned as `* n FETCH (UID u FLAGS (...))`; the changes are remembered so the
//! next change poll does not report them again.
//!
//! A set of more than `write_chunk_messages` messages is stored in several storage calls of at
//! most that many, so no single replicated apply gets expensive for the other tenants. RFC 3501
//! does not make STORE atomic: each message's flags change on their own (and each call gets its
//! own MODSEQ, RFC 7162 only asks that they grow). Each part's untagged responses (a FLAGS
//! announcing its new keywords first, RFC 3501 §7.2.6, then its FETCHes) are written and flushed
//! under the connection's write deadline before the next storage call, so a STORE over 100,000
//! messages holds one part's responses, not all of them. If a call fails, the messages of the
//! calls before it keep their new flags and have been reported before the `NO`.
//!
//! A part can still exceed the storage's byte bound on one command (messages with many long
//! keywords): refused as splittable (`LIMIT` with `mailraft-split`), it changed nothing, so it
//! is retried in halves, and the rest of the command keeps the smaller size ([`smaller_part`]).
//! A plain `LIMIT` (the mailbox's keyword cap) would refuse any part: it is reported after its
//! one call. Each retry is a new
//! storage call with its own request id (`Storage::store` stamps one per call), so no id is ever
//! sent with two different message sets; the storage's deduplication only ever sees retries of
//! one call.
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
use crate::response::Out;
use crate::seqset::{to_sequence_set, to_uid_set};
use crate::session::Selected;
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
    let echo = Echo {
        flags: response == StoreResponse::Answer,
        conditional: unchanged_since.is_some(),
        condstore,
    };
    // UIDs for `[MODIFIED]`, collected over the parts: UIDs only, at most the set's size.
    let mut modified: Vec<u32> = Vec::new();
    // Some message of the set was in no answer: expunged by another session, still in the view.
    let mut vanished = false;
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
            let result = match ctx.shared.storage.store(request).await {
                Ok(result) => result,
                Err(error) => {
                    size = smaller_part(part.len(), &error).ok_or(error)?;
                    continue;
                }
            };
            rest = &rest[part.len()..];
            selected.note_own_changes(&result.updated);
            let mut answered: HashSet<u32> = result.updated.iter().chain(&result.unchanged).map(|m| m.uid).collect();
            answered.extend(&result.modified);
            vanished |= part.iter().any(|uid| !answered.contains(uid));
            write_part(ctx.out, selected, &result, echo);
            modified.extend(result.modified);
            // Written before the next call: the session holds one part's responses at most, not
            // a STORE over 100,000 messages. The last part's go out with the tagged reply.
            if !rest.is_empty()
                && !ctx.out.is_empty()
                && let Err(error) = ctx.out.flush_to(ctx.io).await
            {
                tracing::debug!(%error, "client write failed during STORE");
                ctx.broken = true;
                return Err(FrontendError::Unavailable(format!("client did not take the STORE's responses: {error}")));
            }
        }
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
    if vanished {
        return Ok(Reply::no(code, "some of the messages no longer exist"));
    }
    Ok(Reply::ok_code(code, "conditional STORE failed"))
}

/// What a STORE reports of each message (RFC 3501 §6.4.6, RFC 7162 §3.1.3).
#[derive(Debug, Clone, Copy)]
struct Echo {
    /// Not `.SILENT`: every message's new flags.
    flags: bool,
    /// UNCHANGEDSINCE was given: a message it changed is reported even under `.SILENT`.
    conditional: bool,
    /// CONDSTORE is on: the FETCHes carry MODSEQ (RFC 7162 §3.1).
    condstore: bool,
}

/// Writes what one storage call of a STORE did, in UID (so sequence) order. RFC 3501 §7.2.6: a
/// keyword new to the mailbox is announced with FLAGS (and PERMANENTFLAGS) before any FETCH
/// carries it; also under `.SILENT`, since the mailbox's flag set changed.
fn write_part(out: &mut Out, selected: &mut Selected, result: &proto::StoreResponse, echo: Echo) {
    let all = || result.updated.iter().chain(&result.unchanged);
    if let Some(update) = selected.learn_keywords(all().flat_map(|m| &m.flags)) {
        write_updates(out, &[update], echo.condstore);
    }
    let mut messages: Vec<(&proto::MessageFlags, bool)> =
        result.updated.iter().map(|m| (m, true)).chain(result.unchanged.iter().map(|m| (m, false))).collect();
    messages.sort_by_key(|(m, _)| m.uid);
    for (message, changed) in messages {
        let Some(seq) = selected.map.seq_of(message.uid) else {
            continue;
        };
        let data = if echo.flags {
            flags_fetch(seq, message.uid, &message.flags, echo.condstore.then_some(message.modseq))
        } else if echo.conditional && changed {
            // RFC 7162 §3.1.3: "An untagged FETCH response MUST be sent, even if the .SILENT
            // suffix is specified, and the response MUST include the MODSEQ message data item."
            modseq_fetch(seq, message.uid, message.modseq)
        } else {
            None
        };
        if let Some(data) = data {
            out.data(data);
        }
    }
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

    /// A plain LIMIT (the mailbox's keyword cap) would refuse every smaller part alike: one
    /// storage call, then NO [LIMIT] (RFC 5530 §3), nothing stored.
    #[tokio::test]
    async fn a_limit_refusal_costs_one_call() {
        let mut client = selected(12, 100, 5).await;
        let mock = client.server.mock.clone();
        *mock.keyword_cap.lock().unwrap() = Some(0);
        let (fetches, done) = client.run("STORE 1:12 +FLAGS (NewKeyword)").await;
        assert!(done.contains(" NO [LIMIT] "), "{done}");
        assert!(fetches.is_empty(), "{fetches:?}");
        assert_eq!(mock.calls("store").len(), 1, "not retried in smaller parts");
        assert!(mock.stored.lock().unwrap().is_empty());
    }

    const STD: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

    /// Part 1's FETCHes reach the client while the storage holds part 2's call: the session
    /// does not collect the whole command's responses. The keyword only part 2 brings is
    /// announced (RFC 3501 §7.2.6) after part 1's FETCHes and before the FETCH using it.
    #[tokio::test]
    async fn each_part_is_written_before_the_next_call() {
        let mut client = selected(9, 100, 3).await;
        let mock = client.server.mock.clone();
        mock.flags.lock().unwrap().insert(5, vec!["$kw5".to_owned()]);
        *mock.store_pause_at.lock().unwrap() = Some(1);
        let tag = client.send("STORE 1:9 +FLAGS (\\Flagged)").await;
        let fetch = |n: u32, extra: &str| format!("* {n} FETCH (UID {n} FLAGS ({extra}\\Flagged))");
        let first = client.expect("* 3 FETCH").await;
        assert_eq!(first, [fetch(1, ""), fetch(2, ""), fetch(3, "")]);
        assert_eq!(*mock.stored.lock().unwrap(), [1, 2, 3], "part 2 not done yet");
        mock.store_resume.cancel();
        let mut rest = client.expect(&tag).await;
        let done = rest.pop().unwrap();
        assert!(done.ends_with("OK STORE completed"), "{done}");
        let mut expected = vec![
            format!("* FLAGS ({STD} $kw5)"),
            format!("* OK [PERMANENTFLAGS ({STD} $kw5 \\*)] flags permitted"),
            fetch(4, ""),
            fetch(5, "$kw5 "),
        ];
        expected.extend((6..=9).map(|n| fetch(n, "")));
        assert_eq!(rest, expected);
    }

    /// A part that fails after others succeeded: theirs were written first, then the NO; the
    /// messages of the failed part keep their flags.
    #[tokio::test]
    async fn a_later_part_failing_comes_after_the_earlier_parts_responses() {
        let mut client = selected(9, 100, 3).await;
        let mock = client.server.mock.clone();
        *mock.store_pause_at.lock().unwrap() = Some(1);
        let tag = client.send("STORE 1:9 +FLAGS (\\Flagged)").await;
        assert_eq!(client.expect("* 3 FETCH").await.len(), 3);
        // Part 2 and its halves are now too big for the storage.
        *mock.write_limit.lock().unwrap() = Some(0);
        mock.store_resume.cancel();
        let rest = client.expect(&tag).await;
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert!(rest[0].contains(" NO [LIMIT] "), "{rest:?}");
        assert_eq!(*mock.stored.lock().unwrap(), [1, 2, 3]);
    }
}
