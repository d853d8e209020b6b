//! Message writes: APPEND, STORE, EXPUNGE, COPY and MOVE, each one Raft entry.
//!
//! APPEND does the expensive, non-deterministic part before proposing: the MIME analysis
//! (ENVELOPE, BODYSTRUCTURE, part offsets) runs once here, on the blocking pool, and its
//! encoding travels in the entry, so replicas never parse messages and FETCH never re-parses.

// Refused here before the MIME analysis, and again by the model so no log entry carries more.
use mailraft_model::limits::MAX_APPEND_MESSAGES;
use mailraft_model::{Command, NewMessage, Outcome};
use mailraft_proto as pb;

use crate::convert::{message_flags, parse_flags, store_op, uid_set};
use crate::error::ServerError;
use crate::mailboxes::unexpected;
use crate::shared::request_id;
use crate::storage_service::StorageService;

/// Prepares one message for the model: flags checked (RFC 3501 §2.3.2), structure computed.
fn prepare(m: pb::AppendMessage) -> Result<NewMessage, ServerError> {
    let flags = parse_flags(&m.flags)?;
    let structure = mailraft_mime::analyze(&m.body).to_bytes().map_err(ServerError::internal)?;
    Ok(NewMessage {
        body: m.body,
        flags,
        // AppendMessage: 0/0 means "now" (RFC 3501 §6.3.11 date-time is optional).
        internal_date: if m.internal_date == 0 { None } else { Some(m.internal_date) },
        tz_offset_minutes: m.tz_offset_minutes,
        structure,
    })
}

impl StorageService {
    /// RFC 3501 §6.3.11 / RFC 3502, answering RFC 4315 APPENDUID data.
    pub(crate) async fn append_op(&self, req: pb::AppendRequest) -> Result<pb::AppendResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let id = request_id(req.ctx.as_ref())?;
        if req.messages.is_empty() || req.messages.len() > MAX_APPEND_MESSAGES {
            return Err(ServerError::Invalid(format!("append takes 1 to {MAX_APPEND_MESSAGES} messages")));
        }
        let messages = tokio::task::spawn_blocking(move || {
            req.messages.into_iter().map(prepare).collect::<Result<Vec<_>, ServerError>>()
        })
        .await??;
        match self.shared.write_with_id(Command::Append { who, mailbox: req.mailbox, messages }, id).await? {
            Outcome::Appended { mailbox, uidvalidity, uids, .. } => {
                Ok(pb::AppendResponse { uidvalidity, uids, mailbox_id: mailbox })
            }
            other => Err(unexpected(other)),
        }
    }

    /// RFC 3501 §6.4.6 with RFC 7162 §3.1.3 UNCHANGEDSINCE.
    pub(crate) async fn store_op(&self, req: pb::StoreRequest) -> Result<pb::StoreResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let id = request_id(req.ctx.as_ref())?;
        let command = Command::Store {
            who,
            mailbox: req.mailbox_id,
            uidvalidity: req.uidvalidity,
            uids: uid_set(req.uids.as_ref()),
            op: store_op(req.op)?,
            flags: parse_flags(&req.flags)?,
            unchanged_since: req.unchanged_since,
        };
        match self.shared.write_with_id(command, id).await? {
            Outcome::Stored { updated, unchanged, modified, highest_modseq } => Ok(pb::StoreResponse {
                updated: updated.iter().map(message_flags).collect(),
                modified,
                highest_modseq,
                unchanged: unchanged.iter().map(message_flags).collect(),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// RFC 3501 §6.4.3, or RFC 4315 §2.1 UID EXPUNGE when `has_uids`.
    pub(crate) async fn expunge_op(&self, req: pb::ExpungeRequest) -> Result<pb::ExpungeResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let id = request_id(req.ctx.as_ref())?;
        let uids = if req.has_uids { Some(uid_set(req.uids.as_ref())) } else { None };
        let command = Command::Expunge { who, mailbox: req.mailbox_id, uidvalidity: req.uidvalidity, uids };
        match self.shared.write_with_id(command, id).await? {
            Outcome::Expunged { uids, highest_modseq } => Ok(pb::ExpungeResponse { expunged: uids, highest_modseq }),
            other => Err(unexpected(other)),
        }
    }

    /// RFC 3501 §6.4.7 COPY or RFC 6851 MOVE, answering RFC 4315 COPYUID data.
    pub(crate) async fn copy_op(&self, req: pb::CopyRequest) -> Result<pb::CopyResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let id = request_id(req.ctx.as_ref())?;
        let command = Command::Copy {
            who,
            mailbox: req.mailbox_id,
            uidvalidity: req.uidvalidity,
            uids: uid_set(req.uids.as_ref()),
            destination: req.destination,
            is_move: req.is_move,
        };
        match self.shared.write_with_id(command, id).await? {
            Outcome::Copied { dest_uidvalidity, source_uids, dest_uids, highest_modseq, .. } => {
                Ok(pb::CopyResponse { dest_uidvalidity, source_uids, dest_uids, highest_modseq })
            }
            other => Err(unexpected(other)),
        }
    }
}
