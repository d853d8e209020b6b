//! Backup and restore (issue 10, point 5) against the real binary: `mailraft admin backup FILE`
//! (or `--dir DIR --keep N`, which keeps the newest N time-stamped files) on a running `mailraft dev`, then `mailraft dev --restore-from FILE` on a new data directory
//! makes a new cluster with the mail, UIDs, flags and passwords as they were when the backup was
//! taken, and every mailbox under a new, larger UIDVALIDITY (the old cluster may have handed out
//! the same UIDs for other messages after the backup: RFC 3501 §2.3.1.1); only operator
//! certificates may take one; a damaged file or a data directory that already holds a node is
//! refused.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::imap::message;
use mailraft::certs::Leaf;
use support::observe::{ClusterInfo, parse_json, run_mailraft, wait_for};
use support::{Client, Dev, PASSWORD, Proc, USER};

/// Longest an admin command or a failing start may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `mailraft dev` flags on loopback port 0, as `Dev` starts it, on `data_dir`, restoring `backup`.
fn dev_flags(data_dir: &Path, backup: &Path, demo_password: &str) -> Vec<String> {
    let mut flags = support::dev_flags("127.0.0.1:0", demo_password);
    flags.push("--data-dir".into());
    flags.push(data_dir.display().to_string());
    flags.push("--restore-from".into());
    flags.push(backup.display().to_string());
    flags
}

/// `mailraft admin` arguments for the admin listener at `admin` with the operator certificate
/// of `certs`.
fn admin_args(admin: &str, certs: &str, action: &[&str]) -> Vec<String> {
    let endpoint = format!("https://{admin}");
    let mut args: Vec<String> =
        ["admin", "--endpoint", &endpoint, "--tls-dir", certs].map(String::from).to_vec();
    args.extend(action.iter().map(|a| a.to_string()));
    args
}

fn cluster_info(admin: &str, certs: &str) -> Result<ClusterInfo> {
    let out = run_mailraft(&admin_args(admin, certs, &["cluster-info", "--json"]), "", TIMEOUT)?;
    parse_json(&out, "cluster-info")
}

/// A backup of `dev` written to `file`.
fn backup(dev: &Dev, file: &Path) -> Result<String> {
    let mut args = dev.admin_args();
    args.extend(["backup".to_string(), file.display().to_string()]);
    run_mailraft(&args, "", TIMEOUT)
}

#[test]
fn a_restored_backup_is_a_new_cluster_with_the_mail_as_it_was() -> Result<()> {
    let dev = Dev::start()?;
    let mut c = Client::login_to(dev.imap, USER, PASSWORD)?;
    ensure!(c.run("CREATE Archive")?.is_ok());
    for (id, flags) in [("m1", "\\Seen"), ("m2", ""), ("m3", "\\Flagged $Label"), ("m4", "")] {
        c.append("INBOX", flags, &message(id))?;
    }
    // An earlier backup leaves a snapshot behind: the real one must not reuse it, since the
    // changes below came after it.
    let dir = tempfile::tempdir()?;
    backup(&dev, &dir.path().join("earlier.backup"))?;
    c.append("Archive", "\\Seen", &message("a1"))?;
    c.open("INBOX", false)?;
    ensure!(c.run("UID STORE 2 +FLAGS (\\Answered)")?.is_ok());
    // An expunged UID: the restored mailbox must not hand it out again.
    ensure!(c.run("UID STORE 4 +FLAGS (\\Deleted)")?.is_ok());
    ensure!(c.run("EXPUNGE")?.is_ok());
    let inbox = c.read_mailbox("INBOX")?;
    let archive = c.read_mailbox("Archive")?;
    let (_, uidnext, _) = c.status("INBOX")?;
    ensure!(inbox.messages.len() == 3 && uidnext == 5, "unexpected INBOX before the backup: {inbox:?}, UIDNEXT {uidnext}");

    let file = dir.path().join("cluster.backup");
    let out = backup(&dev, &file)?;
    ensure!(out.contains("backup of cluster"), "{out}");
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "the backup holds password hashes and keys but has mode {mode:o}");
    // After the backup: must not come back.
    c.append("INBOX", "", &message("late"))?;
    let old = cluster_info(&dev.admin.to_string(), &dev.certs.display().to_string())?;

    let restored_dir = dir.path().join("restored");
    let flags = dev_flags(&restored_dir, &file, "not-the-old-password");
    let args: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    let restored = Proc::spawn(&args, &[], &["imap", "admin", "certs"])?;
    let imap: std::net::SocketAddr = restored.get("imap")?;
    let (admin, certs): (String, String) = (restored.get("admin")?, restored.get("certs")?);

    // The accounts and their passwords came from the backup, not from this start's flags.
    let mut r = Client::login_to(imap, USER, PASSWORD).context("log in with the password of the backup")?;
    ensure!(Client::login_to(imap, USER, "not-the-old-password").is_err(), "the restored account got a new password");
    let restored_inbox = r.read_mailbox("INBOX")?;
    ensure!(restored_inbox.messages == inbox.messages, "INBOX differs:\nbefore   {inbox:?}\nrestored {restored_inbox:?}");
    let restored_archive = r.read_mailbox("Archive")?;
    ensure!(restored_archive.messages == archive.messages, "Archive differs:\nbefore   {archive:?}\nrestored {restored_archive:?}");
    // RFC 3501 §2.3.1.1: the same UIDs under the old UIDVALIDITY could name other messages
    // (the old cluster's "late" APPEND got UID 5, and so will the restored cluster's next one).
    for (name, before, after) in [("INBOX", &inbox, &restored_inbox), ("Archive", &archive, &restored_archive)] {
        ensure!(after.uidvalidity > before.uidvalidity, "{name} kept UIDVALIDITY {} after the restore (now {})", before.uidvalidity, after.uidvalidity);
    }
    ensure!(r.status("INBOX")? == (3, uidnext, restored_inbox.uidvalidity), "STATUS INBOX differs");
    let uid = r.append("INBOX", "", &message("new"))?;
    ensure!(uid == uidnext, "a new APPEND got UID {uid}, expected {uidnext} (above every UID of the backup)");

    let new = cluster_info(&admin, &certs)?;
    ensure!(
        !new.cluster_id.is_empty() && new.cluster_id != old.cluster_id && !new.cluster_id.trim_matches('0').is_empty(),
        "the restored node is in cluster {:?}, the old one is {:?}: a restore must make a new cluster",
        new.cluster_id,
        old.cluster_id
    );
    ensure!(new.voters() == [1] && new.leader_id == 1, "restored membership: {new:?}");

    // Other nodes join the new cluster as they would any cluster, and get the restored state.
    let certs_dir = Path::new(&certs);
    mailraft::certs::ensure_leaf(certs_dir, &Leaf::node(2, &["127.0.0.1".to_owned()]), false)?;
    let (cert, key) = mailraft::certs::paths(certs_dir, "node-2");
    let ca = certs_dir.join(mailraft::certs::CA_CERT);
    let node2_dir = dir.path().join("node2");
    let node2_args = [
        "storage", "--node-id", "2", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--exit-on-stdin-eof",
        "--data-dir",
    ];
    let mut node2_args: Vec<std::ffi::OsString> = node2_args.iter().map(Into::into).collect();
    node2_args.push(node2_dir.into_os_string());
    let node2_args: Vec<&std::ffi::OsStr> = node2_args.iter().map(|a| a.as_os_str()).collect();
    let (ca, cert, key) = (ca.display().to_string(), cert.display().to_string(), key.display().to_string());
    let env = [
        ("MAILRAFT_TLS__CA", ca.as_str()),
        ("MAILRAFT_TLS__CERT", cert.as_str()),
        ("MAILRAFT_TLS__KEY", key.as_str()),
        // No metrics listener: the default port may be taken by another test.
        ("MAILRAFT_TELEMETRY__METRICS_ADDR", ""),
    ];
    let node2 = Proc::spawn(&node2_args, &env, &["grpc", "admin"])?;
    let (grpc2, admin2): (String, String) = (node2.get("grpc")?, node2.get("admin")?);
    let url2 = format!("https://{grpc2}");
    run_mailraft(&admin_args(&admin, &certs, &["add-node", "2", &url2]), "", TIMEOUT)?;
    let joined = cluster_info(&admin, &certs)?;
    ensure!(joined.voters() == [1, 2], "after add-node: {joined:?}");
    let digest = |admin: &str| run_mailraft(&admin_args(admin, &certs, &["state-digest"]), "", TIMEOUT);
    wait_for("node 2 to hold the restored state", TIMEOUT, || {
        let (one, two) = (digest(&admin)?, digest(&admin2)?);
        Ok((one == two).then_some(()))
    })?;
    Ok(())
}

#[test]
fn only_an_operator_certificate_may_take_a_backup() -> Result<()> {
    let dev = Dev::start()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("stolen.backup");
    let mut args = dev.admin_args();
    args.extend(["--tls-name", "frontend-dev", "backup"].map(String::from));
    args.push(file.display().to_string());
    let refused = run_mailraft(&args, "", TIMEOUT).err().context("a front-end certificate took a backup")?;
    ensure!(format!("{refused:#}").contains("PERMISSION_DENIED"), "{refused:#}");
    let left: Vec<_> = std::fs::read_dir(dir.path())?.collect();
    ensure!(left.is_empty(), "files left behind: {left:?}");
    // The operator's certificate works on the same node.
    backup(&dev, &file)?;
    Ok(())
}

#[test]
fn a_damaged_backup_or_a_used_data_directory_is_refused() -> Result<()> {
    let dev = Dev::start()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("good.backup");
    backup(&dev, &file)?;

    let mut bytes = std::fs::read(&file)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let damaged = dir.path().join("damaged.backup");
    std::fs::write(&damaged, &bytes)?;
    let target = dir.path().join("from-damaged");
    let err = run_mailraft(&dev_flags(&target, &damaged, PASSWORD), "", TIMEOUT)
        .err()
        .context("a damaged backup was restored")?;
    let text = format!("{err:#}");
    ensure!(text.contains("checksum") || text.contains("corrupt"), "{text}");
    ensure!(!target.join("db").exists(), "a refused backup left a store behind");

    // A directory that already holds a node is never overwritten (the original dev's, running).
    let err = run_mailraft(&dev_flags(&dev.data_dir, &file, PASSWORD), "", TIMEOUT)
        .err()
        .context("a restore overwrote a node's data directory")?;
    ensure!(format!("{err:#}").contains("already holds a node's state"), "{err:#}");
    Ok(())
}

#[test]
fn backups_in_a_directory_keep_the_newest_and_touch_nothing_else() -> Result<()> {
    let dev = Dev::start()?;
    let dir = tempfile::tempdir()?;
    let old = ["mailraft-20200101T000000Z.backup", "mailraft-20200102T000000Z.backup", "mailraft-20200103T000000Z.backup"];
    let others = ["mailraft.backup", "notes.txt"];
    for name in old.iter().chain(&others) {
        std::fs::write(dir.path().join(name), b"old")?;
    }
    let listing = || -> Result<Vec<String>> {
        let mut names = std::fs::read_dir(dir.path())?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    };
    let before = listing()?;
    let dir_args = |keep: &str| ["backup", "--dir", &dir.path().display().to_string(), "--keep", keep].map(String::from);

    // A failed backup (a front-end certificate is refused) deletes nothing, even with --keep 1.
    let mut args = dev.admin_args();
    args.extend(["--tls-name", "frontend-dev"].map(String::from));
    args.extend(dir_args("1"));
    ensure!(run_mailraft(&args, "", TIMEOUT).is_err(), "a front-end certificate took a backup");
    ensure!(listing()? == before, "a failed backup changed the directory: {:?}", listing()?);

    let mut args = dev.admin_args();
    args.extend(dir_args("2"));
    let out = run_mailraft(&args, "", TIMEOUT)?;
    let names = listing()?;
    let new: Vec<&String> = names.iter().filter(|n| n.starts_with("mailraft-20") && !old.contains(&n.as_str())).collect();
    ensure!(new.len() == 1 && new[0].ends_with("Z.backup") && new[0].len() == old[0].len(), "{names:?}\n{out}");
    let mode = std::fs::metadata(dir.path().join(new[0]))?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "mode {mode:o}");
    let expected = [old[2], new[0].as_str(), others[0], others[1]];
    ensure!(names == expected, "left {names:?}, expected {expected:?}\n{out}");
    ensure!(out.contains(&format!("pruned {}", dir.path().join(old[0]).display())), "{out}");
    ensure!(out.contains("2 old backups pruned"), "{out}");
    Ok(())
}
