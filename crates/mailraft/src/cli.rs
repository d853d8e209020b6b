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
    /// A storage node (gRPC: Storage and Raft on the peer listener, Admin on the admin listener).
    Storage(StorageArgs),
    /// An IMAP front-end talking to storage nodes over gRPC.
    Frontend(FrontendArgs),
    /// Administration through a storage node's Admin service.
    Admin(AdminArgs),
    /// Create the cluster CA and issue node, front-end and operator certificates for gRPC mTLS.
    Certs(CertsArgs),
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
    /// LMTP delivery (RFC 2033) for a local MTA: no authentication, so loopback only by default.
    #[arg(long, default_value = "127.0.0.1:1024")]
    pub lmtp_addr: SocketAddr,
    /// The storage node's peer gRPC listener (Raft, Storage).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// The storage node's admin gRPC listener (`mailraft admin`).
    #[arg(long, default_value = "127.0.0.1:50061")]
    pub admin_addr: SocketAddr,
    /// Password of the demo user created on first start.
    #[arg(long, env = "MAILRAFT_DEMO_PASSWORD", default_value = "demo", hide_env_values = true)]
    pub demo_password: String,
    /// Storage nodes. 1 runs everything in this process; more starts that many `mailraft storage`
    /// child processes forming one Raft group (gRPC on consecutive ports from --grpc-addr and
    /// --admin-addr, data in <data-dir>/node-<id>), restarts any that dies, and serves IMAP from
    /// this process. Certificates for mTLS between them are created in <data-dir>/certs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Start from a backup (`mailraft admin backup`) instead of an empty state: the data directory
    /// must hold no node state yet (see `mailraft storage --restore-from`). Only with --nodes 1.
    #[arg(long, value_name = "FILE")]
    pub restore_from: Option<PathBuf>,
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
    /// Overrides `node.admin_addr`.
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
    /// Overrides `node.admin_advertise_addr`.
    #[arg(long)]
    pub admin_advertise_addr: Option<String>,
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
    /// Create a NEW cluster from a backup (`mailraft admin backup`): FILE is verified, restored
    /// into the data directory (which must hold no node state: no `db`, `snapshots` or
    /// `cluster-id`) as a one-member cluster of this node with a new cluster id, and served.
    /// Add the other nodes with `mailraft admin add-node`. Give it on the first start only: once
    /// restored, the directory holds state and a second restore is refused.
    #[arg(long, value_name = "FILE")]
    pub restore_from: Option<PathBuf>,
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
    /// Overrides `lmtp.addr`.
    #[arg(long)]
    pub lmtp_addr: Option<SocketAddr>,
    /// Shut down when stdin reaches end-of-file (so a supervising process's children stop with
    /// it).
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

/// `mailraft admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// A storage node's admin URL (its `node.admin_addr`); writes and membership changes follow
    /// the leader automatically.
    #[arg(long, default_value = "https://127.0.0.1:50061", env = "MAILRAFT_ADMIN_ENDPOINT")]
    pub endpoint: String,
    /// Directory with `ca.pem` and the operator certificate `<tls-name>.pem` / `<tls-name>-key.pem`
    /// (see `mailraft certs`). Default: `./data/certs` when it holds them (where `mailraft dev`
    /// puts them).
    #[arg(long, env = "MAILRAFT_ADMIN_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// File name stem of the operator certificate in --tls-dir.
    #[arg(long, default_value = "operator-admin", env = "MAILRAFT_ADMIN_TLS_NAME")]
    pub tls_name: String,
    /// CA certificate (PEM); with --cert and --key instead of --tls-dir.
    #[arg(long, env = "MAILRAFT_ADMIN_CA", requires_all = ["cert", "key"])]
    pub ca: Option<PathBuf>,
    /// Operator certificate (PEM).
    #[arg(long, env = "MAILRAFT_ADMIN_CERT", requires_all = ["ca", "key"])]
    pub cert: Option<PathBuf>,
    /// Operator private key (PEM).
    #[arg(long, env = "MAILRAFT_ADMIN_KEY", requires_all = ["ca", "cert"])]
    pub key: Option<PathBuf>,
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
        /// Succeed (exit 0) when the tenant exists already, for jobs that run on every start.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Create a user `local@domain` (the tenant must exist). The password is read from the first
    /// line of stdin, or from --password-file.
    CreateUser {
        /// e.g. alice@example.org
        login: String,
        /// Read the password from FILE instead of stdin (trailing newline removed; a warning if
        /// other users may read it).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Succeed (exit 0) when the user exists already; its password is left unchanged.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Set a user's password, read from the first line of stdin or from --password-file.
    SetPassword {
        /// e.g. alice@example.org
        login: String,
        /// Read the password from FILE instead of stdin (trailing newline removed; a warning if
        /// other users may read it).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Disable a user: it can no longer log in, and its open sessions end within seconds.
    DisableUser {
        /// e.g. alice@example.org
        login: String,
    },
    /// Enable a disabled user again (sessions ended by disabling stay ended).
    EnableUser {
        /// e.g. alice@example.org
        login: String,
    },
    /// Delete a user: its open sessions end within seconds and its login is free at once (a new
    /// user of that name gets a new account and none of the old mail); then its mail is removed
    /// in small replicated steps. Run it again to finish a deletion that was interrupted.
    DeleteUser {
        /// e.g. alice@example.org
        login: String,
    },
    /// List deleted users whose mail is not removed yet (a `delete-user` that was interrupted),
    /// one per line: login, account id, time of the deletion (RFC 3339, UTC).
    PendingDeletions,
    /// Replace the key that signs session tokens (e.g. after a node's disk was exposed). Sessions
    /// move to the new key at their next token refresh; the old key keeps verifying for the grace
    /// period.
    RotateSessionKey {
        /// Seconds the old key keeps verifying; default: the token lifetime (auth.token_ttl_secs),
        /// so no session notices. 0 refuses tokens signed with the old key at once.
        #[arg(long)]
        grace_secs: Option<u64>,
    },
    /// Raise the cluster's feature level (the version of the replicated apply rules) to LEVEL.
    ///
    /// Run it after every node runs the new binary (docs/OPERATIONS.md, "Rolling upgrades and
    /// the feature level"): it is refused, naming them, while a member's binary does not know
    /// LEVEL or a member does not answer. Levels never go down; never run a binary older than
    /// the level afterwards.
    SetFeatureLevel {
        /// The new level (1 is the first release's rules).
        level: u32,
    },
    /// Show the group: members, roles, leader, term, log and applied index, lag per follower,
    /// and the feature level.
    ClusterInfo {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check the group: the leader, every member's state, applied index and lag (each member is
    /// asked at its admin address). Exits non-zero when no leader is known, the leader does not
    /// answer or no majority of voters follows it, and with --max-lag also when a member does
    /// not answer or lags more.
    Health {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Also fail when a member does not answer, or its log or applied index is more than
        /// this many entries behind the leader's.
        #[arg(long, value_name = "ENTRIES")]
        max_lag: Option<u64>,
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
    /// Write a consistent backup of the whole cluster (a Raft snapshot taken on the leader that
    /// covers every write acknowledged before the command started) to FILE, mode 0600: it holds
    /// password hashes and the session-signing keys. Restore it with `mailraft storage
    /// --restore-from FILE`, which makes a new cluster. With `--dir DIR --keep N` instead of FILE:
    /// writes `DIR/mailraft-<UTC time YYYYmmddTHHMMSSZ>.backup`, then deletes the oldest files
    /// named like that until N remain (other files in DIR are never touched).
    Backup {
        /// Where to write it; written to a temporary file next to it, checked, then renamed.
        #[arg(required_unless_present = "dir")]
        file: Option<PathBuf>,
        /// Replace FILE if it exists.
        #[arg(long, conflicts_with = "dir")]
        force: bool,
        /// Write a new time-stamped backup into DIR and keep the newest `--keep` of them.
        #[arg(long, conflicts_with = "file", requires = "keep")]
        dir: Option<PathBuf>,
        /// How many time-stamped backups to keep in `--dir`, counting the new one (at least 1).
        #[arg(long, requires = "dir", value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
    },
    /// Hand leadership to another voter (for maintenance of the current leader).
    TransferLeader {
        /// Node id of the new leader.
        id: u64,
    },
    /// List client addresses and logins blocked for failed logins (the leader's table), one per
    /// line: kind, key, failures, end of the block (RFC 3339, UTC).
    AuthBlocks {
        /// One JSON object per block instead.
        #[arg(long)]
        json: bool,
    },
    /// Lift a login block and forget the key's failures.
    AuthUnblock {
        /// `user@domain`, an IPv4 address, or an IPv6 address or /64 prefix.
        #[arg(required_unless_present = "all")]
        key: Option<String>,
        /// Lift every block and forget every failure.
        #[arg(long, conflicts_with = "key")]
        all: bool,
    },
}

/// `mailraft certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory of the CA and the certificates (created 0700; keys are written 0600).
    #[arg(long, default_value = "./certs")]
    pub dir: PathBuf,
    /// Replace an existing certificate whose names differ instead of refusing.
    #[arg(long)]
    pub force: bool,
    /// What to create.
    #[command(subcommand)]
    pub action: CertsAction,
}

/// What `mailraft certs` creates. Each command creates the CA first if the directory has none.
#[derive(Debug, Subcommand)]
pub enum CertsAction {
    /// The cluster CA (`ca.pem`, `ca-key.pem`).
    Ca,
    /// A storage node's certificate `node-<id>.pem` (server and client).
    Node {
        /// The node's id (`node.id`).
        id: u64,
        /// A DNS name or IP address in the URLs others use to reach it (its advertised addresses;
        /// 127.0.0.1 for loopback). Repeatable; at least one.
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
    },
    /// A front-end's client certificate `frontend-<name>.pem`.
    Frontend {
        /// A name for logs, e.g. the host name.
        name: String,
    },
    /// An operator's client certificate `operator-<name>.pem` (for `mailraft admin`).
    Operator {
        /// A name for logs; `admin` is what `mailraft admin --tls-dir` uses by default.
        #[arg(default_value = "admin")]
        name: String,
    },
}
