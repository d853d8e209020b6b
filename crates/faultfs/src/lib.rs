//! faultfs: a FUSE file system that loses what was not fsynced, for durability tests (the idea
//! of Jepsen's lazyfs, written here because tests may not fetch it).
//!
//! [`Mount::new`] mounts a view of a backing directory. Programs using the mount see an ordinary
//! POSIX file system, but nothing they do reaches the backing directory (which stands for the
//! disk) until they make it durable the way POSIX says they must:
//! - **File contents** (write, truncate, fallocate) stay in memory until `fsync`/`fdatasync` of
//!   that file (any descriptor of it), or a write through an `O_SYNC`/`O_DSYNC` descriptor.
//! - **Names** (create, mkdir, symlink, link, unlink, rmdir, rename) stay in memory until
//!   `fsync` of the directory holding them. A file whose contents were synced but whose
//!   directory was not is gone after a power cut; a name that was synced for a file that never
//!   was is an empty file; a file unlinked but whose directory was not synced comes back with
//!   its last synced contents. A rename touches two entries and each becomes durable with its own
//!   directory (rename within one directory is atomic). A directory has one durable name: the
//!   fsync of the directory it was moved into moves it on disk.
//!
//! [`Mount::power_loss`] is the power cut: it unmounts and drops everything that was not synced,
//! so the backing directory then holds exactly the durable state. Mounting it again is the
//! reboot. [`Mount::cut_power`] fixes the moment of the cut before the programs are killed (from
//! then on every request fails with EIO), so several mounts can lose power at once.
//! [`Mount::unsynced`] and [`Mount::unsynced_files`] tell what a cut would lose, and [`Mount::set_sync_delay`] makes the disk
//! slow to sync.
//!
//! # What it does not simulate
//! - **Torn or reordered writes.** A sync is all or nothing and a power cut loses whole unsynced
//!   writes; it never leaves half a page, a prefix of a write, or an old page beside a new one
//!   within a file. Synced data never rots, and fsync never fails (no "fsyncgate" EIO).
//! - **Kinder real file systems.** ext4 and XFS journal a rename as one, often commit a new
//!   file's name with its fsync, and ext4 flushes data before some renames (`auto_da_alloc`).
//!   This file system gives only what POSIX promises, so it may lose what a real one keeps.
//! - **Other ways to sync.** `sync(2)`, `syncfs(2)` and `sync_file_range(2)` reach no FUSE file
//!   system and make nothing durable here; neither does close(2) or unmount.
//! - **Metadata beyond names and sizes.** Only the mode becomes durable (with the file's fsync or
//!   its first durable name); owner and times live in memory; xattrs are not supported; only
//!   regular files, directories and symlinks exist; file locks are the kernel's, local to it.
//! - **The disk itself.** The backing directory is not fsynced: a real power cut of this machine
//!   is not what is being simulated. Unsynced data is held in memory in 4 KiB pages, and one
//!   lock serialises every request: this is for tests of megabytes, not a production tool.
//! - **Stable inode numbers.** They are allocated afresh at every mount.
//!
//! Mounting needs `/dev/fuse` and the `fusermount3` helper (Debian package `fuse3`), which also
//! detaches the mount if the process dies without unmounting. Tests that need it fail without
//! `/dev/fuse` unless `MAILRAFT_ALLOW_SKIP=1` ([`skip_without_fuse`]).

mod durable;
mod fuse;
mod mount;
mod overlay;
mod tree;

pub use durable::{Unsynced, UnsyncedFile};
pub use mount::{ALLOW_SKIP_ENV, Error, Mount, available, skip_without_fuse};
pub use tree::Syncs;
