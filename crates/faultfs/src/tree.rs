//! The file system as programs see it (the volatile view): inodes, names, contents and
//! attributes, all changed in memory. What is durable is kept beside it in the same nodes
//! (`Node::links`, `DirNode::durable`, `FileNode::object`) and is only changed by the sync
//! operations in `durable.rs`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::PathBuf;
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo, RenameFlags};

use crate::overlay::Overlay;

/// An inode number; the kernel sees the same numbers.
pub(crate) type Ino = u64;

/// The root directory's inode (FUSE fixes it at 1).
pub(crate) const ROOT: Ino = 1;

/// Directory at the backing root holding the durable contents of files that have no durable
/// name yet; hidden from the mount and emptied whenever the file system starts or loses power.
pub(crate) const UNLINKED_DIR: &str = ".faultfs-unlinked";

/// Result of a file-system operation; the error goes to the kernel as is.
pub(crate) type FsResult<T> = Result<T, Errno>;

/// Attributes kept in memory (not simulated as durable except the mode, see the crate docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

impl Meta {
    pub(crate) fn new(perm: u32, uid: u32, gid: u32) -> Meta {
        let now = SystemTime::now();
        Meta { perm: (perm & 0o7777) as u16, uid, gid, atime: now, mtime: now, ctime: now }
    }

    fn touch(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }
}

/// A regular file.
#[derive(Debug, Default)]
pub(crate) struct FileNode {
    /// The backing file holding the durable contents: at one of the file's durable paths, or in
    /// [`UNLINKED_DIR`] when it has none (`unlinked`). `None` until the file is synced or gets a
    /// durable name: its durable contents are then empty.
    pub object: Option<File>,
    /// The object lives in [`UNLINKED_DIR`].
    pub unlinked: bool,
    /// The contents programs see.
    pub data: Overlay,
}

/// A directory.
#[derive(Debug, Default)]
pub(crate) struct DirNode {
    /// Names programs see.
    pub entries: BTreeMap<OsString, Ino>,
    /// Names that survive a power cut: `entries` as of the last fsync of this directory.
    pub durable: BTreeMap<OsString, Ino>,
    /// The directory holding it in the volatile view (itself for the root).
    pub parent: Ino,
}

/// What an inode is.
#[derive(Debug)]
pub(crate) enum Kind {
    File(FileNode),
    Dir(DirNode),
    /// A symbolic link and its target (immutable, like the real thing).
    Symlink(PathBuf),
}

/// One inode.
#[derive(Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    pub meta: Meta,
    /// Names in the volatile view (0 or 1 for a directory).
    pub nlink: u32,
    /// Open file or directory handles: an unlinked file stays readable and syncable while open.
    pub open: u32,
    /// Durable names: (directory, name) pairs present in that directory's `durable` map.
    pub links: Vec<(Ino, OsString)>,
}

impl Node {
    pub(crate) fn new(kind: Kind, meta: Meta) -> Node {
        Node { kind, meta, nlink: 0, open: 0, links: Vec::new() }
    }

    pub(crate) fn file_type(&self) -> FileType {
        match self.kind {
            Kind::File(_) => FileType::RegularFile,
            Kind::Dir(_) => FileType::Directory,
            Kind::Symlink(_) => FileType::Symlink,
        }
    }
}

/// One entry of a directory listing.
pub(crate) type Listing = Vec<(Ino, FileType, OsString)>;

/// The whole file system.
#[derive(Debug)]
pub(crate) struct Tree {
    pub nodes: HashMap<Ino, Node>,
    pub next_ino: Ino,
    /// The directory that stands for the disk.
    pub backing: PathBuf,
    /// Directory listings taken at `opendir`, by handle.
    pub listings: HashMap<u64, Listing>,
    pub next_handle: u64,
    /// fsync/fdatasync calls on files and on directories since mount.
    pub syncs: Syncs,
    /// Set by [`crate::Mount::cut_power`]: every request fails, nothing changes any more.
    pub power_cut: bool,
    /// How long every fsync takes before it syncs ([`crate::Mount::set_sync_delay`]).
    pub sync_delay: std::time::Duration,
}

/// fsync/fdatasync calls seen since the mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Syncs {
    /// On regular files.
    pub files: u64,
    /// On directories.
    pub dirs: u64,
}

impl Tree {
    pub(crate) fn node(&self, ino: Ino) -> FsResult<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    pub(crate) fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    pub(crate) fn dir(&self, ino: Ino) -> FsResult<&DirNode> {
        match &self.node(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    pub(crate) fn dir_mut(&mut self, ino: Ino) -> FsResult<&mut DirNode> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    pub(crate) fn file_mut(&mut self, ino: Ino) -> FsResult<&mut FileNode> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(Errno::EISDIR),
            Kind::Symlink(_) => Err(Errno::EINVAL),
        }
    }

    /// The kernel's view of an inode.
    pub(crate) fn attr(&self, ino: Ino) -> FsResult<FileAttr> {
        let node = self.node(ino)?;
        let (size, nlink) = match &node.kind {
            Kind::File(f) => (f.data.size(), node.nlink),
            Kind::Symlink(target) => (target.as_os_str().len() as u64, node.nlink),
            Kind::Dir(d) => {
                let subdirs = d
                    .entries
                    .values()
                    .filter(|c| matches!(self.nodes.get(c).map(|n| &n.kind), Some(Kind::Dir(_))))
                    .count() as u32;
                (4096, if node.nlink == 0 { 0 } else { 2 + subdirs })
            }
        };
        let m = &node.meta;
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            crtime: m.ctime,
            kind: node.file_type(),
            perm: m.perm,
            nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    pub(crate) fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Ino> {
        self.dir(parent)?.entries.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// Refuses names the backing directory could not hold.
    fn check_name(parent: Ino, name: &OsStr) -> FsResult<()> {
        if name.len() > 255 {
            return Err(Errno::from_i32(libc::ENAMETOOLONG));
        }
        if parent == ROOT && name == UNLINKED_DIR {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    /// Adds a new inode under `parent` (volatile only).
    pub(crate) fn insert(&mut self, parent: Ino, name: &OsStr, kind: Kind, meta: Meta) -> FsResult<Ino> {
        Tree::check_name(parent, name)?;
        if self.node(parent)?.nlink == 0 {
            return Err(Errno::ENOENT); // creating in a removed directory
        }
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut node = Node::new(kind, meta);
        node.nlink = 1;
        if let Kind::Dir(d) = &mut node.kind {
            d.parent = parent;
        }
        self.nodes.insert(ino, node);
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.node_mut(parent)?.meta.touch();
        Ok(ino)
    }

    /// A new regular file.
    pub(crate) fn create_file(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> FsResult<Ino> {
        self.insert(parent, name, Kind::File(FileNode::default()), meta)
    }

    /// A new directory.
    pub(crate) fn mkdir(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> FsResult<Ino> {
        self.insert(parent, name, Kind::Dir(DirNode::default()), meta)
    }

    /// A hard link; directories cannot have one.
    pub(crate) fn link(&mut self, ino: Ino, parent: Ino, name: &OsStr) -> FsResult<()> {
        Tree::check_name(parent, name)?;
        if matches!(self.node(ino)?.kind, Kind::Dir(_)) {
            return Err(Errno::EPERM);
        }
        if self.node(ino)?.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.node_mut(parent)?.meta.touch();
        let node = self.node_mut(ino)?;
        node.nlink += 1;
        node.meta.ctime = SystemTime::now();
        Ok(())
    }

    /// Removes a non-directory name.
    pub(crate) fn unlink(&mut self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let ino = self.lookup(parent, name)?;
        if matches!(self.node(ino)?.kind, Kind::Dir(_)) {
            return Err(Errno::EISDIR);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.node_mut(parent)?.meta.touch();
        self.drop_name(ino)
    }

    /// Removes an empty directory.
    pub(crate) fn rmdir(&mut self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let ino = self.lookup(parent, name)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.node_mut(parent)?.meta.touch();
        self.drop_name(ino)
    }

    /// One volatile name of `ino` is gone.
    fn drop_name(&mut self, ino: Ino) -> FsResult<()> {
        let node = self.node_mut(ino)?;
        node.nlink = node.nlink.saturating_sub(1);
        node.meta.ctime = SystemTime::now();
        self.collect(ino)
    }

    /// True when `ino` is `ancestor` or below it in the volatile view.
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> FsResult<bool> {
        for _ in 0..=self.nodes.len() {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT {
                return Ok(false);
            }
            ino = self.dir(ino)?.parent;
        }
        Err(Errno::ELOOP)
    }

    /// rename(2) / renameat2(2) with `RENAME_NOREPLACE` and `RENAME_EXCHANGE`.
    pub(crate) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> FsResult<()> {
        Tree::check_name(new_parent, new_name)?;
        let ino = self.lookup(parent, name)?;
        let target = self.dir(new_parent)?.entries.get(new_name).copied();
        let is_dir = |t: &Tree, i: Ino| matches!(t.nodes.get(&i).map(|n| &n.kind), Some(Kind::Dir(_)));
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let other = target.ok_or(Errno::ENOENT)?;
            if (is_dir(self, ino) && self.is_within(new_parent, ino)?)
                || (is_dir(self, other) && self.is_within(parent, other)?)
            {
                return Err(Errno::EINVAL);
            }
            self.dir_mut(parent)?.entries.insert(name.to_owned(), other);
            self.dir_mut(new_parent)?.entries.insert(new_name.to_owned(), ino);
            for (moved, to) in [(ino, new_parent), (other, parent)] {
                if let Kind::Dir(d) = &mut self.node_mut(moved)?.kind {
                    d.parent = to;
                }
            }
            self.node_mut(parent)?.meta.touch();
            self.node_mut(new_parent)?.meta.touch();
            return Ok(());
        }
        if target == Some(ino) {
            return Ok(()); // both names are the same inode: POSIX says do nothing
        }
        if target.is_some() && flags.contains(RenameFlags::RENAME_NOREPLACE) {
            return Err(Errno::EEXIST);
        }
        if is_dir(self, ino) && self.is_within(new_parent, ino)? {
            return Err(Errno::EINVAL);
        }
        if let Some(t) = target {
            match (is_dir(self, ino), is_dir(self, t)) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !self.dir(t)?.entries.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        if self.node(new_parent)?.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(new_parent)?.entries.insert(new_name.to_owned(), ino);
        if let Kind::Dir(d) = &mut self.node_mut(ino)?.kind {
            d.parent = new_parent;
        }
        self.node_mut(ino)?.meta.ctime = SystemTime::now();
        self.node_mut(parent)?.meta.touch();
        self.node_mut(new_parent)?.meta.touch();
        if let Some(t) = target {
            self.drop_name(t)?;
        }
        Ok(())
    }

    /// A handle was opened on `ino`.
    pub(crate) fn open(&mut self, ino: Ino) -> FsResult<()> {
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    /// A handle on `ino` was closed.
    pub(crate) fn release(&mut self, ino: Ino) -> FsResult<()> {
        let node = self.node_mut(ino)?;
        node.open = node.open.saturating_sub(1);
        self.collect(ino)
    }

    pub(crate) fn read(&self, ino: Ino, offset: u64, len: u64) -> FsResult<Vec<u8>> {
        match &self.node(ino)?.kind {
            Kind::File(f) => Ok(f.data.read(f.object.as_ref(), offset, len)?),
            Kind::Dir(_) => Err(Errno::EISDIR),
            Kind::Symlink(_) => Err(Errno::EINVAL),
        }
    }

    pub(crate) fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<()> {
        let file = self.file_mut(ino)?;
        file.data.write(file.object.as_ref(), offset, data)?;
        self.node_mut(ino)?.meta.touch();
        Ok(())
    }

    pub(crate) fn set_size(&mut self, ino: Ino, size: u64) -> FsResult<()> {
        self.file_mut(ino)?.data.truncate(size);
        self.node_mut(ino)?.meta.touch();
        Ok(())
    }

    /// fallocate(2): plain allocation (may grow the file), `KEEP_SIZE`, `PUNCH_HOLE` and
    /// `ZERO_RANGE`. Allocation itself is not simulated: space is never reserved.
    pub(crate) fn fallocate(&mut self, ino: Ino, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let file = self.file_mut(ino)?;
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        match mode & !libc::FALLOC_FL_KEEP_SIZE {
            0 => {
                if !keep_size && end > file.data.size() {
                    file.data.truncate(end);
                }
            }
            libc::FALLOC_FL_PUNCH_HOLE if keep_size => file.data.zero(file.object.as_ref(), offset, len, true)?,
            libc::FALLOC_FL_ZERO_RANGE => file.data.zero(file.object.as_ref(), offset, len, keep_size)?,
            _ => return Err(Errno::from_i32(libc::EOPNOTSUPP)),
        }
        self.node_mut(ino)?.meta.touch();
        Ok(())
    }

    /// The entries of a directory, `.` and `..` first.
    pub(crate) fn list(&self, ino: Ino) -> FsResult<Listing> {
        let dir = self.dir(ino)?;
        let mut out = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (dir.parent, FileType::Directory, OsString::from("..")),
        ];
        for (name, child) in &dir.entries {
            out.push((*child, self.node(*child)?.file_type(), name.clone()));
        }
        Ok(out)
    }

    /// Frees what nobody can reach any more: an inode without names, handles or durable names.
    /// An unreachable file that still has a durable name keeps only its durable object.
    pub(crate) fn collect(&mut self, ino: Ino) -> FsResult<()> {
        let Some(node) = self.nodes.get_mut(&ino) else { return Ok(()) };
        if ino == ROOT || node.nlink > 0 || node.open > 0 {
            return Ok(());
        }
        if let Kind::File(f) = &mut node.kind {
            f.data.discard();
        }
        if !node.links.is_empty() {
            return Ok(());
        }
        let Some(node) = self.nodes.remove(&ino) else { return Ok(()) };
        match node.kind {
            // Without durable names its object can only be in the unlinked directory.
            Kind::File(f) if f.object.is_some() && f.unlinked => std::fs::remove_file(self.unlinked_path(ino))?,
            Kind::File(f) => {
                if f.object.is_some() {
                    tracing::error!(ino, "faultfs: a file without durable names had its object in the tree");
                }
            }
            Kind::Dir(d) => {
                for (name, child) in d.durable {
                    if let Some(c) = self.nodes.get_mut(&child) {
                        c.links.retain(|(p, n)| !(*p == ino && *n == name));
                    }
                    self.collect(child)?;
                }
            }
            Kind::Symlink(_) => {}
        }
        Ok(())
    }

    /// Where the durable object of a file without durable names lives.
    pub(crate) fn unlinked_path(&self, ino: Ino) -> PathBuf {
        self.backing.join(UNLINKED_DIR).join(ino.to_string())
    }
}
