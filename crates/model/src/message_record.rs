//! The on-disk versions of a message record ([`MessageMeta`]).
//!
//! Version 1 carries the message's flags as strings. A mailbox may remember 256 keywords of up
//! to 128 bytes each, so a record could weigh ~33 KiB, and SELECT, SEARCH, FETCH FLAGS, STORE and
//! COPY read and write whole records: a user could make every message of a mailbox that heavy for
//! the cost of one keyword list, and every read of it as slow as its size. Keywords also do not
//! count toward a quota, so 100,000 tiny messages could hold 3.3 GB of keyword strings.
//!
//! Version 2 (written from feature level 2 on, [`crate::feature`]) keeps the system flags as
//! bits and each keyword as its one-byte index into the mailbox's keyword list
//! ([`Mailbox::keywords`], which from level 2 on only grows at its end, so an index never
//! changes meaning while the mailbox lives). A record is then at most ~330 bytes whatever its
//! keywords. Cyrus IMAP stores user flags the same way (a per-mailbox name table and a bitmap
//! per message). Decoding a version 2 record needs the mailbox's list, so there is no
//! context-free `Record` impl for messages: readers call [`MessageMeta::decode_in`].
//!
//! Keywords come back in the mailbox's spelling (the first one the mailbox saw): keywords are
//! compared case-insensitively everywhere in this crate, so a message cannot hold two spellings.

use serde::{Deserialize, Serialize};

use crate::command::ModelError;
use crate::flags;
use crate::records::{Mailbox, MessageMeta};
use crate::types::{Flag, Uid};

/// Bit of each system flag in [`MessageV2::system`] (`encode_v2` matches them exhaustively).
const SYSTEM: [(Flag, u8); 5] =
    [(Flag::Seen, 1), (Flag::Answered, 2), (Flag::Flagged, 4), (Flag::Deleted, 8), (Flag::Draft, 16)];

/// Version 2 of a message record: [`MessageMeta`] with its flags as bits and keyword indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MessageV2 {
    uid: Uid,
    /// System flags, one bit each ([`SYSTEM`]).
    system: u8,
    /// Indices into the mailbox's keyword list, ascending, each once.
    #[serde(with = "serde_bytes")]
    keywords: Vec<u8>,
    modseq: u64,
    internal_date: i64,
    tz_offset_minutes: i32,
    save_date: i64,
    size: u64,
    blob: [u8; 32],
}

/// On-disk versions; the variant index is the version tag.
#[derive(Deserialize)]
enum MessageRecord {
    V1(MessageMeta),
    V2(MessageV2),
}

// Serialises exactly like `MessageRecord` without cloning the record.
#[derive(Serialize)]
enum MessageRecordRef<'a> {
    V1(&'a MessageMeta),
    V2(&'a MessageV2),
}

fn corrupt(e: impl std::fmt::Display) -> ModelError {
    ModelError::Corrupt(format!("MessageMeta: {e}"))
}

impl MessageMeta {
    /// Decodes either version; a version 2 record's keyword indices are resolved in `keywords`,
    /// the list of the mailbox the record belongs to (`Corrupt` for an index it lacks).
    pub fn decode_in(bytes: &[u8], keywords: &[String]) -> Result<MessageMeta, ModelError> {
        match postcard::from_bytes::<MessageRecord>(bytes).map_err(corrupt)? {
            MessageRecord::V1(m) => Ok(m),
            MessageRecord::V2(v) => {
                let mut flags: Vec<Flag> =
                    SYSTEM.iter().filter(|(_, bit)| v.system & bit != 0).map(|(f, _)| f.clone()).collect();
                for &i in &v.keywords {
                    let k = keywords.get(usize::from(i)).ok_or_else(|| corrupt(format!("keyword index {i}")))?;
                    flags.push(Flag::Keyword(k.clone()));
                }
                // Index order is the mailbox's order of first use; readers get the canonical order.
                flags.sort_by(flags::cmp);
                let MessageV2 { uid, modseq, internal_date, tz_offset_minutes, save_date, size, blob, .. } = v;
                Ok(MessageMeta { uid, flags, modseq, internal_date, tz_offset_minutes, save_date, size, blob })
            }
        }
    }

    /// [`MessageMeta::decode_in`] with the list of `mailbox`.
    pub fn decode_for(bytes: &[u8], mailbox: &Mailbox) -> Result<MessageMeta, ModelError> {
        MessageMeta::decode_in(bytes, &mailbox.keywords)
    }

    /// Version 1 bytes: the flags as strings (feature level 1).
    pub fn encode_v1(&self) -> Vec<u8> {
        // Serialising plain structs into a Vec cannot fail.
        postcard::to_stdvec(&MessageRecordRef::V1(self)).unwrap_or_default()
    }

    /// Version 2 bytes: `index` gives a keyword's index in the mailbox's list; a keyword it does
    /// not know is `Corrupt` (the caller adds every keyword to the list before writing).
    pub fn encode_v2(&self, mut index: impl FnMut(&str) -> Option<u8>) -> Result<Vec<u8>, ModelError> {
        let mut system = 0u8;
        let mut keywords = Vec::new();
        for f in &self.flags {
            match f {
                Flag::Keyword(k) => keywords.push(index(k).ok_or_else(|| corrupt(format!("keyword {k:?} not in mailbox")))?),
                // Exhaustive, so a new system flag cannot be dropped silently.
                Flag::Seen => system |= 1,
                Flag::Answered => system |= 2,
                Flag::Flagged => system |= 4,
                Flag::Deleted => system |= 8,
                Flag::Draft => system |= 16,
            }
        }
        keywords.sort_unstable();
        keywords.dedup();
        let v = MessageV2 {
            uid: self.uid,
            system,
            keywords,
            modseq: self.modseq,
            internal_date: self.internal_date,
            tz_offset_minutes: self.tz_offset_minutes,
            save_date: self.save_date,
            size: self.size,
            blob: self.blob,
        };
        Ok(postcard::to_stdvec(&MessageRecordRef::V2(&v)).unwrap_or_default())
    }

    /// The version tag of an encoded record (1 or 2), `None` if it has none.
    pub fn record_version(bytes: &[u8]) -> Option<u8> {
        bytes.first().and_then(|tag| tag.checked_add(1))
    }

    /// What the message's keywords weigh once decoded (their bytes plus a `String`'s own 24
    /// each, more than the 2–3 bytes of framing a version 1 record spent on one): a version 2
    /// record is small on disk, but a command that reads it holds, and may reply with, its
    /// keywords as strings, so the per-command byte bound charges them from level 2 on and
    /// is no looser than it was for version 1 records.
    pub fn keyword_bytes(&self) -> u64 {
        self.flags.iter().fold(0u64, |n, f| match f {
            Flag::Keyword(k) => n.saturating_add(k.len() as u64 + std::mem::size_of::<String>() as u64),
            _ => n,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta(flags: Vec<Flag>) -> MessageMeta {
        MessageMeta {
            uid: 7,
            flags,
            modseq: 3,
            internal_date: -5,
            tz_offset_minutes: 120,
            save_date: 10,
            size: 99,
            blob: [9; 32],
        }
    }

    fn kw(s: &str) -> Flag {
        Flag::Keyword(s.into())
    }

    #[test]
    fn version_1_still_decodes_without_a_list() {
        let m = meta(vec![Flag::Seen, kw("$x")]);
        let bytes = m.encode_v1();
        // The bytes the releases before level 2 wrote, pinned: level 1 must keep writing them.
        // Tag 0, uid 7, two flags (Seen; Keyword "$x"), modseq 3, zigzag -5, 120, 10, size 99, blob.
        let pinned = "00070200050224780309".to_string() + "f0011463" + &"09".repeat(32);
        assert_eq!(hex::encode(&bytes), pinned);
        assert_eq!(MessageMeta::record_version(&bytes), Some(1));
        assert_eq!(MessageMeta::decode_in(&bytes, &[]), Ok(m));
    }

    #[test]
    fn version_2_round_trips_through_the_mailbox_list_in_canonical_order() {
        let list: Vec<String> = vec!["zeta".into(), "$Alpha".into(), "mid".into()];
        let m = meta(vec![Flag::Seen, Flag::Deleted, Flag::Draft, kw("$alpha"), kw("ZETA")]);
        let bytes = m.encode_v2(|k| list.iter().position(|x| x.eq_ignore_ascii_case(k)).map(|i| i as u8)).unwrap();
        assert_eq!(MessageMeta::record_version(&bytes), Some(2));
        let back = MessageMeta::decode_in(&bytes, &list).unwrap();
        // The mailbox's spelling, system flags first, keywords case-insensitively sorted.
        assert_eq!(back.flags, vec![Flag::Seen, Flag::Deleted, Flag::Draft, kw("$Alpha"), kw("zeta")]);
        assert_eq!(back, MessageMeta { flags: back.flags.clone(), ..m });
    }

    #[test]
    fn version_2_stays_small_whatever_the_keywords() {
        let list: Vec<String> = (0..256).map(|i| format!("{i:k>128}")).collect();
        let m = meta(list.iter().map(|k| kw(k)).collect());
        let v1 = m.encode_v1();
        let v2 = m.encode_v2(|k| list.iter().position(|x| x == k).map(|i| i as u8)).unwrap();
        assert!(v1.len() > 32 * 1024, "{}", v1.len());
        assert!(v2.len() < 400, "{}", v2.len());
        assert_eq!(MessageMeta::decode_in(&v2, &list).unwrap().flags.len(), 256);
    }

    #[test]
    fn unknown_keywords_and_indices_are_corrupt() {
        let m = meta(vec![kw("nowhere")]);
        assert!(matches!(m.encode_v2(|_| None), Err(ModelError::Corrupt(_))));
        let bytes = m.encode_v2(|_| Some(3)).unwrap();
        assert!(matches!(MessageMeta::decode_in(&bytes, &["a".into()]), Err(ModelError::Corrupt(_))));
        assert!(matches!(MessageMeta::decode_in(&[7, 1], &[]), Err(ModelError::Corrupt(_))));
    }
}
