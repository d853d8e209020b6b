//! A real cluster on loopback for the fault tests: `mailraft storage` processes with their data
//! in a temp dir, each behind fault-injecting proxies, formed and changed with `mailraft admin`.
//!
//! Layout (every proxy is a [`Proxy`] on `127.0.0.1:0`):
//! ```text
//!   node i ──link proxy i→j──▶ node j        one per directed pair, passed as --peer-addr j=…,
//!                                            so partition() can cut exactly the Raft traffic
//!   admin, hint-following front-ends
//!        ──advertised proxy of j──▶ node j   the --advertise-addr stored in the membership,
//!                                            so NOT_LEADER hints lead through it
//!   front-end F ──F's own proxy to j──▶ node j   the front-end's configured --storage endpoints
//! ```
//! Every gRPC link is mutual TLS, as in production: the cluster makes a CA and certificates once
//! (`mailraft::certs`, in `<dir>/certs`) — node certificates valid for 127.0.0.1, so they verify
//! through the TCP proxies too — and each node, front-end and `mailraft admin` presents its own.
//! Admin commands go to a node's own admin listener (never proxied).
//!
//! Nodes listen on port 0 and are started after their proxies, so proxies get their targets
//! once a node printed its address, and again after every restart (the advertised address never
//! changes, so the membership stays valid). Ids up to `nodes + spare_ids` get proxies from the
//! start, so a node added later (a wiped node re-added under a new id) is wired the same way.
//!
//! Every wait polls with a deadline ([`wait_for`]). Child processes write their logs to files in
//! the temp dir; unless the test calls [`Cluster::passed`], dropping the cluster prints each log's
//! tail, then kills every process (a [`Proc`] kills its child on drop) and stops every proxy.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mailraft::certs::{self, Issued, Leaf};

use super::imap::Contents;
use super::observe::{ClusterInfo, Digest, parse_json, run_mailraft, tail, wait_for};
use super::proxy::Proxy;
use super::{Client, Proc, free_port};

/// The tenant (mail domain) every cluster test uses.
pub const DOMAIN: &str = "cluster.test";
/// Its user.
pub const USER: &str = "fault@cluster.test";
/// The user's password.
pub const PASSWORD: &str = "fault-Secret-4242";

/// Default deadline of one admin command.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each log printed when a test fails.
const TAIL_LINES: usize = 40;

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Voters to form.
    pub nodes: u64,
    /// Extra node ids wired with proxies from the start, for nodes added later.
    pub spare_ids: u64,
    /// Extra environment of every storage node (overrides the defaults below).
    pub env: Vec<(String, String)>,
    /// Give every node a `/metrics` listener.
    pub metrics: bool,
    /// Directory holding the nodes' data dirs (`node<id>`), instead of the cluster's temp dir
    /// (e.g. a faultfs mount for power-cut tests).
    pub data_root: Option<PathBuf>,
}

impl Options {
    /// `nodes` voters, two spare ids, no metrics.
    pub fn new(nodes: u64) -> Options {
        Options {
            nodes,
            spare_ids: 2,
            env: Vec::new(),
            metrics: false,
            data_root: None,
        }
    }

    /// Puts the nodes' data dirs under `root`.
    pub fn data_root(mut self, root: &Path) -> Options {
        self.data_root = Some(root.to_path_buf());
        self
    }

    /// Gives every node a `/metrics` listener.
    pub fn with_metrics(mut self) -> Options {
        self.metrics = true;
        self
    }

    /// Adds an environment variable for every storage node.
    pub fn env(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// Environment of every storage node: fast but not twitchy Raft timings for loopback on a busy
/// 2-core machine, and no metrics listener unless asked for.
const NODE_ENV: &[(&str, &str)] = &[
    ("MAILRAFT_RAFT__HEARTBEAT_MS", "150"),
    ("MAILRAFT_RAFT__ELECTION_MIN_MS", "1000"),
    ("MAILRAFT_RAFT__ELECTION_MAX_MS", "2000"),
    ("MAILRAFT_TELEMETRY__METRICS_ADDR", ""),
];

/// Environment of every front-end: cleartext LOGIN (loopback tests), no TLS listener (its
/// `/metrics` listener is set by flag).
const FRONTEND_ENV: &[(&str, &str)] = &[
    ("MAILRAFT_IMAP__ALLOW_PLAINTEXT_AUTH", "true"),
    ("MAILRAFT_IMAP__TLS_ADDR", ""),
];

/// The name of the front-ends' certificate.
const FRONTEND_NAME: &str = "fault";

/// `https://addr`, the URL of a TLS listener (or of a proxy in front of one).
fn https(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

/// The environment that hands a process its gRPC certificate.
fn tls_env(cert: &Issued) -> Vec<(String, String)> {
    let path = |p: &Path| p.display().to_string();
    vec![
        ("MAILRAFT_TLS__CA".into(), path(&cert.ca)),
        ("MAILRAFT_TLS__CERT".into(), path(&cert.cert)),
        ("MAILRAFT_TLS__KEY".into(), path(&cert.key)),
    ]
}

/// Log filter of the children; `MAILRAFT_TEST_LOG` overrides it.
fn log_filter() -> String {
    std::env::var("MAILRAFT_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".to_owned())
}

/// One storage node (running or not).
struct Node {
    data_dir: PathBuf,
    proc: Option<Proc>,
    /// Its gRPC (peer) address while it runs.
    grpc: Option<SocketAddr>,
    /// Its admin address while it runs.
    admin: Option<SocketAddr>,
    /// Its `/metrics` address while it runs, if asked for.
    metrics: Option<SocketAddr>,
    /// Outbound Raft links: peer id → proxy i→peer.
    links: BTreeMap<u64, Proxy>,
    /// How many times it was started (names the log files).
    starts: u32,
}

/// A running front-end process with its own proxies to the storage nodes.
pub struct Frontend {
    /// The process.
    pub proc: Proc,
    /// Its IMAP listener.
    pub imap: SocketAddr,
    /// Its configured storage endpoints, by node id, in the order given.
    pub proxies: BTreeMap<u64, Arc<Proxy>>,
    /// Its log file.
    pub log: PathBuf,
    /// Its `/metrics` listener.
    pub metrics: SocketAddr,
}

impl Frontend {
    /// A logged-in IMAP client.
    pub fn client(&self) -> Result<Client> {
        Client::login_to(self.imap, USER, PASSWORD)
    }

    /// Its proxy to node `id` (one of its configured endpoints).
    pub fn proxy(&self, id: u64) -> Result<&Proxy> {
        self.proxies
            .get(&id)
            .map(|p| &**p)
            .ok_or_else(|| anyhow!("front-end has no endpoint for node {id}"))
    }
}

/// The cluster; see the module documentation.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// Where the CA and every certificate are.
    certs: PathBuf,
    options: Options,
    max_id: u64,
    nodes: BTreeMap<u64, Node>,
    /// Advertised proxy of each id (the address in the membership).
    advertised: BTreeMap<u64, Proxy>,
    /// Front-ends' proxies by node id, to retarget after restarts.
    frontend_proxies: Vec<(u64, Weak<Proxy>)>,
    frontends_started: u32,
    logs: Vec<PathBuf>,
    passed: bool,
}

impl Cluster {
    /// [`Cluster::start_with`] default options.
    pub fn start(nodes: u64) -> Result<Cluster> {
        Cluster::start_with(Options::new(nodes))
    }

    /// Bootstraps node 1, creates the test tenant and user, adds the other nodes with
    /// `mailraft admin add-node` and waits until every node is a voter and caught up.
    pub fn start_with(options: Options) -> Result<Cluster> {
        let max_id = options.nodes + options.spare_ids;
        let mut advertised = BTreeMap::new();
        for id in 1..=max_id {
            advertised.insert(id, Proxy::start()?);
        }
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        for id in 1..=max_id {
            certs::ensure_leaf(&certs, &Leaf::node(id, &["127.0.0.1".to_owned()]), false)?;
        }
        certs::ensure_leaf(&certs, &Leaf::frontend(FRONTEND_NAME), false)?;
        certs::ensure_leaf(&certs, &Leaf::operator(certs::DEFAULT_OPERATOR), false)?;
        let mut cluster = Cluster {
            dir,
            certs,
            options,
            max_id,
            nodes: BTreeMap::new(),
            advertised,
            frontend_proxies: Vec::new(),
            frontends_started: 0,
            logs: Vec::new(),
            passed: false,
        };
        let started = Instant::now();
        cluster.spawn_node(1, true)?;
        wait_for("node 1 to lead its new cluster", Duration::from_secs(30), || {
            Ok(cluster.info(1)?.is_leader().then_some(()))
        })?;
        cluster.admin(&["create-tenant", DOMAIN], "")?;
        cluster.admin(&["create-user", USER], &format!("{PASSWORD}\n"))?;
        for id in 2..=cluster.options.nodes {
            cluster.add_node(id)?;
        }
        let all: Vec<u64> = (1..=cluster.options.nodes).collect();
        cluster.wait_converged(&all, Duration::from_secs(60))?;
        eprintln!("cluster of {} nodes formed in {:?}", all.len(), started.elapsed());
        Ok(cluster)
    }

    /// Marks the test as passed: no log tails are printed on drop.
    pub fn passed(&mut self) {
        self.passed = true;
    }

    /// The temp dir everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Ids of the nodes whose process runs.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.proc.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// URL of node `id`'s own admin listener (not proxied): for admin queries that must reach
    /// that very node whatever the faults.
    pub fn direct_url(&self, id: u64) -> Result<String> {
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        match (&node.proc, node.admin) {
            (Some(_), Some(addr)) => Ok(https(addr)),
            _ => bail!("node {id} is not running"),
        }
    }

    /// The advertised (membership) URL of node `id`.
    pub fn advertised_url(&self, id: u64) -> Result<String> {
        Ok(https(self.advertised(id)?.addr()))
    }

    /// The directory with the CA and every certificate (`mailraft admin --tls-dir`).
    pub fn certs_dir(&self) -> &Path {
        &self.certs
    }

    /// The advertised proxy of node `id`: what hint-following clients go through.
    pub fn advertised(&self, id: u64) -> Result<&Proxy> {
        self.advertised
            .get(&id)
            .ok_or_else(|| anyhow!("id {id} beyond the spare ids"))
    }

    /// The Raft link proxy from node `from` to node `to`.
    pub fn link(&self, from: u64, to: u64) -> Result<&Proxy> {
        self.nodes
            .get(&from)
            .and_then(|n| n.links.get(&to))
            .ok_or_else(|| anyhow!("no link {from}→{to}"))
    }

    /// The log file of node `id`'s latest start.
    pub fn log_file(&self, id: u64) -> Result<PathBuf> {
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        Ok(self.dir.path().join(format!("node{id}-start{}.log", node.starts)))
    }

    /// Node `id`'s `/metrics` address, when started with [`Options::metrics`].
    pub fn metrics_addr(&self, id: u64) -> Option<SocketAddr> {
        self.nodes.get(&id).and_then(|n| n.metrics)
    }

    /// Starts node `id`'s process (creating its proxies on first start) and points every proxy
    /// leading to it at its new address.
    fn spawn_node(&mut self, id: u64, bootstrap: bool) -> Result<()> {
        if id == 0 || id > self.max_id {
            bail!("node id {id} outside 1..={}", self.max_id);
        }
        if !self.nodes.contains_key(&id) {
            let mut links = BTreeMap::new();
            for peer in (1..=self.max_id).filter(|p| *p != id) {
                let link = Proxy::start()?;
                if let Some(addr) = self.nodes.get(&peer).filter(|n| n.proc.is_some()).and_then(|n| n.grpc) {
                    link.set_target(addr);
                }
                links.insert(peer, link);
            }
            let data_dir = self.options.data_root.as_deref().unwrap_or(self.dir.path()).join(format!("node{id}"));
            self.nodes.insert(
                id,
                Node {
                    data_dir,
                    proc: None,
                    grpc: None,
                    admin: None,
                    metrics: None,
                    links,
                    starts: 0,
                },
            );
        }
        let advertise = self.advertised_url(id)?;
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        if node.proc.is_some() {
            bail!("node {id} is already running");
        }
        node.starts += 1;
        let log = self.dir.path().join(format!("node{id}-start{}.log", node.starts));
        let mut args: Vec<String> = [
            "storage",
            "--node-id",
            &id.to_string(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--advertise-addr",
            &advertise,
            "--data-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(node.data_dir.display().to_string());
        for (peer, link) in &node.links {
            args.push("--peer-addr".into());
            args.push(format!("{peer}={}", https(link.addr())));
        }
        if bootstrap {
            args.push("--bootstrap".into());
        }
        // Stops the node if this test process dies without killing it (its stdin pipe closes).
        args.push("--exit-on-stdin-eof".into());
        let metrics = if self.options.metrics {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            args.push("--metrics-addr".into());
            args.push(addr.to_string());
            Some(addr)
        } else {
            None
        };
        let filter = log_filter();
        let (cert, key) = certs::paths(&self.certs, &Leaf::node(id, &[]).stem());
        let tls = tls_env(&Issued { ca: self.certs.join(certs::CA_CERT), cert, key, created: false });
        let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", filter.as_str()), ("NO_COLOR", "1")];
        env.extend_from_slice(NODE_ENV);
        env.extend(tls.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend(self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let os_args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.logs.push(log.clone());
        let proc = Proc::spawn_logged(&os_args, &env, &["grpc", "admin"], Some(&log))
            .with_context(|| format!("start node {id}; log tail:\n{}", tail(&log, TAIL_LINES)))?;
        let grpc: SocketAddr = proc.get("grpc")?;
        node.admin = Some(proc.get("admin")?);
        node.proc = Some(proc);
        node.grpc = Some(grpc);
        node.metrics = metrics;
        self.retarget(id, Some(grpc));
        Ok(())
    }

    /// Points every proxy that leads to node `id` at `addr` (or nowhere while it is down, so a
    /// port reused by another process is never reached).
    fn retarget(&mut self, id: u64, addr: Option<SocketAddr>) {
        let set = |p: &Proxy| match addr {
            Some(a) => p.set_target(a),
            None => p.clear_target(),
        };
        if let Some(p) = self.advertised.get(&id) {
            set(p);
        }
        for node in self.nodes.values() {
            if let Some(link) = node.links.get(&id) {
                set(link);
            }
        }
        self.frontend_proxies.retain(|(_, p)| p.strong_count() > 0);
        for (node, proxy) in &self.frontend_proxies {
            if *node == id
                && let Some(p) = proxy.upgrade()
            {
                set(&p);
            }
        }
    }

    /// SIGKILL node `id`.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        let mut proc = node.proc.take().ok_or_else(|| anyhow!("node {id} is not running"))?;
        proc.kill()?;
        self.retarget(id, None);
        Ok(())
    }

    /// Starts node `id` again on its data dir (same id, same advertised address).
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.spawn_node(id, false)
    }

    /// Deletes node `id`'s data (killing it first if it runs).
    pub fn wipe(&mut self, id: u64) -> Result<()> {
        if self.nodes.get(&id).is_some_and(|n| n.proc.is_some()) {
            self.kill(id)?;
        }
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        if node.data_dir.exists() {
            std::fs::remove_dir_all(&node.data_dir)?;
        }
        Ok(())
    }

    /// `mailraft admin <args>` against any running node (admin follows NOT_LEADER hints).
    pub fn admin(&self, args: &[&str], stdin: &str) -> Result<String> {
        let mut last = None;
        for id in self.running() {
            match self.admin_via(id, args, stdin, ADMIN_TIMEOUT) {
                Ok(out) => return Ok(out),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no node is running")))
    }

    /// `mailraft admin <args>` sent to node `id` directly.
    pub fn admin_via(&self, id: u64, args: &[&str], stdin: &str, timeout: Duration) -> Result<String> {
        let mut all = vec!["admin".to_owned(), "--endpoint".to_owned(), self.direct_url(id)?, "--tls-dir".to_owned()];
        all.push(self.certs.display().to_string());
        all.extend(args.iter().map(|a| a.to_string()));
        run_mailraft(&all, stdin, timeout)
    }

    /// Node `id`'s own view (`cluster-info --json`), asked directly.
    pub fn info(&self, id: u64) -> Result<ClusterInfo> {
        let out = self.admin_via(id, &["cluster-info", "--json"], "", Duration::from_secs(10))?;
        parse_json(&out, "cluster-info")
    }

    /// Node `id`'s state-machine digest, asked directly.
    pub fn digest(&self, id: u64) -> Result<Digest> {
        let out = self.admin_via(id, &["state-digest"], "", Duration::from_secs(30))?;
        parse_json(&out, "state-digest")
    }

    /// Waits until `ids` have applied the same index, then fails unless their state machines
    /// are identical there (replicas at one index must agree byte for byte).
    pub fn wait_same_state(&self, ids: &[u64], timeout: Duration) -> Result<Digest> {
        let digests = wait_for(&format!("nodes {ids:?} to apply the same index"), timeout, || {
            let digests = ids
                .iter()
                .map(|id| Ok((*id, self.digest(*id)?)))
                .collect::<Result<Vec<_>>>()?;
            let index = digests.first().map(|(_, d)| d.applied_index);
            Ok(digests
                .iter()
                .all(|(_, d)| Some(d.applied_index) == index)
                .then_some(digests))
        })?;
        let (first_id, first) = digests.first().ok_or_else(|| anyhow!("no node to compare"))?;
        for (id, d) in &digests {
            if d != first {
                bail!(
                    "state machines differ at applied index {}: node {first_id} {first:?}, node {id} {d:?}",
                    d.applied_index
                );
            }
        }
        Ok(first.clone())
    }

    /// Every running node's view (nodes that do not answer are left out).
    pub fn infos(&self) -> BTreeMap<u64, ClusterInfo> {
        self.running()
            .into_iter()
            .filter_map(|id| Some((id, self.info(id).ok()?)))
            .collect()
    }

    /// The established leader now, if any: a node that says it leads and whose term a majority
    /// of its voters share with it as their leader. (An old leader cut off in a minority still
    /// says it leads, but no majority follows it.)
    pub fn current_leader(&self) -> Option<(u64, ClusterInfo)> {
        let infos = self.infos();
        let mut leaders: Vec<&ClusterInfo> = infos.values().filter(|i| i.is_leader()).collect();
        leaders.sort_by_key(|i| std::cmp::Reverse(i.term));
        leaders.into_iter().find_map(|l| {
            let voters = l.voters();
            let following = voters
                .iter()
                .filter(|v| {
                    infos
                        .get(v)
                        .is_some_and(|i| i.leader_id == l.node_id && i.term == l.term)
                })
                .count();
            (following * 2 > voters.len()).then(|| (l.node_id, l.clone()))
        })
    }

    /// Waits (up to 30 s) for an established leader; see [`Cluster::current_leader`].
    pub fn leader(&self) -> Result<u64> {
        wait_for("an established leader", Duration::from_secs(30), || {
            Ok(self.current_leader().map(|(id, _)| id))
        })
    }

    /// Waits until `ids` all run, agree on the leader and term, have applied the same index, and
    /// the leader reports them as voters with lag 0.
    pub fn wait_converged(&self, ids: &[u64], timeout: Duration) -> Result<ClusterInfo> {
        let what = format!("nodes {ids:?} to converge");
        wait_for(&what, timeout, || {
            let Some((leader, info)) = self.current_leader() else {
                return Ok(None);
            };
            let infos = self.infos();
            let agree = ids.iter().all(|id| {
                infos.get(id).is_some_and(|i| {
                    i.leader_id == leader && i.term == info.term && i.last_applied == info.last_applied
                })
            });
            let caught_up = ids.iter().all(|id| {
                info.members
                    .iter()
                    .any(|m| m.node_id == *id && m.role == "voter" && (*id == leader || m.lag == 0))
            });
            Ok((agree && caught_up).then_some(info))
        })
    }

    /// Starts node `id` on an empty data dir and adds it with `mailraft admin add-node` (which
    /// returns once it caught up and was promoted to voter).
    pub fn add_node(&mut self, id: u64) -> Result<()> {
        self.spawn_node(id, false)?;
        let url = self.advertised_url(id)?;
        let leader = self.leader()?;
        self.admin_via(
            leader,
            &["add-node", &id.to_string(), &url],
            "",
            Duration::from_secs(90),
        )
        .with_context(|| format!("add node {id}"))?;
        Ok(())
    }

    /// `mailraft admin remove-node`, then waits until the leader's membership no longer has it.
    pub fn remove_node(&mut self, id: u64, force: bool) -> Result<()> {
        let leader = self.leader()?;
        let id_text = id.to_string();
        let mut args = vec!["remove-node", id_text.as_str()];
        if force {
            args.push("--force");
        }
        self.admin_via(leader, &args, "", ADMIN_TIMEOUT)?;
        wait_for(
            &format!("node {id} to leave the membership"),
            Duration::from_secs(30),
            || {
                let Some((_, info)) = self.current_leader() else {
                    return Ok(None);
                };
                Ok((!info.members.iter().any(|m| m.node_id == id)).then_some(()))
            },
        )
    }

    /// `mailraft admin transfer-leader id`, then waits until `id` is the established leader.
    pub fn transfer_leader(&self, id: u64) -> Result<()> {
        wait_for(
            &format!("node {id} to take over leadership"),
            Duration::from_secs(45),
            || {
                if let Some((leader, _)) = self.current_leader() {
                    if leader == id {
                        return Ok(Some(()));
                    }
                    // Repeated until it sticks: an election may race the first attempt.
                    self.admin_via(
                        leader,
                        &["transfer-leader", &id.to_string()],
                        "",
                        Duration::from_secs(15),
                    )?;
                }
                Ok(None)
            },
        )
    }

    /// Cuts the Raft traffic between the two sides in both directions (blackhole: packets
    /// vanish, connections stay open), leaving links within each side alone.
    pub fn partition(&self, a: &[u64], b: &[u64]) -> Result<()> {
        for &i in a {
            for &j in b {
                self.link(i, j)?.blackhole();
                self.link(j, i)?.blackhole();
            }
        }
        Ok(())
    }

    /// Makes node `id` vanish without closing anything: its Raft links both ways, its advertised
    /// address and every front-end's proxy to it are blackholed.
    pub fn isolate(&mut self, id: u64) -> Result<()> {
        let others: Vec<u64> = self.nodes.keys().copied().filter(|n| *n != id).collect();
        self.partition(&[id], &others)?;
        self.advertised(id)?.blackhole();
        self.frontend_proxies.retain(|(_, p)| p.strong_count() > 0);
        for (node, proxy) in &self.frontend_proxies {
            if *node == id
                && let Some(p) = proxy.upgrade()
            {
                p.blackhole();
            }
        }
        Ok(())
    }

    /// Undoes [`Cluster::isolate`] (and any partition): every proxy passes again.
    pub fn rejoin(&mut self) {
        self.heal();
        for p in self.advertised.values() {
            p.pass();
        }
        self.frontend_proxies.retain(|(_, p)| p.strong_count() > 0);
        for (_, proxy) in &self.frontend_proxies {
            if let Some(p) = proxy.upgrade() {
                p.pass();
            }
        }
    }

    /// Every Raft link back to normal.
    pub fn heal(&self) {
        for node in self.nodes.values() {
            for link in node.links.values() {
                link.pass();
            }
        }
    }

    /// Starts a front-end whose storage endpoints are its own proxies to `nodes`, in that order.
    pub fn start_frontend(&mut self, nodes: &[u64]) -> Result<Frontend> {
        self.start_frontend_with(nodes, &[])
    }

    /// [`Cluster::start_frontend`] with extra environment.
    pub fn start_frontend_with(&mut self, nodes: &[u64], env: &[(&str, &str)]) -> Result<Frontend> {
        self.frontends_started += 1;
        let log = self.dir.path().join(format!("frontend{}.log", self.frontends_started));
        let mut proxies = BTreeMap::new();
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut args: Vec<String> = vec![
            "frontend".into(),
            "--imap-addr".into(),
            "127.0.0.1:0".into(),
            "--metrics-addr".into(),
            metrics.to_string(),
            // Proc holds the stdin pipe: the front-end stops if the test process dies.
            "--exit-on-stdin-eof".into(),
        ];
        for &id in nodes {
            let proxy = Arc::new(Proxy::start()?);
            if let Some(addr) = self.nodes.get(&id).filter(|n| n.proc.is_some()).and_then(|n| n.grpc) {
                proxy.set_target(addr);
            }
            args.push("--storage".into());
            args.push(https(proxy.addr()));
            self.frontend_proxies.push((id, Arc::downgrade(&proxy)));
            proxies.insert(id, proxy);
        }
        let filter = log_filter();
        let (cert, key) = certs::paths(&self.certs, &Leaf::frontend(FRONTEND_NAME).stem());
        let tls = tls_env(&Issued { ca: self.certs.join(certs::CA_CERT), cert, key, created: false });
        let mut all_env: Vec<(&str, &str)> = vec![("RUST_LOG", filter.as_str()), ("NO_COLOR", "1")];
        all_env.extend_from_slice(FRONTEND_ENV);
        all_env.extend(tls.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        all_env.extend_from_slice(env);
        let os_args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.logs.push(log.clone());
        let proc = Proc::spawn_logged(&os_args, &all_env, &["imap"], Some(&log))
            .with_context(|| format!("start front-end; log tail:\n{}", tail(&log, TAIL_LINES)))?;
        Ok(Frontend {
            imap: proc.get("imap")?,
            proc,
            proxies,
            log,
            metrics,
        })
    }

    /// Reads `mailboxes` from every node in `ids`' own state machine: makes each the leader in
    /// turn (reads are served by the leader) and reads through `frontend`, which follows the
    /// NOT_LEADER hint to it.
    pub fn contents_per_node(
        &self,
        ids: &[u64],
        frontend: &Frontend,
        mailboxes: &[&str],
    ) -> Result<BTreeMap<u64, BTreeMap<String, Contents>>> {
        let mut per_node = BTreeMap::new();
        for &id in ids {
            self.transfer_leader(id)?;
            let mut client = frontend.client()?;
            let mut contents = BTreeMap::new();
            for mailbox in mailboxes {
                contents.insert(mailbox.to_string(), client.read_mailbox(mailbox)?);
            }
            per_node.insert(id, contents);
        }
        Ok(per_node)
    }

    /// Prints the tail of every child's log to stderr (the test output).
    pub fn print_logs(&self) {
        for log in &self.logs {
            eprintln!(
                "----- {} (last {TAIL_LINES} lines) -----\n{}",
                log.display(),
                tail(log, TAIL_LINES)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.passed {
            self.print_logs();
            if std::env::var_os("MAILRAFT_TEST_KEEP").is_some() {
                let kept = std::mem::replace(
                    &mut self.dir,
                    match tempfile::tempdir() {
                        Ok(d) => d,
                        Err(_) => return,
                    },
                );
                eprintln!("cluster files kept in {}", kept.keep().display());
            }
        }
    }
}
