//! Conversions between the protobuf messages and the model's types.
//!
//! Kept in one file so the wire schema and the domain types can evolve separately: a proto
//! change touches these functions, not the service logic. Conversions that can fail because of
//! client input return [`ServerError::Invalid`].

use mailraft_model::records::Mailbox;
use mailraft_model::{Flag, FlagsUpdate, StoreOp, Uid, UidSet};
use mailraft_proto as pb;

use crate::error::ServerError;

/// A proto UID set (absent = empty) as the model's.
pub fn uid_set(set: Option<&pb::UidSet>) -> UidSet {
    UidSet { ranges: set.map(|s| s.ranges.iter().map(|r| (r.start, r.end)).collect()).unwrap_or_default() }
}

/// Ascending UIDs as compact proto ranges.
pub fn pb_uid_set_from_sorted(uids: &[Uid]) -> pb::UidSet {
    pb_uid_set(&UidSet::from_sorted(uids))
}

/// The model's UID set on the wire.
pub fn pb_uid_set(set: &UidSet) -> pb::UidSet {
    pb::UidSet { ranges: set.ranges.iter().map(|&(start, end)| pb::UidRange { start, end }).collect() }
}

/// Parses client flags. RFC 3501 §2.3.2: `\Recent` is session state a client cannot set, and
/// clients cannot create new system (backslash) flags, so both are refused rather than dropped.
pub fn parse_flags(flags: &[String]) -> Result<Vec<Flag>, ServerError> {
    let mut out: Vec<Flag> = Vec::with_capacity(flags.len());
    for f in flags {
        let flag = Flag::parse(f).ok_or_else(|| ServerError::Invalid(format!("flag {f} cannot be stored")))?;
        if !out.iter().any(|o| o.same(&flag)) {
            out.push(flag);
        }
    }
    Ok(out)
}

/// Flags in IMAP spelling.
pub fn flag_strings(flags: &[Flag]) -> Vec<String> {
    flags.iter().map(|f| f.as_imap().to_string()).collect()
}

/// The proto STORE operation.
pub fn store_op(op: i32) -> Result<StoreOp, ServerError> {
    match pb::StoreOp::try_from(op) {
        Ok(pb::StoreOp::StoreReplace) => Ok(StoreOp::Replace),
        Ok(pb::StoreOp::StoreAdd) => Ok(StoreOp::Add),
        Ok(pb::StoreOp::StoreRemove) => Ok(StoreOp::Remove),
        Err(_) => Err(ServerError::Invalid(format!("unknown store op {op}"))),
    }
}

/// A changed message's state on the wire.
pub fn message_flags(u: &FlagsUpdate) -> pb::MessageFlags {
    pb::MessageFlags { uid: u.uid, flags: flag_strings(&u.flags), modseq: u.modseq }
}

/// Empty special-use on the wire means none.
pub fn special_use(s: &str) -> Option<String> {
    let s = s.trim().trim_start_matches('\\');
    if s.is_empty() { None } else { Some(s.to_string()) }
}

/// A mailbox's LIST entry.
pub fn mailbox_info(mb: &Mailbox, subscribed: bool) -> pb::MailboxInfo {
    pb::MailboxInfo {
        mailbox_id: mb.id,
        name: mb.name.clone(),
        subscribed,
        special_use: mb.special_use.clone().unwrap_or_default(),
        uidvalidity: mb.uidvalidity,
    }
}

/// A mailbox's STATUS / SELECT header.
pub fn mailbox_status(mb: &Mailbox) -> pb::MailboxStatus {
    pb::MailboxStatus {
        mailbox_id: mb.id,
        uidvalidity: mb.uidvalidity,
        uidnext: mb.uidnext,
        highest_modseq: mb.highest_modseq,
        messages: mb.exists,
        unseen: mb.unseen,
        deleted: mb.deleted,
        size: mb.size,
        keywords: mb.keywords.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_refuse_recent_and_unknown_system_flags() {
        assert!(parse_flags(&["\\Recent".into()]).is_err());
        assert!(parse_flags(&["\\Foo".into()]).is_err());
        let f = parse_flags(&["\\seen".into(), "$Junk".into(), "$junk".into()]).unwrap();
        assert_eq!(f, vec![Flag::Seen, Flag::Keyword("$Junk".into())]);
    }

    #[test]
    fn uid_sets_round_trip() {
        let p = pb_uid_set_from_sorted(&[1, 2, 3, 7]);
        assert_eq!(uid_set(Some(&p)).ranges, vec![(1, 3), (7, 7)]);
        assert!(uid_set(None).ranges.is_empty());
    }
}
