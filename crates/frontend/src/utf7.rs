//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3).
//!
//! IMAP4rev1 clients send mailbox names in "modified UTF-7": printable US-ASCII stands for itself,
//! `&` is written `&-`, and every other run of characters is UTF-16BE in base64 (with `,` instead
//! of `/`, no padding) between `&` and `-`. The storage tier keeps names as UTF-8, so the session
//! calls [`decode`] on every name a client sends and [`encode`] on every name it returns.
//!
//! The decoder is strict: a name has exactly one valid spelling, so two different client strings
//! can never denote the same mailbox. It rejects unterminated shifts, bad base64, base64 that
//! encodes printable ASCII, adjacent shifts, leftover non-zero bits and broken surrogate pairs, and
//! it never panics (the `utf7-imap` crate does on bad input, which is why this module exists).

/// Why a mailbox name is not valid modified UTF-7. Offsets are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Utf7Error {
    /// A character outside printable US-ASCII appears unencoded.
    #[error("unencoded non-printable or non-ascii character at byte {0}")]
    RawNonPrintable(usize),
    /// `&` without a closing `-`.
    #[error("unterminated base64 shift starting at byte {0}")]
    Unterminated(usize),
    /// A character that is not modified base64 inside a shift.
    #[error("invalid base64 character at byte {0}")]
    BadBase64(usize),
    /// The shifted bits do not form whole UTF-16 units (or the padding bits are not zero).
    #[error("bad base64 length or padding bits in shift at byte {0}")]
    BadPadding(usize),
    /// An unpaired UTF-16 surrogate.
    #[error("invalid utf-16 in shift at byte {0}")]
    BadUtf16(usize),
    /// A printable ASCII character was base64-encoded, or a shift follows another shift; both
    /// give one name two spellings (RFC 3501 §5.1.3).
    #[error("non-canonical encoding in shift at byte {0}")]
    NonCanonical(usize),
}

/// Modified base64 alphabet (RFC 3501 §5.1.3: "," replaces "/").
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Whether `c` represents itself (RFC 3501 §5.1.3: printable US-ASCII 0x20..0x7e).
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Encodes a UTF-8 mailbox name as modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush_shift(&mut out, &mut pending);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_shift(&mut out, &mut pending);
    out
}

/// Writes `&<base64 of units>-` for a pending run of non-direct characters.
fn flush_shift(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for unit in units.drain(..) {
        acc = (acc << 16) | u32::from(unit);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 0x3f) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize]));
    }
    out.push('-');
}

/// Value of a modified base64 character.
fn b64_value(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes a modified UTF-7 mailbox name, rejecting malformed or non-canonical input.
pub fn decode(s: &str) -> Result<String, Utf7Error> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    // End offset of the previous base64 shift, to reject "&...-&...-" (RFC 3501 §5.1.3 canonical
    // form merges adjacent runs).
    let mut prev_shift_end: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return Err(Utf7Error::RawNonPrintable(i));
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let start = i;
        let Some(rel_end) = bytes[start + 1..].iter().position(|&c| c == b'-') else {
            return Err(Utf7Error::Unterminated(start));
        };
        let end = start + 1 + rel_end;
        if end == start + 1 {
            out.push('&');
            i = end + 1;
            continue;
        }
        if prev_shift_end == Some(start) {
            return Err(Utf7Error::NonCanonical(start));
        }
        decode_shift(&bytes[start + 1..end], start, &mut out)?;
        i = end + 1;
        prev_shift_end = Some(i);
    }
    Ok(out)
}

/// Decodes the base64 between `&` and `-` (at `start`) and appends the characters to `out`.
fn decode_shift(b64: &[u8], start: usize, out: &mut String) -> Result<(), Utf7Error> {
    let mut units: Vec<u16> = Vec::with_capacity(b64.len() * 6 / 16);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for (k, &c) in b64.iter().enumerate() {
        let v = b64_value(c).ok_or(Utf7Error::BadBase64(start + 1 + k))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 16 {
            bits -= 16;
            units.push(((acc >> bits) & 0xffff) as u16);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be fewer than one base64 character and all zero.
    if units.is_empty() || bits >= 6 || acc != 0 {
        return Err(Utf7Error::BadPadding(start));
    }
    for decoded in char::decode_utf16(units) {
        let c = decoded.map_err(|_| Utf7Error::BadUtf16(start))?;
        if is_direct(c) {
            return Err(Utf7Error::NonCanonical(start));
        }
        out.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        let cases = [
            ("&", "&-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("INBOX", "INBOX"),
            ("a&b", "a&-b"),
            ("", ""),
            ("😀", "&2D3eAA-"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(encode(plain), encoded, "encode {plain}");
            assert_eq!(decode(encoded).as_deref(), Ok(plain), "decode {encoded}");
        }
    }

    #[test]
    fn rejects_malformed() {
        // Unterminated shift.
        assert_eq!(decode("a&AP"), Err(Utf7Error::Unterminated(1)));
        assert_eq!(decode("&"), Err(Utf7Error::Unterminated(0)));
        // Bad base64 character ("/" is standard base64, not modified).
        assert_eq!(decode("&AP/-"), Err(Utf7Error::BadBase64(3)));
        assert_eq!(decode("&AP=-"), Err(Utf7Error::BadBase64(3)));
        // Printable ASCII "A" (U+0041) encoded.
        assert_eq!(decode("&AEE-"), Err(Utf7Error::NonCanonical(0)));
        // "&" encoded instead of "&-".
        assert_eq!(decode("&ACY-"), Err(Utf7Error::NonCanonical(0)));
        // Non-zero padding bits: "APw" ok, "APx" leaves bits set.
        assert_eq!(decode("&APx-"), Err(Utf7Error::BadPadding(0)));
        // Too few bits for one unit; an extra useless character.
        assert_eq!(decode("&AP-"), Err(Utf7Error::BadPadding(0)));
        assert_eq!(decode("&APwA-"), Err(Utf7Error::BadPadding(0)));
        // Lone high surrogate U+D83D.
        assert_eq!(decode("&2D0-"), Err(Utf7Error::BadUtf16(0)));
        // Adjacent shifts must be merged.
        assert_eq!(decode("&APw-&APw-"), Err(Utf7Error::NonCanonical(5)));
        assert_eq!(decode("&APwA,A-"), Ok("üü".to_string()));
        // Raw 8-bit and control characters.
        assert_eq!(decode("Entwürfe"), Err(Utf7Error::RawNonPrintable(4)));
        assert_eq!(decode("a\tb"), Err(Utf7Error::RawNonPrintable(1)));
        // "&-" followed by a shift is fine: they are different things.
        assert_eq!(decode("&-&APw-"), Ok("&ü".to_string()));
    }

    #[test]
    fn control_characters_are_encoded() {
        assert_eq!(encode("a\tb"), "a&AAk-b");
        assert_eq!(decode("a&AAk-b").as_deref(), Ok("a\tb"));
    }

    proptest! {
        #[test]
        fn round_trip(s in any::<String>()) {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&e), Ok(s));
        }

        #[test]
        fn decode_never_panics(s in any::<String>()) {
            let _ = decode(&s);
        }

        #[test]
        fn decode_never_panics_on_utf7_alphabet(s in "[&\\-A-Za-z0-9+,/ ]{0,24}") {
            // Whatever decodes must re-encode to the same text: one spelling per name.
            if let Ok(d) = decode(&s) {
                prop_assert_eq!(encode(&d), s);
            }
        }
    }
}
