//! TLS material for the IMAP listeners: load the configured PEM files, or in `dev` mode generate
//! a self-signed certificate once and keep it in the data directory, so clients that pinned it
//! (e.g. `curl --cacert`, mbsync `CertificateFile`) keep working across restarts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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
