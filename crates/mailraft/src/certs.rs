//! `mailraft certs`: a cluster CA and the certificates it issues to storage nodes, front-ends and
//! operators, as files in one directory (what `mailraft dev` and the test harness use too).
//!
//! Layout of the directory (Kubernetes secrets or cert-manager can mount the same names):
//! - `ca.pem`, `ca-key.pem`: the cluster CA (ECDSA P-256, 10 years). Every node and client trusts
//!   only this CA for gRPC. The key stays with whoever issues certificates.
//! - `<name>.pem`, `<name>-key.pem` with `<name>` = `node-<id>`, `frontend-<name>` or
//!   `operator-<name>`: a certificate (2 years) and its key. Each names its role in one URI SAN
//!   (`spiffe://mailraft/node/<id>`, …; see `mailraft_server::authz`). Node certificates are
//!   for servers and clients and carry the DNS names / IP addresses given with `--san` (the hosts
//!   in the URLs others use to reach the node); front-end and operator certificates are for
//!   clients only (extended key usage clientAuth), so they cannot pose as a storage node.
//!
//! Keys are written 0600 and the directory 0700. Issuing is idempotent: an existing certificate
//! with the same role and names, signed by this CA and valid for at least [`RENEW_BEFORE_DAYS`]
//! more days, is kept; an expiring one is renewed; one with other names is an error unless
//! `force` (then it is replaced).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mailraft_server::authz::{Role, role_of};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// File names of the CA.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key.
pub const CA_KEY: &str = "ca-key.pem";
/// A CA is valid this long.
const CA_DAYS: i64 = 3650;
/// An issued certificate is valid this long.
const LEAF_DAYS: i64 = 730;
/// A certificate expiring within this many days is renewed when asked for again.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// A certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Its role (URI SAN).
    pub role: Role,
    /// DNS names and IP addresses (only meaningful for nodes, which are servers).
    pub sans: Vec<String>,
}

impl Leaf {
    /// A storage node's certificate, valid for the hosts in `sans`.
    pub fn node(id: u64, sans: &[String]) -> Leaf {
        Leaf { role: Role::Node(id), sans: sans.to_vec() }
    }

    /// A front-end's client certificate.
    pub fn frontend(name: &str) -> Leaf {
        Leaf { role: Role::Frontend(name.to_owned()), sans: Vec::new() }
    }

    /// An operator's client certificate.
    pub fn operator(name: &str) -> Leaf {
        Leaf { role: Role::Operator(name.to_owned()), sans: Vec::new() }
    }

    /// `node-<id>`, `frontend-<name>` or `operator-<name>`.
    pub fn stem(&self) -> String {
        match &self.role {
            Role::Node(id) => format!("node-{id}"),
            Role::Frontend(name) => format!("frontend-{name}"),
            Role::Operator(name) => format!("operator-{name}"),
        }
    }

    fn is_server(&self) -> bool {
        matches!(self.role, Role::Node(_))
    }
}

/// Where a certificate and its key are.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// False when an existing certificate was kept.
    pub created: bool,
}

/// The certificate and key paths of `stem` in `dir`.
pub fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}-key.pem")))
}

/// Creates the CA in `dir` unless it exists; returns whether it was created.
pub fn ensure_ca(dir: &Path) -> Result<bool> {
    create_private_dir(dir)?;
    let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(false),
        (false, false) => {}
        _ => bail!("{} holds only half of a CA ({CA_CERT} and {CA_KEY} go together)", dir.display()),
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // A random suffix tells the CAs of different clusters apart in error messages.
    dn.push(DnType::CommonName, format!("Mailraft cluster CA {:08x}", rand::random::<u32>()));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, CA_DAYS);
    let key_pair = KeyPair::generate().context("generate CA key")?;
    let ca = params.self_signed(&key_pair).context("self-sign CA")?;
    write_private(&key, key_pair.serialize_pem().as_bytes())?;
    write_public(&cert, ca.pem().as_bytes())?;
    Ok(true)
}

/// Issues `leaf` into `dir` (creating the CA first if needed), unless an equal one is there; see
/// the module docs.
pub fn ensure_leaf(dir: &Path, leaf: &Leaf, force: bool) -> Result<Issued> {
    if Role::parse_uri(&leaf.role.uri()) != Some(Ok(leaf.role.clone())) {
        bail!("{:?} is not a valid name (letters, digits, '-', '_', '.'; at most 64)", leaf.stem());
    }
    ensure_ca(dir)?;
    let (cert_path, key_path) = paths(dir, &leaf.stem());
    let ca_pem = std::fs::read_to_string(dir.join(CA_CERT)).with_context(|| format!("read {CA_CERT}"))?;
    let issued = |created| Issued { ca: dir.join(CA_CERT), cert: cert_path.clone(), key: key_path.clone(), created };
    if cert_path.exists() && key_path.exists() && !force {
        let existing = std::fs::read_to_string(&cert_path).with_context(|| format!("read {}", cert_path.display()))?;
        match check_existing(&existing, &ca_pem, leaf)? {
            Existing::Keep => return Ok(issued(false)),
            Existing::Renew => {}
            Existing::Differs(why) => bail!(
                "{} exists but {why}; delete it (or pass --force) to issue a new one",
                cert_path.display()
            ),
        }
    }
    let ca_key_pem = std::fs::read_to_string(dir.join(CA_KEY)).with_context(|| format!("read {CA_KEY}"))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("parse CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("parse CA certificate")?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, leaf.role.uri());
    params.distinguished_name = dn;
    params.subject_alt_names.push(SanType::URI(leaf.role.uri().try_into().context("role URI")?));
    for san in &leaf.sans {
        params.subject_alt_names.push(match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(san.as_str().try_into().with_context(|| format!("invalid DNS name {san:?}"))?),
        });
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if leaf.is_server() {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_DAYS);
    let key_pair = KeyPair::generate().context("generate key")?;
    let cert = params.signed_by(&key_pair, &issuer).context("sign certificate")?;
    write_private(&key_path, key_pair.serialize_pem().as_bytes())?;
    write_public(&cert_path, cert.pem().as_bytes())?;
    Ok(issued(true))
}

/// What to do with a certificate that is already there.
enum Existing {
    Keep,
    Renew,
    Differs(String),
}

fn check_existing(cert_pem: &str, ca_pem: &str, leaf: &Leaf) -> Result<Existing> {
    let der = pem_der(cert_pem)?;
    let ca_der = pem_der(ca_pem)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| anyhow::anyhow!("parse certificate: {e}"))?;
    let (_, ca) = X509Certificate::from_der(&ca_der).map_err(|e| anyhow::anyhow!("parse CA: {e}"))?;
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Ok(Existing::Differs("it was not issued by this directory's CA".into()));
    }
    match role_of(&der) {
        Ok(role) if role == leaf.role => {}
        Ok(role) => return Ok(Existing::Differs(format!("it is for {role}"))),
        Err(e) => return Ok(Existing::Differs(e.to_string())),
    }
    let have = sans_of(&cert)?;
    let want: BTreeSet<String> = leaf.sans.iter().map(|s| normalize_san(s)).collect();
    if have != want {
        return Ok(Existing::Differs(format!("it is valid for {have:?}, not {want:?}")));
    }
    match cert.validity().time_to_expiration() {
        Some(left) if left.whole_days() >= RENEW_BEFORE_DAYS => Ok(Existing::Keep),
        _ => Ok(Existing::Renew),
    }
}

/// The DNS and IP SANs of a certificate, as text.
fn sans_of(cert: &X509Certificate<'_>) -> Result<BTreeSet<String>> {
    let ext = cert.subject_alternative_name().map_err(|e| anyhow::anyhow!("read SANs: {e}"))?;
    let mut out = BTreeSet::new();
    for name in ext.iter().flat_map(|e| e.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(d) => {
                out.insert(d.to_ascii_lowercase());
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                    _ => None,
                };
                if let Some(ip) = ip {
                    out.insert(ip.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn normalize_san(san: &str) -> String {
    match san.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => san.to_ascii_lowercase(),
    }
}

fn pem_der(pem: &str) -> Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| anyhow::anyhow!("PEM: {e}"))?;
    Ok(cert.to_vec())
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // A little back-dating absorbs clock skew between the machines.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    Ok(())
}

/// Writes a key: readable by its owner only, replaced atomically so a reader never sees half.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, 0o600)
}

fn write_public(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, 0o644)
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    // A leftover temp file (ours from a crash, or planted by someone else in a shared directory)
    // is removed, and the new one is created exclusively: `mode` only applies to a file that
    // open() creates, so reusing an existing one could keep its wider mode for a key.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove stale {}", tmp.display()));
        }
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// `mailraft dev`'s certificates in `dir`: the CA, nodes `1..=nodes` valid for loopback, a
/// front-end and the `operator-admin` certificate `mailraft admin --tls-dir` uses by default.
pub fn dev_set(dir: &Path, nodes: u64) -> Result<DevCerts> {
    let loopback: Vec<String> = ["127.0.0.1", "::1", "localhost"].map(String::from).to_vec();
    // Dev owns the directory: a certificate that no longer matches is simply reissued.
    let ensure = |leaf: Leaf| ensure_leaf(dir, &leaf, false).or_else(|_| ensure_leaf(dir, &leaf, true));
    let node_certs = (1..=nodes).map(|id| ensure(Leaf::node(id, &loopback))).collect::<Result<Vec<_>>>()?;
    let frontend = ensure(Leaf::frontend("dev"))?;
    let operator = ensure(Leaf::operator(DEFAULT_OPERATOR))?;
    Ok(DevCerts { dir: dir.to_path_buf(), nodes: node_certs, frontend, operator })
}

/// The operator name `mailraft admin --tls-dir` looks for by default.
pub const DEFAULT_OPERATOR: &str = "admin";

/// What [`dev_set`] made.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The directory.
    pub dir: PathBuf,
    /// Node `i + 1`'s certificate.
    pub nodes: Vec<Issued>,
    /// The front-end's.
    pub frontend: Issued,
    /// The operator's.
    pub operator: Issued,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn issues_once_keeps_refuses_changes_and_protects_keys() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let leaf = Leaf::node(3, &["127.0.0.1".into(), "node3.example".into()]);
        let first = ensure_leaf(&certs, &leaf, false).unwrap();
        assert!(first.created);
        let pem = std::fs::read(&first.cert).unwrap();
        assert_eq!(role_of(&pem_der(&String::from_utf8(pem.clone()).unwrap()).unwrap()).unwrap(), Role::Node(3));
        for key in [&first.key, &certs.join(CA_KEY)] {
            assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600, "{}", key.display());
        }
        assert_eq!(std::fs::metadata(&certs).unwrap().permissions().mode() & 0o777, 0o700);

        let again = ensure_leaf(&certs, &leaf, false).unwrap();
        assert!(!again.created);
        assert_eq!(std::fs::read(&again.cert).unwrap(), pem, "an equal certificate is kept");

        let other = Leaf::node(3, &["10.0.0.3".into()]);
        let err = ensure_leaf(&certs, &other, false).unwrap_err().to_string();
        assert!(err.contains("valid for"), "{err}");
        assert!(ensure_leaf(&certs, &other, true).unwrap().created);

        // A certificate of another CA is not taken for one of ours.
        let foreign = tempfile::tempdir().unwrap();
        let theirs = ensure_leaf(foreign.path(), &Leaf::operator("x"), false).unwrap();
        std::fs::copy(&theirs.cert, certs.join("operator-x.pem")).unwrap();
        std::fs::copy(&theirs.key, certs.join("operator-x-key.pem")).unwrap();
        let err = ensure_leaf(&certs, &Leaf::operator("x"), false).unwrap_err().to_string();
        assert!(err.contains("not issued by"), "{err}");
    }
}
