//! Findings of real clients and a third-party compliance run (issue 9), over real sockets
//! against a real storage node: each test is one finding, answered the way the RFC reads.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{Env, message};

/// The special-use attributes of RFC 6154 §2.
const SPECIAL_USES: [&str; 7] = ["\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"];

/// RFC 3501 §9: a mailbox is any astring, so a name in raw UTF-8 (mbsync) or one that is not
/// valid modified UTF-7 (RFC 3501 §5.1.3) is a well-formed command naming a mailbox that cannot
/// exist: `NO`, never `BAD` (which makes mbsync abort its whole run). A LIST pattern like that
/// matches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_names_that_cannot_exist_get_no_not_bad() {
    let env = Env::start().await;
    let mut c = env.login().await;
    let odd = "!#$&'+,-.0123456789:;<=>?@^_`|[}";

    let created = c.tagged("CREATE \"Entw\u{fc}rfe\"").await;
    assert!(created.contains(" NO [CANNOT] "), "{created}");
    let created = c.tagged(&format!("CREATE {odd}")).await;
    assert!(created.contains(" NO [CANNOT] "), "{created}");
    for command in [format!("SELECT {odd}"), "SELECT \"Entw\u{fc}rfe\"".to_owned(), format!("STATUS {odd} (MESSAGES)")] {
        let tagged = c.tagged(&command).await;
        assert!(tagged.contains(" NO [NONEXISTENT] "), "{command}: {tagged}");
    }
    let renamed = c.tagged("RENAME INBOX \"Entw\u{fc}rfe\"").await;
    assert!(renamed.contains(" NO [CANNOT] "), "{renamed}");
    assert!(c.ok(&format!("LIST \"\" {odd}")).await.is_empty());
    assert!(c.ok("LIST \"\" \"Entw\u{fc}rfe\"").await.is_empty());
    assert!(c.ok("LSUB \"\" \"Entw\u{fc}rfe\"").await.is_empty());
    // The modified UTF-7 spelling of the same name works.
    c.ok("CREATE Entw&APw-rfe").await;
    c.ok("SELECT Entw&APw-rfe").await;
    env.stop().await;
}

/// RFC 6154 §5.1 with the RFC 5258 LIST-EXTENDED syntax clients use it with: the selection
/// option lists only special-use mailboxes, the return option the usual listing with the
/// attributes. Unimplemented options stay `BAD` (RFC 5258 §3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_special_use_selection_and_return_options() {
    let env = Env::start().await;
    let mut c = env.login().await;
    c.ok("CREATE Work").await;

    let listed = c.ok("LIST \"\" \"*\" RETURN (SPECIAL-USE)").await;
    assert!(listed.iter().any(|l| l.ends_with(" INBOX")), "{listed:?}");
    assert!(listed.iter().any(|l| l.ends_with(" Work")), "{listed:?}");

    let selected = c.ok("LIST (SPECIAL-USE) \"\" \"*\"").await;
    for line in &selected {
        assert!(SPECIAL_USES.iter().any(|u| line.contains(u)), "{selected:?}");
        assert!(!line.ends_with(" INBOX") && !line.ends_with(" Work"), "{selected:?}");
    }
    // Every special-use mailbox of the plain listing, and only those.
    let special = listed.iter().filter(|l| SPECIAL_USES.iter().any(|u| l.contains(u))).count();
    assert_eq!(selected.len(), special, "{listed:?} {selected:?}");

    c.ok("SUBSCRIBE Work").await;
    let subscribed = c.ok("list (subscribed) \"\" \"*\" return (children)").await;
    assert!(subscribed.iter().any(|l| l.ends_with(" Work") && l.contains("\\Subscribed")), "{subscribed:?}");
    assert!(!subscribed.iter().any(|l| l.ends_with(" INBOX")), "{subscribed:?}");

    let refused = c.tagged("LIST (RECURSIVEMATCH) \"\" \"*\"").await;
    assert!(refused.contains(" BAD "), "{refused}");
    env.stop().await;
}

/// RFC 3501 §7.2.6: a keyword new to the mailbox is announced with FLAGS (and PERMANENTFLAGS)
/// before any FETCH shows it, to the session that set it and to every other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keywords_are_announced_before_fetch_shows_them() {
    let env = Env::start().await;
    let mut a = env.login().await;
    let mut b = env.login().await;
    assert!(a.append("INBOX", "", &message("one", "x")).await.contains("OK"));
    let select = a.ok("SELECT INBOX").await;
    assert!(!select.iter().any(|l| l.contains("$Label1")), "{select:?}");
    b.ok("SELECT INBOX").await;

    let stored = a.ok("STORE 1 +FLAGS ($Label1)").await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored[0].starts_with("* FLAGS (") && stored[0].contains("$Label1"), "{stored:?}");
    assert!(stored[1].starts_with("* OK [PERMANENTFLAGS (") && stored[1].contains("$Label1 \\*)"), "{stored:?}");
    assert!(stored[2].starts_with("* 1 FETCH (") && stored[2].contains("$Label1"), "{stored:?}");
    // Known now: no second announcement.
    assert_eq!(a.ok("STORE 1 -FLAGS ($Label1)").await.len(), 1);
    assert_eq!(a.ok("STORE 1 +FLAGS ($label1)").await.len(), 1);

    // The other session learns it from its change poll, before the FETCH carrying it (keywords
    // are case-insensitive: the message keeps the last spelling).
    let noop: Vec<String> = b.ok("NOOP").await.iter().map(|l| l.to_lowercase()).collect();
    let flags = noop.iter().position(|l| l.starts_with("* flags (") && l.contains("$label1"));
    let fetch = noop.iter().position(|l| l.starts_with("* 1 fetch") && l.contains("$label1"));
    assert!(flags.is_some() && flags < fetch, "{noop:?}");

    // A FETCH that sees another session's new keyword before any poll announces it first.
    a.ok("STORE 1 +FLAGS.SILENT ($Label2)").await;
    let fetched = b.ok("FETCH 1 (FLAGS)").await;
    assert!(fetched[0].starts_with("* FLAGS (") && fetched[0].contains("$Label2"), "{fetched:?}");
    assert!(fetched[1].starts_with("* OK [PERMANENTFLAGS ("), "{fetched:?}");
    assert!(fetched[2].starts_with("* 1 FETCH (FLAGS (") && fetched[2].contains("$Label2"), "{fetched:?}");

    // APPEND of a message with a new keyword: FLAGS before the EXISTS that brings it.
    let appended = a.append("INBOX", "$Label3", &message("two", "y")).await;
    assert!(appended.contains("OK"), "{appended}");
    let noop = b.ok("NOOP").await;
    let flags = noop.iter().position(|l| l.starts_with("* FLAGS (") && l.contains("$Label3"));
    let exists = noop.iter().position(|l| l == "* 2 EXISTS");
    assert!(flags.is_some() && flags < exists, "{noop:?}");
    env.stop().await;
}

/// RFC 3501 §7.4.2: one FETCH response names each data item once, even when the command
/// names it twice (the duplicated FLAGS seen under concurrent STORE load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fetch_item_appears_once() {
    let env = Env::start().await;
    let mut c = env.login().await;
    assert!(c.append("INBOX", "\\Flagged", &message("one", "x")).await.contains("OK"));
    c.ok("SELECT INBOX").await;
    let fetched = c.ok("FETCH 1 (FLAGS UID FLAGS)").await;
    assert_eq!(fetched, vec!["* 1 FETCH (FLAGS (\\Flagged) UID 1)".to_owned()]);
    // BODY[] sets \Seen, so FLAGS would be added: it is already asked for.
    let fetched = c.ok("UID FETCH 1 (FLAGS BODY[HEADER.FIELDS (SUBJECT)] UID)").await;
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(fetched[0].matches("FLAGS (").count(), 1, "{fetched:?}");
    assert_eq!(fetched[0].matches("UID ").count(), 1, "{fetched:?}");
    env.stop().await;
}

/// RFC 5322 §3.4.1 allows comments and folding whitespace inside an addr-spec; SEARCH FROM
/// (RFC 3501 §6.4.4, on the envelope's FROM) finds the address they surround.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_from_sees_through_comments_in_the_address() {
    let env = Env::start().await;
    let mut c = env.login().await;
    let raw = "From: <user-from (comment)@ (comment) domain.org>\r\nTo: Alice <alice@example.org>\r\n\
               Subject: cfws\r\n\r\nbody\r\n";
    assert!(c.append("INBOX", "", raw).await.contains("OK"));
    assert!(c.append("INBOX", "", &message("other", "x")).await.contains("OK"));
    c.ok("SELECT INBOX").await;
    assert_eq!(c.ok("SEARCH FROM user-from@domain.org").await, vec!["* SEARCH 1".to_owned()]);
    assert_eq!(c.ok("SEARCH FROM \"USER-FROM@DOMAIN\"").await, vec!["* SEARCH 1".to_owned()]);
    assert_eq!(c.ok("SEARCH FROM comment").await, vec!["* SEARCH 1".to_owned()]);
    assert_eq!(c.ok("SEARCH FROM bob@example.org").await, vec!["* SEARCH 2".to_owned()]);
    env.stop().await;
}
