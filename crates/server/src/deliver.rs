//! LMTP delivery for front-ends: `Storage.CheckRecipient` (RCPT time) and `Storage.Deliver`
//! (after the message).
//!
//! These calls carry no session token. The front-end is the tier the MTA talks to and is trusted
//! to deliver for any account of the group, so only its certificate is checked: the Storage
//! service admits front-end and node certificates (`authz.rs`), and these two methods refuse
//! node certificates as well, since no node ever delivers mail. Recipients are looked up here, on
//! the storage side, after a read index, and checked again by the model when the entry applies
//! (an account disabled or deleted in between gets the matching refusal, never the message).
//!
//! One `Command::Deliver` per tenant carries the body once for all of that tenant's recipients,
//! each with its own `Return-Path:` / `Delivered-To:` prefix and the MIME structure of prefix +
//! body. The structure depends on the prefix only through its length (two header lines that
//! shift every offset alike), so it is computed once per distinct prefix length, not once per
//! recipient. The reply comes after the entry is committed and applied: a `250` at the front-end
//! means the message is durable on a quorum.

use std::collections::BTreeMap;

use mailraft_model::limits::MAX_DELIVERY_RECIPIENTS;
use mailraft_model::{Command, Delivery, DeliveryTarget, ModelError, Outcome, Principal, RequestId, query};
use mailraft_proto as pb;
use pb::DeliveryStatus as S;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::authz::{AuthzError, Caller, Role};
use crate::error::ServerError;
use crate::mailboxes::unexpected;
use crate::metrics::{observe, rpc_span};
use crate::shared::request_id;
use crate::storage_service::StorageService;

/// Where a recipient address leads.
#[derive(Debug, Clone)]
enum Lookup {
    /// An enabled account and the mailbox the message goes to.
    Found { who: Principal, mailbox: String },
    /// A refusal already decided by the lookup.
    Refused(S, String),
}

/// Refuses callers other than front-ends (and plaintext loopback setups, where nothing is
/// known about anyone).
fn check_caller(caller: Option<&Caller>) -> Result<(), Status> {
    match caller {
        Some(Caller::Verified(Role::Frontend(_))) | Some(Caller::Plaintext) => Ok(()),
        other => {
            let caller = match other {
                Some(Caller::Verified(role)) => role.uri(),
                _ => "unknown".to_owned(),
            };
            crate::metrics::authz_denied("Storage", "wrong_role");
            Err(Status::from(AuthzError::Forbidden { service: "Storage.Deliver", needs: "a frontend certificate", caller }))
        }
    }
}

/// `local@domain` lookup: the whole local part as a login first, then `login+detail` (RFC 5233
/// subaddressing), whose detail names the mailbox when the account has one.
fn lookup(kv: &dyn mailraft_model::KvRead, local: &str, domain: &str, size: u64) -> Result<Lookup, ModelError> {
    let tenant = match query::tenant_by_domain(kv, domain) {
        Ok(t) => t,
        Err(ModelError::NotFound(_)) => return Ok(Lookup::Refused(S::UnknownDomain, format!("domain {domain}"))),
        Err(e) => return Err(e),
    };
    let mut found = None;
    for (login, detail) in candidates(local) {
        match query::find_account(kv, domain, login) {
            Ok(hit) => {
                found = Some((hit, detail));
                break;
            }
            Err(ModelError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    let Some(((who, account), detail)) = found else {
        return Ok(Lookup::Refused(S::UnknownUser, "no such user".into()));
    };
    if account.disabled {
        return Ok(Lookup::Refused(S::Disabled, "mailbox disabled".into()));
    }
    let over = |used: u64, quota: Option<u64>| quota.is_some_and(|q| used.saturating_add(size) > q);
    if over(account.used_bytes, account.quota_bytes) || over(tenant.used_bytes, tenant.quota_bytes) {
        return Ok(Lookup::Refused(S::OverQuota, "over quota".into()));
    }
    let mailbox = match detail {
        Some(d) if !d.is_empty() && query::mailbox_id(kv, who, d)?.is_some() => d.to_owned(),
        _ => "INBOX".to_owned(),
    };
    Ok(Lookup::Found { who, mailbox })
}

/// Logins a local part may name, in order: itself, then the part before its first `+`.
fn candidates(local: &str) -> Vec<(&str, Option<&str>)> {
    let mut out = vec![(local, None)];
    if let Some((login, detail)) = local.split_once('+') {
        out.push((login, Some(detail)));
    }
    out
}

/// `Return-Path:` and `Delivered-To:` for one recipient (RFC 5321 §4.4; Delivered-To as Postfix
/// and Dovecot write it). Header text cannot break a line: CR and LF are dropped.
fn prefix(return_path: &str, delivered_to: &str) -> Vec<u8> {
    let clean = |s: &str| s.chars().filter(|c| *c != '\r' && *c != '\n').collect::<String>();
    format!("Return-Path: <{}>\r\nDelivered-To: {}\r\n", clean(return_path), clean(delivered_to)).into_bytes()
}

/// A per-tenant request id derived from the call's, so each tenant's entry deduplicates on its
/// own and a retried call maps onto the same entries.
fn tenant_request_id(id: &Option<RequestId>, tenant: u64) -> Result<Option<RequestId>, ServerError> {
    let Some(id) = id else { return Ok(None) };
    let mut bytes = id.as_bytes().to_vec();
    if bytes.len() + 8 > RequestId::MAX_LEN {
        bytes.truncate(RequestId::MAX_LEN - 8);
    }
    bytes.extend_from_slice(&tenant.to_be_bytes());
    RequestId::new(bytes).map(Some).map_err(|e| ServerError::Invalid(e.to_string()))
}

impl StorageService {
    /// The `CheckRecipient` RPC: caller check, then [`StorageService::check_recipient_op`].
    pub(crate) async fn check_recipient_rpc(
        &self,
        request: Request<pb::CheckRecipientRequest>,
    ) -> Result<Response<pb::CheckRecipientResponse>, Status> {
        check_caller(request.extensions().get::<Caller>())?;
        let req = request.into_inner();
        let span = rpc_span("CheckRecipient", "");
        observe("CheckRecipient", self.check_recipient_op(req)).instrument(span).await.map(Response::new)
    }

    /// The `Deliver` RPC: caller check, then [`StorageService::deliver_op`].
    pub(crate) async fn deliver_rpc(&self, request: Request<pb::DeliverRequest>) -> Result<Response<pb::DeliverResponse>, Status> {
        check_caller(request.extensions().get::<Caller>())?;
        let req = request.into_inner();
        let span = rpc_span("Deliver", "");
        observe("Deliver", self.deliver_op(req)).instrument(span).await.map(Response::new)
    }

    /// RCPT TO: may this address receive a message of `size` octets?
    async fn check_recipient_op(&self, req: pb::CheckRecipientRequest) -> Result<pb::CheckRecipientResponse, ServerError> {
        self.shared.check_group(req.ctx.as_ref().map_or(0, |c| c.group_id))?;
        let rcpt = req.recipient.ok_or_else(|| ServerError::Invalid("no recipient".into()))?;
        self.shared.linearize().await?;
        let found = self.shared.read(move |kv| lookup(kv, &rcpt.local_part, &rcpt.domain, req.size)).await?;
        let (status, message) = match found {
            Lookup::Found { .. } => (S::Ok, String::new()),
            Lookup::Refused(status, message) => (status, message),
        };
        Ok(pb::CheckRecipientResponse { status: status as i32, message })
    }

    /// The message for every recipient: one entry per tenant, replies once committed.
    async fn deliver_op(&self, req: pb::DeliverRequest) -> Result<pb::DeliverResponse, ServerError> {
        self.shared.check_group(req.ctx.as_ref().map_or(0, |c| c.group_id))?;
        let id = request_id(req.ctx.as_ref())?;
        if req.recipients.is_empty() || req.recipients.len() > MAX_DELIVERY_RECIPIENTS {
            return Err(ServerError::Invalid(format!("delivery takes 1 to {MAX_DELIVERY_RECIPIENTS} recipients")));
        }
        self.shared.linearize().await?;
        let rcpts = req.recipients.clone();
        let lookups = self
            .shared
            .read(move |kv| rcpts.iter().map(|r| lookup(kv, &r.local_part, &r.domain, 0)).collect::<Result<Vec<_>, _>>())
            .await?;

        let mut results: Vec<pb::RecipientDelivery> = vec![pb::RecipientDelivery::default(); req.recipients.len()];
        // tenant → (index in the request, target without its structure yet)
        let mut by_tenant: BTreeMap<u64, Vec<(usize, DeliveryTarget)>> = BTreeMap::new();
        for (i, (lookup, rcpt)) in lookups.into_iter().zip(&req.recipients).enumerate() {
            match lookup {
                Lookup::Refused(status, message) => {
                    results[i] = pb::RecipientDelivery { status: status as i32, message, ..Default::default() };
                }
                Lookup::Found { who, mailbox } => {
                    let target = DeliveryTarget {
                        account: who.account,
                        mailbox,
                        prefix: prefix(&req.return_path, &rcpt.address),
                        structure: Vec::new(),
                    };
                    by_tenant.entry(who.tenant).or_default().push((i, target));
                }
            }
        }
        let body = std::sync::Arc::new(req.body);
        for (tenant, targets) in by_tenant {
            let analysed = {
                let body = body.clone();
                tokio::task::spawn_blocking(move || with_structures(&body, targets)).await??
            };
            let (indexes, targets): (Vec<usize>, Vec<DeliveryTarget>) = analysed.into_iter().unzip();
            let command = Command::Deliver { tenant, body: body.to_vec(), targets };
            let outcome = self.shared.write_with_id(command, tenant_request_id(&id, tenant)?).await?;
            let Outcome::Delivered { results: delivered } = outcome else { return Err(unexpected(outcome)) };
            if delivered.len() != indexes.len() {
                return Err(ServerError::internal("delivery answered for the wrong number of recipients"));
            }
            for (i, d) in indexes.into_iter().zip(delivered) {
                results[i] = delivery_result(d);
            }
        }
        Ok(pb::DeliverResponse { results })
    }
}

/// Fills in each target's MIME structure, analysing once per distinct prefix length.
fn with_structures(body: &[u8], targets: Vec<(usize, DeliveryTarget)>) -> Result<Vec<(usize, DeliveryTarget)>, ServerError> {
    let mut by_len: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    targets
        .into_iter()
        .map(|(i, mut t)| {
            if let Some(s) = by_len.get(&t.prefix.len()) {
                t.structure = s.clone();
            } else {
                let mut full = Vec::with_capacity(t.prefix.len() + body.len());
                full.extend_from_slice(&t.prefix);
                full.extend_from_slice(body);
                let s = mailraft_mime::analyze(&full).to_bytes().map_err(ServerError::internal)?;
                by_len.insert(t.prefix.len(), s.clone());
                t.structure = s;
            }
            Ok((i, t))
        })
        .collect()
}

fn delivery_result(d: Delivery) -> pb::RecipientDelivery {
    let (status, message, mailbox_id, uid) = match d {
        Delivery::Delivered { mailbox, uid, .. } => (S::Ok, String::new(), mailbox, uid),
        Delivery::UnknownAccount => (S::UnknownUser, "no such user".into(), 0, 0),
        Delivery::Disabled => (S::Disabled, "mailbox disabled".into(), 0, 0),
        Delivery::OverQuota => (S::OverQuota, "over quota".into(), 0, 0),
        Delivery::Failed(e) => (S::Refused, e.to_string(), 0, 0),
    };
    pb::RecipientDelivery { status: status as i32, message, mailbox_id, uid }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn structure_depends_on_the_prefix_only_through_its_length() {
        let body = b"From: a@b.test\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\none\r\n--x--\r\n";
        let a = [prefix("s@x.test", "bob@example.org"), body.to_vec()].concat();
        let b = [prefix("t@x.test", "rob@example.org"), body.to_vec()].concat();
        assert_eq!(a.len(), b.len());
        assert_eq!(mailraft_mime::analyze(&a), mailraft_mime::analyze(&b));
        let targets = (0..3)
            .map(|i| {
                let to = ["bob@example.org", "rob@example.org", "robert@example.org"][i];
                (i, DeliveryTarget { account: 1, mailbox: "INBOX".into(), prefix: prefix("s@x.test", to), structure: vec![] })
            })
            .collect();
        for (_, t) in with_structures(body, targets).unwrap() {
            let full = [t.prefix.clone(), body.to_vec()].concat();
            assert_eq!(t.structure, mailraft_mime::analyze(&full).to_bytes().unwrap());
        }
    }

    #[test]
    fn plus_detail_candidates_and_header_prefix() {
        assert_eq!(candidates("bob"), vec![("bob", None)]);
        assert_eq!(candidates("bob+a+b"), vec![("bob+a+b", None), ("bob", Some("a+b"))]);
        assert_eq!(prefix("", "x@y\r\nBcc: z"), b"Return-Path: <>\r\nDelivered-To: x@yBcc: z\r\n".to_vec());
    }

    #[test]
    fn only_frontends_may_deliver() {
        assert!(check_caller(Some(&Caller::Verified(Role::Frontend("f".into())))).is_ok());
        assert!(check_caller(Some(&Caller::Plaintext)).is_ok());
        assert!(check_caller(Some(&Caller::Verified(Role::Node(1)))).is_err());
        assert!(check_caller(None).is_err());
    }
}
