//! The MIME tree (RFC 2045/2046) with exact byte offsets, as BODYSTRUCTURE and
//! BODY[section] need it.
//!
//! The walker works on offsets into the one raw message, so every part — including the
//! parts of encapsulated message/rfc822 messages — records absolute positions that
//! `section()` can slice later without parsing. Boundaries are recognised strictly
//! (RFC 2046 §5.1.1: at the start of a line, followed only by optional `--` and
//! whitespace), which keeps nested boundaries that share a prefix apart. Anything
//! malformed degrades to text/plain instead of failing.

use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::header::{self, HeaderBlock, count_lines, line_end};
use crate::mime_header::{MimeHeader, Params};

/// Nesting limit for multiparts and encapsulated messages. Deeper entities are kept as
/// opaque leaves so hostile input cannot blow the stack (here, in serde, or in the
/// front-end's BODYSTRUCTURE writer).
pub const MAX_DEPTH: usize = 48;

/// One MIME entity: everything BODYSTRUCTURE (and BODY) says about it, plus offsets.
///
/// Invariant: `header_start <= header_end == body_start <= body_end <= message size`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BodyPart {
    /// Lowercase media type, e.g. "text", "multipart", "message".
    pub content_type: String,
    /// Lowercase subtype, e.g. "plain", "mixed", "rfc822".
    pub subtype: String,
    /// Content-Type parameters in header order; `charset=us-ascii` is added for text
    /// when absent (RFC 2045 §5.2). Multiparts carry their `boundary` here.
    pub params: Vec<(String, String)>,
    /// Content-ID, raw.
    pub id: Option<String>,
    /// Content-Description, raw (not decoded).
    pub description: Option<String>,
    /// Content-Transfer-Encoding, lowercase; "7bit" when absent (RFC 2045 §6.1).
    pub encoding: String,
    /// Body octets as stored (still transfer-encoded).
    pub size: u64,
    /// Text lines of the body; only set for text/* and message/rfc822, else 0.
    pub lines: u64,
    /// Content-MD5, raw.
    pub md5: Option<String>,
    /// Content-Disposition type (lowercase) and parameters (RFC 2183).
    pub disposition: Option<(String, Vec<(String, String)>)>,
    /// Content-Language tags (RFC 3066).
    pub language: Vec<String>,
    /// Content-Location (RFC 2557).
    pub location: Option<String>,
    /// Offset of this entity's MIME header (for the top level: offset 0).
    pub header_start: u64,
    /// Offset just past the MIME header, blank line included.
    pub header_end: u64,
    /// Offset of the first body octet.
    pub body_start: u64,
    /// Offset just past the last body octet (the CRLF before a boundary excluded).
    pub body_end: u64,
    /// Children of a multipart, in order (part numbers 1..n). Empty otherwise.
    pub children: Vec<BodyPart>,
    /// For message/rfc822 with an identity transfer encoding: the encapsulated message.
    /// `None` for a base64/quoted-printable encoded message/rfc822 (its bytes cannot be
    /// addressed in the raw message); the front-end then sends it as a basic body.
    pub message: Option<Box<EncapsulatedMessage>>,
}

/// The message inside a message/rfc822 part.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EncapsulatedMessage {
    /// Its ENVELOPE.
    pub envelope: Envelope,
    /// Its body (root of its MIME tree); `body.header_start` is the part's `body_start`.
    pub body: BodyPart,
    /// Absolute offset just past its header (blank line included): N.HEADER is
    /// `[part.body_start, header_end)` and N.TEXT is `[header_end, part.body_end)`.
    pub header_end: u64,
}

impl BodyPart {
    /// True for multipart/* entities (which always have at least one child).
    pub fn is_multipart(&self) -> bool {
        self.content_type == "multipart"
    }
}

/// What a part is when it has no (valid) Content-Type (RFC 2045 §5.2, RFC 2046 §5.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefaultType {
    TextPlain,
    MessageRfc822,
}

fn text_plain() -> (String, String, Params) {
    (
        "text".to_string(),
        "plain".to_string(),
        vec![("charset".to_string(), "us-ascii".to_string())],
    )
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Parses a complete message (top-level or encapsulated) at `raw[start..end]`.
/// Returns (offset past its header, envelope, root body part).
pub(crate) fn parse_message(
    raw: &[u8],
    start: usize,
    end: usize,
    depth: usize,
) -> (usize, Envelope, BodyPart) {
    let block = header::scan(raw, start, end);
    let envelope = Envelope::from_header(raw, &block);
    let body = parse_entity(raw, start, &block, end, DefaultType::TextPlain, depth);
    (block.end, envelope, body)
}

fn parse_entity(
    raw: &[u8],
    header_start: usize,
    block: &HeaderBlock,
    end: usize,
    default: DefaultType,
    depth: usize,
) -> BodyPart {
    let mime = MimeHeader::read(raw, block);
    let body_start = block.end;
    let (mut ctype, mut subtype, mut params) = match (mime.content_type, default) {
        (Some(ct), _) => ct,
        (None, DefaultType::TextPlain) => text_plain(),
        (None, DefaultType::MessageRfc822) => ("message".into(), "rfc822".into(), Vec::new()),
    };

    let mut children = Vec::new();
    let mut message = None;
    if ctype == "multipart" {
        let boundary = param(&params, "boundary").filter(|b| !b.is_empty());
        if let (Some(boundary), true) = (boundary, depth < MAX_DEPTH) {
            // RFC 2046 §5.1.5: parts of multipart/digest default to message/rfc822.
            let child_default = if subtype == "digest" {
                DefaultType::MessageRfc822
            } else {
                DefaultType::TextPlain
            };
            for (start, part_end) in split_multipart(raw, body_start, end, boundary.as_bytes()) {
                let child_block = header::scan(raw, start, part_end);
                children.push(parse_entity(
                    raw,
                    start,
                    &child_block,
                    part_end,
                    child_default,
                    depth + 1,
                ));
            }
        }
        // A multipart without boundary or without any part cannot be described as one
        // (BODYSTRUCTURE needs at least one child): present it as text.
        if children.is_empty() {
            (ctype, subtype, params) = text_plain();
        }
    } else if ctype == "message"
        && subtype == "rfc822"
        && matches!(mime.encoding.as_str(), "7bit" | "8bit" | "binary")
        && depth < MAX_DEPTH
    {
        // RFC 3501 §7.4.2: message/rfc822 carries the envelope and body of the
        // encapsulated message; it is parsed in place so its offsets stay absolute.
        let (header_end, envelope, body) = parse_message(raw, body_start, end, depth + 1);
        message = Some(Box::new(EncapsulatedMessage {
            envelope,
            body,
            header_end: header_end as u64,
        }));
    }

    if ctype == "text" && param(&params, "charset").is_none() {
        params.insert(0, ("charset".to_string(), "us-ascii".to_string()));
    }
    let body = raw.get(body_start..end).unwrap_or_default();
    let lines = if ctype == "text" || (ctype == "message" && subtype == "rfc822") {
        count_lines(body)
    } else {
        0
    };

    BodyPart {
        content_type: ctype,
        subtype,
        params,
        id: mime.id,
        description: mime.description,
        encoding: mime.encoding,
        size: body.len() as u64,
        lines,
        md5: mime.md5,
        disposition: mime.disposition,
        language: mime.language,
        location: mime.location,
        header_start: header_start as u64,
        header_end: body_start as u64,
        body_start: body_start as u64,
        body_end: end as u64,
        children,
        message,
    }
}

/// If a delimiter line for `boundary` starts at `pos`, returns whether it is the close
/// delimiter. RFC 2046 §5.1.1: `--boundary` or `--boundary--`, then only transport
/// padding (whitespace) up to the line end.
fn delimiter_at(raw: &[u8], pos: usize, end: usize, boundary: &[u8]) -> Option<bool> {
    let line = raw.get(pos..end)?;
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    let ends_line =
        rest.is_empty() || rest.starts_with(b"\n") || rest.starts_with(b"\r\n") || rest == b"\r";
    ends_line.then_some(close)
}

/// Splits the body of a multipart at `raw[start..end]` into its parts' byte ranges.
/// Preamble and epilogue are skipped; the line break before each delimiter belongs to
/// the delimiter (RFC 2046 §5.1.1). A missing close delimiter ends the last part at
/// `end`.
fn split_multipart(raw: &[u8], start: usize, end: usize, boundary: &[u8]) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut pos = start;
    while pos < end {
        let next = line_end(raw, pos, end);
        if let Some(close) = delimiter_at(raw, pos, next, boundary) {
            if let Some(part_start) = current {
                parts.push((part_start, content_end(raw, part_start, pos)));
            }
            if close {
                return parts;
            }
            current = Some(next);
        }
        pos = next;
    }
    if let Some(part_start) = current {
        parts.push((part_start, end));
    }
    parts
}

/// End of a part's content given the offset of the next delimiter line: the CRLF (or
/// bare LF) before it is excluded, but never before the part's own start.
fn content_end(raw: &[u8], part_start: usize, delimiter: usize) -> usize {
    let mut end = delimiter;
    if end > part_start && raw.get(end - 1) == Some(&b'\n') {
        end -= 1;
        if end > part_start && raw.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
    }
    end
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn split_basic_crlf() {
        let body = b"preamble\r\n--b\r\npart1\r\n--b\r\n\r\npart2\r\n--b--\r\nepilogue";
        let parts = split_multipart(body, 0, body.len(), b"b");
        let got: Vec<&[u8]> = parts.iter().map(|&(s, e)| &body[s..e]).collect();
        assert_eq!(got, vec![&b"part1"[..], &b"\r\npart2"[..]]);
    }

    #[test]
    fn split_lf_and_empty_part_and_padding() {
        let body = b"--b  \n--b\nx\n--b--";
        let parts = split_multipart(body, 0, body.len(), b"b");
        let got: Vec<&[u8]> = parts.iter().map(|&(s, e)| &body[s..e]).collect();
        assert_eq!(got, vec![&b""[..], &b"x"[..]]);
    }

    #[test]
    fn prefix_boundaries_do_not_match() {
        let body = b"--outer\r\n--outer-inner\r\nx\r\n--outer--\r\n";
        let parts = split_multipart(body, 0, body.len(), b"outer");
        assert_eq!(parts.len(), 1);
        assert_eq!(&body[parts[0].0..parts[0].1], b"--outer-inner\r\nx");
    }

    #[test]
    fn unterminated_multipart_runs_to_end() {
        let body = b"--b\r\nabc\r\n";
        let parts = split_multipart(body, 0, body.len(), b"b");
        assert_eq!(parts, vec![(5, body.len())]);
        assert!(split_multipart(b"no delimiters", 0, 13, b"b").is_empty());
    }
}
