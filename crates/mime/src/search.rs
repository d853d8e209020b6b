//! Decoded views of a message for SEARCH (RFC 3501 §6.4.4): header values with RFC 2047
//! words decoded, body text decoded from transfer encoding and charset, and the Date:
//! header as a timestamp. These parse on demand; nothing here is stored.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{DateTime, HeaderValue};

use crate::analyze;
use crate::header::{self, Field};
use crate::structure::BodyPart;
use crate::transfer::transfer_decode;

/// Decoded (RFC 2047) values of every occurrence of header `name` in the top-level
/// header, in order; `name` is case-insensitive. Used by SEARCH HEADER/FROM/TO/CC/BCC/SUBJECT.
///
/// For an address field (`ADDRESS_FIELDS`) the values are followed by every address it
/// holds as `local@domain`, parsed as for ENVELOPE: RFC 3501 §6.4.4 defines FROM/TO/CC/BCC
/// on "the envelope structure's" field, and RFC 5322 §3.4.1 allows comments and folding
/// whitespace between the tokens of an addr-spec (`<user (c)@ (c) example.org>`), which
/// a substring match on the header text alone would miss.
pub fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let block = header::scan(raw, 0, raw.len());
    let fields: Vec<&Field> = block.fields.iter().filter(|f| f.is(raw, name)).collect();
    let mut values: Vec<String> = fields.iter().map(|f| decode_value(raw, f)).collect();
    if ADDRESS_FIELDS.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        for field in fields {
            values.extend(addr_specs(&field.unfolded(raw)));
        }
    }
    values
}

/// Header fields whose value is an address list (RFC 5322 §3.6.2, §3.6.3, §3.6.6).
const ADDRESS_FIELDS: [&str; 11] = [
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
];

/// The addr-specs of an address list without comments and CFWS (RFC 5322 §3.4.1), by the
/// ENVELOPE parser so SEARCH matches what FETCH ENVELOPE shows; group markers are skipped.
fn addr_specs(value: &str) -> impl Iterator<Item = String> {
    crate::address::parse_address_list(value).into_iter().filter_map(|a| match (a.mailbox, a.host) {
        (Some(mailbox), Some(host)) if !host.is_empty() => Some(format!("{mailbox}@{host}")),
        (Some(mailbox), Some(_)) if !mailbox.is_empty() => Some(mailbox),
        _ => None,
    })
}

/// Unfolds and decodes RFC 2047 encoded words with mail-parser's unstructured parser;
/// undecodable bytes become U+FFFD.
fn decode_value(raw: &[u8], field: &Field) -> String {
    let value = field.value_for_parser(raw);
    match MessageStream::new(&value).parse_unstructured() {
        HeaderValue::Text(text) => header::clean(&text).trim().to_string(),
        _ => String::new(),
    }
}

/// Text of every text/* part (encapsulated messages included), decoded from its
/// transfer encoding and charset to UTF-8 and joined with newlines. Used by SEARCH
/// BODY/TEXT. HTML is included as decoded markup.
pub fn body_text(raw: &[u8]) -> String {
    let info = analyze(raw);
    let mut out = String::new();
    collect_text(raw, &info.body, &mut out);
    out
}

fn collect_text(raw: &[u8], part: &BodyPart, out: &mut String) {
    if let Some(message) = &part.message {
        collect_text(raw, &message.body, out);
    } else if part.is_multipart() {
        for child in &part.children {
            collect_text(raw, child, out);
        }
    } else if part.content_type == "text" {
        let start = usize::try_from(part.body_start).unwrap_or(usize::MAX);
        let end = usize::try_from(part.body_end).unwrap_or(usize::MAX);
        let Some(bytes) = raw.get(start..end) else {
            return;
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&decode_text(part, bytes));
    }
}

/// Transfer-decodes (with [`transfer_decode`], as FETCH BINARY does) then charset-decodes
/// one text part. An unknown transfer encoding falls back to the raw bytes; unknown charsets
/// (and us-ascii, which in practice often hides unlabeled UTF-8) are read as UTF-8 with
/// replacement characters.
fn decode_text(part: &BodyPart, bytes: &[u8]) -> String {
    let decoded = transfer_decode(&part.encoding, bytes);
    let bytes = decoded.as_deref().unwrap_or(bytes);
    let charset = part
        .params
        .iter()
        .find(|(n, _)| n == "charset")
        .map(|(_, v)| v.as_str())
        .unwrap_or("us-ascii");
    let is_ascii_or_utf8 = ["us-ascii", "ascii", "utf-8", "utf8"]
        .iter()
        .any(|c| charset.eq_ignore_ascii_case(c));
    match charset_decoder(charset.as_bytes()) {
        Some(decode) if !is_ascii_or_utf8 => decode(bytes),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn date(raw: &[u8]) -> Option<DateTime> {
    let block = header::scan(raw, 0, raw.len());
    let field = block.first(raw, "date")?;
    let value = field.value_for_parser(raw);
    match MessageStream::new(&value).parse_date() {
        HeaderValue::DateTime(dt) if dt.is_valid() => Some(dt),
        _ => None,
    }
}

/// The Date: header as Unix seconds (UTC), `None` if absent or unparsable.
pub fn sent_date(raw: &[u8]) -> Option<i64> {
    date(raw).map(|dt| dt.to_timestamp())
}

/// The Date: header's wall-clock time, as seconds since the epoch as if it were UTC
/// (its zone offset ignored). RFC 3501 §6.4.4 SENTBEFORE/SENTON/SENTSINCE compare the
/// date "disregarding time and timezone", i.e. `sent_date_local(raw)?.div_euclid(86400)`
/// is the day number of the date written in the header.
pub fn sent_date_local(raw: &[u8]) -> Option<i64> {
    date(raw).map(|dt| dt.to_timestamp_local())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_values_decode_encoded_words() {
        let raw = b"Subject: =?utf-8?q?caf=C3=A9?= au lait\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody";
        assert_eq!(
            header_values(raw, "subject"),
            vec!["café au lait".to_string()]
        );
        assert_eq!(
            header_values(raw, "X-A"),
            vec!["1".to_string(), "2".to_string()]
        );
        assert!(header_values(raw, "missing").is_empty());
    }

    #[test]
    fn address_fields_yield_addr_specs_without_comments() {
        // RFC 5322 §3.4.1: CFWS may surround the "@" of an addr-spec.
        let raw = b"From: <user-from (comment)@ (comment) domain.org>\r\n\
To: a (x) @ b.example, Grp: c@d.example;\r\nSubject: s (not an address)\r\n\r\n";
        let from = header_values(raw, "FROM");
        assert_eq!(from[0], "<user-from (comment)@ (comment) domain.org>");
        assert!(from.contains(&"user-from@domain.org".to_string()), "{from:?}");
        let to = header_values(raw, "to");
        assert_eq!(to[1..], ["a@b.example".to_string(), "c@d.example".to_string()]);
        assert_eq!(header_values(raw, "subject"), vec!["s (not an address)".to_string()]);
    }

    #[test]
    fn sent_dates() {
        let raw = b"Date: Mon, 1 Jan 2024 23:30:00 -0500\r\n\r\n";
        assert_eq!(sent_date(raw), Some(1_704_169_800));
        assert_eq!(sent_date_local(raw), Some(1_704_151_800));
        assert_eq!(
            sent_date_local(raw).map(|t| t.div_euclid(86400)),
            Some(19723)
        );
        assert_eq!(sent_date(b"Date: nonsense\r\n\r\n"), None);
        assert_eq!(sent_date(b"Subject: x\r\n\r\n"), None);
    }

    #[test]
    fn body_text_decodes_parts() {
        let raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n\
--x\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n\
--x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naMOpbGxv\r\n\
--x\r\nContent-Type: application/octet-stream\r\n\r\nbinary\r\n--x--\r\n";
        assert_eq!(body_text(raw), "café\nhéllo");
    }

    #[test]
    fn body_text_survives_malformed_transfer_encodings() {
        // One bad escape does not leave the whole part undecoded (RFC 2045 §6.7 note (2)),
        // nor does a stray character in base64 (§6.8).
        let raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n\
--x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =ZZ soft=\r\n break\r\n\
--x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naMOp*bGxv\r\n--x--\r\n";
        assert_eq!(body_text(raw), "café =ZZ soft break\nhéllo");
    }
}
