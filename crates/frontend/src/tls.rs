//! TLS for client connections: implicit TLS (port 993) or STARTTLS on a cleartext port.
//!
//! rustls with the ring provider only (no aws-lc), selected explicitly so the process-wide
//! default provider does not matter.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How a listener speaks TLS.
#[derive(Clone)]
pub enum TlsMode {
    /// Cleartext first; `STARTTLS` (RFC 3501 §6.2.1) is offered when `starttls` is set.
    Plain {
        /// Server configuration for the STARTTLS upgrade, if offered.
        starttls: Option<Arc<ServerConfig>>,
    },
    /// TLS from the first byte (RFC 8314 §3.2, port 993).
    Implicit(Arc<ServerConfig>),
}

impl std::fmt::Debug for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsMode::Plain { starttls } => {
                f.debug_struct("Plain").field("starttls", &starttls.is_some()).finish()
            }
            TlsMode::Implicit(_) => f.write_str("Implicit"),
        }
    }
}

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM input has no certificate.
    #[error("no certificate found in PEM input")]
    NoCertificate,
    /// The PEM input could not be parsed.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// rustls rejected the certificate/key pair.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds a server configuration from a PEM certificate chain and a PEM private key.
pub fn tls_config_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_generated_pem() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let config =
            tls_config_from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes());
        assert!(config.is_ok());
    }

    #[test]
    fn rejects_garbage() {
        assert!(tls_config_from_pem(b"nope", b"nope").is_err());
    }
}
