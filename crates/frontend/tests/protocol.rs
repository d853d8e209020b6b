//! Hostile and broken clients: every failure is answered and the server keeps serving.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use common::{Env, PASSWORD, USER};
use mailraft_frontend::TlsMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_other_clients_keep_working() {
    let env = Env::start_with(
        |c| {
            c.max_line_bytes = 1024;
            c.max_literal_bytes = 4096;
            c.max_auth_failures = 2;
        },
        TlsMode::Plain { starttls: None },
    )
    .await;
    let mut good = env.login().await;
    let mut bad = env.client().await;

    // Garbage without a tag.
    bad.send(b"\x00\x01\x02 garbage\r\n").await;
    assert_eq!(bad.line().await, "* BAD invalid command: missing or invalid tag");
    // Unknown command.
    assert_eq!(bad.tagged("FROBNICATE").await, "t1 BAD unknown command");
    // Known command, bad arguments.
    assert_eq!(bad.tagged("SELECT").await, "t2 BAD syntax error in SELECT arguments");
    // Wrong state.
    assert_eq!(bad.tagged("SELECT INBOX").await, "t3 BAD log in first");
    assert_eq!(bad.tagged("FETCH 1 FLAGS").await, "t4 BAD log in first");
    // Over-long line, then the connection continues.
    let mut long = b"x1 NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    long.extend_from_slice(b"\r\n");
    bad.send(&long).await;
    assert_eq!(bad.line().await, "x1 BAD command line too long");
    // Huge synchronizing literal: refused before the continuation.
    bad.send(b"x2 LOGIN {999999}\r\n").await;
    assert_eq!(bad.line().await, "x2 NO [TOOBIG] literal too big");
    assert_eq!(bad.tagged("NOOP").await, "t5 OK NOOP completed");

    good.ok("NOOP").await;

    // Wrong password: NO [AUTHENTICATIONFAILED], then BYE after max_auth_failures.
    let wrong = bad.tagged(&format!("LOGIN {USER} wrong")).await;
    assert_eq!(wrong, "t6 NO [AUTHENTICATIONFAILED] authentication failed");
    let wrong = bad.tagged(&format!("LOGIN {USER} wrong")).await;
    assert!(wrong.starts_with("t7 NO [AUTHENTICATIONFAILED]"), "{wrong}");
    assert_eq!(bad.line().await, "* BYE too many authentication failures");
    assert!(bad.line().await.ends_with("<EOF>"));

    good.ok("NOOP").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_nonsync_literal_closes_the_connection() {
    let env = Env::start_with(|c| c.max_literal_bytes = 100, TlsMode::Plain { starttls: None }).await;
    let mut c = env.login().await;
    c.send(b"a1 APPEND INBOX {5000+}\r\n").await;
    assert_eq!(c.line().await, "a1 BAD [TOOBIG] literal too big");
    assert_eq!(c.line().await, "* BYE literal too big, closing");
    let mut other = env.login().await;
    other.ok("NOOP").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literals_login_sasl_ir_and_capabilities() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let caps = c.ok("CAPABILITY").await;
    // Before login LITERAL- (RFC 7888 §5), after it LITERAL+.
    assert!(caps[0].contains("AUTH=PLAIN") && caps[0].contains("LITERAL-") && caps[0].contains("IDLE"), "{caps:?}");
    assert!(!caps[0].contains("LOGINDISABLED"), "{caps:?}");

    // AUTHENTICATE PLAIN with SASL-IR.
    use base64::Engine;
    let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    let (_, tagged) = c.run(&format!("AUTHENTICATE PLAIN {ir}")).await;
    assert!(tagged.contains("OK [CAPABILITY IMAP4REV1") && tagged.contains("UIDPLUS"), "{tagged}");
    assert!(!tagged.contains("AUTH=PLAIN"), "{tagged}");
    assert!(c.tagged("LOGIN a b").await.contains("BAD already authenticated"));

    // AUTHENTICATE with a continuation, and LOGIN with a non-synchronizing literal.
    let mut d = env.client().await;
    d.send(b"a1 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(d.line().await, "+ ");
    d.send(format!("{ir}\r\n").as_bytes()).await;
    assert!(d.line().await.starts_with("a1 OK"));

    let mut e = env.client().await;
    e.send(format!("a1 LOGIN {{{}+}}\r\n{USER} \"{PASSWORD}\"\r\n", USER.len()).as_bytes()).await;
    assert!(e.line().await.starts_with("a1 OK"));

    let mut f = env.client().await;
    f.send(b"a1 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(f.line().await, "+ ");
    f.send(b"*\r\n").await;
    assert_eq!(f.line().await, "a1 BAD authentication cancelled");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_login_disabled_without_tls() {
    let env = Env::start_with(|c| c.allow_plaintext_auth = false, TlsMode::Plain { starttls: None }).await;
    let mut c = env.client().await;
    let caps = c.ok("CAPABILITY").await;
    assert!(caps[0].contains("LOGINDISABLED") && !caps[0].contains("AUTH=PLAIN"), "{caps:?}");
    let tagged = c.tagged(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(tagged.contains("NO [PRIVACYREQUIRED]"), "{tagged}");
    assert!(c.tagged("STARTTLS").await.contains("BAD"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_preauth_timeout_and_shutdown() {
    let mut env = Env::start_with(
        |c| {
            c.max_connections = 2;
            c.preauth_timeout = Duration::from_millis(500);
        },
        TlsMode::Plain { starttls: None },
    )
    .await;
    let mut first = env.login().await;
    let mut second = env.client().await;
    // The third connection is refused.
    let stream = tokio::net::TcpStream::connect(env.imap).await.unwrap();
    let mut third = common::Client::new(stream);
    assert_eq!(third.line().await, "* BYE too many connections, try again later");

    // The unauthenticated one is logged out after the preauth timeout.
    assert_eq!(second.line().await, "* BYE too long without logging in");

    // Shutdown says goodbye to the rest.
    first.ok("NOOP").await;
    env.shutdown_frontend().await;
    assert_eq!(first.line().await, "* BYE server shutting down");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_first_endpoint_fails_over_to_the_next() {
    let env = Env::start_with(
        |c| c.storage_endpoints.insert(0, "127.0.0.1:1".to_owned()),
        TlsMode::Plain { starttls: None },
    )
    .await;
    let mut c = env.login().await;
    c.ok("SELECT INBOX").await;
    env.stop().await;
}
