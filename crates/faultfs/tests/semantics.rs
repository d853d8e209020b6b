//! What survives a power cut on faultfs, through a real mount: each test does file operations
//! with std, cuts the power, mounts again and checks what is there (and that the backing
//! directory holds exactly that).
//!
//! Needs FUSE. Without `/dev/fuse` the tests fail, unless `MAILRAFT_ALLOW_SKIP=1` lets them say so
//! loudly and pass (`skip_without_fuse`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use mailraft_faultfs::{Mount, Unsynced, UnsyncedFile};

/// A backing directory and its mount.
struct Fs {
    _dir: tempfile::TempDir,
    backing: PathBuf,
    at: PathBuf,
    mount: Option<Mount>,
}

impl Fs {
    /// A fresh file system, or `None` (after a loud message) where FUSE is missing and skipping is allowed.
    fn new() -> Option<Fs> {
        if mailraft_faultfs::skip_without_fuse("the faultfs semantics test") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (backing, at) = (dir.path().join("backing"), dir.path().join("mnt"));
        fs::create_dir(&backing).expect("backing dir");
        fs::create_dir(&at).expect("mount point");
        let mount = Some(Mount::new(&backing, &at).expect("mount"));
        Some(Fs { _dir: dir, backing, at, mount })
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.at.join(rel)
    }

    fn mount(&self) -> &Mount {
        self.mount.as_ref().expect("mounted")
    }

    /// Power cut and reboot; returns what was lost.
    fn power_loss(&mut self) -> Unsynced {
        let lost = self.mount.take().expect("mounted").power_loss().expect("power loss");
        self.mount = Some(Mount::new(&self.backing, &self.at).expect("mount again"));
        lost
    }

    /// Paths (relative, sorted) and contents of a tree, directories with a trailing slash.
    fn listing(root: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                let rel = path.strip_prefix(root).expect("prefix").display().to_string();
                if rel == ".faultfs-unlinked" {
                    continue;
                }
                if path.is_dir() {
                    out.push((format!("{rel}/"), Vec::new()));
                    stack.push(path);
                } else {
                    out.push((rel, fs::read(&path).expect("read")));
                }
            }
        }
        out.sort();
        out
    }

    /// The mount shows exactly the backing directory (call right after a power loss).
    fn assert_backing_matches(&self) {
        assert_eq!(Fs::listing(&self.at), Fs::listing(&self.backing), "mount and backing differ");
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Writes a file and makes both its contents and its name durable.
fn durable_file(fs: &Fs, rel: &str, data: &[u8]) -> io::Result<()> {
    let path = fs.p(rel);
    let mut f = File::create(&path)?;
    f.write_all(data)?;
    f.sync_all()?;
    sync_dir(path.parent().expect("parent"))
}

macro_rules! fs_or_skip {
    () => {
        match Fs::new() {
            Some(fs) => fs,
            None => return Ok(()),
        }
    };
}

#[test]
fn synced_write_is_kept_and_unsynced_write_is_lost() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    durable_file(&fs, "a", b"durable")?;
    let mut f = OpenOptions::new().append(true).open(fs.p("a"))?;
    f.write_all(b" and lost")?;
    assert_eq!(fs::read(fs.p("a"))?, b"durable and lost", "programs see their writes");
    drop(f);
    let lost = fs.power_loss();
    assert_eq!(lost.files, 1, "{lost}");
    assert_eq!(fs::read(fs.p("a"))?, b"durable");
    assert_eq!(fs::read(fs.backing.join("a"))?, b"durable", "the backing dir holds the synced state");
    fs.assert_backing_matches();
    Ok(())
}

#[test]
fn fdatasync_and_o_dsync_make_writes_durable() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    durable_file(&fs, "a", b"")?;
    let mut f = OpenOptions::new().write(true).open(fs.p("a"))?;
    f.write_all(b"one")?;
    f.sync_data()?;
    let mut g = OpenOptions::new().append(true).custom_flags(libc::O_DSYNC).open(fs.p("a"))?;
    g.write_all(b"two")?;
    drop((f, g));
    assert_eq!(fs.power_loss(), Unsynced::default());
    assert_eq!(fs::read(fs.p("a"))?, b"onetwo");
    Ok(())
}

#[test]
fn a_new_file_needs_its_directory_synced() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    let mut f = File::create(fs.p("new"))?;
    f.write_all(b"synced contents")?;
    f.sync_all()?; // contents durable, the name is not
    drop(f);
    let lost = fs.power_loss();
    assert_eq!(lost.entries, 1, "{lost}");
    assert!(!fs.p("new").exists(), "a name whose directory was never synced is gone");
    assert!(
        fs::read_dir(fs.backing.join(".faultfs-unlinked"))?.next().is_none(),
        "nameless contents do not survive"
    );
    fs.assert_backing_matches();
    Ok(())
}

#[test]
fn a_synced_name_of_an_unsynced_file_is_empty() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    fs::write(fs.p("f"), b"never synced")?;
    sync_dir(&fs.at)?;
    fs.power_loss();
    assert_eq!(fs::read(fs.p("f"))?, b"");
    fs.assert_backing_matches();
    Ok(())
}

#[test]
fn rename_without_directory_fsync_is_lost() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    durable_file(&fs, "CURRENT", b"old")?;
    // The classic atomic replace, minus the final directory fsync.
    durable_file(&fs, "CURRENT.tmp", b"new")?;
    fs::rename(fs.p("CURRENT.tmp"), fs.p("CURRENT"))?;
    assert_eq!(fs::read(fs.p("CURRENT"))?, b"new");
    fs.power_loss();
    assert_eq!(fs::read(fs.p("CURRENT"))?, b"old");
    assert_eq!(fs::read(fs.p("CURRENT.tmp"))?, b"new");
    fs.assert_backing_matches();

    // With it, the replacement is durable.
    fs::rename(fs.p("CURRENT.tmp"), fs.p("CURRENT"))?;
    sync_dir(&fs.at)?;
    fs.power_loss();
    assert_eq!(fs::read(fs.p("CURRENT"))?, b"new");
    assert!(!fs.p("CURRENT.tmp").exists());
    fs.assert_backing_matches();
    Ok(())
}

#[test]
fn unlink_without_directory_fsync_comes_back() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    durable_file(&fs, "f", b"still here")?;
    fs::remove_file(fs.p("f"))?;
    fs.power_loss();
    assert_eq!(fs::read(fs.p("f"))?, b"still here");
    fs::remove_file(fs.p("f"))?;
    sync_dir(&fs.at)?;
    fs.power_loss();
    assert!(!fs.p("f").exists());
    assert!(!fs.backing.join("f").exists());
    Ok(())
}

#[test]
fn truncation_is_lost_without_fsync() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    durable_file(&fs, "f", &[7u8; 10_000])?;
    let f = OpenOptions::new().write(true).open(fs.p("f"))?;
    f.set_len(10)?;
    f.set_len(20_000)?;
    let mut seen = Vec::new();
    File::open(fs.p("f"))?.read_to_end(&mut seen)?;
    assert_eq!(&seen[..10], &[7u8; 10]);
    assert!(seen[10..].iter().all(|b| *b == 0), "truncated bytes read as zeros when the file grows");
    drop(f);
    fs.power_loss();
    assert_eq!(fs::read(fs.p("f"))?, vec![7u8; 10_000]);
    Ok(())
}

#[test]
fn a_new_directory_needs_its_parent_synced() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    fs::create_dir(fs.p("db"))?;
    durable_file(&fs, "db/CURRENT", b"MANIFEST-1")?; // syncs db/, not the root
    fs.power_loss();
    assert!(!fs.p("db").exists(), "the directory's own name was never synced");

    fs::create_dir(fs.p("db"))?;
    durable_file(&fs, "db/CURRENT", b"MANIFEST-1")?;
    sync_dir(&fs.at)?;
    fs.power_loss();
    assert_eq!(fs::read(fs.p("db/CURRENT"))?, b"MANIFEST-1");
    fs.assert_backing_matches();
    Ok(())
}

#[test]
fn an_open_unlinked_file_can_be_synced_and_is_still_gone() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(fs.p("tmp"))?;
    fs::remove_file(fs.p("tmp"))?;
    f.write_all(b"anonymous")?;
    f.sync_all()?;
    f.seek(SeekFrom::Start(0))?;
    let mut back = String::new();
    f.read_to_string(&mut back)?;
    assert_eq!(back, "anonymous");
    drop(f);
    fs.power_loss();
    assert!(Fs::listing(&fs.at).is_empty());
    fs.assert_backing_matches();
    Ok(())
}

#[test]
fn hard_links_share_durable_contents() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    durable_file(&fs, "a", b"shared")?;
    fs::hard_link(fs.p("a"), fs.p("b"))?;
    sync_dir(&fs.at)?;
    fs::remove_file(fs.p("a"))?;
    sync_dir(&fs.at)?;
    let mut f = OpenOptions::new().append(true).open(fs.p("b"))?;
    f.write_all(b"+synced")?;
    f.sync_all()?;
    drop(f);
    fs.power_loss();
    assert!(!fs.p("a").exists());
    assert_eq!(fs::read(fs.p("b"))?, b"shared+synced");
    fs.assert_backing_matches();
    Ok(())
}

#[test]
fn a_moved_directory_moves_on_disk_when_its_new_parent_is_synced() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    fs::create_dir_all(fs.p("x/sub"))?;
    fs::create_dir(fs.p("y"))?;
    durable_file(&fs, "x/sub/f", b"payload")?;
    sync_dir(&fs.p("x"))?;
    sync_dir(&fs.at)?;
    fs::rename(fs.p("x/sub"), fs.p("y/sub"))?;
    sync_dir(&fs.p("y"))?;
    fs.power_loss();
    assert_eq!(fs::read(fs.p("y/sub/f"))?, b"payload");
    assert!(!fs.p("x/sub").exists(), "a directory has one durable name");
    fs.assert_backing_matches();

    // Moved out of a synced parent into one that is not: gone until the target is synced.
    fs::create_dir(fs.p("z"))?;
    fs::rename(fs.p("y/sub"), fs.p("z/sub"))?;
    sync_dir(&fs.p("y"))?;
    fs.power_loss();
    assert!(!fs.p("y/sub").exists() && !fs.p("z").exists());
    fs.assert_backing_matches();
    Ok(())
}

#[test]
fn reports_what_a_power_cut_would_lose() -> io::Result<()> {
    let fs = fs_or_skip!();
    assert_eq!(fs.mount().unsynced(), Unsynced::default());
    fs::write(fs.p("a"), vec![1u8; 5000])?;
    let before = fs.mount().syncs();
    let now = fs.mount().unsynced();
    assert_eq!((now.files, now.bytes, now.entries), (1, 8192, 1), "{now}");
    File::open(fs.p("a"))?.sync_all()?;
    sync_dir(&fs.at)?;
    assert_eq!(fs.mount().unsynced(), Unsynced::default());
    let after = fs.mount().syncs();
    assert_eq!((after.files - before.files, after.dirs - before.dirs), (1, 1));
    Ok(())
}

#[test]
fn names_the_files_a_power_cut_would_lose_writes_of() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    fs::write(fs.p("a"), vec![1u8; 5000])?;
    fs::create_dir(fs.p("d"))?;
    fs::write(fs.p("d/b"), b"x")?;
    fs::write(fs.p("empty"), b"")?; // a new name, but no unsynced contents
    fs::hard_link(fs.p("d/b"), fs.p("d/c"))?; // one file, reported once
    let file = |path: &str, bytes| UnsyncedFile { path: path.into(), bytes };
    assert_eq!(fs.mount().unsynced_files(), vec![file("a", 8192), file("d/b", 4096)]);
    File::open(fs.p("a"))?.sync_all()?;
    assert_eq!(fs.mount().unsynced_files(), vec![file("d/b", 4096)]);
    // An unlinked file still open keeps its unsynced writes, without a name.
    let mut open = File::create(fs.p("gone"))?;
    fs::remove_file(fs.p("gone"))?;
    open.write_all(b"y")?;
    assert_eq!(fs.mount().unsynced_files(), vec![file("", 4096), file("d/b", 4096)]);
    // A conditional cut that does not hold changes nothing; one that holds cuts.
    assert_eq!(fs.mount().cut_power_if(|f| f.is_empty()), None);
    open.write_all(b"still up")?;
    let cut = fs.mount().cut_power_if(|f| f.iter().any(|f| f.path == Path::new("d/b")));
    assert_eq!(cut, Some(vec![file("", 4096), file("d/b", 4096)]));
    assert_eq!(open.write_all(b"z").map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)));
    // After the cut nothing changes: this is what the cut dropped.
    let _ = File::open(fs.p("d/b")).and_then(|f| f.sync_all());
    assert_eq!(fs.mount().unsynced_files(), vec![file("", 4096), file("d/b", 4096)]);
    drop(open);
    fs.power_loss();
    assert_eq!(fs.mount().unsynced_files(), vec![]);
    Ok(())
}

#[test]
fn after_the_power_cut_nothing_reads_or_writes() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    durable_file(&fs, "a", b"before")?;
    let mut f = OpenOptions::new().append(true).open(fs.p("a"))?;
    fs.mount().cut_power();
    assert_eq!(f.write_all(b"after").map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)));
    assert_eq!(f.sync_all().map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)));
    assert!(File::create(fs.p("b")).is_err());
    drop(f);
    fs.power_loss();
    assert_eq!(fs::read(fs.p("a"))?, b"before");
    assert!(!fs.p("b").exists());
    Ok(())
}

#[test]
fn a_slow_sync_cut_short_by_the_power_cut_keeps_nothing() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    durable_file(&fs, "a", b"old")?;
    fs.mount().set_sync_delay(std::time::Duration::from_secs(30));
    let path = fs.p("a");
    let syncer = std::thread::spawn(move || -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
        f.write_all(b"new")?;
        f.sync_all()
    });
    // Wait (bounded) until the fsync is in its delay, then cut: it must fail and sync nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fs.mount().syncs().files < 2 {
        assert!(std::time::Instant::now() < deadline, "the fsync never arrived");
        std::thread::park_timeout(std::time::Duration::from_millis(5));
    }
    fs.mount().cut_power();
    let err = syncer.join().expect("syncer thread").expect_err("fsync after the cut must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    fs.power_loss();
    assert_eq!(fs::read(fs.p("a"))?, b"old");
    Ok(())
}

#[test]
fn the_volatile_view_behaves_like_posix() -> io::Result<()> {
    let fs = fs_or_skip!();
    fs::create_dir(fs.p("d"))?;
    fs::write(fs.p("d/f"), b"x")?;
    assert_eq!(fs::remove_dir(fs.p("d")).map_err(|e| e.raw_os_error()), Err(Some(libc::ENOTEMPTY)));
    assert_eq!(
        fs::rename(fs.p("d"), fs.p("d/inside")).map_err(|e| e.raw_os_error()),
        Err(Some(libc::EINVAL)),
        "a directory cannot move into itself"
    );
    fs::write(fs.p("g"), b"y")?;
    fs::rename(fs.p("g"), fs.p("d/f"))?;
    assert_eq!(fs::read(fs.p("d/f"))?, b"y");
    let names: Vec<_> = fs::read_dir(fs.p("d"))?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    assert_eq!(names, vec!["f"]);
    std::os::unix::fs::symlink("d/f", fs.p("link"))?;
    assert_eq!(fs::read(fs.p("link"))?, b"y");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(fs.p("big"), &big)?;
    assert_eq!(fs::read(fs.p("big"))?, big);
    Ok(())
}

/// Random operations on the mount and on an ordinary directory give the same results and the
/// same tree (the volatile view is a POSIX file system), and after fsyncing everything a power
/// cut loses nothing. Seeded, so a failure repeats.
#[test]
fn random_operations_match_an_ordinary_directory() -> io::Result<()> {
    let mut fs = fs_or_skip!();
    let reference = tempfile::tempdir()?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let names = ["a", "b", "d/c", "d/e", "d2/f"];
    let mut changed = 0;
    for step in 0..400 {
        let (x, y) = (names[next(5) as usize], names[next(5) as usize]);
        let offset = next(9000);
        let len = next(5000) as usize;
        // Directory operations only on the subdirectories (never on the root itself).
        let op = match next(8) {
            5 | 6 if !x.contains('/') => 7,
            op => op,
        };
        let apply = |root: &Path| -> io::Result<Vec<u8>> {
            let (px, py) = (root.join(x), root.join(y));
            match op {
                0 => {
                    let f = OpenOptions::new().write(true).create(true).truncate(false).open(&px)?;
                    std::os::unix::fs::FileExt::write_all_at(&f, &vec![step as u8; len], offset)?;
                }
                1 => OpenOptions::new().write(true).open(&px)?.set_len(offset)?,
                2 => fs::rename(&px, &py)?,
                3 => fs::remove_file(&px)?,
                4 => fs::hard_link(&px, &py)?,
                5 => fs::create_dir(px.parent().expect("parent"))?,
                6 => fs::remove_dir(px.parent().expect("parent"))?,
                _ => return fs::read(&px),
            }
            Ok(Vec::new())
        };
        let want = apply(reference.path()).map_err(|e| e.raw_os_error());
        let got = apply(&fs.at).map_err(|e| e.raw_os_error());
        assert_eq!(got, want, "step {step}: op {op} on {x} {y}");
        changed += usize::from(op != 7 && want.is_ok());
    }
    assert!(changed > 100, "only {changed} operations changed anything");
    assert_eq!(Fs::listing(&fs.at), Fs::listing(reference.path()));
    // Everything synced: the power cut loses nothing.
    for (path, _) in Fs::listing(&fs.at) {
        let full = fs.at.join(path.trim_end_matches('/'));
        if !path.ends_with('/') {
            File::open(&full)?.sync_all()?;
        }
    }
    for dir in ["d", "d2"] {
        if fs.p(dir).exists() {
            sync_dir(&fs.p(dir))?;
        }
    }
    sync_dir(&fs.at)?;
    assert_eq!(fs.power_loss(), Unsynced::default());
    assert_eq!(Fs::listing(&fs.at), Fs::listing(reference.path()));
    fs.assert_backing_matches();
    Ok(())
}
