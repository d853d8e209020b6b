//! The LMTP backend on the storage tier: `Storage.CheckRecipient` at RCPT time and
//! `Storage.Deliver` after the message, through the shared router (routing, leader hints,
//! retries under the request deadline).
//!
//! Deliver carries a request id chosen once per message, so a retry after a lost reply (the
//! leader died after committing) is answered from the storage's dedup table instead of
//! delivering twice. A failure to reach the storage is a `451 4.3.0` for every recipient: the
//! MTA keeps the message and tries again, and no `250` is given for a write that may not have
//! committed.

use mailraft_proto as proto;
use proto::DeliveryStatus as S;

use super::protocol::Address;
use super::session::{Backend, Envelope, Verdict};
use crate::error::FrontendError;
use crate::storage::Storage;

/// Most recipients of one transaction (one storage request; the model's bound).
pub const MAX_RECIPIENTS: usize = 1000;

/// Checks and delivers through the shared storage client.
#[derive(Debug, Clone)]
pub struct StorageBackend {
    storage: Storage,
}

impl StorageBackend {
    /// A backend on `storage`.
    pub fn new(storage: Storage) -> Self {
        StorageBackend { storage }
    }

    fn ctx(&self, request_id: Vec<u8>) -> proto::Context {
        proto::Context { group_id: self.storage.group_id(), request_id, ..Default::default() }
    }
}

fn recipient(a: &Address) -> proto::Recipient {
    proto::Recipient { local_part: a.local.clone(), domain: a.domain.clone(), address: a.to_string() }
}

/// The verdict for a storage status.
fn verdict(status: i32, message: String) -> Verdict {
    match S::try_from(status) {
        Ok(S::Ok) => Verdict::Ok,
        Ok(S::UnknownUser) => Verdict::UnknownUser,
        Ok(S::UnknownDomain) => Verdict::UnknownDomain,
        Ok(S::Disabled) => Verdict::Disabled,
        Ok(S::OverQuota) => Verdict::OverQuota,
        Ok(S::Refused) => Verdict::Refused(message),
        // A status this front-end does not know (a newer storage): not a promise of anything.
        Err(_) => Verdict::TryLater(format!("unknown delivery status {status}")),
    }
}

/// A storage failure: temporary for the MTA, whatever it was.
fn try_later(op: &str, e: &FrontendError) -> Verdict {
    tracing::warn!(op, error = %e, "lmtp storage call failed");
    Verdict::TryLater("storage unavailable".into())
}

impl Backend for StorageBackend {
    async fn check_recipient(&self, rcpt: &Address, size: Option<u64>) -> Verdict {
        let request = proto::CheckRecipientRequest {
            ctx: Some(self.ctx(Vec::new())),
            recipient: Some(recipient(rcpt)),
            size: size.unwrap_or(0),
        };
        let result = self
            .storage
            .router()
            .call("check_recipient", |mut c| {
                let request = request.clone();
                async move { c.check_recipient(request).await }
            })
            .await;
        match result {
            Ok(r) => verdict(r.status, r.message),
            Err(e) => try_later("check_recipient", &e),
        }
    }

    async fn deliver(&self, envelope: &Envelope, body: Vec<u8>) -> Vec<Verdict> {
        let n = envelope.recipients.len();
        // 16 random bytes: unique without coordination, and the same for every retry below.
        let id: [u8; 16] = rand::random();
        let request = proto::DeliverRequest {
            ctx: Some(self.ctx(id.to_vec())),
            body,
            return_path: envelope.from.as_ref().map(ToString::to_string).unwrap_or_default(),
            recipients: envelope.recipients.iter().map(recipient).collect(),
        };
        let result = self
            .storage
            .router()
            .call("deliver", |mut c| {
                let request = request.clone();
                async move { c.deliver(request).await }
            })
            .await;
        match result {
            Ok(r) if r.results.len() == n => r.results.into_iter().map(|d| verdict(d.status, d.message)).collect(),
            Ok(r) => {
                tracing::error!(got = r.results.len(), want = n, "deliver answered for the wrong number of recipients");
                vec![Verdict::TryLater("internal error".into()); n]
            }
            Err(e) => vec![try_later("deliver", &e); n],
        }
    }
}
