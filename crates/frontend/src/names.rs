//! Mailbox names between the wire and the storage, and LIST pattern matching.
//!
//! Clients send names in modified UTF-7 (RFC 3501 §5.1.3); the storage keeps UTF-8 with `/` as
//! the hierarchy delimiter. `INBOX` is case-insensitive (RFC 3501 §5.1) and stored as `INBOX`.

use imap_codec::imap_types::core::IString;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};

use crate::error::FrontendError;

/// The hierarchy delimiter.
pub const DELIMITER: char = '/';

/// Decodes a mailbox argument that names an existing mailbox (SELECT, STATUS, APPEND, COPY,
/// DELETE, ...) to its storage (UTF-8) name.
///
/// A name that is not valid modified UTF-7 (raw UTF-8 as mbsync sends it, `&` not starting a
/// valid shift) is still a well-formed command (RFC 3501 §9 `mailbox` is any astring): it
/// names a mailbox that cannot exist, so the answer is `NO [NONEXISTENT]`, not `BAD`. A `BAD`
/// would make clients such as mbsync abort the whole sync run.
pub fn decode_mailbox(mailbox: &Mailbox<'_>) -> Result<String, FrontendError> {
    decode_name(mailbox).map_err(|e| FrontendError::NonExistent(format!("no such mailbox: {e}")))
}

/// Decodes a mailbox argument that names a mailbox to be made (CREATE, RENAME's target,
/// SUBSCRIBE): a name that is not valid modified UTF-7 is refused with `NO [CANNOT]`
/// (RFC 5530 §3), for the reason given at [`decode_mailbox`].
pub fn decode_new_mailbox(mailbox: &Mailbox<'_>) -> Result<String, FrontendError> {
    decode_name(mailbox).map_err(|e| FrontendError::Cannot(format!("invalid mailbox name: {e}")))
}

/// Decodes a LIST/LSUB pattern argument (`*` and `%` are printable ASCII and survive decoding).
/// `None` when it is not valid modified UTF-7: such a pattern matches no mailbox, so LIST
/// answers `OK` with no names.
pub fn decode_list_mailbox(pattern: &ListMailbox<'_>) -> Option<String> {
    let bytes = match pattern {
        ListMailbox::Token(token) => token.as_ref(),
        ListMailbox::String(IString::Quoted(quoted)) => quoted.inner().as_bytes(),
        ListMailbox::String(other) => other.as_ref(),
    };
    decode_bytes(bytes).ok()
}

/// Decodes a LIST/LSUB reference (a mailbox name, possibly empty); `None` when invalid, for
/// the same reason as [`decode_list_mailbox`].
pub fn decode_reference(reference: &Mailbox<'_>) -> Option<String> {
    decode_name(reference).ok()
}

/// Why a client's mailbox name is not one this server can store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// 8-bit bytes: a UTF-8 name (RFC 6855 UTF8=ACCEPT, which this server does not offer, would
    /// allow it) or garbage.
    #[error("8-bit mailbox names need UTF8=ACCEPT, which is not enabled; use modified UTF-7 (RFC 3501 section 5.1.3)")]
    EightBit,
    /// Printable ASCII that is not valid modified UTF-7 (RFC 3501 §5.1.3).
    #[error("not valid modified UTF-7 (RFC 3501 section 5.1.3): {0}")]
    Utf7(#[from] crate::utf7::Utf7Error),
}

fn decode_name(mailbox: &Mailbox<'_>) -> Result<String, NameError> {
    match mailbox {
        Mailbox::Inbox => Ok("INBOX".to_owned()),
        Mailbox::Other(other) => decode_bytes(other.inner().as_ref()),
    }
}

fn decode_bytes(bytes: &[u8]) -> Result<String, NameError> {
    if !bytes.is_ascii() {
        return Err(NameError::EightBit);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| NameError::EightBit)?;
    Ok(normalize_inbox(crate::utf7::decode(text)?))
}

/// Spells `INBOX` and its children with an upper-case `INBOX` (RFC 3501 §5.1).
pub fn normalize_inbox(name: String) -> String {
    let inbox_len = "INBOX".len();
    let is_inbox_prefix = name.len() >= inbox_len
        && name.is_char_boundary(inbox_len)
        && name[..inbox_len].eq_ignore_ascii_case("INBOX")
        && name[inbox_len..].chars().next().is_none_or(|c| c == DELIMITER);
    if is_inbox_prefix && &name[..inbox_len] != "INBOX" {
        format!("INBOX{}", &name[inbox_len..])
    } else {
        name
    }
}

/// Encodes a storage name for a response.
pub fn encode_mailbox(name: &str) -> Option<Mailbox<'static>> {
    if name == "INBOX" {
        return Some(Mailbox::Inbox);
    }
    Mailbox::try_from(crate::utf7::encode(name)).ok()
}

/// Joins a LIST reference and pattern (RFC 3501 §6.3.8: the reference is a prefix).
pub fn join_reference(reference: &str, pattern: &str) -> String {
    if reference.is_empty() || pattern.starts_with(DELIMITER) {
        pattern.to_owned()
    } else {
        format!("{reference}{pattern}")
    }
}

/// The root of a reference, for `LIST ref ""` (RFC 3501 §6.3.8: the part up to and including
/// the first hierarchy delimiter, or empty).
pub fn reference_root(reference: &str) -> &str {
    match reference.find(DELIMITER) {
        Some(i) => &reference[..=i],
        None => "",
    }
}

/// Whether `name` matches a LIST pattern: `*` matches anything, `%` anything but the delimiter
/// (RFC 3501 §6.3.8).
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern = normalize_inbox(pattern.to_owned());
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches_at(&pattern, &name)
}

fn matches_at(pattern: &[char], name: &[char]) -> bool {
    // Dynamic programming, time O(pattern × name) so hostile patterns cannot blow up:
    // after consuming pattern[..i], dp[j] says whether it matches name[..j].
    let mut dp = vec![false; name.len() + 1];
    dp[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            '*' => {
                let mut reachable = false;
                for j in 0..=name.len() {
                    reachable |= dp[j];
                    next[j] = reachable;
                }
            }
            '%' => {
                let mut reachable = false;
                for j in 0..=name.len() {
                    if j > 0 && name[j - 1] == DELIMITER {
                        reachable = false;
                    }
                    reachable |= dp[j];
                    next[j] = reachable;
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = dp[j - 1] && name[j - 1] == c;
                }
            }
        }
        dp = next;
    }
    dp[name.len()]
}

/// Every proper ancestor of `name` (`a/b/c` → `a`, `a/b`).
pub fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(DELIMITER).map(move |(i, _)| &name[..i]).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "a"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("a*c", "abc"));
        assert!(matches("a%c", "abc"));
        assert!(!matches("a%c", "a/c"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("Inbox/%", "INBOX/x"));
        assert!(!matches("a", "ab"));
        assert!(matches("", ""));
        assert!(matches("%/%", "a/b"));
    }

    #[test]
    fn references() {
        assert_eq!(join_reference("", "a/%"), "a/%");
        assert_eq!(join_reference("a/", "%"), "a/%");
        assert_eq!(reference_root("a/b"), "a/");
        assert_eq!(reference_root(""), "");
    }

    #[test]
    fn inbox_spelling() {
        assert_eq!(normalize_inbox("inbox".into()), "INBOX");
        assert_eq!(normalize_inbox("inBox/x".into()), "INBOX/x");
        assert_eq!(normalize_inbox("inboxes".into()), "inboxes");
        assert_eq!(normalize_inbox("ü".into()), "ü");
    }

    /// RFC 3501 §9: any astring is a well-formed mailbox; one that is not valid modified UTF-7
    /// names no mailbox (NO), it is not a syntax error (BAD).
    #[test]
    fn invalid_names_are_no_not_bad() {
        use imap_codec::imap_types::response::StatusKind;
        let name = |s: &str| Mailbox::try_from(s.to_owned()).expect("astring");
        let odd = "!#$&'+,-.0123456789:;<=>?@^_`|[}";
        for bad in [name(odd), name("Entw\u{fc}rfe")] {
            let error = decode_mailbox(&bad).unwrap_err();
            assert!(matches!(error, FrontendError::NonExistent(_)), "{error:?}");
            assert_eq!(error.to_imap().0, StatusKind::No);
            let error = decode_new_mailbox(&bad).unwrap_err();
            assert!(matches!(error, FrontendError::Cannot(_)), "{error:?}");
            assert_eq!(decode_reference(&bad), None);
        }
        let pattern = ListMailbox::try_from(odd).expect("list-mailbox");
        assert_eq!(decode_list_mailbox(&pattern), None);
        assert_eq!(decode_mailbox(&name("&AOk-t&AOk-")), Ok("\u{e9}t\u{e9}".to_owned()));
        assert_eq!(decode_new_mailbox(&name("inbox/x")), Ok("INBOX/x".to_owned()));
    }

    #[test]
    fn ancestors_of_a_path() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }
}
