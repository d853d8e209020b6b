//! What an operator does: make certificates with `mailraft certs`, run storage and front-end as
//! separate processes with mutual TLS, manage tenants and users with `mailraft admin`, scrape
//! `/metrics`, and trust that logs hold no secrets; a storage node refuses to run without TLS
//! unless plaintext is asked for on loopback.

mod support;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Result, ensure};
use support::{Client, Dev, PASSWORD, Proc, USER, free_port, mailraft};

#[test]
fn admin_cli_creates_tenants_users_and_changes_passwords() -> Result<()> {
    let dev = Dev::start()?;
    let admin = |action: &[&str], stdin: &str| {
        let mut args = dev.admin_args();
        args.extend(action.iter().map(|a| a.to_string()));
        mailraft(&args.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
    };
    let out = admin(&["create-tenant", "other.test"], "")?;
    ensure!(out.contains("other.test"), "{out}");
    let first = "first-Secret-7731";
    admin(&["create-user", "bob@other.test"], &format!("{first}\n"))?;
    // Creating the same user again is refused.
    ensure!(admin(&["create-user", "bob@other.test"], "x\n").is_err());

    // Tenants are isolated: the demo user's mailbox is invisible to bob.
    let mut demo = Client::connect(dev.imap)?;
    demo.login(USER, PASSWORD)?;
    ensure!(demo.run("CREATE DemoOnly")?.is_ok());
    let mut bob = Client::connect(dev.imap)?;
    bob.login("bob@other.test", first)?;
    let list = bob.run("LIST \"\" *")?;
    let text: Vec<String> = list.untagged.iter().map(|l| String::from_utf8_lossy(l).to_string()).collect();
    ensure!(text.iter().any(|l| l.contains("INBOX")), "bob has an INBOX: {text:?}");
    ensure!(!text.iter().any(|l| l.contains("DemoOnly")), "bob cannot see demo's mailboxes: {text:?}");
    ensure!(!bob.run("SELECT DemoOnly")?.is_ok(), "bob cannot select demo's mailbox");

    let second = "second-Secret-9919";
    admin(&["set-password", "bob@other.test"], &format!("{second}\n"))?;
    let mut c = Client::connect(dev.imap)?;
    let old = c.run(&format!("LOGIN bob@other.test {first}"))?;
    ensure!(old.status.starts_with("NO") && old.status.contains("AUTHENTICATIONFAILED"), "{}", old.status);
    c.login("bob@other.test", second)?;

    // No plaintext password reaches the disk (the Raft log and state hold argon2 hashes only).
    for entry in walk(&dev.data_dir)? {
        let bytes = std::fs::read(&entry)?;
        for pw in [first, second] {
            ensure!(!contains(&bytes, pw.as_bytes()), "{pw} found in {}", entry.display());
        }
    }
    Ok(())
}

#[test]
fn storage_and_frontend_run_as_separate_processes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node1");
    // The README's walkthrough: one CA, then a certificate per node, front-end and operator.
    let certs = dir.path().join("certs");
    let certs_dir = certs.to_str().unwrap_or_default();
    let out = mailraft(&["certs", "--dir", certs_dir, "node", "1", "--san", "127.0.0.1"], "")?;
    ensure!(out.contains("issued for spiffe://mailraft/node/1"), "{out}");
    let again = mailraft(&["certs", "--dir", certs_dir, "node", "1", "--san", "127.0.0.1"], "")?;
    ensure!(again.contains("exists"), "issuing is idempotent: {again}");
    mailraft(&["certs", "--dir", certs_dir, "frontend", "imap1"], "")?;
    mailraft(&["certs", "--dir", certs_dir, "operator"], "")?;
    let file = |name: &str| certs.join(name).display().to_string();
    let (ca, node_cert, node_key) = (file("ca.pem"), file("node-1.pem"), file("node-1-key.pem"));
    let node_env =
        [("MAILRAFT_TLS__CA", ca.as_str()), ("MAILRAFT_TLS__CERT", &node_cert), ("MAILRAFT_TLS__KEY", &node_key)];

    let flags = [
        "storage", "--bootstrap", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
        "--data-dir",
    ];
    let storage_args: Vec<&OsStr> = flags
        .iter()
        .map(OsStr::new)
        .chain(std::iter::once(data.as_os_str()))
        .collect();
    let mut storage = Proc::spawn(&storage_args, &node_env, &["grpc", "admin"])?;
    let grpc: SocketAddr = storage.get("grpc")?;
    let admin_addr: SocketAddr = storage.get("admin")?;
    let admin_endpoint = format!("https://{admin_addr}");
    let admin = |action: &[&str], stdin: &str| {
        let mut args = vec!["admin", "--endpoint", &admin_endpoint, "--tls-dir", certs_dir];
        args.extend_from_slice(action);
        mailraft(&args, stdin)
    };
    admin(&["create-tenant", "split.test"], "")?;
    admin(&["create-user", "carol@split.test"], "carol-pw\n")?;
    let info = admin(&["cluster-info"], "")?;
    ensure!(info.lines().any(|l| l.starts_with("leader") && l.split_whitespace().nth(1) == Some("1")), "single node leads: {info}");
    // Without the operator certificate the admin listener does not talk.
    let anonymous = mailraft(&["admin", "--endpoint", &format!("http://{admin_addr}"), "cluster-info"], "");
    ensure!(anonymous.is_err(), "plaintext admin call answered: {anonymous:?}");

    let endpoint = format!("https://{grpc}");
    let fe_flags = ["frontend", "--storage", &endpoint, "--imap-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"];
    let fe_args: Vec<&OsStr> = fe_flags
        .iter()
        .map(OsStr::new)
        .collect();
    // Configuration through the environment, as in a container: cleartext LOGIN for this test.
    let (fe_cert, fe_key) = (file("frontend-imap1.pem"), file("frontend-imap1-key.pem"));
    let fe_env = [
        ("MAILRAFT_IMAP__ALLOW_PLAINTEXT_AUTH", "true"),
        ("MAILRAFT_TLS__CA", ca.as_str()),
        ("MAILRAFT_TLS__CERT", &fe_cert),
        ("MAILRAFT_TLS__KEY", &fe_key),
    ];
    let mut frontend = Proc::spawn(&fe_args, &fe_env, &["imap"])?;
    let mut c = Client::connect(frontend.get("imap")?)?;
    c.login("carol@split.test", "carol-pw")?;
    let uid = c.append("INBOX", "\\Seen", b"Subject: over grpc\r\n\r\nbetween processes\r\n")?;
    ensure!(uid == 1, "first uid {uid}");
    ensure!(c.run("SELECT INBOX")?.is_ok());
    let r = c.run("UID FETCH 1 (FLAGS BODY.PEEK[TEXT])")?;
    let text = String::from_utf8_lossy(&r.untagged[0]).to_string();
    ensure!(text.contains("between processes") && text.contains("\\Seen"), "{text}");
    ensure!(c.run("LOGOUT")?.is_ok());

    // Both stop cleanly on SIGTERM (front-end first, as an orchestrator would drain it).
    ensure!(frontend.terminate()?.success(), "frontend exits 0 on SIGTERM");
    ensure!(storage.terminate()?.success(), "storage exits 0 on SIGTERM");
    Ok(())
}

#[test]
fn storage_refuses_to_start_without_tls_unless_plaintext_on_loopback() -> Result<()> {
    use support::observe::run_mailraft;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node").display().to_string();
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "[tls]\ninsecure_plaintext = true\n")?;
    let storage = |config: Option<&std::path::Path>, grpc: &str| {
        let mut args: Vec<String> = vec!["storage".into(), "--data-dir".into(), data.clone()];
        if let Some(c) = config {
            args.extend(["--config".into(), c.display().to_string()]);
        }
        args.extend(["--grpc-addr", grpc, "--admin-addr", "127.0.0.1:0"].map(String::from));
        run_mailraft(&args, "", Duration::from_secs(30)).map_err(|e| e.to_string())
    };
    let no_tls = storage(None, "127.0.0.1:0");
    ensure!(no_tls.as_ref().is_err_and(|e| e.contains("needs TLS material")), "{no_tls:?}");
    // Plaintext asked for, but on an address others can reach.
    let open = storage(Some(&plain), "0.0.0.0:0");
    let refused = |e: &String| e.contains("node.grpc_addr") && e.contains("only allowed on loopback");
    ensure!(open.as_ref().is_err_and(refused), "{open:?}");
    Ok(())
}

#[test]
fn metrics_endpoint_reports_imap_grpc_raft_and_rocksdb() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let dev = Dev::start_with(&dir.path().join("data"), &format!("127.0.0.1:{port}"), &[])?;
    let mut c = Client::connect(dev.imap)?;
    c.login(USER, PASSWORD)?;
    c.append("INBOX", "", b"Subject: m\r\n\r\nmetrics\r\n")?;
    ensure!(c.run("SELECT INBOX")?.is_ok());
    ensure!(c.run("FETCH 1 (FLAGS)")?.is_ok());

    let body = http_get(SocketAddr::from(([127, 0, 0, 1], port)), "/metrics")?;
    for name in [
        "mailraft_imap_connections",
        "mailraft_imap_commands_total",
        "mailraft_imap_command_seconds",
        "mailraft_grpc_requests_total",
        "mailraft_raft_apply_seconds",
        "mailraft_rocksdb_size_bytes",
        "mailraft_build_info",
    ] {
        ensure!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    ensure!(body.contains("command=\"APPEND\"") || body.contains("command=\"append\""), "per-command label:\n{body}");
    Ok(())
}

#[test]
fn logs_never_contain_passwords_or_message_text() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("mailraft.log");
    // Debug level: the most a production operator would turn on.
    let dev = Dev::start_logged(&dir.path().join("data"), "127.0.0.1:0", &[("RUST_LOG", "debug")], Some(&log))?;
    let secret_body = "Zq7-unmistakable-body-text";
    let secret_subject = "Subject-Marker-4411";
    let mut c = Client::connect(dev.imap)?;
    ensure!(!c.run("LOGIN demo@example.test wrong-Pass-0042")?.is_ok());
    c.login(USER, PASSWORD)?;
    c.append("INBOX", "", format!("Subject: {secret_subject}\r\n\r\n{secret_body}\r\n").as_bytes())?;
    ensure!(c.run("SELECT INBOX")?.is_ok());
    ensure!(c.run("FETCH 1 (BODY[] ENVELOPE)")?.is_ok());
    ensure!(c.run("SEARCH BODY unmistakable")?.is_ok());
    drop(c);
    drop(dev);
    let logs = std::fs::read_to_string(&log)?;
    ensure!(logs.len() > 1000, "debug logging produced output ({} bytes)", logs.len());
    for secret in [PASSWORD, "wrong-Pass-0042", secret_body, secret_subject, "unmistakable"] {
        ensure!(!logs.contains(secret), "{secret:?} appears in the logs");
    }
    Ok(())
}

/// A one-shot HTTP/1.0 GET.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    ensure!(out.starts_with("HTTP/1.") && out.contains(" 200 "), "GET {path}: {}", out.lines().next().unwrap_or(""));
    Ok(out)
}

fn walk(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
