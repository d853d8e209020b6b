//! Test harness: a MemKv-backed "replica" that applies commands one at a time.
#![allow(dead_code, clippy::unwrap_used)]

use mailraft_model::*;

pub const T0: i64 = 1_700_000_000_000;

pub struct Sys {
    pub kv: MemKv,
    pub now_ms: i64,
}

impl Sys {
    pub fn new() -> Self {
        Sys { kv: MemKv::default(), now_ms: T0 }
    }

    /// Applies and commits one command; the clock advances 1 ms (same second most of the time).
    pub fn run(&mut self, command: Command) -> (Reply, Vec<MailboxEvent>) {
        let applied = self.run_with_id(command, None);
        (applied.reply, applied.events)
    }

    /// Like [`Sys::run`], with an idempotency key.
    pub fn run_with_id(&mut self, command: Command, request_id: Option<RequestId>) -> Applied {
        let mut ws = WriteSet::default();
        let applied = apply_detailed(&self.kv, &mut ws, &Request { now_ms: self.now_ms, request_id, command }).expect("a known level");
        if applied.reply.is_err() || applied.replayed {
            assert!(only_dedup(&ws), "failed or replayed command wrote {ws:?}");
            assert!(applied.events.is_empty());
        }
        self.kv.commit(ws);
        self.now_ms += 1;
        applied
    }

    pub fn ok(&mut self, command: Command) -> Outcome {
        let (reply, _) = self.run(command.clone());
        match reply {
            Ok(o) => o,
            Err(e) => panic!("{command:?} failed: {e}"),
        }
    }

    pub fn err(&mut self, command: Command) -> ModelError {
        match self.run(command.clone()).0 {
            Ok(o) => panic!("{command:?} succeeded: {o:?}"),
            Err(e) => e,
        }
    }

    /// Init + tenant example.test + account alice, at the level a new cluster starts at (the
    /// newest this binary knows).
    pub fn setup() -> (Sys, Principal) {
        Sys::setup_at(KNOWN_FEATURE_LEVEL)
    }

    /// [`Sys::setup`] at feature `level`: 1 is a cluster that has not raised its level since the
    /// first release, whose rules every binary must keep while it supports that level.
    pub fn setup_at(level: u32) -> (Sys, Principal) {
        let mut s = Sys::new();
        if level > 1 {
            s.ok(Command::SetFeatureLevel { level });
        }
        s.ok(Command::Init { session_key: vec![1, 2, 3].into() });
        s.ok(Command::CreateTenant { domain: "example.test".into() });
        let who = s.account("alice");
        (s, who)
    }

    pub fn account(&mut self, login: &str) -> Principal {
        match self.ok(Command::CreateAccount {
            domain: "example.test".into(),
            login: login.into(),
            password_hash: "$argon2id$x".into(),
        }) {
            Outcome::AccountCreated { tenant, account } => Principal { tenant, account },
            o => panic!("{o:?}"),
        }
    }

    pub fn create(&mut self, who: Principal, name: &str) -> Outcome {
        self.ok(Command::CreateMailbox { who, name: name.into(), special_use: None })
    }

    pub fn append(&mut self, who: Principal, mailbox: &str, msgs: &[(&[u8], Vec<Flag>)]) -> Vec<Uid> {
        match self.ok(Command::Append {
            who,
            mailbox: mailbox.into(),
            messages: msgs.iter().map(|(b, f)| msg(b, f.clone())).collect(),
        }) {
            Outcome::Appended { uids, .. } => uids,
            o => panic!("{o:?}"),
        }
    }

    pub fn mb(&self, who: Principal, name: &str) -> Mailbox {
        query::mailbox_by_name(&self.kv, who, name).unwrap()
    }

    pub fn msgs(&self, who: Principal, name: &str) -> Vec<MessageMeta> {
        let mb = self.mb(who, name);
        query::messages(&self.kv, who, &mb, &UidSet::range(1, Uid::MAX), 0).unwrap()
    }

    pub fn store(
        &mut self,
        who: Principal,
        name: &str,
        uids: UidSet,
        op: StoreOp,
        flags: Vec<Flag>,
        unchanged_since: u64,
    ) -> (Reply, Vec<MailboxEvent>) {
        let mb = self.mb(who, name);
        self.run(Command::Store { who, mailbox: mb.id, uidvalidity: mb.uidvalidity, uids, op, flags, unchanged_since })
    }

    pub fn expunge(&mut self, who: Principal, name: &str, uids: Option<UidSet>) -> (Reply, Vec<MailboxEvent>) {
        let mb = self.mb(who, name);
        self.run(Command::Expunge { who, mailbox: mb.id, uidvalidity: mb.uidvalidity, uids })
    }

    pub fn copy(
        &mut self,
        who: Principal,
        from: &str,
        uids: UidSet,
        to: &str,
        is_move: bool,
    ) -> (Reply, Vec<MailboxEvent>) {
        let mb = self.mb(who, from);
        self.run(Command::Copy {
            who,
            mailbox: mb.id,
            uidvalidity: mb.uidvalidity,
            uids,
            destination: to.into(),
            is_move,
        })
    }

    pub fn blob_refs(&self, tenant: TenantId, body: &[u8]) -> Option<u64> {
        Some(query::blob_refcount(&self.kv, tenant, &sha(body)).unwrap()).filter(|n| *n > 0)
    }

    pub fn count(&self, table: Table) -> usize {
        self.kv.data.keys().filter(|(t, _)| *t == table).count()
    }
}

/// True when `ws` touches nothing but the dedup bookkeeping (tables and the purge floor).
pub fn only_dedup(ws: &WriteSet) -> bool {
    ws.ops.keys().all(|(t, k)| {
        matches!(t, Table::Dedup | Table::DedupByTime) || (*t == Table::Meta && k == keys::META_DEDUP_FLOOR)
    })
}

/// A request id from a short label.
pub fn rid(label: &str) -> RequestId {
    RequestId::new(label.as_bytes().to_vec()).unwrap()
}

pub fn msg(body: &[u8], flags: Vec<Flag>) -> NewMessage {
    NewMessage { body: body.to_vec(), flags, internal_date: None, tz_offset_minutes: 60, structure: vec![7] }
}

pub fn sha(body: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(body).into()
}

pub fn kw(s: &str) -> Flag {
    Flag::Keyword(s.into())
}

pub fn all() -> UidSet {
    UidSet::range(1, Uid::MAX)
}
