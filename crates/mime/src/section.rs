//! BODY[<section>] extraction (RFC 3501 §6.4.5, RFC 9051 §6.4.5) by slicing the raw
//! message with the offsets stored in [`MessageInfo`]; only HEADER.FIELDS re-scans the
//! (small) header it filters.

use std::borrow::Cow;

use crate::MessageInfo;
use crate::header;
use crate::structure::BodyPart;

/// The text part of a section specification (what follows the part number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// No text specifier: `BODY[]` (whole message) or `BODY[1.2]` (that part's body).
    Full,
    /// `HEADER`: the header of the message or encapsulated message, blank line included.
    Header,
    /// `HEADER.FIELDS (names)` or, with `not`, `HEADER.FIELDS.NOT (names)`.
    HeaderFields {
        /// Field names, compared case-insensitively.
        names: Vec<String>,
        /// True for HEADER.FIELDS.NOT.
        not: bool,
    },
    /// `TEXT`: the body of the message or encapsulated message.
    Text,
    /// `MIME`: the MIME header of a part (only valid with a part number).
    Mime,
}

/// A section specification: part path plus text specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Part numbers, 1-based; empty means the top-level message. `[1, 2]` is "1.2".
    pub part: Vec<u32>,
    /// What to return from that part.
    pub text: SectionText,
}

/// Returns the exact bytes of section `s`, or `None` when the part does not exist or
/// the specifier does not apply to it (the front-end then returns an empty string).
///
/// Borrowed slices for everything but HEADER.FIELDS, which must be assembled.
pub fn section<'a>(raw: &'a [u8], info: &MessageInfo, s: &Section) -> Option<Cow<'a, [u8]>> {
    if s.part.is_empty() {
        let header_end = info.header_len;
        return match &s.text {
            SectionText::Full => Some(Cow::Borrowed(raw)),
            SectionText::Header => slice(raw, 0, header_end),
            SectionText::HeaderFields { names, not } => fields(raw, 0, header_end, names, *not),
            SectionText::Text => slice(raw, header_end, raw.len() as u64),
            // RFC 3501 §6.4.5: MIME requires a part number.
            SectionText::Mime => None,
        };
    }
    let part = resolve(&info.body, &s.part)?;
    match &s.text {
        SectionText::Full => slice(raw, part.body_start, part.body_end),
        SectionText::Mime => slice(raw, part.header_start, part.header_end),
        // RFC 3501 §6.4.5: HEADER, HEADER.FIELDS and TEXT after a part number refer to
        // the message encapsulated in that message/rfc822 part.
        SectionText::Header => {
            let message = part.message.as_ref()?;
            slice(raw, part.body_start, message.header_end)
        }
        SectionText::HeaderFields { names, not } => {
            let message = part.message.as_ref()?;
            fields(raw, part.body_start, message.header_end, names, *not)
        }
        SectionText::Text => {
            let message = part.message.as_ref()?;
            slice(raw, message.header_end, part.body_end)
        }
    }
}

/// Finds the part named by `path` (RFC 3501 §6.4.5 part numbering).
///
/// Each number indexes the children of the current "container": a multipart's parts,
/// or for a message (top-level or encapsulated) whose body is not multipart, the single
/// part 1 which is that body itself. After selecting a message/rfc822 part, the next
/// number indexes inside its encapsulated message.
pub fn resolve<'i>(root: &'i BodyPart, path: &[u32]) -> Option<&'i BodyPart> {
    let mut body = root;
    let mut selected: Option<&BodyPart> = None;
    for &number in path {
        if let Some(previous) = selected {
            body = match &previous.message {
                Some(message) => &message.body,
                None if previous.is_multipart() => previous,
                None => return None,
            };
        }
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        selected = Some(if body.is_multipart() {
            body.children.get(index)?
        } else if index == 0 {
            body
        } else {
            return None;
        });
    }
    selected
}

fn slice(raw: &[u8], start: u64, end: u64) -> Option<Cow<'_, [u8]>> {
    let start = usize::try_from(start).ok()?;
    let end = usize::try_from(end).ok()?;
    raw.get(start..end).map(Cow::Borrowed)
}

/// HEADER.FIELDS[.NOT]: the matching (or non-matching) fields verbatim, folding kept,
/// followed by the blank line (RFC 3501 §6.4.5).
fn fields<'a>(
    raw: &'a [u8],
    start: u64,
    end: u64,
    names: &[String],
    not: bool,
) -> Option<Cow<'a, [u8]>> {
    let start = usize::try_from(start).ok()?;
    let end = usize::try_from(end).ok()?;
    if start > end || end > raw.len() {
        return None;
    }
    let block = header::scan(raw, start, end);
    let mut out = Vec::new();
    for field in &block.fields {
        let listed = names.iter().any(|n| field.is(raw, n));
        if listed != not {
            let bytes = field.bytes(raw);
            out.extend_from_slice(bytes);
            if !bytes.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    match block.blank_line {
        Some((s, e)) => out.extend_from_slice(raw.get(s..e).unwrap_or(b"\r\n")),
        None => out.extend_from_slice(b"\r\n"),
    }
    Some(Cow::Owned(out))
}
