//! Mailbox operations: LIST/LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, STATUS and SELECT.
//!
//! Writes become one Raft entry each (the model enforces RFC 3501 §6.3 rules: INBOX, parents,
//! inferiors); reads run after a read-index round on one point-in-time view, so SELECT's header,
//! UID list and first unseen UID are mutually consistent.

use mailraft_model::{Command, Outcome, query};
use mailraft_proto as pb;

use crate::convert::{mailbox_info, mailbox_status, pb_uid_set_from_sorted, special_use};
use crate::error::ServerError;
use crate::shared::request_id;
use crate::storage_service::StorageService;

/// An outcome the model should never return for the command that was proposed.
pub(crate) fn unexpected(outcome: Outcome) -> ServerError {
    ServerError::internal(format!("unexpected outcome {outcome:?}"))
}

impl StorageService {
    /// RFC 3501 §6.3.8 / §6.3.9: every mailbox plus the subscription list.
    pub(crate) async fn list_mailboxes_op(
        &self,
        req: pb::ListMailboxesRequest,
    ) -> Result<pb::ListMailboxesResponse, ServerError> {
        let who = self.shared.authorize_read(req.ctx.as_ref()).await?.principal();
        self.shared
            .read_as(who, move |kv| {
                let boxes = query::list_mailboxes(kv, who)?;
                let subscriptions = query::subscriptions(kv, who)?;
                let mailboxes = boxes
                    .iter()
                    .map(|mb| mailbox_info(mb, subscriptions.binary_search(&mb.name).is_ok()))
                    .collect();
                Ok(pb::ListMailboxesResponse { mailboxes, subscriptions })
            })
            .await
    }

    /// RFC 3501 §6.3.3; returns the created mailbox as stored (canonical name).
    pub(crate) async fn create_mailbox_op(
        &self,
        req: pb::CreateMailboxRequest,
    ) -> Result<pb::CreateMailboxResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let request_id = request_id(req.ctx.as_ref())?;
        let command = Command::CreateMailbox { who, name: req.name, special_use: special_use(&req.special_use) };
        let (id, uidvalidity) = match self.shared.write_with_id(command, request_id).await? {
            Outcome::MailboxCreated { mailbox, uidvalidity } => (mailbox, uidvalidity),
            other => return Err(unexpected(other)),
        };
        // client_write returned after the entry was applied here, so this read sees it.
        let mailbox = self
            .shared
            .read_as(who, move |kv| {
                let mb = query::mailbox_by_id(kv, who, id, uidvalidity)?;
                let subscribed = query::subscriptions(kv, who)?.contains(&mb.name);
                Ok(mailbox_info(&mb, subscribed))
            })
            .await?;
        Ok(pb::CreateMailboxResponse { mailbox: Some(mailbox) })
    }

    /// RFC 3501 §6.3.4.
    pub(crate) async fn delete_mailbox_op(
        &self,
        req: pb::DeleteMailboxRequest,
    ) -> Result<pb::DeleteMailboxResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let id = request_id(req.ctx.as_ref())?;
        self.shared.write_with_id(Command::DeleteMailbox { who, name: req.name }, id).await?;
        Ok(pb::DeleteMailboxResponse {})
    }

    /// RFC 3501 §6.3.5.
    pub(crate) async fn rename_mailbox_op(
        &self,
        req: pb::RenameMailboxRequest,
    ) -> Result<pb::RenameMailboxResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let id = request_id(req.ctx.as_ref())?;
        self.shared.write_with_id(Command::RenameMailbox { who, from: req.from, to: req.to }, id).await?;
        Ok(pb::RenameMailboxResponse {})
    }

    /// RFC 3501 §6.3.6 / §6.3.7.
    pub(crate) async fn subscribe_op(&self, req: pb::SubscribeRequest) -> Result<pb::SubscribeResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let id = request_id(req.ctx.as_ref())?;
        self.shared.write_with_id(Command::Subscribe { who, name: req.name, subscribe: req.subscribe }, id).await?;
        Ok(pb::SubscribeResponse {})
    }

    /// RFC 3501 §6.3.10.
    pub(crate) async fn status_op(&self, req: pb::StatusRequest) -> Result<pb::StatusResponse, ServerError> {
        let who = self.shared.authorize_read(req.ctx.as_ref()).await?.principal();
        let name = req.name;
        let status = self.shared.read_as(who, move |kv| Ok(mailbox_status(&query::mailbox_by_name(kv, who, &name)?))).await?;
        Ok(pb::StatusResponse { status: Some(status) })
    }

    /// RFC 3501 §6.3.1: header, every UID, and the first unseen UID (§7.3.1 `[UNSEEN n]`).
    pub(crate) async fn select_op(&self, req: pb::SelectRequest) -> Result<pb::SelectResponse, ServerError> {
        let who = self.shared.authorize_read(req.ctx.as_ref()).await?.principal();
        let name = req.name;
        self.shared
            .read_as(who, move |kv| {
                let mb = query::mailbox_by_name(kv, who, &name)?;
                let uids = query::uids(kv, who, &mb)?;
                let first_unseen = query::first_unseen(kv, who, &mb)?;
                Ok(pb::SelectResponse {
                    status: Some(mailbox_status(&mb)),
                    uids: Some(pb_uid_set_from_sorted(&uids)),
                    first_unseen_uid: first_unseen.unwrap_or(0),
                })
            })
            .await
    }
}
