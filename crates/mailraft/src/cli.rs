//! Command-line interface. Flags override the configuration file and environment, because an
//! operator typing a flag means it for this run.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Mailraft: a distributed, multi-tenant IMAP mail store.
#[derive(Debug, Parser)]
#[command(name = "mailraft", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Storage and IMAP in one process: a single-node cluster with a demo tenant, for local use.
    Dev(DevArgs),
    /// A storage node (gRPC: Storage, Admin and Raft services).
    Storage(StorageArgs),
    /// An IMAP front-end talking to storage nodes over gRPC.
    Frontend(FrontendArgs),
    /// Administration through a storage node's Admin service.
    Admin(AdminArgs),
}

/// Options shared by the server subcommands.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// TOML configuration file (see mailraft.example.toml); environment `MAILRAFT_*` overrides it.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Prometheus `/metrics` listener.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
}

/// `mailraft dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where RocksDB, the Raft log and the generated certificate live.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Cleartext IMAP (LOGIN allowed: local development only).
    #[arg(long, default_value = "127.0.0.1:1143")]
    pub imap_addr: SocketAddr,
    /// Implicit-TLS IMAP with a self-signed certificate generated on first start.
    #[arg(long, default_value = "127.0.0.1:1993")]
    pub imaps_addr: SocketAddr,
    /// The storage node's gRPC listener.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Password of the demo user created on first start.
    #[arg(long, env = "MAILRAFT_DEMO_PASSWORD", default_value = "demo", hide_env_values = true)]
    pub demo_password: String,
    /// Storage nodes. 1 runs everything in this process; more starts that many `mailraft storage`
    /// child processes forming one Raft group (gRPC on consecutive ports from --grpc-addr, data in
    /// <data-dir>/node-<id>), restarts any that dies, and serves IMAP from this process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
}

/// `mailraft storage`.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Overrides `node.data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Overrides `node.grpc_addr`.
    #[arg(long)]
    pub grpc_addr: Option<SocketAddr>,
    /// Overrides `node.id`.
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Initialise a single-member cluster if this node has never been part of one. Without it, a
    /// new node waits until an operator adds it (`mailraft admin add-node`).
    #[arg(long)]
    pub bootstrap: bool,
    /// Overrides `node.advertise_addr`: the URL other nodes and front-ends use to reach this node.
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// `ID=URL`: reach peer ID at URL for Raft traffic instead of its advertised address
    /// (repeatable; adds to `node.peer_addrs`).
    #[arg(long = "peer-addr")]
    pub peer_addrs: Vec<String>,
    /// Shut down when stdin reaches end-of-file (used by `mailraft dev --nodes N` so its child
    /// nodes stop when the parent goes away).
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

/// `mailraft frontend`.
#[derive(Debug, Args)]
pub struct FrontendArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Overrides `storage.endpoints` (repeatable).
    #[arg(long = "storage")]
    pub storage: Vec<String>,
    /// Overrides `imap.addr`.
    #[arg(long)]
    pub imap_addr: Option<SocketAddr>,
    /// Overrides `imap.tls_addr`.
    #[arg(long)]
    pub imaps_addr: Option<SocketAddr>,
    /// Shut down when stdin reaches end-of-file (so a supervising process's children stop with
    /// it).
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

/// `mailraft admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// A storage node's gRPC URL; membership changes are forwarded to the leader automatically.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "MAILRAFT_ADMIN_ENDPOINT")]
    pub endpoint: String,
    /// Raft group.
    #[arg(long, default_value_t = 1)]
    pub group: u64,
    /// What to do.
    #[command(subcommand)]
    pub action: AdminAction,
}

/// Admin actions.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create a tenant for a mail domain.
    CreateTenant {
        /// e.g. example.org
        domain: String,
    },
    /// Create a user `local@domain` (the tenant must exist). The password is read from stdin.
    CreateUser {
        /// e.g. alice@example.org
        login: String,
    },
    /// Set a user's password, read from stdin.
    SetPassword {
        /// e.g. alice@example.org
        login: String,
    },
    /// Show the group: members, roles, leader, term, log and applied index, lag per follower.
    ClusterInfo {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a storage node: it joins as a learner, catches up, then becomes a voter.
    AddNode {
        /// The new node's id (its `node.id`); never reuse the id of a removed node.
        id: u64,
        /// Its gRPC URL as peers and front-ends reach it, e.g. http://10.0.0.4:50051.
        addr: String,
        /// Leave it a learner (no vote); promote it later with `promote`.
        #[arg(long)]
        learner_only: bool,
    },
    /// Make a caught-up learner a voter.
    Promote {
        /// Node id.
        id: u64,
    },
    /// Remove a node from the group. Refuses to remove the leader, or a node whose removal would
    /// leave fewer than a majority of answering voters, unless --force.
    RemoveNode {
        /// Node id.
        id: u64,
        /// Remove even the leader, or when the rest may not form a majority.
        #[arg(long)]
        force: bool,
    },
    /// Print a digest of this node's state machine at its applied index as JSON
    /// (`{"applied_index","sha256","entries"}`): replicas at the same index must agree.
    StateDigest,
    /// Hand leadership to another voter (for maintenance of the current leader).
    TransferLeader {
        /// Node id of the new leader.
        id: u64,
    },
}
