//! DELETE of a mailbox too large to remove in one replicated apply, over a real socket against a
//! real storage node: refused with `NO [LIMIT]` (RFC 5530 §3) telling the user to expunge first,
//! and allowed once the mailbox is back within the bound.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{Env, message};
use mailraft_model::limits::MAX_MESSAGES_PER_COMMAND;

/// MESSAGES of `mailbox` as STATUS reports it.
async fn messages(c: &mut common::Client<tokio::net::TcpStream>, mailbox: &str) -> usize {
    let status = c.ok(&format!("STATUS {mailbox} (MESSAGES)")).await;
    let line = status.iter().find(|l| l.starts_with("* STATUS")).unwrap();
    let n = line.split("MESSAGES ").nth(1).unwrap().trim_end_matches(')');
    n.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_a_mailbox_over_the_message_cap_is_no_limit() {
    let env = Env::start().await;
    let mut c = env.login().await;
    c.ok("CREATE Big").await;
    assert!(c.append("Big", "", &message("one", "x")).await.contains("OK"));
    c.ok("SELECT Big").await;
    // Doubling by COPY (each within the COPY bound) up to one message past the DELETE bound.
    let target = MAX_MESSAGES_PER_COMMAND + 1;
    let mut have = 1;
    while have < target {
        let n = have.min(target - have);
        c.ok(&format!("UID COPY 1:{n} Big")).await;
        have += n;
    }
    assert_eq!(messages(&mut c, "Big").await, target);
    c.ok("UNSELECT").await;

    let refused = c.tagged("DELETE Big").await;
    assert!(refused.contains("NO [LIMIT]") && refused.contains("expunge"), "{refused}");
    assert_eq!(messages(&mut c, "Big").await, target, "the refused DELETE changed nothing");

    // One message fewer and DELETE goes through.
    c.ok("SELECT Big").await;
    c.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    c.ok("EXPUNGE").await;
    c.ok("UNSELECT").await;
    c.ok("DELETE Big").await;
    let list = c.ok("LIST \"\" Big").await;
    assert!(list.is_empty(), "{list:?}");
    c.ok("LOGOUT").await;
    env.stop().await;
}
