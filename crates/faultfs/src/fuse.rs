//! The FUSE glue: each kernel request locks the tree, runs one operation and replies.
//!
//! Requests are served by one thread (fuser's default), so operations are atomic with respect
//! to each other. The kernel caches attributes and entries for [`TTL`]; that is safe because
//! every change goes through this file system. Files are opened without `direct_io` and without
//! the writeback cache, so every write reaches the tree before write(2) returns and the kernel's
//! page cache only ever holds what the tree holds.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

use crate::tree::{FileNode, FsResult, Ino, Kind, Meta, Tree};

/// How long the kernel may cache attributes and names.
const TTL: Duration = Duration::from_secs(1);

/// The tree and what wakes a slow sync, shared by the FUSE thread and the mount handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub tree: Mutex<Tree>,
    /// Notified by the power cut, which ends every slow sync at once.
    pub power_cut: Condvar,
}

impl Shared {
    pub(crate) fn new(tree: Tree) -> Arc<Shared> {
        Arc::new(Shared { tree: Mutex::new(tree), power_cut: Condvar::new() })
    }

    /// The tree, whatever state the FUSE thread left it in. A panic inside one operation
    /// leaves it as consistent as the operation left it; serving on beats wedging the mount.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts the power: every request fails from now on, and syncs waiting out a delay give up.
    pub(crate) fn cut(&self) {
        self.lock().power_cut = true;
        self.power_cut.notify_all();
    }
}

/// The [`Filesystem`] over the shared tree (shared with the mount handle, which reports what a
/// power cut would lose and cuts the power).
pub(crate) struct FaultFs {
    pub shared: Arc<Shared>,
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn meta(req: &Request, mode: u32, umask: u32) -> Meta {
    Meta::new(mode & !umask, req.uid(), req.gid())
}

impl FaultFs {
    /// The tree, or EIO once the power is cut: a disk without power neither reads nor writes.
    fn live(&self) -> FsResult<MutexGuard<'_, Tree>> {
        let tree = self.shared.lock();
        if tree.power_cut { Err(Errno::EIO) } else { Ok(tree) }
    }

    /// Counts a sync and waits out its simulated slowness without holding the tree (the
    /// power cut must not wait for it); a power cut during the wait means the sync never happens.
    fn slow_sync(&self, dir: bool) -> FsResult<()> {
        let mut tree = self.live()?;
        if dir {
            tree.syncs.dirs += 1;
        } else {
            tree.syncs.files += 1;
        }
        let delay = tree.sync_delay;
        if !delay.is_zero() {
            let (waited, _) = self
                .shared
                .power_cut
                .wait_timeout_while(tree, delay, |t| !t.power_cut)
                .unwrap_or_else(PoisonError::into_inner);
            tree = waited;
        }
        if tree.power_cut { Err(Errno::EIO) } else { Ok(()) }
    }
}

/// Replies with the entry of a just-created inode.
fn entry(tree: &Tree, created: FsResult<Ino>, reply: ReplyEntry) {
    match created.and_then(|ino| tree.attr(ino)) {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

/// The live tree, or the error replied.
macro_rules! live {
    ($fs:ident, $reply:ident) => {
        match $fs.live() {
            Ok(tree) => tree,
            Err(e) => return $reply.error(e),
        }
    };
}

fn empty(result: FsResult<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let tree = live!(self, reply);
        match tree.lookup(parent.0, name).and_then(|ino| tree.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match live!(self, reply).attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut tree = live!(self, reply);
        let result = (|| {
            if let Some(size) = size {
                tree.set_size(ino.0, size)?;
            }
            let node = tree.node_mut(ino.0)?;
            if let Some(mode) = mode {
                node.meta.perm = (mode & 0o7777) as u16;
            }
            if let Some(uid) = uid {
                node.meta.uid = uid;
            }
            if let Some(gid) = gid {
                node.meta.gid = gid;
            }
            tree.set_times(ino.0, atime.map(time), mtime.map(time))?;
            tree.attr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let tree = live!(self, reply);
        match tree.node(ino.0).map(|n| &n.kind) {
            Ok(Kind::Symlink(target)) => reply.data(target.as_os_str().as_encoded_bytes()),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Only regular files: devices, fifos and sockets have no durable contents to simulate.
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let mut tree = live!(self, reply);
        let created = tree.create_file(parent.0, name, meta(req, mode, umask));
        entry(&tree, created, reply);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut tree = live!(self, reply);
        let created = tree.mkdir(parent.0, name, meta(req, mode, umask));
        entry(&tree, created, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(live!(self, reply).unlink(parent.0, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(live!(self, reply).rmdir(parent.0, name), reply);
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let mut tree = live!(self, reply);
        let created = tree.insert(parent.0, link_name, Kind::Symlink(target.to_path_buf()), meta(req, 0o777, 0));
        entry(&tree, created, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        empty(live!(self, reply).rename(parent.0, name, newparent.0, newname, flags), reply);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let mut tree = live!(self, reply);
        let linked = tree.link(ino.0, newparent.0, newname).map(|()| ino.0);
        entry(&tree, linked, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut tree = live!(self, reply);
        let result = match tree.node(ino.0).map(|n| &n.kind) {
            Ok(Kind::File(_)) => tree.open(ino.0),
            Ok(Kind::Dir(_)) => Err(Errno::EISDIR),
            Ok(Kind::Symlink(_)) => Err(Errno::ELOOP),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match live!(self, reply).read(ino.0, offset, u64::from(size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let synced = flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0;
        let result = (|| {
            self.live()?.write(ino.0, offset, data)?;
            // O_SYNC / O_DSYNC: the write is durable when it returns.
            if synced {
                self.slow_sync(false)?;
                self.live()?.sync_file(ino.0)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        empty(live!(self, reply).release(ino.0), reply);
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        if let Err(e) = self.slow_sync(false) {
            return reply.error(e);
        }
        empty(live!(self, reply).sync_file(ino.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut tree = live!(self, reply);
        let result = (|| {
            let listing = tree.list(ino.0)?;
            tree.open(ino.0)?;
            let handle = tree.next_handle;
            tree.next_handle += 1;
            tree.listings.insert(handle, listing);
            Ok(handle)
        })();
        match result {
            Ok(handle) => reply.opened(FileHandle(handle), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut tree = live!(self, reply);
        // A listing is taken at opendir and again at every rewind, so offsets stay stable
        // while entries come and go.
        if offset == 0 {
            match tree.list(ino.0) {
                Ok(listing) => {
                    tree.listings.insert(fh.0, listing);
                }
                Err(e) => return reply.error(e),
            }
        }
        let Some(listing) = tree.listings.get(&fh.0) else { return reply.error(Errno::EBADF) };
        for (i, (child, kind, name)) in listing.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        let mut tree = live!(self, reply);
        tree.listings.remove(&fh.0);
        empty(tree.release(ino.0), reply);
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        if let Err(e) = self.slow_sync(true) {
            return reply.error(e);
        }
        empty(live!(self, reply).sync_dir(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let backing = live!(self, reply).backing.clone();
        match nix::sys::statvfs::statvfs(&backing) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut tree = live!(self, reply);
        let result = (|| {
            let ino = tree.insert(parent.0, name, Kind::File(FileNode::default()), meta(req, mode, umask))?;
            tree.open(ino)?;
            tree.attr(ino)
        })();
        match result {
            Ok(attr) => reply.created(&TTL, &attr, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        empty(live!(self, reply).fallocate(ino.0, offset, length, mode), reply);
    }
}
