//! BINARY[section] and BINARY.SIZE[section] (RFC 3516): a part with its content transfer encoding
//! removed.
//!
//! Decoding is lenient, like mail clients: base64 ignores characters outside the alphabet and
//! missing padding; quoted-printable keeps malformed escapes literally. Only an encoding this
//! server does not know fails, with `NO [UNKNOWN-CTE]` (RFC 3516 §4.3).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use imap_codec::imap_types::core::{LiteralMode, NString8};
use imap_codec::imap_types::extensions::binary::Literal8;
use mailraft_mime::MessageInfo;

use super::strings::literal;

/// Base64 without padding rules or trailing-bit checks (input is filtered first).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a part cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryError {
    /// The part does not exist.
    NoSuchPart,
    /// Unknown Content-Transfer-Encoding (RFC 3516 §4.3 UNKNOWN-CTE).
    UnknownCte(String),
}

/// The decoded content of part `path` (empty path: the whole message, undecoded).
pub fn decoded<'a>(
    raw: &'a [u8],
    info: &MessageInfo,
    path: &[u32],
) -> Result<Cow<'a, [u8]>, BinaryError> {
    if path.is_empty() {
        return Ok(Cow::Borrowed(raw));
    }
    let part = mailraft_mime::resolve(&info.body, path).ok_or(BinaryError::NoSuchPart)?;
    let start = usize::try_from(part.body_start).map_err(|_| BinaryError::NoSuchPart)?;
    let end = usize::try_from(part.body_end).map_err(|_| BinaryError::NoSuchPart)?;
    let body = raw.get(start..end).ok_or(BinaryError::NoSuchPart)?;
    if part.is_multipart() || part.message.is_some() {
        // Composite parts have no encoding of their own (RFC 2045 §6.4).
        return Ok(Cow::Borrowed(body));
    }
    match part.encoding.as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(Cow::Borrowed(body)),
        "base64" => Ok(Cow::Owned(base64_decode(body))),
        "quoted-printable" => Ok(Cow::Owned(qp_decode(body))),
        other => Err(BinaryError::UnknownCte(other.to_owned())),
    }
}

/// The response value: a `literal8` only when the data holds NUL (RFC 3516 §4.2 allows it only
/// for BINARY), a normal literal otherwise.
pub fn value(data: &[u8]) -> NString8<'static> {
    if data.contains(&0) {
        NString8::Literal8(Literal8 {
            data: Cow::Owned(data.to_vec()),
            mode: LiteralMode::Sync,
        })
    } else {
        NString8::NString(literal(data))
    }
}

/// Lenient base64 (RFC 2045 §6.8: "characters not found in the table … should be ignored").
fn base64_decode(body: &[u8]) -> Vec<u8> {
    // Padding ends the encoded data; anything after it is not part of the content.
    let data = body.split(|&b| b == b'=').next().unwrap_or_default();
    let mut clean: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    // A dangling single character carries no whole octet.
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    LENIENT.decode(&clean).unwrap_or_default()
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` escapes, soft line breaks `=` CRLF; trailing
/// whitespace before a line break is dropped (rule 3).
fn qp_decode(body: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'=' {
            let rest = &body[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(&h), Some(&l)) = (rest.first(), rest.get(1))
                && let (Some(h), Some(l)) = (hex(h), hex(l))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            // A soft break followed only by whitespace, or a malformed escape: keep it.
            out.push(b);
            i += 1;
            continue;
        }
        if b == b'\r' || b == b'\n' {
            while out.last().is_some_and(|&c| c == b' ' || c == b'\t') {
                out.pop();
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_lenient() {
        assert_eq!(base64_decode(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(base64_decode(b"aGVsbG8"), b"hello");
        assert_eq!(base64_decode(b"aGVsbG8=x"), b"hello");
        assert_eq!(base64_decode(b"AAEC"), [0u8, 1, 2]);
    }

    #[test]
    fn quoted_printable() {
        assert_eq!(
            qp_decode(b"caf=C3=A9 =\r\nau lait  \r\nx=3d=3D"),
            "café au lait\r\nx==".as_bytes()
        );
        assert_eq!(qp_decode(b"bad =ZZ escape="), b"bad =ZZ escape=");
    }

    #[test]
    fn decodes_parts() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nxx\r\n--b--\r\n";
        let info = mailraft_mime::analyze(raw);
        assert_eq!(decoded(raw, &info, &[1]).as_deref(), Ok(&[0u8, 1, 2][..]));
        assert_eq!(
            decoded(raw, &info, &[2]),
            Err(BinaryError::UnknownCte("x-uuencode".into()))
        );
        assert_eq!(decoded(raw, &info, &[3]), Err(BinaryError::NoSuchPart));
        assert_eq!(decoded(raw, &info, &[]).as_deref(), Ok(&raw[..]));
        assert!(matches!(value(&[0, 1]), NString8::Literal8(_)));
        assert!(matches!(value(b"ab"), NString8::NString(_)));
    }
}
