//! The client side of the Raft transport: openraft's `RaftNetworkFactory` / `RaftNetwork` over
//! the `mailraft.v1.Raft` gRPC service.
//!
//! Flow: openraft asks the factory for a client whenever it (re)starts replicating to or
//! requesting votes from a peer. The factory hands out a [`PeerClient`] built on ONE cached
//! tonic `Channel` per (node id, address): a channel is an HTTP/2 connection that multiplexes
//! every concurrent call and reconnects by itself, so clients are cheap and no call pays a TCP
//! handshake. Each openraft message is postcard-encoded into `RaftRequest.payload` (openraft
//! types never enter the protobuf schema); the peer answers with a postcard-encoded `Result`.
//!
//! Errors: a peer that cannot be reached (connection refused, DNS, unavailable) is
//! `Unreachable`, so openraft backs off; a call that outlives openraft's deadline is `Timeout`;
//! anything else on the wire is `NetworkError` (openraft retries at once). An error the remote
//! Raft returned travels inside the payload and becomes `RemoteError`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailraft_proto::RaftRequest;
use mailraft_proto::raft_client::RaftClient;
use mailraft_store::{Node, NodeId, Snapshot, TypeConfig, Vote};
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

/// How long establishing a TCP connection to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keepalive: detects a dead peer connection even when no call is in flight.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Lower bound for a whole-snapshot transfer, whatever openraft's per-RPC deadline says: a
/// snapshot is one large message.
const MIN_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a Raft RPC failed on the client side, before it is sorted into openraft's error kinds.
#[derive(Debug, thiserror::Error)]
enum TransportError {
    #[error("invalid peer address {0}")]
    BadAddress(String),
    #[error("peer unreachable: {0}")]
    Unreachable(tonic::Status),
    #[error("rpc failed: {0}")]
    Rpc(tonic::Status),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("payload encoding: {0}")]
    Codec(#[from] postcard::Error),
}

/// Creates [`PeerClient`]s for one Raft group, sharing a channel per peer.
#[derive(Clone, Default)]
pub struct Network {
    /// Carried in every request so a node hosting several groups can route it.
    group_id: u64,
    /// One channel per (node id, address); an address change for a node replaces its entry.
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
}

impl Network {
    /// A network for Raft group `group_id`.
    pub fn new(group_id: u64) -> Self {
        Network { group_id, channels: Arc::default() }
    }

    /// The cached channel to `target` at `addr`, creating it (lazily connected) if needed.
    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, TransportError> {
        let mut map = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_addr, ch)) = map.get(&target)
            && cached_addr == addr
        {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(addr.to_string())
            .map_err(|_| TransportError::BadAddress(addr.to_string()))?
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
        let client = self.channel(target, &node.addr).map(|ch| {
            RaftClient::new(ch).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX)
        });
        PeerClient { group_id: self.group_id, target, addr: node.addr.clone(), client }
    }
}

/// Sends Raft messages to one peer.
pub struct PeerClient {
    /// Raft group of this network.
    group_id: u64,
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
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    /// Calls `rpc` with `payload` and returns the reply payload, within `timeout`.
    async fn call(&self, rpc: Rpc, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, TransportError> {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(TransportError::BadAddress(e.to_string())),
        };
        let mut req = tonic::Request::new(RaftRequest { group_id: self.group_id, payload });
        req.set_timeout(timeout);
        let fut = async move {
            match rpc {
                Rpc::AppendEntries => client.append_entries(req).await,
                Rpc::Vote => client.vote(req).await,
                Rpc::InstallSnapshot => client.install_snapshot(req).await,
            }
        };
        // The client-side deadline also covers a peer that never answers (partition), which the
        // grpc-timeout header alone cannot.
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(TransportError::Timeout(timeout)),
            Ok(Ok(resp)) => Ok(resp.into_inner().payload),
            Ok(Err(status)) => Err(classify(status, timeout)),
        }
    }

    /// One request/response exchange with a postcard-encoded `Result<Resp, RaftError>` reply.
    async fn exchange<Req, Resp>(
        &self,
        rpc: Rpc,
        kind: RPCTypes,
        body: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let result = async {
            let payload = postcard::to_allocvec(body)?;
            let reply = self.call(rpc, payload, timeout).await?;
            Ok::<_, TransportError>(postcard::from_bytes::<Result<Resp, RaftError<NodeId>>>(&reply)?)
        }
        .await;
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(self.rpc_error(e, kind)),
        }
    }

    fn rpc_error<E: std::error::Error>(&self, e: TransportError, kind: RPCTypes) -> RPCError<NodeId, Node, E> {
        tracing::debug!(target_node = self.target, addr = %self.addr, error = %e, "raft rpc failed");
        match e {
            TransportError::Timeout(timeout) => {
                // `id` is the sender in openraft's Timeout; the local id is not known here and
                // the value is only used in messages.
                RPCError::Timeout(Timeout { action: kind, id: self.target, target: self.target, timeout })
            }
            TransportError::Unreachable(_) | TransportError::BadAddress(_) => RPCError::Unreachable(Unreachable::new(&e)),
            TransportError::Rpc(_) | TransportError::Codec(_) => RPCError::Network(NetworkError::new(&e)),
        }
    }
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
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.exchange(Rpc::AppendEntries, RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.exchange(Rpc::Vote, RPCTypes::Vote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let timeout = option.hard_ttl().max(MIN_SNAPSHOT_TIMEOUT);
        let payload = encode_snapshot(&vote, snapshot).map_err(|e| self.streaming_error(e))?;
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            reply = self.call(Rpc::InstallSnapshot, payload, timeout) => reply,
        };
        let reply = reply.map_err(|e| self.streaming_error(e))?;
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

/// Snapshot payload: `postcard((vote, meta))` followed by the raw snapshot bytes, so the
/// (large) data is not copied through the encoder.
fn encode_snapshot(vote: &Vote, snapshot: Snapshot) -> Result<Vec<u8>, TransportError> {
    let head = postcard::to_allocvec(&(vote, &snapshot.meta))?;
    let data = mailraft_store::snapshot_into_bytes(snapshot.snapshot);
    let mut out = Vec::with_capacity(head.len() + data.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    Ok(out)
}

/// The inverse of [`encode_snapshot`], used by the server side. Takes the payload by value so
/// the snapshot bytes are reused rather than copied.
pub(crate) fn decode_snapshot(mut payload: Vec<u8>) -> Result<(Vote, Snapshot), postcard::Error> {
    let ((vote, meta), rest): ((Vote, mailraft_store::SnapshotMeta), &[u8]) = postcard::take_from_bytes(&payload)?;
    let head_len = payload.len() - rest.len();
    payload.drain(..head_len);
    Ok((vote, Snapshot { meta, snapshot: mailraft_store::snapshot_from_bytes(payload) }))
}
