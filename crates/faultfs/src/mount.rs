//! Mounting, the power cut (unmount and drop), and unmounting on drop.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::durable::{Unsynced, UnsyncedFile};
use crate::fuse::{FaultFs, Shared};
use crate::tree::{Syncs, Tree, UNLINKED_DIR};

/// How long an unmount may take (retrying while busy) before the mount is detached lazily.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of mounting and unmounting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `/dev/fuse` or no `fusermount3`.
    #[error("FUSE is not available: {0}")]
    Unavailable(String),
    /// The backing directory could not be read.
    #[error("backing directory {path}: {source}")]
    Backing {
        /// The backing directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The kernel refused the mount.
    #[error("mount at {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The unmount failed or did not finish in time (the mount was then detached lazily).
    #[error("unmount of {path}: {reason}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// Checks that this machine can mount FUSE file systems; the error says what is missing.
pub fn available() -> Result<(), Error> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::Unavailable("/dev/fuse does not exist".into()));
    }
    if Command::new("fusermount3").arg("-V").output().is_err() {
        return Err(Error::Unavailable("fusermount3 is not installed (Debian package fuse3)".into()));
    }
    Ok(())
}

/// Set to `1` to let the FUSE tests pass as skipped on a machine without `/dev/fuse`.
pub const ALLOW_SKIP_ENV: &str = "MAILRAFT_ALLOW_SKIP";

/// For tests: whether to skip a test that needs FUSE, naming `what` in the message. Skipping is
/// opt-in: without `/dev/fuse` this panics (a skipped durability test must never look like a
/// passed one, and a CI machine without FUSE must fail loudly), unless [`ALLOW_SKIP_ENV`] is `1`,
/// in which case it says loudly that `what` was not tested and returns `true`. Everything else
/// that goes wrong later (no fusermount3, a refused mount) is a failure, never a skip.
pub fn skip_without_fuse(what: &str) -> bool {
    skip_decision(Path::new("/dev/fuse").exists(), std::env::var(ALLOW_SKIP_ENV).ok().as_deref(), what)
}

/// [`skip_without_fuse`] without the environment, for its unit test.
fn skip_decision(have_fuse: bool, allow_skip: Option<&str>, what: &str) -> bool {
    if have_fuse {
        return false;
    }
    assert!(
        allow_skip == Some("1"),
        "/dev/fuse does not exist, so {what} cannot run; install FUSE (scripts/setup.sh), or set \
         {ALLOW_SKIP_ENV}=1 to skip it knowingly"
    );
    eprintln!(
        "\n!!!!!!!! SKIPPED ({ALLOW_SKIP_ENV}=1): /dev/fuse does not exist, so {what} was NOT tested !!!!!!!!\n"
    );
    true
}

/// A mounted faultfs. Dropping it unmounts (which, like [`Mount::power_loss`], keeps only what
/// was synced).
pub struct Mount {
    session: Option<BackgroundSession>,
    shared: Arc<Shared>,
    mountpoint: PathBuf,
    backing: PathBuf,
    /// `/sys/fs/fuse/connections/<id>`: aborting it ends a mount that will not unmount.
    connection: Option<u64>,
    /// Unmounts lazily once this process is gone (see [`watchdog`]).
    watchdog: Option<Child>,
}

/// A shell that waits for end of file on its stdin, whose other end only this process holds
/// (std opens it close-on-exec), then detaches the mount: a test killed by its harness leaves
/// no dead mount behind. fusermount3's own `auto_unmount` did not unmount fuser's mounts here.
fn watchdog(mountpoint: &Path) -> io::Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg("read -r _; exec fusermount3 -u -z -q \"$0\"")
        .arg(mountpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

impl Mount {
    /// Mounts a view of `backing` (whose contents are the durable state) at `mountpoint`.
    ///
    /// The mount is also removed if this process dies without unmounting, so a killed test
    /// leaves no dead mount behind.
    pub fn new(backing: &Path, mountpoint: &Path) -> Result<Mount, Error> {
        available()?;
        let backing = backing
            .canonicalize()
            .map_err(|source| Error::Backing { path: backing.to_path_buf(), source })?;
        let tree = Tree::load(&backing).map_err(|source| Error::Backing { path: backing.clone(), source })?;
        let shared = Shared::new(tree);
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("faultfs".into()),
            MountOption::Subtype("faultfs".into()),
            // The kernel checks permissions from the attributes, as on a disk file system.
            MountOption::DefaultPermissions,
        ];
        // Programs under test may run as other users than the test (root only may allow that).
        config.acl = if nix::unistd::geteuid().is_root() { SessionACL::All } else { SessionACL::Owner };
        let session = fuser::spawn_mount(FaultFs { shared: shared.clone() }, mountpoint, &config)
            .map_err(|source| Error::Mount { path: mountpoint.to_path_buf(), source })?;
        let connection = std::fs::metadata(mountpoint).ok().map(|m| nix::sys::stat::minor(m.dev()));
        let mut mount = Mount {
            session: Some(session),
            shared,
            mountpoint: mountpoint.to_path_buf(),
            backing,
            connection,
            watchdog: None,
        };
        let watchdog = watchdog(mountpoint).map_err(|source| Error::Mount { path: mountpoint.to_path_buf(), source })?;
        mount.watchdog = Some(watchdog);
        Ok(mount)
    }

    /// Where the file system is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// What a power cut now would lose.
    pub fn unsynced(&self) -> Unsynced {
        self.shared.lock().unsynced()
    }

    /// Which files a power cut now would lose writes of, and how much of each ([`Mount::unsynced`]
    /// by file). After [`Mount::cut_power`] nothing changes any more, so this is what the cut
    /// dropped.
    pub fn unsynced_files(&self) -> Vec<UnsyncedFile> {
        self.shared.lock().unsynced_files()
    }

    /// fsync calls seen so far.
    pub fn syncs(&self) -> Syncs {
        self.shared.lock().syncs
    }

    /// Cuts the power at this instant: from now on every request on the mount fails with EIO,
    /// so nothing more becomes durable, however long the programs using it take to die. Several
    /// processes (the nodes of a cluster) sharing the mount lose power at the same moment.
    pub fn cut_power(&self) {
        self.shared.cut();
    }

    /// Cuts the power only if `now` holds for the files a cut now would lose writes of; the check
    /// and the cut happen under one lock, so nothing is synced in between. Returns those files
    /// (what the cut drops) if it cut. Lets a test cut exactly while writes are unsynced.
    pub fn cut_power_if(&self, now: impl FnOnce(&[UnsyncedFile]) -> bool) -> Option<Vec<UnsyncedFile>> {
        let mut tree = self.shared.lock();
        let files = tree.unsynced_files();
        if !now(&files) {
            return None;
        }
        tree.power_cut = true;
        drop(tree);
        self.shared.power_cut.notify_all();
        Some(files)
    }

    /// A slow disk: from now on every fsync (and `O_SYNC` write) waits `delay` before it syncs.
    /// Requests are served one at a time, so the rest of the mount waits too, as behind a disk
    /// busy flushing. A power cut ends the wait (and the sync fails).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.shared.lock().sync_delay = delay;
    }

    /// The power cut (if [`Mount::cut_power`] did not already do it), then the unmount, which
    /// drops every unsynced write and name; returns what was lost. Afterwards the backing
    /// directory holds exactly what had been made durable; mount it again to go on. Processes
    /// using the mount must be killed first, or the unmount fails.
    pub fn power_loss(mut self) -> Result<Unsynced, Error> {
        self.cut_power();
        let lost = self.unsynced();
        self.unmount()?;
        // Contents without a durable name die with the power.
        let unlinked = self.backing.join(UNLINKED_DIR);
        if unlinked.exists() {
            std::fs::remove_dir_all(&unlinked)
                .map_err(|source| Error::Backing { path: self.backing.clone(), source })?;
        }
        Ok(lost)
    }

    fn unmount(&mut self) -> Result<(), Error> {
        let result = self.unmount_session();
        // Only now: a watchdog still waiting could otherwise detach the next mount at this path.
        if let Some(mut child) = self.watchdog.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    fn unmount_session(&mut self) -> Result<(), Error> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let path = self.mountpoint.clone();
        let failed = |reason: String| Error::Unmount { path: path.clone(), reason };
        let detached = self.detach();
        if detached.is_err() {
            self.force_unmount();
        }
        // The FUSE thread ends once the kernel has let go of the connection.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(session.join());
        });
        match (detached, rx.recv_timeout(UNMOUNT_TIMEOUT)) {
            (Err(e), _) => Err(failed(format!("{e}; detached lazily instead"))),
            (Ok(()), Ok(Ok(()))) => Ok(()),
            // The unmount succeeded, and the kernel ended the connection with ECONNABORTED
            // instead of ENODEV (fuser 0.18 treats only ENODEV as a clean end): it aborts a
            // connection that still had a request in flight when the mount went away. Either
            // way the file system is gone, which is all an unmount is for. (Seen in CI about one
            // run in three of the power-loss test, under a full parallel test load.)
            (Ok(()), Ok(Err(e))) if e.raw_os_error() == Some(nix::libc::ECONNABORTED) => Ok(()),
            (Ok(()), Ok(Err(e))) => Err(failed(format!("FUSE thread: {e}"))),
            (Ok(()), Err(_)) => {
                self.force_unmount();
                Err(failed(format!("FUSE thread still running {UNMOUNT_TIMEOUT:?} after the unmount")))
            }
        }
    }

    /// Unmounts, retrying while the mount is busy: the kernel releases the files of a process
    /// that just died asynchronously, so an unmount right after a kill can find them still open.
    fn detach(&self) -> Result<(), String> {
        let deadline = Instant::now() + UNMOUNT_TIMEOUT;
        loop {
            let result = if nix::unistd::geteuid().is_root() {
                nix::mount::umount(&self.mountpoint).map_err(|e| e.to_string())
            } else {
                match Command::new("fusermount3").arg("-u").arg("-q").arg(&self.mountpoint).status() {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(format!("fusermount3 -u: {s}")),
                    Err(e) => Err(format!("fusermount3 -u: {e}")),
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::park_timeout(Duration::from_millis(10)),
            }
        }
    }

    /// Aborts the FUSE connection and detaches the mount: open files get errors, nothing waits.
    fn force_unmount(&self) {
        if let Some(id) = self.connection {
            let abort = format!("/sys/fs/fuse/connections/{id}/abort");
            if let Err(e) = std::fs::write(&abort, b"1") {
                tracing::warn!(%abort, error = %e, "faultfs: could not abort the FUSE connection");
            }
        }
        let _ = Command::new("fusermount3").arg("-u").arg("-z").arg("-q").arg(&self.mountpoint).status();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            tracing::warn!(error = %e, "faultfs: unmount on drop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::skip_decision;

    #[test]
    fn skipping_without_fuse_is_opt_in() {
        assert!(!skip_decision(true, None, "x"));
        assert!(!skip_decision(true, Some("1"), "x"));
        assert!(skip_decision(false, Some("1"), "x"));
        for refused in [None, Some("0"), Some(""), Some("true")] {
            let r = std::panic::catch_unwind(|| skip_decision(false, refused, "x"));
            assert!(r.is_err(), "no /dev/fuse and {refused:?} must fail, not skip");
        }
    }
}
