//! Change tracking: `Changes` (what a session must learn before its next reply) and `Watch`
//! (push notification that a mailbox changed, for IDLE).
//!
//! Watch is a hint, Changes is the truth: an event only says "mailbox M reached modseq N", and
//! the front-end then calls Changes. So a dropped event is harmless as long as the front-end
//! knows: when this node's broadcast channel overflows for a slow watcher, the stream sends one
//! event with `lagged = true` and every session resynchronises with Changes.
//!
//! Watch is served by the leader only (a follower answers `NOT_LEADER` with the leader's
//! address, like every other RPC), and the stream proves it stays the right place to listen:
//! every heartbeat interval the node runs a read-index round ([`Shared::linearize`]: a quorum
//! confirms it still leads, and it has applied everything committed) and then sends a heartbeat
//! event carrying its applied index. If that fails (leadership lost, partitioned away from the
//! majority, Raft stopped) the stream ends with the error, so the front-end reconnects to the
//! new leader and wakes its sessions; a node that cannot even do that (blackholed, paused)
//! simply stops sending heartbeats and the front-end gives up on it after a few intervals.
//!
//! [`Shared::linearize`]: crate::shared::Shared::linearize

use std::time::Duration;

use mailraft_model::query;
use mailraft_proto as pb;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::error::ServerError;
use crate::storage_service::{RpcStream, StorageService};

/// Most change-log entries one Changes call returns; beyond it the session must resync.
pub const MAX_CHANGES: usize = 10_000;
/// Heartbeat interval when the request names none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Shortest heartbeat interval a client may ask for (each one costs a quorum round).
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest heartbeat interval.
const MAX_HEARTBEAT: Duration = Duration::from_secs(30);
/// Shortest time a heartbeat's read-index round may take before this node ends the stream. The
/// round includes applying everything committed, so a leader that is only busy (a loaded disk, a
/// burst of applies) can need seconds; 1 s ended streams under CI load. This bound only decides
/// when the *server* gives up: the stream sends nothing while the round runs, so Mailraft's
/// front-end (3 silent intervals, `frontend/src/watch.rs`) reconnects on its own after about
/// 3 s at its default 1 s interval, whichever comes first. Either way nothing is lost: the
/// front-end resynchronises with Changes after any reconnect.
const MIN_LEADERSHIP_CHECK: Duration = Duration::from_secs(5);

/// The heartbeat interval for a requested `heartbeat_ms` (0 = default), clamped.
fn heartbeat_interval(heartbeat_ms: u32) -> Duration {
    if heartbeat_ms == 0 {
        return DEFAULT_HEARTBEAT;
    }
    Duration::from_millis(u64::from(heartbeat_ms)).clamp(MIN_HEARTBEAT, MAX_HEARTBEAT)
}

impl StorageService {
    /// RFC 7162 §3.1.4 / RFC 7162 §3.2.5.1 (VANISHED (EARLIER)) feed for the selected mailbox.
    pub(crate) async fn changes_op(&self, req: pb::ChangesRequest) -> Result<pb::ChangesResponse, ServerError> {
        let who = self.shared.authorize_read(req.ctx.as_ref()).await?.principal();
        let (mailbox_id, uidvalidity, since) = (req.mailbox_id, req.uidvalidity, req.since_modseq);
        let view = self
            .shared
            .read_as(who, move |kv| {
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

    /// Streams every committed mailbox change of the group, with heartbeats, until the client
    /// goes, the node stops, or this node can no longer confirm that it leads (module docs).
    ///
    /// WatchRequest carries no token: events contain only ids and a modseq, never names or
    /// content, and a front-end watches on behalf of all its sessions.
    ///
    /// `node` is the caller's node id when it called with a node certificate: the interceptor
    /// refused it if that node had been removed, and every heartbeat checks again, so a stream
    /// opened before the removal ends with it.
    pub(crate) async fn watch_op(&self, req: pb::WatchRequest, node: Option<u64>) -> Result<RpcStream<pb::WatchEvent>, ServerError> {
        self.shared.check_group(req.group_id)?;
        let interval = heartbeat_interval(req.heartbeat_ms);
        // Subscribe before the leadership check: everything applied after the check is then
        // delivered, and the front-end catches up on everything before it with Changes.
        let mut events = self.shared.view.subscribe();
        // A follower refuses with NOT_LEADER and the leader's address.
        self.shared.linearize().await?;
        let shared = self.shared.clone();
        let mut shutdown = self.shutdown.clone();
        let stream = async_stream::stream! {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let next = tokio::select! {
                    // Ends the stream when the node stops (or the sender is gone).
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    _ = ticks.tick() => None,
                    next = events.recv() => Some(next),
                };
                match next {
                    None if node.is_some_and(|id| shared.view.retired_nodes().is_ok_and(|r| r.contains(&id))) => {
                        let id = node.unwrap_or_default();
                        tracing::info!(node = id, "watch stream ends: its node was removed");
                        yield Err(Status::from(crate::authz::AuthzError::RetiredNode(id, "Watch")));
                        break;
                    }
                    None => {
                        // A read-index round proves we still lead. Bounded, so that a leader
                        // cut off from its peers ends the stream instead of blocking it.
                        let check = interval.saturating_mul(2).max(MIN_LEADERSHIP_CHECK);
                        match tokio::time::timeout(check, shared.linearize()).await {
                            Ok(Ok(())) => {
                                let applied_index =
                                    shared.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
                                yield Ok(pb::WatchEvent { heartbeat: true, applied_index, ..Default::default() });
                            }
                            Ok(Err(error)) => {
                                tracing::info!(%error, "watch stream ends: leadership not confirmed");
                                yield Err(Status::from(error));
                                break;
                            }
                            Err(_) => {
                                tracing::info!(?check, "watch stream ends: leadership check timed out");
                                let error = ServerError::Unavailable("leadership check timed out".into());
                                yield Err(Status::from(error));
                                break;
                            }
                        }
                    }
                    Some(Ok(e)) => yield Ok(pb::WatchEvent {
                        tenant_id: e.who.tenant,
                        account_id: e.who.account,
                        mailbox_id: e.mailbox,
                        modseq: e.modseq,
                        ..Default::default()
                    }),
                    Some(Err(RecvError::Lagged(skipped))) => {
                        tracing::warn!(skipped, "watch stream lagged");
                        yield Ok(pb::WatchEvent { lagged: true, ..Default::default() });
                    }
                    Some(Err(RecvError::Closed)) => break,
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_interval_is_clamped() {
        assert_eq!(heartbeat_interval(0), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(1), MIN_HEARTBEAT);
        assert_eq!(heartbeat_interval(250), Duration::from_millis(250));
        assert_eq!(heartbeat_interval(u32::MAX), MAX_HEARTBEAT);
    }
}
