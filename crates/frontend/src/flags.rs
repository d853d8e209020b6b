//! Flags between imap-types values and the storage's wire strings.
//!
//! The storage keeps a message's flags as strings: system flags with their backslash in canonical
//! case (`"\\Seen"`), keywords as the client spelled them (`"$Junk"`). Clients' flags pass through
//! [`to_wire`] / [`to_wire_list`] on STORE and APPEND, which refuse flags a client may not set;
//! stored strings come back through [`fetch_flags`] for FETCH and through [`mailbox_flags`] /
//! [`permanent_flags`] for the FLAGS and PERMANENTFLAGS that SELECT announces.

use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::flag::{Flag, FlagFetch, FlagPerm};

/// Why a client-supplied flag cannot be stored. Answer `BAD` (it is a protocol error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// `\Recent` is set by the server only (RFC 3501 §2.3.2: "this flag can not be altered by the
    /// client"); this server never sets it (RFC 9051 §2.3.2 removed it).
    #[error("\\Recent cannot be set by clients")]
    Recent,
    /// A backslash flag that is not a system flag (RFC 3501 §2.3.2 and §9 flag-extension:
    /// reserved for future standards, so a client cannot invent one).
    #[error("unknown system flag {0}")]
    UnknownSystem(String),
}

/// The system flags a client can set (RFC 3501 §2.3.2), in canonical spelling.
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// Converts one client flag (STORE/APPEND) to its stored wire string.
pub fn to_wire(flag: &Flag<'_>) -> Result<String, FlagError> {
    match flag {
        Flag::Answered | Flag::Deleted | Flag::Draft | Flag::Flagged | Flag::Seen => {
            Ok(flag.to_string())
        }
        Flag::Keyword(atom) => Ok(atom.inner().to_owned()),
        Flag::Extension(_) => {
            // The extension's atom is private in imap-types; Display writes "\<atom>".
            let text = flag.to_string();
            if text.eq_ignore_ascii_case("\\Recent") {
                Err(FlagError::Recent)
            } else {
                Err(FlagError::UnknownSystem(text))
            }
        }
    }
}

/// Converts a client flag list (STORE/APPEND) to wire strings, dropping duplicates (system flags
/// compared exactly, since they are canonical; keywords compared case-insensitively, RFC 9051
/// §2.3.2 "flag names are case-insensitive").
pub fn to_wire_list(flags: &[Flag<'_>]) -> Result<Vec<String>, FlagError> {
    let mut out: Vec<String> = Vec::with_capacity(flags.len());
    for flag in flags {
        let wire = to_wire(flag)?;
        if !out.iter().any(|f| f.eq_ignore_ascii_case(&wire)) {
            out.push(wire);
        }
    }
    Ok(out)
}

/// Converts one stored wire string to an imap-types flag (system flag names case-insensitively);
/// `None` if it is not a valid flag, so a corrupt entry is skipped rather than breaking a reply.
pub fn from_wire(s: &str) -> Option<Flag<'static>> {
    match Flag::try_from(s).ok()? {
        // Never stored (to_wire refuses them); skip rather than emit something unparseable.
        Flag::Extension(_) => None,
        flag => Some(flag.into_static()),
    }
}

/// FETCH FLAGS list from stored wire strings (RFC 3501 §7.4.2 FLAGS). No `\Recent`, ever.
pub fn fetch_flags(stored: &[String]) -> Vec<FlagFetch<'static>> {
    stored
        .iter()
        .filter_map(|s| from_wire(s))
        .map(FlagFetch::Flag)
        .collect()
}

/// The untagged FLAGS list for SELECT/EXAMINE (RFC 3501 §7.2.6): the system flags, then the
/// mailbox's keywords.
pub fn mailbox_flags(keywords: &[String]) -> Vec<Flag<'static>> {
    let mut out: Vec<Flag<'static>> = SYSTEM_FLAGS.iter().filter_map(|s| from_wire(s)).collect();
    for kw in keywords {
        if let Some(flag) = from_wire(kw)
            && !out.contains(&flag)
        {
            out.push(flag);
        }
    }
    out
}

/// The PERMANENTFLAGS list (RFC 3501 §7.1): every flag in [`mailbox_flags`] plus `\*` while
/// clients may create new keywords, i.e. until the mailbox holds
/// [`crate::limits::MAX_MAILBOX_KEYWORDS`] of them.
pub fn permanent_flags(keywords: &[String]) -> Vec<FlagPerm<'static>> {
    let mut out: Vec<FlagPerm<'static>> = mailbox_flags(keywords)
        .into_iter()
        .map(FlagPerm::Flag)
        .collect();
    if keywords.len() < crate::limits::MAX_MAILBOX_KEYWORDS {
        out.push(FlagPerm::Asterisk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::core::Atom;

    fn flag(s: &str) -> Flag<'_> {
        Flag::try_from(s).expect("flag")
    }

    #[test]
    fn system_flags_are_canonical() {
        assert_eq!(to_wire(&flag("\\seen")), Ok("\\Seen".to_owned()));
        assert_eq!(to_wire(&flag("\\ANSWERED")), Ok("\\Answered".to_owned()));
        assert_eq!(to_wire(&Flag::Draft), Ok("\\Draft".to_owned()));
        assert_eq!(to_wire(&Flag::Deleted), Ok("\\Deleted".to_owned()));
        assert_eq!(to_wire(&Flag::Flagged), Ok("\\Flagged".to_owned()));
    }

    #[test]
    fn keywords_keep_spelling() {
        assert_eq!(to_wire(&flag("$Junk")), Ok("$Junk".to_owned()));
        let kw = Flag::Keyword(Atom::try_from("NonJunk").expect("atom"));
        assert_eq!(to_wire(&kw), Ok("NonJunk".to_owned()));
    }

    #[test]
    fn rejects_recent_and_unknown_system_flags() {
        assert_eq!(to_wire(&flag("\\Recent")), Err(FlagError::Recent));
        assert_eq!(to_wire(&flag("\\recent")), Err(FlagError::Recent));
        assert_eq!(
            to_wire(&flag("\\Foo")),
            Err(FlagError::UnknownSystem("\\Foo".to_owned()))
        );
        assert_eq!(
            to_wire_list(&[Flag::Seen, flag("\\Recent")]),
            Err(FlagError::Recent)
        );
    }

    #[test]
    fn list_drops_duplicates() {
        let got = to_wire_list(&[Flag::Seen, flag("\\SEEN"), flag("work"), flag("WORK")]);
        assert_eq!(got, Ok(vec!["\\Seen".to_owned(), "work".to_owned()]));
    }

    #[test]
    fn stored_strings_to_fetch_flags() {
        let stored = vec![
            "\\Seen".to_owned(),
            "$Junk".to_owned(),
            "bad flag".to_owned(),
        ];
        assert_eq!(
            fetch_flags(&stored),
            vec![
                FlagFetch::Flag(Flag::Seen),
                FlagFetch::Flag(flag("$Junk").into_static())
            ]
        );
        assert_eq!(from_wire("\\Recent"), None);
        assert_eq!(from_wire(""), None);
    }

    #[test]
    fn mailbox_and_permanent_flags() {
        let kws = vec!["$Junk".to_owned(), "\\Seen".to_owned()];
        let flags = mailbox_flags(&kws);
        assert_eq!(
            flags,
            vec![
                Flag::Answered,
                Flag::Flagged,
                Flag::Deleted,
                Flag::Seen,
                Flag::Draft,
                flag("$Junk").into_static()
            ]
        );
        let perm = permanent_flags(&kws);
        assert_eq!(perm.len(), 7);
        assert_eq!(perm.last(), Some(&FlagPerm::Asterisk));
    }

    #[test]
    fn a_full_mailbox_offers_no_new_keywords() {
        let mut kws: Vec<String> = (1..crate::limits::MAX_MAILBOX_KEYWORDS).map(|i| format!("k{i}")).collect();
        assert_eq!(permanent_flags(&kws).last(), Some(&FlagPerm::Asterisk));
        kws.push("last".to_owned());
        assert!(!permanent_flags(&kws).contains(&FlagPerm::Asterisk));
    }
}
