//! The selected mailbox as this session has described it to the client.
//!
//! IMAP numbers messages by position (sequence numbers), so the session must keep exactly the
//! view it has announced: the UID of every message the client knows about, in order, including
//! messages another session has expunged that this client has not been told about yet (RFC 3501
//! §7.4.1 forbids EXPUNGE responses during FETCH, STORE and SEARCH, so such messages stay in the
//! view as "pending expunges" until a command that may announce them).
//!
//! This module is pure: it turns a storage `ChangesResponse` (or a fresh `SelectResponse` after a
//! resync) into the untagged responses to send, updating the view as the client will see it.

use std::collections::{BTreeSet, HashMap};

use mailraft_proto as proto;

use crate::seqset::SeqMap;

/// An unsolicited update for the client, in the order it must be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// `* n FETCH (UID u FLAGS (...))`: flags of a known message changed (with `MODSEQ (m)`
    /// once the client enabled CONDSTORE, RFC 7162 §3.1).
    Flags {
        /// Sequence number at the time the response is sent.
        seq: u32,
        /// UID of the message.
        uid: u32,
        /// Current flags.
        flags: Vec<String>,
        /// The message's mod-sequence after the change.
        modseq: u64,
    },
    /// `* n EXPUNGE`.
    Expunge(u32),
    /// `* n EXISTS`: the mailbox now has `n` messages.
    Exists(u32),
    /// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]`: the mailbox's keywords grew (RFC 3501
    /// §7.2.6). Sent before any FETCH that carries a new keyword.
    Keywords {
        /// Every keyword the mailbox defines, as the client must now know them.
        keywords: Vec<String>,
        /// EXAMINE: PERMANENTFLAGS stays empty (RFC 3501 §6.3.2).
        read_only: bool,
    },
}

/// State of the selected mailbox (RFC 3501 "selected state").
#[derive(Debug, Clone)]
pub struct Selected {
    /// Storage id of the mailbox (stable across renames).
    pub mailbox_id: u64,
    /// Name as the storage knows it (UTF-8).
    pub name: String,
    /// UIDVALIDITY announced at SELECT; every storage call checks it.
    pub uidvalidity: u32,
    /// Opened with EXAMINE: no flag changes, no expunges, no implicit `\Seen` (RFC 3501 §6.3.2).
    pub read_only: bool,
    /// Sequence number ↔ UID map of the client's view.
    pub map: SeqMap,
    /// Highest modseq whose changes the client has been told about (or that are pending).
    pub highest_modseq: u64,
    /// UIDs expunged in storage but still in `map` because no EXPUNGE could be sent yet.
    pub pending_expunges: BTreeSet<u32>,
    /// Flag changes this session made itself and already reported (uid → modseq), so the next
    /// change poll does not report them twice.
    pub own_changes: HashMap<u32, u64>,
    /// The keywords the client was told the mailbox defines (FLAGS at SELECT and since). A
    /// keyword outside it must be announced with a new FLAGS before a FETCH shows it (RFC 3501
    /// §7.2.6); the storage's set only grows, so the session only ever adds to it.
    pub keywords: Vec<String>,
}

impl Selected {
    /// The view right after SELECT/EXAMINE.
    pub fn new(name: String, response: &proto::SelectResponse, read_only: bool) -> Self {
        let status = response.status.clone().unwrap_or_default();
        let mut map = response.uids.as_ref().map(SeqMap::from_uid_set).unwrap_or_default();
        map.set_uid_next(status.uidnext);
        Self {
            mailbox_id: status.mailbox_id,
            name,
            uidvalidity: status.uidvalidity,
            read_only,
            map,
            highest_modseq: status.highest_modseq,
            pending_expunges: BTreeSet::new(),
            own_changes: HashMap::new(),
            keywords: status.keywords,
        }
    }

    /// Records the keywords among `flags` the client has not been told about and returns the
    /// FLAGS update announcing them, if there were any (RFC 3501 §7.2.6: "the update from the
    /// FLAGS response MUST be recorded by the client", so it precedes the FETCH using them).
    /// Keywords compare case-insensitively, as the storage keeps them.
    pub fn learn_keywords<'a>(&mut self, flags: impl IntoIterator<Item = &'a String>) -> Option<Update> {
        let mut learned = false;
        for flag in flags {
            if flag.starts_with('\\') || self.keywords.iter().any(|k| k.eq_ignore_ascii_case(flag)) {
                continue;
            }
            self.keywords.push(flag.clone());
            learned = true;
        }
        learned.then(|| Update::Keywords { keywords: self.keywords.clone(), read_only: self.read_only })
    }

    /// Number of messages in the client's view (what EXISTS last said).
    pub fn exists(&self) -> u32 {
        self.map.len()
    }

    /// Records flag changes this session reported itself (STORE, FETCH setting `\Seen`).
    pub fn note_own_changes<'a>(&mut self, changes: impl IntoIterator<Item = &'a proto::MessageFlags>) {
        for change in changes {
            self.own_changes.insert(change.uid, change.modseq);
        }
    }

    /// Applies a change poll. Expunges are announced only when `allow_expunge` (RFC 3501 §7.4.1);
    /// otherwise they wait in `pending_expunges`.
    pub fn apply_changes(&mut self, changes: &proto::ChangesResponse, allow_expunge: bool) -> Vec<Update> {
        let mut updates = Vec::new();
        let expunged: BTreeSet<u32> = changes.expunged.iter().copied().collect();
        // New messages (APPEND, COPY, MOVE) and flag changes, this session's own included, may
        // bring keywords the client does not know yet.
        let live = changes.changed.iter().filter(|c| !expunged.contains(&c.uid));
        updates.extend(self.learn_keywords(live.flat_map(|c| &c.flags)));
        for uid in &expunged {
            if self.map.seq_of(*uid).is_some() {
                self.pending_expunges.insert(*uid);
            }
        }
        let mut new_uids = Vec::new();
        for change in &changes.changed {
            if expunged.contains(&change.uid) {
                continue;
            }
            match self.map.seq_of(change.uid) {
                Some(seq) => {
                    if self.pending_expunges.contains(&change.uid)
                        || self.own_changes.get(&change.uid) == Some(&change.modseq)
                    {
                        continue;
                    }
                    updates.push(Update::Flags {
                        seq,
                        uid: change.uid,
                        flags: change.flags.clone(),
                        modseq: change.modseq,
                    });
                }
                None if self.map.last_uid().is_none_or(|last| change.uid > last) => {
                    new_uids.push(change.uid);
                }
                // An old UID we do not know: it was expunged before we saw it.
                None => {}
            }
        }
        new_uids.sort_unstable();
        new_uids.dedup();
        let added = !new_uids.is_empty();
        for uid in new_uids {
            // Ascending and above the last UID, so push cannot fail; ignore defensively.
            let _ = self.map.push(uid);
        }
        if allow_expunge {
            updates.extend(self.flush_expunges());
        }
        // EXISTS only when messages arrived: after EXPUNGEs the client already knows the count.
        if added {
            updates.push(Update::Exists(self.map.len()));
        }
        if changes.uidnext > 0 {
            self.map.set_uid_next(changes.uidnext);
        }
        self.highest_modseq = self.highest_modseq.max(changes.highest_modseq);
        self.own_changes.retain(|_, modseq| *modseq > changes.highest_modseq);
        updates
    }

    /// Announces every pending expunge, highest sequence number first so that each EXPUNGE
    /// leaves the numbers of the remaining pending ones unchanged.
    pub fn flush_expunges(&mut self) -> Vec<Update> {
        let mut updates = Vec::new();
        let pending = std::mem::take(&mut self.pending_expunges);
        for uid in pending.into_iter().rev() {
            if let Some(seq) = self.map.remove(uid) {
                updates.push(Update::Expunge(seq));
            }
        }
        updates
    }

    /// Removes messages this session expunged itself (EXPUNGE, MOVE), returning their EXPUNGE
    /// responses, highest sequence number first.
    pub fn expunge_own(&mut self, uids: &[u32]) -> Vec<Update> {
        let mut uids: Vec<u32> = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let mut updates = Vec::new();
        for uid in uids.into_iter().rev() {
            self.pending_expunges.remove(&uid);
            if let Some(seq) = self.map.remove(uid) {
                updates.push(Update::Expunge(seq));
            }
        }
        updates
    }

    /// Reconciles the view with a fresh SELECT after the change log could not reach back far
    /// enough (`ChangesResponse.resync`). Flag changes are not recoverable from the UID lists;
    /// the caller follows up with the current flags of every message (`updates::poll`).
    pub fn apply_resync(&mut self, response: &proto::SelectResponse, allow_expunge: bool) -> Vec<Update> {
        let status = response.status.clone().unwrap_or_default();
        let current = response.uids.as_ref().map(SeqMap::from_uid_set).unwrap_or_default();
        let last_known = self.map.last_uid();
        let changes = proto::ChangesResponse {
            expunged: self.map.uids().iter().copied().filter(|uid| current.seq_of(*uid).is_none()).collect(),
            changed: current
                .uids()
                .iter()
                .filter(|uid| last_known.is_none_or(|last| **uid > last))
                .map(|uid| proto::MessageFlags { uid: *uid, flags: Vec::new(), modseq: 0 })
                .collect(),
            highest_modseq: status.highest_modseq,
            uidnext: status.uidnext,
            resync: false,
        };
        self.apply_changes(&changes, allow_expunge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(uids: &[u32]) -> Selected {
        let response = proto::SelectResponse {
            status: Some(proto::MailboxStatus {
                mailbox_id: 7,
                uidvalidity: 1,
                uidnext: uids.last().map_or(1, |u| u + 1),
                highest_modseq: 10,
                ..Default::default()
            }),
            uids: Some(crate::seqset::to_uid_set(uids)),
            first_unseen_uid: 0,
        };
        Selected::new("INBOX".into(), &response, false)
    }

    fn flags(uid: u32, modseq: u64) -> proto::MessageFlags {
        proto::MessageFlags { uid, flags: vec!["\\Seen".into()], modseq }
    }

    #[test]
    fn new_messages_give_exists() {
        let mut sel = selected(&[1, 2, 3]);
        let changes = proto::ChangesResponse {
            changed: vec![flags(4, 11), flags(5, 12)],
            highest_modseq: 12,
            uidnext: 6,
            ..Default::default()
        };
        assert_eq!(sel.apply_changes(&changes, true), vec![Update::Exists(5)]);
        assert_eq!(sel.highest_modseq, 12);
        assert_eq!(sel.map.uids(), &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn expunges_are_held_when_not_allowed_and_flushed_later_in_descending_order() {
        let mut sel = selected(&[1, 2, 3, 4]);
        let changes = proto::ChangesResponse { expunged: vec![2, 4], highest_modseq: 12, ..Default::default() };
        assert_eq!(sel.apply_changes(&changes, false), vec![]);
        assert_eq!(sel.exists(), 4, "the client's view keeps the expunged messages");
        // A later message arrives: EXISTS counts the held ones too (RFC 3501 §7.3.1).
        let changes = proto::ChangesResponse { changed: vec![flags(5, 13)], highest_modseq: 13, ..Default::default() };
        assert_eq!(sel.apply_changes(&changes, false), vec![Update::Exists(5)]);
        assert_eq!(sel.flush_expunges(), vec![Update::Expunge(4), Update::Expunge(2)]);
        assert_eq!(sel.map.uids(), &[1, 3, 5]);
    }

    #[test]
    fn flag_changes_skip_own_and_pending() {
        let mut sel = selected(&[1, 2, 3]);
        sel.note_own_changes(&[flags(1, 11)]);
        let changes = proto::ChangesResponse {
            changed: vec![flags(1, 11), flags(2, 12), flags(3, 13)],
            expunged: vec![3],
            highest_modseq: 13,
            ..Default::default()
        };
        let updates = sel.apply_changes(&changes, true);
        assert_eq!(
            updates,
            vec![
                Update::Flags { seq: 2, uid: 2, flags: vec!["\\Seen".into()], modseq: 12 },
                Update::Expunge(3),
            ]
        );
        assert!(sel.own_changes.is_empty());
    }

    /// RFC 3501 §7.2.6: a keyword new to the client comes with FLAGS before the FETCH using it,
    /// whether it arrives on a known message or on a new one (APPEND, COPY), and only once.
    #[test]
    fn new_keywords_are_announced_first_and_once() {
        let mut sel = selected(&[1, 2]);
        sel.keywords = vec!["$Junk".into()];
        let kw = |uid, modseq, flags: &[&str]| proto::MessageFlags {
            uid,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            modseq,
        };
        let changes = proto::ChangesResponse {
            changed: vec![kw(1, 11, &["\\Seen", "$label1"]), kw(3, 12, &["$junk", "$label2"])],
            highest_modseq: 12,
            ..Default::default()
        };
        let updates = sel.apply_changes(&changes, true);
        let announced = vec!["$Junk".to_owned(), "$label1".to_owned(), "$label2".to_owned()];
        assert_eq!(updates[0], Update::Keywords { keywords: announced.clone(), read_only: false });
        assert!(matches!(updates[1], Update::Flags { seq: 1, .. }), "{updates:?}");
        assert_eq!(updates[2], Update::Exists(3));
        let changes = proto::ChangesResponse {
            changed: vec![kw(2, 13, &["$LABEL1", "\\Flagged"])],
            highest_modseq: 13,
            ..Default::default()
        };
        assert!(matches!(sel.apply_changes(&changes, true)[..], [Update::Flags { seq: 2, .. }]));
        assert_eq!(sel.keywords, announced);
    }

    #[test]
    fn own_expunges_and_repeated_reports_are_idempotent() {
        let mut sel = selected(&[1, 2, 3]);
        assert_eq!(sel.expunge_own(&[1, 3]), vec![Update::Expunge(3), Update::Expunge(1)]);
        let changes = proto::ChangesResponse { expunged: vec![1, 3], highest_modseq: 12, ..Default::default() };
        assert_eq!(sel.apply_changes(&changes, true), vec![]);
        assert_eq!(sel.map.uids(), &[2]);
    }

    #[test]
    fn exists_follows_expunge_when_count_is_unchanged() {
        let mut sel = selected(&[1, 2]);
        let changes = proto::ChangesResponse {
            expunged: vec![2],
            changed: vec![flags(3, 12)],
            highest_modseq: 12,
            ..Default::default()
        };
        assert_eq!(sel.apply_changes(&changes, true), vec![Update::Expunge(2), Update::Exists(2)]);
    }

    #[test]
    fn resync_diffs_uid_lists() {
        let mut sel = selected(&[1, 2, 3]);
        let response = proto::SelectResponse {
            status: Some(proto::MailboxStatus { uidvalidity: 1, uidnext: 6, highest_modseq: 50, ..Default::default() }),
            uids: Some(crate::seqset::to_uid_set(&[1, 3, 4, 5])),
            first_unseen_uid: 0,
        };
        assert_eq!(sel.apply_resync(&response, true), vec![Update::Expunge(2), Update::Exists(4)]);
        assert_eq!(sel.highest_modseq, 50);
    }
}
