//! Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE / UNSUBSCRIBE.

use super::Txn;
use super::message::{Keywords, bounded_messages, bump_modseq, insert_message, remove_message, unsplittable};
use crate::access::{scan_all, scan_up_to};
use crate::command::{ModelError, Outcome, Principal, Reply};
use crate::keys;
use crate::limits::{MAX_MAILBOXES_PER_ACCOUNT, MAX_MESSAGES_PER_COMMAND};
use crate::kv::{KvRead, Table};
use crate::names::{self, SEPARATOR};
use crate::query;
use crate::records::{Mailbox, MessageMeta};
use crate::types::{Uid, UidSet};

/// RFC 6154 §2 and RFC 8457 special-use attributes, as stored (without backslash).
const SPECIAL_USES: [&str; 8] = ["All", "Archive", "Drafts", "Flagged", "Important", "Junk", "Sent", "Trash"];

/// RFC 6154 §5.2: unknown attributes are refused (`USEATTR`). Accepts any case and an optional
/// leading backslash; stores the canonical spelling.
fn check_special_use(s: &str) -> Result<String, ModelError> {
    let bare = s.strip_prefix('\\').unwrap_or(s);
    SPECIAL_USES
        .iter()
        .find(|u| u.eq_ignore_ascii_case(bare))
        .map(|u| u.to_string())
        .ok_or_else(|| ModelError::Invalid(format!("special-use attribute {s:?}")))
}

fn exists(txn: &Txn<'_>, who: Principal, name: &str) -> Result<bool, ModelError> {
    Ok(query::mailbox_id(txn, who, name)?.is_some())
}

/// RFC 3501 §6.3.3 / §6.3.5: superiors a new name needs are created, without special use.
fn create_parents(txn: &mut Txn<'_>, who: Principal, name: &str) -> Result<(), ModelError> {
    for parent in names::parents(name) {
        if !exists(txn, who, &parent)? {
            txn.new_mailbox(who, &parent, None)?;
        }
    }
    Ok(())
}

/// RFC 3501 §6.3.3 CREATE (RFC 6154 §5.3 CREATE-SPECIAL-USE).
pub(super) fn create(txn: &mut Txn<'_>, who: Principal, name: &str, special_use: Option<&str>) -> Reply {
    txn.load_account(who)?;
    let name = names::validate_new(name)?;
    let special_use = special_use.map(check_special_use).transpose()?;
    if exists(txn, who, &name)? {
        return Err(ModelError::AlreadyExists(format!("mailbox {name}")));
    }
    create_parents(txn, who, &name)?;
    let mb = txn.new_mailbox(who, &name, special_use)?;
    // Counted after creating, parents included; a refusal discards every write of the command.
    let range = keys::prefix_range(keys::account_prefix(who.tenant, who.account));
    if scan_up_to(txn, Table::Mailboxes, &range, MAX_MAILBOXES_PER_ACCOUNT + 1).len() > MAX_MAILBOXES_PER_ACCOUNT {
        return Err(ModelError::Limit(format!("an account may have at most {MAX_MAILBOXES_PER_ACCOUNT} mailboxes")));
    }
    Ok(Outcome::MailboxCreated { mailbox: mb.id, uidvalidity: mb.uidvalidity })
}

/// RFC 3501 §6.3.4 DELETE: removes the mailbox, its messages (dropping blob references and
/// quota usage) and its change log. Inferiors remain; subscriptions are left alone
/// (RFC 3501 §6.3.6). Sessions that selected it learn through an event whose modseq is one past
/// the last one: their next `mailbox_by_id` reports `NotFound`.
///
/// Removing every message is one apply, so a mailbox holding more than
/// [`MAX_MESSAGES_PER_COMMAND`] is refused with `Limit` (judged by its message counter, before
/// anything is read), and so is one whose message records pass the byte bound of every command
/// (`MAX_COMMAND_BYTES`, found as they are read): the user expunges it in bounded steps first
/// (RFC 3501 lets DELETE fail).
/// The change log is not bounded by this: it keeps an `Expunged` entry per UID ever expunged
/// (nothing prunes it yet, `changelog_floor` stays 0), so a long-lived mailbox's log can be
/// larger than its message count.
pub(super) fn delete(txn: &mut Txn<'_>, who: Principal, name: &str) -> Reply {
    let name = names::canonical(name);
    if names::is_inbox(&name) {
        return Err(ModelError::Cannot("INBOX cannot be deleted".into()));
    }
    let mb = query::mailbox_by_name(txn, who, &name)?;
    if mb.exists as usize > MAX_MESSAGES_PER_COMMAND {
        return Err(ModelError::Limit(format!(
            "mailbox {name} holds {} messages; only a mailbox of at most {MAX_MESSAGES_PER_COMMAND} can be deleted, \
             expunge its messages first",
            mb.exists
        )));
    }
    let mut bytes = 0u64;
    // Read under the same byte bound as COPY or EXPUNGE: a mailbox of records heavy with
    // keywords is refused (`Limit`) before they are all in memory, like one of too many messages.
    for m in bounded_messages(txn, who.tenant, &mb, &UidSet::range(1, Uid::MAX)).map_err(unsplittable)? {
        txn.drop_blob_ref(who.tenant, &m.blob)?;
        txn.delete(Table::Messages, keys::message(who.tenant, mb.id, m.uid));
        bytes = bytes.saturating_add(m.size);
    }
    let log = keys::prefix_range(keys::mailbox_prefix(who.tenant, mb.id));
    for (k, _) in scan_all(txn, Table::Changes, &log) {
        txn.delete(Table::Changes, k);
    }
    txn.refund(who, bytes)?;
    txn.delete(Table::Mailboxes, keys::mailbox(who.tenant, who.account, mb.id));
    txn.delete(Table::MailboxByName, keys::mailbox_by_name(who.tenant, who.account, &name));
    txn.event(who, mb.id, mb.highest_modseq.saturating_add(1));
    Ok(Outcome::Done)
}

/// RFC 3501 §6.3.5 RENAME: keeps id, UIDVALIDITY and UIDNEXT and renames inferiors too; INBOX
/// is special (see [`rename_inbox`]).
pub(super) fn rename(txn: &mut Txn<'_>, who: Principal, from: &str, to: &str) -> Reply {
    let from = names::canonical(from);
    let to = names::validate_new(to)?;
    let src = query::mailbox_by_name(txn, who, &from)?;
    if exists(txn, who, &to)? {
        return Err(ModelError::AlreadyExists(format!("mailbox {to}")));
    }
    if names::is_inbox(&from) {
        return rename_inbox(txn, who, src, &to);
    }
    let inferior_prefix = format!("{from}{SEPARATOR}");
    if to.starts_with(&inferior_prefix) {
        return Err(ModelError::Invalid("cannot rename a mailbox into itself".into()));
    }
    // (old name, new name, id): the mailbox itself, then its inferiors.
    let mut moves = vec![(from.clone(), to.clone(), src.id)];
    let range = keys::prefix_range(keys::mailbox_by_name(who.tenant, who.account, &inferior_prefix));
    for (k, v) in scan_all(txn, Table::MailboxByName, &range) {
        let old = keys::name_of(&k).ok_or_else(|| ModelError::Corrupt("mailbox name key".into()))?;
        let id = keys::decode_id_value(&v).ok_or_else(|| ModelError::Corrupt("mailbox name index".into()))?;
        let new = names::validate_new(&format!("{to}{}", &old[from.len()..]))?;
        if exists(txn, who, &new)? {
            return Err(ModelError::AlreadyExists(format!("mailbox {new}")));
        }
        moves.push((old, new, id));
    }
    create_parents(txn, who, &to)?;
    for (old, new, id) in moves {
        let mut mb = load(txn, who, id)?;
        mb.name = new.clone();
        txn.delete(Table::MailboxByName, keys::mailbox_by_name(who.tenant, who.account, &old));
        txn.put_raw(Table::MailboxByName, keys::mailbox_by_name(who.tenant, who.account, &new), keys::id_value(id));
        txn.save_mailbox(who, &mb);
    }
    Ok(Outcome::Done)
}

fn load(txn: &Txn<'_>, who: Principal, id: u64) -> Result<Mailbox, ModelError> {
    crate::access::get::<Mailbox>(txn, Table::Mailboxes, &keys::mailbox(who.tenant, who.account, id))?
        .ok_or_else(|| ModelError::Corrupt(format!("mailbox {id} indexed but missing")))
}

/// RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new mailbox with the new name
/// (new id, new UIDVALIDITY, fresh UIDs) and leaves INBOX empty; INBOX's inferiors stay and
/// its UIDNEXT does not go back. Sizes and blob references just move, so quota is unchanged.
fn rename_inbox(txn: &mut Txn<'_>, who: Principal, mut inbox: Mailbox, to: &str) -> Reply {
    create_parents(txn, who, to)?;
    let mut dest = txn.new_mailbox(who, to, None)?;
    // One command moves every message: bounded like COPY (`Limit` past the bound, never `TooBig`:
    // a RENAME cannot be split).
    let msgs: Vec<MessageMeta> = bounded_messages(txn, who.tenant, &inbox, &UidSet::range(1, Uid::MAX)).map_err(unsplittable)?;
    if !msgs.is_empty() {
        let dest_modseq = bump_modseq(&mut dest)?;
        let inbox_modseq = bump_modseq(&mut inbox)?;
        let mut keywords = Keywords::new(txn);
        for m in &msgs {
            let uid = super::message::alloc_uid(&mut dest)?;
            keywords.add(&mut dest, &m.flags)?;
            insert_message(txn, who.tenant, &mut dest, &mut keywords, &MessageMeta { uid, modseq: dest_modseq, ..m.clone() })?;
            remove_message(txn, who.tenant, &mut inbox, m, inbox_modseq);
            txn.within_bounds().map_err(unsplittable)?;
        }
        txn.save_mailbox(who, &inbox);
        txn.save_mailbox(who, &dest);
        txn.event(who, inbox.id, inbox_modseq);
        txn.event(who, dest.id, dest_modseq);
    }
    Ok(Outcome::Done)
}

/// RFC 3501 §6.3.6 SUBSCRIBE / §6.3.7 UNSUBSCRIBE. The name need not exist (RFC 9051 §6.3.7
/// lets clients subscribe to mailboxes that appear later); unsubscribing an unknown name is a
/// no-op.
pub(super) fn subscribe(txn: &mut Txn<'_>, who: Principal, name: &str, subscribe: bool) -> Reply {
    txn.load_account(who)?;
    if subscribe {
        let name = names::validate_new(name)?;
        txn.put_raw(Table::Subscriptions, keys::subscription(who.tenant, who.account, &name), Vec::new());
        return Ok(Outcome::Done);
    }
    let key = keys::subscription(who.tenant, who.account, &names::canonical(name));
    if txn.get(Table::Subscriptions, &key).is_some() {
        txn.delete(Table::Subscriptions, key);
    }
    Ok(Outcome::Done)
}
