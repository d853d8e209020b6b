//! Who may call what on a storage node: the one place where callers are authorized.
//!
//! Every gRPC call reaches a node over mutual TLS (`tls.rs`): the handshake already proved that
//! the caller holds a key certified by the cluster CA. What the caller may do is its *role*,
//! written in its certificate as one URI subject alternative name in the SPIFFE ID form
//! `spiffe://mailraft/<kind>/<name>` (SPIFFE ID, trust domain `mailraft`):
//!
//! | role | URI SAN | peer listener | admin listener |
//! |---|---|---|---|
//! | storage node `N` | `spiffe://mailraft/node/N` | Raft (as node N only), Storage, Watch, health; none but health once N is removed | health |
//! | front-end | `spiffe://mailraft/frontend/<name>` | Storage, Watch, health | health |
//! | operator | `spiffe://mailraft/operator/<name>` | health | Admin, health |
//!
//! One [`Authz`] interceptor per service checks the role before the service sees the request and
//! puts the [`Caller`] into the request's extensions; the Raft service additionally checks that a
//! message's `from_node` is the node its certificate names ([`check_sender`]), so one node cannot
//! speak for another. A node certificate stays valid after its node is removed (there is no
//! revocation list), so the Storage interceptor (Storage and Watch) also refuses a node
//! certificate whose id is on the replicated list of retired node ids ([`Authz::refusing_retired`]),
//! as the Raft service does for Raft messages. The nodes' own calls to each other during membership changes (who are you,
//! start an election) are Raft RPCs, not Admin ones, so Admin stays operator-only.
//!
//! Without TLS (`insecure_plaintext`, loopback only, and in-process tests) nothing is enforced
//! and every caller is [`Caller::Plaintext`].
//!
//! Refusals are `UNAUTHENTICATED` (no certificate) or `PERMISSION_DENIED` (a certificate whose
//! role may not call this service), counted in `mailraft_grpc_authz_denied_total{service,reason}`.

use std::collections::BTreeSet;
use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::error::CODE_KEY;

/// Scheme and trust domain of every role URI.
pub const URI_PREFIX: &str = "spiffe://mailraft/";

/// What a certificate allows its holder to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Storage node with this Raft node id.
    Node(u64),
    /// An IMAP front-end (the name is for logs only).
    Frontend(String),
    /// An operator (`mailraft admin`, automation).
    Operator(String),
}

impl Role {
    /// The URI SAN a certificate for this role carries.
    pub fn uri(&self) -> String {
        match self {
            Role::Node(id) => format!("{URI_PREFIX}node/{id}"),
            Role::Frontend(name) => format!("{URI_PREFIX}frontend/{name}"),
            Role::Operator(name) => format!("{URI_PREFIX}operator/{name}"),
        }
    }

    /// The kind as a bounded label: `node`, `frontend` or `operator`.
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Node(_) => "node",
            Role::Frontend(_) => "frontend",
            Role::Operator(_) => "operator",
        }
    }

    /// Parses a role URI; `None` for a URI outside the `spiffe://mailraft/` namespace (a
    /// certificate may carry other URIs too).
    pub fn parse_uri(uri: &str) -> Option<Result<Role, AuthzError>> {
        let rest = uri.strip_prefix(URI_PREFIX)?;
        let bad = || AuthzError::BadRole(uri.to_owned());
        let parsed = match rest.split_once('/') {
            // Only the canonical spelling (`node/1`, not `node/01` or `node/+1`), so a policy
            // that matches certificates by exact string elsewhere cannot be stepped around.
            Some(("node", id)) => {
                id.parse::<u64>().ok().filter(|n| *n != 0 && n.to_string() == id).map(Role::Node).ok_or_else(bad)
            }
            Some((kind, name)) if valid_name(name) => match kind {
                "frontend" => Ok(Role::Frontend(name.to_owned())),
                "operator" => Ok(Role::Operator(name.to_owned())),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        };
        Some(parsed)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Names are path segments of the URI: short, no separators or spaces.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The role named by a DER certificate: exactly one `spiffe://mailraft/` URI SAN.
pub fn role_of(cert_der: &[u8]) -> Result<Role, AuthzError> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| AuthzError::BadCertificate(e.to_string()))?;
    let sans = cert.subject_alternative_name().map_err(|e| AuthzError::BadCertificate(e.to_string()))?;
    let mut roles = sans
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Role::parse_uri(uri),
            _ => None,
        });
    match (roles.next(), roles.next()) {
        (None, _) => Err(AuthzError::NoRole),
        (Some(role), None) => role,
        (Some(_), Some(_)) => Err(AuthzError::AmbiguousRole),
    }
}

/// Why a caller is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// The connection carries no client certificate (only possible if TLS was set up without
    /// client authentication: the handshake normally refuses such a client).
    #[error("a client certificate of the cluster CA is required")]
    NoCertificate,
    /// The certificate does not parse.
    #[error("the client certificate cannot be read: {0}")]
    BadCertificate(String),
    /// No `spiffe://mailraft/` URI SAN.
    #[error("the client certificate names no mailraft role (a URI SAN {URI_PREFIX}<node|frontend|operator>/<name>)")]
    NoRole,
    /// More than one role URI.
    #[error("the client certificate names more than one mailraft role")]
    AmbiguousRole,
    /// A role URI that does not parse.
    #[error("the client certificate's role {0:?} is not node/<id>, frontend/<name> or operator/<name>")]
    BadRole(String),
    /// A valid role that may not call this service.
    #[error("{service} requires {needs}; the caller is {caller}")]
    Forbidden {
        /// The service called.
        service: &'static str,
        /// Who may call it.
        needs: &'static str,
        /// Who called.
        caller: String,
    },
    /// A node certificate of a node that a membership change removed from the cluster.
    #[error("node {0} was removed from this cluster; its certificate may not call {1} any more")]
    RetiredNode(u64, &'static str),
    /// The list of retired nodes could not be read, so the caller could not be checked.
    #[error("cannot check the caller against the removed nodes: {0}")]
    Unchecked(String),
    /// A Raft message whose `from_node` is not the node of the sender's certificate.
    #[error("node {cert} may not send raft messages as node {claimed}")]
    WrongSender {
        /// The node id in the certificate.
        cert: u64,
        /// The `from_node` of the message.
        claimed: u64,
    },
}

impl AuthzError {
    /// Bounded metric label.
    fn reason(&self) -> &'static str {
        match self {
            AuthzError::NoCertificate => "no_certificate",
            AuthzError::BadCertificate(_) => "bad_certificate",
            AuthzError::NoRole | AuthzError::AmbiguousRole | AuthzError::BadRole(_) => "no_role",
            AuthzError::Forbidden { .. } => "wrong_role",
            AuthzError::WrongSender { .. } => "wrong_sender",
            AuthzError::RetiredNode(..) => "retired_node",
            AuthzError::Unchecked(_) => "unchecked",
        }
    }
}

/// The wire form of a refusal: the one mapping of [`AuthzError`] to a gRPC status.
impl From<AuthzError> for Status {
    fn from(e: AuthzError) -> Status {
        let (mut status, code) = match e {
            AuthzError::NoCertificate => (Status::unauthenticated(e.to_string()), "UNAUTHENTICATED"),
            // A local read failed: the caller may retry (elsewhere), it was not judged.
            AuthzError::Unchecked(_) => (Status::unavailable(e.to_string()), "UNAVAILABLE"),
            _ => (Status::permission_denied(e.to_string()), "PERMISSION_DENIED"),
        };
        status.metadata_mut().insert(CODE_KEY, MetadataValue::from_static(code));
        status
    }
}

/// Who is calling, as established by the interceptor; in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No TLS on this listener: nothing is known (loopback development and tests only).
    Plaintext,
    /// A verified certificate with this role.
    Verified(Role),
}

/// A gRPC service of the node, as far as authorization is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `mailraft.v1.Storage` (including Watch).
    Storage,
    /// `mailraft.v1.Raft`.
    Raft,
    /// `mailraft.v1.Admin`.
    Admin,
    /// `grpc.health.v1.Health`.
    Health,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Storage => "Storage",
            Service::Raft => "Raft",
            Service::Admin => "Admin",
            Service::Health => "Health",
        }
    }

    /// Who may call the service, for messages.
    fn needs(self) -> &'static str {
        match self {
            Service::Storage => "a frontend or node certificate",
            Service::Raft => "a node certificate",
            Service::Admin => "an operator certificate",
            Service::Health => "a certificate with a mailraft role",
        }
    }

    /// The table in the module docs.
    fn allows(self, role: &Role) -> bool {
        matches!(
            (self, role),
            (Service::Storage, Role::Frontend(_) | Role::Node(_))
                | (Service::Raft, Role::Node(_))
                | (Service::Admin, Role::Operator(_))
                | (Service::Health, _)
        )
    }
}

/// The ids of the nodes removed from the cluster, as this node has applied them.
pub type RetiredNodes = Arc<dyn Fn() -> Result<BTreeSet<u64>, String> + Send + Sync>;

/// Authorizes every call of one service (see the module docs).
#[derive(Clone)]
pub struct Authz {
    service: Service,
    /// False on a plaintext listener.
    enforce: bool,
    /// Refuses node certificates of these ids, when set.
    retired: Option<RetiredNodes>,
}

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authz")
            .field("service", &self.service)
            .field("enforce", &self.enforce)
            .field("refuses_retired", &self.retired.is_some())
            .finish()
    }
}

impl Authz {
    /// The interceptor for `service`; `enforce` is false only without TLS.
    pub fn new(service: Service, enforce: bool) -> Self {
        Authz { service, enforce, retired: None }
    }

    /// Also refuses node certificates whose id `retired` lists (one point read per call from a
    /// node certificate; other roles are not looked up).
    pub fn refusing_retired(mut self, retired: RetiredNodes) -> Self {
        self.retired = Some(retired);
        self
    }

    /// The caller of a request whose first peer certificate (if any) is `leaf`.
    pub fn check(&self, leaf: Option<&[u8]>) -> Result<Caller, AuthzError> {
        if !self.enforce {
            return Ok(Caller::Plaintext);
        }
        let role = role_of(leaf.ok_or(AuthzError::NoCertificate)?)?;
        if !self.service.allows(&role) {
            return Err(AuthzError::Forbidden {
                service: self.service.name(),
                needs: self.service.needs(),
                caller: role.uri(),
            });
        }
        if let (Role::Node(id), Some(retired)) = (&role, &self.retired)
            && retired().map_err(AuthzError::Unchecked)?.contains(id)
        {
            return Err(AuthzError::RetiredNode(*id, self.service.name()));
        }
        Ok(Caller::Verified(role))
    }
}

impl tonic::service::Interceptor for Authz {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let certs = request.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        match self.check(leaf) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err(e) => Err(refuse(self.service, request.remote_addr(), e)),
        }
    }
}

/// Counts and logs a refusal and turns it into its status.
fn refuse(service: Service, peer: Option<std::net::SocketAddr>, e: AuthzError) -> Status {
    crate::metrics::authz_denied(service.name(), e.reason());
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    tracing::warn!(service = service.name(), %peer, reason = e.reason(), error = %e, "grpc call refused");
    Status::from(e)
}

/// The Raft service's check that a message's `from_node` is the node its certificate names.
pub fn check_sender(caller: Option<&Caller>, from_node: u64) -> Result<(), Status> {
    match caller {
        Some(Caller::Verified(Role::Node(cert))) if *cert != from_node => {
            Err(refuse(Service::Raft, None, AuthzError::WrongSender { cert: *cert, claimed: from_node }))
        }
        _ => Ok(()),
    }
}

/// The node id of a verified node caller, `None` for any other caller.
pub fn caller_node(caller: Option<&Caller>) -> Option<u64> {
    match caller {
        Some(Caller::Verified(Role::Node(id))) => Some(*id),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*uri).unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn role_uris_round_trip() {
        for role in [Role::Node(7), Role::Frontend("imap-1".into()), Role::Operator("alice".into())] {
            assert_eq!(Role::parse_uri(&role.uri()), Some(Ok(role.clone())));
            assert_eq!(role_of(&cert_with_uris(&[&role.uri()])), Ok(role));
        }
        assert_eq!(Role::parse_uri("spiffe://other/node/1"), None);
        for bad in ["node/0", "node/01", "node/+1", "node/x", "root/a", "frontend/a/b", "operator/", "frontend/a b"] {
            let uri = format!("{URI_PREFIX}{bad}");
            assert!(matches!(Role::parse_uri(&uri), Some(Err(AuthzError::BadRole(_)))), "{uri}");
        }
    }

    #[test]
    fn a_certificate_needs_exactly_one_role() {
        assert_eq!(role_of(&cert_with_uris(&[])), Err(AuthzError::NoRole));
        assert_eq!(role_of(&cert_with_uris(&["https://example.org/x"])), Err(AuthzError::NoRole));
        let two = cert_with_uris(&["spiffe://mailraft/node/1", "spiffe://mailraft/operator/x"]);
        assert_eq!(role_of(&two), Err(AuthzError::AmbiguousRole));
        assert!(matches!(role_of(b"not a certificate"), Err(AuthzError::BadCertificate(_))));
    }

    #[test]
    fn each_service_admits_its_roles_only() {
        let (node, frontend, operator) = (Role::Node(1), Role::Frontend("f".into()), Role::Operator("o".into()));
        let allowed = |service: Service, role: &Role| {
            Authz::new(service, true).check(Some(&cert_with_uris(&[&role.uri()]))).is_ok()
        };
        assert!(allowed(Service::Raft, &node));
        assert!(!allowed(Service::Raft, &frontend) && !allowed(Service::Raft, &operator));
        assert!(allowed(Service::Storage, &node) && allowed(Service::Storage, &frontend));
        assert!(!allowed(Service::Storage, &operator));
        assert!(allowed(Service::Admin, &operator));
        assert!(!allowed(Service::Admin, &node) && !allowed(Service::Admin, &frontend));
        assert!(allowed(Service::Health, &frontend));
        assert_eq!(Authz::new(Service::Admin, true).check(None), Err(AuthzError::NoCertificate));
        assert_eq!(Authz::new(Service::Admin, false).check(None), Ok(Caller::Plaintext));
    }

    #[test]
    fn a_retired_node_certificate_is_refused_where_the_list_is_checked() {
        let retired: RetiredNodes = Arc::new(|| Ok(BTreeSet::from([4])));
        let storage = Authz::new(Service::Storage, true).refusing_retired(retired);
        let cert = |role: Role| cert_with_uris(&[&role.uri()]);
        assert_eq!(storage.check(Some(&cert(Role::Node(4)))), Err(AuthzError::RetiredNode(4, "Storage")));
        assert_eq!(storage.check(Some(&cert(Role::Node(3)))), Ok(Caller::Verified(Role::Node(3))));
        let frontend = Role::Frontend("f".into());
        assert_eq!(storage.check(Some(&cert(frontend.clone()))), Ok(Caller::Verified(frontend)));
        let refused = Status::from(storage.check(Some(&cert(Role::Node(4)))).unwrap_err());
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("node 4 was removed"), "{}", refused.message());
        // Unreadable list: refused as unavailable, not let through.
        let broken = Authz::new(Service::Storage, true).refusing_retired(Arc::new(|| Err("disk".into())));
        let refused = Status::from(broken.check(Some(&cert(Role::Node(3)))).unwrap_err());
        assert_eq!(refused.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn a_node_speaks_only_for_itself() {
        let node3 = Caller::Verified(Role::Node(3));
        assert!(check_sender(Some(&node3), 3).is_ok());
        let refused = check_sender(Some(&node3), 4).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(check_sender(Some(&Caller::Plaintext), 4).is_ok());
    }
}
