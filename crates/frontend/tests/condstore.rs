//! CONDSTORE (RFC 7162 §3.1) over real sockets against a real storage node: enabling, the
//! HIGHESTMODSEQ of SELECT/EXAMINE/STATUS, FETCH MODSEQ and CHANGEDSINCE, conditional STORE,
//! SEARCH MODSEQ, and MODSEQ in the FETCHes a session gets for other sessions' changes.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{Client, Env, message};
use tokio::net::TcpStream;

/// The number after `MODSEQ (` in a FETCH line.
fn modseq_of(line: &str) -> u64 {
    let start = line.find("MODSEQ (").unwrap_or_else(|| panic!("no MODSEQ in {line}")) + "MODSEQ (".len();
    line[start..].split(')').next().unwrap().parse().unwrap()
}

/// The value of `[HIGHESTMODSEQ n]` (SELECT) or `HIGHESTMODSEQ n` (STATUS) among `lines`.
fn highest_modseq(lines: &[String]) -> Option<u64> {
    lines.iter().find_map(|l| {
        let start = l.find("HIGHESTMODSEQ ")? + "HIGHESTMODSEQ ".len();
        l[start..].split([']', ')', ' ']).next()?.parse().ok()
    })
}

/// A logged-in client with `Box` holding three messages, UIDs 1..=3.
async fn three_messages(env: &Env, mailbox: &str) -> Client<TcpStream> {
    let mut c = env.login().await;
    c.ok(&format!("CREATE {mailbox}")).await;
    for subject in ["one", "two", "three"] {
        assert!(c.append(mailbox, "", &message(subject, "body")).await.contains("OK"));
    }
    c
}

/// RFC 7162 §3.1.1 and §3.1: CONDSTORE (and ENABLE, RFC 5161) are advertised; ENABLE
/// CONDSTORE answers `* ENABLED CONDSTORE` and from then on SELECT reports HIGHESTMODSEQ
/// (§3.1.2.1), which it does not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_condstore_turns_on_highestmodseq() {
    let env = Env::start().await;
    let mut c = env.login().await;
    let caps = c.ok("CAPABILITY").await;
    assert!(caps[0].contains(" CONDSTORE") && caps[0].contains(" ENABLE"), "{caps:?}");

    let plain = c.ok("SELECT INBOX").await;
    assert_eq!(highest_modseq(&plain), None, "not before an enabling command: {plain:?}");
    c.ok("UNSELECT").await;

    // Unsupported extensions are left out of ENABLED (RFC 5161 §3.1).
    assert_eq!(c.ok("ENABLE X-UNKNOWN").await, vec!["* ENABLED".to_owned()]);
    assert_eq!(c.ok("ENABLE CONDSTORE").await, vec!["* ENABLED CONDSTORE".to_owned()]);
    let select = c.ok("SELECT INBOX").await;
    assert!(select.iter().any(|l| l.starts_with("* OK [HIGHESTMODSEQ ")), "{select:?}");
    env.stop().await;
}

/// RFC 7162 §3.1.8, §3.1.2.1: the CONDSTORE parameter of SELECT and EXAMINE; the value is the
/// one STATUS HIGHESTMODSEQ gives (§3.1.7) and grows with every change. QRESYNC is not
/// enabled, so its parameter is BAD (§3.2.5) and leaves the selection alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_examine_and_status_report_highestmodseq() {
    let env = Env::start().await;
    let mut c = three_messages(&env, "Box").await;
    let status = c.ok("STATUS Box (MESSAGES HIGHESTMODSEQ)").await;
    let before = highest_modseq(&status).unwrap_or_else(|| panic!("{status:?}"));
    assert!(status[0].contains("MESSAGES 3"), "{status:?}");

    let select = c.ok("SELECT Box (CONDSTORE)").await;
    assert_eq!(highest_modseq(&select), Some(before), "{select:?}");
    c.ok("STORE 1 +FLAGS.SILENT (\\Seen)").await;
    let examine = c.ok("EXAMINE Box (CONDSTORE)").await;
    let after = highest_modseq(&examine).unwrap_or_else(|| panic!("{examine:?}"));
    assert!(after > before, "{before} {after}");
    let status = c.ok("STATUS Box (HIGHESTMODSEQ)").await;
    assert_eq!(highest_modseq(&status), Some(after), "{status:?}");

    let refused = c.tagged("SELECT Box (QRESYNC (1 1))").await;
    assert!(refused.contains(" BAD "), "{refused}");
    assert!(c.tagged("FETCH 1 (UID)").await.contains(" OK "), "still selected");
    env.stop().await;
}

/// RFC 7162 §3.1.4.2 and §3.1.4.1: FETCH MODSEQ gives every message's mod-sequence;
/// CHANGEDSINCE returns only messages changed after the given value, with MODSEQ added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_modseq_and_changedsince() {
    let env = Env::start().await;
    let mut c = three_messages(&env, "Box").await;
    c.ok("SELECT Box").await;
    let fetched = c.ok("FETCH 1:* (UID MODSEQ)").await;
    assert_eq!(fetched.len(), 3, "{fetched:?}");
    let mark = fetched.iter().map(|l| modseq_of(l)).max().unwrap();

    let stored = c.ok("STORE 2 +FLAGS (\\Flagged)").await;
    // FETCH MODSEQ enabled CONDSTORE: the STORE's FETCH carries the new mod-sequence (§3.1).
    assert!(stored[0].starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ("), "{stored:?}");
    let new = modseq_of(&stored[0]);
    assert!(new > mark, "{stored:?}");

    let changed = c.ok(&format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {mark})")).await;
    assert_eq!(changed, vec![format!("* 2 FETCH (FLAGS (\\Flagged) MODSEQ ({new}))")]);
    let changed = c.ok(&format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {new})")).await;
    assert!(changed.is_empty(), "{changed:?}");
    let all = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)").await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|l| l.contains("(UID ") && l.contains("MODSEQ (")), "{all:?}");

    // A body fetch that sets \Seen, with CHANGEDSINCE, sets it only on what it returns (RFC 7162
    // §3.1.4.1): message 2 alone, the others stay unseen and unchanged.
    let read = c.ok(&format!("FETCH 1:* (BODY[HEADER]) (CHANGEDSINCE {mark})")).await;
    let responses: Vec<&String> = read.iter().filter(|l| l.starts_with("* ") && l.contains(" FETCH (")).collect();
    assert_eq!(responses.len(), 1, "{read:?}");
    assert!(responses[0].starts_with("* 2 FETCH "), "{read:?}");
    let flags = c.ok("FETCH 1:* (FLAGS)").await;
    let seen: Vec<&String> = flags.iter().filter(|l| l.contains("\\Seen")).collect();
    assert_eq!(seen.len(), 1, "{flags:?}");
    assert!(seen[0].starts_with("* 2 FETCH "), "{flags:?}");

    let refused = c.tagged("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)").await;
    assert!(refused.contains(" BAD "), "VANISHED needs QRESYNC: {refused}");
    env.stop().await;
}

/// RFC 7162 §3.1.3: messages changed after UNCHANGEDSINCE are left alone and named in
/// `[MODIFIED ...]` (sequence numbers for STORE, UIDs for UID STORE); the others are changed
/// and reported with MODSEQ even under `.SILENT`; UNCHANGEDSINCE 0 always fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_store_reports_modified() {
    let env = Env::start().await;
    let mut c = three_messages(&env, "Box").await;
    // Expunge UID 1 so that sequence numbers and UIDs differ: seq 1..2 = UID 2..3.
    c.ok("SELECT Box").await;
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    c.ok("EXPUNGE").await;
    let fetched = c.ok("FETCH 1:* (MODSEQ)").await;
    let mark = fetched.iter().map(|l| modseq_of(l)).max().unwrap();
    // UID 3 (seq 2) changes after the mark.
    c.ok("UID STORE 3 +FLAGS.SILENT (\\Answered)").await;

    let (untagged, tagged) = c.run(&format!("STORE 1:2 (UNCHANGEDSINCE {mark}) +FLAGS.SILENT (\\Flagged)")).await;
    assert!(tagged.contains(" OK [MODIFIED 2] "), "{untagged:?} {tagged}");
    assert_eq!(untagged.len(), 1, "{untagged:?}");
    assert!(untagged[0].starts_with("* 1 FETCH (UID 2 MODSEQ ("), "{untagged:?}");
    assert!(modseq_of(&untagged[0]) > mark, "{untagged:?}");
    let flags = c.ok("FETCH 1:2 (FLAGS)").await;
    assert!(flags[0].contains("\\Flagged") && !flags[1].contains("\\Flagged"), "{flags:?}");

    let tagged = c.tagged(&format!("UID STORE 2:3 (UNCHANGEDSINCE {mark}) +FLAGS (\\Draft)")).await;
    assert!(tagged.contains(" OK [MODIFIED 2:3] "), "UIDs for UID STORE: {tagged}");

    let (untagged, tagged) = c.run("STORE 1:2 (UNCHANGEDSINCE 0) FLAGS (\\Seen)").await;
    assert!(tagged.contains(" OK [MODIFIED 1:2] "), "{tagged}");
    assert!(untagged.is_empty(), "{untagged:?}");
    let flags = c.ok("FETCH 1:2 (FLAGS)").await;
    assert!(flags.iter().all(|l| !l.contains("\\Seen")), "nothing stored: {flags:?}");

    // A large enough UNCHANGEDSINCE changes everything and reports no MODIFIED.
    let tagged = c.tagged("STORE 1:2 (UNCHANGEDSINCE 1000000) +FLAGS (\\Seen)").await;
    assert!(tagged.contains(" OK ") && !tagged.contains("MODIFIED"), "{tagged}");
    env.stop().await;
}

/// RFC 7162 Example 11: a conditional STORE over a message another session expunged (still in
/// this client's view, RFC 3501 §7.4.1) and one that fails the test answers NO [MODIFIED].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_store_over_expunged_message_is_no_modified() {
    let env = Env::start().await;
    let mut a = three_messages(&env, "Box").await;
    a.ok("SELECT Box (CONDSTORE)").await;
    let mark = highest_modseq(&a.ok("STATUS Box (HIGHESTMODSEQ)").await).unwrap();
    let mut b = env.login().await;
    b.ok("SELECT Box").await;
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    b.ok("STORE 2 +FLAGS.SILENT (\\Flagged)").await; // UID 3

    let (untagged, tagged) = a.run(&format!("STORE 1:3 (UNCHANGEDSINCE {mark}) +FLAGS (\\Seen)")).await;
    assert!(tagged.contains(" NO [MODIFIED 3] "), "{untagged:?} {tagged}");
    assert!(untagged.iter().any(|l| l.starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (")), "{untagged:?}");
    assert!(!untagged.iter().any(|l| l.contains("EXPUNGE")), "not during STORE: {untagged:?}");
    env.stop().await;
}

/// RFC 7162 §3.1: once a session enabled CONDSTORE, the FETCHes it gets for other sessions'
/// flag changes carry MODSEQ; a session that did not enable it gets them without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_fetch_carries_modseq_after_enabling() {
    let env = Env::start().await;
    let mut writer = three_messages(&env, "Box").await;
    writer.ok("SELECT Box").await;
    let mut aware = env.login().await;
    aware.ok("ENABLE CONDSTORE").await;
    aware.ok("SELECT Box").await;
    let mut plain = env.login().await;
    plain.ok("SELECT Box").await;

    let stored = writer.ok("STORE 3 +FLAGS (\\Flagged)").await;
    assert!(!stored[0].contains("MODSEQ"), "the writer never enabled CONDSTORE: {stored:?}");
    let seen = aware.ok("NOOP").await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("* 3 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ ("), "{seen:?}");
    let highest = highest_modseq(&aware.ok("STATUS Box (HIGHESTMODSEQ)").await).unwrap();
    assert_eq!(modseq_of(&seen[0]), highest);
    let seen = plain.ok("NOOP").await;
    assert_eq!(seen, vec!["* 3 FETCH (UID 3 FLAGS (\\Flagged))".to_owned()]);
    env.stop().await;
}

/// RFC 7162 §3.1.5, §3.1.6: SEARCH MODSEQ finds messages changed at or after a mod-sequence and
/// ends a non-empty result with `(MODSEQ n)`, the highest of the matches; other searches and
/// empty results do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_modseq() {
    let env = Env::start().await;
    let mut c = three_messages(&env, "Box").await;
    c.ok("SELECT Box").await;
    let stored = c.ok("STORE 2 +FLAGS (\\Seen)").await;
    assert!(!stored[0].contains("MODSEQ"), "not enabled yet: {stored:?}");
    let stored = c.ok("STORE 3 +FLAGS (\\Seen)").await;
    assert!(!stored[0].contains("MODSEQ"), "{stored:?}");
    let modseqs: Vec<u64> = c.ok("FETCH 1:* (MODSEQ)").await.iter().map(|l| modseq_of(l)).collect();
    assert!(modseqs[0] < modseqs[1] && modseqs[1] < modseqs[2], "{modseqs:?}");

    let found = c.ok(&format!("SEARCH MODSEQ {}", modseqs[1])).await;
    assert_eq!(found, vec![format!("* SEARCH 2 3 (MODSEQ {})", modseqs[2])]);
    let found = c.ok(&format!("UID SEARCH NOT MODSEQ {} MODSEQ \"/flags/\\\\seen\" all 1", modseqs[2])).await;
    assert_eq!(found, vec![format!("* SEARCH 1 2 (MODSEQ {})", modseqs[1])]);
    assert_eq!(c.ok(&format!("SEARCH MODSEQ {}", modseqs[2] + 1)).await, vec!["* SEARCH".to_owned()]);
    assert_eq!(c.ok("SEARCH SEEN").await, vec!["* SEARCH 2 3".to_owned()]);
    env.stop().await;
}
