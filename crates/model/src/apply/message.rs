//! Message commands: APPEND, STORE, EXPUNGE, COPY / MOVE, and the primitives every command
//! that touches messages shares (UID and MODSEQ allocation, counters, change log).
//!
//! MODSEQ rule (RFC 7162 §3.1): a command bumps a mailbox's HIGHESTMODSEQ once, and every
//! message it adds, changes or expunges in that mailbox gets that value. The change log keeps
//! one entry per UID (see [`Change`]), so `query::changes` is a range scan.
//!
//! Bounds ([`crate::limits`]): a command reads and writes at most
//! [`MAX_MESSAGES_PER_COMMAND`] messages, an APPEND carries at most [`MAX_APPEND_MESSAGES`], and
//! a mailbox remembers at most [`MAX_MAILBOX_KEYWORDS`] keywords, and a command reads and writes
//! at most [`MAX_COMMAND_BYTES`] of records. A refused command changes nothing (`TooBig` for
//! the message and byte bounds from feature level 2 on, `Limit` otherwise): the message and
//! keyword caps are checked before it writes anything, and the write bound discards the
//! command's private writes like any other error.

use std::collections::BTreeMap;

use super::Txn;
use std::ops::ControlFlow;

use crate::access::for_each_page;
use crate::feature::LEVEL_KEYWORD_INDEX;
use crate::command::{FlagsUpdate, ModelError, NewMessage, Outcome, Principal, Reply, StoreOp};
use crate::flags;
use crate::keys;
use crate::kv::Table;
use crate::limits::{MAX_APPEND_MESSAGES, MAX_COMMAND_BYTES, MAX_MAILBOX_KEYWORDS, MAX_MESSAGES_PER_COMMAND};
use crate::query;
use crate::records::{Change, Mailbox, MessageMeta};
use crate::types::{Flag, MailboxId, TenantId, Uid, UidSet};

/// Raises HIGHESTMODSEQ by one and returns it: the modseq of everything this command changes.
pub(super) fn bump_modseq(mb: &mut Mailbox) -> Result<u64, ModelError> {
    mb.highest_modseq = mb.highest_modseq.checked_add(1).ok_or_else(|| ModelError::Cannot("modseq exhausted".into()))?;
    Ok(mb.highest_modseq)
}

/// RFC 3501 §2.3.1.1: the next UID. UIDNEXT must stay representable, so the last UID a
/// mailbox can hand out is 2^32-2; after that the mailbox is full (`UidsExhausted`), because
/// reusing or wrapping UIDs would corrupt every client cache.
pub(super) fn alloc_uid(mb: &mut Mailbox) -> Result<Uid, ModelError> {
    let uid = mb.uidnext;
    mb.uidnext = uid.checked_add(1).ok_or(ModelError::UidsExhausted)?;
    Ok(uid)
}

/// A mailbox's keyword list (FLAGS / PERMANENTFLAGS) for the length of one command: adds the
/// keywords a command introduces, one spelling per keyword, and gives each its index for
/// version 2 message records ([`crate::message_record`]). One per mailbox the command writes.
///
/// Keywords compare case-insensitively, so lookups go through a map from the lowercase
/// spelling to the index, built once per command on first need: no keyword costs a scan of the
/// list. At feature level 1 the list is kept sorted (version 1 mailbox records stored a set) and
/// the map's indices are not used; from level 2 on a new keyword is appended, so an index keeps
/// its meaning while the mailbox lives.
// A version 2 record's keyword index is one byte.
const _: () = assert!(MAX_MAILBOX_KEYWORDS <= 256);

#[derive(Debug)]
pub(super) struct Keywords {
    level: u32,
    folded: Option<BTreeMap<String, u8>>,
}

impl Keywords {
    /// For a command running at `txn`'s feature level.
    pub(super) fn new(txn: &Txn<'_>) -> Self {
        Keywords { level: txn.level(), folded: None }
    }

    fn indexed(&self) -> bool {
        self.level >= LEVEL_KEYWORD_INDEX
    }

    fn folded(&mut self, mb: &Mailbox) -> &mut BTreeMap<String, u8> {
        // At most MAX_MAILBOX_KEYWORDS (256) entries, so every index fits a u8; a list longer
        // than that (not written by any release) gets no index past 255: encoding a keyword
        // without one is `Corrupt`, never a wrapped index naming another keyword.
        self.folded.get_or_insert_with(|| {
            mb.keywords.iter().enumerate().filter_map(|(i, k)| Some((k.to_ascii_lowercase(), u8::try_from(i).ok()?))).collect()
        })
    }

    /// Remembers the keywords of `fl` in `mb`; `Limit` if one is new and the mailbox already has
    /// [`MAX_MAILBOX_KEYWORDS`].
    pub(super) fn add(&mut self, mb: &mut Mailbox, fl: &[Flag]) -> Result<(), ModelError> {
        for f in fl {
            let Flag::Keyword(k) = f else { continue };
            // Level 1's sorted list finds the exact spelling without building the map.
            if !self.indexed() && mb.keywords.binary_search(k).is_ok() {
                continue;
            }
            let lower = k.to_ascii_lowercase();
            if self.folded(mb).contains_key(&lower) {
                continue;
            }
            if mb.keywords.len() >= MAX_MAILBOX_KEYWORDS {
                return Err(ModelError::Limit(format!(
                    "mailbox {} already has {MAX_MAILBOX_KEYWORDS} keywords",
                    mb.name
                )));
            }
            // Below the cap of 256, so the index fits (checked at compile time below).
            let index = u8::try_from(mb.keywords.len()).map_err(|_| ModelError::Corrupt(format!("mailbox {} keyword list", mb.name)))?;
            self.folded(mb).insert(lower, index);
            if self.indexed() {
                mb.keywords.push(k.clone());
            } else {
                let at = mb.keywords.binary_search(k).unwrap_or_else(|at| at);
                mb.keywords.insert(at, k.clone());
            }
        }
        Ok(())
    }

    /// `flags` with each keyword in `mb`'s spelling, as a version 2 record gives them back (from
    /// level 2 on; unchanged before, when a record kept its own spelling).
    pub(super) fn canonical(&mut self, mb: &Mailbox, flags: Vec<Flag>) -> Vec<Flag> {
        if !self.indexed() {
            return flags;
        }
        flags
            .into_iter()
            .map(|f| match f {
                Flag::Keyword(k) => {
                    let known = self.folded(mb).get(&k.to_ascii_lowercase()).and_then(|&i| mb.keywords.get(usize::from(i)));
                    Flag::Keyword(known.cloned().unwrap_or(k))
                }
                other => other,
            })
            .collect()
    }

    /// The record bytes of `m` in `mb`: version 2 from level 2 on, version 1 before.
    fn encode(&mut self, mb: &Mailbox, m: &MessageMeta) -> Result<Vec<u8>, ModelError> {
        if !self.indexed() {
            return Ok(m.encode_v1());
        }
        let folded = self.folded(mb);
        m.encode_v2(|k| folded.get(&k.to_ascii_lowercase()).copied())
    }
}

/// The messages of `mb` among `uids`, ascending, refusing (`TooBig`) a set of more than
/// [`MAX_MESSAGES_PER_COMMAND`] ranges or messages, or of records larger than
/// [`MAX_COMMAND_BYTES`] together. Reads at most one page past either bound.
pub(super) fn bounded_messages(txn: &Txn<'_>, tenant: TenantId, mb: &Mailbox, uids: &UidSet) -> Result<Vec<MessageMeta>, ModelError> {
    let too_many = || txn.too_big(format!("a command may touch at most {MAX_MESSAGES_PER_COMMAND} messages"));
    if uids.ranges.len() > MAX_MESSAGES_PER_COMMAND {
        return Err(too_many());
    }
    let mut out = Vec::new();
    let mut read = 0u64;
    for (first, last) in uids.normalized() {
        let range = keys::message_range(tenant, mb.id, first, last);
        let mut over = None;
        for_each_page(txn, Table::Messages, &range, MAX_MESSAGES_PER_COMMAND + 1 - out.len(), |page| {
            for (_, v) in page {
                let m = MessageMeta::decode_for(&v, mb)?;
                // Level 2's records are small on disk but decode to the same strings.
                let held = if txn.level() >= LEVEL_KEYWORD_INDEX { m.keyword_bytes() } else { 0 };
                read = read.saturating_add(v.len() as u64).saturating_add(held);
                out.push(m);
            }
            if read > MAX_COMMAND_BYTES {
                over = Some(txn.too_big(format!(
                    "a command may read at most {} MiB of message records",
                    MAX_COMMAND_BYTES >> 20
                )));
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })?;
        if let Some(e) = over {
            return Err(e);
        }
        if out.len() > MAX_MESSAGES_PER_COMMAND {
            return Err(too_many());
        }
    }
    Ok(out)
}

/// `TooBig` as `Limit`, for a command no client can split (DELETE, RENAME INBOX): its size is
/// a refusal the user answers differently (expunge first), not by retrying in parts.
pub(super) fn unsplittable(e: ModelError) -> ModelError {
    match e {
        ModelError::TooBig(why) => ModelError::Limit(why),
        other => other,
    }
}

fn count(mb: &mut Mailbox, m: &MessageMeta, add: bool) {
    let seen = m.flags.contains(&Flag::Seen);
    let deleted = m.flags.contains(&Flag::Deleted);
    let step = |v: u32, on: bool| match (on, add) {
        (false, _) => v,
        (true, true) => v.saturating_add(1),
        (true, false) => v.saturating_sub(1),
    };
    mb.exists = step(mb.exists, true);
    mb.unseen = step(mb.unseen, !seen);
    mb.deleted = step(mb.deleted, deleted);
    mb.size = if add { mb.size.saturating_add(m.size) } else { mb.size.saturating_sub(m.size) };
}

/// Writes a new message (its UID and modseq already allocated) and logs it as `Added`.
/// Blob references and quota are the caller's, and so is adding its keywords to `kw` first.
pub(super) fn insert_message(
    txn: &mut Txn<'_>,
    tenant: TenantId,
    mb: &mut Mailbox,
    kw: &mut Keywords,
    m: &MessageMeta,
) -> Result<(), ModelError> {
    count(mb, m, true);
    txn.put(Table::Changes, keys::change(tenant, mb.id, m.modseq, m.uid), &Change::Added);
    write_message(txn, tenant, mb, kw, m)
}

/// Writes `m`'s record in `mb`, in the version the feature level allows. From level 2 on the
/// keywords also count toward the command's write bound as strings: the command builds them, and
/// STORE replies with them, so a small record must not make a huge command cheap.
fn write_message(txn: &mut Txn<'_>, tenant: TenantId, mb: &Mailbox, kw: &mut Keywords, m: &MessageMeta) -> Result<(), ModelError> {
    let bytes = kw.encode(mb, m)?;
    if kw.indexed() {
        txn.count_written(m.keyword_bytes() as usize);
    }
    txn.put_raw(Table::Messages, keys::message(tenant, mb.id, m.uid), bytes);
    Ok(())
}

/// Removes a message at `modseq`: its log entry becomes `Expunged`. Blob references and quota
/// are the caller's.
pub(super) fn remove_message(txn: &mut Txn<'_>, tenant: TenantId, mb: &mut Mailbox, m: &MessageMeta, modseq: u64) {
    count(mb, m, false);
    txn.delete(Table::Messages, keys::message(tenant, mb.id, m.uid));
    txn.delete(Table::Changes, keys::change(tenant, mb.id, m.modseq, m.uid));
    txn.put(Table::Changes, keys::change(tenant, mb.id, modseq, m.uid), &Change::Expunged);
}

/// RFC 3501 §6.3.11 APPEND (RFC 4315 APPENDUID): UIDs in message order, one modseq for all.
pub(super) fn append(txn: &mut Txn<'_>, who: Principal, mailbox: &str, messages: &[NewMessage]) -> Reply {
    if messages.is_empty() {
        return Err(ModelError::Invalid("nothing to append".into()));
    }
    if messages.len() > MAX_APPEND_MESSAGES {
        return Err(ModelError::Limit(format!("an append may carry at most {MAX_APPEND_MESSAGES} messages")));
    }
    let mut mb = query::mailbox_by_name(txn, who, mailbox)?;
    let mut keywords = Keywords::new(txn);
    for m in messages {
        flags::validate(&m.flags)?;
        if m.tz_offset_minutes.abs() >= 24 * 60 {
            return Err(ModelError::Invalid("time zone offset".into()));
        }
        keywords.add(&mut mb, &m.flags)?;
    }
    let total = messages.iter().fold(0u64, |acc, m| acc.saturating_add(m.body.len() as u64));
    txn.charge(who, total)?;
    let modseq = bump_modseq(&mut mb)?;
    let now = txn.now_secs();
    let mut uids = Vec::with_capacity(messages.len());
    for m in messages {
        let uid = alloc_uid(&mut mb)?;
        let blob = txn.store_blob(who.tenant, &m.body, &m.structure)?;
        let meta = MessageMeta {
            uid,
            flags: flags::normalize(&m.flags),
            modseq,
            internal_date: m.internal_date.unwrap_or(now),
            tz_offset_minutes: m.tz_offset_minutes,
            save_date: now,
            size: m.body.len() as u64,
            blob,
        };
        insert_message(txn, who.tenant, &mut mb, &mut keywords, &meta)?;
        uids.push(uid);
    }
    txn.save_mailbox(who, &mb);
    txn.event(who, mb.id, modseq);
    Ok(Outcome::Appended { mailbox: mb.id, uidvalidity: mb.uidvalidity, uids, highest_modseq: modseq })
}

/// RFC 3501 §6.4.6 STORE with RFC 7162 §3.1.3 UNCHANGEDSINCE: messages whose modseq is above
/// `unchanged_since` are reported `modified` and left alone; messages the operation would not
/// change keep their modseq and are reported `unchanged`.
#[allow(clippy::too_many_arguments)]
pub(super) fn store(
    txn: &mut Txn<'_>,
    who: Principal,
    mailbox: MailboxId,
    uidvalidity: u32,
    uids: &UidSet,
    op: StoreOp,
    given: &[Flag],
    unchanged_since: u64,
) -> Reply {
    let mut mb = query::mailbox_by_id(txn, who, mailbox, uidvalidity)?;
    flags::validate(given)?;
    let given = flags::normalize(given);
    let (mut updated, mut unchanged, mut modified) = (Vec::new(), Vec::new(), Vec::new());
    let mut modseq = None;
    let mut keywords = Keywords::new(txn);
    for m in bounded_messages(txn, who.tenant, &mb, uids)? {
        if unchanged_since > 0 && m.modseq > unchanged_since {
            modified.push(m.uid);
            continue;
        }
        let new_flags = flags::apply_op(&m.flags, op, &given);
        if flags::same_set(&new_flags, &m.flags) {
            unchanged.push(FlagsUpdate { uid: m.uid, flags: m.flags, modseq: m.modseq });
            continue;
        }
        let ms = match modseq {
            Some(ms) => ms,
            None => *modseq.insert(bump_modseq(&mut mb)?),
        };
        keywords.add(&mut mb, &new_flags)?;
        // The reply shows the flags as a later FETCH will.
        let new = MessageMeta { flags: keywords.canonical(&mb, new_flags), modseq: ms, ..m.clone() };
        count(&mut mb, &m, false);
        count(&mut mb, &new, true);
        txn.delete(Table::Changes, keys::change(who.tenant, mb.id, m.modseq, m.uid));
        txn.put(Table::Changes, keys::change(who.tenant, mb.id, ms, m.uid), &Change::Flags);
        write_message(txn, who.tenant, &mb, &mut keywords, &new)?;
        updated.push(FlagsUpdate { uid: new.uid, flags: new.flags, modseq: ms });
        txn.within_bounds()?;
    }
    if let Some(ms) = modseq {
        txn.save_mailbox(who, &mb);
        txn.event(who, mb.id, ms);
    }
    Ok(Outcome::Stored { updated, unchanged, modified, highest_modseq: mb.highest_modseq })
}

/// RFC 3501 §6.4.3 EXPUNGE / RFC 4315 §2.1 UID EXPUNGE: removes the `\Deleted` messages
/// (among `uids` if given), dropping blob references and quota usage.
pub(super) fn expunge(txn: &mut Txn<'_>, who: Principal, mailbox: MailboxId, uidvalidity: u32, uids: Option<&UidSet>) -> Reply {
    let mut mb = query::mailbox_by_id(txn, who, mailbox, uidvalidity)?;
    // The counter says whether there is anything to find: no scan of a mailbox without `\Deleted`.
    if mb.deleted == 0 {
        return Ok(Outcome::Expunged { uids: Vec::new(), highest_modseq: mb.highest_modseq });
    }
    let all = UidSet::range(1, Uid::MAX);
    let mut gone = bounded_messages(txn, who.tenant, &mb, uids.unwrap_or(&all))?;
    gone.retain(|m| m.flags.contains(&Flag::Deleted));
    if gone.is_empty() {
        return Ok(Outcome::Expunged { uids: Vec::new(), highest_modseq: mb.highest_modseq });
    }
    let modseq = bump_modseq(&mut mb)?;
    let mut bytes = 0u64;
    for m in &gone {
        remove_message(txn, who.tenant, &mut mb, m, modseq);
        txn.drop_blob_ref(who.tenant, &m.blob)?;
        bytes = bytes.saturating_add(m.size);
        txn.within_bounds()?;
    }
    txn.refund(who, bytes)?;
    txn.save_mailbox(who, &mb);
    txn.event(who, mb.id, modseq);
    Ok(Outcome::Expunged { uids: gone.iter().map(|m| m.uid).collect(), highest_modseq: modseq })
}

/// RFC 3501 §6.4.7 COPY (RFC 4315 COPYUID) and RFC 6851 MOVE (copy, then expunge the sources
/// in the same command). Blobs are shared, never copied. The destination may be the source:
/// then one modseq covers both the new copies and (for MOVE) the expunged originals.
pub(super) fn copy(
    txn: &mut Txn<'_>,
    who: Principal,
    mailbox: MailboxId,
    uidvalidity: u32,
    uids: &UidSet,
    destination: &str,
    is_move: bool,
) -> Reply {
    let mut src = query::mailbox_by_id(txn, who, mailbox, uidvalidity)?;
    let mut dest = query::mailbox_by_name(txn, who, destination)?;
    let same = dest.id == src.id;
    let msgs = bounded_messages(txn, who.tenant, &src, uids)?;
    if msgs.is_empty() {
        return Ok(Outcome::Copied {
            dest_mailbox: dest.id,
            dest_uidvalidity: dest.uidvalidity,
            source_uids: Vec::new(),
            dest_uids: Vec::new(),
            highest_modseq: src.highest_modseq,
        });
    }
    let bytes = msgs.iter().fold(0u64, |acc, m| acc.saturating_add(m.size));
    if !is_move {
        // A MOVE adds and removes the same bytes: it never needs more quota.
        txn.charge(who, bytes)?;
    }
    let mut keywords = Keywords::new(txn);
    for m in &msgs {
        keywords.add(&mut dest, &m.flags)?;
    }
    let dest_modseq = bump_modseq(&mut dest)?;
    let now = txn.now_secs();
    let mut dest_uids = Vec::with_capacity(msgs.len());
    for m in &msgs {
        let uid = alloc_uid(&mut dest)?;
        txn.add_blob_ref(who.tenant, &m.blob)?;
        // RFC 8514 §2: SAVEDATE is when the copy was saved; the rest carries over.
        let copied = MessageMeta { uid, modseq: dest_modseq, save_date: now, ..m.clone() };
        insert_message(txn, who.tenant, &mut dest, &mut keywords, &copied)?;
        dest_uids.push(uid);
        txn.within_bounds()?;
    }
    if same {
        src = dest.clone();
    }
    if is_move {
        let src_modseq = if same { dest_modseq } else { bump_modseq(&mut src)? };
        for m in &msgs {
            remove_message(txn, who.tenant, &mut src, m, src_modseq);
            txn.drop_blob_ref(who.tenant, &m.blob)?;
            txn.within_bounds()?;
        }
    }
    if !same {
        txn.save_mailbox(who, &dest);
        txn.event(who, dest.id, dest.highest_modseq);
    }
    if same || is_move {
        txn.save_mailbox(who, &src);
        txn.event(who, src.id, src.highest_modseq);
    }
    Ok(Outcome::Copied {
        dest_mailbox: dest.id,
        dest_uidvalidity: dest.uidvalidity,
        source_uids: msgs.iter().map(|m| m.uid).collect(),
        dest_uids,
        highest_modseq: src.highest_modseq,
    })
}
