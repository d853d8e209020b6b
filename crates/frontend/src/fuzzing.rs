//! Entry points for the fuzz targets in `fuzz/` and the corpus replay test
//! (`tests/fuzz_corpus.rs`), which calls the same functions on every checked-in input so `.ci/run`
//! catches a regression without cargo-fuzz.
//!
//! Each function takes arbitrary bytes, must not panic, and asserts invariants that are cheap to
//! check: a failed assertion is a finding exactly like a crash. Nothing here does I/O; the IMAP
//! target drives the same sans-I/O pieces the connection loop drives (framer, imap-codec, the state
//! gate, the argument translations handlers do before calling the storage, and the response
//! encoder), stopping where a real session would call the storage.

use std::collections::BTreeSet;
use std::num::NonZeroU32;

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::{Code, StatusKind};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec, ResponseCodec};

use crate::error::FrontendError;
use crate::framer::{Frame, Framer, Limits, Rejection, tag_of};
use crate::response::Out;
use crate::seqset::{SeqMap, expand, to_imap_uid_set, to_sequence_set, to_uid_set};
use crate::session::{Gate, Session};

/// The LMTP target lives beside the code it drives (`lmtp/fuzzing.rs`).
pub use crate::lmtp::fuzzing::lmtp_input;

/// UIDs of the selected mailbox every fuzzed command is resolved against: gaps, and values near
/// `u32::MAX` so `*` and range ends hit the edges.
const MAP_UIDS: [u32; 12] = [1, 2, 3, 5, 8, 13, 21, 34, 55, 1000, 4_294_967_294, 4_294_967_295];

/// Names LIST patterns are matched against.
const NAMES: [&str; 5] = ["INBOX", "INBOX/a", "Archive/2024/Q1", "a%b*c", "&AOk-t&AOk-"];

/// Most expanded numbers a round-trip check looks at; inputs naming more are checked up to here.
const EXPAND_CAP: usize = 4096;

/// What the decoder expects next, as in the connection loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Command,
    /// After IDLE: only `DONE` (RFC 2177).
    IdleDone,
    /// After AUTHENTICATE without an initial response: one base64 line (RFC 3501 §6.2.2).
    SaslData,
}

/// Caps before login (tiny ones reach the refusal paths with short inputs), as the connection
/// sets them: non-synchronizing literals capped separately (LITERAL-, RFC 7888 §5).
const PREAUTH_LIMITS: [Limits; 2] = [
    Limits { max_line: 48, max_literal: 32, max_nonsync_literal: 16, max_message: 48 + 2 * 32 },
    Limits { max_line: 1024, max_literal: 8192, max_nonsync_literal: 4096, max_message: 1024 + 2 * 8192 },
];

/// Caps after login.
const AUTHENTICATED_LIMITS: Limits =
    Limits { max_line: 4096, max_literal: 1 << 16, max_nonsync_literal: 1 << 16, max_message: (1 << 16) + 4 * 4096 };

/// The framer + imap-codec path: `data[0]` picks the read size, `data[1]` the caps, the rest is the
/// client's byte stream. A LOGIN (or AUTHENTICATE with an initial response) that decodes counts as
/// a successful login: from the next message on the framer has the larger caps, as in the
/// connection loop. Returns everything the server would have written.
///
/// Checks: no message handed to the decoder exceeds the cap it was framed under; every byte
/// written is a sequence of responses imap-codec can decode again (tags echoed, texts sanitised).
pub fn imap_input(data: &[u8]) -> Vec<u8> {
    let [chunk_pick, limit_pick, stream @ ..] = data else {
        return Vec::new();
    };
    let chunk = if chunk_pick & 0x80 != 0 { stream.len().max(1) } else { 1 + usize::from(chunk_pick % 64) };
    let mut limits = PREAUTH_LIMITS[usize::from(limit_pick & 1)];
    let mut framer = Framer::new(limits);
    let mut out = Out::new();
    let session = Session::new("fuzz".into(), false, true, limit_pick & 0x02 != 0);
    let map = SeqMap::from_uids(MAP_UIDS.to_vec());
    let mut mode = Mode::Command;
    let mut pending: Option<Tag<'static>> = None;
    'feed: for piece in stream.chunks(chunk) {
        framer.feed(piece);
        loop {
            match framer.poll() {
                Frame::NeedMore => break,
                Frame::Continue => out.continuation("Ready for literal data"),
                Frame::Message => {
                    let message = framer.take_message();
                    assert!(message.len() <= limits.max_message, "message of {} bytes passed the cap", message.len());
                    mode = match mode {
                        Mode::Command => command(&message, &session, &map, &mut out, &mut pending),
                        Mode::IdleDone | Mode::SaslData => finish(&message, mode, pending.take(), &mut out),
                    };
                    if logs_in(&message) && limits != AUTHENTICATED_LIMITS {
                        limits = AUTHENTICATED_LIMITS;
                        framer.set_limits(limits);
                    }
                }
                Frame::Rejected { tag, reason } => {
                    let (kind, code, text) = match reason {
                        Rejection::LineTooLong => (StatusKind::Bad, None, "command line too long"),
                        Rejection::LiteralTooBig => (StatusKind::No, Some(Code::TooBig), "literal too big"),
                    };
                    out.maybe_tagged(pending.take().as_ref().or(tag.as_ref()), kind, code, text);
                    mode = Mode::Command;
                }
                Frame::Fatal { tag } => {
                    out.maybe_tagged(tag.as_ref(), StatusKind::Bad, Some(Code::TooBig), "literal too big");
                    out.bye(None, "literal too big, closing");
                    break 'feed;
                }
            }
        }
    }
    let written = out.as_bytes().to_vec();
    check_responses(&written);
    written
}

/// Whether `message` is a LOGIN or a complete AUTHENTICATE, which this harness treats as successful.
fn logs_in(message: &[u8]) -> bool {
    let Ok((_, command)) = CommandCodec::new().decode(message) else {
        return false;
    };
    matches!(command.body, CommandBody::Login { .. } | CommandBody::Authenticate { initial_response: Some(_), .. })
}

/// Decodes and "runs" one command message; returns what the next message must be.
fn command(message: &[u8], session: &Session, map: &SeqMap, out: &mut Out, pending: &mut Option<Tag<'static>>) -> Mode {
    let (tag, body) = match CommandCodec::new().decode(message) {
        Ok((&[], command)) => (command.tag, command.body),
        _ => {
            out.maybe_tagged(tag_of(message).as_ref(), StatusKind::Bad, None, "invalid command");
            return Mode::Command;
        }
    };
    // The gate's verdict is only exercised: the translations below run in every state, so a
    // not-authenticated session still reaches them.
    let gate = session.is_allowed(&body);
    let result = translate(&body, map);
    let next = match &body {
        CommandBody::Idle => Mode::IdleDone,
        CommandBody::Authenticate { initial_response: None, .. } => Mode::SaslData,
        _ => Mode::Command,
    };
    if next != Mode::Command {
        out.continuation("idling");
        *pending = Some(imap_codec::imap_types::IntoStatic::into_static(tag));
        return next;
    }
    match (gate, result) {
        (Gate::WrongState(text), _) => out.tagged(&tag, StatusKind::Bad, None, text),
        (Gate::Unsupported, _) => out.tagged(&tag, StatusKind::Bad, None, "command not supported"),
        (Gate::Allowed, Ok(())) => out.tagged(&tag, StatusKind::Ok, None, "done"),
        (Gate::Allowed, Err(error)) => {
            let (kind, code, text) = error.to_imap();
            out.tagged(&tag, kind, code, &text);
        }
    }
    Mode::Command
}

/// The message after IDLE or a SASL challenge.
fn finish(message: &[u8], mode: Mode, tag: Option<Tag<'static>>, out: &mut Out) -> Mode {
    let ok = match mode {
        Mode::IdleDone => matches!(IdleDoneCodec::new().decode(message), Ok((&[], _))),
        _ => matches!(AuthenticateDataCodec::new().decode(message), Ok((&[], _))),
    };
    let kind = if ok { StatusKind::Ok } else { StatusKind::Bad };
    out.maybe_tagged(tag.as_ref(), kind, None, "done");
    Mode::Command
}

/// The argument translations handlers perform before calling the storage.
fn translate(body: &CommandBody<'_>, map: &SeqMap) -> Result<(), FrontendError> {
    use CommandBody as C;
    match body {
        C::Select { mailbox, .. } | C::Examine { mailbox, .. } | C::Create { mailbox } | C::Delete { mailbox } => {
            crate::names::decode_mailbox(mailbox).map(drop)
        }
        C::Subscribe { mailbox } | C::Unsubscribe { mailbox } | C::Status { mailbox, .. } => {
            crate::names::decode_mailbox(mailbox).map(drop)
        }
        C::Rename { from, to } => {
            crate::names::decode_mailbox(from)?;
            crate::names::decode_mailbox(to).map(drop)
        }
        C::List { reference, mailbox_wildcard } | C::Lsub { reference, mailbox_wildcard } => {
            let (Some(reference), Some(pattern)) = (
                crate::names::decode_reference(reference),
                crate::names::decode_list_mailbox(mailbox_wildcard),
            ) else {
                return Ok(());
            };
            let pattern = crate::names::join_reference(&reference, &pattern);
            for name in NAMES {
                crate::names::matches(&pattern, name);
            }
            Ok(())
        }
        C::Append { mailbox, flags, .. } => {
            crate::names::decode_mailbox(mailbox)?;
            crate::flags::to_wire_list(flags).map(drop).map_err(|e| FrontendError::BadArguments(e.to_string()))
        }
        C::Store { sequence_set, flags, uid, .. } => {
            crate::cmd::fetch::resolve(map, sequence_set, *uid)?;
            crate::flags::to_wire_list(flags).map(drop).map_err(|e| FrontendError::BadArguments(e.to_string()))
        }
        C::Copy { sequence_set, mailbox, uid } | C::Move { sequence_set, mailbox, uid } => {
            crate::names::decode_mailbox(mailbox)?;
            crate::cmd::fetch::resolve(map, sequence_set, *uid).map(drop)
        }
        C::Fetch { sequence_set, macro_or_item_names, uid, .. } => {
            crate::cmd::fetch::resolve(map, sequence_set, *uid)?;
            let items = crate::render::expand(macro_or_item_names);
            crate::render::needs(&items);
            Ok(())
        }
        C::ExpungeUid { sequence_set } => {
            map.resolve_uid_known(sequence_set);
            Ok(())
        }
        C::Search { charset, criteria, .. } => {
            crate::search::check_charset(charset.as_ref()).map_err(|e| FrontendError::BadCharset(e.to_string()))?;
            crate::search::criteria_to_proto(criteria.as_ref(), map)
                .map(drop)
                .map_err(|e| FrontendError::BadArguments(e.to_string()))
        }
        _ => Ok(()),
    }
}

/// Asserts that `written` is a sequence of responses imap-codec decodes completely.
fn check_responses(mut written: &[u8]) {
    while !written.is_empty() {
        // `+ ` without text (before a SASL response) is what RFC 4959 clients expect, though the
        // strict grammar wants text after the space.
        if let Some(rest) = written.strip_prefix(b"+ \r\n") {
            written = rest;
            continue;
        }
        match ResponseCodec::new().decode(written) {
            Ok((rest, _)) if rest.len() < written.len() => written = rest,
            other => panic!("undecodable response {:?}: {other:?}", String::from_utf8_lossy(written)),
        }
    }
}

/// Sequence sets and the sequence-number ↔ UID map. Layout: `data[0]` = number of map UIDs
/// (mod 32), then that many big-endian u32 UIDs, then the sequence set as text.
///
/// Checks: resolutions are ascending, unique and inside the map; the strict and lenient
/// resolutions agree whenever the strict one succeeds; `resolve_uid` returns sorted, merged
/// ranges and `resolve_uid_known` is exactly the map's UIDs inside them; sets built by
/// `to_sequence_set` / `to_imap_uid_set` / `to_uid_set` name exactly the numbers they were built
/// from, also after display → parse; any parsed set displays and parses back to itself.
pub fn seqset(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 32).min(rest.len() / 4);
    let (uid_bytes, text) = rest.split_at(count * 4);
    let uids: Vec<u32> = uid_bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    let mut map = SeqMap::from_uids(uids);
    if let Some(last) = map.last_uid() {
        // A pushed UID must be above the last one; `push` refuses anything else.
        assert!(map.push(last).is_err());
    }
    let known = map.uids().to_vec();
    assert!(known.windows(2).all(|w| w[0] < w[1]), "map not strictly ascending");
    let in_map = |v: &[u32]| v.windows(2).all(|w| w[0] < w[1]) && v.iter().all(|u| map.seq_of(*u).is_some());

    // Numbers → set → numbers, through each builder and through display → parse.
    let nums: Vec<u32> = known.iter().copied().filter(|&u| u != 0).collect();
    if let Some(set) = to_sequence_set(&nums) {
        assert_eq!(expand_seq(&set, u32::MAX), nums, "to_sequence_set changed the numbers");
        let reparsed: SequenceSet = display(&set).parse().expect("a built set must parse");
        assert_eq!(reparsed, set, "display → parse changed a built set");
    }
    if let Some(set) = to_imap_uid_set(&nums) {
        let mut named = Vec::new();
        for element in set.0.as_ref() {
            use imap_codec::imap_types::extensions::uidplus::UidElement;
            match element {
                UidElement::Single(u) => named.push(u.get()),
                UidElement::Range(a, b) => named.extend(a.get().min(b.get())..=a.get().max(b.get())),
            }
        }
        assert_eq!(named, nums, "to_imap_uid_set changed the numbers");
    }
    let compact = to_uid_set(&known);
    assert_eq!(expand(&compact).collect::<Vec<_>>(), known, "to_uid_set changed the numbers");

    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(set) = text.parse::<SequenceSet>() else {
        return;
    };
    let shown = display(&set);
    assert_eq!(shown.parse::<SequenceSet>().ok().as_ref(), Some(&set), "display → parse of {shown:?}");

    let lenient = map.resolve_seq_lenient(&set);
    assert!(in_map(&lenient), "lenient resolution {lenient:?} outside the map");
    match map.resolve_seq(&set) {
        Ok(strict) => {
            assert!(in_map(&strict), "resolution {strict:?} outside the map");
            assert_eq!(strict, lenient, "strict and lenient resolutions differ");
            // Every number is at most the mailbox size here, so the expansion is small.
            let expected: BTreeSet<u32> = expand_seq(&set, map.len()).iter().filter_map(|&s| map.uid_of(s)).collect();
            assert_eq!(strict, expected.into_iter().collect::<Vec<_>>(), "resolution differs from the set's numbers");
        }
        Err(_) => {
            let beyond = set.0.as_ref().iter().any(|seq| ends(seq, map.len()).1 > map.len());
            assert!(map.is_empty() || beyond, "a set inside the mailbox was refused");
        }
    }
    let ranges = map.resolve_uid(&set).ranges;
    assert!(ranges.iter().all(|r| r.start <= r.end), "reversed range");
    assert!(ranges.windows(2).all(|w| w[0].end.saturating_add(1) < w[1].start), "ranges not merged: {ranges:?}");
    let known_in = map.resolve_uid_known(&set);
    let expected: Vec<u32> =
        known.iter().copied().filter(|&u| ranges.iter().any(|r| r.start <= u && u <= r.end)).collect();
    assert_eq!(known_in, expected, "resolve_uid_known differs from the map ∩ ranges");
}

/// The low and high end of one sequence, `*` read as `star`.
fn ends(seq: &Sequence, star: u32) -> (u32, u32) {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => star,
    };
    let (a, b) = match seq {
        Sequence::Single(v) => (value(v), value(v)),
        Sequence::Range(a, b) => (value(a), value(b)),
    };
    (a.min(b), a.max(b))
}

/// Numbers a sequence set names (`*` = `star`), ascending and unique; stops once it holds
/// [`EXPAND_CAP`] numbers (callers only compare sets known to be smaller).
fn expand_seq(set: &SequenceSet, star: u32) -> Vec<u32> {
    let mut out = BTreeSet::new();
    for seq in set.0.as_ref() {
        let (lo, hi) = ends(seq, star);
        out.extend((lo..=hi).take(EXPAND_CAP));
        if out.len() >= EXPAND_CAP {
            break;
        }
    }
    out.into_iter().collect()
}

/// The RFC 3501 §9 `sequence-set` spelling of `set`.
fn display(set: &SequenceSet) -> String {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.to_string(),
        SeqOrUid::Asterisk => "*".to_owned(),
    };
    let parts: Vec<String> = set
        .0
        .as_ref()
        .iter()
        .map(|seq| match seq {
            Sequence::Single(v) => value(v),
            Sequence::Range(a, b) => format!("{}:{}", value(a), value(b)),
        })
        .collect();
    parts.join(",")
}

/// What FETCH sends for an APPENDed message: `data[0]` picks the part numbers of some sections,
/// the rest is the message. It is analysed as the storage does at APPEND time, its structure
/// record goes through the storage encoding, and the FETCH items (ENVELOPE, BODYSTRUCTURE,
/// sections, BINARY, partials) are rendered and encoded as the front-end does.
///
/// Checks: the FETCH response decodes again with imap-codec (no string a client cannot parse).
pub fn fetch_render(data: &[u8]) -> Vec<u8> {
    let Some((&pick, raw)) = data.split_first() else {
        return Vec::new();
    };
    let (a, b) = (1 + (pick & 0x07), 1 + ((pick >> 3) & 0x07));
    let command = format!(
        "f UID FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE BODY[] BODY[HEADER] \
         BODY[TEXT] BODY[{a}] BODY[{a}.MIME] BODY[{a}.{b}] BODY[{a}.HEADER.FIELDS (FROM SUBJECT)] BODY[{a}.TEXT] \
         BODY[{a}.{b}.HEADER.FIELDS.NOT (TO)] BINARY[{a}] BINARY.SIZE[{a}] BINARY[{a}.{b}]<2.9> BODY[]<3.20> \
         RFC822.HEADER RFC822.TEXT)\r\n"
    );
    let Ok((_, decoded)) = CommandCodec::new().decode(command.as_bytes()) else {
        panic!("the harness's own FETCH does not decode: {command}");
    };
    let CommandBody::Fetch { macro_or_item_names, .. } = decoded.body else {
        panic!("the harness's own FETCH decoded as something else");
    };
    let items = crate::render::expand(&macro_or_item_names);
    let info = mailraft_mime::analyze(raw);
    let message = mailraft_proto::FetchedMessage {
        uid: 7,
        flags: vec!["\\Seen".into(), "$Junk".into()],
        modseq: 3,
        internal_date: 1_700_000_000,
        tz_offset_minutes: 120,
        size: raw.len() as u64,
        structure: info.to_bytes().unwrap_or_default(),
        body: raw.to_vec(),
        save_date: 1_700_000_000,
    };
    let stored = mailraft_mime::MessageInfo::from_bytes(&message.structure).ok();
    assert_eq!(stored.as_ref(), Some(&info), "structure record does not round-trip");
    let options = crate::render::RenderOptions { add_uid: true, add_flags: false, add_modseq: true };
    let mut out = Out::new();
    // A message whose BINARY cannot be decoded fails the item; FETCH then skips the message.
    if let Ok(rendered) = crate::render::fetch_items(&items, &message, stored.as_ref(), 1, &options)
        && let Ok(items) = imap_codec::imap_types::core::Vec1::try_from(rendered)
    {
        out.data(imap_codec::imap_types::response::Data::Fetch { seq: NonZeroU32::MIN, items });
    }
    let written = out.as_bytes().to_vec();
    // imap-codec's decoder stops at 8 levels of BODYSTRUCTURE nesting (a parser limit of that
    // client library, not of the grammar); deeper structures (we send up to
    // `mailraft_mime::MAX_DEPTH`) are only encoded.
    if nesting(&info.body) <= 6 {
        check_responses(&written);
    }
    written
}

/// Levels of BODYSTRUCTURE nesting of a part.
fn nesting(part: &mailraft_mime::BodyPart) -> usize {
    let below = part.children.iter().map(nesting).max().unwrap_or(0);
    let inner = part.message.as_ref().map_or(0, |m| nesting(&m.body));
    1 + below.max(inner)
}

/// Modified UTF-7 (RFC 3501 §5.1.3). The input as a string is decoded; when it decodes, encoding
/// the result must give the input back (the decoder accepts only canonical spellings). The input
/// read as UTF-8 (lossily) is encoded, and decoding that must give it back.
pub fn utf7(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(decoded) = crate::utf7::decode(text)
    {
        assert_eq!(crate::utf7::encode(&decoded), text, "decode accepted a non-canonical spelling");
    }
    let name = String::from_utf8_lossy(data);
    let encoded = crate::utf7::encode(&name);
    assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)), "encoding is not printable ASCII");
    assert_eq!(crate::utf7::decode(&encoded).as_deref(), Ok(&*name), "encode → decode changed {name:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_input_answers_each_command() {
        let mut data = vec![0x80, 1];
        data.extend_from_slice(b"a1 NOOP\r\na2 FROB\r\n\x01\r\na3 LOGIN {3}\r\n");
        let out = String::from_utf8(imap_input(&data)).unwrap();
        assert!(out.contains("a1 OK"), "{out}");
        assert!(out.contains("a2 BAD"), "{out}");
        assert!(out.contains("* BAD"), "{out}");
        assert!(out.contains("+ Ready for literal data"), "{out}");
    }

    #[test]
    fn seqset_and_utf7_accept_plain_inputs() {
        let mut data = vec![3];
        for uid in [1u32, 5, 9] {
            data.extend_from_slice(&uid.to_be_bytes());
        }
        data.extend_from_slice(b"1:2,*,7:3");
        seqset(&data);
        utf7("Entwürfe &-".as_bytes());
        utf7(b"&AOk-t");
    }
}
