//! Whether a process may talk gRPC the way it is configured: with TLS material (`[tls]`), or in
//! plaintext only when asked for and only on loopback, where nobody else can listen or connect.
//! Plaintext elsewhere would let anyone on the network call Raft and Admin on a storage node, and
//! would send passwords and session tokens across the network readable.

use crate::config::{Config, ConfigError};

/// The end of every refusal of plaintext beyond loopback.
const LOOPBACK_ONLY: &str = "plaintext gRPC (tls.insecure_plaintext) is only allowed on loopback";

impl Config {
    /// The storage node's rule: TLS material, or explicit plaintext with every listener on
    /// loopback (plaintext elsewhere would let anyone on the network call Raft and Admin).
    pub fn check_storage_security(&self) -> Result<(), ConfigError> {
        if self.tls.has_material() {
            return Ok(());
        }
        if !self.tls.insecure_plaintext {
            return Err(ConfigError::Invalid {
                field: "tls.cert",
                reason: "a storage node needs TLS material (tls.ca, tls.cert, tls.key; see `mailraft certs`), \
                         or tls.insecure_plaintext = true on loopback addresses"
                    .into(),
            });
        }
        for (field, addr) in [("node.grpc_addr", self.node.grpc_addr), ("node.admin_addr", self.node.admin_addr)] {
            if !addr.ip().is_loopback() {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!("{addr} is not a loopback address: {LOOPBACK_ONLY}"),
                });
            }
        }
        // Where the node sends (Raft carries the session keys) and what it tells others to use.
        let advertised = [("node.advertise_addr", &self.node.advertise_addr), ("node.admin_advertise_addr", &self.node.admin_advertise_addr)];
        let advertised = advertised.into_iter().filter_map(|(field, addr)| Some((field, addr.as_deref()?)));
        let peers = self.node.peer_addrs.iter().map(|e| ("node.peer_addrs", e.split_once('=').map_or(e.as_str(), |(_, url)| url)));
        if let Some((field, far)) = advertised.chain(peers).find(|(_, url)| !is_loopback_url(url.trim())) {
            return Err(ConfigError::Invalid { field, reason: format!("{far} is not a loopback address: {LOOPBACK_ONLY}") });
        }
        Ok(())
    }

    /// The front-end's rule: TLS material, or explicit plaintext to loopback endpoints only
    /// (passwords and session tokens cross this link).
    pub fn check_frontend_security(&self) -> Result<(), ConfigError> {
        if self.tls.has_material() {
            return Ok(());
        }
        if !self.tls.insecure_plaintext {
            return Err(ConfigError::Invalid {
                field: "tls.cert",
                reason: "a front-end needs TLS material to reach storage (tls.ca, tls.cert, tls.key; see \
                         `mailraft certs`), or tls.insecure_plaintext = true with loopback storage endpoints"
                    .into(),
            });
        }
        if let Some(far) = self.storage.endpoints.iter().find(|e| !is_loopback_url(e)) {
            return Err(ConfigError::Invalid {
                field: "storage.endpoints",
                reason: format!("{far} is not a loopback address: {LOOPBACK_ONLY}"),
            });
        }
        Ok(())
    }
}

/// Whether `url`'s host is `localhost` or a loopback IP address.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::{Config, TlsConfig};

    #[test]
    fn storage_refuses_plaintext_unless_explicit_and_loopback() {
        let mut cfg = Config::default();
        let err = cfg.check_storage_security().unwrap_err().to_string();
        assert!(err.contains("needs TLS material"), "{err}");
        cfg.tls.insecure_plaintext = true;
        cfg.check_storage_security().unwrap();
        cfg.node.grpc_addr = "0.0.0.0:50051".parse().unwrap();
        let err = cfg.check_storage_security().unwrap_err().to_string();
        assert!(err.contains("node.grpc_addr") && err.contains("loopback"), "{err}");
        cfg.node.grpc_addr = "127.0.0.1:50051".parse().unwrap();
        cfg.node.admin_addr = "10.0.0.1:50061".parse().unwrap();
        assert!(cfg.check_storage_security().unwrap_err().to_string().contains("node.admin_addr"));
        cfg.node.admin_addr = "127.0.0.1:50061".parse().unwrap();
        // Nor may it send beyond loopback, or tell others to.
        cfg.node.advertise_addr = Some("10.0.0.2:50051".into());
        assert!(cfg.check_storage_security().unwrap_err().to_string().contains("node.advertise_addr"));
        cfg.node.advertise_addr = Some("localhost:50051".into());
        cfg.node.peer_addrs = vec!["2=http://127.0.0.1:7".into(), "3=http://10.0.0.3:50051".into()];
        assert!(cfg.check_storage_security().unwrap_err().to_string().contains("node.peer_addrs"));
        cfg.node.peer_addrs = vec!["2=http://127.0.0.1:7".into()];
        cfg.check_storage_security().unwrap();
        cfg.node.admin_addr = "10.0.0.1:50061".parse().unwrap();
        let files = |f: &str| Some(std::path::PathBuf::from(f));
        cfg.tls = TlsConfig { ca: files("ca.pem"), cert: files("c.pem"), key: files("k.pem"), ..TlsConfig::default() };
        cfg.check_storage_security().unwrap();
        cfg.validate().unwrap();
        cfg.tls.insecure_plaintext = true;
        assert!(cfg.validate().is_err(), "material and plaintext together are refused");
        cfg.tls = TlsConfig { ca: Some("ca.pem".into()), ..TlsConfig::default() };
        assert!(cfg.validate().is_err(), "half the material is refused");
    }

    #[test]
    fn frontend_refuses_plaintext_to_remote_storage() {
        let mut cfg = Config::default();
        assert!(cfg.check_frontend_security().is_err());
        cfg.tls.insecure_plaintext = true;
        for ok in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1", "127.0.0.1:5"] {
            cfg.storage.endpoints = vec![ok.into()];
            cfg.check_frontend_security().unwrap();
        }
        for far in ["http://10.0.0.1:1", "http://storage:1", "http://[2001:db8::1]:1"] {
            cfg.storage.endpoints = vec!["http://127.0.0.1:1".into(), far.into()];
            assert!(cfg.check_frontend_security().is_err(), "{far}");
        }
    }
}
