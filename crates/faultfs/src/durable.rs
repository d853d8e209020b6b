//! The durable side: loading the tree from the backing directory, and the two operations that
//! change what survives a power cut — fsync of a file (its contents) and fsync of a directory
//! (its names).
//!
//! The backing directory always equals the durable tree: every durable name reachable from the
//! root is a real file, directory or symlink there, and a file's durable contents are the
//! backing file's. Files with durable contents but no durable name (created and synced, their
//! directory not yet) keep them in [`UNLINKED_DIR`], which is not part of the durable tree.
//!
//! Syncing a directory applies the difference between its volatile and durable entries to the
//! backing directory: a new name links the inode's object (or creates it empty: never synced
//! means no durable contents), a removed name unlinks it (moving the object aside while the
//! inode can still get a durable name or be synced). A directory has at most one durable name:
//! syncing the directory a directory was moved to moves it on disk as a whole.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::Errno;

use crate::overlay::Overlay;
use crate::tree::{DirNode, FileNode, FsResult, Ino, Kind, Meta, Node, ROOT, Tree, UNLINKED_DIR};

/// What a power cut at this moment would lose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsynced {
    /// Files whose contents differ from their durable contents.
    pub files: u64,
    /// Bytes of unsynced writes held in memory (whole 4 KiB pages).
    pub bytes: u64,
    /// Directory entries created, removed or replaced since their directory's last fsync.
    pub entries: u64,
}

impl std::fmt::Display for Unsynced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} unsynced file(s) with {} byte(s) in unsynced pages, {} unsynced directory entr{}",
            self.files,
            self.bytes,
            self.entries,
            if self.entries == 1 { "y" } else { "ies" }
        )
    }
}

/// One file a power cut at this moment would lose writes of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnsyncedFile {
    /// Where the mount shows it now (its first name, relative to the mount's root); empty for a
    /// file that has no name left but is still open.
    pub path: PathBuf,
    /// Bytes of its unsynced writes held in memory (whole 4 KiB pages).
    pub bytes: u64,
}

fn meta_of(md: &fs::Metadata) -> Meta {
    let at = |secs: i64, nanos: i64| {
        UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64) + Duration::from_nanos(nanos.max(0) as u64)
    };
    Meta {
        perm: (md.mode() & 0o7777) as u16,
        uid: md.uid(),
        gid: md.gid(),
        atime: at(md.atime(), md.atime_nsec()),
        mtime: at(md.mtime(), md.mtime_nsec()),
        ctime: at(md.ctime(), md.ctime_nsec()),
    }
}

/// Opens a backing object for reading and writing, whatever its mode (the file system runs as
/// root; other users get what their permissions allow).
fn open_object(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

impl Tree {
    /// The durable tree in `backing`, with an empty volatile difference.
    pub(crate) fn load(backing: &Path) -> io::Result<Tree> {
        let unlinked = backing.join(UNLINKED_DIR);
        if unlinked.exists() {
            fs::remove_dir_all(&unlinked)?; // nameless contents do not survive a power cut
        }
        fs::create_dir(&unlinked)?;
        let root_meta = meta_of(&fs::metadata(backing)?);
        let mut root = Node::new(Kind::Dir(DirNode { parent: ROOT, ..DirNode::default() }), root_meta);
        root.nlink = 1;
        let mut tree = Tree {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            backing: backing.to_path_buf(),
            listings: HashMap::new(),
            next_handle: 1,
            syncs: Default::default(),
            power_cut: false,
            sync_delay: Duration::ZERO,
        };
        let mut seen = HashMap::new();
        tree.scan(ROOT, backing, &mut seen)?;
        Ok(tree)
    }

    /// Adds the entries of backing directory `path` under `dir`; hard links (`seen`, by the
    /// backing device and inode) become one inode.
    fn scan(&mut self, dir: Ino, path: &Path, seen: &mut HashMap<(u64, u64), Ino>) -> io::Result<()> {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            if dir == ROOT && name == UNLINKED_DIR {
                continue;
            }
            let child_path = entry.path();
            let md = fs::symlink_metadata(&child_path)?;
            let key = (md.dev(), md.ino());
            let ino = match seen.get(&key) {
                Some(&ino) if md.is_file() => ino,
                _ => {
                    let kind = if md.is_file() {
                        let data = Overlay::synced(md.len());
                        Kind::File(FileNode { object: Some(open_object(&child_path)?), unlinked: false, data })
                    } else if md.is_dir() {
                        Kind::Dir(DirNode { parent: dir, ..DirNode::default() })
                    } else if md.file_type().is_symlink() {
                        Kind::Symlink(fs::read_link(&child_path)?)
                    } else {
                        tracing::warn!(path = %child_path.display(), "faultfs: skipping a special file");
                        continue;
                    };
                    let ino = self.next_ino;
                    self.next_ino += 1;
                    self.nodes.insert(ino, Node::new(kind, meta_of(&md)));
                    seen.insert(key, ino);
                    ino
                }
            };
            let node = self.nodes.get_mut(&ino).ok_or_else(|| io::Error::other("scanned inode vanished"))?;
            node.nlink += 1;
            node.links.push((dir, name.clone()));
            let is_dir = matches!(node.kind, Kind::Dir(_));
            let parent = self.dir_mut(dir).map_err(|e| io::Error::from_raw_os_error(e.code()))?;
            parent.entries.insert(name.clone(), ino);
            parent.durable.insert(name, ino);
            if is_dir {
                self.scan(ino, &child_path, seen)?;
            }
        }
        Ok(())
    }

    /// What a power cut now would lose.
    pub(crate) fn unsynced(&self) -> Unsynced {
        let mut out = Unsynced::default();
        for node in self.nodes.values() {
            match &node.kind {
                Kind::File(f) if (node.nlink > 0 || node.open > 0) && f.data.is_dirty() => {
                    out.files += 1;
                    out.bytes += f.data.dirty_bytes();
                }
                Kind::Dir(d) => {
                    let changed = d.entries.iter().filter(|(n, i)| d.durable.get(*n) != Some(i)).count();
                    let gone = d.durable.keys().filter(|n| !d.entries.contains_key(*n)).count();
                    out.entries += (changed + gone) as u64;
                }
                _ => {}
            }
        }
        out
    }

    /// The files [`Tree::unsynced`] counts, each under the name the mount shows, sorted by path.
    pub(crate) fn unsynced_files(&self) -> Vec<UnsyncedFile> {
        let mut out = Vec::new();
        let mut named = std::collections::HashSet::new();
        let mut dirs = vec![(ROOT, PathBuf::new())];
        while let Some((dir, path)) = dirs.pop() {
            let Some(Node { kind: Kind::Dir(d), .. }) = self.nodes.get(&dir) else { continue };
            for (name, &ino) in &d.entries {
                match self.nodes.get(&ino).map(|n| &n.kind) {
                    Some(Kind::Dir(_)) => dirs.push((ino, path.join(name))),
                    // A hard-linked file is reported once, under the first name found.
                    Some(Kind::File(f)) if f.data.is_dirty() && named.insert(ino) => {
                        out.push(UnsyncedFile { path: path.join(name), bytes: f.data.dirty_bytes() });
                    }
                    _ => {}
                }
            }
        }
        for (ino, node) in &self.nodes {
            if let Kind::File(f) = &node.kind
                && node.nlink == 0
                && node.open > 0
                && f.data.is_dirty()
                && !named.contains(ino)
            {
                out.push(UnsyncedFile { path: PathBuf::new(), bytes: f.data.dirty_bytes() });
            }
        }
        out.sort();
        out
    }

    /// fsync(2)/fdatasync(2) of a file: its contents (and mode) become durable. Its names do not:
    /// they are its directories' business.
    pub(crate) fn sync_file(&mut self, ino: Ino) -> FsResult<()> {
        let unlinked = self.unlinked_path(ino);
        let perm = self.node(ino)?.meta.perm;
        let file = match &mut self.node_mut(ino)?.kind {
            Kind::File(f) => f,
            Kind::Dir(_) => return Ok(()), // the kernel sends fsyncdir for directories
            Kind::Symlink(_) => return Err(Errno::EINVAL),
        };
        if file.object.is_none() {
            file.object = Some(
                OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&unlinked)?,
            );
            file.unlinked = true;
        }
        let object = file.object.as_ref().ok_or(Errno::EIO)?;
        file.data.sync(object)?;
        object.set_permissions(fs::Permissions::from_mode(perm.into()))?;
        Ok(())
    }

    /// fsync(2) of a directory: its current entries become its durable entries.
    pub(crate) fn sync_dir(&mut self, dir: Ino) -> FsResult<()> {
        let d = self.dir(dir)?;
        let (now, before) = (d.entries.clone(), d.durable.clone());
        for (name, &ino) in &now {
            match before.get(name) {
                Some(&old) if old == ino => continue,
                Some(&old) => self.durable_unlink(dir, name, old)?,
                None => {}
            }
            self.durable_link(dir, name, ino)?;
        }
        for (name, &old) in &before {
            // A directory moved within `dir` lost its old durable name when linked above.
            if !now.contains_key(name) && self.dir(dir)?.durable.get(name) == Some(&old) {
                self.durable_unlink(dir, name, old)?;
            }
        }
        Ok(())
    }

    /// The backing path of a directory, when its durable names lead to it from the root.
    pub(crate) fn dir_path(&self, mut ino: Ino) -> Option<PathBuf> {
        let mut names = Vec::new();
        // Bounded: a durable cycle (not reachable from the root) must not loop forever.
        for _ in 0..=self.nodes.len() {
            if ino == ROOT {
                let mut path = self.backing.clone();
                path.extend(names.iter().rev());
                return Some(path);
            }
            let (parent, name) = self.nodes.get(&ino)?.links.first()?.clone();
            names.push(name);
            ino = parent;
        }
        None
    }

    /// A backing path of `ino` through one of its durable names, if any is reachable.
    fn linked_path(&self, ino: Ino) -> Option<PathBuf> {
        self.linked_path_except(ino, None)
    }

    /// [`Tree::linked_path`] other than `except`.
    fn linked_path_except(&self, ino: Ino, except: Option<&Path>) -> Option<PathBuf> {
        let node = self.nodes.get(&ino)?;
        node.links
            .iter()
            .filter_map(|(parent, name)| Some(self.dir_path(*parent)?.join(name)))
            .find(|p| Some(p.as_path()) != except)
    }

    /// True when `ino`'s durable object must be kept even without a reachable durable name.
    fn keeps_object(&self, ino: Ino) -> bool {
        self.nodes.get(&ino).is_some_and(|n| !n.links.is_empty() || n.nlink > 0 || n.open > 0)
    }

    /// True when `dir`'s durable ancestors include `ino`.
    fn durably_within(&self, mut dir: Ino, ino: Ino) -> bool {
        for _ in 0..=self.nodes.len() {
            if dir == ino {
                return true;
            }
            match self.nodes.get(&dir).and_then(|n| n.links.first()) {
                Some((parent, _)) => dir = *parent,
                None => return false,
            }
        }
        true
    }

    /// Makes `name → ino` a durable entry of `dir`.
    fn durable_link(&mut self, dir: Ino, name: &OsStr, ino: Ino) -> FsResult<()> {
        let moved_dir = match &self.node(ino)?.kind {
            Kind::Dir(_) => self.node(ino)?.links.first().cloned(),
            _ => None,
        };
        if moved_dir.is_some() && self.durably_within(dir, ino) {
            // Durably, `dir` is still below the directory being moved into it (a rename that
            // swapped their order). Make the volatile ancestors of `dir` durable first, top
            // down, so the durable tree never has a cycle.
            self.sync_ancestors(dir)?;
            if self.dir(dir)?.durable.get(name) == Some(&ino) {
                return Ok(());
            }
        }
        let target = self.dir_path(dir).map(|p| p.join(name));
        let old = match &self.node(ino)?.kind {
            Kind::Dir(_) => self.node(ino)?.links.first().cloned(),
            _ => None,
        };
        if let Some((old_parent, old_name)) = &old {
            let old_path = self.dir_path(*old_parent).map(|p| p.join(old_name));
            self.dir_mut(*old_parent)?.durable.remove(old_name);
            self.node_mut(ino)?.links.clear();
            self.add_durable(dir, name, ino)?;
            match (old_path, target) {
                (Some(from), Some(to)) => fs::rename(from, to)?,
                (Some(from), None) => {
                    self.dematerialize(ino, &from)?;
                    fs::remove_dir_all(from)?;
                }
                (None, Some(to)) => self.materialize(ino, &to)?,
                (None, None) => {}
            }
            return Ok(());
        }
        self.add_durable(dir, name, ino)?;
        if let Some(path) = target {
            self.materialize(ino, &path)?;
        }
        Ok(())
    }

    fn add_durable(&mut self, dir: Ino, name: &OsStr, ino: Ino) -> FsResult<()> {
        self.dir_mut(dir)?.durable.insert(name.to_owned(), ino);
        self.node_mut(ino)?.links.push((dir, name.to_owned()));
        Ok(())
    }

    /// Syncs every volatile ancestor of `dir`, root first.
    fn sync_ancestors(&mut self, dir: Ino) -> FsResult<()> {
        let mut chain = Vec::new();
        let mut at = dir;
        while at != ROOT {
            at = self.dir(at)?.parent;
            chain.push(at);
            if chain.len() > self.nodes.len() {
                return Err(Errno::ELOOP);
            }
        }
        for ancestor in chain.into_iter().rev() {
            self.sync_dir(ancestor)?;
        }
        Ok(())
    }

    /// Removes the durable entry `name → ino` of `dir`.
    fn durable_unlink(&mut self, dir: Ino, name: &OsStr, ino: Ino) -> FsResult<()> {
        let path = self.dir_path(dir).map(|p| p.join(name));
        self.dir_mut(dir)?.durable.remove(name);
        self.node_mut(ino)?.links.retain(|(p, n)| !(*p == dir && n == name));
        if let Some(path) = path {
            match &self.node(ino)?.kind {
                Kind::File(_) => {
                    if self.linked_path(ino).is_some() {
                        fs::remove_file(&path)?; // the object lives on under another name
                    } else if self.keeps_object(ino) {
                        self.set_aside(ino, &path)?;
                    } else {
                        fs::remove_file(&path)?;
                        self.file_mut(ino)?.object = None;
                    }
                }
                Kind::Symlink(_) => fs::remove_file(&path)?,
                Kind::Dir(_) => {
                    self.dematerialize(ino, &path)?;
                    fs::remove_dir_all(&path)?;
                }
            }
        }
        self.collect(ino)
    }

    /// Moves a file's object from `path` into [`UNLINKED_DIR`].
    fn set_aside(&mut self, ino: Ino, path: &Path) -> FsResult<()> {
        fs::rename(path, self.unlinked_path(ino))?;
        if let Kind::File(f) = &mut self.node_mut(ino)?.kind {
            f.unlinked = true;
        }
        Ok(())
    }

    /// Before the backing copy of directory `ino` at `path` is removed: sets aside the objects
    /// of files that have no other reachable durable name.
    fn dematerialize(&mut self, ino: Ino, path: &Path) -> FsResult<()> {
        let entries: Vec<(OsString, Ino)> = self.dir(ino)?.durable.iter().map(|(n, i)| (n.clone(), *i)).collect();
        for (name, child) in entries {
            let child_path = path.join(&name);
            match &self.node(child)?.kind {
                Kind::File(f) if f.object.is_some() && !f.unlinked && self.linked_path(child).is_none() => {
                    self.set_aside(child, &child_path)?;
                }
                Kind::Dir(_) => self.dematerialize(child, &child_path)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Creates the backing copy of durable inode `ino` at `path` (for a directory, with its
    /// durable entries).
    fn materialize(&mut self, ino: Ino, path: &Path) -> FsResult<()> {
        let perm = u32::from(self.node(ino)?.meta.perm);
        let unlinked = self.unlinked_path(ino);
        let other = self.linked_path_except(ino, Some(path));
        match &mut self.node_mut(ino)?.kind {
            Kind::File(f) => match (&f.object, f.unlinked, other) {
                (Some(_), true, _) => {
                    fs::rename(&unlinked, path)?;
                    f.unlinked = false;
                }
                (Some(_), false, Some(other)) => fs::hard_link(other, path)?,
                (Some(_), false, None) => {
                    tracing::error!(ino, "faultfs: durable object without a durable path");
                    return Err(Errno::EIO);
                }
                (None, _, _) => {
                    // Never synced: its durable contents are empty.
                    let object = OpenOptions::new().read(true).write(true).create_new(true).mode(perm).open(path)?;
                    object.set_permissions(fs::Permissions::from_mode(perm))?;
                    f.object = Some(object);
                    f.unlinked = false;
                }
            },
            Kind::Symlink(target) => std::os::unix::fs::symlink(&*target, path)?,
            Kind::Dir(d) => {
                let entries: Vec<(OsString, Ino)> = d.durable.iter().map(|(n, i)| (n.clone(), *i)).collect();
                fs::create_dir(path)?;
                fs::set_permissions(path, fs::Permissions::from_mode(perm))?;
                for (name, child) in entries {
                    self.materialize(child, &path.join(name))?;
                }
            }
        }
        Ok(())
    }

    /// Sets the access and modification times kept in memory.
    pub(crate) fn set_times(&mut self, ino: Ino, atime: Option<SystemTime>, mtime: Option<SystemTime>) -> FsResult<()> {
        let meta = &mut self.node_mut(ino)?.meta;
        if let Some(t) = atime {
            meta.atime = t;
        }
        if let Some(t) = mtime {
            meta.mtime = t;
        }
        meta.ctime = SystemTime::now();
        Ok(())
    }
}
