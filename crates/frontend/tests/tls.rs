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
    // STARTTLS command injection: a LOGIN pipelined behind STARTTLS in the same packet was sent in
    // cleartext (a man in the middle could have put it there) and must never run. RFC 3501
    // §6.2.1 / RFC 2595 §3.1: the server discards what it buffered before the handshake.
    c.send(format!("s1 STARTTLS\r\ns2 LOGIN {USER} \"{PASSWORD}\"\r\n").as_bytes()).await;
    let (untagged, tagged) = c.until_tagged("s1").await;
    assert_eq!((untagged, tagged.as_str()), (vec![], "s1 OK begin TLS negotiation now"));
    let tcp = c.into_inner();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut c = Client::new(tls);
    // The first line after the handshake answers our own command; had the server run s2, its
    // reply would come first. And the session is still not authenticated.
    c.send(b"n1 NOOP\r\n").await;
    assert_eq!(c.line().await, "n1 OK NOOP completed");
    c.send(b"n2 SELECT INBOX\r\n").await;
    assert_eq!(c.line().await, "n2 BAD log in first");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limits_implicit_tls_clients_are_closed_without_a_handshake() {
    let (server, connector) = certificate();
    let env = Env::start_with(
        |c| {
            c.max_connections = 2;
            c.max_preauth_per_ip = 1;
        },
        TlsMode::Implicit(server.clone()),
    )
    .await;
    let connect = |addr| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await
        }
    };
    let mut first = Client::new(connect(env.imap).await.unwrap());
    assert!(first.line().await.starts_with("* OK"));
    // Over the per-address limit on unauthenticated connections: closed before any handshake.
    assert!(connect(env.imap).await.is_err(), "the refused connection got a TLS handshake");
    // Logged in, the first connection leaves room for one more unauthenticated one.
    first.ok(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    let mut second = Client::new(connect(env.imap).await.unwrap());
    assert!(second.line().await.starts_with("* OK"));
    env.stop().await;

    // max_connections alone, with a per-address limit it never reaches: also no handshake.
    let env = Env::start_with(
        |c| {
            c.max_connections = 2;
            c.max_preauth_per_ip = 10;
        },
        TlsMode::Implicit(server),
    )
    .await;
    let mut first = Client::new(connect(env.imap).await.unwrap());
    assert!(first.line().await.starts_with("* OK"));
    let mut second = Client::new(connect(env.imap).await.unwrap());
    assert!(second.line().await.starts_with("* OK"));
    assert!(connect(env.imap).await.is_err(), "the refused connection got a TLS handshake");
    env.stop().await;
}
