//! Mutual TLS for every gRPC connection of a storage node: its listeners and its clients.
//!
//! Material: one cluster CA (`ca.pem`), and for this node a certificate and key issued by it
//! (`mailraft certs node <id> --san <host>`). The certificate must name this node's role
//! (`spiffe://mailraft/node/<id>`, see `authz.rs`) and carry the DNS names / IP addresses under
//! which peers and front-ends reach it: clients verify the server's certificate against the
//! cluster CA *and* the host in the URL, as for any HTTPS server.
//!
//! Server side ([`tls_incoming`]): the node accepts TCP connections itself and runs each TLS
//! handshake in its own task, bounded in time ([`HANDSHAKE_TIMEOUT`]) and in number
//! ([`MAX_HANDSHAKES`], and [`MAX_HANDSHAKES_PER_SOURCE`] per source address, beyond which a new
//! connection is closed at once), so a slow or silent client holds neither the accept loop nor
//! unbounded memory, and one host cannot keep the others from connecting. A client without a certificate of the cluster CA fails the handshake; every failure is
//! counted (`mailraft_grpc_tls_handshake_failures_total{listener,reason}`) and logged. The
//! handshaken streams go to tonic, which exposes the client's certificate to `authz.rs`.
//!
//! Client side ([`endpoint`]): with TLS material every connection uses TLS, whatever the URL's
//! scheme, because a membership or a front-end configuration written before TLS was enabled names
//! `http://` URLs; the URL is upgraded to `https://`. Without material an `https://` URL is an
//! error rather than a silent plaintext connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::authz::{AuthzError, Role, role_of};

/// A handshake not finished by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress per listener; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;
/// Handshakes in progress per source (an IPv4 address, or an IPv6 /64, which one host usually
/// holds whole): beyond it a new connection from that source is closed at once, so one host that opens connections and never says hello cannot take the
/// listener's [`MAX_HANDSHAKES`] slots from the front-ends and peers.
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 16;
/// Handshaken connections waiting for tonic to take them.
const ACCEPTED_QUEUE: usize = 64;
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the configuration (key does not match the certificate, ...).
    #[error("tls configuration: {0}")]
    Config(String),
    /// The certificate's role is not what this process needs.
    #[error("certificate role: {0}")]
    Role(#[from] AuthzError),
    /// A URL that cannot be used for a connection.
    #[error("{0}")]
    Url(String),
}

/// The cluster CA, and this process's certificate chain and key, as PEM.
#[derive(Clone)]
pub struct TlsBundle {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsBundle").field("role", &self.role().map(|r| r.uri()).ok()).finish_non_exhaustive()
    }
}

impl TlsBundle {
    /// Checks that the PEM items parse: at least one CA certificate, a certificate, a key.
    pub fn from_pem(ca_pem: Vec<u8>, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<TlsBundle, TlsError> {
        let bundle = TlsBundle { ca_pem, cert_pem, key_pem };
        if bundle.ca_certs()?.is_empty() {
            return Err(TlsError::Pem("the CA file holds no certificate".into()));
        }
        bundle.chain()?;
        bundle.key()?;
        Ok(bundle)
    }

    /// Reads the three PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<TlsBundle, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read { path: p.display().to_string(), source })
        };
        TlsBundle::from_pem(read(ca)?, read(cert)?, read(key)?)
    }

    /// The CA certificate(s), PEM.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// This process's certificate chain, PEM.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// This process's private key, PEM (for other TLS clients of the same process).
    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }

    fn ca_certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        CertificateDer::pem_slice_iter(&self.ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("CA certificate: {e}")))
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError::Pem("the certificate file holds no certificate".into()));
        }
        Ok(chain)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| TlsError::Pem(format!("private key: {e}")))
    }

    /// The role this process's certificate names.
    pub fn role(&self) -> Result<Role, TlsError> {
        let chain = self.chain()?;
        let leaf = chain.first().ok_or_else(|| TlsError::Pem("no certificate".into()))?;
        Ok(role_of(leaf)?)
    }

    /// A listener's configuration: this certificate, client certificates required and verified
    /// against the cluster CA, HTTP/2 by ALPN.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in self.ca_certs()? {
            roots.add(ca).map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, self.key()?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// A client's configuration: the cluster CA as the only root, this certificate as identity.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

/// An endpoint for `url`: TLS with `tls` (an `http://` URL is upgraded, see the module docs), or
/// plaintext without it (an `https://` URL is then refused).
pub fn endpoint(url: &str, tls: Option<&TlsBundle>) -> Result<Endpoint, TlsError> {
    let url = url.trim();
    let bad = |e: &dyn std::fmt::Display| TlsError::Url(format!("invalid URL {url:?}: {e}"));
    match tls {
        None if url.starts_with("https://") => Err(TlsError::Url(format!(
            "{url} is an https:// URL but no TLS material is configured (tls.ca, tls.cert, tls.key)"
        ))),
        None => Endpoint::from_shared(url.to_owned()).map_err(|e| bad(&e)),
        Some(tls) => {
            let url = match url.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => url.to_owned(),
            };
            let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| bad(&e))?;
            let mut config = tls.client_config();
            // rustls wants an IPv6 literal without the URL's brackets.
            if let Some(host) = endpoint.uri().host().filter(|h| h.starts_with('[')) {
                config = config.domain_name(host.trim_start_matches('[').trim_end_matches(']'));
            }
            endpoint.tls_config(config).map_err(|e| bad(&e))
        }
    }
}

/// Accepts connections on `listener` and runs their TLS handshakes (see the module docs); the
/// stream ends when `stop` turns true. `name` labels metrics and logs (`peer`, `admin`).
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let sources = Arc::new(Sources::default());
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = stop.wait_for(|s| *s) => return,
                _ = tx.closed() => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => return,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let Some(source) = Sources::enter(&sources, peer.ip()) else {
                handshake_failed(name, peer, "source_limit", &"too many handshakes from this address");
                continue;
            };
            // Raft heartbeats and small calls must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let _source = source;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    // The server is gone when the receiver is: the connection just closes.
                    Ok(Ok(tls)) => drop(tx.send(Ok(tls)).await),
                    Ok(Err(e)) => handshake_failed(name, peer, handshake_reason(&e), &e),
                    Err(_) => handshake_failed(name, peer, "timeout", &"no handshake within the timeout"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Handshakes in progress per source address.
#[derive(Default)]
struct Sources(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One handshake of a source; leaving frees its place.
struct SourceSlot {
    sources: Arc<Sources>,
    ip: std::net::IpAddr,
}

impl Sources {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, usize>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for a handshake from `ip`, unless its source already has
    /// [`MAX_HANDSHAKES_PER_SOURCE`].
    fn enter(sources: &Arc<Sources>, ip: std::net::IpAddr) -> Option<SourceSlot> {
        let ip = source_of(ip);
        let mut map = sources.lock();
        let count = map.entry(ip).or_insert(0);
        if *count >= MAX_HANDSHAKES_PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(SourceSlot { sources: sources.clone(), ip })
    }
}

/// The source `ip` counts against: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by its /64.
fn source_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.sources.lock();
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

fn handshake_failed(listener: &'static str, peer: SocketAddr, reason: &'static str, error: &dyn std::fmt::Display) {
    crate::metrics::tls_handshake_failed(listener, reason);
    match reason {
        // TCP health checks and scanners connect and leave: counted, but not worth a log line.
        "handshake" | "timeout" => tracing::debug!(listener, %peer, reason, %error, "tls handshake failed"),
        _ => tracing::info!(listener, %peer, reason, %error, "tls handshake refused"),
    }
}

/// A bounded label for why a handshake failed.
fn handshake_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::NoCertificatesPresented) => "no_client_certificate",
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => "unknown_issuer",
        Some(Error::InvalidCertificate(_)) => "bad_certificate",
        _ => "handshake",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(super::source_of(ip("2001:db8:1:2:aaaa::1")), super::source_of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(super::source_of(ip("2001:db8:1:2::1")), super::source_of(ip("2001:db8:1:3::1")));
        assert_eq!(super::source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(super::source_of(ip("10.0.0.1")), ip("10.0.0.1"));
        let sources = std::sync::Arc::new(super::Sources::default());
        let held: Vec<_> = (0..super::MAX_HANDSHAKES_PER_SOURCE)
            .map(|n| super::Sources::enter(&sources, ip(&format!("2001:db8::{n:x}"))).unwrap())
            .collect();
        assert!(super::Sources::enter(&sources, ip("2001:db8::ffff")).is_none(), "one /64, one budget");
        assert!(super::Sources::enter(&sources, ip("2001:db9::1")).is_some());
        drop(held);
        assert!(super::Sources::enter(&sources, ip("2001:db8::ffff")).is_some(), "places come back");
    }
    use super::*;

    fn bundle() -> TlsBundle {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let uri = rcgen::string::Ia5String::try_from("spiffe://mailraft/node/2").unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TlsBundle::from_pem(cert.pem().into_bytes(), cert.pem().into_bytes(), key.serialize_pem().into_bytes()).unwrap()
    }

    #[test]
    fn urls_follow_the_material() {
        let tls = bundle();
        assert_eq!(tls.role().unwrap(), Role::Node(2));
        assert!(!format!("{tls:?}").contains("PRIVATE"));
        assert_eq!(endpoint("http://127.0.0.1:1", Some(&tls)).unwrap().uri().scheme_str(), Some("https"));
        assert_eq!(endpoint("https://[::1]:1", Some(&tls)).unwrap().uri().scheme_str(), Some("https"));
        assert_eq!(endpoint("http://127.0.0.1:1", None).unwrap().uri().scheme_str(), Some("http"));
        assert!(matches!(endpoint("https://127.0.0.1:1", None), Err(TlsError::Url(_))));
        assert!(TlsBundle::from_pem(Vec::new(), Vec::new(), Vec::new()).is_err());
    }
}
