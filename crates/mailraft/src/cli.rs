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
    /// Initialise a single-member cluster if this node has never been part of one.
    #[arg(long)]
    pub bootstrap: bool,
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
}

/// `mailraft admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// A storage node's gRPC URL.
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
    /// Show the node's Raft state.
    ClusterInfo,
}
