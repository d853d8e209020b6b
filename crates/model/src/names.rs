//! Mailbox names: "/"-separated UTF-8, with INBOX case-insensitive.
//!
//! Two entry points: [`canonical`] for looking an existing name up (never fails: a name that
//! cannot exist is simply not found) and [`validate_new`] for names about to be created.

use crate::command::ModelError;

/// Hierarchy separator.
pub const SEPARATOR: char = '/';
/// The one name every account has.
pub const INBOX: &str = "INBOX";
/// Longest name accepted, in bytes; keeps keys and LIST responses bounded.
pub const MAX_NAME_LEN: usize = 1000;
/// Deepest hierarchy accepted.
pub const MAX_DEPTH: usize = 32;

/// RFC 3501 §5.1: "INBOX" in any case means the INBOX; the first component of `inbox/x` is
/// folded too so that INBOX's inferiors sort under it. A trailing separator is dropped
/// (RFC 3501 §6.3.3: it only declares the intent to create inferiors).
pub fn canonical(name: &str) -> String {
    let name = name.strip_suffix(SEPARATOR).unwrap_or(name);
    let (first, rest) = match name.find(SEPARATOR) {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    if first.eq_ignore_ascii_case(INBOX) { format!("{INBOX}{rest}") } else { name.to_string() }
}

/// Whether `name` (canonical) is INBOX itself.
pub fn is_inbox(name: &str) -> bool {
    name == INBOX
}

/// Canonical form of a name to create; `Invalid` for empty names, empty components (`a//b`,
/// `/a`), control characters, LIST wildcards (RFC 3501 §6.3.8 makes `*` and `%` unusable in
/// names) and over-long names.
pub fn validate_new(name: &str) -> Result<String, ModelError> {
    let name = canonical(name);
    let invalid = |why: &str| Err(ModelError::Invalid(format!("mailbox name: {why}")));
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("too long");
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return invalid("forbidden character");
    }
    if name.split(SEPARATOR).any(str::is_empty) {
        return invalid("empty component");
    }
    if name.split(SEPARATOR).count() > MAX_DEPTH {
        return invalid("too deep");
    }
    Ok(name)
}

/// Proper ancestors of a canonical name, outermost first: `a/b/c` → `a`, `a/b`.
pub fn parents(name: &str) -> Vec<String> {
    name.match_indices(SEPARATOR).map(|(i, _)| name[..i].to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_is_case_insensitive() {
        assert_eq!(canonical("inbox"), "INBOX");
        assert_eq!(canonical("InBoX/Sub"), "INBOX/Sub");
        assert_eq!(canonical("Inboxes"), "Inboxes");
        assert_eq!(canonical("a/"), "a");
    }

    #[test]
    fn invalid_names() {
        for bad in ["", "/", "a//b", "/a", "a//", "x*", "a\r\nb"] {
            assert!(validate_new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_new("Sent/2024/").ok().as_deref(), Some("Sent/2024"));
    }

    #[test]
    fn parent_chain() {
        assert_eq!(parents("a/b/c"), vec!["a".to_string(), "a/b".to_string()]);
        assert!(parents("a").is_empty());
    }
}
