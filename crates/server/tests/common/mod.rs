//! What the storage-node tests share: starting a node on a loopback port with fast Raft timings
//! (plaintext, every service on one listener, or with mutual TLS and separate listeners from a
//! test [`Pki`]), a channel to it, a request context and the stable error code of a status.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;

use mailraft_proto as pb;
use mailraft_server::authz::Role;
use mailraft_server::{Listeners, NodeConfig, StorageNode, TlsBundle};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// Election timeout bounds in milliseconds (heartbeats are 50 ms in every test).
pub type Election = (u64, u64);

/// Node `id` on `addr` with 50 ms heartbeats and the given election timeouts.
pub fn config(id: u64, dir: &Path, addr: SocketAddr, bootstrap: bool, election: Election) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, dir.to_path_buf(), addr);
    cfg.bootstrap = bootstrap;
    cfg.heartbeat_ms = 50;
    (cfg.election_min_ms, cfg.election_max_ms) = election;
    cfg
}

/// Starts node `id` on an already bound `listener` (tests that need the addresses up front).
pub async fn start_on(listener: TcpListener, id: u64, dir: &Path, bootstrap: bool, election: Election) -> StorageNode {
    let addr = listener.local_addr().unwrap();
    StorageNode::start(config(id, dir, addr, bootstrap, election), listener).await.unwrap()
}

/// Starts node `id` on a fresh loopback port; returns it with its address.
pub async fn start(id: u64, dir: &Path, bootstrap: bool, election: Election) -> (StorageNode, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (start_on(listener, id, dir, bootstrap, election).await, addr)
}

/// A connected channel to the node at `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// A request context for group 1 with `token` and no request id.
pub fn ctx(token: &[u8]) -> Option<pb::Context> {
    Some(pb::Context { group_id: 1, token: token.to_vec(), session_id: "test-session".into(), request_id: Vec::new() })
}

/// The stable `mailraft-code` of a status, "" when absent.
pub fn code_of(status: &tonic::Status) -> &str {
    status.metadata().get("mailraft-code").and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A test PKI: a CA and certificates it issues, shaped like `mailraft certs` makes them (role in
/// a URI SAN, 127.0.0.1 for servers, client-only usage for front-ends and operators).
pub struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate.
    pub ca_pem: String,
    name: String,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Cert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    /// A CA with a name of its own.
    pub fn new() -> Pki {
        Pki::named(&format!("test cluster CA {:016x}", rand::random::<u64>()))
    }

    /// A CA named `name` (two CAs of one name are told apart by their keys only).
    pub fn named(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki { issuer: rcgen::Issuer::new(params, key), ca_pem, name: name.to_owned() }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A certificate for `role` (server and client for nodes, client only otherwise).
    pub fn issue(&self, role: &Role) -> Cert {
        self.issue_uri(Some(&role.uri()), matches!(role, Role::Node(_)))
    }

    /// A certificate naming `uri` (or no role at all).
    pub fn issue_uri(&self, uri: Option<&str>, server: bool) -> Cert {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        if let Some(uri) = uri {
            params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().unwrap()));
        }
        params.extended_key_usages = if server {
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Cert { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Node `id`'s server material.
    pub fn node_bundle(&self, id: u64) -> TlsBundle {
        let c = self.issue(&Role::Node(id));
        TlsBundle::from_pem(self.ca_pem.clone().into_bytes(), c.cert_pem.into_bytes(), c.key_pem.into_bytes()).unwrap()
    }
}

/// Node `id` with mutual TLS from `pki`, its peer and admin listeners on fresh loopback ports;
/// returns it with both addresses.
pub async fn start_tls(id: u64, dir: &Path, bootstrap: bool, pki: &Pki) -> (StorageNode, SocketAddr, SocketAddr) {
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (peer_addr, admin_addr) = (peer.local_addr().unwrap(), admin.local_addr().unwrap());
    let mut cfg = config(id, dir, peer_addr, bootstrap, (300, 500));
    cfg.advertise = format!("https://{peer_addr}");
    cfg.admin_advertise = format!("https://{admin_addr}");
    cfg.tls = Some(std::sync::Arc::new(pki.node_bundle(id)));
    let node = StorageNode::start_with(cfg, Listeners { peer, admin: Some(admin) }).await.unwrap();
    (node, peer_addr, admin_addr)
}

/// A TLS channel to `addr` trusting `ca_pem`, presenting `identity` if given; connects lazily so
/// a refused handshake shows on the first call.
pub fn tls_channel(addr: SocketAddr, ca_pem: &str, identity: Option<&Cert>) -> Channel {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap().connect_lazy()
}
