//! Bookkeeping of the writes a fault test made, and the check that what the cluster holds matches
//! it: every acknowledged message present exactly once with the UID it was acknowledged with,
//! no test id anywhere more than once, UIDs increasing in sequence order, UIDVALIDITY unchanged,
//! acknowledged flag changes kept. A write whose outcome the client could not know (NO, timeout,
//! broken connection) may be present or not, but never twice.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Result, ensure};

use super::Reply;
use super::imap::{Contents, appenduid, copyuid};

/// What a write was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// APPEND of a new message.
    Append,
    /// UID COPY of a message into another mailbox (the copy keeps the test id).
    Copy,
    /// UID STORE +FLAGS of `flag` on a message.
    Store,
}

/// How a write ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tagged OK; for APPEND and COPY, with the UID the server assigned (`None` for STORE).
    Ok(Option<u32>),
    /// Tagged NO or BAD.
    No(String),
    /// No tagged reply: the connection broke or the read timed out.
    Failed(String),
}

/// One write.
#[derive(Debug, Clone)]
pub struct Write {
    /// APPEND, COPY or STORE.
    pub kind: Kind,
    /// Test id of the message written (or whose flags changed).
    pub id: String,
    /// Mailbox it went to.
    pub mailbox: String,
    /// How it ended.
    pub outcome: Outcome,
    /// When the command was sent.
    pub started: Instant,
    /// When its outcome was known.
    pub finished: Instant,
}

impl Write {
    /// True for a tagged OK.
    pub fn acked(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }
}

/// Turns a client call's result into an outcome, taking the UID from APPENDUID or COPYUID.
pub fn outcome(kind: Kind, result: &Result<Reply>) -> Outcome {
    match result {
        Err(e) => Outcome::Failed(format!("{e:#}")),
        Ok(r) if r.is_ok() => Outcome::Ok(match kind {
            Kind::Append => appenduid(r).map(|(_, uid)| uid),
            Kind::Copy => copyuid(r).map(|(_, uid)| uid),
            Kind::Store => None,
        }),
        Ok(r) => Outcome::No(r.status.clone()),
    }
}

/// Writes recorded by any number of client threads.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    writes: Arc<Mutex<Vec<Write>>>,
}

/// The counts a fault test prints.
#[derive(Debug, Default)]
pub struct Report {
    /// Writes acknowledged with OK.
    pub acknowledged: usize,
    /// Acknowledged writes found as they should be.
    pub checked: usize,
    /// Acknowledged APPEND/COPY not found, or acknowledged STORE whose flag is missing.
    pub lost: usize,
    /// Test ids present more than once in one mailbox.
    pub duplicated: usize,
    /// Writes with an unknown outcome (NO, timeout, broken connection).
    pub unknown: usize,
    /// Of those, APPEND/COPY whose message is present (once).
    pub unknown_applied: usize,
    /// Counts per kind of acknowledged write: appends, copies, stores.
    pub by_kind: (usize, usize, usize),
    /// Everything else that is wrong, spelled out.
    pub violations: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, c, s) = self.by_kind;
        write!(
            f,
            "acknowledged {} (appends {a}, copies {c}, stores {s}), checked {}, lost {}, duplicated {}; \
             unknown outcome {} ({} of them applied once)",
            self.acknowledged, self.checked, self.lost, self.duplicated, self.unknown, self.unknown_applied
        )
    }
}

impl Report {
    /// Fails unless nothing was lost or duplicated and nothing else is wrong.
    pub fn ensure_clean(&self) -> Result<()> {
        ensure!(
            self.lost == 0 && self.duplicated == 0 && self.violations.is_empty() && self.checked == self.acknowledged,
            "{self}\nviolations:\n{}",
            self.violations.join("\n")
        );
        Ok(())
    }
}

impl Ledger {
    /// Records a write.
    pub fn record(&self, write: Write) {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(write);
    }

    /// Everything recorded so far.
    pub fn writes(&self) -> Vec<Write> {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.writes().iter().filter(|w| w.acked()).count()
    }

    /// Acknowledged writes that were sent after `t`.
    pub fn acked_since(&self, t: Instant) -> usize {
        self.writes().iter().filter(|w| w.acked() && w.started >= t).count()
    }

    /// Compares the ledger with the mailboxes read back. `uidvalidity` holds each mailbox's
    /// UIDVALIDITY from before the faults.
    pub fn check(&self, contents: &BTreeMap<String, Contents>, uidvalidity: &HashMap<String, u32>) -> Report {
        let mut report = Report::default();
        // (mailbox, id) -> UIDs found.
        let mut found: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
        let mut flags: HashMap<(&str, &str), &[String]> = HashMap::new();
        for (mailbox, c) in contents {
            if let Some(&before) = uidvalidity.get(mailbox)
                && before != c.uidvalidity
            {
                report.violations.push(format!(
                    "{mailbox}: UIDVALIDITY changed from {before} to {}",
                    c.uidvalidity
                ));
            }
            for pair in c.messages.windows(2) {
                if pair[0].uid >= pair[1].uid {
                    report
                        .violations
                        .push(format!("{mailbox}: UID {} before UID {}", pair[0].uid, pair[1].uid));
                }
            }
            for m in &c.messages {
                if let Some(id) = &m.id {
                    found.entry((mailbox, id)).or_default().push(m.uid);
                    flags.insert((mailbox, id), &m.flags);
                }
            }
        }
        for ((mailbox, id), uids) in &found {
            if uids.len() > 1 {
                report.duplicated += uids.len() - 1;
                report
                    .violations
                    .push(format!("{mailbox}: {id} present {} times (UIDs {uids:?})", uids.len()));
            }
        }

        let writes = self.writes();
        // Per mailbox: (sent, acknowledged, UID) of every acknowledged APPEND and COPY.
        let mut acked_uids: BTreeMap<&str, Vec<(Instant, Instant, u32)>> = BTreeMap::new();
        for w in &writes {
            let key = (w.mailbox.as_str(), w.id.as_str());
            let present = found.get(&key).map_or(0, Vec::len);
            match (&w.outcome, w.kind) {
                (Outcome::Ok(uid), Kind::Append | Kind::Copy) => {
                    report.acknowledged += 1;
                    if w.kind == Kind::Append {
                        report.by_kind.0 += 1;
                    } else {
                        report.by_kind.1 += 1;
                    }
                    match (present, uid) {
                        (0, _) => {
                            report.lost += 1;
                            report
                                .violations
                                .push(format!("{}: acknowledged {:?} {} is missing", w.mailbox, w.kind, w.id));
                        }
                        (1, Some(uid)) if found[&key][0] != *uid => report.violations.push(format!(
                            "{}: {} acknowledged as UID {uid} but found as UID {}",
                            w.mailbox, w.id, found[&key][0]
                        )),
                        (_, None) => report
                            .violations
                            .push(format!("{}: OK for {} without a UID", w.mailbox, w.id)),
                        _ => report.checked += 1,
                    }
                    if let Some(uid) = uid {
                        acked_uids
                            .entry(&w.mailbox)
                            .or_default()
                            .push((w.started, w.finished, *uid));
                    }
                }
                (Outcome::Ok(_), Kind::Store) => {
                    report.acknowledged += 1;
                    report.by_kind.2 += 1;
                    match flags.get(&key) {
                        Some(f) if f.iter().any(|f| f.eq_ignore_ascii_case("\\Flagged")) => report.checked += 1,
                        _ => {
                            report.lost += 1;
                            report
                                .violations
                                .push(format!("{}: acknowledged STORE on {} is missing", w.mailbox, w.id));
                        }
                    }
                }
                (_, Kind::Append | Kind::Copy) => {
                    report.unknown += 1;
                    if present > 0 {
                        report.unknown_applied += 1;
                    }
                }
                (_, Kind::Store) => report.unknown += 1,
            }
        }
        // Linearizability of UID assignment: a write acknowledged before another one was sent got
        // the smaller UID. (Overlapping writes may be acknowledged in either order.)
        for (mailbox, uids) in acked_uids {
            for (_, done, uid) in &uids {
                for (started, _, later) in &uids {
                    if started > done && later <= uid {
                        report.violations.push(format!(
                            "{mailbox}: UID {later} acknowledged after UID {uid} had been (UIDs must increase)"
                        ));
                    }
                }
            }
        }
        report
    }
}

/// What one [`writer`] loop did besides the writes it recorded.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriterStats {
    /// Commands sent.
    pub attempts: usize,
    /// Times the IMAP connection broke (or a reply timed out) and was opened again.
    pub reconnects: usize,
}

/// One IMAP client writing until `stop`: APPENDs of messages `<prefix>-<k>` to `mailbox`; of
/// the acknowledged ones, every third is copied to `copy_to` (if given) and every second gets
/// `\Flagged`. Every outcome goes to `ledger`. A broken connection is opened again (counted);
/// failing to reconnect for 30 s ends the loop with an error.
pub fn writer(
    imap: std::net::SocketAddr,
    mailbox: &str,
    copy_to: Option<&str>,
    prefix: &str,
    ledger: &Ledger,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<WriterStats> {
    use std::sync::atomic::Ordering;

    use super::Client;
    use super::cluster::{PASSWORD, USER};
    use super::imap::message;
    use super::observe::wait_for;

    let connect = || -> Result<Client> {
        wait_for(
            "the IMAP session to open again",
            std::time::Duration::from_secs(30),
            || {
                let mut c = Client::login_to(imap, USER, PASSWORD)?;
                c.open(mailbox, false)?;
                Ok(Some(c))
            },
        )
    };
    let mut stats = WriterStats::default();
    let mut client = connect()?;
    let mut k = 0;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let id = format!("{prefix}-{k}");
        // Stack of commands for this message: APPEND, then maybe STORE and COPY of it.
        let mut ops = vec![Kind::Append];
        let mut uid = None;
        while let Some(kind) = ops.pop() {
            stats.attempts += 1;
            let started = Instant::now();
            let result = match (kind, uid) {
                (Kind::Append, _) => client.append_reply(mailbox, "", &message(&id)),
                (Kind::Copy, Some(u)) => client.run(&format!("UID COPY {u} \"{}\"", copy_to.unwrap_or(mailbox))),
                // Not .SILENT: the FETCH response shows the STORE touched the message.
                (Kind::Store, Some(u)) => client.run(&format!("UID STORE {u} +FLAGS (\\Flagged)")),
                (_, None) => break,
            };
            let out = match (kind, uid, outcome(kind, &result)) {
                (Kind::Store, Some(u), Outcome::Ok(_)) if !stored(&result, u) => {
                    // RFC 3501 §6.4.8: a UID the session has not seen yet is ignored without error.
                    // That OK acknowledged nothing, so it is not held to the flag.
                    Outcome::No(format!("OK without a FETCH of UID {u}: not yet visible to the session"))
                }
                (_, _, out) => out,
            };
            let target = match kind {
                Kind::Copy => copy_to.unwrap_or(mailbox),
                _ => mailbox,
            };
            ledger.record(Write {
                kind,
                id: id.clone(),
                mailbox: target.to_owned(),
                outcome: out.clone(),
                started,
                finished: Instant::now(),
            });
            if result.is_err() {
                stats.reconnects += 1;
                client = connect()?;
                break;
            }
            if let (Kind::Append, Outcome::Ok(Some(u))) = (kind, &out) {
                uid = Some(*u);
                if k % 2 == 0 {
                    ops.push(Kind::Store);
                }
                if copy_to.is_some() && k % 3 == 0 {
                    ops.push(Kind::Copy);
                }
            }
        }
    }
    Ok(stats)
}

/// True if a STORE reply carries a FETCH of `uid` with `\Flagged`.
fn stored(result: &Result<super::Reply>, uid: u32) -> bool {
    let Ok(reply) = result else { return false };
    reply.untagged.iter().any(|line| {
        let text = String::from_utf8_lossy(line);
        let words: Vec<&str> = text
            .split([' ', '(', ')', '\r', '\n'])
            .filter(|w| !w.is_empty())
            .collect();
        let has_uid = words
            .windows(2)
            .any(|w| w[0].eq_ignore_ascii_case("UID") && w[1] == uid.to_string());
        words.iter().any(|w| w.eq_ignore_ascii_case("FETCH")) && has_uid && text.contains("\\Flagged")
    })
}

/// APPENDs message `id` to `mailbox`, records the outcome in `ledger` and returns it.
pub fn append_recorded(client: &mut super::Client, mailbox: &str, id: &str, ledger: &Ledger) -> Outcome {
    let started = Instant::now();
    let result = client.append_reply(mailbox, "", &super::imap::message(id));
    let out = outcome(Kind::Append, &result);
    ledger.record(Write {
        kind: Kind::Append,
        id: id.to_owned(),
        mailbox: mailbox.to_owned(),
        outcome: out.clone(),
        started,
        finished: Instant::now(),
    });
    out
}
