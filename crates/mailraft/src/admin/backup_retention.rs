//! `mailraft admin backup --dir DIR --keep N` (issue 10): time-stamped backups with retention, so
//! a corruption noticed days later can still be undone from an older backup.
//!
//! The new backup is written exactly as `backup FILE` writes one (beside, verified, renamed, 0600;
//! `crate::backup`) under the name `mailraft-<UTC YYYYmmddTHHMMSSZ>.backup`. Only once it is
//! complete are the oldest files with exactly that name pattern deleted until N remain: a failed
//! backup deletes nothing, and any other file in DIR (copies, notes, the temporary file of a
//! running backup) is never touched. The fixed-width UTC stamp makes name order time order.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

const PREFIX: &str = "mailraft-";
const SUFFIX: &str = ".backup";
/// `YYYYmmddTHHMMSSZ`.
const STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The file name of a backup taken at `now`.
pub(super) fn backup_name(now: DateTime<Utc>) -> String {
    format!("{PREFIX}{}{SUFFIX}", now.format(STAMP_FORMAT))
}

/// Whether `name` is exactly `mailraft-YYYYmmddTHHMMSSZ.backup` (digits where digits belong), i.e.
/// a file this command wrote and may delete.
fn is_backup_name(name: &str) -> bool {
    let Some(stamp) = name.strip_prefix(PREFIX).and_then(|n| n.strip_suffix(SUFFIX)) else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
}

/// Which of `names` to delete so that `keep` backups remain: the oldest matching names beyond
/// the newest `keep`, oldest first. Names that do not match the pattern are ignored and neither
/// count nor get deleted. `current` (the backup just written) is never chosen, even if a clock
/// that went backwards left newer-looking names behind.
pub(super) fn to_prune(names: &[String], keep: usize, current: &str) -> Vec<String> {
    let mut backups: Vec<&String> = names.iter().filter(|n| is_backup_name(n)).collect();
    backups.sort();
    backups.dedup();
    let excess = backups.len().saturating_sub(keep);
    backups.into_iter().filter(|n| n.as_str() != current).take(excess).cloned().collect()
}

/// The names of the regular files in `dir` (no directories or symlinks: pruning must only delete
/// backups this command wrote).
fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_file())
            && let Ok(name) = entry.file_name().into_string()
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// Deletes the oldest backups in `dir` so that `keep` remain, never `current`; returns the
/// deleted paths. Tries every deletion and reports the failures together.
pub(super) fn prune(dir: &Path, keep: u32, current: &str) -> Result<Vec<PathBuf>> {
    let keep = usize::try_from(keep).unwrap_or(usize::MAX).max(1);
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for name in to_prune(&list_files(dir)?, keep, current) {
        let path = dir.join(&name);
        match fs::remove_file(&path) {
            Ok(()) => deleted.push(path),
            Err(e) => failed.push(format!("{}: {e}", path.display())),
        }
    }
    if !failed.is_empty() {
        bail!("could not delete old backups: {}", failed.join("; "));
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{AdminAction, Cli, Command};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    const A: &str = "mailraft-20261201T031700Z.backup";
    const B: &str = "mailraft-20261202T031700Z.backup";
    const C: &str = "mailraft-20261203T031700Z.backup";
    const D: &str = "mailraft-20261204T031700Z.backup";

    #[test]
    fn the_name_is_the_utc_stamp_and_matches_the_pattern() {
        let t = DateTime::from_timestamp(1_764_645_420, 0).expect("a valid time");
        let name = backup_name(t);
        assert_eq!(name, "mailraft-20251202T031700Z.backup");
        assert!(is_backup_name(&name));
    }

    #[test]
    fn prunes_the_oldest_beyond_keep() {
        // Listing order is arbitrary: the choice must follow the names' time order.
        let all = names(&[C, A, D, B]);
        assert_eq!(to_prune(&all, 2, D), names(&[A, B]));
        assert_eq!(to_prune(&all, 3, D), names(&[A]));
        assert_eq!(to_prune(&all, 1, D), names(&[A, B, C]));
    }

    #[test]
    fn keeps_everything_when_there_are_not_more_than_keep() {
        assert!(to_prune(&names(&[A, B]), 2, B).is_empty());
        assert!(to_prune(&names(&[A]), 7, A).is_empty());
        assert!(to_prune(&[], 1, A).is_empty());
    }

    #[test]
    fn ignores_names_that_do_not_match_exactly() {
        let others = [
            "mailraft.backup",
            "mailraft-20261201T031700Z.backup.bak",
            "old-mailraft-20261201T031700Z.backup",
            ".mailraft-20261201T031700Z.backup.tmp-42",
            "mailraft-2026120xT031700Z.backup",
            "mailraft-20261201T0317000Z.backup",
            "mailraft-20261201 031700Z.backup",
            "mailraft-20261201T031700.backup",
            "notes.txt",
        ];
        let mut all = names(&others);
        all.extend(names(&[B, C]));
        // Neither deleted nor counted: two real backups with keep 2 leave nothing to delete.
        assert!(to_prune(&all, 2, C).is_empty());
        assert_eq!(to_prune(&all, 1, C), names(&[B]));
    }

    #[test]
    fn never_prunes_the_backup_just_written() {
        // A clock that went backwards: older-looking `A` is the new one.
        assert_eq!(to_prune(&names(&[A, C, D]), 1, A), names(&[C, D]));
    }

    #[test]
    fn prune_deletes_only_old_backup_files() -> Result<()> {
        let dir = tempfile::tempdir()?;
        for n in [A, B, C, "notes.txt", "mailraft.backup"] {
            fs::write(dir.path().join(n), b"x")?;
        }
        // A directory with a backup's name is not a backup.
        fs::create_dir(dir.path().join("mailraft-20261101T000000Z.backup"))?;
        let deleted = prune(dir.path(), 2, C)?;
        assert_eq!(deleted, vec![dir.path().join(A)]);
        let mut left = list_files(dir.path())?;
        left.sort();
        assert_eq!(left, names(&[B, C, "mailraft.backup", "notes.txt"]));
        Ok(())
    }

    fn backup_args(extra: &[&str]) -> Result<AdminAction, clap::Error> {
        let mut args = vec!["mailraft", "admin", "backup"];
        args.extend(extra);
        match Cli::try_parse_from(args)?.command {
            Command::Admin(a) => Ok(a.action),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_cli_takes_either_a_file_or_dir_and_keep() {
        match backup_args(&["--dir", "/backup", "--keep", "7"]) {
            Ok(AdminAction::Backup { file: None, dir: Some(d), keep: Some(7), force: false }) => {
                assert_eq!(d, Path::new("/backup"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            backup_args(&["x.backup", "--force"]),
            Ok(AdminAction::Backup { file: Some(_), dir: None, keep: None, force: true })
        ));
        for bad in [
            &[][..],
            &["x.backup", "--dir", "/backup", "--keep", "7"],
            &["--dir", "/backup"],
            &["--keep", "7"],
            &["--dir", "/backup", "--keep", "0"],
            &["--dir", "/backup", "--keep", "7", "--force"],
        ] {
            assert!(backup_args(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
