//! `mailraft dev --nodes N` (N > 1): a real multi-process Raft group on one machine, for trying
//! failover by hand (like `cockroach demo --nodes 3`).
//!
//! Lifecycle:
//! 1. Pick each node's peer and admin addresses: consecutive ports from `--grpc-addr` and
//!    `--admin-addr`, or, when a port is 0, free ports chosen once and kept in
//!    `<data-dir>/dev-ports` so a restart finds the same addresses (the Raft membership stores
//!    the peer URLs). Every link is mutual TLS with the certificates `main.rs` made in
//!    `<data-dir>/certs` (node i presents `node-i.pem`, this process `operator-admin.pem` for the
//!    Admin calls and `frontend-dev.pem` for IMAP's storage calls).
//! 2. Spawn `mailraft storage --node-id i` for every node; node 1 gets `--bootstrap` only when its
//!    data directory does not exist yet, so a node whose data was wiped never founds a second
//!    cluster. Children read their stdin: when this process dies, the pipe closes and they stop,
//!    so no node outlives the demo. Their log lines are prefixed with `[nodeN]`.
//! 3. Once a leader is known, make sure the demo tenant and user exist, and add every node that is
//!    not yet a voter with the same Admin calls an operator would use (`membership.rs`).
//! 4. A supervisor per child restarts it when it exits (as Kubernetes restarts a pod), and a
//!    watcher prints one line per leader change, so killing the leader's pid shows the election.
//!
//! The IMAP front-end runs in this process (see `main.rs`), with every node as a storage endpoint.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_server::TlsBundle;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::certs::{DevCerts, Issued};

/// How long a child may take to print its `grpc` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the group to have a leader and all members.
const FORM_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause before restarting a node that exited, so a crash loop does not spin.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How often the leader watcher asks the nodes.
const LEADER_POLL: Duration = Duration::from_millis(500);
/// File under the data dir remembering ports picked for `--grpc-addr` with port 0.
const PORTS_FILE: &str = "dev-ports";

/// One storage child as started and restarted by its supervisor.
pub struct NodeProc {
    /// Node id (1-based).
    pub id: u64,
    /// Its peer gRPC listener.
    pub addr: SocketAddr,
    /// Its admin gRPC listener.
    pub admin: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Current process id (changes on restart).
    pub pid: Arc<AtomicU32>,
    /// Its certificate.
    cert: Issued,
}

impl NodeProc {
    /// `https://addr`: the peer URL (membership, front-end endpoints).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `https://admin`.
    pub fn admin_url(&self) -> String {
        format!("https://{}", self.admin)
    }
}

/// The running child processes and their supervisors.
pub struct DevCluster {
    /// The nodes, by id order.
    pub nodes: Vec<Arc<NodeProc>>,
    /// The operator certificate for Admin calls.
    operator: TlsBundle,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the children are started with.
pub struct Spec {
    /// Number of nodes.
    pub nodes: u64,
    /// Base data dir; node i uses `<base>/node-i`.
    pub data_dir: PathBuf,
    /// gRPC address of node 1; the others use the next ports.
    pub grpc_addr: SocketAddr,
    /// Admin address of node 1; the others use the next ports.
    pub admin_addr: SocketAddr,
    /// Passed through to each child.
    pub config_file: Option<PathBuf>,
    /// The certificates (one per node, the operator's).
    pub certs: DevCerts,
}

impl DevCluster {
    /// Starts the children, waits for a leader, creates the demo account and adds the members.
    pub async fn start(spec: &Spec, demo_login: &str, demo_password: &str) -> Result<DevCluster> {
        std::fs::create_dir_all(&spec.data_dir)
            .with_context(|| format!("create data dir {}", spec.data_dir.display()))?;
        let addrs = node_addrs(spec)?;
        let (stop, stop_rx) = watch::channel(false);
        let op = &spec.certs.operator;
        let operator = TlsBundle::load(&op.ca, &op.cert, &op.key).context("load the operator certificate")?;
        let mut cluster = DevCluster { nodes: Vec::new(), operator, stop, tasks: Vec::new() };
        for (i, (addr, admin)) in addrs.into_iter().enumerate() {
            let id = i as u64 + 1;
            let data_dir = spec.data_dir.join(format!("node-{id}"));
            let bootstrap = id == 1 && !data_dir.exists();
            let cert = spec.certs.nodes.get(i).cloned().ok_or_else(|| anyhow!("no certificate for node {id}"))?;
            let node = Arc::new(NodeProc { id, addr, admin, data_dir, pid: Arc::new(AtomicU32::new(0)), cert });
            let child = spawn(&node, bootstrap, spec.config_file.as_deref()).await?;
            cluster.tasks.push(tokio::spawn(supervise(node.clone(), child, spec.config_file.clone(), stop_rx.clone())));
            cluster.nodes.push(node);
        }
        if let Err(e) = cluster.form(demo_login, demo_password).await {
            cluster.shutdown().await;
            return Err(e);
        }
        cluster.tasks.push(tokio::spawn(watch_leader(cluster.nodes.clone(), cluster.operator.clone(), stop_rx)));
        Ok(cluster)
    }

    /// Step 3 of the module docs.
    async fn form(&self, demo_login: &str, demo_password: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
        let first = self.nodes.first().ok_or_else(|| anyhow!("no nodes"))?;
        let leader = loop {
            if let Ok(info) = cluster_info(&first.admin_url(), &self.operator).await
                && let Some(leader) = self.nodes.iter().find(|n| n.id == info.leader_id)
            {
                break leader;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("node 1 did not see a leader within {FORM_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut admin = connect(&leader.admin_url(), &self.operator).await?;
        let domain = demo_login.split_once('@').map(|(_, d)| d).unwrap_or_default().to_owned();
        allow_exists(admin.create_tenant(pb::CreateTenantRequest { group_id: 1, domain }).await)?;
        let user = pb::CreateUserRequest { group_id: 1, login: demo_login.to_owned(), password: demo_password.to_owned() };
        allow_exists(admin.create_user(user).await)?;

        let info = admin.cluster_info(pb::ClusterInfoRequest { group_id: 1 }).await?.into_inner();
        for node in self.nodes.iter().skip(1) {
            let is_voter = info.members.iter().any(|m| m.node_id == node.id && m.role == "voter");
            if is_voter {
                continue;
            }
            eprintln!("adding node {} to the group...", node.id);
            let req = pb::AddNodeRequest { group_id: 1, node_id: node.id, addr: node.url(), learner_only: false };
            admin.add_node(req).await.with_context(|| format!("add node {}", node.id))?;
        }
        Ok(())
    }

    /// Stops the supervisors and the children (SIGTERM through the closed stdin pipe).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// `create-*` succeeded or the thing exists already (a restarted demo).
fn allow_exists<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(s) => Err(anyhow!("{}: {}", s.code(), s.message())),
    }
}

/// Step 1 of the module docs: (peer, admin) address per node.
fn node_addrs(spec: &Spec) -> Result<Vec<(SocketAddr, SocketAddr)>> {
    let consecutive = |base: SocketAddr, i: u64| -> Result<SocketAddr> {
        let port = u16::try_from(u64::from(base.port()) + i).context("gRPC port out of range")?;
        Ok(SocketAddr::new(base.ip(), port))
    };
    if spec.grpc_addr.port() != 0 && spec.admin_addr.port() != 0 {
        let pair = |i| Ok((consecutive(spec.grpc_addr, i)?, consecutive(spec.admin_addr, i)?));
        return (0..spec.nodes).map(pair).collect();
    }
    // Lines are "PEER ADMIN"; a line of an older version holds only the peer address.
    let path = spec.data_dir.join(PORTS_FILE);
    let remembered: Vec<(SocketAddr, Option<SocketAddr>)> = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let peer = words.next()?.parse().ok()?;
                Some((peer, words.next().and_then(|a| a.parse().ok())))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // Bind port 0 to let the kernel pick a free port, then release it for the child.
    let free = |ip| -> Result<SocketAddr> {
        Ok(TcpListener::bind(SocketAddr::new(ip, 0)).context("pick a free port")?.local_addr()?)
    };
    let mut addrs = Vec::new();
    for i in 0..spec.nodes {
        let (old_peer, old_admin) = match remembered.get(i as usize) {
            Some((peer, admin)) => (Some(*peer), *admin),
            None => (None, None),
        };
        let pick = |base: SocketAddr, old: Option<SocketAddr>| match (base.port(), old) {
            (0, Some(old)) => Ok(old),
            (0, None) => free(base.ip()),
            _ => consecutive(base, i),
        };
        addrs.push((pick(spec.grpc_addr, old_peer)?, pick(spec.admin_addr, old_admin)?));
    }
    let text: String = addrs.iter().map(|(p, a)| format!("{p} {a}\n")).collect();
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(addrs)
}

/// Starts one child and waits for its `grpc` banner line.
async fn spawn(node: &NodeProc, bootstrap: bool, config_file: Option<&Path>) -> Result<Child> {
    let exe = std::env::current_exe().context("locate the mailraft binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("storage")
        .args(["--node-id", &node.id.to_string()])
        .args(["--grpc-addr", &node.addr.to_string()])
        .args(["--admin-addr", &node.admin.to_string()])
        .arg("--data-dir")
        .arg(&node.data_dir)
        .arg("--exit-on-stdin-eof");
    if let Some(f) = config_file {
        cmd.arg("--config").arg(f);
    }
    if bootstrap {
        cmd.arg("--bootstrap");
    }
    // One metrics listener per machine port: the children do not serve /metrics in dev mode.
    cmd.env("MAILRAFT_TELEMETRY__METRICS_ADDR", "");
    cmd.env("MAILRAFT_TLS__CA", &node.cert.ca)
        .env("MAILRAFT_TLS__CERT", &node.cert.cert)
        .env("MAILRAFT_TLS__KEY", &node.cert.key)
        .env("MAILRAFT_TLS__INSECURE_PLAINTEXT", "false");
    if std::env::var_os("RUST_LOG").is_none() && std::env::var_os("MAILRAFT_TELEMETRY__LOG_FILTER").is_none() {
        // A newcomer's terminal: warnings and leader changes, not every node's start-up chatter.
        cmd.env("MAILRAFT_TELEMETRY__LOG_FILTER", "warn,openraft=error,mailraft_server::raft_observer=info");
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("spawn storage node {}", node.id))?;
    node.pid.store(child.id().unwrap_or(0), Ordering::Relaxed);

    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let prefix = format!("[node{}]", node.id);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{prefix} {line}");
        }
    });
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("grpc") {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await;
    match ready {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Ok(Err(_)) => bail!("storage node {} exited during start-up", node.id),
        Err(_) => bail!("storage node {} did not start within {START_TIMEOUT:?}", node.id),
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

/// Restarts the node whenever it exits, until `stop`.
async fn supervise(node: Arc<NodeProc>, mut child: Child, config_file: Option<PathBuf>, mut stop: watch::Receiver<bool>) {
    loop {
        // tokio's `Child::wait` closes the child's stdin, which tells it to stop: keep the pipe
        // here for as long as the child should run.
        let stdin = child.stdin.take();
        // The select only decides; awaiting inside it would hold the watch guard across awaits.
        let exited = tokio::select! {
            status = child.wait() => Some(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())),
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(status) = exited else {
            // Closing stdin asks the child to shut down cleanly; kill it if it hangs.
            drop(stdin);
            if tokio::time::timeout(Duration::from_secs(20), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            return;
        };
        drop(stdin);
        let pid = node.pid.load(Ordering::Relaxed);
        eprintln!("node{} (pid {pid}) exited ({status}); restarting it", node.id);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RESTART_DELAY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match spawn(&node, false, config_file.as_deref()).await {
                Ok(c) => {
                    eprintln!("node{} restarted (pid {})", node.id, node.pid.load(Ordering::Relaxed));
                    child = c;
                    break;
                }
                Err(e) => eprintln!("node{}: restart failed: {e:#}; retrying", node.id),
            }
        }
    }
}

/// Prints `leader   node N (pid P)` whenever the leader changes.
async fn watch_leader(nodes: Vec<Arc<NodeProc>>, operator: TlsBundle, mut stop: watch::Receiver<bool>) {
    let mut last = 0u64;
    loop {
        let mut leader = 0;
        for node in &nodes {
            if let Ok(info) = cluster_info(&node.admin_url(), &operator).await
                && info.leader_id != 0
            {
                leader = info.leader_id;
                break;
            }
        }
        if leader != 0 && leader != last {
            let pid = nodes.iter().find(|n| n.id == leader).map(|n| n.pid.load(Ordering::Relaxed)).unwrap_or(0);
            println!("leader   node{leader} (pid {pid})");
            last = leader;
        }
        tokio::select! {
            _ = tokio::time::sleep(LEADER_POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn connect(url: &str, operator: &TlsBundle) -> Result<AdminClient<Channel>> {
    let channel = mailraft_server::tls::endpoint(url, Some(operator))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(crate::dev_cluster::ADMIN_CALL_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connect to {url}"))?;
    Ok(AdminClient::new(channel))
}

/// Bound on one admin call; adding a node waits for it to catch up, which is quick in dev.
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(120);

async fn cluster_info(url: &str, operator: &TlsBundle) -> Result<pb::ClusterInfoResponse> {
    let mut client = connect(url, operator).await?;
    let req = tonic::Request::new(pb::ClusterInfoRequest { group_id: 1 });
    Ok(tokio::time::timeout(Duration::from_secs(2), client.cluster_info(req)).await??.into_inner())
}
