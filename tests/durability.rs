//! Durability across a process crash: an APPEND acknowledged with OK survives SIGKILL of the whole
//! process (the restarted node holds every acknowledged message with the same UID, flags and
//! bytes), and messages far larger than gRPC's default frame limits come back byte for byte.
//!
//! SIGKILL leaves the kernel's page cache intact, so these tests cannot notice a missing fsync:
//! tests/durability_power_loss.rs cuts the power under the node (faultfs) for that.

mod support;

use anyhow::{Result, ensure};
use support::{Client, Dev, PASSWORD, USER};

#[test]
fn acknowledged_appends_survive_sigkill() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut dev = Dev::start_in(&data)?;

    let mut c = Client::connect(dev.imap)?;
    c.login(USER, PASSWORD)?;
    ensure!(c.run("CREATE Durable")?.is_ok());
    let mut acked = Vec::new();
    for i in 0..20u32 {
        let body = format!(
            "From: a@example.test\r\nSubject: durable {i}\r\n\r\n{}\r\n",
            "payload line\r\n".repeat(i as usize + 1)
        );
        let flags = if i % 2 == 0 { "\\Flagged" } else { "\\Seen $Important" };
        let uid = c.append("Durable", flags, body.as_bytes())?;
        acked.push((uid, flags, body));
    }
    // Crash right after the last OK: no graceful shutdown, no flush on exit (the page cache stays).
    dev.kill()?;

    let dev = Dev::start_in(&data)?;
    let mut c = Client::connect(dev.imap)?;
    c.login(USER, PASSWORD)?;
    let sel = c.run("EXAMINE Durable")?;
    ensure!(sel.is_ok(), "examine: {}", sel.status);
    for (uid, flags, body) in &acked {
        let r = c.run(&format!("UID FETCH {uid} (UID FLAGS BODY.PEEK[])"))?;
        ensure!(r.is_ok(), "fetch {uid}: {}", r.status);
        ensure!(r.untagged.len() == 1, "one FETCH response for uid {uid}: {:?}", r.untagged);
        let resp = String::from_utf8_lossy(&r.untagged[0]).to_string();
        ensure!(resp.contains(&format!("UID {uid}")), "uid {uid} in {resp}");
        for f in flags.split(' ') {
            ensure!(resp.contains(f), "flag {f} kept for uid {uid}: {resp}");
        }
        ensure!(resp.contains(body.as_str()), "bytes identical for uid {uid}: {resp}");
    }
    let uids: Vec<u32> = acked.iter().map(|a| a.0).collect();
    ensure!(uids.windows(2).all(|w| w[0] < w[1]), "UIDs strictly increase: {uids:?}");
    // UIDNEXT continues after the recovered UIDs: a new append never reuses one.
    let next = c.append("Durable", "", b"Subject: after restart\r\n\r\nx\r\n")?;
    ensure!(next > *uids.last().unwrap_or(&0), "new uid {next} after {uids:?}");
    Ok(())
}

#[test]
fn large_message_round_trips_byte_for_byte() -> Result<()> {
    let dev = Dev::start()?;
    let mut c = Client::connect(dev.imap)?;
    c.login(USER, PASSWORD)?;
    // 12 MiB: several gRPC fetch chunks' worth, above tonic's 4 MiB default message limit.
    let mut body = b"From: big@example.test\r\nSubject: large\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&*+-=?^_~\r\n";
    while body.len() < 12 << 20 {
        body.extend_from_slice(line);
    }
    let uid = c.append("INBOX", "", &body)?;
    ensure!(c.run("EXAMINE INBOX")?.is_ok());
    let r = c.run(&format!("UID FETCH {uid} (RFC822.SIZE BODY.PEEK[])"))?;
    ensure!(r.is_ok(), "{}", r.status);
    let resp = &r.untagged[0];
    ensure!(
        String::from_utf8_lossy(&resp[..200.min(resp.len())]).contains(&format!("RFC822.SIZE {}", body.len())),
        "size reported"
    );
    ensure!(resp.windows(body.len()).any(|w| w == body.as_slice()), "bytes identical");
    Ok(())
}
