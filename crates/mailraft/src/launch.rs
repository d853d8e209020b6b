//! Starting the parts of a process from the typed configuration: a storage node, IMAP
//! listeners, and the shutdown signal that stops them in order (front-ends first, so clients get
//! `BYE`, then the storage node, so in-flight writes finish).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mailraft_frontend::{FrontendConfig, ImapServer, TlsMode, tls_config_from_pem};
use mailraft_server::admin_service::backup;
use mailraft_server::{NodeConfig, StorageNode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::tls::TlsMaterial;

/// Binds the peer and admin listeners (port 0 allowed) and starts a storage node on them, with
/// mutual TLS from `[tls]` (or loopback plaintext, which the caller has checked is configured).
pub async fn storage_node(cfg: &Config, bootstrap: bool) -> Result<StorageNode> {
    storage_node_from(cfg, bootstrap, None).await
}

/// [`storage_node`], first restoring the backup `restore_from` (if given) into the data directory
/// as a new one-member cluster of this node. The restore runs after the listeners are bound, so
/// the membership records the address the node really advertises (with port 0, the bound one).
pub async fn storage_node_from(cfg: &Config, bootstrap: bool, restore_from: Option<&Path>) -> Result<StorageNode> {
    std::fs::create_dir_all(&cfg.node.data_dir)
        .with_context(|| format!("create data dir {}", cfg.node.data_dir.display()))?;
    let tls = crate::tls::grpc_bundle(cfg)?;
    let listener = TcpListener::bind(cfg.node.grpc_addr)
        .await
        .with_context(|| format!("bind gRPC {}", cfg.node.grpc_addr))?;
    let admin = TcpListener::bind(cfg.node.admin_addr)
        .await
        .with_context(|| format!("bind admin gRPC {}", cfg.node.admin_addr))?;
    let local = listener.local_addr()?;
    let mut node = NodeConfig::new(cfg.node.id, cfg.node.data_dir.clone(), local);
    node.group_id = cfg.node.group_id;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = |configured: &Option<String>, bound: SocketAddr| match configured {
        Some(a) if a.contains("://") => a.clone(),
        Some(a) => format!("{scheme}://{a}"),
        None => format!("{scheme}://{bound}"),
    };
    node.advertise = url(&cfg.node.advertise_addr, local);
    node.admin_advertise = url(&cfg.node.admin_advertise_addr, admin.local_addr()?);
    node.tls = tls;
    node.heartbeat_ms = cfg.raft.heartbeat_ms;
    node.election_min_ms = cfg.raft.election_min_ms;
    node.election_max_ms = cfg.raft.election_max_ms;
    node.snapshot_logs_since_last = cfg.raft.snapshot_logs_since_last;
    node.snapshot_log_bytes = cfg.raft.snapshot_log_bytes;
    node.token_ttl = std::time::Duration::from_secs(cfg.auth.token_ttl_secs);
    node.limits = cfg.limits.node_limits();
    node.fetch_buffer_bytes = cfg.limits.fetch_buffer_bytes;
    node.bootstrap = bootstrap;
    node.peer_addrs = cfg.node.peer_addr_map()?;
    let data_dir = cfg.node.data_dir.clone();
    if let Some(file) = restore_from {
        let (file, advertise, id) = (file.to_path_buf(), node.advertise.clone(), node.node_id);
        let restored = tokio::task::spawn_blocking(move || backup::restore(&data_dir, &file, id, &advertise))
            .await?
            .with_context(|| format!("restore {}", file_name(restore_from)))?;
        let last = restored.backup.meta.last_log_id.map_or(0, |l| l.index);
        tracing::info!(
            cluster_id = %format!("{:016x}", restored.cluster_id),
            last_log_index = last,
            "restored the backup as a new cluster"
        );
    } else {
        backup::check_no_interrupted_restore(&data_dir)?;
    }
    let listeners = mailraft_server::Listeners { peer: listener, admin: Some(admin) };
    StorageNode::start_with(node, listeners).await.context("start storage node")
}

/// Makes this process's `GET /ready` (on `telemetry.metrics_addr`) answer whether `node` is
/// caught up with the leader (`mailraft_server::readiness`); `/health` stays liveness only.
pub fn serve_readiness(node: &StorageNode) {
    use mailraft_telemetry::Readiness;
    use std::future::Future;
    use std::pin::Pin;
    let probe = node.readiness();
    mailraft_telemetry::set_readiness_check(Arc::new(move || -> Pin<Box<dyn Future<Output = Readiness> + Send>> {
        let probe = probe.clone();
        Box::pin(async move {
            let r = probe.check().await;
            Readiness { ready: r.ready, body: r.to_json() }
        })
    }));
}

/// A path for messages.
fn file_name(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// The front-end settings derived from the process configuration.
pub fn frontend_config(cfg: &Config, endpoints: Vec<String>) -> FrontendConfig {
    FrontendConfig {
        storage_endpoints: endpoints,
        group_id: cfg.node.group_id,
        max_connections: cfg.imap.max_connections,
        max_line_bytes: cfg.imap.max_line_bytes,
        max_literal_bytes: u32::try_from(cfg.imap.max_literal_bytes).unwrap_or(u32::MAX),
        idle_timeout: Duration::from_secs(cfg.imap.idle_timeout_secs),
        preauth_timeout: Duration::from_secs(cfg.imap.preauth_timeout_secs),
        max_auth_failures: cfg.imap.max_auth_failures,
        max_preauth_literal_bytes: cfg.imap.max_preauth_literal_bytes,
        max_preauth_per_ip: cfg.imap.max_preauth_per_ip,
        write_timeout: Duration::from_secs(cfg.imap.write_timeout_secs),
        write_chunk_messages: cfg.imap.write_chunk_messages,
        allow_plaintext_auth: cfg.imap.allow_plaintext_auth,
        request_timeout: Duration::from_millis(cfg.storage.request_timeout_ms),
        storage_attempt_timeout: Duration::from_millis(cfg.storage.attempt_timeout_ms),
        watch_heartbeat: Duration::from_millis(cfg.storage.watch_heartbeat_ms),
        ..FrontendConfig::default()
    }
}

/// Running IMAP listeners.
pub struct Listeners {
    /// Cleartext listener address, if any.
    pub imap: Option<SocketAddr>,
    /// Implicit-TLS listener address, if any.
    pub imaps: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Waits for every listener to finish draining.
    pub async fn join(self) {
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "imap listener task failed");
            }
        }
    }
}

/// Binds and serves the configured IMAP listeners until `stop` turns true.
pub async fn imap_listeners(
    server: ImapServer,
    imap_addr: Option<SocketAddr>,
    imaps_addr: Option<SocketAddr>,
    tls: Option<&TlsMaterial>,
    stop: &watch::Receiver<bool>,
) -> Result<Listeners> {
    let tls_config = match tls {
        Some(t) => Some(tls_config_from_pem(&t.cert_pem, &t.key_pem).context("load TLS certificate")?),
        None => None,
    };
    let mut out = Listeners { imap: None, imaps: None, tasks: Vec::new() };
    if let Some(addr) = imap_addr {
        let l = TcpListener::bind(addr).await.with_context(|| format!("bind IMAP {addr}"))?;
        out.imap = Some(l.local_addr()?);
        let mode = TlsMode::Plain { starttls: tls_config.clone() };
        out.tasks.push(tokio::spawn(server.clone().serve(l, mode, stopped(stop.clone()))));
    }
    if let Some(addr) = imaps_addr {
        let Some(cfg) = tls_config.clone() else {
            anyhow::bail!("imap.tls_addr is set but no certificate is configured (imap.tls_cert, imap.tls_key)");
        };
        let l = TcpListener::bind(addr).await.with_context(|| format!("bind IMAPS {addr}"))?;
        out.imaps = Some(l.local_addr()?);
        out.tasks.push(tokio::spawn(server.serve(l, TlsMode::Implicit(Arc::clone(&cfg)), stopped(stop.clone()))));
    }
    Ok(out)
}

/// Running LMTP listeners.
pub struct LmtpListeners {
    /// TCP listener address, if any.
    pub addr: Option<SocketAddr>,
    /// Unix socket path, if any.
    pub socket: Option<std::path::PathBuf>,
    tasks: Vec<JoinHandle<()>>,
}

impl LmtpListeners {
    /// Waits for every listener to finish draining, then removes the socket file.
    pub async fn join(self) {
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "lmtp listener task failed");
            }
        }
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds and serves the configured LMTP listeners (`[lmtp]`) until `stop` turns true, delivering
/// through `storage` (the IMAP server's client: one set of channels per process).
pub async fn lmtp_listeners(
    cfg: &Config,
    storage: mailraft_frontend::storage::Storage,
    stop: &watch::Receiver<bool>,
) -> Result<LmtpListeners> {
    use mailraft_frontend::lmtp::{LmtpListener, LmtpServer, StorageBackend};
    let server = LmtpServer::new(cfg.lmtp.lmtp_config(), StorageBackend::new(storage)).context("lmtp settings")?;
    let mut out = LmtpListeners { addr: None, socket: None, tasks: Vec::new() };
    if let Some(addr) = cfg.lmtp.addr {
        let l = TcpListener::bind(addr).await.with_context(|| format!("bind LMTP {addr}"))?;
        out.addr = Some(l.local_addr()?);
        out.tasks.push(tokio::spawn(server.clone().serve(LmtpListener::Tcp(l), stopped(stop.clone()))));
    }
    if let Some(path) = &cfg.lmtp.socket {
        let l = bind_unix(path)?;
        out.socket = Some(path.clone());
        out.tasks.push(tokio::spawn(server.serve(LmtpListener::Unix(l), stopped(stop.clone()))));
    }
    Ok(out)
}

/// Binds a Unix socket at `path`, replacing a stale socket file (never any other file), with
/// mode 0660 so access is granted by group, e.g. to the MTA's.
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(meta.file_type().is_socket(), "lmtp.socket {} exists and is not a socket", path.display());
        std::fs::remove_file(path).with_context(|| format!("remove stale socket {}", path.display()))?;
    }
    let l = tokio::net::UnixListener::bind(path).with_context(|| format!("bind LMTP socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod LMTP socket {}", path.display()))?;
    Ok(l)
}

/// Resolves once `rx` holds `true` (or its sender is gone).
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender dropped: treat as stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A stop flag set by SIGINT or SIGTERM.
pub fn shutdown_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let signal_tx = tx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = signal_tx.send(true);
    });
    (tx, rx)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
