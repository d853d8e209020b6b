//! End-to-end mail flows over real sockets against a real storage node.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use common::{Env, message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_create_append_select_fetch_store_search_expunge() {
    let env = Env::start().await;
    let mut c = env.login().await;

    c.ok("CREATE Work").await;
    assert!(c.tagged("CREATE Work").await.contains("NO [ALREADYEXISTS]"));
    let list = c.ok("LIST \"\" \"*\"").await;
    assert!(list.iter().any(|l| l.contains("\"/\" INBOX")), "{list:?}");
    assert!(list.iter().any(|l| l.ends_with("\"/\" Work") && l.contains("\\HasNoChildren")), "{list:?}");

    let appended = c.append("Work", "\\Flagged", &message("one", "first body")).await;
    assert!(appended.contains("OK [APPENDUID "), "{appended}");
    let appended = c.append("Work", "", &message("two", "second body")).await;
    assert!(appended.contains("OK [APPENDUID "), "{appended}");

    let status = c.ok("STATUS Work (MESSAGES UIDNEXT UNSEEN RECENT)").await;
    assert!(status[0].contains("MESSAGES 2") && status[0].contains("UNSEEN 2"), "{status:?}");

    let select = c.ok("SELECT Work").await;
    assert!(select.contains(&"* 2 EXISTS".to_owned()), "{select:?}");
    assert!(select.contains(&"* 0 RECENT".to_owned()), "{select:?}");
    assert!(select.iter().any(|l| l.starts_with("* OK [UIDVALIDITY ")), "{select:?}");
    assert!(select.iter().any(|l| l.starts_with("* OK [UIDNEXT 3]")), "{select:?}");
    assert!(select.iter().any(|l| l.starts_with("* OK [UNSEEN 1]")), "{select:?}");
    assert!(select.iter().any(|l| l.starts_with("* OK [PERMANENTFLAGS (")), "{select:?}");

    let fetch = c.ok("FETCH 1:2 (UID FLAGS ENVELOPE)").await;
    assert_eq!(fetch.len(), 2, "{fetch:?}");
    assert!(fetch[0].contains("\\Flagged") && fetch[0].contains("\"one\""), "{fetch:?}");

    // BODY[] without PEEK sets \Seen and reports the new flags (RFC 3501 §6.4.5).
    let fetch = c.ok("FETCH 2 (BODY[])").await;
    assert!(fetch[0].contains("second body"), "{fetch:?}");
    assert!(fetch[0].contains("\\Seen"), "{fetch:?}");

    let stored = c.ok("STORE 1 +FLAGS (\\Deleted)").await;
    assert!(stored[0].starts_with("* 1 FETCH") && stored[0].contains("\\Deleted"), "{stored:?}");
    assert!(c.ok("STORE 2 +FLAGS.SILENT (\\Answered)").await.is_empty());

    let search = c.ok("SEARCH DELETED").await;
    assert_eq!(search, vec!["* SEARCH 1".to_owned()]);
    let search = c.ok("UID SEARCH SUBJECT two").await;
    assert_eq!(search, vec!["* SEARCH 2".to_owned()]);

    let expunged = c.ok("EXPUNGE").await;
    assert_eq!(expunged, vec!["* 1 EXPUNGE".to_owned()]);
    let fetch = c.ok("FETCH 1 (UID)").await;
    assert_eq!(fetch, vec!["* 1 FETCH (UID 2)".to_owned()]);
    assert!(c.tagged("FETCH 5 (UID)").await.contains("BAD"));

    c.ok("LOGOUT").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_move_and_examine() {
    let env = Env::start().await;
    let mut c = env.login().await;
    c.ok("CREATE Archive").await;
    for i in 0..3 {
        assert!(c.append("INBOX", "", &message(&format!("m{i}"), "hello")).await.contains("OK"));
    }
    c.ok("SELECT INBOX").await;
    let (_, copied) = c.run("COPY 1:2 Archive").await;
    assert!(copied.contains("OK [COPYUID "), "{copied}");
    assert!(c.tagged("COPY 1 Nowhere").await.contains("NO [TRYCREATE]"));

    let (moved, tagged) = c.run("UID MOVE 1 Archive").await;
    assert!(tagged.contains("OK"), "{tagged}");
    assert!(moved[0].starts_with("* OK [COPYUID "), "{moved:?}");
    assert_eq!(moved[1], "* 1 EXPUNGE", "{moved:?}");

    let status = c.ok("STATUS Archive (MESSAGES)").await;
    assert!(status[0].contains("MESSAGES 3"), "{status:?}");

    // EXAMINE: read-only, FETCH BODY[] does not set \Seen, STORE is refused.
    let examine = c.run("EXAMINE Archive").await;
    assert!(examine.1.contains("OK [READ-ONLY]"), "{examine:?}");
    let fetch = c.ok("FETCH 1 (BODY[] FLAGS)").await;
    assert!(!fetch[0].contains("\\Seen"), "{fetch:?}");
    assert!(c.tagged("STORE 1 +FLAGS (\\Seen)").await.contains("NO [READ-ONLY]"));
    assert!(c.tagged("EXPUNGE").await.contains("NO [READ-ONLY]"));
    c.ok("UNSELECT").await;
    assert!(c.tagged("FETCH 1 (UID)").await.contains("BAD"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_from_another_session_are_reported_but_expunge_waits_outside_fetch() {
    let env = Env::start().await;
    let mut a = env.login().await;
    let mut b = env.login().await;
    for i in 0..2 {
        assert!(a.append("INBOX", "", &message(&format!("m{i}"), "x")).await.contains("OK"));
    }
    a.ok("SELECT INBOX").await;
    b.ok("SELECT INBOX").await;

    // B deletes message 1 and adds one.
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    assert!(b.append("INBOX", "", &message("m2", "x")).await.contains("OK"));

    // During FETCH, A hears about the new message but not the expunge (RFC 3501 §7.4.1).
    let fetch = a.ok("FETCH 1 (UID)").await;
    assert!(fetch.contains(&"* 3 EXISTS".to_owned()), "{fetch:?}");
    assert!(!fetch.iter().any(|l| l.ends_with("EXPUNGE")), "{fetch:?}");
    // NOOP may announce it.
    let noop = a.ok("NOOP").await;
    assert_eq!(noop, vec!["* 1 EXPUNGE".to_owned()]);
    let fetch = a.ok("FETCH 1:* (UID)").await;
    assert_eq!(fetch.len(), 2, "{fetch:?}");

    // Flag changes by B show up as FETCH FLAGS.
    b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)").await;
    let noop = a.ok("NOOP").await;
    assert!(noop.iter().any(|l| l.starts_with("* 1 FETCH (UID 2 FLAGS (\\Flagged")), "{noop:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_appends_from_another_connection() {
    let env = Env::start_with(
        |c| c.idle_keepalive = Duration::from_millis(300),
        mailraft_frontend::TlsMode::Plain { starttls: None },
    )
    .await;
    let mut idler = env.login().await;
    let mut writer = env.login().await;
    idler.ok("SELECT INBOX").await;
    idler.send(b"i1 IDLE\r\n").await;
    assert_eq!(idler.line().await, "+ idling");

    assert!(writer.append("INBOX", "", &message("pushed", "x")).await.contains("OK"));
    // Wait for the EXISTS (keepalives may come first).
    loop {
        let line = idler.line().await;
        if line == "* 1 EXISTS" {
            break;
        }
        assert_eq!(line, "* OK still here");
    }
    // A keepalive arrives while idle.
    loop {
        if idler.line().await == "* OK still here" {
            break;
        }
    }
    idler.send(b"DONE\r\n").await;
    let (_, done) = idler.until_tagged("i1").await;
    assert_eq!(done, "i1 OK IDLE terminated");
    idler.ok("NOOP").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_lsub_rename_delete_subscribe() {
    let env = Env::start().await;
    let mut c = env.login().await;
    c.ok("CREATE a/b/c").await;
    c.ok("CREATE &AOk-t&AOk-").await; // "été" in modified UTF-7
    let list = c.ok("LIST \"\" %").await;
    assert!(list.iter().any(|l| l.ends_with(" a") && l.contains("\\HasChildren")), "{list:?}");
    assert!(list.iter().any(|l| l.ends_with(" &AOk-t&AOk-")), "{list:?}");
    assert!(!list.iter().any(|l| l.contains("a/b")), "{list:?}");
    let list = c.ok("LIST \"\" \"\"").await;
    assert_eq!(list, vec!["* LIST (\\Noselect) \"/\" \"\"".to_owned()]);
    let list = c.ok("LIST a/ *").await;
    assert!(list.iter().any(|l| l.ends_with(" a/b/c") && l.contains("\\HasNoChildren")), "{list:?}");

    c.ok("SUBSCRIBE a/b/c").await;
    let lsub = c.ok("LSUB \"\" *").await;
    assert_eq!(lsub, vec!["* LSUB () \"/\" a/b/c".to_owned()]);
    let lsub = c.ok("LSUB \"\" a/%").await;
    assert_eq!(lsub, vec!["* LSUB (\\Noselect) \"/\" a/b".to_owned()]);

    c.ok("RENAME a/b/c a/b/d").await;
    let list = c.ok("LIST \"\" a/b/*").await;
    assert!(list.iter().any(|l| l.ends_with(" a/b/d")), "{list:?}");
    c.ok("DELETE a/b/d").await;
    assert!(c.tagged("DELETE a/b/d").await.contains("NO [NONEXISTENT]"));
    assert!(c.tagged("SELECT nosuch").await.contains("NO [NONEXISTENT]"));
    env.stop().await;
}
