//! Files and directories only this process's user may read.
//!
//! The data directory holds every tenant's mail and the session keys (replicated state, so also
//! in the Raft log and in snapshot files). Permissions are set explicitly instead of trusting the
//! process umask: directories 0700 (which also shields the files RocksDB creates inside with its
//! own 0644), snapshot files 0600. Existing directories and snapshot files from older versions are
//! tightened on open.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of private directories.
#[cfg(unix)]
pub const DIR_MODE: u32 = 0o700;
/// Mode of private files.
#[cfg(unix)]
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) as 0700 from the start, so there is no moment in which a
/// new directory has the umask's mode; an existing one is tightened.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)?;
    restrict(dir, true)
}

/// Options that create a new file as 0600 (the mode only applies at creation).
pub fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options
}

/// Creates (or truncates) `path` for writing as a private file; an existing file is made 0600.
pub fn create_file(path: &Path) -> io::Result<File> {
    let file = file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    restrict(path, false)?;
    Ok(file)
}

/// Makes an existing file 0600; a missing one is fine.
pub fn restrict_file(path: &Path) -> io::Result<()> {
    match restrict(path, false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(unix)]
fn restrict(path: &Path, dir: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if dir { DIR_MODE } else { FILE_MODE };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _dir: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn directories_and_files_are_private_whatever_existed_before() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("a/b");
        create_dir(&dir)?;
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        create_dir(&dir)?;
        assert_eq!(mode(&dir), 0o700, "an existing directory is tightened");

        let file = dir.join("f");
        fs::write(&file, b"x")?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
        create_file(&file)?;
        assert_eq!(mode(&file), 0o600);
        let new = dir.join("g");
        drop(file_options().write(true).create_new(true).open(&new)?);
        assert_eq!(mode(&new), 0o600);
        restrict_file(&dir.join("missing"))?;
        Ok(())
    }
}
