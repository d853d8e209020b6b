//! Raw header scanning shared by every other module.
//!
//! A header block (the top-level message header, a MIME part header or the header of
//! an encapsulated message) is located by byte offsets only: where it starts, which
//! byte ranges are the individual fields (including their folded continuation lines)
//! and where the terminating blank line is. Nothing is decoded here, so the same scan
//! serves ENVELOPE (raw values), BODY[HEADER.FIELDS] (verbatim lines) and SEARCH
//! (decoded values, decoded later by the caller).

use std::borrow::Cow;

/// One header field: `Name: value CRLF` plus any folded continuation lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// Offset of the first byte of the field name.
    pub start: usize,
    /// Offset just past the field name (trailing whitespace before the colon excluded).
    pub name_end: usize,
    /// Offset just past the colon.
    pub value_start: usize,
    /// Offset just past the last line terminator of the field (or the block limit).
    pub end: usize,
}

impl Field {
    /// The field name as written (case preserved).
    pub fn name<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.start..self.name_end).unwrap_or_default()
    }

    /// Case-insensitive name comparison (RFC 5322 §1.2.2: field names are case-insensitive).
    pub fn is(&self, raw: &[u8], name: &str) -> bool {
        self.name(raw).eq_ignore_ascii_case(name.as_bytes())
    }

    /// The raw value bytes after the colon, folding and final line terminator included.
    pub fn raw_value<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.value_start..self.end).unwrap_or_default()
    }

    /// The whole field as it appears in the message (name, colon, value, terminators).
    pub fn bytes<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.start..self.end).unwrap_or_default()
    }

    /// The value unfolded (RFC 5322 §2.2.3) and trimmed, not decoded.
    pub fn unfolded(&self, raw: &[u8]) -> String {
        unfold(self.raw_value(raw))
    }

    /// The raw value guaranteed to end with LF: mail-parser's field parsers stop at the
    /// first line end that is not followed by whitespace, so they need one.
    pub fn value_for_parser<'a>(&self, raw: &'a [u8]) -> Cow<'a, [u8]> {
        let value = self.raw_value(raw);
        if value.ends_with(b"\n") {
            Cow::Borrowed(value)
        } else {
            let mut owned = value.to_vec();
            owned.extend_from_slice(b"\r\n");
            Cow::Owned(owned)
        }
    }
}

/// A located header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderBlock {
    /// Offset just past the header: past the blank line if there is one, otherwise
    /// the offset where the body is taken to begin.
    pub end: usize,
    /// The fields in order of appearance.
    pub fields: Vec<Field>,
    /// Byte range of the terminating blank line, if the header has one.
    pub blank_line: Option<(usize, usize)>,
}

impl HeaderBlock {
    /// First field with that name (RFC 3501 ENVELOPE and MIME use the first occurrence).
    pub fn first(&self, raw: &[u8], name: &str) -> Option<Field> {
        self.fields.iter().copied().find(|f| f.is(raw, name))
    }
}

/// Offset just past the next LF at or after `pos`, or `limit` if there is none.
pub(crate) fn line_end(raw: &[u8], pos: usize, limit: usize) -> usize {
    raw.get(pos..limit)
        .and_then(|s| s.iter().position(|&b| b == b'\n'))
        .map_or(limit, |i| pos + i + 1)
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_blank_line(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// If `line` starts a header field (RFC 5322 §2.2: printable name, optional obsolete
/// whitespace, colon), returns (name length, offset of the colon) relative to the line.
fn field_start(line: &[u8]) -> Option<(usize, usize)> {
    let first = *line.first()?;
    if is_wsp(first) {
        return None;
    }
    let colon = line.iter().position(|&b| b == b':' || b == b'\n')?;
    if line.get(colon) != Some(&b':') {
        return None;
    }
    let name = &line[..colon];
    let name_len = name.len() - name.iter().rev().take_while(|&&b| is_wsp(b)).count();
    // RFC 5322 §3.6.8 ftext: printable US-ASCII except colon.
    let valid = name_len > 0 && name[..name_len].iter().all(|&b| (33..=126).contains(&b));
    valid.then_some((name_len, colon))
}

/// Scans the header starting at `start`, never reading at or past `limit`.
///
/// Rules (lenient, because APPEND accepts whatever clients send):
/// - the header ends after the first empty line (RFC 5322 §2.1);
/// - if the very first line is neither a field nor empty, there is no header at all and
///   the body starts at `start` (garbage or headerless input is all body);
/// - later lines that are neither fields nor continuations stay in the header region but
///   belong to no field;
/// - without a blank line the header runs to `limit` and the body is empty.
pub(crate) fn scan(raw: &[u8], start: usize, limit: usize) -> HeaderBlock {
    let limit = limit.min(raw.len());
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = start.min(limit);
    // Whether the last line belonged to a field, so a continuation line extends it.
    let mut in_field = false;
    while pos < limit {
        let end = line_end(raw, pos, limit);
        let line = &raw[pos..end];
        if is_blank_line(line) {
            return HeaderBlock {
                end,
                fields,
                blank_line: Some((pos, end)),
            };
        }
        if let Some((name_len, colon)) = field_start(line) {
            fields.push(Field {
                start: pos,
                name_end: pos + name_len,
                value_start: pos + colon + 1,
                end,
            });
            in_field = true;
        } else if pos == start {
            return HeaderBlock {
                end: start,
                fields,
                blank_line: None,
            };
        } else if line.first().is_some_and(|&b| is_wsp(b)) && in_field {
            if let Some(last) = fields.last_mut() {
                last.end = end;
            }
        } else {
            in_field = false;
        }
        pos = end;
    }
    HeaderBlock {
        end: limit,
        fields,
        blank_line: None,
    }
}

/// RFC 5322 §2.2.3 unfolding: line breaks inside a value are removed, the whitespace
/// after them kept; then surrounding whitespace is trimmed. Control characters that
/// cannot travel in an IMAP string are dropped (see [`clean`]).
pub(crate) fn unfold(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    clean(&text).trim_matches([' ', '\t']).to_string()
}

/// Drops control characters (CR, LF, NUL, ...; TAB kept) so every string we store can
/// be sent as an IMAP quoted string or literal (RFC 3501 §4.3: no CR/LF in quoted
/// strings, no NUL anywhere).
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .filter(|&c| c == '\t' || !c.is_control())
        .collect()
}

/// Number of text lines in `bytes`: LF count, plus one for a final unterminated line.
pub(crate) fn count_lines(bytes: &[u8]) -> u64 {
    let lf = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    let partial = u64::from(bytes.last().is_some_and(|&b| b != b'\n'));
    lf + partial
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scan_crlf_header() {
        let raw = b"Subject: hi\r\n there\r\nFrom: a@b\r\n\r\nbody";
        let h = scan(raw, 0, raw.len());
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.fields[0].bytes(raw), b"Subject: hi\r\n there\r\n");
        assert_eq!(h.fields[0].unfolded(raw), "hi there");
        assert_eq!(h.fields[1].name(raw), b"From");
        assert_eq!(h.end, raw.len() - 4);
        assert_eq!(h.blank_line, Some((raw.len() - 6, raw.len() - 4)));
    }

    #[test]
    fn scan_lf_header_and_obsolete_space_before_colon() {
        let raw = b"Subject : x\nX: y\n\nb";
        let h = scan(raw, 0, raw.len());
        assert_eq!(h.fields[0].name(raw), b"Subject");
        assert!(h.fields[0].is(raw, "SUBJECT"));
        assert_eq!(h.end, 18);
    }

    #[test]
    fn headerless_input_is_all_body() {
        let raw = b"hello world\r\n\r\nmore";
        let h = scan(raw, 0, raw.len());
        assert_eq!(h.end, 0);
        assert!(h.fields.is_empty());
    }

    #[test]
    fn header_without_blank_line_runs_to_limit() {
        let raw = b"Subject: x";
        let h = scan(raw, 0, raw.len());
        assert_eq!(h.end, raw.len());
        assert_eq!(h.fields.len(), 1);
        assert_eq!(&*h.fields[0].value_for_parser(raw), b" x\r\n");
    }

    #[test]
    fn junk_line_inside_header_belongs_to_no_field() {
        let raw = b"A: 1\r\njunk line\r\n continued?\r\nB: 2\r\n\r\n";
        let h = scan(raw, 0, raw.len());
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.fields[0].bytes(raw), b"A: 1\r\n");
        assert_eq!(h.fields[1].bytes(raw), b"B: 2\r\n");
    }

    #[test]
    fn lines_are_counted() {
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a"), 1);
        assert_eq!(count_lines(b"a\r\n"), 1);
        assert_eq!(count_lines(b"a\r\nb"), 2);
    }
}
