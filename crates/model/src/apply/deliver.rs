//! LMTP delivery (RFC 2033): one message for several recipients of a tenant in one entry.
//!
//! The message body travels once; each recipient adds its own header prefix (`Return-Path:`,
//! `Delivered-To:`) and the MIME structure of prefix + body, both computed by the proposer. Each
//! recipient succeeds or fails on its own, so one full mailbox does not cost the others their
//! copy: every check of a recipient comes before its first write, and a refused recipient
//! writes nothing. A stored copy is a blob of its own (the prefixes differ).

use super::Txn;
use super::message::{Keywords, alloc_uid, bump_modseq, insert_message};
use crate::command::{Delivery, DeliveryTarget, ModelError, Outcome, Principal, Reply};
use crate::limits::MAX_DELIVERY_RECIPIENTS;
use crate::query;
use crate::records::MessageMeta;
use crate::types::TenantId;

/// The mailbox every account has; where mail goes when the named one is gone.
const INBOX: &str = "INBOX";

/// Delivers `body` to every target of `tenant`; one [`Delivery`] per target, in order.
pub(super) fn deliver(txn: &mut Txn<'_>, tenant: TenantId, body: &[u8], targets: &[DeliveryTarget]) -> Reply {
    if targets.is_empty() {
        return Err(ModelError::Invalid("no recipients".into()));
    }
    if targets.len() > MAX_DELIVERY_RECIPIENTS {
        return Err(ModelError::Limit(format!("a delivery may have at most {MAX_DELIVERY_RECIPIENTS} recipients")));
    }
    txn.load_tenant(tenant)?;
    let results = targets.iter().map(|t| one(txn, tenant, body, t)).collect::<Result<Vec<_>, _>>()?;
    Ok(Outcome::Delivered { results })
}

/// One recipient. `Err` only for corrupt state (the whole entry then fails and writes nothing).
fn one(txn: &mut Txn<'_>, tenant: TenantId, body: &[u8], t: &DeliveryTarget) -> Result<Delivery, ModelError> {
    let who = Principal { tenant, account: t.account };
    let account = match txn.load_account(who) {
        Ok(a) => a,
        // Deleted since the proposer looked it up.
        Err(ModelError::NotFound(_)) => return Ok(Delivery::UnknownAccount),
        Err(e) => return Err(e),
    };
    if account.disabled {
        return Ok(Delivery::Disabled);
    }
    // The named mailbox (a `+detail`) may have been deleted or renamed since: INBOX then.
    let mut mb = match query::mailbox_by_name(txn, who, &t.mailbox) {
        Ok(mb) => mb,
        Err(ModelError::NotFound(_)) => match query::mailbox_by_name(txn, who, INBOX) {
            Ok(mb) => mb,
            Err(ModelError::NotFound(_)) => return Ok(Delivery::Failed(ModelError::NotFound("INBOX".into()))),
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    // Checked before the quota is charged, so a refusal writes nothing.
    if mb.uidnext.checked_add(1).is_none() {
        return Ok(Delivery::Failed(ModelError::UidsExhausted));
    }
    if mb.highest_modseq.checked_add(1).is_none() {
        return Ok(Delivery::Failed(ModelError::Cannot("modseq exhausted".into())));
    }
    let size = (t.prefix.len() + body.len()) as u64;
    match txn.charge(who, size) {
        Ok(()) => {}
        Err(ModelError::OverQuota) => return Ok(Delivery::OverQuota),
        Err(e) => return Err(e),
    }
    let modseq = bump_modseq(&mut mb)?;
    let uid = alloc_uid(&mut mb)?;
    let mut full = Vec::with_capacity(t.prefix.len() + body.len());
    full.extend_from_slice(&t.prefix);
    full.extend_from_slice(body);
    let blob = txn.store_blob(tenant, &full, &t.structure)?;
    let now = txn.now_secs();
    let meta = MessageMeta {
        uid,
        flags: Vec::new(),
        modseq,
        internal_date: now,
        tz_offset_minutes: 0,
        save_date: now,
        size,
        blob,
    };
    // A delivery sets no flags: the keyword list is only needed to encode the record.
    let mut keywords = Keywords::new(txn);
    insert_message(txn, tenant, &mut mb, &mut keywords, &meta)?;
    txn.save_mailbox(who, &mb);
    txn.event(who, mb.id, modseq);
    Ok(Delivery::Delivered { mailbox: mb.id, uidvalidity: mb.uidvalidity, uid })
}
