//! The Mailraft storage node: tonic services over an openraft group on RocksDB.
//!
//! Flow of a call: a front-end sends a `mailraft.v1.Storage` RPC with the session token it got
//! from `Authenticate`. The service ([`storage_service`]) verifies the token ([`token`]), then
//! - for a write, builds a `mailraft_model::Command`, stamps it with the clock into a `Request`
//!   and proposes it through Raft; the reply is the model's result once the entry is committed
//!   and applied (APPENDUID, COPYUID, …);
//! - for a read, runs a read-index round (`ensure_linearizable`) and then a
//!   `mailraft_model::query` on a point-in-time view of the applied state, on the blocking pool
//!   (FETCH streams in bounded chunks, SEARCH evaluates next to the data).
//!
//! Errors of every layer become one [`ServerError`], mapped once to a gRPC status with a stable
//! `mailraft-code` ([`error`]); a follower answers `NOT_LEADER` with the leader's address.
//! Raft peers talk over the `mailraft.v1.Raft` service: [`network`] is the client side (one
//! reused channel per peer), [`raft_service`] the server side. [`node`] wires it together:
//! [`StorageNode::start`] / [`StorageNode::shutdown`].
//!
//! Module map: `node` (lifecycle), `shared` (what services share: authorize / write / read, with
//! `read_index` letting concurrent reads share one read-index round),
//! `storage_service` (dispatch) with `session`, `refresh` (token renewal), `mailboxes`, `messages`, `fetch`, `search`,
//! `changes`; `admin_service` with `membership` (add/promote/remove/transfer); `raft_service`,
//! `network`, `cluster_id` (which cluster a node belongs to, checked on every Raft message);
//! `raft_observer` (Raft gauges and leader-change log lines); `readiness` (caught up with the
//! leader, for `GET /ready`); `token`, `password`, `convert`,
//! `error`, `metrics`. Who may call what: `tls` (mutual TLS on both listeners and every client),
//! `authz` (the caller's role from its certificate, checked per service), `directory` (the
//! members' admin URLs, for `NOT_LEADER` hints on the admin listener).

#![deny(missing_docs)]

pub mod admin_service;
pub mod auth_budget;
pub mod authz;
mod changes;
pub mod cluster_id;
pub mod convert;
mod deliver;
pub mod directory;
pub mod error;
mod fetch;
mod mailboxes;
pub mod limits;
pub mod membership;
mod messages;
pub mod metrics;
pub mod network;
pub mod node;
pub mod password;
mod raft_observer;
mod read_index;
mod refresh;
pub mod raft_service;
pub mod readiness;
mod search;
mod session;
pub mod shared;
pub mod storage_service;
pub mod tls;
pub mod token;

pub use error::ServerError;
pub use node::{Listeners, NodeConfig, StorageNode};
pub use tls::TlsBundle;
