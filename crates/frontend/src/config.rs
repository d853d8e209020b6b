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
    /// Inactivity timer once authenticated and during IDLE (RFC 3501 §5.4: at least 30 minutes).
    pub idle_timeout: Duration,
    /// Inactivity timer before authentication, short so that idle unauthenticated sockets cannot
    /// pin connection slots.
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
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            storage_endpoints: vec!["127.0.0.1:7070".to_owned()],
            group_id: 1,
            max_connections: 10_000,
            max_line_bytes: 64 * 1024,
            max_literal_bytes: 50 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            preauth_timeout: Duration::from_secs(60),
            max_auth_failures: 3,
            allow_plaintext_auth: false,
            request_timeout: Duration::from_secs(30),
            storage_attempt_timeout: Duration::from_secs(5),
            watch_heartbeat: Duration::from_secs(1),
            idle_keepalive: Duration::from_secs(120),
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
