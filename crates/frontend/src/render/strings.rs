//! Building imap-types strings from stored data without panicking.
//!
//! imap-types validates its string types (a quoted string is 7-bit text without CR/LF, a literal
//! may hold anything but NUL). Stored data is whatever a client appended, so these helpers never
//! fail: they pick quoted or literal form, and replace NUL octets, which no IMAP4rev1 string can
//! carry (RFC 3501 §4.3 CHAR8), with 0x80 as other servers do.

use imap_codec::imap_types::core::{IString, Literal, NString};

/// Replaces NUL octets so the bytes are a valid literal.
fn without_nul(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.contains(&0) {
        bytes
            .into_iter()
            .map(|b| if b == 0 { 0x80 } else { b })
            .collect()
    } else {
        bytes
    }
}

/// An IMAP string (quoted when possible, else a literal).
pub(crate) fn istring(value: impl Into<Vec<u8>>) -> IString<'static> {
    let bytes = without_nul(value.into());
    match IString::try_from(bytes) {
        Ok(s) => s,
        // Unreachable after NUL removal; an empty literal keeps the reply well-formed anyway.
        Err(_) => IString::Literal(empty()),
    }
}

/// The empty literal `{0}` (always valid).
fn empty() -> Literal<'static> {
    Literal::unvalidated(Vec::new())
}

/// An IMAP string with the value uppercased (BODYSTRUCTURE types, subtypes, encodings and
/// parameter names are case-insensitive; RFC 3501 §7.4.2 shows them in uppercase).
pub(crate) fn upper(value: &str) -> IString<'static> {
    istring(value.to_ascii_uppercase())
}

/// NIL or a string.
pub(crate) fn nstring(value: Option<&str>) -> NString<'static> {
    NString(value.map(istring))
}

/// Message data (BODY[...], RFC822...) always as a literal: it usually spans lines.
pub(crate) fn literal(bytes: impl Into<Vec<u8>>) -> NString<'static> {
    let bytes = without_nul(bytes.into());
    let lit = Literal::try_from(bytes).unwrap_or_else(|_| empty());
    NString(Some(IString::Literal(lit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_form_and_strips_nul() {
        assert!(matches!(istring("plain"), IString::Quoted(_)));
        assert!(matches!(istring("Grüße"), IString::Literal(_)));
        assert!(matches!(istring("a\r\nb"), IString::Literal(_)));
        let lit = literal(vec![b'a', 0, b'b']);
        assert_eq!(lit.into_option().as_deref(), Some(&[b'a', 0x80, b'b'][..]));
        assert_eq!(nstring(None), NString(None));
    }
}
