//! SEARCH (RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ) evaluated next to the data.
//!
//! The proto `SearchKey` tree is evaluated per message on one point-in-time view, on the
//! blocking pool under a read slot (`Pools::read`). The evaluation stops between messages once
//! the caller is gone (its RPC future was dropped) or the read is older than
//! `limits.read_stream_deadline_secs` (then DEADLINE_EXCEEDED), so a SEARCH over a huge
//! mailbox holds neither a thread nor a snapshot for longer. Keys on metadata (UIDs, flags, dates, sizes, modseq) read only the message
//! record; keys on text (HEADER, BODY, TEXT, SENT*) load the message bytes, at most once per
//! message and only when such a key is actually reached: AND evaluates metadata keys first, so
//! `UNSEEN BODY x` reads the bytes of unseen messages only. Text matching is a case-insensitive
//! substring match on decoded text (RFC 2047 headers, transfer encodings and charsets decoded
//! by `mailraft_mime`).

use std::cell::OnceCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mailraft_model::records::MessageMeta;
use mailraft_model::{Flag, KvRead, ModelError, TenantId, Uid, query};
use mailraft_proto as pb;
use mailraft_proto::search_key::Key;

use crate::convert::uid_set;
use crate::error::ServerError;
use crate::storage_service::StorageService;

/// Message records SEARCH reads at once.
const PAGE: usize = 256;
/// Seconds per day, for RFC 3501 date keys that compare dates only.
const DAY: i64 = 86_400;
/// Headers whose decoded values TEXT also searches, so encoded words match.
const TEXT_HEADERS: [&str; 5] = ["subject", "from", "to", "cc", "bcc"];

impl StorageService {
    /// RFC 3501 §6.4.4 UID SEARCH; sequence numbers were translated by the front-end.
    pub(crate) async fn search_op(&self, req: pb::SearchRequest) -> Result<pb::SearchResponse, ServerError> {
        let claims = self.shared.authorize_read(req.ctx.as_ref()).await?;
        let who = claims.principal();
        let key = req.key.ok_or_else(|| ServerError::Invalid("search key missing".into()))?;
        let (mailbox_id, uidvalidity) = (req.mailbox_id, req.uidvalidity);
        let limit = self.shared.pools.limits.read_stream_deadline;
        let deadline = Instant::now() + limit;
        let gone = Arc::new(AtomicBool::new(false));
        let _leave = Leave(gone.clone());
        let view = self.shared.view.clone();
        let searched = self.shared.pools.read_as(who, move || {
            view.read(|kv| -> Result<pb::SearchResponse, ServerError> {
                let mb = query::mailbox_by_id(kv, who, mailbox_id, uidvalidity)?;
                let all = [(1, Uid::MAX)];
                let mut uids = Vec::new();
                let mut highest_modseq = 0;
                let mut after = 0;
                // A page of records at a time: a mailbox of large records (keywords) costs one
                // page of them, not all of them.
                loop {
                    let page = query::messages_page(kv, who, &mb, &all, 0, after, PAGE)?;
                    let Some(last) = page.last() else { break };
                    after = last.uid;
                    for meta in page {
                        if gone.load(Ordering::Relaxed) {
                            return Err(ServerError::Unavailable("search abandoned by its caller".into()));
                        }
                        if Instant::now() >= deadline {
                            let secs = limit.as_secs();
                            return Err(ServerError::DeadlineExceeded(format!("search outlived its {secs} s deadline")));
                        }
                        let msg = Candidate::new(kv, who.tenant, meta);
                        if eval(&key, &msg)? {
                            uids.push(msg.meta.uid);
                            highest_modseq = highest_modseq.max(msg.meta.modseq);
                        }
                    }
                }
                Ok(pb::SearchResponse { uids, highest_modseq })
            })
        });
        let found = searched.await???;
        // A search can run for a while: an account disabled or re-passworded meanwhile gets
        // nothing, as its next call would not.
        self.shared.check_account(&claims)?;
        Ok(found)
    }
}

/// Tells a running search that its caller is gone (the RPC future was dropped).
struct Leave(Arc<AtomicBool>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One message under evaluation, with its bytes and decoded text loaded on first use.
struct Candidate<'a> {
    kv: &'a dyn KvRead,
    tenant: TenantId,
    meta: MessageMeta,
    raw: OnceCell<Vec<u8>>,
    body_lower: OnceCell<String>,
}

impl<'a> Candidate<'a> {
    fn new(kv: &'a dyn KvRead, tenant: TenantId, meta: MessageMeta) -> Self {
        Candidate { kv, tenant, meta, raw: OnceCell::new(), body_lower: OnceCell::new() }
    }

    fn raw(&self) -> Result<&[u8], ModelError> {
        if let Some(r) = self.raw.get() {
            return Ok(r);
        }
        let bytes = query::blob(self.kv, self.tenant, &self.meta.blob)
            .ok_or_else(|| ModelError::Corrupt(format!("blob of message {} missing", self.meta.uid)))?;
        Ok(self.raw.get_or_init(|| bytes))
    }

    fn body_lower(&self) -> Result<&str, ModelError> {
        if let Some(b) = self.body_lower.get() {
            return Ok(b);
        }
        let text = mailraft_mime::body_text(self.raw()?).to_lowercase();
        Ok(self.body_lower.get_or_init(|| text))
    }

    fn has_flag(&self, flag: &str) -> bool {
        // `\Recent` and unknown system flags are never stored, so nothing has them.
        Flag::parse(flag).is_some_and(|f| self.meta.flags.iter().any(|g| g.same(&f)))
    }

    /// INTERNALDATE's day number in the zone it was given in.
    fn internal_day(&self) -> i64 {
        (self.meta.internal_date + i64::from(self.meta.tz_offset_minutes) * 60).div_euclid(DAY)
    }

    /// The Date: header's day as written (RFC 3501 §6.4.4 "disregarding time and timezone");
    /// messages without a usable Date: fall back to INTERNALDATE, as common servers do.
    fn sent_day(&self) -> Result<i64, ModelError> {
        Ok(mailraft_mime::sent_date_local(self.raw()?).map_or_else(|| self.internal_day(), |t| t.div_euclid(DAY)))
    }

    fn header_contains(&self, name: &str, needle: &str) -> Result<bool, ModelError> {
        let values = mailraft_mime::header_values(self.raw()?, name);
        if needle.is_empty() {
            return Ok(!values.is_empty());
        }
        let needle = needle.to_lowercase();
        Ok(values.iter().any(|v| v.to_lowercase().contains(&needle)))
    }

    /// RFC 3501 §6.4.4 TEXT: header or body; `needle` is non-empty.
    fn text_contains(&self, needle: &str) -> Result<bool, ModelError> {
        let lower = needle.to_lowercase();
        let raw = self.raw()?;
        let header_len = header_end(raw);
        if String::from_utf8_lossy(&raw[..header_len]).to_lowercase().contains(&lower) {
            return Ok(true);
        }
        for h in TEXT_HEADERS {
            if self.header_contains(h, needle)? {
                return Ok(true);
            }
        }
        Ok(self.body_lower()?.contains(&lower))
    }
}

/// Length of the top-level header block including the blank line that ends it (the whole
/// message when there is no body).
fn header_end(raw: &[u8]) -> usize {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(raw.len()),
    }
}

/// Whether evaluating `key` may need the message bytes (used to order AND/OR operands).
fn needs_bytes(key: &pb::SearchKey) -> bool {
    match &key.key {
        Some(Key::Header(_) | Key::Body(_) | Key::Text(_)) => true,
        Some(Key::SentBefore(_) | Key::SentOn(_) | Key::SentSince(_)) => true,
        Some(Key::And(ks) | Key::Or(ks)) => ks.keys.iter().any(needs_bytes),
        Some(Key::Not(k)) => needs_bytes(k),
        _ => false,
    }
}

/// Operands with metadata-only keys first, so short-circuiting avoids loading bytes.
fn cheap_first(keys: &[pb::SearchKey]) -> Vec<&pb::SearchKey> {
    let mut v: Vec<&pb::SearchKey> = keys.iter().collect();
    v.sort_by_key(|k| needs_bytes(k));
    v
}

/// Whether `msg` matches `key`.
fn eval(key: &pb::SearchKey, msg: &Candidate<'_>) -> Result<bool, ModelError> {
    let m = &msg.meta;
    let Some(k) = &key.key else {
        return Err(ModelError::Invalid("empty search key".into()));
    };
    Ok(match k {
        Key::All(_) => true,
        Key::None(_) => false,
        Key::Uids(set) => uid_set(Some(set)).contains(m.uid),
        Key::Flag(f) => msg.has_flag(f),
        Key::NotFlag(f) => !msg.has_flag(f),
        Key::Header(h) => msg.header_contains(&h.name, &h.value)?,
        Key::Body(s) => s.is_empty() || msg.body_lower()?.contains(&s.to_lowercase()),
        Key::Text(s) => s.is_empty() || msg.text_contains(s)?,
        Key::Before(d) => msg.internal_day() < *d,
        Key::On(d) => msg.internal_day() == *d,
        Key::Since(d) => msg.internal_day() >= *d,
        Key::SentBefore(d) => msg.sent_day()? < *d,
        Key::SentOn(d) => msg.sent_day()? == *d,
        Key::SentSince(d) => msg.sent_day()? >= *d,
        Key::Larger(n) => m.size > *n,
        Key::Smaller(n) => m.size < *n,
        Key::Modseq(v) => m.modseq >= *v,
        Key::Not(inner) => !eval(inner, msg)?,
        Key::And(ks) => {
            for k in cheap_first(&ks.keys) {
                if !eval(k, msg)? {
                    return Ok(false);
                }
            }
            true
        }
        Key::Or(ks) => {
            for k in cheap_first(&ks.keys) {
                if eval(k, msg)? {
                    return Ok(true);
                }
            }
            false
        }
    })
}
