//! The client side of the Raft transport: openraft's `RaftNetworkFactory` / `RaftNetwork` over
//! the `mailraft.v1.Raft` gRPC service.
//!
//! Flow: openraft asks the factory for a client whenever it (re)starts replicating to or
//! requesting votes from a peer. The factory hands out a [`PeerClient`] built on ONE cached
//! tonic `Channel` per (node id, address): a channel is an HTTP/2 connection that multiplexes
//! every concurrent call and reconnects by itself, so clients are cheap and no call pays a TCP
//! handshake. Each openraft message is postcard-encoded into `RaftRequest.payload` (openraft
//! types never enter the protobuf schema); the peer answers with a postcard-encoded `Result`.
//! A snapshot is a client stream instead ([`PeerClient::full_snapshot`]): a head with
//! `postcard((vote, meta))`, then the snapshot file in 1 MiB chunks read as the transport pulls
//! them, so a transfer holds a few chunks in memory whatever the snapshot's size.
//!
//! Every connection uses the node's TLS material when it has some (`tls.rs`): the peer's
//! certificate is verified against the cluster CA and the host in its URL, and this node presents
//! its own node certificate, which the peer's `authz.rs` checks against `from_node`. Each request
//! and reply also carries its sender's admin URL for the [`Directory`].
//!
//! Besides openraft's traffic, the leader asks other nodes who they are ([`Network::identify`])
//! and tells a node to start an election ([`Network::trigger_election`]) during membership changes
//! (`membership.rs`); both are Raft-service RPCs, so a node never needs operator rights.
//!
//! Errors: a peer that cannot be reached (connection refused, DNS, unavailable) is
//! `Unreachable`, so openraft backs off; a call that outlives openraft's deadline is `Timeout`;
//! anything else on the wire is `NetworkError` (openraft retries at once). An error the remote
//! Raft returned travels inside the payload and becomes `RemoteError`.
//!
//! # Large entries
//!
//! openraft (0.9) bounds every AppendEntries by the heartbeat interval (`RPCOption::hard_ttl`) and
//! batches up to `max_payload_entries` entries with no byte bound, while an APPEND entry carries
//! whole messages (up to the node's 80 MiB request limit). A follower that hears nothing while a
//! big RPC is in flight would start an election. So `append_entries` reshapes what it is given,
//! without openraft knowing (`network/large.rs`):
//! - **Byte-bounded batches.** Entries are sized by `size_hint` (only APPEND carries bulk). A
//!   batch over 4 MiB is cut to a prefix (at least one entry, never a large entry after the
//!   first) and the remote's `Success` becomes `PartialSuccess(last sent)`; openraft sends the
//!   rest at once.
//! - **Staged large entries.** A first entry of 1 MiB or more is encoded once (on a blocking
//!   thread; cached per peer in [`Network`], which every client of that peer shares) and sent
//!   ahead with `StageEntry` in chunks of up to 1 MiB (halved after a chunk times out, for slow
//!   links). The follower only holds the bytes in memory, keyed by (sender, vote, log id, total),
//!   decodes them once all arrived and says so (`ready`); each reply says how many bytes it holds,
//!   so a transfer resumes where the follower is, also after a cancelled call or a new
//!   connection. Each call spends at most half of `hard_ttl` on chunks, then ends with a real
//!   AppendEntries RPC:
//!   - entry staged and ready (and at least half the deadline left): `AppendStaged`, an
//!     AppendEntries (vote, prev_log_id, leader_commit) whose one entry is the staged one; its
//!     `Success` means the entry is replicated;
//!   - otherwise: an AppendEntries without entries, which resets the follower's election timer
//!     and verifies `prev_log_id`; its `Success` becomes `PartialSuccess(prev_log_id)` (a real
//!     reply without progress, as openraft's `PartialSuccess` docs allow), so openraft calls again
//!     at once and the transfer continues. `Conflict` and `HigherVote` pass through.
//!
//! The follower side (`raft_service.rs`) keeps one staged entry (the current leader's), capped in size,
//! dropped after a minute without chunks or once the leader has moved past it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use mailraft_proto::raft_client::RaftClient;
use mailraft_proto::{IdentifyReply, IdentifyRequest, RaftReply, RaftRequest, SnapshotChunk, TriggerElectionRequest};
use mailraft_store::{Node, NodeId, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};
use tokio::sync::watch;

use crate::cluster_id::ClusterIdentity;
use crate::directory::Directory;
use crate::tls::TlsBundle;
use large::Outgoing;

mod large;
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

/// How long establishing a connection (TCP and TLS) to a peer may take before it counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one membership call to another node (identify, trigger an election) may take.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 keepalive: detects a dead peer connection even when no call is in flight.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Lower bound for a whole-snapshot transfer, whatever openraft's per-RPC deadline says: after
/// the last chunk the peer verifies and installs the snapshot before it answers.
const MIN_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of the snapshot file per `SnapshotChunk`: with HTTP/2 flow control this bounds what a
/// transfer holds in memory to a few chunks.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// A transfer whose stream the peer has not pulled a chunk from for this long is given up.
const SNAPSHOT_STALL: Duration = Duration::from_secs(30);
/// The whole-transfer deadline grows by one second per this many bytes (1 MiB/s, far below a
/// working link and a disk, so it only catches a transfer that crawls without stalling).
const SNAPSHOT_MIN_RATE: u64 = 1 << 20;

/// Why a Raft RPC failed on the client side, before it is sorted into openraft's error kinds.
#[derive(Debug, thiserror::Error)]
enum TransportError {
    #[error("invalid peer address: {0}")]
    BadAddress(String),
    #[error("peer unreachable: {0}")]
    Unreachable(tonic::Status),
    #[error("rpc failed: {0}")]
    Rpc(tonic::Status),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("payload encoding: {0}")]
    Codec(#[from] postcard::Error),
    #[error("snapshot file: {0}")]
    SnapshotFile(String),
    #[error("encoding a large entry: {0}")]
    Encode(String),
}

/// Creates [`PeerClient`]s for one Raft group, sharing a channel per peer.
#[derive(Clone)]
pub struct Network {
    /// Carried in every request so a node hosting several groups can route it.
    group_id: u64,
    /// This node's id, sent as `from_node` so peers can refuse a removed node's votes.
    node_id: NodeId,
    /// This node's cluster, sent with every message (read at send time: a joining node learns it
    /// from its first AppendEntries).
    cluster: Arc<ClusterIdentity>,
    /// Addresses to use for some peers instead of the one in the membership (a node behind NAT
    /// or a second network; tests put a fault-injecting proxy on each link this way).
    overrides: Arc<HashMap<NodeId, String>>,
    /// One channel per (node id, address); an address change for a node replaces its entry.
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    /// Per peer, the large entry being staged on it (see the module docs): openraft creates a new
    /// client per replication session, the encoded entry and the progress must outlive them.
    outgoing: Arc<Mutex<HashMap<NodeId, Arc<Outgoing>>>>,
    /// TLS material for every connection; `None` only for a loopback plaintext node.
    tls: Option<Arc<TlsBundle>>,
    /// This node's admin URL (sent along) and the peers' (learned from their replies).
    directory: Arc<Directory>,
}

impl Network {
    /// A network for node `node_id` of Raft group `group_id` in `cluster`, reaching the peers
    /// named in `overrides` at those addresses instead of their membership addresses.
    /// Connects with `tls` when given, and announces and learns admin URLs in `directory`.
    pub fn new(
        group_id: u64,
        node_id: NodeId,
        cluster: Arc<ClusterIdentity>,
        overrides: HashMap<NodeId, String>,
        tls: Option<Arc<TlsBundle>>,
        directory: Arc<Directory>,
    ) -> Self {
        Network {
            group_id,
            node_id,
            cluster,
            overrides: Arc::new(overrides),
            channels: Arc::default(),
            outgoing: Arc::default(),
            tls,
            directory,
        }
    }

    /// The identity fields every Raft message carries.
    fn header(&self, payload: Vec<u8>) -> RaftRequest {
        RaftRequest {
            group_id: self.group_id,
            payload,
            cluster_id: self.cluster.get(),
            from_node: self.node_id,
            admin_addr: self.directory.own().to_owned(),
        }
    }

    /// The admin URLs this node knows.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// A connected one-off client for a membership call to the node at `addr`.
    async fn connect(&self, addr: &str) -> Result<RaftClient<Channel>, String> {
        let endpoint = crate::tls::endpoint(addr, self.tls.as_deref())
            .map_err(|e| e.to_string())?
            .connect_timeout(PEER_CALL_TIMEOUT)
            .timeout(PEER_CALL_TIMEOUT);
        let channel = tokio::time::timeout(PEER_CALL_TIMEOUT, endpoint.connect())
            .await
            .map_err(|_| format!("no answer from {addr} within {PEER_CALL_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot connect to {addr}: {}", error_chain(&e)))?;
        Ok(RaftClient::new(channel))
    }

    /// Asks the node at `addr` who it is (`Raft.Identify`).
    pub async fn identify(&self, addr: &str) -> Result<IdentifyReply, String> {
        let reply = self
            .connect(addr)
            .await?
            .identify(IdentifyRequest { group_id: self.group_id })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("{addr} answered {}: {}", s.code(), s.message()))?;
        self.directory.learn(reply.node_id, &reply.admin_addr);
        Ok(reply)
    }

    /// Asks the node at `addr` to start an election now (`Raft.TriggerElection`).
    pub async fn trigger_election(&self, addr: &str) -> Result<(), String> {
        self.connect(addr)
            .await?
            .trigger_election(TriggerElectionRequest { group_id: self.group_id })
            .await
            .map(drop)
            .map_err(|s| format!("{addr} answered {}: {}", s.code(), s.message()))
    }

    /// Takes the reply's payload, noting the peer's admin URL.
    fn unwrap_reply(&self, target: NodeId, reply: RaftReply) -> Vec<u8> {
        self.directory.learn(target, &reply.admin_addr);
        reply.payload
    }

    /// The cached channel to `target` at `addr`, creating it (lazily connected) if needed.
    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, TransportError> {
        let mut map = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_addr, ch)) = map.get(&target)
            && cached_addr == addr
        {
            return Ok(ch.clone());
        }
        let endpoint = crate::tls::endpoint(addr, self.tls.as_deref())
            .map_err(|e| TransportError::BadAddress(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_while_idle(true);
        let ch = endpoint.connect_lazy();
        map.insert(target, (addr.to_string(), ch.clone()));
        Ok(ch)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let addr = self.overrides.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        let client = self
            .channel(target, &addr)
            .map(|ch| RaftClient::new(ch).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX));
        PeerClient { network: self.clone(), target, addr, client }
    }
}

/// Sends Raft messages to one peer.
pub struct PeerClient {
    /// The factory: group, sender identity.
    network: Network,
    /// The peer's node id, for openraft's error values.
    target: NodeId,
    /// The peer's address, for logs.
    addr: String,
    /// The gRPC client, or why none could be made (an unparsable address).
    client: Result<RaftClient<Channel>, TransportError>,
}

/// Which RPC of the Raft service to call.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    /// An AppendEntries whose one entry the peer has staged (see the module docs).
    AppendStaged,
    Vote,
}

/// A reply as the remote Raft gave it, or why none came.
type Exchanged<Resp> = Result<Result<Resp, RaftError<NodeId>>, TransportError>;
/// What openraft's `RaftNetwork` methods return.
type RaftResult<Resp> = Result<Resp, RPCError<NodeId, Node, RaftError<NodeId>>>;

impl PeerClient {
    /// A handle on the channel to the peer.
    fn grpc(&self) -> Result<RaftClient<Channel>, TransportError> {
        match &self.client {
            Ok(c) => Ok(c.clone()),
            Err(e) => Err(TransportError::BadAddress(e.to_string())),
        }
    }

    /// Calls `rpc` with `payload` and returns the reply payload, within `timeout`.
    async fn call(&self, rpc: Rpc, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, TransportError> {
        let mut client = self.grpc()?;
        let mut req = tonic::Request::new(self.network.header(payload));
        req.set_timeout(timeout);
        let fut = async move {
            match rpc {
                Rpc::AppendEntries => client.append_entries(req).await,
                Rpc::AppendStaged => client.append_staged(req).await,
                Rpc::Vote => client.vote(req).await,
            }
        };
        // The client-side deadline also covers a peer that never answers (partition), which the
        // grpc-timeout header alone cannot.
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(TransportError::Timeout(timeout)),
            Ok(Ok(resp)) => Ok(self.network.unwrap_reply(self.target, resp.into_inner())),
            Ok(Err(status)) => Err(classify(status, timeout)),
        }
    }

    /// Calls `rpc` with an encoded request and decodes the postcard `Result<Resp, RaftError>`.
    async fn request<Resp: DeserializeOwned>(&self, rpc: Rpc, payload: Vec<u8>, timeout: Duration) -> Exchanged<Resp> {
        let reply = self.call(rpc, payload, timeout).await?;
        Ok(postcard::from_bytes::<Result<Resp, RaftError<NodeId>>>(&reply)?)
    }

    /// Sorts an exchange's outcome into openraft's error kinds.
    #[allow(clippy::result_large_err, reason = "openraft's RPCError, which the RaftNetwork methods return as is")]
    fn settle<Resp>(&self, result: Exchanged<Resp>, kind: RPCTypes) -> RaftResult<Resp> {
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(self.rpc_error(e, kind)),
        }
    }

    /// One request/response exchange within `timeout`.
    async fn exchange<Req, Resp>(&self, rpc: Rpc, kind: RPCTypes, body: &Req, timeout: Duration) -> RaftResult<Resp>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let result = match postcard::to_allocvec(body) {
            Ok(payload) => self.request(rpc, payload, timeout).await,
            Err(e) => Err(e.into()),
        };
        self.settle(result, kind)
    }

    fn rpc_error<E: std::error::Error>(&self, e: TransportError, kind: RPCTypes) -> RPCError<NodeId, Node, E> {
        tracing::debug!(target_node = self.target, addr = %self.addr, error = %e, "raft rpc failed");
        match e {
            TransportError::Timeout(timeout) => {
                // `id` is the sender in openraft's Timeout; the local id is not known here and
                // the value is only used in messages.
                RPCError::Timeout(Timeout { action: kind, id: self.target, target: self.target, timeout })
            }
            TransportError::Unreachable(_) | TransportError::BadAddress(_) => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            TransportError::Rpc(_)
            | TransportError::Codec(_)
            | TransportError::SnapshotFile(_)
            | TransportError::Encode(_) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

/// An error with its sources, which for a TLS failure say what was wrong with the certificate.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sorts a failed call's status: connection-level failures mean the peer is down.
fn classify(status: tonic::Status, timeout: Duration) -> TransportError {
    match status.code() {
        tonic::Code::Unavailable => TransportError::Unreachable(status),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => TransportError::Timeout(timeout),
        _ => TransportError::Rpc(status),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// Sends a byte-bounded prefix of the entries, or stages a large first entry (see the module
    /// docs and `large.rs`).
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RaftResult<AppendEntriesResponse<NodeId>> {
        self.append(rpc, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RaftResult<VoteResponse<NodeId>> {
        self.exchange(Rpc::Vote, RPCTypes::Vote, &rpc, option.hard_ttl()).await
    }

    /// Streams the snapshot file to the peer in [`SNAPSHOT_CHUNK`]s (the first one carrying the
    /// head) and returns its answer once it installed the snapshot. Gives up when openraft
    /// cancels, when the peer pulls no chunk for [`SNAPSHOT_STALL`], or after a deadline that
    /// grows with the size.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let size =
            snapshot.snapshot.size().map_err(|e| self.streaming_error(TransportError::SnapshotFile(e.to_string())))?;
        let timeout = snapshot_timeout(size, option.hard_ttl());
        let head = encode_snapshot(&vote, &snapshot.meta).map_err(|e| self.streaming_error(e))?;
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(self.streaming_error(TransportError::BadAddress(e.to_string()))),
        };
        let (progress, progress_rx) = watch::channel(Sending::Chunk);
        let mut req = tonic::Request::new(snapshot_chunks(self.network.header(head), snapshot.snapshot, progress));
        req.set_timeout(timeout);
        let started = Instant::now();
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            e = watch_chunks(progress_rx) => Err(e),
            r = tokio::time::timeout(timeout, client.install_snapshot(req)) => match r {
                Err(_) => Err(TransportError::Timeout(timeout)),
                Ok(Ok(resp)) => Ok(self.network.unwrap_reply(self.target, resp.into_inner())),
                Ok(Err(status)) => Err(classify(status, timeout)),
            },
        };
        let reply = reply.map_err(|e| self.streaming_error(e))?;
        tracing::info!(
            target_node = self.target,
            snapshot = %snapshot.meta.snapshot_id,
            bytes = size,
            seconds = started.elapsed().as_secs_f64(),
            "sent snapshot"
        );
        match postcard::from_bytes::<Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>(&reply) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(self.target, fatal))),
            Err(e) => Err(self.streaming_error(TransportError::Codec(e))),
        }
    }
}

impl PeerClient {
    fn streaming_error(&self, e: TransportError) -> StreamingError<TypeConfig, Fatal<NodeId>> {
        match self.rpc_error::<Fatal<NodeId>>(e, RPCTypes::InstallSnapshot) {
            RPCError::Timeout(t) => StreamingError::Timeout(t),
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Network(n) => StreamingError::Network(n),
            RPCError::PayloadTooLarge(p) => StreamingError::Network(NetworkError::new(&p)),
            RPCError::RemoteError(r) => StreamingError::RemoteError(r),
        }
    }
}

/// The deadline of a whole snapshot transfer of `size` bytes, including the peer's install.
fn snapshot_timeout(size: u64, hard_ttl: Duration) -> Duration {
    hard_ttl.max(MIN_SNAPSHOT_TIMEOUT) + Duration::from_secs(size / SNAPSHOT_MIN_RATE)
}

/// How the chunk stream of a transfer is doing, for [`watch_chunks`].
#[derive(Debug, Clone)]
enum Sending {
    /// A chunk was handed to the transport (each send wakes the watchdog, equal or not).
    Chunk,
    /// Every chunk was handed over; the peer is installing.
    Done,
    /// Reading the snapshot file failed.
    Failed(String),
}

/// The request stream of a transfer: the file in order, the first chunk carrying `head`. Reads
/// one chunk ahead of the transport at most, so memory is a few chunks whatever the size.
fn snapshot_chunks(
    head: RaftRequest,
    data: Box<SnapshotData>,
    progress: watch::Sender<Sending>,
) -> impl Stream<Item = SnapshotChunk> + Send + 'static {
    async_stream::stream! {
        let mut head = Some(head);
        let mut offset = 0u64;
        loop {
            match data.read_chunk(offset, SNAPSHOT_CHUNK).await {
                Ok(chunk) if chunk.is_empty() && head.is_none() => {
                    progress.send_replace(Sending::Done);
                    break;
                }
                Ok(chunk) => {
                    offset += chunk.len() as u64;
                    progress.send_replace(Sending::Chunk);
                    yield SnapshotChunk { head: head.take(), data: chunk };
                }
                Err(e) => {
                    progress.send_replace(Sending::Failed(e.to_string()));
                    // Never end the stream cleanly: the peer would take what it got for the
                    // whole file. The watchdog ends the call.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Resolves with an error when the chunk stream fails or the peer stops pulling chunks for
/// [`SNAPSHOT_STALL`]; never resolves once every chunk was sent (the deadline covers the rest).
async fn watch_chunks(mut progress: watch::Receiver<Sending>) -> TransportError {
    loop {
        let state = progress.borrow_and_update().clone();
        match state {
            Sending::Failed(e) => return TransportError::SnapshotFile(e),
            Sending::Done => return std::future::pending().await,
            Sending::Chunk => match tokio::time::timeout(SNAPSHOT_STALL, progress.changed()).await {
                Err(_) => return TransportError::Timeout(SNAPSHOT_STALL),
                // The stream was dropped: the call ended and its result wins the select.
                Ok(Err(_)) => return std::future::pending().await,
                Ok(Ok(())) => {}
            },
        }
    }
}

/// The head payload of a snapshot transfer: `postcard((vote, meta))`.
fn encode_snapshot(vote: &Vote, meta: &SnapshotMeta) -> Result<Vec<u8>, TransportError> {
    Ok(postcard::to_allocvec(&(vote, meta))?)
}

/// The inverse of [`encode_snapshot`], used by the server side.
pub(crate) fn decode_snapshot(payload: &[u8]) -> Result<(Vote, SnapshotMeta), postcard::Error> {
    postcard::from_bytes(payload)
}
