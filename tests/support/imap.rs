//! What the fault tests need of the blocking IMAP [`Client`] beyond LOGIN and APPEND: SELECT and
//! STATUS values, APPEND/COPY results that are not errors (a NO is an outcome to record, not a
//! failure of the test), reading a mailbox back as (UID, flags, test id), and IDLE (RFC 2177)
//! with a deadline. Every message a test writes carries a unique `X-Fault-Id` header (and
//! Message-ID), which is how the checks find it again.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::{Client, Reply};

/// Header that identifies a test message.
pub const ID_HEADER: &str = "X-Fault-Id";

/// A message whose `X-Fault-Id` and Message-ID are `id`.
pub fn message(id: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@fault.test>\r\n{ID_HEADER}: {id}\r\nFrom: load@cluster.test\r\nTo: fault@cluster.test\r\n\
         Subject: fault test {id}\r\n\r\nbody of {id}\r\n"
    )
    .into_bytes()
}

/// Values of a SELECT or EXAMINE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxInfo {
    /// `* n EXISTS`.
    pub exists: u32,
    /// `[UIDVALIDITY n]`.
    pub uidvalidity: u32,
    /// `[UIDNEXT n]`.
    pub uidnext: u32,
}

/// One message read back by [`Client::read_mailbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its UID.
    pub uid: u32,
    /// Its flags, as the server spelled them.
    pub flags: Vec<String>,
    /// Its `X-Fault-Id`, if it has one.
    pub id: Option<String>,
}

/// A whole mailbox read back, in sequence-number order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// UIDVALIDITY at the time of reading.
    pub uidvalidity: u32,
    /// The messages.
    pub messages: Vec<Fetched>,
}

/// `[APPENDUID validity uid]` of a tagged OK (RFC 4315 §3).
pub fn appenduid(reply: &Reply) -> Option<(u32, u32)> {
    let code = reply.status.split("APPENDUID ").nth(1)?;
    let mut words = code.split([' ', ']']);
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// `[COPYUID validity source-uids dest-uids]` of a tagged OK, for a single-message copy.
pub fn copyuid(reply: &Reply) -> Option<(u32, u32)> {
    let code = reply.status.split("COPYUID ").nth(1)?;
    let mut words = code.split([' ', ']']);
    let validity = words.next()?.parse().ok()?;
    let _source = words.next()?;
    Some((validity, words.next()?.parse().ok()?))
}

/// `n` of a `* n EXISTS` line.
pub fn exists(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let rest = text.strip_prefix("* ")?;
    let (n, word) = rest.split_once(' ')?;
    word.eq_ignore_ascii_case("EXISTS").then(|| n.parse().ok()).flatten()
}

/// True when the error is a read that timed out (rather than a closed or broken connection).
pub fn is_timeout(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Parses one `* n FETCH (UID u FLAGS (...) BODY[...] {k}\r\n<header>)` response, whatever the
/// order of its items.
pub fn parse_fetch(resp: &[u8]) -> Option<Fetched> {
    // Separate the literal (the header) from the rest, so neither is searched for the other's words.
    let (mut outside, mut literal) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < resp.len() {
        if resp[i] == b'{' {
            let close = resp[i..].iter().position(|&b| b == b'}').map(|c| i + c);
            let len = close.and_then(|c| {
                std::str::from_utf8(&resp[i + 1..c])
                    .ok()?
                    .trim_end_matches('+')
                    .parse()
                    .ok()
            });
            if let (Some(c), Some(n)) = (close, len) {
                let start = c + 3;
                if resp.get(c + 1..start) == Some(b"\r\n".as_slice()) {
                    let n: usize = n;
                    literal.extend_from_slice(&resp[start.min(resp.len())..(start + n).min(resp.len())]);
                    i = start + n;
                    continue;
                }
            }
        }
        outside.push(resp[i]);
        i += 1;
    }
    let outside = String::from_utf8_lossy(&outside);
    let uid_at = outside.find("UID ")?;
    let uid = outside[uid_at + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let flags = outside
        .split("FLAGS (")
        .nth(1)
        .and_then(|f| f.split(')').next())
        .map(|f| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let header = String::from_utf8_lossy(&literal);
    let key = format!("{}:", ID_HEADER.to_ascii_lowercase());
    let id = header.to_ascii_lowercase().find(&key).map(|at| {
        header[at + key.len()..]
            .split(['\r', '\n'])
            .next()
            .unwrap_or("")
            .trim()
            .to_owned()
    });
    Some(Fetched { uid, flags, id })
}

impl Client {
    /// Connects, reads the greeting and logs in.
    pub fn login_to(addr: std::net::SocketAddr, user: &str, password: &str) -> Result<Client> {
        let mut c = Client::connect(addr)?;
        c.login(user, password)?;
        Ok(c)
    }

    /// Replaces the 30 s read timeout (the longest a single reply may take).
    pub fn set_read_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.stream.get_ref().set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// SELECT (or EXAMINE when `read_only`), failing on anything but OK.
    pub fn open(&mut self, mailbox: &str, read_only: bool) -> Result<MailboxInfo> {
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let r = self.run(&format!("{verb} \"{mailbox}\""))?;
        ensure!(r.is_ok(), "{verb} {mailbox}: {}", r.status);
        let mut info = MailboxInfo::default();
        for line in &r.untagged {
            let text = String::from_utf8_lossy(line);
            if let Some(n) = exists(line) {
                info.exists = n;
            }
            for (code, slot) in [
                ("[UIDVALIDITY ", &mut info.uidvalidity),
                ("[UIDNEXT ", &mut info.uidnext),
            ] {
                if let Some(v) = text.split(code).nth(1).and_then(|v| v.split(']').next()) {
                    *slot = v.trim().parse().with_context(|| format!("{code} in {text}"))?;
                }
            }
        }
        ensure!(info.uidvalidity != 0, "no UIDVALIDITY in {verb} {mailbox}");
        Ok(info)
    }

    /// `STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY)` as (messages, uidnext, uidvalidity).
    pub fn status(&mut self, mailbox: &str) -> Result<(u32, u32, u32)> {
        let r = self.run(&format!("STATUS \"{mailbox}\" (MESSAGES UIDNEXT UIDVALIDITY)"))?;
        ensure!(r.is_ok(), "STATUS {mailbox}: {}", r.status);
        let line = r
            .untagged
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_string())
            .find(|l| l.starts_with("* STATUS"))
            .ok_or_else(|| anyhow!("no STATUS response"))?;
        let value = |name: &str| -> Result<u32> {
            let v = line
                .split(&format!("{name} "))
                .nth(1)
                .ok_or_else(|| anyhow!("no {name} in {line}"))?;
            Ok(v.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("").parse()?)
        };
        Ok((value("MESSAGES")?, value("UIDNEXT")?, value("UIDVALIDITY")?))
    }

    /// APPEND with LITERAL+, returning the reply whatever it says.
    pub fn append_reply(&mut self, mailbox: &str, flags: &str, body: &[u8]) -> Result<Reply> {
        let mut cmd = format!("APPEND \"{mailbox}\" ({flags}) {{{}+}}\r\n", body.len()).into_bytes();
        cmd.extend_from_slice(body);
        self.run_bytes(&cmd)
    }

    /// `UID SEARCH ALL` of the selected mailbox.
    pub fn uid_search_all(&mut self) -> Result<Vec<u32>> {
        let r = self.run("UID SEARCH ALL")?;
        ensure!(r.is_ok(), "UID SEARCH: {}", r.status);
        let mut uids = Vec::new();
        for line in &r.untagged {
            let text = String::from_utf8_lossy(line);
            if let Some(rest) = text.trim_end().strip_prefix("* SEARCH") {
                for word in rest.split_whitespace() {
                    uids.push(word.parse()?);
                }
            }
        }
        Ok(uids)
    }

    /// Every message of `mailbox` (EXAMINEd, so nothing changes by reading) with UID, flags and
    /// test id, in sequence order.
    pub fn read_mailbox(&mut self, mailbox: &str) -> Result<Contents> {
        let info = self.open(mailbox, true)?;
        let mut messages = Vec::new();
        if info.exists > 0 {
            let header = ID_HEADER.to_ascii_uppercase();
            let r = self.run(&format!(
                "UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS ({header})])"
            ))?;
            ensure!(r.is_ok(), "UID FETCH in {mailbox}: {}", r.status);
            for resp in &r.untagged {
                if !resp.windows(5).any(|w| w == b"BODY[") {
                    continue; // an unsolicited FLAGS update, not one of ours
                }
                messages.push(
                    parse_fetch(resp)
                        .ok_or_else(|| anyhow!("unparsable FETCH response {:?}", String::from_utf8_lossy(resp)))?,
                );
            }
        }
        ensure!(
            messages.len() == info.exists as usize,
            "{mailbox}: {} EXISTS but {} FETCH responses",
            info.exists,
            messages.len()
        );
        Ok(Contents {
            uidvalidity: info.uidvalidity,
            messages,
        })
    }

    /// Sends `IDLE` and waits for the continuation.
    pub fn idle_start(&mut self) -> Result<()> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        std::io::Write::write_all(self.stream.get_mut(), format!("{tag} IDLE\r\n").as_bytes())?;
        loop {
            let line = self.read_response()?;
            if line.starts_with(b"+") {
                return Ok(());
            }
            if line.starts_with(tag.as_bytes()) {
                bail!("IDLE refused: {}", String::from_utf8_lossy(&line));
            }
        }
    }

    /// The next line pushed during IDLE, or `None` when nothing came before `deadline`.
    pub fn idle_next(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>> {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        self.set_read_timeout(left)?;
        let result = self.read_response();
        self.set_read_timeout(Duration::from_secs(30))?;
        match result {
            Ok(line) => Ok(Some(line)),
            Err(e) if is_timeout(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits during IDLE until an `EXISTS` of at least `n` arrives; returns the highest seen, or
    /// `None` on timeout. `seen` is updated with every EXISTS value.
    pub fn idle_until_exists(&mut self, n: u32, deadline: Instant, seen: &mut u32) -> Result<Option<u32>> {
        while *seen < n {
            let Some(line) = self.idle_next(deadline)? else {
                return Ok(None);
            };
            if line.starts_with(b"* BYE") {
                bail!("server closed the IDLE session: {}", String::from_utf8_lossy(&line));
            }
            if let Some(e) = exists(&line) {
                *seen = (*seen).max(e);
            }
        }
        Ok(Some(*seen))
    }

    /// Sends `DONE` and reads up to the tagged end of the IDLE command.
    pub fn idle_done(&mut self) -> Result<Reply> {
        let tag = format!("t{}", self.next_tag - 1);
        std::io::Write::write_all(self.stream.get_mut(), b"DONE\r\n")?;
        let mut untagged = Vec::new();
        loop {
            let resp = self.read_response()?;
            if let Some(rest) = resp.strip_prefix(format!("{tag} ").as_bytes()) {
                return Ok(Reply {
                    untagged,
                    status: String::from_utf8_lossy(rest).trim_end().to_string(),
                });
            }
            untagged.push(resp);
        }
    }
}
