//! FETCH rendering: storage results → FETCH response items (RFC 3501 §6.4.5, §7.4.2).
//!
//! Flow for one FETCH command:
//! 1. [`expand`] turns ALL/FAST/FULL into item names (RFC 3501 §6.4.5).
//! 2. [`needs`] says what to ask the storage for (structure? header or whole message?) and
//!    whether the command sets `\Seen`.
//! 3. For each `FetchedMessage`, the caller decodes `structure` with
//!    `mailraft_mime::MessageInfo::from_bytes` (when fetched) and calls [`fetch_items`], which
//!    builds the items in request order with owned data, ready for `Data::Fetch`.
//!
//! Everything derived from message content comes from the MIME analysis done at APPEND time
//! (`mailraft_mime`); nothing is parsed here. Submodules: `structure` (ENVELOPE/BODY/
//! BODYSTRUCTURE), `section` (BODY[...] bytes), `binary` (RFC 3516), `strings` (safe imap-types
//! strings).

mod binary;
mod section;
mod strings;
mod structure;

use std::num::NonZeroU32;

use chrono::{DateTime as ChronoDateTime, FixedOffset, Offset, Utc};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use mailraft_mime::MessageInfo;
use mailraft_proto as proto;

pub use structure::{body_structure, envelope};

use crate::flags::fetch_flags;

/// Why a FETCH item cannot be rendered for one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The item needs the message structure but it was not fetched (caller bug: see [`needs`])
    /// or did not decode. Answer `NO`.
    #[error("message {seq} has no structure")]
    MissingStructure {
        /// Sequence number of the message.
        seq: u32,
    },
    /// The item needs message bytes that were not fetched (caller bug: see [`needs`]). Answer
    /// `NO`.
    #[error("message {seq} has no body")]
    MissingBody {
        /// Sequence number of the message.
        seq: u32,
    },
    /// The stored UID is 0 or the INTERNALDATE is unrepresentable (corrupt record). Answer `NO`.
    #[error("message {seq} has a corrupt {what}")]
    Corrupt {
        /// Sequence number of the message.
        seq: u32,
        /// Which field.
        what: &'static str,
    },
    /// BINARY of a part with an unknown Content-Transfer-Encoding: answer
    /// `NO [UNKNOWN-CTE]` (RFC 3516 §4.2).
    #[error("message {seq} part has unknown content transfer encoding {cte}")]
    UnknownCte {
        /// Sequence number of the message.
        seq: u32,
        /// The encoding.
        cte: String,
    },
    /// An item behind an imap-types feature this crate does not render. Answer `BAD`.
    #[error("unsupported fetch item")]
    Unsupported,
}

/// Per-command switches for rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Add UID if not requested: UID FETCH always returns it (RFC 3501 §6.4.8).
    pub add_uid: bool,
    /// Add FLAGS if not requested, because this FETCH just set `\Seen` (RFC 3501 §6.4.5: the
    /// changed flags "SHOULD be included as part of the FETCH responses").
    pub add_flags: bool,
    /// Add MODSEQ if not requested: CHANGEDSINCE implies it (RFC 7162 §3.1.4.1), and so does a
    /// `\Seen` change reported to a CONDSTORE client (§3.1).
    pub add_modseq: bool,
}

/// What the storage must return for a FETCH, and its side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// `FetchRequest.want_structure`: ENVELOPE, BODY, BODYSTRUCTURE, sections below the top
    /// level, TEXT, BINARY.
    pub structure: bool,
    /// `FetchRequest.body`.
    pub body: proto::BodyWanted,
    /// Whether the FETCH sets `\Seen`: BODY[...] (not BODY.PEEK), RFC822, RFC822.TEXT (RFC 3501
    /// §6.4.5) and BINARY[...] (not BINARY.PEEK, RFC 3516 §4.2).
    pub sets_seen: bool,
}

/// Expands ALL/FAST/FULL (RFC 3501 §6.4.5) or returns the item list, with owned data.
pub fn expand(items: &MacroOrMessageDataItemNames<'_>) -> Vec<MessageDataItemName<'static>> {
    match items {
        MacroOrMessageDataItemNames::Macro(m) => m
            .expand()
            .into_iter()
            .map(IntoStatic::into_static)
            .collect(),
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => {
            v.iter().cloned().map(IntoStatic::into_static).collect()
        }
    }
}

/// What to ask the storage for, given the requested items.
pub fn needs(items: &[MessageDataItemName<'_>]) -> Needs {
    use proto::BodyWanted::{BodyFull, BodyHeader, BodyNone};
    let mut n = Needs {
        structure: false,
        body: BodyNone,
        sets_seen: false,
    };
    let want = |n: &mut Needs, body: proto::BodyWanted, structure: bool| {
        if body == BodyFull || (body == BodyHeader && n.body == BodyNone) {
            n.body = body;
        }
        n.structure |= structure;
    };
    for item in items {
        match item {
            MessageDataItemName::Body
            | MessageDataItemName::BodyStructure
            | MessageDataItemName::Envelope => want(&mut n, BodyNone, true),
            MessageDataItemName::BodyExt {
                section: s, peek, ..
            } => {
                let s = section::to_mime(s.as_ref());
                if section::header_only(&s) {
                    want(&mut n, BodyHeader, false);
                } else {
                    // BODY[] needs no structure; every other section needs offsets.
                    let whole = s.part.is_empty() && s.text == mailraft_mime::SectionText::Full;
                    want(&mut n, BodyFull, !whole);
                }
                n.sets_seen |= !peek;
            }
            MessageDataItemName::Rfc822 => {
                want(&mut n, BodyFull, false);
                n.sets_seen = true;
            }
            MessageDataItemName::Rfc822Header => want(&mut n, BodyHeader, false),
            MessageDataItemName::Rfc822Text => {
                want(&mut n, BodyFull, true);
                n.sets_seen = true;
            }
            MessageDataItemName::Binary {
                section: path,
                peek,
                ..
            } => {
                want(&mut n, BodyFull, !path.is_empty());
                n.sets_seen |= !peek;
            }
            MessageDataItemName::BinarySize { section: path } => {
                want(&mut n, BodyFull, !path.is_empty());
            }
            MessageDataItemName::Flags
            | MessageDataItemName::InternalDate
            | MessageDataItemName::Rfc822Size
            | MessageDataItemName::Uid
            | MessageDataItemName::ModSeq => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    n
}

/// Renders the requested items of one message, in request order (plus UID/FLAGS per `opts`).
///
/// `info` is the decoded `msg.structure` (required for the items [`Needs::structure`] names);
/// `msg.body` must hold what [`Needs::body`] asked for. `seq` is only used in errors.
pub fn fetch_items(
    items: &[MessageDataItemName<'_>],
    msg: &proto::FetchedMessage,
    info: Option<&MessageInfo>,
    seq: u32,
    opts: &RenderOptions,
) -> Result<Vec<MessageDataItem<'static>>, RenderError> {
    let mut out = Vec::with_capacity(items.len() + 2);
    let asked = |f: fn(&MessageDataItemName<'_>) -> bool| items.iter().any(f);
    if opts.add_uid && !asked(|i| matches!(i, MessageDataItemName::Uid)) {
        out.push(uid(msg, seq)?);
    }
    for item in items {
        let rendered = render_one(item, msg, info, seq)?;
        // A client may name an item twice (`FETCH 9 (FLAGS FLAGS)`, `BODY[] BODY.PEEK[]`);
        // each data item appears once in the response (RFC 3501 §7.4.2), as clients keep
        // one value per name.
        if !out.iter().any(|done| same_name(done, &rendered)) {
            out.push(rendered);
        }
    }
    if opts.add_flags && !asked(|i| matches!(i, MessageDataItemName::Flags)) {
        out.push(MessageDataItem::Flags(fetch_flags(&msg.flags)));
    }
    if opts.add_modseq && !asked(|i| matches!(i, MessageDataItemName::ModSeq)) {
        out.push(crate::cmd::condstore::modseq_item(msg.modseq));
    }
    Ok(out)
}

/// Whether two response items have the same name on the wire (`BODY[1]<0>`, `FLAGS`), so
/// only one of them may be sent.
fn same_name(a: &MessageDataItem<'_>, b: &MessageDataItem<'_>) -> bool {
    use MessageDataItem as M;
    match (a, b) {
        (M::BodyExt { section: s1, origin: o1, .. }, M::BodyExt { section: s2, origin: o2, .. }) => {
            s1 == s2 && o1 == o2
        }
        (M::Binary { section: s1, .. }, M::Binary { section: s2, .. })
        | (M::BinarySize { section: s1, .. }, M::BinarySize { section: s2, .. }) => s1 == s2,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// One item.
fn render_one(
    item: &MessageDataItemName<'_>,
    msg: &proto::FetchedMessage,
    info: Option<&MessageInfo>,
    seq: u32,
) -> Result<MessageDataItem<'static>, RenderError> {
    let info_or = || info.ok_or(RenderError::MissingStructure { seq });
    let raw = || -> Result<&[u8], RenderError> {
        if msg.body.is_empty() && msg.size > 0 {
            Err(RenderError::MissingBody { seq })
        } else {
            Ok(&msg.body[..])
        }
    };
    // BODY[section] bytes; RFC822.* are BODY.PEEK[...] aliases (RFC 3501 §6.4.5).
    let bytes = |s: &mailraft_mime::Section| -> Result<Vec<u8>, RenderError> {
        section::extract(raw()?, info, s)
            .map(|c| c.into_owned())
            .ok_or(RenderError::MissingStructure { seq })
    };
    let top = |text| mailraft_mime::Section {
        part: Vec::new(),
        text,
    };
    use mailraft_mime::SectionText as T;
    Ok(match item {
        MessageDataItemName::Body => MessageDataItem::Body(body_structure(&info_or()?.body, false)),
        MessageDataItemName::BodyStructure => {
            MessageDataItem::BodyStructure(body_structure(&info_or()?.body, true))
        }
        MessageDataItemName::Envelope => MessageDataItem::Envelope(envelope(&info_or()?.envelope)),
        MessageDataItemName::Flags => MessageDataItem::Flags(fetch_flags(&msg.flags)),
        MessageDataItemName::InternalDate => {
            MessageDataItem::InternalDate(internal_date(msg, seq)?)
        }
        MessageDataItemName::Uid => uid(msg, seq)?,
        // RFC 7162 §3.1.4.2.
        MessageDataItemName::ModSeq => crate::cmd::condstore::modseq_item(msg.modseq),
        MessageDataItemName::Rfc822Size => {
            MessageDataItem::Rfc822Size(u32::try_from(msg.size).unwrap_or(u32::MAX))
        }
        MessageDataItemName::Rfc822 => {
            MessageDataItem::Rfc822(strings::literal(bytes(&top(T::Full))?))
        }
        MessageDataItemName::Rfc822Header => {
            MessageDataItem::Rfc822Header(strings::literal(bytes(&top(T::Header))?))
        }
        MessageDataItemName::Rfc822Text => {
            MessageDataItem::Rfc822Text(strings::literal(bytes(&top(T::Text))?))
        }
        MessageDataItemName::BodyExt {
            section: s,
            partial,
            ..
        } => {
            let data = bytes(&section::to_mime(s.as_ref()))?;
            MessageDataItem::BodyExt {
                section: s.clone().map(IntoStatic::into_static),
                // RFC 3501 §7.4.2: the response names only the origin octet.
                origin: partial.map(|(origin, _)| origin),
                data: strings::literal(section::partial(&data, *partial)),
            }
        }
        MessageDataItemName::Binary {
            section: path,
            partial,
            ..
        } => {
            let data = binary_data(path, raw()?, info, seq)?;
            MessageDataItem::Binary {
                section: path.clone(),
                value: binary::value(section::partial(&data, *partial)),
            }
        }
        MessageDataItemName::BinarySize { section: path } => {
            let data = binary_data(path, raw()?, info, seq)?;
            MessageDataItem::BinarySize {
                section: path.clone(),
                size: u32::try_from(data.len()).unwrap_or(u32::MAX),
            }
        }
        #[allow(unreachable_patterns)]
        _ => return Err(RenderError::Unsupported),
    })
}

/// Decoded BINARY content; a missing part is an empty string like BODY[] (see `section`).
fn binary_data(
    path: &[NonZeroU32],
    raw: &[u8],
    info: Option<&MessageInfo>,
    seq: u32,
) -> Result<Vec<u8>, RenderError> {
    let path: Vec<u32> = path.iter().map(|n| n.get()).collect();
    if path.is_empty() {
        return Ok(raw.to_vec());
    }
    let info = info.ok_or(RenderError::MissingStructure { seq })?;
    match binary::decoded(raw, info, &path) {
        Ok(data) => Ok(data.into_owned()),
        Err(binary::BinaryError::NoSuchPart) => Ok(Vec::new()),
        Err(binary::BinaryError::UnknownCte(cte)) => Err(RenderError::UnknownCte { seq, cte }),
    }
}

/// The UID item.
fn uid(msg: &proto::FetchedMessage, seq: u32) -> Result<MessageDataItem<'static>, RenderError> {
    NonZeroU32::new(msg.uid)
        .map(MessageDataItem::Uid)
        .ok_or(RenderError::Corrupt { seq, what: "uid" })
}

/// INTERNALDATE in the zone it was given with (RFC 3501 §2.3.3); an invalid stored offset falls
/// back to UTC rather than failing.
fn internal_date(msg: &proto::FetchedMessage, seq: u32) -> Result<DateTime, RenderError> {
    let corrupt = RenderError::Corrupt {
        seq,
        what: "internal date",
    };
    let utc = ChronoDateTime::from_timestamp(msg.internal_date, 0).ok_or(corrupt.clone())?;
    let offset = msg
        .tz_offset_minutes
        .checked_mul(60)
        .and_then(FixedOffset::east_opt)
        .unwrap_or_else(|| Utc.fix());
    DateTime::try_from(utc.with_timezone(&offset)).map_err(|_| corrupt)
}

#[cfg(test)]
mod tests;
