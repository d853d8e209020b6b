//! Property test: random command sequences against a plain reference model.
//!
//! Each case runs the same sequence twice: committing after every command, and batching several
//! commands into one `WriteSet` (read back through `Overlay`) before committing. Both must give
//! the same replies, events and final state, and after every command the state must match the
//! reference model: names, ids, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counters, messages,
//! blob refcounts, quota usage and the answer of `changes` since past modseqs.
//!
//! Most commands carry a request id, and after some of them the last request with an id is
//! applied again (a retry, with a later clock): it must get the identical reply, no events, and
//! leave the whole state unchanged (the run spans seconds, far less than the dedup window, so
//! not even the purge deletes anything).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use common::{T0, only_dedup, sha};
use mailraft_model::*;
use proptest::collection::vec;
use proptest::prelude::*;

const POOL: [&str; 6] = ["INBOX", "a", "a/b", "b", "c/d", "INBOX/x"];
const EXTRA: [&str; 4] = ["d", "a/c", "e/f/g", "b/a"];
const BODIES: [&[u8]; 3] = [b"body zero", b"body one!", b"the second body"];

fn flag(i: usize) -> Flag {
    match i % 7 {
        0 => Flag::Seen,
        1 => Flag::Deleted,
        2 => Flag::Flagged,
        3 => Flag::Answered,
        4 => Flag::Keyword("$x".into()),
        5 => Flag::Keyword("$X".into()),
        _ => Flag::Keyword("k".into()),
    }
}

type FlagSet = BTreeSet<String>;

fn set_of(flags: &[Flag]) -> FlagSet {
    flags.iter().map(|f| f.as_imap().to_ascii_lowercase()).collect()
}

#[derive(Debug, Clone, Copy)]
enum Sel {
    All,
    Range(u32, u32),
}

impl Sel {
    fn set(self) -> UidSet {
        match self {
            Sel::All => UidSet::range(1, Uid::MAX),
            Sel::Range(a, b) => UidSet::range(a, b),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Delete(u8),
    Rename(u8, u8),
    Append(u8, Vec<(usize, Vec<usize>)>),
    Store(u8, Sel, StoreOp, Vec<usize>, Option<u64>),
    Expunge(u8, Option<Sel>),
    Copy(u8, Sel, u8, bool),
}

fn sel() -> impl Strategy<Value = Sel> {
    prop_oneof![Just(Sel::All), (1..10u32, 0..5u32).prop_map(|(a, l)| Sel::Range(a, a + l))]
}

fn op() -> impl Strategy<Value = Op> {
    let store_op = prop_oneof![Just(StoreOp::Replace), Just(StoreOp::Add), Just(StoreOp::Remove)];
    prop_oneof![
        2 => any::<u8>().prop_map(Op::Create),
        1 => any::<u8>().prop_map(Op::Delete),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Rename(a, b)),
        4 => (any::<u8>(), vec((0..3usize, vec(0..7usize, 0..3)), 1..4)).prop_map(|(n, m)| Op::Append(n, m)),
        4 => (any::<u8>(), sel(), store_op, vec(0..7usize, 0..3), proptest::option::of(0..4u64))
            .prop_map(|(n, s, o, f, u)| Op::Store(n, s, o, f, u)),
        2 => (any::<u8>(), proptest::option::of(sel())).prop_map(|(n, s)| Op::Expunge(n, s)),
        2 => (any::<u8>(), sel(), any::<u8>(), any::<bool>()).prop_map(|(a, s, b, m)| Op::Copy(a, s, b, m)),
    ]
}

#[derive(Debug, Clone)]
struct RMsg {
    flags: FlagSet,
    modseq: u64,
    body: usize,
}

#[derive(Debug, Clone)]
struct RBox {
    id: MailboxId,
    uidvalidity: u32,
    uidnext: Uid,
    highest: u64,
    msgs: BTreeMap<Uid, RMsg>,
    /// (modseq, uid) of every expunge.
    expunged: Vec<(u64, Uid)>,
}

impl RBox {
    fn new() -> Self {
        RBox { id: 0, uidvalidity: 0, uidnext: 1, highest: 1, msgs: BTreeMap::new(), expunged: Vec::new() }
    }

    fn bump(&mut self) -> u64 {
        self.highest += 1;
        self.highest
    }

    fn add(&mut self, flags: FlagSet, modseq: u64, body: usize) -> Uid {
        let uid = self.uidnext;
        assert!(self.msgs.keys().all(|&u| u < uid), "UIDs strictly increase");
        self.uidnext += 1;
        self.msgs.insert(uid, RMsg { flags, modseq, body });
        uid
    }

    fn remove(&mut self, uid: Uid, modseq: u64) {
        self.msgs.remove(&uid);
        self.expunged.push((modseq, uid));
    }

    fn selected(&self, sel: Sel) -> Vec<Uid> {
        let set = sel.set();
        self.msgs.keys().copied().filter(|&u| set.contains(u)).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NotFound,
    AlreadyExists,
    Invalid,
    Cannot,
}

fn kind(e: &ModelError) -> Kind {
    match e {
        ModelError::NotFound(_) => Kind::NotFound,
        ModelError::AlreadyExists(_) => Kind::AlreadyExists,
        ModelError::Invalid(_) => Kind::Invalid,
        ModelError::Cannot(_) => Kind::Cannot,
        e => panic!("unexpected error {e:?}"),
    }
}

/// One run: the real model on MemKv (with a pending batch) and the reference model.
struct Harness {
    kv: MemKv,
    ws: WriteSet,
    step: i64,
    who: Principal,
    boxes: BTreeMap<String, RBox>,
    dead: Vec<(MailboxId, u32)>,
    ids: HashSet<MailboxId>,
    max_uidvalidity: u32,
    /// Bob's single message (body 0) makes blob sharing cross accounts.
    bob_bytes: u64,
    log: Vec<(Reply, Vec<MailboxEvent>)>,
    /// The last request that carried an id, and its reply: what a retry replays.
    last: Option<(Request, Reply)>,
}

impl Harness {
    fn new() -> Self {
        let mut h = Harness {
            kv: MemKv::default(),
            ws: WriteSet::default(),
            step: 0,
            who: Principal { tenant: 0, account: 0 },
            boxes: BTreeMap::new(),
            dead: Vec::new(),
            ids: HashSet::new(),
            max_uidvalidity: 0,
            bob_bytes: BODIES[0].len() as u64,
            log: Vec::new(),
            last: None,
        };
        h.exec(Command::CreateTenant { domain: "example.test".into() }, true).0.unwrap();
        fn acct(h: &mut Harness, login: &str) -> Principal {
            let cmd = Command::CreateAccount { domain: "example.test".into(), login: login.into(), password_hash: "h".into() };
            match h.exec(cmd, true) {
                (Ok(Outcome::AccountCreated { tenant, account }), _) => Principal { tenant, account },
                r => panic!("{r:?}"),
            }
        }
        let bob = acct(&mut h, "bob");
        h.who = acct(&mut h, "alice");
        let body = common::msg(BODIES[0], vec![]);
        h.exec(Command::Append { who: bob, mailbox: "INBOX".into(), messages: vec![body] }, true).0.unwrap();
        let bob_inbox = query::mailbox_by_name(&h.kv, bob, "INBOX").unwrap();
        h.ids.insert(bob_inbox.id);
        h.max_uidvalidity = bob_inbox.uidvalidity;
        h.boxes.insert("INBOX".into(), RBox::new());
        h.learn(&["INBOX".to_string()]);
        h.log.clear();
        h
    }

    fn exec(&mut self, command: Command, commit: bool) -> (Reply, Vec<MailboxEvent>) {
        // 250 ms per command: several commands share a second, exercising last_uidvalidity + 1.
        // Every fifth command has no id, so both paths run.
        let request_id = (self.step % 5 != 0).then(|| common::rid(&format!("req-{}", self.step)));
        let req = Request { now_ms: T0 + self.step * 250, request_id, command };
        self.step += 1;
        let before = self.ws.clone();
        let applied = apply_detailed(&self.kv, &mut self.ws, &req).expect("a known level");
        assert!(!applied.replayed, "ids are fresh: {req:?}");
        if applied.reply.is_err() {
            let mut own = self.ws.clone();
            own.ops.retain(|k, v| before.ops.get(k) != Some(v));
            assert!(only_dedup(&own), "a failed command must write nothing but its dedup record: {own:?}");
            assert!(applied.events.is_empty());
        }
        if req.request_id.is_some() {
            self.last = Some((req, applied.reply.clone()));
        }
        if commit {
            self.kv.commit(std::mem::take(&mut self.ws));
        }
        self.log.push((applied.reply.clone(), applied.events.clone()));
        (applied.reply, applied.events)
    }

    /// Every row of the state, committed plus pending.
    fn state(&self) -> MemKv {
        let mut kv = self.kv.clone();
        kv.commit(self.ws.clone());
        kv
    }

    /// Retries the last request that had an id: same reply, no events, no change at all.
    fn replay_last(&mut self, commit: bool) {
        let Some((mut req, reply)) = self.last.clone() else { return };
        req.now_ms = T0 + self.step * 250;
        self.step += 1;
        let before = self.state();
        let applied = apply_detailed(&self.kv, &mut self.ws, &req).expect("a known level");
        assert_eq!(applied, Applied { reply, events: vec![], replayed: true }, "replay of {req:?}");
        assert!(self.state() == before, "a replay must not change the state");
        if commit {
            self.kv.commit(std::mem::take(&mut self.ws));
        }
        self.log.push((applied.reply, applied.events));
    }

    fn view(&self) -> Overlay<'_, MemKv> {
        Overlay { base: &self.kv, writes: &self.ws }
    }

    /// Reads the ids and UIDVALIDITYs the real model gave to newly created mailboxes (in
    /// creation order) and checks they are fresh and increasing.
    fn learn(&mut self, created: &[String]) {
        for name in created {
            let real = query::mailbox_by_name(&self.view(), self.who, name).unwrap();
            assert!(self.ids.insert(real.id), "mailbox id {} reused", real.id);
            assert!(real.uidvalidity > self.max_uidvalidity, "UIDVALIDITY must grow: {name}");
            self.max_uidvalidity = real.uidvalidity;
            let b = self.boxes.get_mut(name).unwrap();
            b.id = real.id;
            b.uidvalidity = real.uidvalidity;
        }
    }

    /// Mostly an existing mailbox (3 in 4), else a name from the pool.
    fn name(&self, n: u8) -> String {
        let n = n as usize;
        if !n.is_multiple_of(4) {
            let existing: Vec<&String> = self.boxes.keys().collect();
            return existing[(n / 4) % existing.len()].clone();
        }
        self.new_name(n as u8 / 4)
    }

    /// A name from the pool (which may or may not exist).
    fn new_name(&self, n: u8) -> String {
        let all: Vec<&str> = POOL.iter().chain(EXTRA.iter()).copied().collect();
        all[n as usize % all.len()].to_string()
    }

    fn missing_parents(&self, name: &str) -> Vec<String> {
        names::parents(name).into_iter().filter(|p| !self.boxes.contains_key(p)).collect()
    }

    /// (id, uidvalidity) for a command addressing a mailbox by id: a living one, or a deleted
    /// one (expecting NotFound), or `None` to skip.
    fn target(&self, name: &str, n: u8) -> Option<((MailboxId, u32), bool)> {
        match self.boxes.get(name) {
            Some(b) => Some(((b.id, b.uidvalidity), true)),
            None if !self.dead.is_empty() => Some((self.dead[n as usize % self.dead.len()], false)),
            None => None,
        }
    }

    fn expect_err(&mut self, cmd: Command, commit: bool, want: Kind) {
        let (reply, _) = self.exec(cmd.clone(), commit);
        match reply {
            Err(e) => assert_eq!(kind(&e), want, "{cmd:?}"),
            Ok(o) => panic!("{cmd:?} should fail with {want:?}, got {o:?}"),
        }
    }

    fn run_op(&mut self, op: &Op, commit: bool) {
        let who = self.who;
        match op.clone() {
            Op::Create(n) => {
                let name = self.new_name(n);
                let cmd = Command::CreateMailbox { who, name: name.clone(), special_use: None };
                if self.boxes.contains_key(&name) {
                    return self.expect_err(cmd, commit, Kind::AlreadyExists);
                }
                let mut created = self.missing_parents(&name);
                created.push(name.clone());
                let (reply, events) = self.exec(cmd, commit);
                for c in &created {
                    self.boxes.insert(c.clone(), RBox::new());
                }
                self.learn(&created);
                let b = &self.boxes[&name];
                assert_eq!(reply, Ok(Outcome::MailboxCreated { mailbox: b.id, uidvalidity: b.uidvalidity }));
                assert!(events.is_empty());
            }
            Op::Delete(n) => {
                let name = self.name(n);
                let cmd = Command::DeleteMailbox { who, name: name.clone() };
                if name == "INBOX" {
                    return self.expect_err(cmd, commit, Kind::Cannot);
                }
                let Some(b) = self.boxes.remove(&name) else { return self.expect_err(cmd, commit, Kind::NotFound) };
                let (reply, events) = self.exec(cmd, commit);
                assert_eq!(reply, Ok(Outcome::Done));
                assert_eq!(events, vec![MailboxEvent { who, mailbox: b.id, modseq: b.highest + 1 }]);
                self.dead.push((b.id, b.uidvalidity));
            }
            Op::Rename(a, z) => self.rename(&self.name(a), &self.new_name(z), commit),
            Op::Append(n, msgs) => {
                let name = self.name(n);
                let messages = msgs.iter().map(|(b, f)| common::msg(BODIES[*b], f.iter().map(|&i| flag(i)).collect())).collect();
                let cmd = Command::Append { who, mailbox: name.clone(), messages };
                let Some(b) = self.boxes.get_mut(&name) else { return self.expect_err(cmd, commit, Kind::NotFound) };
                let m = b.bump();
                let uids: Vec<Uid> = msgs.iter().map(|(body, f)| b.add(set_of(&f.iter().map(|&i| flag(i)).collect::<Vec<_>>()), m, *body)).collect();
                let want = Outcome::Appended { mailbox: b.id, uidvalidity: b.uidvalidity, uids, highest_modseq: m };
                let want_events = vec![MailboxEvent { who, mailbox: b.id, modseq: m }];
                assert_eq!(self.exec(cmd, commit), (Ok(want), want_events));
            }
            Op::Store(n, sel, sop, fl, back) => {
                let name = self.name(n);
                let Some(((id, uv), alive)) = self.target(&name, n) else { return };
                let given: Vec<Flag> = fl.iter().map(|&i| flag(i)).collect();
                let unchanged_since = match (back, self.boxes.get(&name)) {
                    (Some(k), Some(b)) => b.highest.saturating_sub(k).max(1),
                    _ => 0,
                };
                let cmd = Command::Store { who, mailbox: id, uidvalidity: uv, uids: sel.set(), op: sop, flags: given.clone(), unchanged_since };
                if !alive {
                    return self.expect_err(cmd, commit, Kind::NotFound);
                }
                let given = set_of(&given);
                let b = self.boxes.get_mut(&name).unwrap();
                let (mut updated, mut unchanged, mut modified, mut ms) = (vec![], vec![], vec![], None);
                for uid in b.selected(sel) {
                    let cur = b.msgs[&uid].clone();
                    if unchanged_since > 0 && cur.modseq > unchanged_since {
                        modified.push(uid);
                        continue;
                    }
                    let new: FlagSet = match sop {
                        StoreOp::Replace => given.clone(),
                        StoreOp::Add => cur.flags.union(&given).cloned().collect(),
                        StoreOp::Remove => cur.flags.difference(&given).cloned().collect(),
                    };
                    if new == cur.flags {
                        unchanged.push((uid, cur.flags, cur.modseq));
                        continue;
                    }
                    let m = *ms.get_or_insert_with(|| b.bump());
                    b.msgs.insert(uid, RMsg { flags: new.clone(), modseq: m, body: cur.body });
                    updated.push((uid, new, m));
                }
                let (id, highest) = (b.id, b.highest);
                let (reply, events) = self.exec(cmd, commit);
                let Ok(Outcome::Stored { updated: u, unchanged: un, modified: md, highest_modseq }) = reply else { panic!("{reply:?}") };
                let conv = |v: Vec<FlagsUpdate>| v.into_iter().map(|f| (f.uid, set_of(&f.flags), f.modseq)).collect::<Vec<_>>();
                assert_eq!((conv(u), conv(un), md, highest_modseq), (updated, unchanged, modified, highest));
                let want_events: Vec<_> = ms.map(|m| MailboxEvent { who, mailbox: id, modseq: m }).into_iter().collect();
                assert_eq!(events, want_events);
            }
            Op::Expunge(n, sel) => {
                let name = self.name(n);
                let Some(((id, uv), alive)) = self.target(&name, n) else { return };
                let cmd = Command::Expunge { who, mailbox: id, uidvalidity: uv, uids: sel.map(Sel::set) };
                if !alive {
                    return self.expect_err(cmd, commit, Kind::NotFound);
                }
                let b = self.boxes.get_mut(&name).unwrap();
                let gone: Vec<Uid> =
                    b.selected(sel.unwrap_or(Sel::All)).into_iter().filter(|u| b.msgs[u].flags.contains("\\deleted")).collect();
                let mut want_events = vec![];
                if !gone.is_empty() {
                    let m = b.bump();
                    for &u in &gone {
                        b.remove(u, m);
                    }
                    want_events.push(MailboxEvent { who, mailbox: id, modseq: m });
                }
                let want = Outcome::Expunged { uids: gone, highest_modseq: b.highest };
                assert_eq!(self.exec(cmd, commit), (Ok(want), want_events));
            }
            Op::Copy(a, sel, z, is_move) => self.copy(a, sel, z, is_move, commit),
        }
    }

    fn rename(&mut self, from: &str, to: &str, commit: bool) {
        let who = self.who;
        let cmd = Command::RenameMailbox { who, from: from.into(), to: to.into() };
        if !self.boxes.contains_key(from) {
            return self.expect_err(cmd, commit, Kind::NotFound);
        }
        if self.boxes.contains_key(to) {
            return self.expect_err(cmd, commit, Kind::AlreadyExists);
        }
        let mut created = self.missing_parents(to);
        if from == "INBOX" {
            created.push(to.to_string());
            for c in &created {
                self.boxes.insert(c.clone(), RBox::new());
            }
            let (reply, events) = self.exec(cmd, commit);
            assert_eq!(reply, Ok(Outcome::Done));
            self.learn(&created);
            let mut inbox = self.boxes.remove("INBOX").unwrap();
            let mut dest = self.boxes.remove(to).unwrap();
            let mut want_events = vec![];
            if !inbox.msgs.is_empty() {
                let (dm, im) = (dest.bump(), inbox.bump());
                for (uid, m) in std::mem::take(&mut inbox.msgs) {
                    dest.add(m.flags, dm, m.body);
                    inbox.expunged.push((im, uid));
                }
                want_events = vec![MailboxEvent { who, mailbox: inbox.id, modseq: im }, MailboxEvent { who, mailbox: dest.id, modseq: dm }];
            }
            assert_eq!(events, want_events);
            self.boxes.insert("INBOX".into(), inbox);
            self.boxes.insert(to.into(), dest);
            return;
        }
        let prefix = format!("{from}/");
        if to.starts_with(&prefix) {
            return self.expect_err(cmd, commit, Kind::Invalid);
        }
        let mut moves = vec![(from.to_string(), to.to_string())];
        let inferiors: Vec<String> = self.boxes.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        for old in inferiors {
            let new = format!("{to}{}", &old[from.len()..]);
            if self.boxes.contains_key(&new) {
                return self.expect_err(cmd, commit, Kind::AlreadyExists);
            }
            moves.push((old, new));
        }
        let (reply, events) = self.exec(cmd, commit);
        assert_eq!((reply, events), (Ok(Outcome::Done), vec![]));
        for c in &created {
            self.boxes.insert(c.clone(), RBox::new());
        }
        self.learn(&created);
        let taken: Vec<(String, RBox)> = moves.iter().map(|(old, new)| (new.clone(), self.boxes.remove(old).unwrap())).collect();
        self.boxes.extend(taken);
    }

    fn copy(&mut self, a: u8, sel: Sel, z: u8, is_move: bool, commit: bool) {
        let who = self.who;
        let (src_name, dst_name) = (self.name(a), self.name(z));
        let Some(((id, uv), alive)) = self.target(&src_name, a) else { return };
        let cmd = Command::Copy { who, mailbox: id, uidvalidity: uv, uids: sel.set(), destination: dst_name.clone(), is_move };
        if !alive || !self.boxes.contains_key(&dst_name) {
            return self.expect_err(cmd, commit, Kind::NotFound);
        }
        let picked = self.boxes[&src_name].selected(sel);
        let mut src = self.boxes.remove(&src_name).unwrap();
        let same = src_name == dst_name;
        let mut dst = if same { src.clone() } else { self.boxes.remove(&dst_name).unwrap() };
        let mut want_events = vec![];
        let mut dest_uids = vec![];
        if !picked.is_empty() {
            let dm = dst.bump();
            for u in &picked {
                let m = src.msgs[u].clone();
                dest_uids.push(dst.add(m.flags, dm, m.body));
            }
            if same {
                src = dst.clone();
            } else {
                want_events.push(MailboxEvent { who, mailbox: dst.id, modseq: dm });
            }
            if is_move {
                let sm = if same { dm } else { src.bump() };
                for &u in &picked {
                    src.remove(u, sm);
                }
            }
            if same || is_move {
                want_events.push(MailboxEvent { who, mailbox: src.id, modseq: src.highest });
            }
        }
        let want = Outcome::Copied {
            dest_mailbox: dst.id,
            dest_uidvalidity: dst.uidvalidity,
            source_uids: picked,
            dest_uids,
            highest_modseq: src.highest,
        };
        assert_eq!(self.exec(cmd, commit), (Ok(want), want_events));
        if !same {
            self.boxes.insert(dst_name, dst);
        }
        self.boxes.insert(src_name, src);
    }

    /// The real state equals the reference model.
    fn check(&self, full_changes: bool) {
        let kv = self.view();
        let who = self.who;
        let real: Vec<Mailbox> = query::list_mailboxes(&kv, who).unwrap();
        assert_eq!(real.iter().map(|m| m.name.clone()).collect::<Vec<_>>(), self.boxes.keys().cloned().collect::<Vec<_>>());
        let mut refs = [0u64; BODIES.len()];
        refs[0] = 1; // bob's message
        let mut used = 0u64;
        let (mut n_msgs, mut n_log) = (0, 0);
        for (mb, (name, b)) in real.iter().zip(&self.boxes) {
            assert_eq!((mb.id, mb.uidvalidity, mb.uidnext, mb.highest_modseq), (b.id, b.uidvalidity, b.uidnext, b.highest), "{name}");
            let unseen = b.msgs.values().filter(|m| !m.flags.contains("\\seen")).count() as u32;
            let deleted = b.msgs.values().filter(|m| m.flags.contains("\\deleted")).count() as u32;
            let size: u64 = b.msgs.values().map(|m| BODIES[m.body].len() as u64).sum();
            assert_eq!((mb.exists, mb.unseen, mb.deleted, mb.size), (b.msgs.len() as u32, unseen, deleted, size), "{name}");
            for k in b.msgs.values().flat_map(|m| m.flags.iter()).filter(|f| !f.starts_with('\\')) {
                assert!(mb.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)), "{name} keyword {k}");
            }
            assert_eq!(query::uids(&kv, who, mb).unwrap(), b.msgs.keys().copied().collect::<Vec<_>>());
            let msgs = query::messages(&kv, who, mb, &UidSet::range(1, Uid::MAX), 0).unwrap();
            for (m, (uid, r)) in msgs.iter().zip(&b.msgs) {
                assert_eq!((m.uid, set_of(&m.flags), m.modseq, m.blob), (*uid, r.flags.clone(), r.modseq, sha(BODIES[r.body])));
                assert!(m.modseq <= mb.highest_modseq);
                refs[r.body] += 1;
                used += m.size;
            }
            let first_unseen = b.msgs.iter().find(|(_, m)| !m.flags.contains("\\seen")).map(|(u, _)| *u);
            assert_eq!(query::first_unseen(&kv, who, mb).unwrap(), first_unseen);
            n_msgs += b.msgs.len();
            n_log += b.msgs.len() + b.expunged.len();
            let sinces: Vec<u64> =
                if full_changes { (0..=b.highest + 1).collect() } else { vec![0, b.highest.saturating_sub(1), b.highest] };
            for since in sinces {
                let v = query::changes(&kv, who, mb, since, usize::MAX).unwrap();
                let mut exp: Vec<Uid> = b.expunged.iter().filter(|(m, _)| *m > since).map(|(_, u)| *u).collect();
                exp.sort_unstable();
                let changed: Vec<(Uid, FlagSet, u64)> =
                    b.msgs.iter().filter(|(_, m)| m.modseq > since).map(|(u, m)| (*u, m.flags.clone(), m.modseq)).collect();
                let got: Vec<_> = v.changed.iter().map(|c| (c.uid, set_of(&c.flags), c.modseq)).collect();
                assert_eq!((v.expunged, got, v.resync), (exp, changed, false), "{name} since {since}");
                assert_eq!((v.highest_modseq, v.uidnext), (b.highest, b.uidnext));
            }
        }
        for (i, body) in BODIES.iter().enumerate() {
            assert_eq!(query::blob_refcount(&kv, who.tenant, &sha(body)).unwrap(), refs[i], "refcount of body {i}");
            assert_eq!(query::blob_meta(&kv, who.tenant, &sha(body)).is_some(), refs[i] > 0, "blob meta of body {i}");
            assert_eq!(query::blob(&kv, who.tenant, &sha(body)).is_some(), refs[i] > 0, "blob data of body {i}");
        }
        assert_eq!(query::account(&kv, who).unwrap().used_bytes, used);
        assert_eq!(query::tenant_by_domain(&kv, "example.test").unwrap().used_bytes, used + self.bob_bytes);
        // No orphans: every row is accounted for (bob has one message and one log entry).
        let rows = |t: Table| kv.scan(t, &[], None, usize::MAX).len();
        assert_eq!(rows(Table::Messages), n_msgs + 1);
        assert_eq!(rows(Table::Changes), n_log + 1);
        assert_eq!(rows(Table::Mailboxes), self.boxes.len() + 1);
        assert_eq!(rows(Table::BlobData), refs.iter().filter(|&&r| r > 0).count());
    }
}

/// Runs `ops`, committing after op `i` when `commit[i]` (and at the end) and retrying the last
/// request with an id after op `i` when `replay[i]`. Returns the replies and events and the
/// final state.
///
/// The harness starts at feature level 1; before op `raise` (if any) the level is raised to the
/// newest this binary knows, so records of both versions live side by side from then on (a
/// cluster upgraded in place), and the reference model must still match.
fn run(ops: &[Op], commit: &[bool], replay: &[bool], raise: Option<usize>) -> (Vec<(Reply, Vec<MailboxEvent>)>, MemKv) {
    let mut h = Harness::new();
    for (i, op) in ops.iter().enumerate() {
        let commit = commit.get(i).copied().unwrap_or(true);
        if raise == Some(i) {
            h.exec(Command::SetFeatureLevel { level: KNOWN_FEATURE_LEVEL }, commit).0.unwrap();
        }
        h.run_op(op, commit);
        if replay.get(i).copied().unwrap_or(false) {
            h.replay_last(commit);
        }
        h.check(i % 8 == 7);
    }
    h.check(true);
    h.kv.commit(std::mem::take(&mut h.ws));
    (h.log, h.kv)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn model_matches_reference_and_batching_is_transparent(
        ops in vec(op(), 1..40),
        plan in vec(any::<bool>(), 40),
        replay in vec(proptest::bool::weighted(0.3), 40),
        raise in proptest::option::of(0usize..40),
    ) {
        let (log_a, kv_a) = run(&ops, &[], &replay, raise);
        let (log_b, kv_b) = run(&ops, &plan, &replay, raise);
        prop_assert_eq!(log_a, log_b);
        prop_assert!(kv_a == kv_b, "batched and unbatched runs must leave identical state");
    }
}
