//! Unsolicited mailbox updates (RFC 3501 §5.2, §7.3.1, §7.4.1; RFC 9051 §7).
//!
//! Before the tagged reply of every command in the selected state (and whenever the watch hub
//! signals a change during IDLE) the session asks the storage what changed since the highest
//! modseq it has reported and turns the answer into `EXISTS`, `EXPUNGE` and `FETCH (FLAGS)`
//! responses through the pure [`Selected`](super::Selected) logic; once the client enabled
//! CONDSTORE each FETCH also carries the message's `MODSEQ` (RFC 7162 §3.1). During FETCH, STORE and
//! SEARCH (not their UID forms) expunges are held back, because the client's sequence numbers
//! must not shift under those commands (RFC 3501 §7.4.1). When the change log no longer reaches
//! back, a resync reports every message's flags; those are written to the client chunk by chunk
//! as the storage streams them ([`resync`]), so a huge mailbox does not sit in memory.

use std::num::NonZeroU32;

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Code, Data, StatusKind};
use mailraft_proto as proto;
use tokio::io::AsyncWrite;

use super::{Selected, Session, Update, User};
use crate::error::FrontendError;
use crate::response::Out;
use crate::storage::Storage;

/// Polls the storage for changes to the selected mailbox and writes the resulting responses to
/// `out`. Does nothing outside the selected state. A resync may write to `io` before it returns
/// (see [`resync`]); everything else stays in `out` for the caller to flush.
pub async fn poll<W: AsyncWrite + Unpin + ?Sized>(
    storage: &Storage,
    session: &mut Session,
    out: &mut Out,
    io: &mut W,
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
    if changes.resync {
        return resync(storage, user, selected, out, io, allow_expunge, condstore).await;
    }
    let updates = selected.apply_changes(&changes, allow_expunge);
    write_updates(out, &updates, condstore);
    Ok(())
}

/// Messages per FETCH call of a resync (see [`resync`]).
const RESYNC_SLICE: usize = 512;

/// The change log no longer reaches back to the session's modseq: diff the view against a fresh
/// SELECT, then report the current flags of every message in the view (RFC 3501 §7.4.2 allows
/// unsolicited FETCH FLAGS at any time), since the log cannot say whose flags changed. Only
/// reached after very long disconnections or huge change bursts.
///
/// Memory stays bounded by one chunk of the storage's FETCH stream (at most 64 messages or
/// about 1 MiB): each chunk's responses are written to `io` before the next chunk is read. A
/// mailbox of 100,000 messages with 256 long keywords each would otherwise be hundreds of MB in
/// one session.
///
/// What is committed when. The EXPUNGEs and EXISTS of the diff go out first and the view
/// (`map`, pending expunges, keywords) is updated with them at once: the FETCHes that follow
/// number messages in that new view, and once a response is on the wire the view must match it
/// whatever happens next. Only `highest_modseq` is held back until the last chunk was written:
/// if the flag FETCH fails midway the session stays at its old modseq, so the next poll (IDLE
/// retries it) reports the changes again instead of losing them. Repeating them is harmless:
/// the view already holds the diff, so it yields no second EXPUNGE or EXISTS (expunged UIDs are
/// no longer in the map, new ones already are), and FETCH FLAGS may be repeated at any time
/// (§7.4.2). Keywords are recorded as their FLAGS response is written, so they are never
/// announced twice.
async fn resync<W: AsyncWrite + Unpin + ?Sized>(
    storage: &Storage,
    user: &User,
    selected: &mut Selected,
    out: &mut Out,
    io: &mut W,
    allow_expunge: bool,
    condstore: bool,
) -> Result<(), FrontendError> {
    let fresh = storage.select(&user.ctx, &selected.name).await?;
    let status = fresh.status.clone().unwrap_or_default();
    if status.mailbox_id != selected.mailbox_id || status.uidvalidity != selected.uidvalidity {
        return Err(FrontendError::UidValidityChanged("the selected mailbox was replaced".to_owned()));
    }
    let reported = selected.highest_modseq;
    let updates = selected.apply_resync(&fresh, allow_expunge);
    // The fresh SELECT's modseq: every flag read below is at least that recent.
    let reached = selected.highest_modseq;
    selected.highest_modseq = reported;
    write_updates(out, &updates, condstore);
    // One FETCH call per slice of the view, not one for all of it: a call's stream moves only as
    // fast as the client reads, and the storage ends a stream at its deadline (5 minutes), so a
    // big mailbox on a slow link would never finish and every retry would start over. A slice is
    // at most ~17 MB even with 256 long keywords per message; the view does not change meanwhile
    // (`chunk_flags` only learns keywords).
    let total = selected.map.uids().len();
    for start in (0..total).step_by(RESYNC_SLICE) {
        let slice = &selected.map.uids()[start..total.min(start + RESYNC_SLICE)];
        let request = proto::FetchRequest {
            ctx: Some(user.ctx.clone()),
            mailbox_id: selected.mailbox_id,
            uidvalidity: selected.uidvalidity,
            uids: Some(crate::seqset::to_uid_set(slice)),
            want_structure: false,
            body: proto::BodyWanted::BodyNone as i32,
            changed_since: 0,
        };
        let mut stream = storage.fetch(request).await?;
        while let Some(chunk) = stream.next().await? {
            write_updates(out, &chunk_flags(selected, chunk.messages), condstore);
            // Written before the next chunk is read: the session never holds more than one.
            out.flush_to(io).await.map_err(|error| {
                FrontendError::Unavailable(format!("client did not take the resync's flags: {error}"))
            })?;
        }
    }
    selected.highest_modseq = reached;
    Ok(())
}

/// One chunk of a resync's flag FETCH as responses: a FLAGS update first when the chunk uses
/// keywords the client has not been told about (RFC 3501 §7.2.6: the FLAGS before the FETCH
/// that uses them), then `FETCH (FLAGS)` for each of its messages still in the view.
fn chunk_flags(selected: &mut Selected, messages: Vec<proto::FetchedMessage>) -> Vec<Update> {
    let known: Vec<(u32, proto::FetchedMessage)> =
        messages.into_iter().filter_map(|msg| Some((selected.map.seq_of(msg.uid)?, msg))).collect();
    let mut updates: Vec<Update> =
        selected.learn_keywords(known.iter().flat_map(|(_, msg)| &msg.flags)).into_iter().collect();
    updates.extend(
        known.into_iter().map(|(seq, msg)| Update::Flags { seq, uid: msg.uid, flags: msg.flags, modseq: msg.modseq }),
    );
    updates
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
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

    use super::*;
    use crate::session::TokenLifetime;
    use crate::storage::mock::{Mock, Server, serve};
    use crate::storage::route::RetryPolicy;

    /// A session that selected the mock's mailbox while it held `uids` (so its modseq is the
    /// last of them), then the mailbox changes to `now` with `flags`, and the change log no
    /// longer reaches back (`resync`); the FETCH stream comes in chunks of `chunk`.
    async fn resync_session(uids: &[u32], now: &[u32], flags: &[(u32, &[&str])], chunk: usize) -> (Server, Storage, Session) {
        let mock = Mock::default();
        *mock.uids.lock().unwrap() = uids.to_vec();
        let server = serve(mock).await;
        let policy = RetryPolicy::new(Duration::from_secs(5), Duration::from_secs(1));
        let storage = Storage::new(std::slice::from_ref(&server.addr), 1, policy);
        let ctx = storage.context(b"token".to_vec(), "s1");
        let selected = Selected::new("INBOX".into(), &storage.select(&ctx, "INBOX").await.unwrap(), false);
        let mut session = Session::new("s1".into(), true, false, true);
        session.login(User { login: "a@b".into(), tenant_id: 1, account_id: 2, ctx, lifetime: TokenLifetime::new(0) });
        session.select(selected);
        let mock = &server.mock;
        *mock.uids.lock().unwrap() = now.to_vec();
        let mut all = std::collections::HashMap::new();
        for &uid in now {
            let mut list = vec!["\\Seen".to_owned()];
            if let Some((_, extra)) = flags.iter().find(|(u, _)| *u == uid) {
                list.extend(extra.iter().map(|f| (*f).to_owned()));
            }
            all.insert(uid, list);
        }
        *mock.flags.lock().unwrap() = all;
        mock.fetch_chunk.store(chunk, Ordering::SeqCst);
        mock.resync.store(true, Ordering::SeqCst);
        (server, storage, session)
    }

    /// Runs one poll writing to a pipe; returns its result and everything the client got.
    async fn poll_to_string(storage: &Storage, session: &mut Session) -> (Result<(), FrontendError>, String) {
        let (mut client, mut io) = tokio::io::duplex(1 << 20);
        let mut out = Out::new();
        let result = poll(storage, session, &mut out, &mut io, true).await;
        out.flush_to(&mut io).await.unwrap();
        drop(io);
        let mut text = String::new();
        client.read_to_string(&mut text).await.unwrap();
        (result, text)
    }

    const STD: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

    /// The diff first (message 20 gone, 21 and 22 new), then every message's flags chunk by
    /// chunk, each new keyword announced (RFC 3501 §7.2.6) right before the chunk that uses it.
    #[tokio::test]
    async fn a_resync_reports_every_message_with_new_keywords_announced_first() {
        let before: Vec<u32> = (1..=8).chain([20]).collect();
        let now: Vec<u32> = (1..=8).chain([21, 22]).collect();
        let (server, storage, mut session) =
            resync_session(&before, &now, &[(3, &["$kw3"]), (8, &["$kw8"])], 3).await;
        let (result, text) = poll_to_string(&storage, &mut session).await;
        result.unwrap();
        let fetch = |seq: u32, uid: u32, extra: &str| format!("* {seq} FETCH (UID {uid} FLAGS (\\Seen{extra}))\r\n");
        let keywords = |kw: &str| {
            format!("* FLAGS ({STD} {kw})\r\n* OK [PERMANENTFLAGS ({STD} {kw} \\*)] flags permitted\r\n")
        };
        let mut expected = "* 9 EXPUNGE\r\n* 10 EXISTS\r\n".to_owned();
        expected += &keywords("$kw3");
        expected += &(fetch(1, 1, "") + &fetch(2, 2, "") + &fetch(3, 3, " $kw3"));
        expected += &(fetch(4, 4, "") + &fetch(5, 5, "") + &fetch(6, 6, ""));
        expected += &keywords("$kw3 $kw8");
        expected += &(fetch(7, 7, "") + &fetch(8, 8, " $kw8") + &fetch(9, 21, ""));
        expected += &fetch(10, 22, "");
        assert_eq!(text, expected);
        assert_eq!(server.mock.fetch_chunks_sent.load(Ordering::SeqCst), 4);
        let selected = session.selected().unwrap();
        assert_eq!(selected.highest_modseq, 22);
        assert_eq!(selected.keywords, ["$kw3", "$kw8"]);
    }

    /// A big view is fetched in slices of `RESYNC_SLICE` UIDs, one storage call each, so no
    /// single stream has to outlast a slow client; every message is still reported once.
    #[tokio::test]
    async fn a_big_resync_fetches_in_slices() {
        let uids: Vec<u32> = (1..=(2 * RESYNC_SLICE as u32 + 76)).collect();
        let (server, storage, mut session) = resync_session(&uids, &uids, &[], 64).await;
        let (result, text) = poll_to_string(&storage, &mut session).await;
        result.unwrap();
        assert_eq!(text.matches(" FETCH (UID ").count(), uids.len());
        assert!(text.ends_with(&format!("* {n} FETCH (UID {n} FLAGS (\\Seen))\r\n", n = uids.len())), "{text}");
        assert_eq!(server.mock.calls("fetch").len(), 3, "two full slices and the rest");
        assert_eq!(session.selected().unwrap().highest_modseq, uids.len() as u64);
    }

    /// The session holds at most one chunk: the first chunk's FETCHes reach the client while
    /// the storage has produced only that chunk and holds the stream open.
    #[tokio::test]
    async fn a_resync_writes_each_chunk_before_reading_the_next() {
        let uids: Vec<u32> = (1..=9).collect();
        let (server, storage, mut session) = resync_session(&uids, &uids, &[], 3).await;
        let mock = server.mock.clone();
        *mock.fetch_pause_after.lock().unwrap() = Some(1);
        let (client, mut io) = tokio::io::duplex(1 << 20);
        let mut client = BufReader::new(client);
        let mut out = Out::new();
        let polled = poll(&storage, &mut session, &mut out, &mut io, true);
        let read = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut lines = Vec::new();
            let mut expect = async |prefix: &str| loop {
                let mut line = String::new();
                let read = tokio::time::timeout_at(deadline, client.read_line(&mut line)).await;
                read.unwrap_or_else(|_| panic!("no {prefix:?} in time; got {lines:?}")).unwrap();
                lines.push(line.clone());
                if line.starts_with(prefix) {
                    break;
                }
            };
            expect("* 3 FETCH").await;
            assert_eq!(mock.fetch_chunks_sent.load(Ordering::SeqCst), 1, "the stream is still open");
            mock.fetch_resume.notify_one();
            expect("* 9 FETCH").await;
        };
        let (result, ()) = tokio::join!(polled, read);
        result.unwrap();
        assert_eq!(session.selected().unwrap().highest_modseq, 9);
    }

    /// RFC 3501 §7.4.1 / guarantee of `resync`: a flag FETCH that breaks midway leaves the
    /// session at its old modseq; what was written stays true (the view has message 6), and the
    /// next poll reports every message's flags again without repeating EXISTS.
    #[tokio::test]
    async fn a_resync_whose_flag_fetch_breaks_keeps_the_old_modseq() {
        let (server, storage, mut session) = resync_session(&[1, 2, 3, 4], &[1, 2, 3, 4, 5, 6], &[], 2).await;
        server.mock.broken_fetches.store(1, Ordering::SeqCst);
        let (result, text) = poll_to_string(&storage, &mut session).await;
        assert!(result.is_err(), "{text}");
        assert!(text.starts_with("* 6 EXISTS\r\n* 1 FETCH") && text.contains("* 2 FETCH"), "{text}");
        let selected = session.selected().unwrap();
        assert_eq!(selected.highest_modseq, 4, "the session did not move on");
        assert_eq!(selected.map.uids(), [1, 2, 3, 4, 5, 6]);
        let (result, text) = poll_to_string(&storage, &mut session).await;
        result.unwrap();
        let expected: String = (1..=6).map(|n| format!("* {n} FETCH (UID {n} FLAGS (\\Seen))\r\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(session.selected().unwrap().highest_modseq, 6);
    }

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
