//! Consistency checks run on every reply while the load runs, so speed is never bought with
//! wrong answers (issue 3, point 6).
//!
//! Two layers:
//! - [`SessionCheck`] follows one connection's view (selected mailbox, EXISTS, UIDVALIDITY) and
//!   flags responses the RFC forbids: EXISTS going backwards (RFC 3501 §7.3.1), EXPUNGE during
//!   FETCH/STORE/SEARCH (§7.4.1), message data outside the selected state, sequence numbers
//!   beyond EXISTS, a SELECT without FLAGS/EXISTS/UIDVALIDITY (§6.3.1), UID FETCH bodies without
//!   UID (§6.4.8), APPENDUIDs not strictly ascending (§2.3.1.1), and flags this session set that
//!   a later FETCH no longer shows.
//! - [`Registry`] is shared by all sessions of a user: UIDs announced by APPENDUID (RFC 4315)
//!   with a digest of the bytes, and UIDs any session is about to mark `\Deleted`. An appended
//!   UID that a later UID FETCH does not return, although nobody marked it deleted, is a lost
//!   message; a returned body whose digest differs is corruption.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use crate::client::Reply;
use crate::client::parse::{Code, Status, Untagged};

/// One observed violation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// A stable rule name.
    pub rule: &'static str,
    /// What was seen.
    pub detail: String,
    /// The login of the session that saw it.
    pub user: String,
}

/// What a reply answered, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd<'a> {
    /// SELECT or EXAMINE of a mailbox.
    Select(&'a str),
    /// FETCH; `uid` for UID FETCH.
    Fetch {
        /// UID FETCH.
        uid: bool,
    },
    /// STORE; `uid` for UID STORE.
    Store {
        /// UID STORE.
        uid: bool,
    },
    /// SEARCH; `uid` for UID SEARCH.
    Search {
        /// UID SEARCH.
        uid: bool,
    },
    /// APPEND to a mailbox.
    Append(&'a str),
    /// STATUS of a mailbox.
    Status(&'a str),
    /// CLOSE or UNSELECT: back to the authenticated state.
    Unselect,
    /// Anything else (NOOP, LIST, EXPUNGE, LOGOUT, IDLE).
    Other,
}

#[derive(Debug, Clone)]
struct Selected {
    mailbox: String,
    exists: u32,
    uidvalidity: Option<u32>,
}

/// Per-connection checker.
#[derive(Debug)]
pub struct SessionCheck {
    user: String,
    selected: Option<Selected>,
    /// Highest APPENDUID seen per (mailbox, uidvalidity): the next must be higher.
    last_append: HashMap<(String, u32), u32>,
    /// The keyword only this session touches, and the UIDs it is set on.
    keyword: Option<String>,
    keyword_uids: HashSet<u32>,
    out: Vec<Violation>,
}

impl SessionCheck {
    /// A checker for a session of `user`; `keyword` is a flag no other session touches.
    pub fn new(user: &str, keyword: Option<String>) -> SessionCheck {
        SessionCheck {
            user: user.to_string(),
            selected: None,
            last_append: HashMap::new(),
            keyword,
            keyword_uids: HashSet::new(),
            out: Vec::new(),
        }
    }

    fn violation(&mut self, rule: &'static str, detail: String) {
        self.out.push(Violation {
            rule,
            detail,
            user: self.user.clone(),
        });
    }

    /// Current EXISTS of the selected mailbox.
    pub fn exists(&self) -> Option<u32> {
        self.selected.as_ref().map(|s| s.exists)
    }

    /// UIDVALIDITY of the selected mailbox.
    pub fn uidvalidity(&self) -> Option<u32> {
        self.selected.as_ref().and_then(|s| s.uidvalidity)
    }

    /// The session's own keyword.
    pub fn keyword(&self) -> Option<&str> {
        self.keyword.as_deref()
    }

    /// Call before `UID STORE uid -FLAGS (keyword)` so the removal is not reported.
    pub fn keyword_clearing(&mut self, uid: u32) {
        self.keyword_uids.remove(&uid);
    }

    /// Violations found since the last call.
    pub fn take(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.out)
    }

    /// Checks one complete reply to `cmd` and updates the session view.
    pub fn check(&mut self, cmd: Cmd<'_>, reply: &Reply) -> Vec<Violation> {
        if let Cmd::Select(mailbox) = cmd {
            // RFC 3501 §6.3.1: SELECT first deselects; the responses that follow describe the new mailbox.
            self.selected = Some(Selected {
                mailbox: mailbox.to_string(),
                exists: 0,
                uidvalidity: None,
            });
            self.keyword_uids.clear();
        }
        for u in &reply.untagged {
            self.on_untagged(cmd, u);
        }
        match cmd {
            Cmd::Select(_) => self.after_select(reply),
            Cmd::Unselect if reply.ok() => self.selected = None,
            Cmd::Append(mailbox) if reply.ok() => self.after_append(mailbox, reply),
            Cmd::Status(mailbox) => {
                for u in &reply.untagged {
                    if let Untagged::Status { mailbox: m, .. } = u
                        && !same_mailbox(m, mailbox)
                    {
                        self.violation(
                            "status-wrong-mailbox",
                            format!("STATUS {mailbox} answered for {m}"),
                        );
                    }
                }
            }
            _ => {}
        }
        self.take()
    }

    fn after_select(&mut self, reply: &Reply) {
        if !reply.ok() {
            // RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected.
            self.selected = None;
            return;
        }
        let has_flags = reply
            .untagged
            .iter()
            .any(|u| matches!(u, Untagged::Flags(_)));
        let has_exists = reply
            .untagged
            .iter()
            .any(|u| matches!(u, Untagged::Exists(_)));
        let has_uv = self.uidvalidity().is_some();
        if !(has_flags && has_exists && has_uv) {
            self.violation(
                "select-missing-required",
                format!(
                    "SELECT OK without FLAGS={has_flags} EXISTS={has_exists} UIDVALIDITY={has_uv}"
                ),
            );
        }
    }

    fn after_append(&mut self, mailbox: &str, reply: &Reply) {
        let Some(Code::AppendUid { uidvalidity, uid }) = reply.code else {
            return;
        };
        if uid == 0 {
            self.violation("appenduid-zero", "APPENDUID with UID 0".into());
        }
        if let Some(sel) = &self.selected
            && same_mailbox(&sel.mailbox, mailbox)
            && let Some(uv) = sel.uidvalidity
            && uv != uidvalidity
        {
            let detail = format!("APPENDUID uidvalidity {uidvalidity} but SELECT said {uv}");
            self.violation("appenduid-uidvalidity", detail);
        }
        let key = (mailbox.to_ascii_uppercase(), uidvalidity);
        if let Some(&prev) = self.last_append.get(&key)
            && uid <= prev
        {
            self.violation(
                "uid-not-ascending",
                format!("APPENDUID {uid} after {prev} in {mailbox}"),
            );
        }
        self.last_append.insert(key, uid);
    }

    /// Applies one untagged response received during `cmd` (also used for IDLE streams).
    pub fn on_untagged(&mut self, cmd: Cmd<'_>, u: &Untagged) {
        match u {
            Untagged::Exists(n) => {
                let Some(sel) = self.selected.as_mut() else {
                    return self.violation(
                        "data-while-unselected",
                        format!("* {n} EXISTS with no mailbox selected"),
                    );
                };
                let prev = sel.exists;
                sel.exists = *n;
                // RFC 3501 §7.3.1: EXISTS reports the size; it shrinks only through EXPUNGE.
                if *n < prev && !matches!(cmd, Cmd::Select(_)) {
                    self.violation(
                        "exists-backwards",
                        format!("EXISTS {n} after {prev} without EXPUNGE"),
                    );
                }
            }
            Untagged::Expunge(n) => {
                let Some(sel) = self.selected.as_mut() else {
                    return self.violation(
                        "data-while-unselected",
                        format!("* {n} EXPUNGE with no mailbox selected"),
                    );
                };
                let exists = sel.exists;
                sel.exists = exists.saturating_sub(1);
                if *n == 0 || *n > exists {
                    self.violation(
                        "expunge-out-of-range",
                        format!("* {n} EXPUNGE with EXISTS {exists}"),
                    );
                }
                // RFC 3501 §7.4.1: no EXPUNGE while responding to FETCH, STORE or SEARCH.
                if matches!(
                    cmd,
                    Cmd::Fetch { uid: false }
                        | Cmd::Store { uid: false }
                        | Cmd::Search { uid: false }
                ) {
                    self.violation(
                        "expunge-during-fetch-store-search",
                        format!("* {n} EXPUNGE during {cmd:?}"),
                    );
                }
            }
            Untagged::Fetch { seq, data } => {
                let Some(sel) = self.selected.as_ref() else {
                    return self.violation(
                        "data-while-unselected",
                        format!("* {seq} FETCH with no mailbox selected"),
                    );
                };
                if *seq == 0 || *seq > sel.exists {
                    let detail = format!("* {seq} FETCH beyond EXISTS {}", sel.exists);
                    self.violation("fetch-out-of-range", detail);
                }
                // RFC 3501 §6.4.8: responses caused by a UID command carry UID.
                if matches!(cmd, Cmd::Fetch { uid: true })
                    && data.body.is_some()
                    && data.uid.is_none()
                {
                    self.violation(
                        "uid-fetch-without-uid",
                        format!("* {seq} FETCH with body but no UID"),
                    );
                }
                if let (Some(kw), Some(uid), Some(flags)) = (&self.keyword, data.uid, &data.flags)
                    && self.keyword_uids.contains(&uid)
                    && !flags.iter().any(|f| f.eq_ignore_ascii_case(kw))
                {
                    let detail =
                        format!("UID {uid} lost {kw} that this session set; FLAGS {flags:?}");
                    self.violation("flag-lost", detail);
                }
            }
            Untagged::Cond {
                status: Status::Ok,
                code: Some(Code::UidValidity(v)),
                ..
            } => {
                if let Some(sel) = self.selected.as_mut() {
                    sel.uidvalidity = Some(*v);
                }
            }
            _ => {}
        }
    }

    /// Checks the reply of `UID STORE uid +FLAGS (flags)` (not silent): the FETCH for `uid` must
    /// show every flag just added (RFC 3501 §6.4.6). Remembers our keyword on `uid`.
    pub fn after_store_add(&mut self, uid: u32, added: &[&str], reply: &Reply) {
        if !reply.ok() {
            return;
        }
        for u in &reply.untagged {
            if let Untagged::Fetch { data, .. } = u
                && data.uid == Some(uid)
                && let Some(flags) = &data.flags
            {
                for f in added {
                    if !flags.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                        self.violation(
                            "store-flag-missing",
                            format!("UID {uid} +FLAGS {f} answered FLAGS {flags:?}"),
                        );
                    }
                }
                if let Some(kw) = &self.keyword
                    && added.iter().any(|f| f.eq_ignore_ascii_case(kw))
                {
                    self.keyword_uids.insert(uid);
                }
            }
        }
    }
}

fn same_mailbox(a: &str, b: &str) -> bool {
    // RFC 3501 §5.1: INBOX is case-insensitive; other names are compared exactly.
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

/// A message the registry knows was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// UIDVALIDITY from APPENDUID.
    pub uidvalidity: u32,
    /// UID from APPENDUID.
    pub uid: u32,
    /// [`digest`] of the appended bytes.
    pub digest: u64,
}

#[derive(Debug, Default)]
struct UserLog {
    appended: VecDeque<Appended>,
    deleted: HashSet<(u32, u32)>,
}

/// Cross-session record per (user, mailbox).
#[derive(Debug, Default)]
pub struct Registry {
    users: Mutex<HashMap<(String, String), UserLog>>,
}

/// How many appended messages per mailbox are remembered for later reads.
const KEEP_APPENDED: usize = 512;

impl Registry {
    fn with<R>(&self, user: &str, mailbox: &str, f: impl FnOnce(&mut UserLog) -> R) -> R {
        let mut m = self.users.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry((user.to_string(), mailbox.to_ascii_uppercase()))
            .or_default())
    }

    /// Records an acknowledged APPEND.
    pub fn appended(&self, user: &str, mailbox: &str, a: Appended) {
        self.with(user, mailbox, |l| {
            if l.appended.len() >= KEEP_APPENDED {
                l.appended.pop_front();
            }
            l.appended.push_back(a);
        });
    }

    /// Call before marking `uid` \Deleted, so a concurrent reader never mistakes it for a loss.
    pub fn deleting(&self, user: &str, mailbox: &str, uidvalidity: u32, uid: u32) {
        self.with(user, mailbox, |l| {
            l.deleted.insert((uidvalidity, uid));
        });
    }

    /// The `pick`-th most recent appended message with this UIDVALIDITY not marked deleted.
    pub fn recent(
        &self,
        user: &str,
        mailbox: &str,
        uidvalidity: u32,
        pick: usize,
    ) -> Option<Appended> {
        self.with(user, mailbox, |l| {
            let live: Vec<&Appended> = l
                .appended
                .iter()
                .rev()
                .filter(|a| {
                    a.uidvalidity == uidvalidity && !l.deleted.contains(&(a.uidvalidity, a.uid))
                })
                .take(32)
                .collect();
            if live.is_empty() {
                None
            } else {
                live.get(pick % live.len()).map(|a| **a)
            }
        })
    }

    /// Checks a UID FETCH of appended message `a`: present with the same bytes, or deleted by someone.
    pub fn verify_fetch(
        &self,
        user: &str,
        mailbox: &str,
        a: Appended,
        reply: &Reply,
    ) -> Option<Violation> {
        if !reply.ok() {
            return None;
        }
        let body = reply.untagged.iter().find_map(|u| match u {
            Untagged::Fetch { data, .. } if data.uid == Some(a.uid) => Some(data.body.as_deref()),
            _ => None,
        });
        let v = |rule, detail| {
            Some(Violation {
                rule,
                detail,
                user: user.to_string(),
            })
        };
        match body {
            None => {
                let deleted = self.with(user, mailbox, |l| {
                    l.deleted.contains(&(a.uidvalidity, a.uid))
                });
                if deleted {
                    None
                } else {
                    v(
                        "appended-message-missing",
                        format!("UID {} from APPENDUID not returned", a.uid),
                    )
                }
            }
            Some(Some(b)) if digest(b) != a.digest => v(
                "body-mismatch",
                format!(
                    "UID {}: {} bytes differ from what was appended",
                    a.uid,
                    b.len()
                ),
            ),
            Some(_) => None,
        }
    }
}

/// FNV-1a 64: a stable digest of message bytes (not cryptographic; detects corruption).
pub fn digest(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
