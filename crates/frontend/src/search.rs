//! SEARCH criteria → storage search keys (RFC 3501 §6.4.4).
//!
//! SEARCH runs next to the data in the storage node, which only knows UIDs, flags as strings, and
//! dates as day numbers. The session first checks the CHARSET with [`check_charset`], then
//! translates the criteria with [`criteria_to_proto`]; sequence-number keys are resolved through
//! the session's [`SeqMap`] here because only the session knows its numbering.
//!
//! Mapping decisions:
//! - FROM/TO/CC/BCC/SUBJECT are header substring matches on that field (RFC 3501 §6.4.4).
//! - This server never reports `\Recent` (IMAP4rev2, RFC 9051 §2.3.2, removed it), so RECENT and
//!   NEW (= RECENT UNSEEN) match no message and OLD (= NOT RECENT) matches every message.
//! - Dates become days since 1970-01-01 of the calendar date given; the storage compares them with
//!   the date part of INTERNALDATE in its own zone, or of the Date: header for SENT* (RFC 3501
//!   §6.4.4 "disregarding time and timezone").
//! - A sequence-set key that names no existing message matches nothing rather than failing: it
//!   only narrows the result set (see [`SeqMap::resolve_seq_lenient`]).

use imap_codec::imap_types::core::{AString, Charset};
use imap_codec::imap_types::datetime::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use mailraft_proto as proto;
use proto::search_key::Key;

use crate::seqset::{SeqMap, to_uid_set};

/// Why a SEARCH cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// Charset other than US-ASCII/UTF-8: answer `NO [BADCHARSET (US-ASCII UTF-8)]` with
    /// [`SUPPORTED_CHARSETS`] (RFC 3501 §6.4.4).
    #[error("unsupported charset {0}")]
    BadCharset(String),
    /// A search string that is not valid UTF-8 (the only charsets accepted are US-ASCII and UTF-8);
    /// answer BAD.
    #[error("search string is not valid utf-8")]
    InvalidUtf8,
    /// A key this server does not support (only extension keys behind imap-types features);
    /// answer BAD.
    #[error("unsupported search key {0}")]
    Unsupported(&'static str),
}

/// Charsets accepted by SEARCH, for the BADCHARSET response code (RFC 3501 §6.4.4: US-ASCII MUST
/// be supported; UTF-8 is what every modern client sends).
pub const SUPPORTED_CHARSETS: [&str; 2] = ["US-ASCII", "UTF-8"];

/// Checks the SEARCH CHARSET argument (RFC 3501 §6.4.4); no charset means US-ASCII.
pub fn check_charset(charset: Option<&Charset<'_>>) -> Result<(), SearchError> {
    let Some(charset) = charset else {
        return Ok(());
    };
    let name: &str = charset.as_ref();
    if SUPPORTED_CHARSETS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
    {
        Ok(())
    } else {
        Err(SearchError::BadCharset(name.to_owned()))
    }
}

/// Translates a SEARCH criteria list, which is implicitly ANDed (RFC 3501 §6.4.4), to one key.
pub fn criteria_to_proto(
    criteria: &[SearchKey<'_>],
    map: &SeqMap,
) -> Result<proto::SearchKey, SearchError> {
    if let [single] = criteria {
        return to_proto(single, map);
    }
    let keys = criteria
        .iter()
        .map(|k| to_proto(k, map))
        .collect::<Result<_, _>>()?;
    Ok(wrap(Key::And(proto::SearchKeys { keys })))
}

/// Translates one search key (RFC 3501 §6.4.4, every key of the base specification).
pub fn to_proto(key: &SearchKey<'_>, map: &SeqMap) -> Result<proto::SearchKey, SearchError> {
    let k = match key {
        SearchKey::And(keys) => {
            return criteria_to_proto(keys.as_ref(), map);
        }
        SearchKey::SequenceSet(set) => {
            let uids = map.resolve_seq_lenient(set);
            if uids.is_empty() {
                Key::None(true)
            } else {
                Key::Uids(to_uid_set(&uids))
            }
        }
        SearchKey::Uid(set) => Key::Uids(map.resolve_uid(set)),
        SearchKey::All => Key::All(true),
        // RFC 9051 §2.3.2: no message is \Recent here, so RECENT and NEW match nothing.
        SearchKey::New | SearchKey::Recent => Key::None(true),
        SearchKey::Old => Key::All(true),
        SearchKey::Answered => flag("\\Answered"),
        SearchKey::Deleted => flag("\\Deleted"),
        SearchKey::Draft => flag("\\Draft"),
        SearchKey::Flagged => flag("\\Flagged"),
        SearchKey::Seen => flag("\\Seen"),
        SearchKey::Unanswered => not_flag("\\Answered"),
        SearchKey::Undeleted => not_flag("\\Deleted"),
        SearchKey::Undraft => not_flag("\\Draft"),
        SearchKey::Unflagged => not_flag("\\Flagged"),
        SearchKey::Unseen => not_flag("\\Seen"),
        SearchKey::Keyword(atom) => Key::Flag(atom.inner().to_owned()),
        SearchKey::Unkeyword(atom) => Key::NotFlag(atom.inner().to_owned()),
        SearchKey::Bcc(v) => header("Bcc", v)?,
        SearchKey::Cc(v) => header("Cc", v)?,
        SearchKey::From(v) => header("From", v)?,
        SearchKey::To(v) => header("To", v)?,
        SearchKey::Subject(v) => header("Subject", v)?,
        SearchKey::Header(name, value) => Key::Header(proto::HeaderMatch {
            name: string(name)?,
            value: string(value)?,
        }),
        SearchKey::Body(v) => Key::Body(string(v)?),
        SearchKey::Text(v) => Key::Text(string(v)?),
        SearchKey::Before(d) => Key::Before(day_number(d)),
        SearchKey::On(d) => Key::On(day_number(d)),
        SearchKey::Since(d) => Key::Since(day_number(d)),
        SearchKey::SentBefore(d) => Key::SentBefore(day_number(d)),
        SearchKey::SentOn(d) => Key::SentOn(day_number(d)),
        SearchKey::SentSince(d) => Key::SentSince(day_number(d)),
        SearchKey::Larger(n) => Key::Larger(u64::from(*n)),
        SearchKey::Smaller(n) => Key::Smaller(u64::from(*n)),
        SearchKey::Not(inner) => Key::Not(Box::new(to_proto(inner, map)?)),
        SearchKey::Or(a, b) => Key::Or(proto::SearchKeys {
            keys: vec![to_proto(a, map)?, to_proto(b, map)?],
        }),
        // RFC 7162 §3.1.5: messages whose mod-sequence is at least `modseq`. The storage keeps
        // one mod-sequence per message, not one per flag, so the optional entry name and type
        // are ignored, as the RFC requires of such a server.
        SearchKey::ModSequence { modseq, .. } => Key::Modseq(*modseq),
        // Keys behind imap-types features this crate does not enable today (WITHIN's
        // OLDER/YOUNGER); kept so enabling a feature does not break the build.
        #[allow(unreachable_patterns)]
        _ => return Err(SearchError::Unsupported("extension")),
    };
    Ok(wrap(k))
}

/// Wraps a oneof value.
fn wrap(key: Key) -> proto::SearchKey {
    proto::SearchKey { key: Some(key) }
}

/// A "has flag" key.
fn flag(name: &str) -> Key {
    Key::Flag(name.to_owned())
}

/// A "lacks flag" key.
fn not_flag(name: &str) -> Key {
    Key::NotFlag(name.to_owned())
}

/// A substring match on one header field.
fn header(name: &str, value: &AString<'_>) -> Result<Key, SearchError> {
    Ok(Key::Header(proto::HeaderMatch {
        name: name.to_owned(),
        value: string(value)?,
    }))
}

/// A search string as UTF-8 (US-ASCII is a subset).
fn string(value: &AString<'_>) -> Result<String, SearchError> {
    let bytes: &[u8] = value.as_ref();
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| SearchError::InvalidUtf8)
}

/// Days since 1970-01-01 of a calendar date (negative before it), as the proto documents.
pub fn day_number(date: &NaiveDate) -> i64 {
    let date: &chrono::NaiveDate = date.as_ref();
    i64::from(date.to_epoch_days())
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::core::Atom;
    use imap_codec::imap_types::sequence::SequenceSet;
    use proto::{HeaderMatch, SearchKeys, UidRange, UidSet};

    fn map() -> SeqMap {
        SeqMap::from_uids(vec![3, 5, 7, 8, 20])
    }

    fn tr(key: SearchKey<'_>) -> Key {
        to_proto(&key, &map())
            .expect("translates")
            .key
            .expect("key set")
    }

    fn astr(s: &str) -> AString<'_> {
        AString::try_from(s).expect("astring")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::try_from(chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date")).expect("imap")
    }

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).expect("set")
    }

    fn uids(ranges: &[(u32, u32)]) -> Key {
        Key::Uids(UidSet {
            ranges: ranges
                .iter()
                .map(|&(start, end)| UidRange { start, end })
                .collect(),
        })
    }

    #[test]
    fn flag_keys() {
        let cases = [
            (SearchKey::Answered, flag("\\Answered")),
            (SearchKey::Deleted, flag("\\Deleted")),
            (SearchKey::Draft, flag("\\Draft")),
            (SearchKey::Flagged, flag("\\Flagged")),
            (SearchKey::Seen, flag("\\Seen")),
            (SearchKey::Unanswered, not_flag("\\Answered")),
            (SearchKey::Undeleted, not_flag("\\Deleted")),
            (SearchKey::Undraft, not_flag("\\Draft")),
            (SearchKey::Unflagged, not_flag("\\Flagged")),
            (SearchKey::Unseen, not_flag("\\Seen")),
            (
                SearchKey::Keyword(Atom::try_from("$Junk").expect("atom")),
                flag("$Junk"),
            ),
            (
                SearchKey::Unkeyword(Atom::try_from("work").expect("atom")),
                not_flag("work"),
            ),
        ];
        for (key, want) in cases {
            assert_eq!(tr(key), want);
        }
    }

    #[test]
    fn recent_new_old_all() {
        assert_eq!(tr(SearchKey::All), Key::All(true));
        assert_eq!(tr(SearchKey::Old), Key::All(true));
        assert_eq!(tr(SearchKey::Recent), Key::None(true));
        assert_eq!(tr(SearchKey::New), Key::None(true));
    }

    #[test]
    fn header_keys() {
        let hm = |n: &str, v: &str| {
            Key::Header(HeaderMatch {
                name: n.to_owned(),
                value: v.to_owned(),
            })
        };
        assert_eq!(tr(SearchKey::From(astr("alice"))), hm("From", "alice"));
        assert_eq!(tr(SearchKey::To(astr("bob"))), hm("To", "bob"));
        assert_eq!(tr(SearchKey::Cc(astr("carol"))), hm("Cc", "carol"));
        assert_eq!(tr(SearchKey::Bcc(astr("dave"))), hm("Bcc", "dave"));
        assert_eq!(
            tr(SearchKey::Subject(astr("hello world"))),
            hm("Subject", "hello world")
        );
        assert_eq!(
            tr(SearchKey::Header(astr("X-Mailer"), astr(""))),
            hm("X-Mailer", "")
        );
        assert_eq!(
            tr(SearchKey::Body(astr("Grüße"))),
            Key::Body("Grüße".to_owned())
        );
        assert_eq!(tr(SearchKey::Text(astr("x"))), Key::Text("x".to_owned()));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let bad = AString::try_from(vec![0x66u8, 0xff]).expect("literal");
        assert_eq!(
            to_proto(&SearchKey::Body(bad), &map()),
            Err(SearchError::InvalidUtf8)
        );
    }

    #[test]
    fn date_keys() {
        assert_eq!(tr(SearchKey::Before(date(1970, 1, 1))), Key::Before(0));
        assert_eq!(tr(SearchKey::On(date(1970, 1, 2))), Key::On(1));
        assert_eq!(tr(SearchKey::Since(date(1969, 12, 31))), Key::Since(-1));
        // 2024-02-29 is day 19782.
        assert_eq!(
            tr(SearchKey::SentBefore(date(2024, 2, 29))),
            Key::SentBefore(19782)
        );
        assert_eq!(tr(SearchKey::SentOn(date(2000, 1, 1))), Key::SentOn(10957));
        assert_eq!(
            tr(SearchKey::SentSince(date(2000, 3, 1))),
            Key::SentSince(11017)
        );
    }

    #[test]
    fn size_keys() {
        assert_eq!(tr(SearchKey::Larger(100)), Key::Larger(100));
        assert_eq!(tr(SearchKey::Smaller(7)), Key::Smaller(7));
    }

    /// RFC 7162 §3.1.5: MODSEQ, with or without the per-flag entry (ignored: one mod-sequence
    /// per message), including 0 (`mod-sequence-valzer`).
    #[test]
    fn modseq_key() {
        use imap_codec::decode::Decoder;
        assert_eq!(tr(SearchKey::ModSequence { entry: None, modseq: 620 }), Key::Modseq(620));
        assert_eq!(tr(SearchKey::ModSequence { entry: None, modseq: 0 }), Key::Modseq(0));
        let line = b"a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n";
        let (_, command) = imap_codec::CommandCodec::new().decode(line).expect("parses");
        let imap_codec::imap_types::command::CommandBody::Search { criteria, .. } = command.body else {
            panic!("not a search");
        };
        assert_eq!(criteria_to_proto(criteria.as_ref(), &map()), Ok(wrap(Key::Modseq(620_162_338))));
    }

    #[test]
    fn sequence_and_uid_keys() {
        // Sequence 2:3 are UIDs 5 and 7; 4:* are 8 and 20.
        assert_eq!(
            tr(SearchKey::SequenceSet(set("2:3"))),
            uids(&[(5, 5), (7, 7)])
        );
        assert_eq!(
            tr(SearchKey::SequenceSet(set("4:*"))),
            uids(&[(8, 8), (20, 20)])
        );
        // Beyond the mailbox: matches nothing rather than failing.
        assert_eq!(tr(SearchKey::SequenceSet(set("9:10"))), Key::None(true));
        assert_eq!(tr(SearchKey::SequenceSet(set("5:9"))), uids(&[(20, 20)]));
        // UID sets go through unchanged, `*` is the highest UID.
        assert_eq!(
            tr(SearchKey::Uid(set("4:6,30:*"))),
            uids(&[(4, 6), (20, 30)])
        );
        let empty = SeqMap::new();
        let key = to_proto(&SearchKey::SequenceSet(set("1:*")), &empty).expect("ok");
        assert_eq!(key.key, Some(Key::None(true)));
    }

    #[test]
    fn boolean_keys() {
        let not = tr(SearchKey::Not(Box::new(SearchKey::Seen)));
        assert_eq!(not, Key::Not(Box::new(wrap(flag("\\Seen")))));
        let or = tr(SearchKey::Or(
            Box::new(SearchKey::Seen),
            Box::new(SearchKey::Draft),
        ));
        assert_eq!(
            or,
            Key::Or(SearchKeys {
                keys: vec![wrap(flag("\\Seen")), wrap(flag("\\Draft"))]
            })
        );
        let and = SearchKey::And(
            vec![SearchKey::Seen, SearchKey::Larger(3)]
                .try_into()
                .expect("vec1"),
        );
        assert_eq!(
            tr(and),
            Key::And(SearchKeys {
                keys: vec![wrap(flag("\\Seen")), wrap(Key::Larger(3))]
            })
        );
        // A one-element list is just that key.
        let one = criteria_to_proto(&[SearchKey::Deleted], &map()).expect("ok");
        assert_eq!(one, wrap(flag("\\Deleted")));
        let two = criteria_to_proto(&[SearchKey::Deleted, SearchKey::All], &map()).expect("ok");
        assert_eq!(
            two,
            wrap(Key::And(SearchKeys {
                keys: vec![wrap(flag("\\Deleted")), wrap(Key::All(true))]
            }))
        );
    }

    #[test]
    fn charsets() {
        assert_eq!(check_charset(None), Ok(()));
        for ok in ["UTF-8", "utf-8", "US-ASCII", "us-ascii"] {
            let cs = Charset::try_from(ok).expect("charset");
            assert_eq!(check_charset(Some(&cs)), Ok(()));
        }
        let cs = Charset::try_from("ISO-8859-1").expect("charset");
        assert_eq!(
            check_charset(Some(&cs)),
            Err(SearchError::BadCharset("ISO-8859-1".to_owned()))
        );
    }
}
