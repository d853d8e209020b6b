//! TLS material: for the IMAP listeners, the configured PEM files, or in `dev` mode a
//! self-signed certificate generated once and kept in the data directory, so clients that pinned
//! it (e.g. `curl --cacert`, mbsync `CertificateFile`) keep working across restarts; for gRPC
//! (`[tls]`, mutual TLS between the tiers) the cluster CA and this process's certificate, for the
//! storage node ([`grpc_bundle`]), the front-end's storage client ([`storage_client`]) and
//! `mailraft admin` ([`admin_client`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use mailraft_frontend::storage::route::StorageTls;
use mailraft_server::TlsBundle;

use crate::config::Config;

/// PEM-encoded certificate chain and private key.
pub struct TlsMaterial {
    /// Certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// Private key (PEM).
    pub key_pem: Vec<u8>,
    /// Where the certificate lives, for the banner.
    pub cert_path: PathBuf,
}

/// Reads a certificate and key from disk.
pub fn load(cert: &Path, key: &Path) -> Result<TlsMaterial> {
    Ok(TlsMaterial {
        cert_pem: std::fs::read(cert).with_context(|| format!("read {}", cert.display()))?,
        key_pem: std::fs::read(key).with_context(|| format!("read {}", key.display()))?,
        cert_path: cert.to_path_buf(),
    })
}

/// Returns `<data_dir>/tls/{cert,key}.pem`, generating a self-signed pair valid for localhost,
/// 127.0.0.1 and ::1 on first use.
pub fn dev_self_signed(data_dir: &Path) -> Result<TlsMaterial> {
    let dir = data_dir.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return load(&cert, &key);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).context("generate self-signed certificate")?;
    let key_pem = generated.signing_key.serialize_pem();
    write_private(&key, key_pem.as_bytes())?;
    std::fs::write(&cert, generated.cert.pem()).with_context(|| format!("write {}", cert.display()))?;
    load(&cert, &key)
}

/// The storage node's gRPC TLS material from `[tls]`, `None` when plaintext is configured.
pub fn grpc_bundle(cfg: &Config) -> Result<Option<Arc<TlsBundle>>> {
    let (Some(ca), Some(cert), Some(key)) = (&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key) else {
        return Ok(None);
    };
    let bundle = TlsBundle::load(ca, cert, key).context("load gRPC TLS material (tls.ca, tls.cert, tls.key)")?;
    Ok(Some(Arc::new(bundle)))
}

/// The front-end's TLS material for its storage connections, `None` when plaintext is configured.
pub fn storage_client(cfg: &Config) -> Result<Option<StorageTls>> {
    let Some(bundle) = grpc_bundle(cfg)? else {
        return Ok(None);
    };
    match bundle.role() {
        Ok(role) => tracing::info!(%role, "calling storage with mutual TLS"),
        Err(e) => bail!("tls.cert: {e}"),
    }
    Ok(Some(StorageTls {
        ca_pem: bundle.ca_pem().to_vec(),
        cert_pem: bundle.cert_pem().to_vec(),
        key_pem: bundle.key_pem().to_vec(),
    }))
}

/// Where `mailraft admin` finds its certificate: explicit files, or `<dir>/ca.pem` and
/// `<dir>/<name>.pem`, `<dir>/<name>-key.pem`.
pub fn admin_client(
    files: Option<(&Path, &Path, &Path)>,
    dir: Option<&Path>,
    name: &str,
) -> Result<Option<TlsBundle>> {
    if let Some((ca, cert, key)) = files {
        return Ok(Some(TlsBundle::load(ca, cert, key)?));
    }
    let default_dir = Path::new("./data/certs");
    let dir = match dir {
        Some(d) => d,
        // Where `mailraft dev` (default data dir) keeps them, if it has run here.
        None if default_dir.join(format!("{name}.pem")).exists() => default_dir,
        None => return Ok(None),
    };
    let ca = dir.join(crate::certs::CA_CERT);
    let (cert, key) = crate::certs::paths(dir, name);
    let bundle = TlsBundle::load(&ca, &cert, &key)
        .with_context(|| format!("load the operator certificate {name} from {}", dir.display()))?;
    Ok(Some(bundle))
}

/// Writes a file readable by its owner only (the private key).
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let a = dev_self_signed(dir.path())?;
        let b = dev_self_signed(dir.path())?;
        assert_eq!(a.cert_pem, b.cert_pem, "second start reuses the certificate");
        assert!(String::from_utf8_lossy(&a.key_pem).contains("PRIVATE KEY"));
        Ok(())
    }
}
