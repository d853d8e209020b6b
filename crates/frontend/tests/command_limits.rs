//! Per-command and per-mailbox bounds (not the pre-login ones) over real sockets against a real
//! storage node: the keyword cap answered `NO [LIMIT]` (RFC 5530 §3) and reflected in
//! PERMANENTFLAGS, and STORE / EXPUNGE split into bounded storage calls with the same IMAP result
//! as one call.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use common::{Env, message};
use mailraft_frontend::TlsMode;
use mailraft_frontend::limits::MAX_MAILBOX_KEYWORDS;

/// Counts the storage node's `Store` and `Expunge` RPCs (`mailraft_grpc_requests_total`), to
/// see that a command was split. The recorder is process-wide: nextest runs each test alone.
#[derive(Default)]
struct StorageCalls {
    store: Arc<AtomicU64>,
    expunge: Arc<AtomicU64>,
}

impl StorageCalls {
    fn get() -> &'static StorageCalls {
        static CALLS: OnceLock<&'static StorageCalls> = OnceLock::new();
        CALLS.get_or_init(|| {
            let calls: &'static StorageCalls = Box::leak(Box::default());
            metrics::set_global_recorder(calls).expect("no other recorder in this test binary");
            calls
        })
    }

    fn store(&self) -> u64 {
        self.store.load(Ordering::SeqCst)
    }

    fn expunge(&self) -> u64 {
        self.expunge.load(Ordering::SeqCst)
    }
}

impl metrics::Recorder for &'static StorageCalls {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() != "mailraft_grpc_requests_total" {
            return metrics::Counter::noop();
        }
        match key.labels().find(|l| l.key() == "method").map(|l| l.value()) {
            Some("Store") => metrics::Counter::from_arc(self.store.clone()),
            Some("Expunge") => metrics::Counter::from_arc(self.expunge.clone()),
            _ => metrics::Counter::noop(),
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_refuses_new_keywords_with_limit() {
    let env = Env::start().await;
    let mut c = env.login().await;
    assert!(c.append("INBOX", "", &message("one", "x")).await.contains("OK"));
    let select = c.ok("SELECT INBOX").await;
    assert!(select.iter().any(|l| l.starts_with("* OK [PERMANENTFLAGS (") && l.contains("\\*)")), "{select:?}");

    let all: Vec<String> = (0..MAX_MAILBOX_KEYWORDS).map(|i| format!("k{i}")).collect();
    c.ok(&format!("STORE 1 +FLAGS.SILENT ({})", all.join(" "))).await;
    let refused = c.tagged("STORE 1 +FLAGS (OneMore)").await;
    assert!(refused.contains("NO [LIMIT]"), "{refused}");
    let refused = c.append("INBOX", "Another", &message("two", "y")).await;
    assert!(refused.contains("NO [LIMIT]"), "{refused}");
    // Known keywords, in any case, still work, spelled as the mailbox first saw them (feature
    // level 2 stores a keyword as its index in the mailbox's list).
    let stored = c.ok("STORE 1 FLAGS (K7 \\Seen)").await;
    assert!(stored.iter().any(|l| l.contains("k7") && !l.contains("K7") && l.contains("\\Seen")), "{stored:?}");

    let select = c.ok("SELECT INBOX").await;
    let permanent = select.iter().find(|l| l.starts_with("* OK [PERMANENTFLAGS (")).unwrap();
    assert!(!permanent.contains("\\*"), "a full mailbox must not offer new keywords: {permanent}");
    assert!(permanent.contains("k255") && !permanent.contains("OneMore"), "{permanent}");
    c.ok("LOGOUT").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_store_and_expunge_act_like_one_command() {
    let calls = StorageCalls::get();
    let env = Env::start_with(|c| c.write_chunk_messages = 3, TlsMode::Plain { starttls: None }).await;
    let mut c = env.login().await;
    c.ok("CREATE Big").await;
    for i in 0..10 {
        assert!(c.append("Big", "", &message(&format!("m{i}"), "x")).await.contains("OK"));
    }
    c.ok("SELECT Big").await;

    // Four storage calls, one answer per message, in sequence order.
    let before = calls.store();
    let stored = c.ok("STORE 1:10 +FLAGS (\\Deleted)").await;
    assert_eq!(calls.store() - before, 4, "10 messages in calls of at most 3");
    assert_eq!(stored.len(), 10, "{stored:?}");
    for (i, line) in stored.iter().enumerate() {
        assert!(line.starts_with(&format!("* {} FETCH", i + 1)) && line.contains("\\Deleted"), "{stored:?}");
    }
    let search = c.ok("SEARCH DELETED").await;
    assert_eq!(search, vec!["* SEARCH 1 2 3 4 5 6 7 8 9 10".to_owned()]);

    // A message this session has not seen yet: EXPUNGE must remove it too (RFC 3501 §6.4.3
    // removes every \Deleted message), so the split covers UIDs past the known ones.
    let mut other = env.login().await;
    assert!(other.append("Big", "\\Deleted", &message("late", "z")).await.contains("OK"));

    let before = calls.expunge();
    let expunged = c.ok("EXPUNGE").await;
    assert!(calls.expunge() - before >= 4, "11 messages in calls of at most 3");
    let expunges: Vec<&String> = expunged.iter().filter(|l| l.ends_with(" EXPUNGE")).collect();
    assert_eq!(expunges.len(), 10, "{expunged:?}");
    let status = other.ok("STATUS Big (MESSAGES)").await;
    assert!(status[0].contains("MESSAGES 0"), "{status:?}");

    // UID EXPUNGE splits the same way and leaves messages outside its set alone.
    for i in 0..7 {
        assert!(c.append("Big", "\\Deleted", &message(&format!("n{i}"), "x")).await.contains("OK"));
    }
    c.ok("NOOP").await;
    let expunged = c.ok("UID EXPUNGE 1:16").await;
    assert_eq!(expunged.iter().filter(|l| l.ends_with(" EXPUNGE")).count(), 5, "{expunged:?}");
    let status = other.ok("STATUS Big (MESSAGES)").await;
    assert!(status[0].contains("MESSAGES 2"), "{status:?}");
    c.ok("LOGOUT").await;
    env.stop().await;
}
