//! Who may call what on a storage node with mutual TLS (`authz.rs`, `tls.rs`), over real sockets:
//! a client without a certificate and one with a certificate of another CA are refused at the
//! handshake; a front-end certificate may use Storage but not Admin or Raft; an operator
//! certificate may use Admin but not Raft or Storage; a node certificate may use Raft, but only
//! as itself, in the envelope and in the vote its payload carries. Admin is served on the admin
//! listener only. Two TLS nodes form a group through the Admin API (the membership probes run
//! node to node), and a follower's NOT_LEADER on the admin listener names the leader's admin URL. A node refuses to serve plaintext beyond loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Cert, Pki, code_of, start_tls, tls_channel};
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::raft_client::RaftClient;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::authz::Role;
use mailraft_server::{Listeners, NodeConfig, StorageNode};
use mailraft_store::{TypeConfig, Vote};
use openraft::raft::AppendEntriesRequest;
use tokio::net::TcpListener;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(30);

fn frontend(pki: &Pki) -> Cert {
    pki.issue(&Role::Frontend("imap-1".into()))
}

fn operator(pki: &Pki) -> Cert {
    pki.issue(&Role::Operator("alice".into()))
}

/// Runs a TLS handshake with the node at `addr` trusting `ca_pem` and presenting `identity`, then
/// reads: the alert the server sent if it refused the client (with TLS 1.3 the client learns it
/// only after its side of the handshake), `None` if the connection stays open.
async fn handshake_alert(addr: SocketAddr, ca_pem: &str, identity: Option<&Cert>) -> Option<rustls::AlertDescription> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::AsyncReadExt;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connected = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await;
    let alert = |e: std::io::Error| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(alert)) => Some(*alert),
        other => panic!("not a TLS alert: {other:?} ({e})"),
    };
    let mut tls = match connected {
        Ok(tls) => tls,
        Err(e) => return alert(e),
    };
    // An accepted HTTP/2 client gets the server's SETTINGS frame; a refused one the alert.
    let mut buf = [0u8; 64];
    match tokio::time::timeout(DEADLINE, tls.read(&mut buf)).await.unwrap() {
        Ok(n) => {
            assert!(n > 0, "connection closed without an alert");
            None
        }
        Err(e) => alert(e),
    }
}

/// Waits until the node answers a frontend-certified Storage call with something from the service
/// itself (bootstrap done).
async fn wait_serving(pki: &Pki, peer: SocketAddr) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut storage = StorageClient::new(tls_channel(peer, &pki.ca_pem, Some(&frontend(pki))));
    loop {
        let req = pb::AuthenticateRequest {
            ctx: common::ctx(&[]),
            login: "nobody@example.test".into(),
            password: "x".into(),
            ..Default::default()
        };
        match storage.authenticate(req).await {
            Err(s) if s.code() == Code::Unauthenticated => return,
            other => assert!(tokio::time::Instant::now() < deadline, "node never served: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn vote_from(from_node: u64) -> pb::RaftRequest {
    pb::RaftRequest { group_id: 1, payload: Vec::new(), cluster_id: 0, from_node, admin_addr: String::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_admits_only_its_roles() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (node, peer, admin) = start_tls(1, dir.path(), true, &pki).await;
    wait_serving(&pki, peer).await;
    let (frontend, operator) = (frontend(&pki), operator(&pki));

    // No client certificate: the handshake fails, no service is reached.
    assert_eq!(handshake_alert(peer, &pki.ca_pem, None).await, Some(rustls::AlertDescription::CertificateRequired));
    let mut anonymous = StorageClient::new(tls_channel(peer, &pki.ca_pem, None));
    let refused = anonymous.authenticate(pb::AuthenticateRequest::default()).await.unwrap_err();
    assert!(!matches!(refused.code(), Code::Unauthenticated | Code::PermissionDenied), "{refused:?}");
    assert_eq!(handshake_alert(peer, &pki.ca_pem, Some(&frontend)).await, None, "a certificate of the CA is accepted");

    // A certificate of another CA, even with a valid-looking role: refused at the handshake.
    let stranger = Pki::new().issue(&Role::Operator("mallory".into()));
    assert_eq!(handshake_alert(admin, &pki.ca_pem, Some(&stranger)).await, Some(rustls::AlertDescription::UnknownCA));
    // A CA made up under our CA's name does not pass for it (the signature does not verify).
    let forger = Pki::named(pki.name()).issue(&Role::Operator("mallory".into()));
    assert_eq!(handshake_alert(admin, &pki.ca_pem, Some(&forger)).await, Some(rustls::AlertDescription::DecryptError));
    let mut foreign = AdminClient::new(tls_channel(admin, &pki.ca_pem, Some(&stranger)));
    let refused = foreign.cluster_info(pb::ClusterInfoRequest { group_id: 1 }).await.unwrap_err();
    assert!(!matches!(refused.code(), Code::Ok | Code::PermissionDenied), "{refused:?}");

    // A front-end may not administer...
    let mut as_frontend = AdminClient::new(tls_channel(admin, &pki.ca_pem, Some(&frontend)));
    let denied = as_frontend.create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "x.test".into() }).await;
    let denied = denied.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("operator certificate"), "{}", denied.message());
    assert_eq!(code_of(&denied), "PERMISSION_DENIED");
    // ...nor speak Raft; nor may an operator.
    for who in [&frontend, &operator] {
        let mut raft = RaftClient::new(tls_channel(peer, &pki.ca_pem, Some(who)));
        let denied = raft.vote(vote_from(1)).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        assert!(denied.message().contains("node certificate"), "{}", denied.message());
        let denied = raft.identify(pb::IdentifyRequest { group_id: 1 }).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    }
    // An operator may not use the Storage API (it holds every tenant's mail).
    let mut as_operator = StorageClient::new(tls_channel(peer, &pki.ca_pem, Some(&operator)));
    let denied = as_operator.authenticate(pb::AuthenticateRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // An operator administers, on the admin listener only.
    let mut ops = AdminClient::new(tls_channel(admin, &pki.ca_pem, Some(&operator)));
    let info = ops.cluster_info(pb::ClusterInfoRequest { group_id: 1 }).await.unwrap().into_inner();
    assert_eq!((info.node_id, info.leader_id), (1, 1));
    ops.create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "ok.test".into() }).await.unwrap();
    let mut ops_on_peer = AdminClient::new(tls_channel(peer, &pki.ca_pem, Some(&operator)));
    let missing = ops_on_peer.cluster_info(pb::ClusterInfoRequest { group_id: 1 }).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unimplemented, "Admin is not served on the peer listener: {missing:?}");
    let mut storage_on_admin = StorageClient::new(tls_channel(admin, &pki.ca_pem, Some(&frontend)));
    let missing = storage_on_admin.authenticate(pb::AuthenticateRequest::default()).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unimplemented, "Storage is not served on the admin listener: {missing:?}");

    // A node speaks Raft, as itself only.
    let node2 = pki.issue(&Role::Node(2));
    let mut raft = RaftClient::new(tls_channel(peer, &pki.ca_pem, Some(&node2)));
    let me = raft.identify(pb::IdentifyRequest { group_id: 1 }).await.unwrap().into_inner();
    assert_eq!(me.node_id, 1);
    assert_eq!(me.admin_addr, format!("https://{admin}"));
    let impostor = raft.vote(vote_from(3)).await.unwrap_err();
    assert_eq!(impostor.code(), Code::PermissionDenied, "{impostor:?}");
    assert!(impostor.message().contains("may not send raft messages as node 3"), "{}", impostor.message());
    // Nor in another node's name inside the payload: node 2 may not claim that node 1 leads a
    // later term (every node would step down and follow a leader that is not there).
    let claim: AppendEntriesRequest<TypeConfig> =
        AppendEntriesRequest { vote: Vote::new_committed(1_000, 1), prev_log_id: None, entries: vec![], leader_commit: None };
    let payload = postcard::to_allocvec(&claim).unwrap();
    let forged = pb::RaftRequest { group_id: 1, payload, cluster_id: me.cluster_id, from_node: 2, admin_addr: String::new() };
    let forged = raft.append_entries(forged).await.unwrap_err();
    assert_eq!(forged.code(), Code::PermissionDenied, "{forged:?}");
    assert!(forged.message().contains("vote"), "{}", forged.message());
    // Only the leader a node follows may make it start an election (a leadership transfer).
    let meddler = raft.trigger_election(pb::TriggerElectionRequest { group_id: 1 }).await.unwrap_err();
    assert_eq!(meddler.code(), Code::PermissionDenied, "{meddler:?}");
    assert!(meddler.message().contains("not the leader"), "{}", meddler.message());

    // A certificate of our CA without a role gets nothing.
    let nobody = pki.issue_uri(None, false);
    let mut roleless = StorageClient::new(tls_channel(peer, &pki.ca_pem, Some(&nobody)));
    let denied = roleless.authenticate(pb::AuthenticateRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("no mailraft role"), "{}", denied.message());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_nodes_form_a_group_and_followers_point_operators_at_the_leaders_admin_listener() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let pki = Pki::new();
    let (n1, p1, a1) = start_tls(1, dirs[0].path(), true, &pki).await;
    let (n2, p2, a2) = start_tls(2, dirs[1].path(), false, &pki).await;
    wait_serving(&pki, p1).await;
    let operator = operator(&pki);
    let mut leader = AdminClient::new(tls_channel(a1, &pki.ca_pem, Some(&operator)));
    // The leader probes node 2 over mTLS (Raft.Identify) and replicates to it.
    let req = pb::AddNodeRequest { group_id: 1, node_id: 2, addr: format!("https://{p2}"), learner_only: false };
    assert!(leader.add_node(req).await.unwrap().into_inner().promoted);

    let mut follower = AdminClient::new(tls_channel(a2, &pki.ca_pem, Some(&operator)));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let info = follower.cluster_info(pb::ClusterInfoRequest { group_id: 1 }).await.unwrap().into_inner();
        if info.leader_id == 1 {
            assert_eq!(info.leader_admin_addr, format!("https://{a1}"));
            break follower.create_tenant(pb::CreateTenantRequest { group_id: 1, domain: "f.test".into() }).await;
        }
        assert!(tokio::time::Instant::now() < deadline, "node 2 never followed node 1: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused = refused.unwrap_err();
    assert_eq!(code_of(&refused), "NOT_LEADER");
    let hint = refused.metadata().get("mailraft-leader").and_then(|v| v.to_str().ok());
    assert_eq!(hint, Some(format!("https://{a1}").as_str()), "the hint names the leader's admin listener");

    // The leader knows the follower's admin URL from its replies.
    let info = leader.cluster_info(pb::ClusterInfoRequest { group_id: 1 }).await.unwrap().into_inner();
    let member2 = info.members.iter().find(|m| m.node_id == 2).unwrap();
    assert_eq!(member2.admin_addr, format!("https://{a2}"));
    n2.shutdown().await;
    n1.shutdown().await;
}

/// Connections that never send a ClientHello hold a handshake slot until the handshake timeout;
/// one address gets at most `MAX_HANDSHAKES_PER_SOURCE` of them, and its next connection is
/// closed at once instead of waiting for a slot (and keeping everyone else waiting too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_silent_host_cannot_take_every_handshake_slot() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (node, peer, _admin) = start_tls(1, dir.path(), true, &pki).await;
    wait_serving(&pki, peer).await;

    let mut silent = Vec::new();
    for _ in 0..mailraft_server::tls::MAX_HANDSHAKES_PER_SOURCE {
        silent.push(tokio::net::TcpStream::connect(peer).await.unwrap());
    }
    let mut extra = tokio::net::TcpStream::connect(peer).await.unwrap();
    let mut byte = [0u8; 1];
    // Well under the 10 s handshake timeout, which is when it would close otherwise.
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection over the per-source limit stayed open: {read:?}");

    // The slots come back when the silent connections go.
    drop(silent);
    wait_serving(&pki, peer).await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_refuses_plaintext_beyond_loopback_and_a_certificate_of_another_role() {
    let dir = tempfile::tempdir().unwrap();
    let open = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let addr = open.local_addr().unwrap();
    let cfg = NodeConfig::new(1, dir.path().to_path_buf(), addr);
    let refused = StorageNode::start_with(cfg, Listeners { peer: open, admin: None }).await.err().unwrap();
    assert!(refused.to_string().contains("plaintext is only allowed on loopback"), "{refused}");

    // A node must present its own node certificate.
    let pki = Pki::new();
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = NodeConfig::new(1, dir.path().to_path_buf(), peer.local_addr().unwrap());
    cfg.tls = Some(std::sync::Arc::new(pki.node_bundle(2)));
    let refused = StorageNode::start_with(cfg, Listeners { peer, admin: Some(admin) }).await.err().unwrap();
    assert!(refused.to_string().contains("this is node 1"), "{refused}");
}
