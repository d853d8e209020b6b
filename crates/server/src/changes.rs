//! Change tracking: `Changes` (what a session must learn before its next reply) and `Watch`
//! (push notification that a mailbox changed, for IDLE).
//!
//! Watch is a hint, Changes is the truth: an event only says "mailbox M reached modseq N", and
//! the front-end then calls Changes. So a dropped event is harmless as long as the front-end
//! knows: when this node's broadcast channel overflows for a slow watcher, the stream sends one
//! event with `lagged = true` and every session resynchronises with Changes. Events are
//! published by every replica after the batch is durable, so followers can serve Watch too.

use mailraft_model::query;
use mailraft_proto as pb;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ServerError;
use crate::storage_service::{RpcStream, StorageService};

/// Most change-log entries one Changes call returns; beyond it the session must resync.
pub const MAX_CHANGES: usize = 10_000;

impl StorageService {
    /// RFC 7162 §3.1.4 / RFC 7162 §3.2.5.1 (VANISHED (EARLIER)) feed for the selected mailbox.
    pub(crate) async fn changes_op(&self, req: pb::ChangesRequest) -> Result<pb::ChangesResponse, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        self.shared.linearize().await?;
        let (mailbox_id, uidvalidity, since) = (req.mailbox_id, req.uidvalidity, req.since_modseq);
        let view = self
            .shared
            .read(move |kv| {
                let mb = query::mailbox_by_id(kv, who, mailbox_id, uidvalidity)?;
                query::changes(kv, who, &mb, since, MAX_CHANGES)
            })
            .await?;
        Ok(pb::ChangesResponse {
            expunged: view.expunged,
            changed: view.changed.iter().map(crate::convert::message_flags).collect(),
            highest_modseq: view.highest_modseq,
            uidnext: view.uidnext,
            resync: view.resync,
        })
    }

    /// Streams every committed mailbox change of the group until the client or the node goes.
    ///
    /// WatchRequest carries no token: events contain only ids and a modseq, never names or
    /// content, and a front-end watches on behalf of all its sessions.
    pub(crate) async fn watch_op(&self, req: pb::WatchRequest) -> Result<RpcStream<pb::WatchEvent>, ServerError> {
        self.shared.check_group(req.group_id)?;
        let mut events = self.shared.view.subscribe();
        let mut shutdown = self.shutdown.clone();
        let stream = async_stream::stream! {
            loop {
                let next = tokio::select! {
                    // Ends the stream when the node stops (or the sender is gone).
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    next = events.recv() => next,
                };
                match next {
                    Ok(e) => yield Ok(pb::WatchEvent {
                        tenant_id: e.who.tenant,
                        account_id: e.who.account,
                        mailbox_id: e.mailbox,
                        modseq: e.modseq,
                        lagged: false,
                    }),
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "watch stream lagged");
                        yield Ok(pb::WatchEvent { lagged: true, ..Default::default() });
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Box::pin(stream))
    }
}
