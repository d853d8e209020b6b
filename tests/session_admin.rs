//! What an operator does about sessions: `mailraft admin disable-user` / `enable-user`,
//! `delete-user` and `rotate-session-key`, against `mailraft dev`; and the data directory
//! `mailraft dev` leaves behind is readable by its owner only.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use support::{Client, Dev, PASSWORD, USER, mailraft};

/// A plain IMAP session that keeps every line it read, even when the server closes the
/// connection before the tagged reply (as after `* BYE`), which `Client::run` reports only as an
/// error.
struct Session {
    reader: BufReader<TcpStream>,
    next_tag: u32,
}

impl Session {
    fn connect(addr: SocketAddr) -> Result<Session> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut s = Session { reader: BufReader::new(stream), next_tag: 1 };
        let greeting = s.line()?.context("no greeting")?;
        ensure!(greeting.starts_with("* OK"), "{greeting}");
        Ok(s)
    }

    /// One line, or `None` at end of stream.
    fn line(&mut self) -> Result<Option<String>> {
        let mut line = String::new();
        Ok((self.reader.read_line(&mut line)? > 0).then(|| line.trim_end().to_string()))
    }

    /// Sends `command`; returns the untagged lines and the tagged one (`None`: the connection
    /// closed first).
    fn run(&mut self, command: &str) -> Result<(Vec<String>, Option<String>)> {
        let tag = format!("s{}", self.next_tag);
        self.next_tag += 1;
        self.reader.get_mut().write_all(format!("{tag} {command}\r\n").as_bytes())?;
        let mut untagged = Vec::new();
        while let Some(line) = self.line()? {
            if line.starts_with(&format!("{tag} ")) {
                return Ok((untagged, Some(line)));
            }
            untagged.push(line);
        }
        Ok((untagged, None))
    }

    /// Waits, without sending anything, for an unsolicited `* BYE` (RFC 3501 §7.1.5) until
    /// `deadline`; fails on anything else that ends the wait.
    fn bye_by(&mut self, deadline: Instant) -> Result<String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "no BYE before the deadline");
            self.reader.get_ref().set_read_timeout(Some(left))?;
            match self.line()? {
                Some(line) if line.starts_with("* BYE") => return Ok(line),
                Some(_) => {}
                None => anyhow::bail!("the connection closed without BYE"),
            }
        }
    }

    fn login(&mut self) -> Result<()> {
        let (_, tagged) = self.run(&format!("LOGIN \"{USER}\" \"{PASSWORD}\""))?;
        ensure!(tagged.as_deref().is_some_and(|t| t.contains(" OK")), "login: {tagged:?}");
        Ok(())
    }
}

/// Whether the server ended the session: its next command (one that needs the storage tier, so
/// the token is checked) gets `* BYE` (RFC 3501 §7.1.5), or is refused with
/// `[AUTHENTICATIONFAILED]` (RFC 5530 §3). A connection that just drops, or any other error, is
/// not an ended session: a crashed server must not pass.
fn ended(session: &mut Session) -> Result<bool> {
    let (untagged, tagged) = session.run("SELECT INBOX")?;
    let bye = untagged.iter().any(|l| l.starts_with("* BYE"));
    let refused = tagged.as_deref().is_some_and(|t| t.contains("[AUTHENTICATIONFAILED]"));
    ensure!(bye || refused || tagged.is_some(), "the connection closed without BYE: {untagged:?}");
    Ok(bye || refused)
}

#[test]
fn admin_cli_disables_users_and_rotates_the_session_key() -> Result<()> {
    let dev = Dev::start()?;
    let admin = |action: &[&str]| {
        let mut args = dev.admin_args();
        args.extend(action.iter().map(|a| a.to_string()));
        mailraft(&args.iter().map(String::as_str).collect::<Vec<_>>(), "")
    };

    let mut before = Session::connect(dev.imap)?;
    before.login()?;
    let out = admin(&["disable-user", USER])?;
    ensure!(out.contains("disabled"), "{out}");
    ensure!(ended(&mut before)?, "a disabled user's session ends");
    let mut c = Session::connect(dev.imap)?;
    let (_, refused) = c.run(&format!("LOGIN {USER} {PASSWORD}"))?;
    ensure!(refused.as_deref().is_some_and(|t| t.contains("AUTHENTICATIONFAILED")), "{refused:?}");
    admin(&["enable-user", USER])?;
    c.login()?;

    // Default grace (the token lifetime): the session signed with the old key keeps working.
    let out = admin(&["rotate-session-key"])?;
    ensure!(out.contains("session key"), "{out}");
    let (_, selected) = c.run("SELECT INBOX")?;
    ensure!(selected.as_deref().is_some_and(|t| t.contains(" OK")), "session survives a rotation: {selected:?}");
    // A second rotation without grace drops the key that signed c's token at once.
    admin(&["rotate-session-key", "--grace-secs", "0"])?;
    ensure!(ended(&mut c)?, "a session signed with a dropped key ends");
    let mut d = Client::connect(dev.imap)?;
    d.login(USER, PASSWORD)?;
    ensure!(d.run("SELECT INBOX")?.is_ok());
    Ok(())
}

#[test]
fn admin_cli_deletes_users_ending_their_sessions() -> Result<()> {
    let dev = Dev::start()?;
    let admin = |action: &[&str], stdin: &str| {
        let mut args = dev.admin_args();
        args.extend(action.iter().map(|a| a.to_string()));
        mailraft(&args.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
    };
    let mut writer = Client::connect(dev.imap)?;
    writer.login(USER, PASSWORD)?;
    writer.append("INBOX", "", b"Subject: old\r\n\r\nmail of the deleted user\r\n")?;
    ensure!(writer.run("CREATE Archive")?.is_ok());
    writer.append("Archive", "\\Seen", b"Subject: kept\r\n\r\nfiled away\r\n")?;

    let mut plain = Session::connect(dev.imap)?;
    plain.login()?;
    let mut idle = Session::connect(dev.imap)?;
    idle.login()?;
    let (_, selected) = idle.run("SELECT INBOX")?;
    ensure!(selected.as_deref().is_some_and(|t| t.contains(" OK")), "{selected:?}");
    idle.reader.get_mut().write_all(b"i1 IDLE\r\n")?;
    let continuation = idle.line()?.context("closed instead of idling")?;
    ensure!(continuation.starts_with('+'), "{continuation}");

    let out = admin(&["delete-user", USER], "")?;
    ensure!(out.contains("deleted") && out.contains("removed 2 messages in 2 mailboxes"), "{out}");
    // Both sessions end by themselves (the Watch stream's account event), without a command.
    let deadline = Instant::now() + Duration::from_secs(10);
    plain.bye_by(deadline).context("the logged-in session")?;
    idle.bye_by(deadline).context("the session in IDLE")?;
    let mut c = Session::connect(dev.imap)?;
    let (_, refused) = c.run(&format!("LOGIN {USER} {PASSWORD}"))?;
    ensure!(refused.as_deref().is_some_and(|t| t.contains("AUTHENTICATIONFAILED")), "{refused:?}");
    ensure!(admin(&["delete-user", USER], "").is_err(), "deleting a deleted, purged user again fails");
    let pending = admin(&["pending-deletions"], "")?;
    ensure!(pending.trim().is_empty(), "the purge finished: {pending}");

    // The same login again is a new account that sees none of the old mail.
    admin(&["create-user", USER], &format!("{PASSWORD}\n"))?;
    let mut fresh = Session::connect(dev.imap)?;
    fresh.login()?;
    let (untagged, selected) = fresh.run("SELECT INBOX")?;
    ensure!(selected.as_deref().is_some_and(|t| t.contains(" OK")), "{selected:?}");
    ensure!(untagged.iter().any(|l| l == "* 0 EXISTS"), "the new INBOX is empty: {untagged:?}");
    let (listed, _) = fresh.run("LIST \"\" \"*\"")?;
    ensure!(!listed.iter().any(|l| l.contains("Archive")), "the old mailboxes are gone: {listed:?}");
    Ok(())
}

#[test]
fn dev_data_is_private() -> Result<()> {
    let dev = Dev::start()?;
    let mut c = Client::connect(dev.imap)?;
    c.login(USER, PASSWORD)?;
    let mut stores = 0;
    for path in walk(&dev.data_dir)? {
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() && path.join("db").is_dir() {
            stores += 1;
            ensure!(mode == 0o700, "store directory {} is {mode:o}", path.display());
            for sub in ["db", "snapshots"] {
                let m = std::fs::metadata(path.join(sub))?.permissions().mode() & 0o777;
                ensure!(m == 0o700, "{sub} of {} is {m:o}", path.display());
            }
        }
        if name.ends_with(".snap") || (name.ends_with(".pem") && name.contains("key")) {
            ensure!(mode == 0o600, "{} is {mode:o}", path.display());
        }
    }
    ensure!(stores == 1, "found {stores} store directories under {}", dev.data_dir.display());
    Ok(())
}

/// Every path under `dir`, directories included.
fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}
