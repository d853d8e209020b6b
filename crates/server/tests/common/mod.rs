//! What the storage-node tests share: starting a node on a loopback port with fast Raft timings,
//! a channel to it, a request context and the stable error code of a status.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;

use mailraft_proto as pb;
use mailraft_server::{NodeConfig, StorageNode};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// Election timeout bounds in milliseconds (heartbeats are 50 ms in every test).
pub type Election = (u64, u64);

/// Node `id` on `addr` with 50 ms heartbeats and the given election timeouts.
pub fn config(id: u64, dir: &Path, addr: SocketAddr, bootstrap: bool, election: Election) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, dir.to_path_buf(), addr);
    cfg.bootstrap = bootstrap;
    cfg.heartbeat_ms = 50;
    (cfg.election_min_ms, cfg.election_max_ms) = election;
    cfg
}

/// Starts node `id` on an already bound `listener` (tests that need the addresses up front).
pub async fn start_on(listener: TcpListener, id: u64, dir: &Path, bootstrap: bool, election: Election) -> StorageNode {
    let addr = listener.local_addr().unwrap();
    StorageNode::start(config(id, dir, addr, bootstrap, election), listener).await.unwrap()
}

/// Starts node `id` on a fresh loopback port; returns it with its address.
pub async fn start(id: u64, dir: &Path, bootstrap: bool, election: Election) -> (StorageNode, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (start_on(listener, id, dir, bootstrap, election).await, addr)
}

/// A connected channel to the node at `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// A request context for group 1 with `token` and no request id.
pub fn ctx(token: &[u8]) -> Option<pb::Context> {
    Some(pb::Context { group_id: 1, token: token.to_vec(), session_id: "test-session".into(), request_id: Vec::new() })
}

/// The stable `mailraft-code` of a status, "" when absent.
pub fn code_of(status: &tonic::Status) -> &str {
    status.metadata().get("mailraft-code").and_then(|v| v.to_str().ok()).unwrap_or("")
}
