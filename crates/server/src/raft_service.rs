//! The server side of the Raft transport: decodes the postcard payloads `network.rs` sends and
//! hands them to the local openraft instance.
//!
//! Errors the local Raft returns (a higher vote, a fatal storage error) are part of the protocol:
//! they go back inside the reply payload, so the sender's openraft sees a `RemoteError`. Only a
//! payload that does not decode or a request for another group is a gRPC error. A snapshot
//! arrives as a stream of chunks written to a file the store provides, then installed from it.
//!
//! Large entries (see `network.rs`): `StageEntry` chunks go into a per-sender buffer in memory
//! (`staging.rs`: in order, capped, one entry in all, dropped when idle or passed); once every
//! byte arrived the entry is decoded on a blocking thread, and `AppendStaged` hands it to
//! openraft as the one entry of an AppendEntries. Every chunk passes the same cluster check as an
//! AppendEntries.
//!
//! Only node certificates reach this service (`authz.rs`); [`RaftService::admit`] also makes sure
//! a message's `from_node` is the node its certificate names, and notes the sender's admin URL
//! (`directory.rs`). `Identify` and `TriggerElection` serve the leader's membership changes
//! (`membership.rs`): they are here, not in Admin, so nodes never hold operator rights.

use mailraft_proto::raft_server::Raft as RaftRpc;
use mailraft_proto::{
    IdentifyReply, IdentifyRequest, RaftReply, RaftRequest, SnapshotChunk, StageChunk, StageReply,
    TriggerElectionRequest, TriggerElectionResponse,
};
use mailraft_store::{Entry, LogId, NodeId, Raft, Snapshot, StateView, TypeConfig, Vote};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest};
use serde::Serialize;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::authz::{self, Caller};
use crate::cluster_id::{ClusterIdentity, RaftMessage};
use crate::directory::Directory;
use crate::error::ServerError;
use crate::network::decode_snapshot;
use crate::node::MAX_REQUEST_BYTES;
use crate::readiness::LeaderCommit;
use staging::{Decoded, Stage, StageError, StageKey, Staging};

mod staging;

/// Largest entry a sender may stage: an APPEND request is at most [`MAX_REQUEST_BYTES`], and its
/// entry adds the messages' MIME structure and the encoding; twice the request bounds both.
const STAGE_CAP: u64 = 2 * MAX_REQUEST_BYTES as u64;
/// A staged entry that gets no chunk and no commit for this long is dropped.
const STAGE_IDLE: Duration = Duration::from_secs(60);
/// How long a chunk call waits for the decoder before answering "not ready yet" (the sender's
/// own deadline usually ends the call sooner).
const DECODE_WAIT: Duration = Duration::from_secs(10);
/// AppendEntries payloads larger than this are decoded on a blocking thread.
const DECODE_INLINE_MAX: usize = 256 << 10;

/// Serves `mailraft.v1.Raft` for one group.
#[derive(Clone)]
pub struct RaftService {
    /// The local Raft node.
    raft: Raft,
    /// Requests for any other group are refused.
    group_id: u64,
    /// Requests from another cluster, and votes from non-voters, are refused.
    cluster: Arc<ClusterIdentity>,
    /// Large entries being staged by senders.
    staging: Arc<Mutex<Staging>>,
    /// This node's admin URL (in every reply) and the senders' (learned).
    directory: Arc<Directory>,
    /// The applied state, for the ids of nodes that have left the membership.
    view: StateView,
    /// The leader's commit index from the last accepted AppendEntries (`readiness.rs`).
    leader_commit: Arc<LeaderCommit>,
}

impl RaftService {
    /// Serves `raft`, a member of group `group_id` in `cluster`, noting admin URLs in `directory`.
    pub fn new(
        raft: Raft,
        group_id: u64,
        cluster: Arc<ClusterIdentity>,
        directory: Arc<Directory>,
        view: StateView,
    ) -> Self {
        let staging = Arc::new(Mutex::new(Staging::new(STAGE_CAP, STAGE_IDLE)));
        RaftService { raft, group_id, cluster, staging, directory, view, leader_commit: Arc::default() }
    }

    /// Shares `leader_commit` with the node's readiness probe instead of a private one.
    pub fn with_leader_commit(mut self, leader_commit: Arc<LeaderCommit>) -> Self {
        self.leader_commit = leader_commit;
        self
    }

    /// Hands `rpc` to Raft; notes the leader's commit index when Raft accepted the sender as
    /// its leader (any answer but a higher vote).
    async fn append(&self, rpc: AppendEntriesRequest<TypeConfig>) -> Result<Response<RaftReply>, Status> {
        let (vote, commit) = (rpc.vote, rpc.leader_commit);
        let result: Result<_, RaftError<NodeId>> = self.raft.append_entries(rpc).await;
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.leader_commit.record(&vote, commit);
        }
        self.reply(&result)
    }

    fn staging(&self) -> MutexGuard<'_, Staging> {
        self.staging.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the sender's certificate against `from_node` (`authz.rs`), that the sender has not
    /// left the membership, the group and the sender's cluster (`cluster_id.rs`), and returns the
    /// payload.
    fn admit(&self, kind: RaftMessage, caller: Option<&Caller>, req: RaftRequest) -> Result<Vec<u8>, Status> {
        authz::check_sender(caller, req.from_node)?;
        // A removed node keeps a valid certificate (no revocation list): its id, never reused,
        // is what shuts it out, whatever it sends.
        if self.view.retired_nodes().map_err(|e| Status::from(ServerError::from(e)))?.contains(&req.from_node) {
            crate::metrics::peer_refused("removed_node");
            return Err(ServerError::PeerRefused(format!("node {} was removed from this cluster", req.from_node)).into());
        }
        if req.group_id != self.group_id {
            return Err(ServerError::Invalid(format!("this node does not serve raft group {}", req.group_id)).into());
        }
        if let Err(e) = self.cluster.admit(&self.raft, kind, req.cluster_id, req.from_node) {
            tracing::debug!(from = req.from_node, ?kind, error = %e, "raft message refused");
            return Err(e.into());
        }
        self.directory.learn(req.from_node, &req.admin_addr);
        Ok(req.payload)
    }

    /// [`RaftService::admit`] for a unary request.
    fn admit_request(&self, kind: RaftMessage, req: Request<RaftRequest>) -> Result<(u64, Vec<u8>), Status> {
        let caller = req.extensions().get::<Caller>().cloned();
        let req = req.into_inner();
        let from = req.from_node;
        Ok((from, self.admit(kind, caller.as_ref(), req)?))
    }

    fn reply<T: Serialize>(&self, value: &T) -> Result<Response<RaftReply>, Status> {
        let payload = postcard::to_allocvec(value).map_err(|e| Status::from(ServerError::internal(e)))?;
        Ok(Response::new(RaftReply { payload, admin_addr: self.directory.own().to_owned() }))
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(payload).map_err(|e| ServerError::Invalid(format!("raft payload: {e}")).into())
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (from, payload) = self.admit_request(RaftMessage::AppendEntries, req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = if payload.len() > DECODE_INLINE_MAX {
            tokio::task::spawn_blocking(move || decode(&payload))
                .await
                .map_err(|e| Status::from(ServerError::from(e)))??
        } else {
            decode(&payload)?
        };
        speaks_for_itself(&rpc.vote, from)?;
        self.staging().release(from, rpc.prev_log_id.as_ref(), Instant::now());
        self.append(rpc).await
    }

    /// Adds a chunk to the sender's staged entry; once it is complete, waits (bounded) for its
    /// decoding and says whether it is ready for `AppendStaged`.
    async fn stage_entry(&self, req: Request<StageChunk>) -> Result<Response<StageReply>, Status> {
        let caller = req.extensions().get::<Caller>().cloned();
        let chunk = req.into_inner();
        let head = chunk.head.ok_or_else(|| invalid("stage chunk without a head".into()))?;
        let from = head.from_node;
        let (vote, log_id): (Vote, LogId) = decode(&self.admit(RaftMessage::AppendEntries, caller.as_ref(), head)?)?;
        speaks_for_itself(&vote, from)?;
        let key = StageKey { vote, log_id, total: chunk.total };
        let stage = self.staging().stage(from, key, chunk.offset, chunk.data, Instant::now());
        let decoded = match stage.map_err(stage_status)? {
            Stage::Held(held) => return Ok(Response::new(StageReply { held, ready: false })),
            Stage::Complete { bytes, done } => {
                let rx = done.subscribe();
                tokio::task::spawn_blocking(move || {
                    // Fails only when the entry was replaced meanwhile.
                    let _ = done.send(Some(decode_entry(&bytes, &log_id)));
                });
                rx
            }
            Stage::Decoding(rx) => rx,
        };
        match wait_decoded(decoded, DECODE_WAIT).await {
            Some(Ok(_)) => Ok(Response::new(StageReply { held: key.total, ready: true })),
            None => Ok(Response::new(StageReply { held: key.total, ready: false })),
            Some(Err(e)) => {
                self.staging().forget(from, &log_id);
                tracing::warn!(from, %log_id, error = %e, "a staged entry did not decode");
                Err(invalid(format!("staged entry {log_id}: {e}")))
            }
        }
    }

    /// An AppendEntries whose one entry is the sender's staged entry.
    async fn append_staged(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (from, payload) = self.admit_request(RaftMessage::AppendEntries, req)?;
        let mut rpc: AppendEntriesRequest<TypeConfig> = decode(&payload)?;
        speaks_for_itself(&rpc.vote, from)?;
        if !rpc.entries.is_empty() {
            return Err(invalid("AppendStaged carries its entry in the staging buffer, not inline".into()));
        }
        let (log_id, decoded) = self.staging().staged(from, &rpc.vote, Instant::now()).map_err(stage_status)?;
        let next_index = rpc.prev_log_id.map_or(0, |prev| prev.index + 1);
        if log_id.index != next_index {
            return Err(invalid(format!("staged entry {log_id} does not follow {:?}", rpc.prev_log_id)));
        }
        let entry = match wait_decoded(decoded, DECODE_WAIT).await {
            Some(Ok(entry)) => entry,
            // Only ready entries are committed, so this is a decoder stuck for DECODE_WAIT.
            None => return Err(Status::deadline_exceeded(format!("staged entry {log_id} is still decoding"))),
            Some(Err(e)) => {
                self.staging().forget(from, &log_id);
                return Err(invalid(format!("staged entry {log_id}: {e}")));
            }
        };
        // The staged copy stays until the leader moves past it: a commit whose reply was lost is
        // retried without sending the bytes again.
        rpc.entries.push(Entry::clone(&entry));
        self.append(rpc).await
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (from, payload) = self.admit_request(RaftMessage::Vote, req)?;
        let rpc: VoteRequest<NodeId> = decode(&payload)?;
        speaks_for_itself(&rpc.vote, from)?;
        let result: Result<_, RaftError<NodeId>> = self.raft.vote(rpc).await;
        self.reply(&result)
    }

    /// Receives a snapshot stream (see `network.rs`) into a file the store provides, then has
    /// openraft install it. Memory is one chunk; a stream that stalls for [`SNAPSHOT_IDLE`] or
    /// exceeds [`MAX_SNAPSHOT_BYTES`] is dropped, and with it the partial file.
    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftReply>, Status> {
        let caller = req.extensions().get::<Caller>().cloned();
        let mut chunks = req.into_inner();
        let first = next_chunk(&mut chunks).await?.ok_or_else(|| invalid("empty snapshot stream".into()))?;
        let head = first.head.ok_or_else(|| invalid("snapshot stream without a head".into()))?;
        let from = head.from_node;
        let payload = self.admit(RaftMessage::InstallSnapshot, caller.as_ref(), head)?;
        let (vote, meta) = decode_snapshot(&payload).map_err(|e| invalid(format!("snapshot payload: {e}")))?;
        speaks_for_itself(&vote, from)?;
        // A sender whose vote is already behind ours gets the answer openraft would give, without
        // shipping the file first.
        let my_vote = self.raft.metrics().borrow().vote;
        if vote < my_vote {
            tracing::info!(%vote, %my_vote, "refusing a snapshot from a stale leader");
            return self.reply(&Ok::<_, Fatal<NodeId>>(SnapshotResponse { vote: my_vote }));
        }

        let started = Instant::now();
        let mut data =
            self.raft.begin_receiving_snapshot().await.map_err(|e| Status::from(ServerError::internal(e)))?;
        let mut received = 0u64;
        let mut chunk = first.data;
        loop {
            received += chunk.len() as u64;
            if received > MAX_SNAPSHOT_BYTES {
                return Err(invalid(format!("snapshot larger than {MAX_SNAPSHOT_BYTES} bytes")));
            }
            if !chunk.is_empty() {
                data.append(chunk).await.map_err(|e| Status::from(ServerError::internal(e)))?;
            }
            match next_chunk(&mut chunks).await? {
                None => break,
                Some(SnapshotChunk { head: Some(_), .. }) => {
                    return Err(invalid("snapshot chunk with a second head".into()));
                }
                Some(next) => chunk = next.data,
            }
        }
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = received,
            seconds = started.elapsed().as_secs_f64(),
            "received snapshot"
        );
        let result = self.raft.install_full_snapshot(vote, Snapshot { meta, snapshot: data }).await;
        self.reply(&result)
    }

    async fn identify(&self, req: Request<IdentifyRequest>) -> Result<Response<IdentifyReply>, Status> {
        // A removed node learns nothing more about the cluster, like every other Raft call.
        if let Some(id) = authz::caller_node(req.extensions().get::<Caller>())
            && self.view.retired_nodes().map_err(|e| Status::from(ServerError::from(e)))?.contains(&id)
        {
            crate::metrics::peer_refused("removed_node");
            return Err(ServerError::PeerRefused(format!("node {id} was removed from this cluster")).into());
        }
        let req = req.into_inner();
        if req.group_id != self.group_id {
            return Err(ServerError::Invalid(format!("this node does not serve raft group {}", req.group_id)).into());
        }
        let node_id = self.raft.metrics().borrow().id;
        Ok(Response::new(IdentifyReply {
            node_id,
            cluster_id: self.cluster.get(),
            admin_addr: self.directory.own().to_owned(),
            // Asked before the feature level is raised: the binary's, not the state's.
            known_feature_level: mailraft_model::KNOWN_FEATURE_LEVEL,
        }))
    }

    /// Only the current leader may ask (it is handing leadership over); any other node could
    /// otherwise disturb the group with elections.
    async fn trigger_election(
        &self,
        req: Request<TriggerElectionRequest>,
    ) -> Result<Response<TriggerElectionResponse>, Status> {
        let caller = authz::caller_node(req.extensions().get::<Caller>());
        let req = req.into_inner();
        if req.group_id != self.group_id {
            return Err(ServerError::Invalid(format!("this node does not serve raft group {}", req.group_id)).into());
        }
        let leader = self.raft.metrics().borrow().current_leader;
        if let Some(caller) = caller
            && leader != Some(caller)
        {
            return Err(ServerError::PeerRefused(format!("node {caller} is not the leader this node follows")).into());
        }
        crate::membership::elect_self(&self.raft).await?;
        Ok(Response::new(TriggerElectionResponse {}))
    }
}

/// Bytes a snapshot transfer may carry at most: a sanity bound against a broken sender filling
/// the disk, far above any real state machine.
const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;
/// A snapshot stream that delivers no chunk for this long is dropped.
const SNAPSHOT_IDLE: Duration = Duration::from_secs(60);

/// The vote inside a Raft payload must be the sender's own: a leader's AppendEntries and
/// InstallSnapshot carry the leader's vote, a candidate's Vote its candidacy. Without this, any
/// node certificate could send a payload in another node's name (e.g. a made-up leader of a
/// higher term, which makes every node step down and follow it) although the envelope's
/// `from_node` matches the certificate (`authz::check_sender`).
fn speaks_for_itself(vote: &Vote, from: NodeId) -> Result<(), Status> {
    if vote.leader_id().voted_for() == Some(from) {
        return Ok(());
    }
    crate::metrics::peer_refused("foreign_vote");
    Err(ServerError::PeerRefused(format!("node {from} sent a raft message carrying the vote {vote} of another node")).into())
}

fn invalid(message: String) -> Status {
    ServerError::Invalid(message).into()
}

/// `NotStaged` is FAILED_PRECONDITION, which tells the sender to stage the entry again.
fn stage_status(e: StageError) -> Status {
    match e {
        StageError::NotStaged => Status::failed_precondition(e.to_string()),
        StageError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
        StageError::Overrun { .. } | StageError::Empty => invalid(e.to_string()),
    }
}

/// Decodes a staged entry and checks it is the one it was staged as.
fn decode_entry(bytes: &[u8], log_id: &LogId) -> Result<Arc<Entry>, String> {
    let entry: Entry = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    if entry.log_id != *log_id {
        return Err(format!("the bytes hold entry {}", entry.log_id));
    }
    Ok(Arc::new(entry))
}

/// The decoder's result, waiting at most `wait`; `None` if it is not done by then.
async fn wait_decoded(mut rx: watch::Receiver<Decoded>, wait: Duration) -> Decoded {
    match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
        Err(_) => None,
        Ok(Ok(decoded)) => decoded.clone(),
        // The decoder ended without publishing: it panicked.
        Ok(Err(_)) => Some(Err("the decoder stopped".into())),
    }
}

/// The next chunk of a snapshot stream, `None` at its end; an error after [`SNAPSHOT_IDLE`].
async fn next_chunk(chunks: &mut Streaming<SnapshotChunk>) -> Result<Option<SnapshotChunk>, Status> {
    match tokio::time::timeout(SNAPSHOT_IDLE, chunks.message()).await {
        Err(_) => Err(Status::deadline_exceeded(format!("no snapshot chunk for {SNAPSHOT_IDLE:?}"))),
        Ok(result) => result,
    }
}
