//! MIME header fields of one entity (RFC 2045 §5-§7, RFC 2183, RFC 3066, RFC 2557),
//! as BODYSTRUCTURE needs them.
//!
//! Content-Type and Content-Disposition go through mail-parser, which handles quoting,
//! comments, RFC 2231 continuations/charsets and stray RFC 2047 words in parameters.
//! Its decoded parameter values can be non-ASCII; those are re-encoded as RFC 2047
//! UTF-8 encoded words so BODYSTRUCTURE stays 7-bit for IMAP4rev1 clients (which decode
//! encoded words in filenames in practice). Other fields are kept raw.

use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, HeaderValue};

use crate::header::{HeaderBlock, clean};
use crate::transfer::encode_base64;

/// A parameter list as BODYSTRUCTURE carries it: (lowercase name, value).
pub(crate) type Params = Vec<(String, String)>;

/// The MIME fields of one entity; `None`/empty where absent.
#[derive(Debug, Default)]
pub(crate) struct MimeHeader {
    /// Valid Content-Type: (type, subtype, params), lowercase type and subtype.
    pub content_type: Option<(String, String, Params)>,
    /// Content-Transfer-Encoding, lowercase; "7bit" when absent (RFC 2045 §6.1).
    pub encoding: String,
    pub id: Option<String>,
    pub description: Option<String>,
    pub md5: Option<String>,
    pub disposition: Option<(String, Params)>,
    pub language: Vec<String>,
    pub location: Option<String>,
}

/// RFC 2045 §5.1 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (33..=126).contains(&b) && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

fn parse_structured(raw_value: &[u8]) -> Option<ContentType<'static>> {
    match MessageStream::new(raw_value).parse_content_type() {
        HeaderValue::ContentType(ct) => Some(ContentType {
            c_type: ct.c_type.into_owned().into(),
            c_subtype: ct.c_subtype.map(|s| s.into_owned().into()),
            attributes: ct.attributes.map(|attrs| {
                attrs
                    .into_iter()
                    .map(|a| mail_parser::Attribute {
                        name: a.name.into_owned().into(),
                        value: a.value.into_owned().into(),
                    })
                    .collect()
            }),
        }),
        _ => None,
    }
}

/// Normalises mail-parser's attributes into BODYSTRUCTURE parameters.
fn params(ct: &ContentType<'_>) -> Params {
    let attrs = ct.attributes.as_deref().unwrap_or_default();
    attrs
        .iter()
        .filter(|a| {
            // mail-parser reports RFC 2231 languages as synthetic "<name>-language"
            // attributes; they are not parameters of the message.
            !a.name
                .strip_suffix("-language")
                .is_some_and(|base| attrs.iter().any(|b| b.name == base))
        })
        .filter(|a| !a.name.is_empty())
        .map(|a| (clean(&a.name.to_ascii_lowercase()), encode_value(&a.value)))
        .collect()
}

/// Keeps ASCII values as they are; non-ASCII becomes one RFC 2047 B-encoded UTF-8 word.
fn encode_value(value: &str) -> String {
    let value = clean(value);
    if value.is_ascii() {
        value
    } else {
        format!("=?utf-8?B?{}?=", encode_base64(value.as_bytes()))
    }
}

/// First token of a raw value: lowercase, comments and parameters dropped.
fn first_token(value: &str) -> Option<String> {
    let token = value
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .find(|s| !s.is_empty())?;
    Some(token.to_ascii_lowercase())
}

impl MimeHeader {
    /// Reads the MIME fields of `block` (first occurrence of each).
    pub(crate) fn read(raw: &[u8], block: &HeaderBlock) -> MimeHeader {
        let text = |name: &str| block.first(raw, name).map(|f| f.unfolded(raw));
        let structured = |name: &str| {
            block
                .first(raw, name)
                .and_then(|f| parse_structured(&f.value_for_parser(raw)))
        };

        // RFC 2045 §5.2: a missing or syntactically invalid Content-Type means the
        // default; the caller picks the default because it depends on the parent.
        let content_type = structured("content-type").and_then(|ct| {
            let ctype = ct.c_type.to_ascii_lowercase();
            let subtype = ct.c_subtype.as_deref()?.to_ascii_lowercase();
            (is_token(&ctype) && is_token(&subtype)).then(|| (ctype, subtype, params(&ct)))
        });
        let disposition = structured("content-disposition").and_then(|ct| {
            let kind = ct.c_type.to_ascii_lowercase();
            is_token(&kind).then(|| (kind, params(&ct)))
        });
        let encoding = text("content-transfer-encoding")
            .and_then(|v| first_token(&v))
            .unwrap_or_else(|| "7bit".to_string());
        let language = text("content-language")
            .map(|v| {
                v.split(',')
                    .filter_map(first_token_keep_case)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();

        MimeHeader {
            content_type,
            encoding,
            id: text("content-id"),
            description: text("content-description"),
            md5: text("content-md5"),
            disposition,
            language,
            location: text("content-location"),
        }
    }
}

fn first_token_keep_case(value: &str) -> Option<String> {
    value
        .split(|c: char| c.is_whitespace() || c == '(')
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::header::scan;

    fn read(raw: &[u8]) -> MimeHeader {
        MimeHeader::read(raw, &scan(raw, 0, raw.len()))
    }

    #[test]
    fn content_type_and_params() {
        let m = read(b"Content-Type: Text/HTML; Charset=\"UTF-8\"; format=flowed\r\n\r\n");
        let (t, s, p) = m.content_type.unwrap();
        assert_eq!((t.as_str(), s.as_str()), ("text", "html"));
        assert_eq!(
            p,
            vec![
                ("charset".into(), "UTF-8".into()),
                ("format".into(), "flowed".into())
            ]
        );
        assert_eq!(m.encoding, "7bit");
    }

    #[test]
    fn invalid_content_type_is_none() {
        assert!(
            read(b"Content-Type: garbage\r\n\r\n")
                .content_type
                .is_none()
        );
        assert!(read(b"Content-Type: \r\n\r\n").content_type.is_none());
    }

    #[test]
    fn rfc2231_filename_is_reencoded_as_ascii() {
        let m = read(
            b"Content-Disposition: attachment;\r\n filename*0*=utf-8''caf%C3%A9;\r\n filename*1=.txt\r\n\r\n",
        );
        let (kind, p) = m.disposition.unwrap();
        assert_eq!(kind, "attachment");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "filename");
        assert!(p[0].1.is_ascii());
        assert_eq!(p[0].1, "=?utf-8?B?Y2Fmw6kudHh0?=");
    }

    #[test]
    fn other_fields() {
        let m = read(
            b"Content-Transfer-Encoding: BASE64 (comment)\nContent-ID: <x@y>\nContent-Description: a\n d\nContent-MD5: abc=\nContent-Language: en, de-DE\nContent-Location: http://x/\n\n",
        );
        assert_eq!(m.encoding, "base64");
        assert_eq!(m.id.as_deref(), Some("<x@y>"));
        assert_eq!(m.description.as_deref(), Some("a d"));
        assert_eq!(m.md5.as_deref(), Some("abc="));
        assert_eq!(m.language, vec!["en".to_string(), "de-DE".to_string()]);
        assert_eq!(m.location.as_deref(), Some("http://x/"));
    }
}
