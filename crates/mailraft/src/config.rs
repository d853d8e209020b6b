//! Typed configuration of the `mailraft` binary.
//!
//! Layers, lowest to highest priority:
//! 1. [`Config::default()`], the values documented in `mailraft.example.toml`;
//! 2. an optional TOML file (`--config`);
//! 3. environment variables `MAILRAFT_<SECTION>__<KEY>`, e.g. `MAILRAFT_IMAP__ADDR=0.0.0.0:143`
//!    (double underscore between section and key, because keys contain single underscores).
//!    `MAILRAFT_STORAGE__ENDPOINTS` takes a comma-separated list. Variables without a `__`
//!    (such as a `MAILRAFT_CONFIG` read by the CLI) are not configuration keys and are ignored.
//!
//! Every section denies unknown keys, so a typo fails start-up instead of silently falling back
//! to a default. Optional addresses and paths accept `""` to mean unset, which is how a file or
//! an environment variable turns off a default listener. [`Config::load`] validates the merged
//! result; [`Config::validate`] states the cross-field rules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mailraft_telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};

/// Prefix of environment overrides.
const ENV_PREFIX: &str = "MAILRAFT_";
/// Separator between a section and its key in environment variable names.
const ENV_SEPARATOR: &str = "__";
/// Keys whose environment value is a comma-separated list.
const ENV_LIST_KEYS: &[&str] = &["storage.endpoints", "node.peer_addrs"];

/// Why configuration could not be loaded or is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named on the command line could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Layers could not be parsed or merged, or a key is unknown or mistyped.
    #[error("invalid configuration: {0}")]
    Parse(#[from] config::ConfigError),
    /// Values parse but break a rule (see [`Config::validate`]).
    #[error("invalid configuration: {field}: {reason}")]
    Invalid {
        /// Dotted key of the offending setting, as written in the file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The whole configuration of one `mailraft` process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Identity and storage of this node.
    pub node: NodeConfig,
    /// The IMAP front-end.
    pub imap: ImapConfig,
    /// LMTP delivery on the front-end (RFC 2033), where the MTA hands over mail.
    pub lmtp: LmtpSection,
    /// How a front-end reaches the storage cluster.
    pub storage: StorageClientConfig,
    /// Raft timing and log compaction.
    pub raft: RaftConfig,
    /// Logs, traces and metrics.
    pub telemetry: TelemetryConfig,
    /// Settings used only by `mailraft dev`.
    pub dev: DevConfig,
    /// Resource bounds of a storage node: reads, read streams, password hashing and guessing.
    pub limits: LimitsConfig,
    /// Session tokens the storage nodes issue after a login.
    pub auth: AuthConfig,
    /// Mutual TLS of all gRPC traffic (storage listeners, node to node, front-end to storage).
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node: NodeConfig::default(),
            imap: ImapConfig::default(),
            lmtp: LmtpSection::default(),
            storage: StorageClientConfig::default(),
            raft: RaftConfig::default(),
            // The telemetry crate leaves the metrics listener off; a server should expose it.
            telemetry: TelemetryConfig {
                metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
                ..TelemetryConfig::default()
            },
            dev: DevConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Identity and storage of this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft node id; unique within the cluster and never reused, since Raft identifies
    /// members by it.
    pub id: u64,
    /// Directory of the RocksDB data and Raft log.
    pub data_dir: PathBuf,
    /// The peer listener: Raft between nodes, and the Storage API (with Watch) for front-ends.
    pub grpc_addr: SocketAddr,
    /// Address other nodes use to reach this one (`host:port`), when it differs from
    /// `grpc_addr` (behind NAT, in Kubernetes). Unset means `grpc_addr`.
    #[serde(deserialize_with = "empty_as_none")]
    pub advertise_addr: Option<String>,
    /// The admin listener: the Admin API for operators (`mailraft admin`), kept apart so it can
    /// be bound to an operator network.
    pub admin_addr: SocketAddr,
    /// Address operators use to reach the admin listener, when it differs from `admin_addr`;
    /// followers hand it out when they redirect an admin call to the leader.
    #[serde(deserialize_with = "empty_as_none")]
    pub admin_advertise_addr: Option<String>,
    /// Raft group this node serves.
    pub group_id: u64,
    /// `"ID=URL"` entries: reach peer ID at URL for Raft traffic instead of the address it
    /// advertised (a second network between storage nodes, or a proxy in tests).
    pub peer_addrs: Vec<String>,
}

impl NodeConfig {
    /// `peer_addrs` as a map; fails on an entry that is not `ID=URL`.
    pub fn peer_addr_map(&self) -> Result<HashMap<u64, String>, ConfigError> {
        let mut map = HashMap::new();
        for entry in &self.peer_addrs {
            let parsed = entry.split_once('=').and_then(|(id, url)| {
                let url = url.trim();
                let ok = url.starts_with("http://") || url.starts_with("https://");
                Some((id.trim().parse::<u64>().ok().filter(|id| *id != 0)?, url.to_owned())).filter(|_| ok)
            });
            let (id, url) = parsed.ok_or_else(|| ConfigError::Invalid {
                field: "node.peer_addrs",
                reason: format!("{entry:?} is not ID=http://HOST:PORT"),
            })?;
            map.insert(id, url);
        }
        Ok(map)
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: 1,
            data_dir: PathBuf::from("./data"),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            advertise_addr: None,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 50061)),
            admin_advertise_addr: None,
            group_id: 1,
            peer_addrs: Vec::new(),
        }
    }
}

/// The IMAP front-end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Cleartext IMAP listener (STARTTLS offered when a certificate is configured); `None`
    /// disables it.
    #[serde(deserialize_with = "empty_as_none")]
    pub addr: Option<SocketAddr>,
    /// Implicit-TLS IMAP listener (RFC 8314 §3.3); `None` disables it. Without `tls_cert` and
    /// `tls_key`, `mailraft dev` serves it with a generated self-signed certificate.
    #[serde(deserialize_with = "empty_as_none")]
    pub tls_addr: Option<SocketAddr>,
    /// PEM certificate chain for TLS and STARTTLS.
    #[serde(deserialize_with = "empty_as_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`.
    #[serde(deserialize_with = "empty_as_none")]
    pub tls_key: Option<PathBuf>,
    /// Allow LOGIN/AUTHENTICATE PLAIN before TLS. RFC 9051 §11.1 requires refusing cleartext
    /// passwords by default (LOGINDISABLED); enable only for local testing.
    pub allow_plaintext_auth: bool,
    /// Concurrent connections per front-end; beyond it new connections are refused with BYE.
    pub max_connections: usize,
    /// Longest command line accepted before a literal; bounds per-connection memory.
    pub max_line_bytes: usize,
    /// Largest literal (e.g. an APPENDed message); larger ones are refused before upload.
    pub max_literal_bytes: u64,
    /// Idle time before an authenticated session is logged out. RFC 9051 §5.4: the
    /// autologout timer must be at least 30 minutes.
    pub idle_timeout_secs: u64,
    /// Time allowed to authenticate after connecting (TLS handshake included); one fixed
    /// deadline that client activity does not extend, so slow unauthenticated connections cannot
    /// exhaust `max_connections`.
    pub preauth_timeout_secs: u64,
    /// Failed authentication attempts before the connection is closed, to slow password
    /// guessing.
    pub max_auth_failures: u32,
    /// Largest literal accepted before login; larger ones are refused unread. Non-synchronizing
    /// literals are limited to 4096 bytes before login in any case (LITERAL-, RFC 7888 §5).
    pub max_preauth_literal_bytes: u32,
    /// Unauthenticated connections per source address (IPv4 address, IPv6 /64; an IPv6 /48 may
    /// hold 4 times as many); more are refused at accept, before any TLS handshake.
    pub max_preauth_per_ip: usize,
    /// Seconds a write to a client may make no progress (each 64 KiB slice must be taken within
    /// it); a client that stops reading is disconnected, a slow one that keeps reading is not.
    pub write_timeout_secs: u64,
    /// Most messages one storage call of a STORE or EXPUNGE covers; larger commands are split so
    /// that no single replicated apply gets expensive for the other tenants.
    pub write_chunk_messages: usize,
}

impl Default for ImapConfig {
    fn default() -> Self {
        Self {
            addr: Some(SocketAddr::from(([127, 0, 0, 1], 1143))),
            tls_addr: Some(SocketAddr::from(([127, 0, 0, 1], 1993))),
            tls_cert: None,
            tls_key: None,
            allow_plaintext_auth: false,
            max_connections: 10_000,
            max_line_bytes: 64 * 1024,
            max_literal_bytes: 64 * 1024 * 1024,
            idle_timeout_secs: 30 * 60,
            preauth_timeout_secs: 60,
            max_auth_failures: 3,
            max_preauth_literal_bytes: 8 * 1024,
            max_preauth_per_ip: 20,
            write_timeout_secs: 60,
            write_chunk_messages: 5_000,
        }
    }
}

/// LMTP delivery (RFC 2033). It has no authentication: keep `addr` on loopback or a private
/// network, or use `socket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmtpSection {
    /// TCP listener; unset (the default for `mailraft frontend`) means none. `mailraft dev`
    /// sets it from `--lmtp-addr`.
    #[serde(deserialize_with = "empty_as_none")]
    pub addr: Option<SocketAddr>,
    /// Unix socket path (created 0660, a stale socket file is replaced); unset = none.
    #[serde(deserialize_with = "empty_as_none")]
    pub socket: Option<PathBuf>,
    /// Name in the greeting and the LHLO reply.
    pub hostname: String,
    /// Largest message, advertised as SIZE (at most 64 MiB: one storage request).
    pub max_message_bytes: u64,
    /// Recipients per transaction (at most 1000); more get 452 4.5.3.
    pub max_recipients: usize,
    /// Longest command line (at least 512, RFC 5321 §4.5.3.1.4).
    pub max_line_bytes: usize,
    /// Refused commands before the connection is closed.
    pub max_errors: u32,
    /// Concurrent LMTP connections (TCP and socket together).
    pub max_connections: usize,
    /// Seconds to wait for the client's next bytes (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub idle_timeout_secs: u64,
}

impl Default for LmtpSection {
    fn default() -> Self {
        let d = mailraft_frontend::lmtp::LmtpConfig::default();
        Self {
            addr: None,
            socket: None,
            hostname: d.hostname,
            max_message_bytes: d.max_message_bytes,
            max_recipients: d.max_recipients,
            max_line_bytes: d.max_line_bytes,
            max_errors: d.max_errors,
            max_connections: d.max_connections,
            idle_timeout_secs: d.idle_timeout.as_secs(),
        }
    }
}

impl LmtpSection {
    /// The front-end's view of these settings.
    pub fn lmtp_config(&self) -> mailraft_frontend::lmtp::LmtpConfig {
        mailraft_frontend::lmtp::LmtpConfig {
            hostname: self.hostname.clone(),
            max_line_bytes: self.max_line_bytes,
            max_message_bytes: self.max_message_bytes,
            max_recipients: self.max_recipients,
            max_errors: self.max_errors,
            max_connections: self.max_connections,
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            ..mailraft_frontend::lmtp::LmtpConfig::default()
        }
    }
}

/// How a front-end reaches the storage cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageClientConfig {
    /// gRPC URLs of storage nodes to start from; the client discovers the leader from them.
    pub endpoints: Vec<String>,
    /// Deadline of one storage request, retries included. Writes carry a request id the storage
    /// tier deduplicates, so a write retried after a lost reply is applied once.
    pub request_timeout_ms: u64,
    /// Bound on one attempt of a request (at most a third of `request_timeout_ms`); doubled after
    /// an attempt that timed out, so a dead node costs little and a slow call still completes.
    pub attempt_timeout_ms: u64,
    /// How often the storage node sends a heartbeat on the front-end's Watch stream; after three
    /// silent intervals the front-end reconnects elsewhere and every IDLE session catches up.
    pub watch_heartbeat_ms: u64,
}

impl Default for StorageClientConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:50051".to_owned()],
            request_timeout_ms: 10_000,
            attempt_timeout_ms: 5_000,
            watch_heartbeat_ms: 1_000,
        }
    }
}

/// Raft timing and log compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat interval; must be well below `election_min_ms` so a healthy leader is
    /// never voted out.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_min_ms: u64,
    /// Upper bound of the randomized election timeout; the spread avoids split votes.
    pub election_max_ms: u64,
    /// Applied entries since the last snapshot that trigger a new one (and log purge).
    pub snapshot_logs_since_last: u64,
    /// Bytes of log entries since the last snapshot that trigger a new one (APPEND entries carry
    /// whole messages, so the entry count alone does not bound the log's size).
    pub snapshot_log_bytes: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 250,
            election_min_ms: 1_500,
            election_max_ms: 3_000,
            snapshot_logs_since_last: 5_000,
            snapshot_log_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Session tokens (storage nodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of a session token. Front-ends renew a session's token at half of it, so
    /// sessions of any length keep working; a shorter lifetime makes a leaked token useless
    /// sooner. Also the default grace period of `mailraft admin rotate-session-key`.
    pub token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { token_ttl_secs: 60 * 60 }
    }
}

/// Mutual TLS for gRPC (see `mailraft certs`). IMAP's own TLS is `imap.tls_cert` / `imap.tls_key`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate of the cluster CA: the only CA whose certificates this process accepts.
    #[serde(deserialize_with = "empty_as_none")]
    pub ca: Option<PathBuf>,
    /// PEM certificate of this process (a storage node: `spiffe://mailraft/node/<node.id>`, with
    /// the hosts of its advertised URLs; a front-end: `spiffe://mailraft/frontend/<name>`).
    #[serde(deserialize_with = "empty_as_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    #[serde(deserialize_with = "empty_as_none")]
    pub key: Option<PathBuf>,
    /// Serve and call gRPC without TLS. Nobody is then authenticated: only allowed when every
    /// gRPC listener (storage) or storage endpoint (front-end) is a loopback address.
    pub insecure_plaintext: bool,
}

impl TlsConfig {
    /// Whether certificate files are configured.
    pub fn has_material(&self) -> bool {
        self.ca.is_some()
    }
}

/// Resource bounds of a storage node (see `mailraft_server::limits` and `auth_budget`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Blocking reads (queries, FETCH chunks, SEARCH) running at once; the rest wait. Keeps
    /// tokio's blocking pool free for everything else.
    pub max_concurrent_reads: usize,
    /// Longest life of a FETCH stream or SEARCH on a storage node; then it ends with
    /// DEADLINE_EXCEEDED, so no client pins a RocksDB snapshot longer.
    pub read_stream_deadline_secs: u64,
    /// Longest a read waits for a read slot (or for its account's place) before it is answered
    /// `NO [UNAVAILABLE]`: a node whose reads are all taken says so instead of queueing forever.
    pub read_wait_ms: u64,
    /// argon2 computations at once (each takes 19 MiB); 0 means twice the CPU cores.
    pub max_concurrent_password_hashes: usize,
    /// Longest wait for a hashing slot; then the login is answered `NO [UNAVAILABLE]`.
    pub password_hash_wait_ms: u64,
    /// Failed logins of one source address or login before its attempts are spaced by a delay.
    pub auth_delay_after_failures: u32,
    /// First delay between attempts of a failing source or login; doubles per failure.
    pub auth_delay_ms: u64,
    /// Longest delay, and longest an attempt may queue behind earlier ones of its key.
    pub auth_max_delay_ms: u64,
    /// Failed logins from one source address (IPv4, IPv6 /64) before it is blocked.
    pub auth_source_block_after: u32,
    /// Failed logins on one login, from any source, before it is blocked.
    pub auth_login_block_after: u32,
    /// How long a block lasts.
    pub auth_block_secs: u64,
    /// Failures are forgotten this long after a key's last failure.
    pub auth_failure_window_secs: u64,
    /// Most sources and logins whose failures are remembered at once (memory bound).
    pub auth_max_tracked: usize,
    /// Bytes of message data FETCH streams may hold on a storage node at once, read but not yet
    /// taken by the transport; one account may hold a quarter. Stalled readers wait for it.
    pub fetch_buffer_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let node = mailraft_server::limits::Limits::default();
        let auth = &node.auth;
        Self {
            max_concurrent_reads: node.max_concurrent_reads,
            read_stream_deadline_secs: node.read_stream_deadline.as_secs(),
            read_wait_ms: node.read_wait.as_millis() as u64,
            max_concurrent_password_hashes: node.max_concurrent_password_hashes,
            password_hash_wait_ms: node.password_hash_wait.as_millis() as u64,
            auth_delay_after_failures: auth.delay_after,
            auth_delay_ms: auth.delay.as_millis() as u64,
            auth_max_delay_ms: auth.max_delay.as_millis() as u64,
            auth_source_block_after: auth.source_block_after,
            auth_login_block_after: auth.login_block_after,
            auth_block_secs: auth.block_for.as_secs(),
            auth_failure_window_secs: auth.window.as_secs(),
            auth_max_tracked: auth.max_tracked,
            fetch_buffer_bytes: mailraft_server::limits::DEFAULT_FETCH_BUFFER_BYTES,
        }
    }
}

impl LimitsConfig {
    /// The storage node's view of these settings.
    pub fn node_limits(&self) -> mailraft_server::limits::Limits {
        use std::time::Duration;
        mailraft_server::limits::Limits {
            max_concurrent_reads: self.max_concurrent_reads,
            read_stream_deadline: Duration::from_secs(self.read_stream_deadline_secs),
            read_wait: Duration::from_millis(self.read_wait_ms),
            max_concurrent_password_hashes: self.max_concurrent_password_hashes,
            password_hash_wait: Duration::from_millis(self.password_hash_wait_ms),
            auth: mailraft_server::auth_budget::AuthBudgetConfig {
                delay_after: self.auth_delay_after_failures,
                delay: Duration::from_millis(self.auth_delay_ms),
                max_delay: Duration::from_millis(self.auth_max_delay_ms),
                source_block_after: self.auth_source_block_after,
                login_block_after: self.auth_login_block_after,
                block_for: Duration::from_secs(self.auth_block_secs),
                window: Duration::from_secs(self.auth_failure_window_secs),
                max_tracked: self.auth_max_tracked,
            },
        }
    }
}

/// Settings used only by `mailraft dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevConfig {
    /// Tenant (mail domain) created at start.
    pub demo_tenant: String,
    /// User created in the demo tenant.
    pub demo_user: String,
    /// Password of the demo user. Never logged.
    pub demo_password: String,
}

impl Default for DevConfig {
    fn default() -> Self {
        Self {
            demo_tenant: "example.test".to_owned(),
            demo_user: "demo".to_owned(),
            demo_password: "demo".to_owned(),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` if given (it must exist), then `MAILRAFT_*` variables of the
    /// process environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// [`Config::load`] with the environment passed in, so tests need not mutate the process
    /// environment (tests run in parallel threads).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Config::default())?);
        if let Some(path) = file {
            // Read it ourselves: the `config` crate, given a missing path, silently tries other
            // extensions; the exact file named on the command line is wanted.
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let EnvOverrides { scalars, lists } = env_overrides(env);
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX.trim_end_matches('_'))
                .prefix_separator("_")
                .separator(ENV_SEPARATOR)
                .source(Some(scalars)),
        );
        for (key, items) in lists {
            builder = builder.set_override(key, items)?;
        }
        let cfg: Config = builder.build()?.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks rules a single field's type cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                field,
                reason: reason.into(),
            }
        }
        let (node, imap, raft) = (&self.node, &self.imap, &self.raft);

        // openraft reserves no id, but 0 is what an unset or defaulted id looks like.
        if node.id == 0 {
            return Err(invalid("node.id", "must be > 0"));
        }
        if node.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", "must not be empty"));
        }
        if node.group_id == 0 {
            return Err(invalid("node.group_id", "must be > 0"));
        }
        node.peer_addr_map()?;
        if self.auth.token_ttl_secs == 0 {
            return Err(invalid("auth.token_ttl_secs", "must be > 0"));
        }
        // Port 0 asks the OS for a free port, so two listeners may both say it.
        if node.grpc_addr.port() != 0 && node.grpc_addr == node.admin_addr {
            return Err(invalid("node.admin_addr", "must differ from node.grpc_addr"));
        }
        let tls = &self.tls;
        if tls.ca.is_some() != tls.cert.is_some() || tls.cert.is_some() != tls.key.is_some() {
            return Err(invalid("tls.ca", "tls.ca, tls.cert and tls.key must be set together"));
        }
        if tls.has_material() && tls.insecure_plaintext {
            return Err(invalid("tls.insecure_plaintext", "cannot be combined with tls.ca/tls.cert/tls.key"));
        }

        if imap.tls_cert.is_some() != imap.tls_key.is_some() {
            return Err(invalid(
                "imap.tls_cert",
                "tls_cert and tls_key must be set together",
            ));
        }
        // Port 0 asks the OS for a free port, so two listeners may both say it.
        if imap.addr.is_some_and(|a| a.port() != 0) && imap.addr == imap.tls_addr {
            return Err(invalid("imap.tls_addr", "must differ from imap.addr"));
        }
        let limits: [(&'static str, u64); 8] = [
            ("imap.max_connections", imap.max_connections as u64),
            ("imap.max_line_bytes", imap.max_line_bytes as u64),
            ("imap.max_literal_bytes", imap.max_literal_bytes),
            ("imap.preauth_timeout_secs", imap.preauth_timeout_secs),
            ("imap.max_auth_failures", u64::from(imap.max_auth_failures)),
            ("imap.max_preauth_literal_bytes", u64::from(imap.max_preauth_literal_bytes)),
            ("imap.max_preauth_per_ip", imap.max_preauth_per_ip as u64),
            ("imap.write_timeout_secs", imap.write_timeout_secs),
        ];
        if let Some((field, _)) = limits.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(field, "must be > 0"));
        }
        if imap.write_chunk_messages == 0 {
            return Err(invalid("imap.write_chunk_messages", "must be > 0"));
        }
        // RFC 9051 §5.4: an autologout timer must be at least 30 minutes.
        if imap.idle_timeout_secs < 30 * 60 {
            return Err(invalid(
                "imap.idle_timeout_secs",
                "must be >= 1800 (RFC 9051 §5.4)",
            ));
        }

        if let Err(e) = self.lmtp.lmtp_config().validate() {
            return Err(invalid("lmtp", e.to_string()));
        }

        if self.storage.endpoints.is_empty() {
            return Err(invalid("storage.endpoints", "needs at least one endpoint"));
        }
        if let Some(bad) = self
            .storage
            .endpoints
            .iter()
            .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(invalid(
                "storage.endpoints",
                format!("{bad:?} is not an http:// or https:// URL"),
            ));
        }
        if self.storage.attempt_timeout_ms == 0 {
            return Err(invalid("storage.attempt_timeout_ms", "must be > 0"));
        }
        if !(100..=30_000).contains(&self.storage.watch_heartbeat_ms) {
            return Err(invalid("storage.watch_heartbeat_ms", "must be between 100 and 30000"));
        }
        if self.storage.request_timeout_ms == 0 {
            return Err(invalid("storage.request_timeout_ms", "must be > 0"));
        }

        let lim = &self.limits;
        let positive: [(&'static str, u64); 11] = [
            ("limits.max_concurrent_reads", lim.max_concurrent_reads as u64),
            ("limits.read_wait_ms", lim.read_wait_ms),
            ("limits.fetch_buffer_bytes", lim.fetch_buffer_bytes as u64),
            ("limits.read_stream_deadline_secs", lim.read_stream_deadline_secs),
            ("limits.auth_delay_ms", lim.auth_delay_ms),
            ("limits.auth_source_block_after", u64::from(lim.auth_source_block_after)),
            ("limits.auth_login_block_after", u64::from(lim.auth_login_block_after)),
            ("limits.auth_block_secs", lim.auth_block_secs),
            ("limits.auth_failure_window_secs", lim.auth_failure_window_secs),
            ("limits.auth_max_tracked", lim.auth_max_tracked as u64),
            ("limits.password_hash_wait_ms", lim.password_hash_wait_ms),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(field, "must be > 0"));
        }
        if lim.auth_max_delay_ms < lim.auth_delay_ms {
            return Err(invalid("limits.auth_max_delay_ms", "must be >= limits.auth_delay_ms"));
        }

        if raft.heartbeat_ms == 0 {
            return Err(invalid("raft.heartbeat_ms", "must be > 0"));
        }
        if raft.heartbeat_ms >= raft.election_min_ms {
            return Err(invalid(
                "raft.heartbeat_ms",
                "must be < raft.election_min_ms",
            ));
        }
        if raft.election_min_ms >= raft.election_max_ms {
            return Err(invalid(
                "raft.election_min_ms",
                "must be < raft.election_max_ms",
            ));
        }
        if raft.snapshot_logs_since_last == 0 {
            return Err(invalid("raft.snapshot_logs_since_last", "must be > 0"));
        }
        if raft.snapshot_log_bytes < 1024 * 1024 {
            return Err(invalid("raft.snapshot_log_bytes", "must be at least 1 MiB"));
        }

        if self.telemetry.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        if self.dev.demo_tenant.is_empty() || self.dev.demo_user.is_empty() {
            return Err(invalid(
                "dev.demo_user",
                "demo_tenant and demo_user must not be empty",
            ));
        }
        Ok(())
    }
}

/// `MAILRAFT_*` variables sorted by how they are applied.
#[derive(Debug, Default)]
struct EnvOverrides {
    /// Variable name to raw value, for the `config` crate's environment source. Values stay
    /// strings (no `try_parsing`), so a password like `0123` keeps its leading zero.
    scalars: HashMap<String, String>,
    /// Dotted key to items, for keys listed in [`ENV_LIST_KEYS`].
    lists: Vec<(String, Vec<String>)>,
}

/// Sorts `MAILRAFT_*` variables into [`EnvOverrides`]. Variables without a section separator
/// are not configuration keys and are dropped.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> EnvOverrides {
    let mut scalars = HashMap::new();
    let mut lists = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains(ENV_SEPARATOR) {
            continue;
        }
        let key = rest.to_lowercase().replace(ENV_SEPARATOR, ".");
        if ENV_LIST_KEYS.contains(&key.as_str()) {
            let items = value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect();
            lists.push((key, items));
        } else {
            scalars.insert(name, value);
        }
    }
    EnvOverrides { scalars, lists }
}

use mailraft_telemetry::empty_as_none;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(
            Config::default().telemetry.metrics_addr,
            Some("127.0.0.1:9100".parse().unwrap())
        );
    }

    #[test]
    fn env_overrides_keep_only_sectioned_keys_and_split_lists() {
        let EnvOverrides { scalars, lists } = env_overrides([
            (
                "MAILRAFT_CONFIG".to_owned(),
                "/etc/mailraft.toml".to_owned(),
            ),
            ("PATH".to_owned(), "/bin".to_owned()),
            ("MAILRAFT_IMAP__ADDR".to_owned(), "0.0.0.0:143".to_owned()),
            (
                "MAILRAFT_STORAGE__ENDPOINTS".to_owned(),
                "http://a:1, http://b:2,".to_owned(),
            ),
        ]);
        assert_eq!(scalars.len(), 1);
        assert_eq!(scalars["MAILRAFT_IMAP__ADDR"], "0.0.0.0:143");
        assert_eq!(
            lists,
            vec![(
                "storage.endpoints".to_owned(),
                vec!["http://a:1".to_owned(), "http://b:2".to_owned()]
            )]
        );
    }
}
