//! Where `create-user` and `set-password` get the password: stdin (the first line), or a file
//! given with `--password-file` (a mounted Kubernetes or compose secret, a file from a password
//! manager). Either way it never appears in the process list or shell history.
//!
//! A file holds the password alone: trailing line endings are removed (`echo pw > file` works),
//! anything else is kept, and a file with more than one line or none is refused, so a wrong file
//! (a certificate, a config) is not silently taken as a password. A file other users may read is
//! accepted with a warning on stderr: Kubernetes mounts Secrets mode 0644 unless told otherwise,
//! and refusing would break exactly the jobs this option is for.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Largest password file read; a password is a line, not a document.
const MAX_FILE_BYTES: u64 = 4096;

/// The password from `file`, or else from the first line of stdin.
pub(super) fn read(file: Option<&Path>) -> Result<String> {
    match file {
        Some(path) => from_file(path),
        None => from_stdin(),
    }
}

/// First line of stdin, without its line ending.
fn from_stdin() -> Result<String> {
    eprintln!("password (read from stdin):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("read password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// The password in `path`; see the module documentation.
fn from_file(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("open password file {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("stat password file {}", path.display()))?;
    if !meta.is_file() {
        bail!("password file {} is not a regular file", path.display());
    }
    if let Some(warning) = exposure_warning(path, &meta) {
        eprintln!("{warning}");
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("read password file {}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        bail!("password file {} is larger than {MAX_FILE_BYTES} bytes: not a password", path.display());
    }
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("password file {} is not UTF-8", path.display()))?;
    parse(&text).with_context(|| format!("password file {}", path.display()))
}

/// The password in a file's text: trailing line endings removed, one line, not empty.
fn parse(text: &str) -> Result<String> {
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("empty password");
    }
    if password.contains(['\r', '\n']) {
        bail!("more than one line: a password file holds the password alone");
    }
    Ok(password.to_owned())
}

/// A warning when users other than the owner (and its group) may read the file.
fn exposure_warning(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then(|| {
        format!(
            "warning: password file {} is readable by every user (mode {mode:04o}); `chmod 600` it \
             (Kubernetes: defaultMode 0400 on the Secret volume)",
            path.display()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trailing_line_endings_are_removed_and_nothing_else() {
        assert_eq!(parse("s3cret\n").unwrap(), "s3cret");
        assert_eq!(parse("s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(parse("s3cret").unwrap(), "s3cret");
        assert_eq!(parse(" spaced pw \n").unwrap(), " spaced pw ");
    }

    #[test]
    fn empty_or_multi_line_files_are_refused() {
        assert!(parse("\n").is_err());
        assert!(parse("").is_err());
        assert!(parse("one\ntwo\n").is_err());
    }

    #[test]
    fn world_readable_files_get_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(exposure_warning(&path, &std::fs::metadata(&path).unwrap()).is_none());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = exposure_warning(&path, &std::fs::metadata(&path).unwrap()).unwrap();
        assert!(w.contains("0644"), "{w}");
        assert_eq!(from_file(&path).unwrap(), "pw");
    }
}
