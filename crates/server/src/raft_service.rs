//! The server side of the Raft transport: decodes the postcard payloads `network.rs` sends and
//! hands them to the local openraft instance.
//!
//! Errors the local Raft returns (a higher vote, a fatal storage error) are part of the protocol:
//! they go back inside the reply payload, so the sender's openraft sees a `RemoteError`. Only a
//! payload that does not decode or a request for another group is a gRPC error.

use mailraft_proto::raft_server::Raft as RaftRpc;
use mailraft_proto::{RaftReply, RaftRequest};
use mailraft_store::{NodeId, Raft, TypeConfig};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::error::ServerError;
use crate::network::decode_snapshot;

/// Serves `mailraft.v1.Raft` for one group.
#[derive(Clone)]
pub struct RaftService {
    /// The local Raft node.
    raft: Raft,
    /// Requests for any other group are refused.
    group_id: u64,
}

impl RaftService {
    /// Serves `raft`, a member of group `group_id`.
    pub fn new(raft: Raft, group_id: u64) -> Self {
        RaftService { raft, group_id }
    }

    /// Checks the group and returns the payload.
    fn payload(&self, req: Request<RaftRequest>) -> Result<Vec<u8>, Status> {
        let req = req.into_inner();
        if req.group_id != self.group_id {
            return Err(ServerError::Invalid(format!("this node does not serve raft group {}", req.group_id)).into());
        }
        Ok(req.payload)
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(payload).map_err(|e| ServerError::Invalid(format!("raft payload: {e}")).into())
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftReply>, Status> {
    let payload = postcard::to_allocvec(value).map_err(|e| Status::from(ServerError::internal(e)))?;
    Ok(Response::new(RaftReply { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&self.payload(req)?)?;
        let result: Result<_, RaftError<NodeId>> = self.raft.append_entries(rpc).await;
        reply(&result)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&self.payload(req)?)?;
        let result: Result<_, RaftError<NodeId>> = self.raft.vote(rpc).await;
        reply(&result)
    }

    async fn install_snapshot(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let payload = self.payload(req)?;
        let (vote, snapshot) =
            decode_snapshot(payload).map_err(|e| Status::from(ServerError::Invalid(format!("snapshot payload: {e}"))))?;
        let result = self.raft.install_full_snapshot(vote, snapshot).await;
        reply(&result)
    }
}
