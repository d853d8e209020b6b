//! `mailraft dev --restore-from FILE` (and `mailraft storage --restore-from`, the same code)
//! refuses a backup taken at a feature level this binary does not know
//! (`mailraft_model::feature`), before it writes anything: the new cluster would apply its
//! entries with older rules than the state was made under.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mailraft_model::{Command, FatalError, KNOWN_FEATURE_LEVEL, Request, Table, WriteSet, keys};
use mailraft_store::{Entry, LogId};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload};
use support::observe::run_mailraft_status;

/// Longest a refused start may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Writes to `file` a backup (a snapshot file, as `mailraft admin backup` saves it) of a state
/// holding one tenant, at feature level `level`, which no entry of this binary can raise beyond
/// [`KNOWN_FEATURE_LEVEL`]: the store is given the level directly.
async fn backup_at_level(dir: &Path, level: u32, file: &Path) -> Result<()> {
    let (_log, mut sm) = mailraft_store::open(dir)?;
    let tenant = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(Request::new(
            1_700_000_000_000,
            Command::CreateTenant { domain: "example.test".into() },
        )),
    };
    let replies = sm.apply([tenant]).await?;
    ensure!(replies.iter().all(|r| r.is_ok()), "{replies:?}");
    let mut raise = WriteSet::default();
    raise.put(Table::Meta, keys::META_FEATURE_LEVEL.to_vec(), level.to_be_bytes().to_vec());
    sm.write_state_for_tests(raise)?;
    sm.get_snapshot_builder().await.build_snapshot().await?;
    std::fs::copy(dir.join(mailraft_store::SNAPSHOT_DIR).join("current.snap"), file)?;
    Ok(())
}

/// `mailraft dev` on loopback port 0, on `data_dir`, restoring `backup`.
fn restore_args(data_dir: &Path, backup: &Path) -> Vec<String> {
    let mut args = support::dev_flags("127.0.0.1:0", support::PASSWORD);
    args.extend(["--data-dir".into(), data_dir.display().to_string()]);
    args.extend(["--restore-from".into(), backup.display().to_string()]);
    args
}

/// The files a restore (or a node) writes into its data directory: none may exist after a
/// refusal. `certs` is dev mode's own, made before the restore begins.
fn node_state(data_dir: &Path) -> Vec<String> {
    ["db", "snapshots", "cluster-id", "restore-in-progress"]
        .into_iter()
        .filter(|name| data_dir.join(name).exists())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_at_a_level_this_binary_does_not_know_is_refused_and_nothing_written() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let newer = KNOWN_FEATURE_LEVEL + 1;
    let file = dir.path().join("newer.backup");
    backup_at_level(&dir.path().join("source"), newer, &file).await?;

    let target = dir.path().join("restored");
    let ran = tokio::task::spawn_blocking({
        let args = restore_args(&target, &file);
        move || run_mailraft_status(&args, "", TIMEOUT)
    })
    .await??;
    ensure!(!ran.success, "restored a backup at feature level {newer}: {}", ran.stdout);
    let expected = FatalError::NewerFeatureLevel { level: newer, known: KNOWN_FEATURE_LEVEL }.to_string();
    ensure!(ran.stderr.contains(&expected), "the refusal does not say why: {}", ran.stderr);
    let written = node_state(&target);
    ensure!(written.is_empty(), "a refused restore wrote {written:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_at_the_known_level_is_accepted_by_the_same_check() -> Result<()> {
    // The control for the test above: the same kind of file at a level this binary knows
    // passes the check that refuses the newer one (it is then restored, as tests/backup.rs
    // shows end to end).
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("known.backup");
    backup_at_level(&dir.path().join("source"), KNOWN_FEATURE_LEVEL, &file).await?;
    let info = mailraft_store::verify_backup(&file).context("verify")?;
    ensure!(info.feature_level == KNOWN_FEATURE_LEVEL, "{info:?}");
    Ok(())
}
