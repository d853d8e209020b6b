//! The bounds of `mailraft_model::limits`: the per-mailbox keyword cap and the per-command
//! message caps. A refused command must be refused on every replica alike (`Limit`, or `TooBig`
//! for the size bounds from feature level 2 on) and change nothing (the harness checks that a
//! failed command writes only dedup bookkeeping).
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::collections::BTreeSet;

use common::*;
use mailraft_model::flags::MAX_KEYWORD_LEN;
use mailraft_model::limits::{MAX_APPEND_MESSAGES, MAX_COMMAND_BYTES, MAX_MAILBOX_KEYWORDS, MAX_MESSAGES_PER_COMMAND};
use mailraft_model::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn keywords(range: std::ops::Range<usize>) -> Vec<Flag> {
    range.map(|i| kw(&format!("k{i}"))).collect()
}

/// A refusal no smaller command would avoid.
fn is_limit<T: std::fmt::Debug>(r: Result<T, ModelError>) -> bool {
    matches!(r, Err(ModelError::Limit(_)))
}

/// A refusal of a command's size (feature level 2 on): a front-end may split and retry it.
fn is_too_big<T: std::fmt::Debug>(r: Result<T, ModelError>) -> bool {
    matches!(r, Err(ModelError::TooBig(_)))
}

#[test]
fn a_mailbox_stops_at_the_keyword_cap() {
    let (mut s, who) = Sys::setup();
    s.create(who, "Other");
    s.append(who, "INBOX", &[(b"one", keywords(0..MAX_MAILBOX_KEYWORDS - 1))]);
    // The last free slot can be taken; case variants of known keywords take none.
    let (r, _) = s.store(who, "INBOX", all(), StoreOp::Add, vec![kw("LAST"), kw("K0"), kw("k1")], 0);
    r.unwrap();
    assert_eq!(s.mb(who, "INBOX").keywords.len(), MAX_MAILBOX_KEYWORDS);

    // Full: a new keyword is refused by STORE, APPEND and COPY into the mailbox …
    let (r, events) = s.store(who, "INBOX", all(), StoreOp::Add, vec![kw("new")], 0);
    assert!(is_limit(r), "store of a new keyword");
    assert!(events.is_empty());
    let e = s.err(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"two", vec![kw("new")])] });
    assert!(matches!(e, ModelError::Limit(_)), "{e:?}");
    s.append(who, "Other", &[(b"three", vec![kw("other")])]);
    let (r, _) = s.copy(who, "Other", all(), "INBOX", false);
    assert!(is_limit(r), "copy bringing a new keyword");
    let (r, _) = s.copy(who, "Other", all(), "INBOX", true);
    assert!(is_limit(r), "move bringing a new keyword");
    assert_eq!(s.msgs(who, "Other").len(), 1, "the refused move left its source alone");

    // … while known keywords, in any spelling, still work everywhere.
    s.append(who, "INBOX", &[(b"four", vec![kw("last"), kw("K7"), Flag::Seen])]);
    let (r, _) = s.store(who, "INBOX", all(), StoreOp::Replace, vec![kw("k9")], 0);
    r.unwrap();
    s.append(who, "Other", &[(b"five", vec![kw("K200")])]);
    let (r, _) = s.copy(who, "Other", UidSet::range(2, 2), "INBOX", false);
    r.unwrap();
    let mb = s.mb(who, "INBOX");
    assert_eq!(mb.keywords.len(), MAX_MAILBOX_KEYWORDS);
    assert!(mb.keywords.iter().any(|k| k == "LAST") && !mb.keywords.iter().any(|k| k == "new") && !mb.keywords.iter().any(|k| k == "other"));
}

#[test]
fn an_append_over_the_message_cap_is_refused() {
    let (mut s, who) = Sys::setup();
    let messages = vec![msg(b"x", vec![]); MAX_APPEND_MESSAGES + 1];
    let e = s.err(Command::Append { who, mailbox: "INBOX".into(), messages });
    assert!(matches!(e, ModelError::Limit(_)), "{e:?}");
    let messages = vec![msg(b"x", vec![]); MAX_APPEND_MESSAGES];
    s.ok(Command::Append { who, mailbox: "INBOX".into(), messages });
    assert_eq!(s.mb(who, "INBOX").exists as usize, MAX_APPEND_MESSAGES);
}

#[test]
fn a_set_with_too_many_ranges_is_refused_before_reading() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"x", vec![Flag::Deleted])]);
    // Every other UID: as many ranges as the cap allows messages, plus one.
    let ranges: Vec<(Uid, Uid)> = (0..=MAX_MESSAGES_PER_COMMAND as u32).map(|i| (2 * i + 1, 2 * i + 1)).collect();
    let set = UidSet { ranges };
    let (r, _) = s.store(who, "INBOX", set.clone(), StoreOp::Add, vec![Flag::Seen], 0);
    assert!(is_too_big(r));
    let (r, _) = s.copy(who, "INBOX", set.clone(), "INBOX", false);
    assert!(is_too_big(r));
    let (r, _) = s.expunge(who, "INBOX", Some(set));
    assert!(is_too_big(r));
    assert_eq!(s.msgs(who, "INBOX").len(), 1);
}

/// One mailbox of `MAX_MESSAGES_PER_COMMAND + 1` messages (one shared blob), all `\Deleted`,
/// and an empty "Dest".
fn big_mailbox() -> (Sys, Principal) {
    big_mailbox_named("INBOX")
}

fn big_mailbox_named(name: &str) -> (Sys, Principal) {
    let (mut s, who) = Sys::setup();
    s.create(who, "Dest");
    if name != "INBOX" {
        s.create(who, name);
    }
    let mut left = MAX_MESSAGES_PER_COMMAND + 1;
    while left > 0 {
        let n = left.min(MAX_APPEND_MESSAGES);
        s.ok(Command::Append { who, mailbox: name.into(), messages: vec![msg(b"same", vec![Flag::Deleted]); n] });
        left -= n;
    }
    (s, who)
}

#[test]
fn commands_over_the_message_cap_are_refused_and_change_nothing() {
    let (mut s, who) = big_mailbox();
    let cap = MAX_MESSAGES_PER_COMMAND as Uid;
    let (r, _) = s.store(who, "INBOX", all(), StoreOp::Add, vec![Flag::Seen], 0);
    assert!(is_too_big(r), "store over the cap");
    let (r, _) = s.copy(who, "INBOX", all(), "Dest", false);
    assert!(is_too_big(r), "copy over the cap");
    let (r, _) = s.copy(who, "INBOX", all(), "Dest", true);
    assert!(is_too_big(r), "move over the cap");
    let (r, _) = s.expunge(who, "INBOX", None);
    assert!(is_too_big(r), "expunge of a mailbox over the cap");
    let (r, _) = s.expunge(who, "INBOX", Some(all()));
    assert!(is_too_big(r), "uid expunge over the cap");
    let e = s.err(Command::RenameMailbox { who, from: "INBOX".into(), to: "Old".into() });
    assert!(matches!(e, ModelError::Limit(_)), "renaming INBOX moves every message, and cannot be split: {e:?}");
    assert_eq!(s.mb(who, "INBOX").exists, cap + 1);
    assert_eq!(s.mb(who, "Dest").exists, 0);

    // Exactly at the cap is allowed (ordinary records stay far inside the byte bound); the rest
    // then fits too.
    let (r, _) = s.copy(who, "INBOX", UidSet::range(1, cap), "Dest", false);
    r.unwrap();
    let (r, _) = s.store(who, "INBOX", UidSet::range(1, cap), StoreOp::Add, vec![Flag::Seen], 0);
    r.unwrap();
    let (r, _) = s.expunge(who, "INBOX", Some(UidSet::range(2, cap + 1)));
    r.unwrap();
    let (r, _) = s.expunge(who, "INBOX", None);
    r.unwrap();
    assert_eq!(s.mb(who, "INBOX").exists, 0);
    assert_eq!(s.mb(who, "Dest").exists, cap);
    assert_eq!(s.blob_refs(who.tenant, b"same"), Some(u64::from(cap)), "only the copies' references are left");
}

/// Every keyword a mailbox may have, each as long as a keyword may be: about 33 KiB of flags on
/// every message that carries them all.
fn longest_keywords() -> Vec<Flag> {
    (0..MAX_MAILBOX_KEYWORDS).map(|i| kw(&format!("{i:x>width$}", width = MAX_KEYWORD_LEN))).collect()
}

/// The records of a message with every keyword, as level 1 writes them (~33 KiB).
fn heavy_record() -> MessageMeta {
    MessageMeta { uid: 1, flags: longest_keywords(), modseq: 1, internal_date: 0, tz_offset_minutes: 0, save_date: 0, size: 4, blob: [0; 32] }
}

/// At feature level 1 (records carry their keywords as strings), a set whose records are larger
/// than [`MAX_COMMAND_BYTES`] together (far fewer messages than the message cap) is refused by
/// COPY, MOVE, STORE and EXPUNGE, and changes nothing; half of it goes through.
#[test]
fn commands_over_the_byte_bound_are_refused_and_change_nothing() {
    let (mut s, who) = Sys::setup_at(1);
    s.create(who, "Dest");
    let heavy = longest_keywords();
    let n = (MAX_COMMAND_BYTES / heavy_record().encode_v1().len() as u64 + 1) as usize;
    assert!(n < MAX_MESSAGES_PER_COMMAND / 10, "the byte bound is what refuses here, not the message cap");
    let mut left = n;
    while left > 0 {
        let k = left.min(500);
        s.ok(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"same", heavy.clone()); k] });
        left -= k;
    }
    for is_move in [false, true] {
        let (r, events) = s.copy(who, "INBOX", all(), "Dest", is_move);
        assert!(is_limit(r), "copy (move: {is_move}) of {n} records of 33 KiB");
        assert!(events.is_empty());
    }
    let (r, _) = s.store(who, "INBOX", all(), StoreOp::Add, vec![Flag::Deleted], 0);
    assert!(is_limit(r), "store over the byte bound");
    assert_eq!((s.mb(who, "INBOX").exists as usize, s.mb(who, "INBOX").deleted, s.mb(who, "Dest").exists), (n, 0, 0));
    assert_eq!(s.blob_refs(who.tenant, b"same"), Some(n as u64), "no reference counted by a refused copy");

    // Half the set is inside the bound.
    let half = (n / 2) as Uid;
    let (r, _) = s.copy(who, "INBOX", UidSet::range(1, half), "Dest", true);
    r.unwrap();
    assert_eq!(s.mb(who, "Dest").exists, half);

    // DELETE reads every record too: the same bound refuses a mailbox of all of them.
    let (r, _) = s.copy(who, "INBOX", all(), "Dest", true);
    r.unwrap();
    assert_eq!(s.mb(who, "Dest").exists as usize, n);
    let e = s.err(Command::DeleteMailbox { who, name: "Dest".into() });
    assert!(matches!(e, ModelError::Limit(_)), "delete of a mailbox of {n} records of 33 KiB: {e}");
    assert_eq!(s.mb(who, "Dest").exists as usize, n, "the refused delete changed nothing");
}

/// From feature level 2 on, a record names its keywords by index: a message with every keyword
/// is a few hundred bytes on disk. A command still holds (and STORE replies with) the keywords as
/// strings, so the byte bound charges them: the set level 1 refused is refused (`TooBig`, so a
/// front-end splits it) whether it is read (COPY, a STORE that changes nothing) or written (a
/// STORE adding every keyword to light messages), and half of it passes.
#[test]
fn keyword_indices_keep_records_small_and_the_byte_bound_counts_keywords_as_strings() {
    let (mut s, who) = Sys::setup();
    s.create(who, "Dest");
    let heavy = longest_keywords();
    let n = (MAX_COMMAND_BYTES / heavy_record().encode_v1().len() as u64 + 1) as usize;
    let mut left = n;
    while left > 0 {
        let k = left.min(500);
        s.ok(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"same", heavy.clone()); k] });
        left -= k;
    }
    let largest = s.kv.data.iter().filter(|((t, _), _)| *t == Table::Messages).map(|(_, v)| v.len()).max().unwrap();
    assert!(largest < 400, "a record with 256 keywords of 128 bytes is {largest} bytes");
    let (r, _) = s.copy(who, "INBOX", all(), "Dest", false);
    assert!(is_too_big(r.clone()), "copy of {n} messages holding 33 KiB of keywords each: {r:?}");
    let (r, _) = s.store(who, "INBOX", all(), StoreOp::Add, vec![kw(&format!("{0:x>width$}", 0, width = MAX_KEYWORD_LEN))], 0);
    assert!(is_too_big(r), "a store that changes nothing still reads (and would reply with) every keyword");
    let half = (n / 2) as Uid;
    let (r, _) = s.copy(who, "INBOX", UidSet::range(1, half), "Dest", false);
    r.unwrap();
    let dest = s.msgs(who, "Dest");
    assert_eq!(dest.len(), half as usize);
    assert!(dest.iter().all(|m| m.flags.len() == heavy.len()), "every keyword survived the copy");

    // Written: light messages, every keyword added at once.
    s.ok(Command::CreateMailbox { who, name: "Light".into(), special_use: None });
    let mut left = n;
    while left > 0 {
        let k = left.min(MAX_APPEND_MESSAGES);
        s.ok(Command::Append { who, mailbox: "Light".into(), messages: vec![msg(b"light", vec![]); k] });
        left -= k;
    }
    let (r, _) = s.store(who, "Light", all(), StoreOp::Add, heavy.clone(), 0);
    assert!(is_too_big(r), "a store writing 33 KiB of keywords into each of {n} messages");
    assert!(s.msgs(who, "Light").iter().all(|m| m.flags.is_empty()), "nothing was written");
    let (r, _) = s.store(who, "Light", UidSet::range(1, half), StoreOp::Add, heavy, 0);
    r.unwrap();
}

/// A COPY whose records fit the read bound writes them again plus a change-log row and a blob
/// count each, which passes the write bound: refused as it writes, nothing kept (level 1's
/// records; level 2's are too small for a command within the message cap to get there).
#[test]
fn a_copy_that_would_write_over_the_byte_bound_is_refused() {
    let (mut s, who) = Sys::setup_at(1);
    s.create(who, "Dest");
    let heavy = longest_keywords();
    s.ok(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"same", heavy.clone()); 200] });
    // The largest record stored (their UIDs, and so their sizes, differ by a byte or two).
    let record = s.kv.data.iter().filter(|((t, _), _)| *t == Table::Messages).map(|(_, v)| v.len() as u64).max().unwrap();
    let n = (MAX_COMMAND_BYTES / record) as usize;
    let mut left = n + 10 - 200;
    while left > 0 {
        let k = left.min(500);
        s.ok(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"same", heavy.clone()); k] });
        left -= k;
    }
    // n records are at most the read bound; written with their keys, change rows and counts
    // (about 100 bytes each more) they pass it.
    let (r, events) = s.copy(who, "INBOX", UidSet::range(1, n as Uid), "Dest", false);
    match r {
        Err(ModelError::Limit(m)) => assert!(m.contains("write"), "refused by the write bound: {m}"),
        Err(other) => panic!("copy of {n} records: {other}"),
        Ok(_) => panic!("copy writing {n} records of {record} bytes and their bookkeeping was applied"),
    }
    assert!(events.is_empty());
    assert_eq!(s.mb(who, "Dest").exists, 0);
    assert_eq!(s.blob_refs(who.tenant, b"same"), Some((n + 10) as u64));
    let (r, _) = s.copy(who, "INBOX", UidSet::range(1, (n / 2) as Uid), "Dest", false);
    r.unwrap();
}

/// STORE reads small records but would write large ones: the write bound refuses it (level 1).
#[test]
fn a_store_that_would_write_over_the_byte_bound_is_refused() {
    let (mut s, who) = Sys::setup_at(1);
    let heavy = longest_keywords();
    let n = (MAX_COMMAND_BYTES / (MAX_MAILBOX_KEYWORDS * MAX_KEYWORD_LEN) as u64 + 1) as usize;
    let mut left = n;
    while left > 0 {
        let k = left.min(MAX_APPEND_MESSAGES);
        s.ok(Command::Append { who, mailbox: "INBOX".into(), messages: vec![msg(b"light", vec![]); k] });
        left -= k;
    }
    let (r, events) = s.store(who, "INBOX", all(), StoreOp::Add, heavy.clone(), 0);
    match r {
        Err(ModelError::Limit(m)) => assert!(m.contains("write"), "refused by the write bound: {m}"),
        // Not the whole reply: it would carry megabytes of keywords.
        Err(other) => panic!("store writing {n} records of 33 KiB: {other}"),
        Ok(_) => panic!("store writing {n} records of 33 KiB was applied"),
    }
    assert!(events.is_empty());
    assert!(s.msgs(who, "INBOX").iter().all(|m| m.flags.is_empty()), "nothing was written");
    assert!(s.mb(who, "INBOX").keywords.is_empty());
    let (r, _) = s.store(who, "INBOX", UidSet::range(1, (n / 2) as Uid), StoreOp::Add, heavy, 0);
    r.unwrap();
}

/// A read view that counts scans of the message table.
struct CountingKv<'a> {
    inner: &'a MemKv,
    message_scans: Cell<usize>,
}

impl KvRead for CountingKv<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(table, key)
    }

    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        if table == Table::Messages {
            self.message_scans.set(self.message_scans.get() + 1);
        }
        self.inner.scan(table, start, end, limit)
    }
}

#[test]
fn expunge_without_deleted_messages_reads_no_message() {
    let (mut s, who) = Sys::setup();
    s.append(who, "INBOX", &[(b"a", vec![]), (b"b", vec![Flag::Seen])]);
    let mb = s.mb(who, "INBOX");
    let kv = CountingKv { inner: &s.kv, message_scans: Cell::new(0) };
    let expunge = Command::Expunge { who, mailbox: mb.id, uidvalidity: mb.uidvalidity, uids: None };
    let applied = apply_detailed(&kv, &mut WriteSet::default(), &Request::new(s.now_ms, expunge.clone())).unwrap();
    assert_eq!(applied.reply, Ok(Outcome::Expunged { uids: vec![], highest_modseq: mb.highest_modseq }));
    assert_eq!(kv.message_scans.get(), 0, "the \\Deleted counter is 0: nothing to scan for");

    // With a \Deleted message the same command does scan (the counter above is live).
    s.store(who, "INBOX", UidSet::range(2, 2), StoreOp::Add, vec![Flag::Deleted], 0).0.unwrap();
    let kv = CountingKv { inner: &s.kv, message_scans: Cell::new(0) };
    let applied = apply_detailed(&kv, &mut WriteSet::default(), &Request::new(s.now_ms, expunge)).unwrap();
    assert!(matches!(applied.reply, Ok(Outcome::Expunged { ref uids, .. }) if uids == &[2]), "{:?}", applied.reply);
    assert!(kv.message_scans.get() > 0);
}

#[test]
fn delete_of_a_mailbox_over_the_message_cap_is_refused_without_reading_it() {
    let (mut s, who) = big_mailbox_named("Big");
    let delete = Command::DeleteMailbox { who, name: "Big".into() };
    let kv = CountingKv { inner: &s.kv, message_scans: Cell::new(0) };
    let applied = apply_detailed(&kv, &mut WriteSet::default(), &Request::new(s.now_ms, delete.clone())).unwrap();
    match &applied.reply {
        Err(ModelError::Limit(m)) => assert!(m.contains("expunge"), "the refusal says what to do: {m}"),
        other => panic!("delete over the cap: {other:?}"),
    }
    assert_eq!(kv.message_scans.get(), 0, "the refusal is judged by the counter, not a scan");
    let e = s.err(delete.clone());
    assert!(matches!(e, ModelError::Limit(_)), "{e:?}");
    assert_eq!(s.mb(who, "Big").exists as usize, MAX_MESSAGES_PER_COMMAND + 1, "nothing changed");

    // One message fewer and the same DELETE removes the mailbox and every reference it held.
    let (r, _) = s.expunge(who, "Big", Some(UidSet::range(1, 1)));
    r.unwrap();
    s.ok(delete);
    assert!(s.msgs(who, "Dest").is_empty());
    assert_eq!(s.count(Table::Messages), 0, "every message of the deleted mailbox is gone");
    assert_eq!(s.blob_refs(who.tenant, b"same"), None, "every reference dropped");
}

/// Distinct keywords (case-folded) the property test draws from: a few more than the cap, so
/// mailboxes reach it often.
const POOL: usize = MAX_MAILBOX_KEYWORDS + 40;

/// A keyword of the pool, in one of three spellings.
fn pool_keyword(i: usize) -> Flag {
    let n = i % POOL;
    match i / POOL % 3 {
        0 => kw(&format!("kw{n}")),
        1 => kw(&format!("KW{n}")),
        _ => kw(&format!("Kw{n}")),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8, Vec<usize>),
    Store(u8, StoreOp, Vec<usize>),
    Copy(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let kws = vec(0..3 * POOL, 0..120);
    let store_op = prop_oneof![Just(StoreOp::Replace), Just(StoreOp::Add), Just(StoreOp::Remove)];
    prop_oneof![
        (any::<u8>(), kws.clone()).prop_map(|(m, k)| Op::Append(m, k)),
        (any::<u8>(), store_op, kws).prop_map(|(m, o, k)| Op::Store(m, o, k)),
        (any::<u8>(), any::<bool>()).prop_map(|(m, mv)| Op::Copy(m, mv)),
    ]
}

fn folded(flags: &[Flag]) -> BTreeSet<String> {
    flags.iter().filter(|f| matches!(f, Flag::Keyword(_))).map(|f| f.as_imap().to_ascii_lowercase()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever commands run: no mailbox ever holds more than the cap, its keywords are unique
    /// case-insensitively and cover every keyword of its messages, and a command is refused with
    /// `Limit` exactly when it would add new keywords beyond the cap.
    #[test]
    fn keyword_sets_stay_bounded_and_complete(ops in vec(op(), 1..60), level in prop::sample::select(vec![1, KNOWN_FEATURE_LEVEL])) {
        let (mut s, who) = Sys::setup_at(level);
        s.create(who, "B");
        let names = ["INBOX", "B"];
        for op in ops {
            // Which mailbox the command may bring keywords into, and which (case-folded).
            let (target, incoming) = match &op {
                Op::Append(m, k) => (names[*m as usize % 2], k.iter().map(|&i| pool_keyword(i)).collect::<Vec<_>>()),
                Op::Store(m, store_op, k) => {
                    let name = names[*m as usize % 2];
                    // A STORE that changes no message, or removes, brings nothing in.
                    let brings = *store_op != StoreOp::Remove && !s.msgs(who, name).is_empty();
                    (name, if brings { k.iter().map(|&i| pool_keyword(i)).collect() } else { Vec::new() })
                }
                Op::Copy(m, _) => {
                    let from = names[*m as usize % 2];
                    (names[1 - *m as usize % 2], s.msgs(who, from).iter().flat_map(|m| m.flags.clone()).collect())
                }
            };
            let known: BTreeSet<String> = s.mb(who, target).keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
            let over = known.union(&folded(&incoming)).count() > MAX_MAILBOX_KEYWORDS;
            let reply = match &op {
                Op::Append(m, k) => {
                    let flags: Vec<Flag> = k.iter().map(|&i| pool_keyword(i)).collect();
                    let body = format!("m{}", k.len());
                    let mailbox = names[*m as usize % 2].into();
                    s.run(Command::Append { who, mailbox, messages: vec![msg(body.as_bytes(), flags)] }).0
                }
                Op::Store(m, store_op, k) => {
                    let flags: Vec<Flag> = k.iter().map(|&i| pool_keyword(i)).collect();
                    s.store(who, names[*m as usize % 2], all(), *store_op, flags, 0).0
                }
                Op::Copy(m, is_move) => s.copy(who, names[*m as usize % 2], all(), target, *is_move).0,
            };
            prop_assert_eq!(is_limit(reply.clone()), over, "{:?} -> {:?}", op, reply);
            for name in names {
                let mb = s.mb(who, name);
                let keys: BTreeSet<String> = mb.keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
                prop_assert!(mb.keywords.len() <= MAX_MAILBOX_KEYWORDS);
                prop_assert_eq!(keys.len(), mb.keywords.len(), "duplicate spellings in {:?}", mb.keywords);
                for m in s.msgs(who, name) {
                    prop_assert!(folded(&m.flags).is_subset(&keys), "message keyword missing from FLAGS");
                }
            }
        }
    }
}

#[test]
fn an_account_stops_at_the_mailbox_cap_parents_included() {
    use mailraft_model::limits::MAX_MAILBOXES_PER_ACCOUNT;
    let (mut s, who) = Sys::setup();
    // INBOX exists; fill up to two short of the cap with rows the count sees (their contents do
    // not matter to it), so the test does not need ten thousand CREATEs.
    for id in 0..(MAX_MAILBOXES_PER_ACCOUNT - 3) as u64 {
        s.kv.data.insert((Table::Mailboxes, keys::mailbox(who.tenant, who.account, 1_000_000 + id)), vec![0]);
    }
    // "a/b/c" needs three new mailboxes: one more than is left, so nothing is created.
    let e = s.err(Command::CreateMailbox { who, name: "a/b/c".into(), special_use: None });
    assert!(matches!(e, ModelError::Limit(_)), "{e:?}");
    assert!(query::mailbox_by_name(&s.kv, who, "a").is_err(), "the refused CREATE left no parent behind");
    // "a/b" fits exactly; then even a single new mailbox is refused.
    s.create(who, "a/b");
    let e = s.err(Command::CreateMailbox { who, name: "z".into(), special_use: None });
    assert!(matches!(e, ModelError::Limit(_)), "{e:?}");
    // Another account is not affected.
    let bob = s.account("bob");
    s.create(bob, "z");
}
