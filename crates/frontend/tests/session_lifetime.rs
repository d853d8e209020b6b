//! Session lifetime against a real storage node: sessions (and IDLE) outlive many token TTLs
//! because the front-end refreshes their tokens, and a new password or a disabled account ends
//! every session of the account with `* BYE`, idle or not, without the client sending anything.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, Env, PASSWORD, USER, WAIT};
use mailraft_frontend::TlsMode;
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Token lifetime of the lifetime test: short, so several pass quickly.
const SHORT_TTL: Duration = Duration::from_secs(1);

async fn env(token_ttl: Duration) -> Env {
    Env::start_full(|node| node.token_ttl = token_ttl, |_| {}, TlsMode::Plain { starttls: None }).await
}

async fn admin(env: &Env) -> AdminClient<tonic::transport::Channel> {
    let addr = env.node.as_ref().unwrap().local_addr();
    AdminClient::connect(format!("http://{addr}")).await.unwrap()
}

/// Reads lines until `* BYE` arrives (the connection then closes); fails after `WAIT`.
async fn expect_bye(client: &mut Client<TcpStream>, who: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = client.line_within(left).await.unwrap_or_else(|| panic!("{who}: no BYE within {WAIT:?}"));
        assert!(!line.ends_with("<EOF>") || line.starts_with("* BYE"), "{who}: closed without BYE: {line}");
        if line.starts_with("* BYE") {
            return line;
        }
    }
}

/// Reads whatever the server sends during `period`; fails on BYE or a closed connection.
async fn quiet_for(client: &mut Client<TcpStream>, period: Duration, who: &str) {
    let until = Instant::now() + period;
    while let Some(line) = client.line_within(until.saturating_duration_since(Instant::now())).await {
        assert!(!line.starts_with("* BYE") && !line.ends_with("<EOF>"), "{who} ended: {line}");
    }
}

/// A client in IDLE, with INBOX selected or not.
async fn idling(env: &Env, select: bool) -> Client<TcpStream> {
    let mut client = env.login().await;
    if select {
        client.ok("SELECT INBOX").await;
    }
    client.send(b"i IDLE\r\n").await;
    let line = client.line().await;
    assert!(line.starts_with("+ "), "{line}");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_idle_outlive_many_token_lifetimes() {
    let env = env(SHORT_TTL).await;
    let mut sitting = env.login().await;
    sitting.ok("SELECT INBOX").await;
    let mut idle = idling(&env, true).await;
    let mut idle_unselected = idling(&env, false).await;

    // Five lifetimes pass with no client sending anything (the IDLE keepalive is 2 minutes, so
    // no poll renews anything either): only the front-end's refreshes keep the tokens valid.
    quiet_for(&mut idle, SHORT_TTL * 5, "IDLE session").await;

    // A delivery wakes the IDLE session, whose Changes call needs a valid token.
    let mut other = env.login().await;
    let tagged = other.append("INBOX", "", &common::message("hello", "still there?")).await;
    assert!(tagged.contains("OK"), "{tagged}");
    let deadline = Instant::now() + WAIT;
    loop {
        let line = idle.line_within(deadline.saturating_duration_since(Instant::now())).await.expect("EXISTS");
        assert!(!line.starts_with("* BYE"), "{line}");
        if line == "* 1 EXISTS" {
            break;
        }
    }
    idle.send(b"DONE\r\n").await;
    let (_, done) = idle.until_tagged("i").await;
    assert!(done.starts_with("i OK"), "{done}");
    idle.ok("NOOP").await;
    idle_unselected.send(b"DONE\r\n").await;
    let (_, done) = idle_unselected.until_tagged("i").await;
    assert!(done.starts_with("i OK"), "{done}");
    idle_unselected.ok("LIST \"\" \"*\"").await;
    // The session that sent nothing for all that time works too.
    let untagged = sitting.ok("NOOP").await;
    assert!(untagged.iter().any(|l| l == "* 1 EXISTS"), "{untagged:?}");
    sitting.ok("FETCH 1 (FLAGS)").await;
    env.stop().await;
}

/// Sessions of the user, each waiting in a different place: between commands, in IDLE with a
/// mailbox selected, in IDLE without one. Another user's session must survive.
struct Sessions {
    sitting: Client<TcpStream>,
    idle: Client<TcpStream>,
    idle_unselected: Client<TcpStream>,
    bystander: Client<TcpStream>,
}

async fn sessions(env: &Env) -> Sessions {
    let mut sitting = env.login().await;
    sitting.ok("SELECT INBOX").await;
    let mut bystander = env.client().await;
    bystander.ok("LOGIN bob@example.org \"bob password\"").await;
    Sessions { sitting, idle: idling(env, true).await, idle_unselected: idling(env, false).await, bystander }
}

impl Sessions {
    async fn all_get_bye(mut self) -> Client<TcpStream> {
        for (client, who) in [
            (&mut self.sitting, "session between commands"),
            (&mut self.idle, "IDLE session"),
            (&mut self.idle_unselected, "unselected IDLE session"),
        ] {
            let bye = expect_bye(client, who).await;
            assert!(bye.contains("log in again"), "{who}: {bye}");
        }
        self.bystander.ok("NOOP").await;
        self.bystander
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_ends_every_session_of_the_user() {
    let env = env(Duration::from_secs(3600)).await;
    let sessions = sessions(&env).await;
    let req = pb::SetPasswordRequest { group_id: 1, login: USER.into(), password: "new password".into() };
    admin(&env).await.set_password(req).await.unwrap();
    sessions.all_get_bye().await;

    let mut client = env.client().await;
    let refused = client.tagged(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(refused.contains("NO [AUTHENTICATIONFAILED]"), "{refused}");
    client.ok(&format!("LOGIN {USER} \"new password\"")).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_ends_its_sessions_and_refuses_logins() {
    let env = env(Duration::from_secs(3600)).await;
    let sessions = sessions(&env).await;
    let mut admin = admin(&env).await;
    let disable = |disabled| pb::SetUserDisabledRequest { group_id: 1, login: USER.into(), disabled };
    admin.set_user_disabled(disable(true)).await.unwrap();
    sessions.all_get_bye().await;

    let mut client = env.client().await;
    let refused = client.tagged(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(refused.contains("NO [AUTHENTICATIONFAILED]"), "{refused}");
    admin.set_user_disabled(disable(false)).await.unwrap();
    client.ok(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    env.stop().await;
}
