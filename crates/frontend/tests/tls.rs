//! STARTTLS and implicit TLS with a self-signed certificate.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use common::{Client, Env, PASSWORD, USER};
use mailraft_frontend::{TlsMode, tls_config_from_pem};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn certificate() -> (Arc<rustls::ServerConfig>, TlsConnector) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let server = tls_config_from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, TlsConnector::from(Arc::new(client)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_enables_login() {
    let (server, connector) = certificate();
    let env = Env::start_with(|c| c.allow_plaintext_auth = false, TlsMode::Plain { starttls: Some(server) }).await;
    let mut c = env.client().await;
    let caps = c.ok("CAPABILITY").await;
    assert!(caps[0].contains("STARTTLS") && caps[0].contains("LOGINDISABLED"), "{caps:?}");
    assert!(c.tagged(&format!("LOGIN {USER} \"{PASSWORD}\"")).await.contains("NO [PRIVACYREQUIRED]"));
    // A command pipelined behind STARTTLS (cleartext injection) must not run after the handshake.
    c.send(b"s1 STARTTLS\r\ns2 NOOP\r\n").await;
    let (_, tagged) = c.until_tagged("s1").await;
    assert!(tagged.contains("OK"), "{tagged}");
    let tcp = c.into_inner();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut c = Client::new(tls);
    assert_eq!(c.tagged("NOOP").await, "t1 OK NOOP completed");
    let caps = c.ok("CAPABILITY").await;
    assert!(caps[0].contains("AUTH=PLAIN") && !caps[0].contains("STARTTLS"), "{caps:?}");
    c.ok(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    c.ok("SELECT INBOX").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls() {
    let (server, connector) = certificate();
    let env = Env::start_with(|c| c.allow_plaintext_auth = false, TlsMode::Implicit(server)).await;
    let tcp = TcpStream::connect(env.imap).await.unwrap();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut c = Client::new(tls);
    let greeting = c.line().await;
    assert!(greeting.contains("AUTH=PLAIN") && !greeting.contains("STARTTLS"), "{greeting}");
    c.ok(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    env.stop().await;
}
