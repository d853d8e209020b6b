//! A throwaway reference Dovecot from Debian's packages: installed with apt when missing, run as
//! a normal foreground process (`dovecot -F`, not systemd) from a config written into a temp
//! dir — loopback only, non-standard ports, plaintext LOGIN allowed, a passwd-file with the
//! bench users, Maildir under the temp dir, LMTP on TCP — and stopped with SIGTERM.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const DOVECOT: &str = "/usr/sbin/dovecot";

/// Makes sure `dovecot`, its IMAP and LMTP servers are installed (apt-get, as root).
pub fn ensure_installed() -> Result<()> {
    let have = |p: &str| Path::new(p).exists();
    if have(DOVECOT) && have("/usr/lib/dovecot/imap") && have("/usr/lib/dovecot/lmtp") {
        return Ok(());
    }
    eprintln!("installing dovecot-imapd dovecot-lmtpd with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "dovecot-imapd", "dovecot-lmtpd"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    if !install().map(|s| s.success()).unwrap_or(false) {
        // Fresh machines have no package lists yet.
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::null())
            .status();
        let ok = install().context("run apt-get")?.success();
        if !ok {
            bail!("apt-get install dovecot-imapd dovecot-lmtpd failed");
        }
    }
    Ok(())
}

/// A free loopback port (bound then released; a tiny race we accept for a local harness).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running throwaway Dovecot; stopped on drop.
pub struct Dovecot {
    child: Child,
    /// Plain IMAP.
    pub imap: SocketAddr,
    /// LMTP (TCP).
    pub lmtp: SocketAddr,
    /// The config file.
    pub config: PathBuf,
}

impl Dovecot {
    /// Writes the config and passwd-file under `dir` and starts Dovecot.
    pub fn start(dir: &Path, logins: &[String], password: &str, fsync: &str) -> Result<Dovecot> {
        ensure_installed()?;
        if password.contains([':', '\n']) {
            bail!("passwords with ':' or newlines cannot go into a passwd-file");
        }
        let (imap_port, lmtp_port) = (free_port()?, free_port()?);
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // Mail processes run as nobody: the tree must be reachable and the mail dir theirs.
        set_mode(dir, 0o755)?;
        std::os::unix::fs::chown(dir.join("mail"), Some(65534), Some(65534))
            .context("chown mail dir")?;
        let passwd: String = logins
            .iter()
            .map(|l| format!("{l}:{{PLAIN}}{password}\n"))
            .collect();
        std::fs::write(dir.join("passwd"), passwd)?;
        set_mode(&dir.join("passwd"), 0o644)?;
        let config = dir.join("dovecot.conf");
        std::fs::write(&config, config_text(dir, imap_port, lmtp_port, fsync))?;
        let log = std::fs::File::create(dir.join("dovecot.stderr"))?;
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("start dovecot")?;
        let mut d = Dovecot {
            child,
            imap: SocketAddr::from(([127, 0, 0, 1], imap_port)),
            lmtp: SocketAddr::from(([127, 0, 0, 1], lmtp_port)),
            config,
        };
        d.wait_ready(dir)?;
        Ok(d)
    }

    /// Polls until the IMAP greeting arrives (bounded).
    fn wait_ready(&mut self, dir: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let err = std::fs::read_to_string(dir.join("dovecot.stderr")).unwrap_or_default();
                bail!("dovecot exited ({status}): {}", err.trim());
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&self.imap, Duration::from_millis(500)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 64];
                if matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"* OK")) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "dovecot did not greet on {} within 30 s (see {})",
            self.imap,
            dir.join("dovecot.log").display()
        )
    }

    /// The master's pid (for CPU accounting of its process tree).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))
}

/// Dovecot 2.3 configuration. `instance_name` and `base_dir` keep it apart from a system
/// Dovecot; limits are raised so thousands of bench sessions from one IP are not refused.
fn config_text(dir: &Path, imap_port: u16, lmtp_port: u16, fsync: &str) -> String {
    let d = dir.display();
    format!(
        r#"# Throwaway config written by mailraft-bench compare. Loopback only.
instance_name = mailraft-bench-{imap_port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
mail_fsync = {fsync}
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
default_process_limit = 2500
default_client_limit = 10000
default_vsz_limit = 1G
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service anvil {{
  client_limit = 15000
}}
protocol imap {{
  mail_max_userip_connections = 10000
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
"#
    )
}
