//! Real IMAP clients against a real `mailraft dev`: Python imaplib, curl, mbsync (isync), and
//! hostile input over raw sockets. The clients are installed by `scripts/setup.sh`.

mod support;

use anyhow::Result;
use support::{Dev, PASSWORD, USER, client_script, run_client};

#[test]
fn python_imaplib_full_session() -> Result<()> {
    let dev = Dev::start()?;
    let port = dev.imap.port().to_string();
    let out = run_client("python3", &[&client_script("imaplib_flow.py"), "127.0.0.1", &port, USER, PASSWORD])?;
    assert!(out.contains("all checks passed"), "{out}");
    // The same over implicit TLS.
    let port = dev.imaps.port().to_string();
    let out = run_client("python3", &[&client_script("imaplib_flow.py"), "127.0.0.1", &port, USER, PASSWORD, "--tls"])?;
    assert!(out.contains("all checks passed"), "{out}");
    Ok(())
}

/// RFC 7162 CONDSTORE as imaplib drives it (ENABLE, HIGHESTMODSEQ, MODSEQ, CHANGEDSINCE,
/// UNCHANGEDSINCE, SEARCH MODSEQ, and a second connection's change).
#[test]
fn python_imaplib_condstore() -> Result<()> {
    let dev = Dev::start()?;
    let port = dev.imap.port().to_string();
    let out = run_client("python3", &[&client_script("condstore_imaplib.py"), "127.0.0.1", &port, USER, PASSWORD])?;
    assert!(out.contains("all checks passed"), "{out}");
    Ok(())
}

#[test]
fn curl_list_fetch_append() -> Result<()> {
    let dev = Dev::start()?;
    let (p, tp) = (dev.imap.port().to_string(), dev.imaps.port().to_string());
    let cert = dev.cert.to_string_lossy().to_string();
    let out = run_client("bash", &[&client_script("curl_flow.sh"), "127.0.0.1", &p, &tp, USER, PASSWORD, &cert])?;
    assert!(out.contains("all checks passed"), "{out}");
    Ok(())
}

#[test]
fn mbsync_two_way_sync() -> Result<()> {
    let dev = Dev::start()?;
    let tp = dev.imaps.port().to_string();
    let cert = dev.cert.to_string_lossy().to_string();
    let out = run_client("bash", &[&client_script("mbsync_flow.sh"), "127.0.0.1", &tp, USER, PASSWORD, &cert])?;
    assert!(out.contains("all checks passed"), "{out}");
    Ok(())
}

#[test]
fn bad_input_gets_bad_or_no_and_others_keep_working() -> Result<()> {
    let dev = Dev::start()?;
    let port = dev.imap.port().to_string();
    let out = run_client("python3", &[&client_script("bad_input.py"), "127.0.0.1", &port, USER, PASSWORD])?;
    assert!(out.contains("all checks passed"), "{out}");
    Ok(())
}
