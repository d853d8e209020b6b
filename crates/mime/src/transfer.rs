//! Content-Transfer-Encoding (RFC 2045 §6): the project's only quoted-printable and base64
//! decoders.
//!
//! FETCH BINARY (RFC 3516, `frontend/src/render/binary.rs`) and SEARCH BODY/TEXT
//! ([`crate::body_text`]) both call [`transfer_decode`], so what a client downloads with
//! BINARY is exactly the text SEARCH matched. Base64 is the workspace's `base64` crate (also
//! the encoder of `mime_header.rs`); RFC 2047 encoded words in header fields are a different
//! syntax (`Q` maps `_` to a space and has no soft line breaks) and stay inside mail-parser's
//! header parser.
//!
//! Decoding never fails on the data: mail is full of slightly broken encoders, and both users
//! want the best reading rather than nothing (RFC 2045 §6.7 and §6.8 describe what a robust
//! decoder does with each defect, cited below). Only an encoding this module does not know is
//! an error ([`MimeError::UnknownTransferEncoding`]), which BINARY turns into `NO
//! [UNKNOWN-CTE]` (RFC 3516 §4.2) and SEARCH into "search the raw bytes".

use std::borrow::Cow;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

use crate::MimeError;

/// `body` with its Content-Transfer-Encoding removed. `encoding` is the lowercase token from
/// the part's header (`BodyPart::encoding`); empty means absent, i.e. 7bit (RFC 2045 §6.1).
/// The identity encodings borrow `body`.
pub fn transfer_decode<'a>(encoding: &str, body: &'a [u8]) -> Result<Cow<'a, [u8]>, MimeError> {
    match encoding {
        "" | "7bit" | "8bit" | "binary" => Ok(Cow::Borrowed(body)),
        "base64" => Ok(Cow::Owned(decode_base64(body))),
        "quoted-printable" => Ok(Cow::Owned(decode_quoted_printable(body))),
        other => Err(MimeError::UnknownTransferEncoding(other.to_owned())),
    }
}

/// Base64 that accepts a final quantum without its padding and non-zero trailing bits: the
/// input was filtered first, so only the length of the last quantum can be off.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 (RFC 2045 §6.8) through the `base64` crate, made robust the way §6.8 asks:
/// - "characters not found in the table … must be ignored": line breaks, spaces and any
///   other stray octet are dropped before decoding;
/// - "the occurrence of any '=' characters may be taken as evidence that the end of the data
///   has been reached": nothing after the first `=` is decoded;
/// - a missing final padding is accepted, and a dangling single character (6 bits, not a
///   whole octet) is dropped.
pub(crate) fn decode_base64(body: &[u8]) -> Vec<u8> {
    let data = body.split(|&b| b == b'=').next().unwrap_or_default();
    let mut clean: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    // After filtering and trimming every input is decodable; the fallback is never taken.
    LENIENT.decode(&clean).unwrap_or_default()
}

/// Quoted-printable (RFC 2045 §6.7).
///
/// Hand-written because no library in the workspace decodes it robustly: the `base64` crate
/// has no QP, and mail-parser's public `quoted_printable_decode` gives up on the whole part at
/// the first malformed escape (`=ZZ`, `==`) and drops bare CRs, where §6.7 asks to keep going.
/// This is the only QP body decoder of the project (see the module docs).
///
/// - `=XX` is the octet XX; lowercase hex digits are accepted (§6.7 (1) allows "a robust
///   implementation" to recognise them).
/// - `=` at the end of a line is a soft line break and disappears with the line break (§6.7
///   (5)); white space between it and the line break was added in transit and goes too
///   (§6.7 (3)). A part's body ends before the CRLF that precedes the next boundary, so `=`
///   (plus white space) at the very end of the input is a soft break as well.
/// - Any other `=` is a malformed escape and is kept as is, with what follows it (the robust
///   reading of §6.7 note (2)).
/// - White space at the end of a line, or of the input, is dropped (§6.7 (3)).
/// - Line breaks and every other octet, bare CR and LF included, are kept unchanged.
pub(crate) fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(body.len());
    // `out[..data]` ends with decoded data (`=20` is a space the sender meant): trailing white
    // space is only trimmed after it.
    let mut data = 0;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if b == b'=' {
            let rest = &body[i + 1..];
            let escape = rest
                .first()
                .and_then(|&h| hex(h))
                .zip(rest.get(1).and_then(|&l| hex(l)));
            if let Some((high, low)) = escape {
                out.push((high << 4) | low);
                data = out.len();
                i += 3;
                continue;
            }
            let spaces = rest.iter().take_while(|b| is_space(b)).count();
            let after = &rest[spaces..];
            let soft_break = if after.starts_with(b"\r\n") {
                Some(2)
            } else if after.starts_with(b"\n") {
                Some(1)
            } else if after.is_empty() {
                Some(0)
            } else {
                None
            };
            match soft_break {
                Some(len) => i += 1 + spaces + len,
                None => {
                    out.push(b);
                    i += 1;
                }
            }
            continue;
        }
        if b == b'\r' || b == b'\n' {
            trim_trailing_space(&mut out, data);
        }
        out.push(b);
        if !is_space(&b) {
            data = out.len();
        }
        i += 1;
    }
    trim_trailing_space(&mut out, data);
    out
}

/// Drops the spaces and tabs at the end of `out`, but not below `keep` (transport padding,
/// RFC 2045 §6.7 (3)).
fn trim_trailing_space(out: &mut Vec<u8>, keep: usize) {
    while out.len() > keep && out.last().is_some_and(|&c| c == b' ' || c == b'\t') {
        out.pop();
    }
}

/// Base64 with padding (RFC 4648 §4), for RFC 2047 `B` encoded words.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn qp(input: &[u8]) -> Vec<u8> {
        decode_quoted_printable(input)
    }

    #[test]
    fn quoted_printable_escapes_and_soft_breaks() {
        assert_eq!(qp(b"caf=C3=A9 =\r\nau lait"), "café au lait".as_bytes());
        // Lowercase hex.
        assert_eq!(qp(b"caf=c3=a9"), "café".as_bytes());
        // LF-only soft break.
        assert_eq!(qp(b"a=\nb"), b"ab");
        // White space between `=` and the line break is transport padding.
        assert_eq!(qp(b"a= \t\r\nb"), b"ab");
        // A soft break whose CRLF belongs to the boundary that follows the part.
        assert_eq!(qp(b"end="), b"end");
        assert_eq!(qp(b"end=  "), b"end");
    }

    #[test]
    fn quoted_printable_trailing_white_space() {
        assert_eq!(qp(b"a  \r\nb\t\nc "), b"a\r\nb\nc");
        // An encoded space is data, even at the end of a line.
        assert_eq!(qp(b"a=20\r\nb=09"), b"a \r\nb\t");
    }

    #[test]
    fn quoted_printable_malformed_escapes_are_kept() {
        assert_eq!(qp(b"bad =ZZ escape"), b"bad =ZZ escape");
        assert_eq!(qp(b"x==3D=3d"), b"x===");
        assert_eq!(qp(b"half =A"), b"half =A");
        assert_eq!(qp(b"=G1="), b"=G1");
        // Bare CR and 8-bit octets pass through.
        assert_eq!(qp(b"a\rb\xff"), b"a\rb\xff");
    }

    #[test]
    fn base64_is_lenient() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(decode_base64(b"aGVsbG8"), b"hello");
        assert_eq!(decode_base64(b"aGVsbG8=x"), b"hello");
        assert_eq!(decode_base64(b"aG Vs*bG8"), b"hello");
        assert_eq!(decode_base64(b"aGVsbG8h\r\nZ"), b"hello!");
        assert_eq!(decode_base64(b"AAEC"), [0u8, 1, 2]);
        assert_eq!(decode_base64(b""), b"");
    }

    #[test]
    fn identity_and_unknown_encodings() {
        assert!(matches!(
            transfer_decode("8bit", b"x"),
            Ok(Cow::Borrowed(b"x"))
        ));
        assert!(matches!(transfer_decode("", b"x"), Ok(Cow::Borrowed(b"x"))));
        assert_eq!(
            transfer_decode("base64", b"AAEC").unwrap().as_ref(),
            [0u8, 1, 2]
        );
        assert!(matches!(
            transfer_decode("x-uuencode", b"x"),
            Err(MimeError::UnknownTransferEncoding(e)) if e == "x-uuencode"
        ));
    }

    #[test]
    fn base64_encoder() {
        assert_eq!(encode_base64(b""), "");
        assert_eq!(encode_base64(b"f"), "Zg==");
        assert_eq!(encode_base64(b"fo"), "Zm8=");
        assert_eq!(encode_base64(b"foo"), "Zm9v");
        assert_eq!(encode_base64("é".as_bytes()), "w6k=");
    }
}
