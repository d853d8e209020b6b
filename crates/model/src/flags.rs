//! Canonical flag lists: one spelling per flag, one order, so that "did STORE change anything"
//! is a plain comparison and every replica stores identical bytes.

use std::cmp::Ordering;

use crate::command::{ModelError, StoreOp};
use crate::types::Flag;

/// Longest keyword accepted; keeps message records and FLAGS responses bounded.
pub const MAX_KEYWORD_LEN: usize = 128;

fn rank(f: &Flag) -> u8 {
    match f {
        Flag::Seen => 0,
        Flag::Answered => 1,
        Flag::Flagged => 2,
        Flag::Deleted => 3,
        Flag::Draft => 4,
        Flag::Keyword(_) => 5,
    }
}

/// Order used in stored flag lists: system flags first, then keywords case-insensitively.
pub fn cmp(a: &Flag, b: &Flag) -> Ordering {
    match (a, b) {
        (Flag::Keyword(x), Flag::Keyword(y)) => {
            x.bytes().map(|c| c.to_ascii_lowercase()).cmp(y.bytes().map(|c| c.to_ascii_lowercase()))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Sorts and removes case-insensitive duplicates, keeping the first spelling given.
pub fn normalize(flags: &[Flag]) -> Vec<Flag> {
    let mut out = flags.to_vec();
    out.sort_by(cmp); // stable: the first spelling of equal keywords stays first
    out.dedup_by(|later, earlier| later.same(earlier));
    out
}

/// Whether `flags` (normalized) contains `f`.
pub fn contains(flags: &[Flag], f: &Flag) -> bool {
    flags.iter().any(|x| x.same(f))
}

/// Whether two normalized lists hold the same flags.
pub fn same_set(a: &[Flag], b: &[Flag]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
}

/// Rejects keywords a client could not have sent: RFC 3501 §9 `flag-keyword` is an atom, and
/// backslash names are system flags (`\Recent` is never stored).
pub fn validate(flags: &[Flag]) -> Result<(), ModelError> {
    for f in flags {
        if let Flag::Keyword(k) = f {
            let bad = k.is_empty()
                || k.len() > MAX_KEYWORD_LEN
                || k.bytes().any(|c| {
                    c <= b' ' || c >= 0x7F || matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
                });
            if bad {
                return Err(ModelError::Invalid(format!("keyword {k:?}")));
            }
        }
    }
    Ok(())
}

/// RFC 3501 §6.4.6: the flags a message has after `op` with `given` (both normalized).
/// Existing spellings win over the given ones for `Add`.
pub fn apply_op(current: &[Flag], op: StoreOp, given: &[Flag]) -> Vec<Flag> {
    match op {
        StoreOp::Replace => given.to_vec(),
        StoreOp::Add => {
            let mut all = current.to_vec();
            all.extend(given.iter().cloned());
            normalize(&all)
        }
        StoreOp::Remove => current.iter().filter(|f| !contains(given, f)).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(s: &str) -> Flag {
        Flag::Keyword(s.into())
    }

    #[test]
    fn normalize_sorts_and_dedups_case_insensitively() {
        let n = normalize(&[kw("b"), Flag::Deleted, kw("A"), Flag::Seen, kw("a"), Flag::Seen]);
        assert_eq!(n, vec![Flag::Seen, Flag::Deleted, kw("A"), kw("b")]);
    }

    #[test]
    fn ops() {
        let cur = normalize(&[Flag::Seen, kw("Work")]);
        assert_eq!(apply_op(&cur, StoreOp::Add, &[kw("work"), Flag::Flagged]), vec![Flag::Seen, Flag::Flagged, kw("Work")]);
        assert_eq!(apply_op(&cur, StoreOp::Remove, &[kw("WORK")]), vec![Flag::Seen]);
        assert_eq!(apply_op(&cur, StoreOp::Replace, &[]), Vec::<Flag>::new());
        assert!(same_set(&cur, &normalize(&[kw("work"), Flag::Seen])));
    }

    #[test]
    fn validate_keywords() {
        assert!(validate(&[kw("$Forwarded"), Flag::Seen]).is_ok());
        assert!(validate(&[kw("\\Recent")]).is_err());
        assert!(validate(&[kw("a b")]).is_err());
        assert!(validate(&[kw("")]).is_err());
    }
}
