//! Identifiers, flags and UID sets shared by every layer.

use serde::{Deserialize, Serialize};

/// Tenant id, allocated by apply. Every key starts with it.
pub type TenantId = u64;
/// Account id, allocated by apply.
pub type AccountId = u64;
/// Mailbox id, allocated by apply; stable across RENAME.
pub type MailboxId = u64;
/// IMAP UID (RFC 3501 §2.3.1.1): non-zero, strictly increasing within a mailbox, never reused.
pub type Uid = u32;

/// A message flag: a system flag or a keyword (RFC 3501 §2.3.2). Keywords keep the client's
/// spelling but compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Flag {
    /// `\Seen`
    Seen,
    /// `\Answered`
    Answered,
    /// `\Flagged`
    Flagged,
    /// `\Deleted`
    Deleted,
    /// `\Draft`
    Draft,
    /// Any atom without a backslash, e.g. `$Forwarded`, `$Junk`.
    Keyword(String),
}

impl Flag {
    /// Parses an IMAP flag; `None` for `\Recent` (session-only, never stored) and unknown
    /// backslash flags, which RFC 3501 §2.3.2 does not let clients create.
    pub fn parse(s: &str) -> Option<Flag> {
        if let Some(sys) = s.strip_prefix('\\') {
            return match sys.to_ascii_lowercase().as_str() {
                "seen" => Some(Flag::Seen),
                "answered" => Some(Flag::Answered),
                "flagged" => Some(Flag::Flagged),
                "deleted" => Some(Flag::Deleted),
                "draft" => Some(Flag::Draft),
                _ => None,
            };
        }
        if s.is_empty() {
            None
        } else {
            Some(Flag::Keyword(s.to_string()))
        }
    }

    /// IMAP spelling.
    pub fn as_imap(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Keyword(k) => k,
        }
    }

    /// Case-insensitive equality (keywords are case-insensitive in practice; RFC 3501 leaves it
    /// open and every major server folds them).
    pub fn same(&self, other: &Flag) -> bool {
        match (self, other) {
            (Flag::Keyword(a), Flag::Keyword(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

/// A set of UIDs as inclusive ranges. Order and overlap do not matter to consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidSet {
    /// Inclusive `(start, end)` ranges; `start <= end` after normalisation.
    pub ranges: Vec<(Uid, Uid)>,
}

impl UidSet {
    /// One range.
    pub fn range(start: Uid, end: Uid) -> Self {
        UidSet { ranges: vec![(start.min(end), start.max(end))] }
    }

    /// Whether `uid` is in the set.
    pub fn contains(&self, uid: Uid) -> bool {
        self.ranges.iter().any(|&(a, b)| a.min(b) <= uid && uid <= a.max(b))
    }

    /// Sorted, merged, normalised ranges.
    pub fn normalized(&self) -> Vec<(Uid, Uid)> {
        let mut r: Vec<(Uid, Uid)> = self.ranges.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
        r.sort_unstable();
        let mut out: Vec<(Uid, Uid)> = Vec::with_capacity(r.len());
        for (a, b) in r {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// Compresses an ascending list of UIDs into ranges.
    pub fn from_sorted(uids: &[Uid]) -> Self {
        let mut ranges: Vec<(Uid, Uid)> = Vec::new();
        for &u in uids {
            match ranges.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(u) => last.1 = u,
                _ => ranges.push((u, u)),
            }
        }
        UidSet { ranges }
    }
}
