//! Durability: an APPEND acknowledged with OK survives SIGKILL of the whole process. The restarted
//! node must hold every acknowledged message with the same UID, flags and bytes.

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
    // Kill right after the last OK: no graceful shutdown, no flush on exit.
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
