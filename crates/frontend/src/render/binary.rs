//! BINARY[section] and BINARY.SIZE[section] (RFC 3516): a part with its content transfer encoding
//! removed.
//!
//! The decoding is `mailraft_mime::transfer_decode`, the same function SEARCH BODY/TEXT uses,
//! so the bytes a client downloads are the ones SEARCH matched. It is lenient, like mail
//! clients: base64 ignores characters outside the alphabet and missing padding;
//! quoted-printable keeps malformed escapes literally. Only an encoding the server does not
//! know fails, with `NO [UNKNOWN-CTE]` (RFC 3516 §4.2).

use std::borrow::Cow;

use imap_codec::imap_types::core::{LiteralMode, NString8};
use imap_codec::imap_types::extensions::binary::Literal8;
use mailraft_mime::MessageInfo;

use super::strings::literal;

/// Why a part cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryError {
    /// The part does not exist.
    NoSuchPart,
    /// Unknown Content-Transfer-Encoding (RFC 3516 §4.2 UNKNOWN-CTE).
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
    mailraft_mime::transfer_decode(&part.encoding, body)
        // Its only failure is an encoding it does not know: RFC 3516 §4.2 UNKNOWN-CTE.
        .map_err(|_| BinaryError::UnknownCte(part.encoding.clone()))
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

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

    /// A one-part UTF-8 text message with `body` under Content-Transfer-Encoding `cte`.
    fn text_message(cte: &str, body: &[u8]) -> Vec<u8> {
        let mut raw = format!(
            "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(body);
        raw
    }

    /// What FETCH BINARY[1] sends and what SEARCH BODY matches against (`body_text`, UTF-8
    /// read lossily as it does for a UTF-8 part).
    fn binary_and_search(cte: &str, body: &[u8]) -> (String, String) {
        let raw = text_message(cte, body);
        let info = mailraft_mime::analyze(&raw);
        let binary = decoded(&raw, &info, &[1]).unwrap_or_else(|e| panic!("{e:?}"));
        (String::from_utf8_lossy(&binary).into_owned(), mailraft_mime::body_text(&raw))
    }

    /// Issue 9: BINARY and SEARCH decode transfer encodings with the same function, so they
    /// agree on every defect a decoder can meet.
    #[test]
    fn binary_and_search_decode_alike() {
        let cases: [(&str, &[u8], &str); 9] = [
            ("quoted-printable", b"caf=C3=A9 soft=\r\n break", "café soft break"),
            ("quoted-printable", b"lower =c3=a9 hex", "lower é hex"),
            ("quoted-printable", b"bad =ZZ escape", "bad =ZZ escape"),
            ("quoted-printable", b"padded  \t\r\nline", "padded\r\nline"),
            ("quoted-printable", b"soft = \r\nwith space", "soft with space"),
            ("quoted-printable", b"ends with soft=", "ends with soft"),
            ("base64", b"aMOp\r\nbGxv\r\n", "héllo"),
            ("base64", b"aMOpbGxvIQ", "héllo!"),
            ("base64", b"aMOp bGxv*IQ=\r\n", "héllo!"),
        ];
        for (cte, body, want) in cases {
            let (binary, search) = binary_and_search(cte, body);
            assert_eq!(binary, want, "BINARY of {cte} {:?}", String::from_utf8_lossy(body));
            assert_eq!(search, binary, "SEARCH of {cte} {:?}", String::from_utf8_lossy(body));
        }
    }

    proptest! {
        /// The same, for any mix of the characters decoders trip over.
        #[test]
        fn binary_and_search_agree(
            body in proptest::collection::vec(prop::sample::select(b"aZ09+/= \t\r\n=Fc3x".to_vec()), 0..64),
            base64 in any::<bool>(),
        ) {
            let cte = if base64 { "base64" } else { "quoted-printable" };
            let (binary, search) = binary_and_search(cte, &body);
            prop_assert_eq!(search, binary);
        }
    }
}
