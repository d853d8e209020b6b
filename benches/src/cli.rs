//! Command-line options. Connection, user and run options are global so they can be given
//! before or after the workload name (`mailraft-bench --clients 50 mix --persistent`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::client::AuthMech;

/// imaptest-style load and consistency checking for any IMAP server.
#[derive(Debug, Parser)]
#[command(name = "mailraft-bench", version, about)]
pub struct Cli {
    /// Options shared by every workload.
    #[command(flatten)]
    pub common: Common,
    /// The workload (default: mix).
    #[command(subcommand)]
    pub workload: Option<Workload>,
}

/// Connection, users, duration, output.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Server host.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port (default 143, or 993 with --tls).
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Implicit TLS.
    #[arg(long, global = true)]
    pub tls: bool,
    /// PEM certificate(s) to trust for --tls (e.g. mailraft dev's data/tls/cert.pem).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate (self-signed test servers only).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Authentication: LOGIN or AUTHENTICATE PLAIN.
    #[arg(long, global = true, value_enum, default_value = "login")]
    pub auth: AuthMech,
    /// Login pattern; `%d` becomes the user number 1..=users.
    #[arg(long, global = true, default_value = "user%d@example.test")]
    pub user_pattern: String,
    /// Password of every user.
    #[arg(
        long,
        global = true,
        env = "MAILRAFT_BENCH_PASSWORD",
        default_value = "bench",
        hide_env_values = true
    )]
    pub password: String,
    /// Number of users.
    #[arg(long, global = true, default_value_t = 10)]
    pub users: usize,
    /// Concurrent sessions.
    #[arg(long, global = true, default_value_t = 10)]
    pub clients: usize,
    /// Measured seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub secs: u64,
    /// Seed for the corpus and the command choices.
    #[arg(long, global = true, default_value_t = 1)]
    pub seed: u64,
    /// Write the JSON report here.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Write an SVG of throughput over time and the latency distribution here.
    #[arg(long, global = true)]
    pub plot: Option<PathBuf>,
    /// Seconds to wait for any response before counting a timeout.
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout: u64,
    /// Generated corpus size (messages).
    #[arg(long, global = true, default_value_t = 200)]
    pub corpus: usize,
    /// Use the messages of this mbox instead of the generated corpus.
    #[arg(long, global = true)]
    pub mbox: Option<PathBuf>,
    /// No per-second lines or progress bar.
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// Workloads.
#[derive(Debug, Clone, Subcommand)]
pub enum Workload {
    /// imaptest's command mix (default).
    Mix(MixArgs),
    /// Ingest as fast as the server takes it, over IMAP APPEND or LMTP.
    Append(AppendArgs),
    /// N sessions in IDLE, M writers appending: time from append OK to EXISTS.
    Idle(IdleArgs),
    /// One big mailbox: SELECT, FETCH all flags, SEARCH, CONDSTORE/QRESYNC resync.
    Bigbox(BigboxArgs),
    /// Start Dovecot and `mailraft dev`, run the same workloads on both, print a table.
    Compare(CompareArgs),
    /// Write corpus messages as an mbox (to inspect or to load elsewhere).
    Corpus(CorpusArgs),
}

/// `mix` options.
#[derive(Debug, Clone, Default, Args)]
pub struct MixArgs {
    /// Keep sessions logged in (imaptest's logout=0).
    #[arg(long)]
    pub persistent: bool,
    /// Step probabilities, e.g. `list=50,append=100,logout=0`.
    #[arg(long, default_value = "")]
    pub mix: String,
    /// Keep mailboxes near this many messages.
    #[arg(long, default_value_t = 30)]
    pub msgs: u32,
}

/// `append` options.
#[derive(Debug, Clone, Args)]
pub struct AppendArgs {
    /// Delivery path.
    #[arg(long, value_enum, default_value = "imap")]
    pub via: Via,
    /// LMTP endpoint: host:port or a unix socket path.
    #[arg(long)]
    pub lmtp: Option<String>,
    /// Mailbox to APPEND to.
    #[arg(long, default_value = "INBOX")]
    pub mailbox: String,
}

/// How `append` delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// IMAP APPEND.
    Imap,
    /// LMTP (RFC 2033).
    Lmtp,
}

/// `idle` options.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Writer sessions (each appends to its own user's INBOX; idlers watch those users).
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Pause between a writer's appends, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Seconds to wait after the last append for notifications still in flight.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
}

/// `bigbox` options.
#[derive(Debug, Clone, Args)]
pub struct BigboxArgs {
    /// Messages the mailbox must hold (filled first if short).
    #[arg(long, default_value_t = 10_000)]
    pub messages: u32,
    /// Mailbox name.
    #[arg(long, default_value = "bigbox")]
    pub mailbox: String,
    /// Timed repetitions.
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
}

/// `compare` options.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The mailraft binary (default: $MAILRAFT_BIN, then $CARGO_TARGET_DIR/debug/mailraft).
    #[arg(long)]
    pub mailraft_bin: Option<PathBuf>,
    /// Workloads to run, comma separated: mix, mix-persistent, append, append-lmtp, idle.
    #[arg(long, default_value = "mix,mix-persistent,append,append-lmtp")]
    pub workloads: String,
    /// Messages loaded into every user's INBOX before the runs.
    #[arg(long, default_value_t = 30)]
    pub preload: usize,
    /// Dovecot's mail_fsync (always matches Mailraft's durability; optimized is Dovecot's default).
    #[arg(long, default_value = "always")]
    pub dovecot_fsync: String,
    /// Skip Dovecot (measure Mailraft only).
    #[arg(long)]
    pub no_dovecot: bool,
    /// Storage nodes of the "Mailraft N nodes" column (`mailraft dev --nodes N`: N storage
    /// processes in one Raft group, the front-end in the parent); 0 skips the column.
    #[arg(long, default_value_t = 3, value_parser = parse_cluster_nodes)]
    pub cluster_nodes: u32,
    /// Keep the temporary directory (configs, logs) for inspection.
    #[arg(long)]
    pub keep: bool,
}

/// `corpus` options.
#[derive(Debug, Clone, Args)]
pub struct CorpusArgs {
    /// Output mbox file.
    #[arg(long)]
    pub out: PathBuf,
}

/// `--cluster-nodes`: 0 (no cluster column) or 2..=9 (`mailraft dev --nodes` allows up to 9; 1
/// would repeat the single-node column).
fn parse_cluster_nodes(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n == 0 || (2..=9).contains(&n) => Ok(n),
        Ok(_) => Err("0 (skip the cluster column) or 2 to 9 nodes".into()),
        Err(e) => Err(e.to_string()),
    }
}
