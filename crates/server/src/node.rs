//! A storage node: one Raft group member with its gRPC server.
//!
//! Lifecycle:
//! 1. [`StorageNode::start_with`] opens the RocksDB store under `data_dir`, builds the openraft
//!    instance with the tonic [`Network`], and serves two listeners (bound by the caller, so
//!    tests can use port 0): the *peer* listener (Raft for nodes, Storage and Watch for front-ends
//!    and nodes, gRPC health) and the *admin* listener (Admin for operators, health). With TLS
//!    material both require client certificates of the cluster CA and every service checks the
//!    caller's role (`tls.rs`, `authz.rs`); without it the node refuses to serve anything but
//!    loopback addresses. [`StorageNode::start`] serves everything on one plaintext loopback
//!    listener, for in-process tests.
//! 2. With `bootstrap`, a pristine node initializes a single-member cluster, waits until it
//!    leads, and proposes `Command::Init` with a fresh random session key (the key that signs
//!    session tokens). Restarting a bootstrapped node changes nothing: Raft state and the key
//!    are on disk. A node started without `bootstrap` waits, serving nothing but its identity,
//!    until an operator adds it (`mailraft admin add-node`, see `membership.rs`); it then adopts
//!    the cluster's id (`cluster_id.rs`) from the leader's first message.
//! 3. [`StorageNode::shutdown`] stops accepting calls, lets in-flight ones finish (bounded by
//!    [`DRAIN_TIMEOUT`]), ends Watch streams, then stops Raft so the store is flushed and closed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailraft_model::{AccountId, Command, ModelError, TenantId, query};
use mailraft_proto::admin_server::AdminServer;
use mailraft_proto::raft_server::RaftServer;
use mailraft_proto::storage_server::StorageServer;
use mailraft_store::{Node, Raft};
use openraft::error::{InitializeError, RaftError};
use openraft::{Config, SnapshotPolicy};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};

use crate::admin_service::{self, AdminService};
use crate::authz::{Authz, RetiredNodes, Role, Service};
use crate::cluster_id::ClusterIdentity;
use crate::directory::{AdminHints, Directory};
use crate::error::ServerError;
use crate::network::Network;
use crate::password::Login;
use crate::raft_service::RaftService;
use crate::readiness::{LeaderCommit, ReadinessProbe};
use crate::shared::Shared;
use crate::storage_service::StorageService;
use crate::tls::{TlsBundle, tls_incoming};

/// How long shutdown waits for in-flight calls before cutting connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long bootstrap waits for this node to become leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request the Storage service accepts (APPEND carries whole messages).
pub const MAX_REQUEST_BYTES: usize = 80 << 20;
/// Largest message the Raft service accepts. The sender bounds AppendEntries batches to about
/// 4 MiB and sends entries over 1 MiB, snapshots and staged entries in chunks of at most 1 MiB,
/// so no legitimate message comes near this; a peer cannot make the node buffer more.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 16 << 20;

/// Everything a storage node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id within its group; must be unique and non-zero (0 means "no leader" in
    /// ClusterInfo).
    pub node_id: u64,
    /// The Raft group this node serves.
    pub group_id: u64,
    /// Directory for RocksDB and snapshots; created if missing.
    pub data_dir: PathBuf,
    /// Address the peer listener is bound to (informational; the caller binds it).
    pub listen: SocketAddr,
    /// `https://host:port` other nodes and front-ends use to reach this node's peer listener;
    /// stored in the Raft membership and returned in NOT_LEADER hints.
    pub advertise: String,
    /// The URL operators use to reach this node's admin listener; other nodes hand it out in
    /// NOT_LEADER hints on their admin listeners (`directory.rs`).
    pub admin_advertise: String,
    /// The cluster CA and this node's certificate (which must name `spiffe://mailraft/node/<id>`).
    /// `None` serves plaintext, which is refused on any address but loopback.
    pub tls: Option<Arc<TlsBundle>>,
    /// Raft heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout, milliseconds.
    pub election_min_ms: u64,
    /// Upper bound of the randomized election timeout, milliseconds.
    pub election_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Also build one when the log entries since the last snapshot exceed this many bytes
    /// (APPEND entries carry whole messages, so a count alone lets the log grow to gigabytes).
    pub snapshot_log_bytes: u64,
    /// Initialize a single-node cluster if this node's Raft state is pristine.
    pub bootstrap: bool,
    /// Addresses to use for these peers' Raft traffic instead of their membership addresses.
    pub peer_addrs: HashMap<u64, String>,
    /// How long the session tokens this node issues are valid (front-ends refresh them at half
    /// of it); see `token.rs`.
    pub token_ttl: Duration,
    /// Read and hashing concurrency, read-stream deadline, guessing budgets (`limits.rs`).
    pub limits: crate::limits::Limits,
    /// Bytes all FETCH streams of this node may hold at once, a quarter of it per account
    /// (`limits::ByteBudget`); 256 MiB by default. Outside [`crate::limits::Limits`] only because
    /// the binary builds that struct field by field.
    pub fetch_buffer_bytes: usize,
}

impl NodeConfig {
    /// A plaintext config with the usual timings for node `node_id` of group 1, serving `listen`
    /// and advertising `http://{listen}` for peers and admin calls alike.
    pub fn new(node_id: u64, data_dir: PathBuf, listen: SocketAddr) -> Self {
        NodeConfig {
            node_id,
            group_id: 1,
            data_dir,
            listen,
            advertise: format!("http://{listen}"),
            admin_advertise: format!("http://{listen}"),
            tls: None,
            heartbeat_ms: 100,
            election_min_ms: 300,
            election_max_ms: 600,
            snapshot_logs_since_last: 5_000,
            snapshot_log_bytes: 256 << 20,
            bootstrap: false,
            peer_addrs: HashMap::new(),
            token_ttl: crate::token::DEFAULT_TOKEN_TTL,
            limits: crate::limits::Limits::default(),
            fetch_buffer_bytes: crate::limits::DEFAULT_FETCH_BUFFER_BYTES,
        }
    }

    fn raft_config(&self) -> Result<Config, ServerError> {
        let config = Config {
            cluster_name: format!("mailraft-group-{}", self.group_id),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            ..Config::default()
        };
        config.validate().map_err(|e| ServerError::Invalid(format!("raft config: {e}")))
    }
}

/// The listeners a node serves, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// Raft, Storage (with Watch) and health.
    pub peer: TcpListener,
    /// Admin and health; `None` serves Admin on the peer listener, which only a plaintext
    /// (loopback, test) node may do.
    pub admin: Option<TcpListener>,
}

/// A gRPC server task.
type ServerTask = JoinHandle<Result<(), tonic::transport::Error>>;

/// A running storage node.
pub struct StorageNode {
    /// Raft, state view and ids, shared with the services.
    shared: Arc<Shared>,
    /// The advertised address (bootstrap membership).
    advertise: String,
    /// Where the peer listener actually listens.
    local_addr: SocketAddr,
    /// Where the admin listener listens (the peer listener's address when combined).
    admin_addr: SocketAddr,
    /// Set to `true` to stop serving and end streams.
    stop: watch::Sender<bool>,
    /// The gRPC server tasks: peer listener, then admin listener if separate.
    servers: Vec<ServerTask>,
    /// "Caught up with the leader" (`readiness.rs`), for the HTTP readiness endpoint.
    readiness: ReadinessProbe,
}

impl StorageNode {
    /// Opens the store, starts Raft and serves every service on one plaintext loopback `listener`
    /// (in-process tests; see the module docs).
    pub async fn start(cfg: NodeConfig, listener: TcpListener) -> Result<StorageNode, ServerError> {
        StorageNode::start_with(cfg, Listeners { peer: listener, admin: None }).await
    }

    /// Opens the store, starts Raft and serves `listeners` (see the module docs).
    pub async fn start_with(cfg: NodeConfig, listeners: Listeners) -> Result<StorageNode, ServerError> {
        let raft_config = Arc::new(cfg.raft_config()?);
        crate::metrics::register_zero();
        let local_addr = listeners.peer.local_addr()?;
        let admin_addr = match &listeners.admin {
            Some(l) => l.local_addr()?,
            None => local_addr,
        };
        let server_tls = check_security(&cfg, &listeners, admin_addr)?;
        let data_dir = cfg.data_dir.clone();
        let (log, sm) = tokio::task::spawn_blocking(move || mailraft_store::open(&data_dir)).await??;
        let view = sm.reader();
        let log_bytes = log.log_bytes();
        let cluster = Arc::new(ClusterIdentity::load(&cfg.data_dir)?);
        let directory = Arc::new(Directory::new(cfg.node_id, cfg.admin_advertise.clone()));
        let network = Network::new(
            cfg.group_id,
            cfg.node_id,
            cluster.clone(),
            cfg.peer_addrs.clone(),
            cfg.tls.clone(),
            directory.clone(),
        );
        let raft = Raft::new(cfg.node_id, raft_config, network.clone(), log, sm).await?;
        let pools = crate::limits::Pools::new(cfg.limits.clone())?.with_fetch_buffer(cfg.fetch_buffer_bytes);
        let shared = Arc::new(
            Shared::new(cfg.node_id, cfg.group_id, raft.clone(), view, cluster.clone(), pools)
                .with_token_ttl(cfg.token_ttl),
        );

        let (stop, stop_rx) = watch::channel(false);
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<StorageServer<StorageService>>().await;
        let enforce = cfg.tls.is_some();
        let health = InterceptedService::new(health_service, Authz::new(Service::Health, enforce));
        let storage = StorageServer::new(StorageService::new(shared.clone(), stop_rx.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(usize::MAX);
        // A removed node's certificate stays valid: its id shuts it out of Storage and Watch too.
        let view = shared.view.clone();
        let retired: RetiredNodes = Arc::new(move || view.retired_nodes().map_err(|e| e.to_string()));
        let storage =
            InterceptedService::new(storage, Authz::new(Service::Storage, enforce).refusing_retired(retired));
        let admin = AdminServer::new(AdminService::new(shared.clone(), network));
        let admin = InterceptedService::new(admin, Authz::new(Service::Admin, enforce));
        let leader_commit = Arc::new(LeaderCommit::default());
        let raft_service = RaftService::new(raft.clone(), cfg.group_id, cluster, directory.clone(), shared.view.clone())
            .with_leader_commit(leader_commit.clone());
        let raft_rpc = RaftServer::new(raft_service)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(usize::MAX);
        let raft_rpc = InterceptedService::new(raft_rpc, Authz::new(Service::Raft, enforce));
        let peer = server_builder().add_service(health.clone()).add_service(storage).add_service(raft_rpc);
        let servers = match listeners.admin {
            None => vec![spawn_server(peer.add_service(admin), listeners.peer, server_tls, "peer", &stop_rx)],
            Some(admin_listener) => {
                // On its own listener, a follower's NOT_LEADER names the leader's admin URL.
                let admin = AdminHints::new(admin, raft.clone(), directory);
                let admin_router = server_builder().add_service(health).add_service(admin);
                vec![
                    spawn_server(peer, listeners.peer, server_tls.clone(), "peer", &stop_rx),
                    spawn_server(admin_router, admin_listener, server_tls, "admin", &stop_rx),
                ]
            }
        };
        tracing::info!(
            node_id = cfg.node_id,
            group_id = cfg.group_id,
            addr = %local_addr,
            %admin_addr,
            tls = enforce,
            "storage node serving"
        );
        tokio::spawn(report_sizes(shared.view.clone(), stop.subscribe()));
        tokio::spawn(crate::raft_observer::run(raft.clone(), stop.subscribe()));
        tokio::spawn(compact_by_size(raft.clone(), log_bytes, cfg.snapshot_log_bytes, stop.subscribe()));

        // A follower that heard nothing for an election timeout would start an election; twice
        // the longest one leaves room for a busy leader's late heartbeat.
        let readiness = ReadinessProbe {
            raft: raft.clone(),
            heard: leader_commit,
            fresh: Duration::from_millis(2 * cfg.election_max_ms),
        };
        let node =
            StorageNode { shared, advertise: cfg.advertise.clone(), local_addr, admin_addr, stop, servers, readiness };
        if cfg.bootstrap
            && let Err(e) = node.bootstrap().await
        {
            node.shutdown().await;
            return Err(e);
        }
        Ok(node)
    }

    /// Initializes a pristine node as a one-member cluster, waits for a leader and makes sure
    /// the session key exists.
    async fn bootstrap(&self) -> Result<(), ServerError> {
        let raft = &self.shared.raft;
        let me = self.shared.node_id;
        if !raft.is_initialized().await? {
            // The id is on disk before the cluster exists, so no message of this cluster is ever
            // sent without it.
            let cluster_id = self.shared.cluster.ensure()?;
            tracing::info!(cluster_id = %crate::cluster_id::format_id(cluster_id), "bootstrapping a new cluster");
            let members = BTreeMap::from([(me, Node { addr: self.advertise.clone() })]);
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(node_id = me, "initialized single-node cluster"),
                // Already initialized concurrently: that is the goal anyway.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ServerError::internal(format!("raft initialize: {e}"))),
            }
        }
        let metrics = raft
            .wait(Some(LEADER_TIMEOUT))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|e| ServerError::Unavailable(format!("no leader elected: {e}")))?;
        if metrics.current_leader == Some(me) && query::session_key(&self.shared.view).is_none() {
            // A new cluster starts with the newest rules its binary knows (`mailraft_model::feature`):
            // raised before `Init`, so a node that stops between the two raises it again on its
            // next start (raising is idempotent), while a cluster that has its session key is
            // never raised here: that is the operator's step after an upgrade.
            let level = mailraft_model::KNOWN_FEATURE_LEVEL;
            self.shared.write(Command::SetFeatureLevel { level }).await?;
            tracing::info!(level, "feature level set");
            let mut session_key = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut session_key);
            self.shared.write(Command::Init { session_key: session_key.into() }).await?;
            tracing::info!("session key installed");
        }
        Ok(())
    }

    /// Creates tenant `domain` and account `login` (a local part, or `user@domain`) with
    /// `password` unless the account exists; returns its ids. Used by dev mode's demo user.
    pub async fn ensure_tenant_user(
        &self,
        domain: &str,
        login: &str,
        password: &str,
    ) -> Result<(TenantId, AccountId), ServerError> {
        let login = if login.contains('@') { Login::parse(login)? } else { Login::parse(&format!("{login}@{domain}"))? };
        if let Some(ids) = self.find_account(&login).await? {
            return Ok(ids);
        }
        match admin_service::create_tenant(&self.shared, &login.domain).await {
            Ok(_) | Err(ServerError::Model(ModelError::AlreadyExists(_))) => {}
            Err(e) => return Err(e),
        }
        match admin_service::create_user(&self.shared, &login, password.to_string()).await {
            Ok(ids) => Ok(ids),
            Err(ServerError::Model(ModelError::AlreadyExists(_))) => {
                self.find_account(&login).await?.ok_or_else(|| ServerError::internal("account vanished"))
            }
            Err(e) => Err(e),
        }
    }

    async fn find_account(&self, login: &Login) -> Result<Option<(TenantId, AccountId)>, ServerError> {
        self.shared.linearize().await?;
        let (domain, local) = (login.domain.clone(), login.local.clone());
        self.shared
            .read(move |kv| match query::find_account(kv, &domain, &local) {
                Ok((who, _)) => Ok(Some((who.tenant, who.account))),
                Err(ModelError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            })
            .await
    }

    /// The address the peer listener listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the admin listener listens on (the peer listener's when combined).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The local Raft handle (metrics, membership changes).
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// Checks whether this node is caught up with the leader (`GET /ready`, `readiness.rs`).
    pub fn readiness(&self) -> ReadinessProbe {
        self.readiness.clone()
    }

    /// The FETCH byte budget (what stalled streams hold; tests and diagnostics).
    pub fn fetch_budget(&self) -> &crate::limits::ByteBudget {
        &self.shared.pools.fetch_bytes
    }

    /// Stops serving (in-flight calls may finish within [`DRAIN_TIMEOUT`]), then stops Raft.
    pub async fn shutdown(self) {
        let StorageNode { shared, stop, servers, .. } = self;
        // No receiver left only if the servers already ended; nothing to signal then.
        let _ = stop.send(true);
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for mut server in servers {
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "grpc server ended with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "grpc server task failed"),
                Err(_) => {
                    tracing::warn!("in-flight calls did not finish in time; closing connections");
                    server.abort();
                    // Wait for the abort so the services (and their store handles) are dropped.
                    let _ = server.await;
                }
            }
        }
        if let Err(e) = shared.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown failed");
        }
        let node_id = shared.node_id;
        // openraft does not join its state-machine worker, which owns the store (and RocksDB's
        // lock on the data directory). The event channel closes exactly when the last holder of
        // the store or of a view is gone, so waiting for that makes a restart on the same
        // directory in this process safe.
        let mut events = shared.view.subscribe();
        drop(shared);
        let released = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while !matches!(events.recv().await, Err(tokio::sync::broadcast::error::RecvError::Closed)) {}
        })
        .await;
        if released.is_err() {
            tracing::warn!("storage still in use after shutdown");
        }
        tracing::info!(node_id, "storage node stopped");
    }
}

/// Checks that the node may serve the way it is configured and returns the listeners' TLS
/// configuration: with TLS, the certificate must name this node and the admin listener must be
/// separate; without, every listener must be on loopback (plaintext is for development only).
fn check_security(
    cfg: &NodeConfig,
    listeners: &Listeners,
    admin_addr: SocketAddr,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    let Some(tls) = &cfg.tls else {
        let peer = listeners.peer.local_addr()?;
        if let Some(open) = [peer, admin_addr].into_iter().find(|a| !a.ip().is_loopback()) {
            return Err(ServerError::Invalid(format!(
                "refusing to serve plaintext gRPC on {open}: plaintext is only allowed on loopback addresses; \
                 configure TLS (tls.ca, tls.cert, tls.key)"
            )));
        }
        tracing::warn!(%peer, %admin_addr, "serving gRPC WITHOUT TLS (loopback only): no caller is authenticated");
        return Ok(None);
    };
    if listeners.admin.is_none() {
        return Err(ServerError::Invalid("a node with TLS needs a separate admin listener".into()));
    }
    let role = tls.role().map_err(|e| ServerError::Invalid(format!("tls.cert: {e}")))?;
    if role != Role::Node(cfg.node_id) {
        return Err(ServerError::Invalid(format!(
            "tls.cert names {role}, but this is node {} (it needs {})",
            cfg.node_id,
            Role::Node(cfg.node_id)
        )));
    }
    let config = tls.server_config().map_err(|e| ServerError::Invalid(format!("tls: {e}")))?;
    Ok(Some(config))
}

/// Streams one caller may hold open at once on one connection. A front-end runs each session's
/// calls on its one shared connection, at most one at a time per session, and admits at most
/// `mailraft_frontend::storage::route::MAX_STALLED_STREAMS` sessions; this leaves room above
/// that while still bounding what a certificate holder can make a node keep.
const MAX_STREAMS_PER_CONNECTION: u32 = 16_384;
/// HTTP/2 PINGs on connections that carry nothing, so a peer that vanished without closing is
/// dropped along with whatever it held.
const SERVER_KEEPALIVE: Duration = Duration::from_secs(30);
const SERVER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A gRPC server with this node's connection bounds.
fn server_builder() -> Server {
    Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(SERVER_KEEPALIVE))
        .http2_keepalive_timeout(Some(SERVER_KEEPALIVE_TIMEOUT))
}

/// Serves `router` on `listener` (TLS when `tls` is given) until `stop` turns true.
fn spawn_server(
    router: Router,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    name: &'static str,
    stop: &watch::Receiver<bool>,
) -> ServerTask {
    let mut signal = stop.clone();
    // An error means the sender is gone, which also means stop.
    let shutdown = async move {
        let _ = signal.wait_for(|s| *s).await;
    };
    match tls {
        Some(config) => {
            let incoming = tls_incoming(listener, config, name, stop.clone());
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown))
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown))
        }
    }
}

/// How often the log's size is compared with `snapshot_log_bytes`.
const LOG_SIZE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A size-triggered snapshot that has not moved the snapshot index by then is asked for again.
const SNAPSHOT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Triggers a snapshot (after which openraft purges the log) whenever the entries since the last
/// snapshot hold more than `limit` bytes, until the node stops.
async fn compact_by_size(raft: Raft, log_bytes: mailraft_store::LogBytes, limit: u64, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(LOG_SIZE_CHECK_INTERVAL);
    // (snapshot index when asked, when): a build in progress is not asked for again, but a
    // build that failed is retried after a while.
    let mut requested: Option<(u64, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let snapshot = raft.metrics().borrow().snapshot.map(|id| id.index);
        let bytes = log_bytes.since(snapshot);
        let position = snapshot.unwrap_or(0);
        let pending = requested.is_some_and(|(at, when)| at == position && when.elapsed() < SNAPSHOT_RETRY_AFTER);
        if bytes > limit && !pending {
            tracing::info!(bytes, limit, "raft log over its size limit: building a snapshot");
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            requested = Some((position, tokio::time::Instant::now()));
        }
    }
}

/// How often the RocksDB size gauges are refreshed; sizes move slowly and the property reads are
/// cheap, so a coarse period is enough for dashboards and alerts on disk growth.
const SIZE_REPORT_INTERVAL: Duration = Duration::from_secs(15);

/// Refreshes `mailraft_rocksdb_size_bytes{cf}` until the node stops.
async fn report_sizes(view: mailraft_store::StateView, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SIZE_REPORT_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => view.report_sizes(),
            // Stop requested, or the node is gone.
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
