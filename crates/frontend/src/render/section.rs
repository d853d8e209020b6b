//! BODY[section]<partial> and RFC822.* data (RFC 3501 §6.4.5, §7.4.2).
//!
//! The section spec is translated to `mailraft_mime::Section` and the bytes are sliced out of the
//! fetched message with `mailraft_mime::section`. When only the header was fetched
//! (`BodyWanted::BodyHeader`) and no structure, top-level HEADER and HEADER.FIELDS still work: the
//! header is the whole buffer.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{Part, Section};
use mailraft_mime::{MessageInfo, Section as MimeSection, SectionText};

/// Translates an imap-types section (`None` is `BODY[]`).
pub fn to_mime(section: Option<&Section<'_>>) -> MimeSection {
    let path = |p: Option<&Part>| -> Vec<u32> {
        p.map(|p| p.0.as_ref().iter().map(|n| n.get()).collect())
            .unwrap_or_default()
    };
    let names = |list: &[AString<'_>]| -> Vec<String> {
        list.iter()
            .map(|n| String::from_utf8_lossy(n.as_ref()).into_owned())
            .collect()
    };
    let (part, text) = match section {
        None => (Vec::new(), SectionText::Full),
        Some(Section::Part(p)) => (path(Some(p)), SectionText::Full),
        Some(Section::Header(p)) => (path(p.as_ref()), SectionText::Header),
        Some(Section::HeaderFields(p, list)) => (
            path(p.as_ref()),
            SectionText::HeaderFields {
                names: names(list.as_ref()),
                not: false,
            },
        ),
        Some(Section::HeaderFieldsNot(p, list)) => (
            path(p.as_ref()),
            SectionText::HeaderFields {
                names: names(list.as_ref()),
                not: true,
            },
        ),
        Some(Section::Text(p)) => (path(p.as_ref()), SectionText::Text),
        Some(Section::Mime(p)) => (path(Some(p)), SectionText::Mime),
    };
    MimeSection { part, text }
}

/// Whether a section can be answered from the top-level header alone (no structure needed).
pub fn header_only(section: &MimeSection) -> bool {
    section.part.is_empty()
        && matches!(
            section.text,
            SectionText::Header | SectionText::HeaderFields { .. }
        )
}

/// The bytes of `section` in `raw`. A part that does not exist yields an empty string (RFC 3501
/// leaves this open; an empty string keeps clients that expect a string working).
///
/// `info` may be `None` for `BODY[]` and for [`header_only`] sections (where `raw` may be just
/// the header); other sections return `None` without it.
pub fn extract<'a>(
    raw: &'a [u8],
    info: Option<&MessageInfo>,
    section: &MimeSection,
) -> Option<Cow<'a, [u8]>> {
    if section.part.is_empty() && section.text == SectionText::Full {
        // BODY[] / RFC822 is the whole buffer: no structure needed.
        return Some(Cow::Borrowed(raw));
    }
    match info {
        Some(info) => Some(mailraft_mime::section(raw, info, section).unwrap_or_default()),
        None if header_only(section) => {
            // Only top-level HEADER/HEADER.FIELDS reach here, which read `header_len` alone.
            let len = raw.len() as u64;
            let info = MessageInfo {
                size: len,
                header_len: len,
                ..MessageInfo::default()
            };
            Some(Cow::Owned(
                mailraft_mime::section(raw, &info, section)
                    .unwrap_or_default()
                    .into_owned(),
            ))
        }
        None => None,
    }
}

/// Applies `<origin.length>`: the substring starting at `origin`, at most `length` octets, empty
/// if `origin` is beyond the end (RFC 3501 §6.4.5).
pub fn partial(data: &[u8], range: Option<(u32, NonZeroU32)>) -> &[u8] {
    let Some((origin, length)) = range else {
        return data;
    };
    let start = usize::try_from(origin)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let len = usize::try_from(length.get()).unwrap_or(usize::MAX);
    let end = start.saturating_add(len).min(data.len());
    &data[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[test]
    fn partial_ranges() {
        let d = b"0123456789";
        assert_eq!(partial(d, None), d);
        assert_eq!(partial(d, Some((0, nz(3)))), b"012");
        assert_eq!(partial(d, Some((8, nz(5)))), b"89");
        assert_eq!(partial(d, Some((10, nz(1)))), b"");
        assert_eq!(partial(d, Some((u32::MAX, nz(u32::MAX)))), b"");
    }

    #[test]
    fn header_without_structure() {
        let raw = b"Subject: hi\r\nFrom: a@b\r\n\r\n";
        let s = MimeSection {
            part: vec![],
            text: SectionText::HeaderFields {
                names: vec!["subject".into()],
                not: false,
            },
        };
        assert_eq!(
            extract(raw, None, &s).as_deref(),
            Some(&b"Subject: hi\r\n\r\n"[..])
        );
        let text = MimeSection {
            part: vec![],
            text: SectionText::Text,
        };
        assert_eq!(extract(raw, None, &text), None);
    }
}
