//! What an operator does about sessions: `mailraft admin disable-user` / `enable-user` and
//! `rotate-session-key`, against `mailraft dev`; and the data directory `mailraft dev` leaves
//! behind is readable by its owner only.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

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
