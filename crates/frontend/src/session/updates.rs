//! Unsolicited mailbox updates (RFC 3501 §5.2, §7.3.1, §7.4.1; RFC 9051 §7).
//!
//! Before the tagged reply of every command in the selected state (and whenever the watch hub
//! signals a change during IDLE) the session asks the storage what changed since the highest
//! modseq it has reported and turns the answer into `EXISTS`, `EXPUNGE` and `FETCH (FLAGS)`
//! responses through the pure [`Selected`](super::Selected) logic; once the client enabled
//! CONDSTORE each FETCH also carries the message's `MODSEQ` (RFC 7162 §3.1). During FETCH, STORE and
//! SEARCH (not their UID forms) expunges are held back, because the client's sequence numbers
//! must not shift under those commands (RFC 3501 §7.4.1).

use std::num::NonZeroU32;

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Code, Data, StatusKind};
use mailraft_proto as proto;

use super::{Session, Update};
use crate::error::FrontendError;
use crate::response::Out;
use crate::storage::Storage;

/// Polls the storage for changes to the selected mailbox and writes the resulting responses.
/// Does nothing outside the selected state.
pub async fn poll(
    storage: &Storage,
    session: &mut Session,
    out: &mut Out,
    allow_expunge: bool,
) -> Result<(), FrontendError> {
    let condstore = session.condstore;
    let Some((user, selected)) = session.user_and_selected() else {
        return Ok(());
    };
    let request = proto::ChangesRequest {
        ctx: Some(user.ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        since_modseq: selected.highest_modseq,
    };
    let changes = storage.changes(request).await?;
    let updates = if changes.resync {
        // The change log no longer reaches back to our modseq: diff against a fresh SELECT.
        let fresh = storage.select(&user.ctx, &selected.name).await?;
        let status = fresh.status.clone().unwrap_or_default();
        if status.mailbox_id != selected.mailbox_id || status.uidvalidity != selected.uidvalidity {
            return Err(FrontendError::UidValidityChanged(
                "the selected mailbox was replaced".to_owned(),
            ));
        }
        // Work on a copy: if the flag fetch below fails, the session must stay at its old modseq
        // so that the next poll (IDLE retries it) reports these changes instead of losing them.
        let mut next = selected.clone();
        let mut updates = next.apply_resync(&fresh, allow_expunge);
        // The log cannot say whose flags changed, so report every known message's current flags
        // (RFC 3501 §7.4.2 allows unsolicited FETCH FLAGS at any time); the client's cache is
        // then exact again. Only reached after very long disconnections or huge change bursts.
        let flags = current_flags(storage, &user.ctx, &next).await?;
        let learned = next.learn_keywords(flags.iter().flat_map(|u| match u {
            Update::Flags { flags, .. } => flags.as_slice(),
            _ => &[],
        }));
        // RFC 3501 §7.2.6: the new FLAGS before the FETCH responses that use them.
        if let Some(learned) = learned {
            updates.insert(0, learned);
        }
        updates.extend(flags);
        *selected = next;
        updates
    } else {
        selected.apply_changes(&changes, allow_expunge)
    };
    write_updates(out, &updates, condstore);
    Ok(())
}

/// A FETCH FLAGS update for every message in the session's view, from the storage's current
/// state (flags only: no structure, no body).
async fn current_flags(
    storage: &Storage,
    ctx: &proto::Context,
    selected: &super::Selected,
) -> Result<Vec<Update>, FrontendError> {
    if selected.map.is_empty() {
        return Ok(Vec::new());
    }
    let request = proto::FetchRequest {
        ctx: Some(ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        uids: Some(crate::seqset::to_uid_set(selected.map.uids())),
        want_structure: false,
        body: proto::BodyWanted::BodyNone as i32,
        changed_since: 0,
    };
    let mut stream = storage.fetch(request).await?;
    let mut updates = Vec::new();
    while let Some(chunk) = stream.next().await? {
        for msg in chunk.messages {
            if let Some(seq) = selected.map.seq_of(msg.uid) {
                updates.push(Update::Flags { seq, uid: msg.uid, flags: msg.flags, modseq: msg.modseq });
            }
        }
    }
    Ok(updates)
}

/// Writes updates as untagged responses; `condstore` adds MODSEQ to the FETCHes (RFC 7162 §3.1).
pub fn write_updates(out: &mut Out, updates: &[Update], condstore: bool) {
    for update in updates {
        match update {
            Update::Exists(n) => out.data(Data::Exists(*n)),
            Update::Expunge(seq) => {
                if let Some(seq) = NonZeroU32::new(*seq) {
                    out.data(Data::Expunge(seq));
                }
            }
            Update::Flags { seq, uid, flags, modseq } => {
                if let Some(data) = flags_fetch(*seq, *uid, flags, condstore.then_some(*modseq)) {
                    out.data(data);
                }
            }
            Update::Keywords { keywords, read_only } => write_mailbox_flags(out, keywords, *read_only),
        }
    }
}

/// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` for a mailbox whose keywords are
/// `keywords` (RFC 3501 §7.2.6, §7.1); a read-only mailbox has no permanent flags (§6.3.2).
pub fn write_mailbox_flags(out: &mut Out, keywords: &[String], read_only: bool) {
    out.data(Data::Flags(crate::flags::mailbox_flags(keywords)));
    let permanent = if read_only { Vec::new() } else { crate::flags::permanent_flags(keywords) };
    out.untagged(StatusKind::Ok, Some(Code::PermanentFlags(permanent)), "flags permitted");
}

/// `* seq FETCH (UID uid FLAGS (...))`, with `MODSEQ (m)` when `modseq` is given (RFC 7162
/// §3.1.4.2: how the server tells a CONDSTORE client about mod-sequence changes).
pub fn flags_fetch(seq: u32, uid: u32, flags: &[String], modseq: Option<u64>) -> Option<Data<'static>> {
    let seq = NonZeroU32::new(seq)?;
    let uid = NonZeroU32::new(uid)?;
    let mut items = vec![
        MessageDataItem::Uid(uid),
        MessageDataItem::Flags(crate::flags::fetch_flags(flags)),
    ];
    items.extend(modseq.map(crate::cmd::condstore::modseq_item));
    Some(Data::Fetch { seq, items: Vec1::try_from(items).ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_updates() {
        let mut out = Out::new();
        let updates = [
            Update::Flags { seq: 2, uid: 9, flags: vec!["\\Seen".into(), "$Junk".into()], modseq: 17 },
            Update::Expunge(3),
            Update::Exists(4),
        ];
        write_updates(&mut out, &updates, false);
        assert_eq!(
            String::from_utf8_lossy(out.as_bytes()),
            "* 2 FETCH (UID 9 FLAGS (\\Seen $Junk))\r\n* 3 EXPUNGE\r\n* 4 EXISTS\r\n"
        );
        // RFC 7162 §3.1: after a CONDSTORE enabling command every untagged FETCH has MODSEQ.
        let mut out = Out::new();
        write_updates(&mut out, &updates[..1], true);
        assert_eq!(String::from_utf8_lossy(out.as_bytes()), "* 2 FETCH (UID 9 FLAGS (\\Seen $Junk) MODSEQ (17))\r\n");
    }

    #[test]
    fn renders_new_keywords_as_flags_and_permanentflags() {
        let mut out = Out::new();
        let keywords = vec!["$Junk".to_owned()];
        write_updates(&mut out, &[Update::Keywords { keywords: keywords.clone(), read_only: false }], false);
        write_updates(&mut out, &[Update::Keywords { keywords, read_only: true }], false);
        let flags = "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk)\r\n";
        assert_eq!(
            String::from_utf8_lossy(out.as_bytes()),
            format!(
                "{flags}* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk \\*)] flags permitted\r\n\
                 {flags}* OK [PERMANENTFLAGS ()] flags permitted\r\n"
            )
        );
    }
}
