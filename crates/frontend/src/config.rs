//! Front-end configuration: where the storage tier is and how much a client may cost us.
//!
//! Every limit here protects the process from one misbehaving client; the defaults follow the
//! RFCs where they say something (RFC 3501 §5.4 / RFC 9051 §5.4: the autologout timer is at least
//! 30 minutes) and common server practice where they do not.

use std::time::Duration;

/// Why a [`FrontendConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No storage node to talk to.
    #[error("storage_endpoints is empty")]
    NoEndpoints,
    /// A limit that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// RFC 3501 §5.4: the inactivity autologout timer must be at least 30 minutes.
    #[error("idle_timeout must be at least 30 minutes (RFC 3501 §5.4), got {0:?}")]
    IdleTimeoutTooShort(Duration),
    /// A line must hold at least a tag, a command name and a few arguments.
    #[error("max_line_bytes must be at least 1024, got {0}")]
    LineTooSmall(usize),
    /// More sessions than the shared storage connection can carry all stalled at once.
    #[error("max_connections must be at most {max} (the storage connection's flow-control budget), got {got}")]
    TooManyConnections {
        /// The configured value.
        got: usize,
        /// `storage::route::MAX_STALLED_STREAMS`.
        max: usize,
    },
}

/// Settings of one IMAP front-end process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendConfig {
    /// gRPC addresses of storage nodes (`host:port` or `http://host:port`). Any node will do: the
    /// client learns the Raft leader from `NOT_LEADER` hints and caches it.
    pub storage_endpoints: Vec<String>,
    /// Raft group that owns the tenants this front-end serves (one group for now).
    pub group_id: u64,
    /// Concurrent client connections; beyond it a new client gets `* BYE` and is closed, so an
    /// overload degrades into refused connections instead of slow ones.
    pub max_connections: usize,
    /// Longest command line (without literals) we buffer. Longer lines are discarded up to their
    /// end and answered with `BAD`, so memory per connection stays bounded.
    pub max_line_bytes: usize,
    /// Largest literal (e.g. an APPENDed message) we accept: larger synchronizing literals get
    /// `NO [TOOBIG]` before the client sends them (RFC 7888 §4, RFC 4469 §4.2).
    pub max_literal_bytes: u32,
    /// Largest synchronizing literal before authentication; larger ones get `NO [TOOBIG]`
    /// without a continuation. Before authentication the server advertises LITERAL- (RFC 7888
    /// §5), so a non-synchronizing literal over 4096 bytes gets `BAD [TOOBIG]` and the
    /// connection is closed without reading it. A client that never logs in therefore cannot
    /// make us buffer more than `max_line_bytes + 2 * max(max_preauth_literal_bytes, 4096)`.
    pub max_preauth_literal_bytes: u32,
    /// Connections per source address (IPv4 address, IPv6 /64) that have not authenticated yet;
    /// an IPv6 /48 may hold 4 times as many (`preauth::SITE_FACTOR`). Beyond it a new connection
    /// is refused at accept, before any TLS handshake. The count drops when a connection logs in
    /// or closes.
    pub max_preauth_per_ip: usize,
    /// Most messages one storage call of a STORE or EXPUNGE covers. Larger ones are split into
    /// calls of at most this many messages (RFC 3501 makes neither atomic), so one command never
    /// makes a single replicated apply, which every tenant of the Raft group waits for, costly.
    pub write_chunk_messages: usize,
    /// Longest a write may make no progress: output is written in 64 KiB slices, each of which
    /// the client must take within this time. A client that stops reading (e.g. after
    /// `FETCH 1:* BODY[]`) is disconnected when it passes, which also cancels the storage stream
    /// feeding it; a slow client that keeps reading is never cut off.
    pub write_timeout: Duration,
    /// Inactivity timer once authenticated and during IDLE (RFC 3501 §5.4: at least 30 minutes).
    pub idle_timeout: Duration,
    /// Time from accept to a successful login, the TLS handshake included. A fixed deadline, not
    /// an inactivity timer: client activity does not extend it, so slow unauthenticated sockets
    /// cannot pin connection slots. Before login the connection is also closed after
    /// `connection::MAX_PREAUTH_REFUSALS` (10) refused commands.
    pub preauth_timeout: Duration,
    /// Failed LOGIN/AUTHENTICATE attempts per connection before `BYE`, to slow password guessing.
    pub max_auth_failures: u32,
    /// Whether LOGIN/AUTHENTICATE PLAIN work without TLS. When false, cleartext connections
    /// advertise `LOGINDISABLED` (RFC 3501 §6.2.3, §7.2.1) and must use STARTTLS first.
    pub allow_plaintext_auth: bool,
    /// Deadline for one storage call including retries; a call past it fails with
    /// `NO [UNAVAILABLE]` rather than hanging the session.
    pub request_timeout: Duration,
    /// Upper bound on one attempt of a storage call (it is also at most a third of
    /// `request_timeout`). An attempt that takes longer is abandoned and retried at another node
    /// with twice the time: a vanished leader then costs one attempt, not the whole deadline.
    pub storage_attempt_timeout: Duration,
    /// How often the storage node serving the watch stream confirms it still leads. After three
    /// intervals without a message the stream is dropped and reopened at another node.
    pub watch_heartbeat: Duration,
    /// Interval of `* OK still here` during IDLE so NATs and proxies keep the socket open.
    pub idle_keepalive: Duration,
    /// Mutual TLS to the storage nodes (cluster CA, this front-end's certificate and key);
    /// `None` talks plaintext, for loopback development only.
    pub storage_tls: Option<crate::storage::route::StorageTls>,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            storage_endpoints: vec!["127.0.0.1:7070".to_owned()],
            group_id: 1,
            max_connections: 10_000,
            max_line_bytes: 64 * 1024,
            max_literal_bytes: 50 * 1024 * 1024,
            max_preauth_literal_bytes: 8 * 1024,
            max_preauth_per_ip: 20,
            write_chunk_messages: 5_000,
            write_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30 * 60),
            preauth_timeout: Duration::from_secs(60),
            max_auth_failures: 3,
            allow_plaintext_auth: false,
            request_timeout: Duration::from_secs(30),
            storage_attempt_timeout: Duration::from_secs(5),
            watch_heartbeat: Duration::from_secs(1),
            idle_keepalive: Duration::from_secs(120),
            storage_tls: None,
        }
    }
}

impl FrontendConfig {
    /// Checks the invariants the server relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.storage_endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        for (name, value) in [
            ("max_connections", self.max_connections as u64),
            ("max_literal_bytes", u64::from(self.max_literal_bytes)),
            ("max_preauth_literal_bytes", u64::from(self.max_preauth_literal_bytes)),
            ("max_preauth_per_ip", self.max_preauth_per_ip as u64),
            ("write_chunk_messages", self.write_chunk_messages as u64),
            ("write_timeout", self.write_timeout.as_millis() as u64),
            ("max_auth_failures", u64::from(self.max_auth_failures)),
            ("preauth_timeout", self.preauth_timeout.as_millis() as u64),
            ("request_timeout", self.request_timeout.as_millis() as u64),
            ("storage_attempt_timeout", self.storage_attempt_timeout.as_millis() as u64),
            ("watch_heartbeat", self.watch_heartbeat.as_millis() as u64),
            ("idle_keepalive", self.idle_keepalive.as_millis() as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let max = crate::storage::route::MAX_STALLED_STREAMS;
        if self.max_connections > max {
            return Err(ConfigError::TooManyConnections { got: self.max_connections, max });
        }
        if self.max_line_bytes < 1024 {
            return Err(ConfigError::LineTooSmall(self.max_line_bytes));
        }
        if self.idle_timeout < Duration::from_secs(30 * 60) {
            return Err(ConfigError::IdleTimeoutTooShort(self.idle_timeout));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(FrontendConfig::default().validate(), Ok(()));
    }

    #[test]
    fn connections_are_bounded_by_the_storage_flow_control_budget() {
        let max = crate::storage::route::MAX_STALLED_STREAMS;
        let at = FrontendConfig { max_connections: max, ..FrontendConfig::default() };
        assert_eq!(at.validate(), Ok(()));
        let over = FrontendConfig { max_connections: max + 1, ..FrontendConfig::default() };
        assert_eq!(over.validate(), Err(ConfigError::TooManyConnections { got: max + 1, max }));
    }

    #[test]
    fn short_idle_timeout_is_rejected() {
        let config = FrontendConfig { idle_timeout: Duration::from_secs(60), ..Default::default() };
        assert!(matches!(config.validate(), Err(ConfigError::IdleTimeoutTooShort(_))));
    }

    #[test]
    fn empty_endpoints_are_rejected() {
        let config = FrontendConfig { storage_endpoints: vec![], ..Default::default() };
        assert_eq!(config.validate(), Err(ConfigError::NoEndpoints));
    }
}
