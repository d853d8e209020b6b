//! Session token lifetime, refresh, revocation and key rotation, seen from a front-end's side of
//! the Storage API: a token is checked on every call, so a refused token is refused by the node
//! itself, whatever the front-end does.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::storage_client::StorageClient;
use mailraft_server::StorageNode;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::Channel;

use common::{code_of, ctx};

const LOGIN: &str = "alice@example.test";
const PASSWORD: &str = "old password";
/// Generous bound on anything that should happen "at once".
const DEADLINE: Duration = Duration::from_secs(20);

struct Node {
    node: StorageNode,
    storage: StorageClient<Channel>,
    admin: AdminClient<Channel>,
    _dir: tempfile::TempDir,
}

/// One bootstrapped node issuing tokens valid for `ttl`, with alice@example.test.
async fn node(ttl: Duration) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = common::config(1, dir.path(), addr, true, (150, 300));
    cfg.token_ttl = ttl;
    let node = StorageNode::start(cfg, listener).await.unwrap();
    node.ensure_tenant_user("example.test", LOGIN, PASSWORD).await.unwrap();
    let ch = common::channel(addr).await;
    Node { node, storage: StorageClient::new(ch.clone()), admin: AdminClient::new(ch), _dir: dir }
}

impl Node {
    async fn login(&mut self, password: &str) -> Result<pb::AuthenticateResponse, tonic::Status> {
        let (login, password) = (LOGIN.into(), password.into());
        let req = pb::AuthenticateRequest { ctx: ctx(b""), login, password, ..Default::default() };
        self.storage.authenticate(req).await.map(|r| r.into_inner())
    }

    /// A data call with `token`: the stable code of its refusal, "" on success.
    async fn use_token(&mut self, token: &[u8]) -> String {
        match self.storage.list_mailboxes(pb::ListMailboxesRequest { ctx: ctx(token) }).await {
            Ok(_) => String::new(),
            Err(status) => code_of(&status).to_owned(),
        }
    }

    async fn refresh(&mut self, token: &[u8]) -> Result<pb::RefreshTokenResponse, tonic::Status> {
        self.storage.refresh_token(pb::RefreshTokenRequest { ctx: ctx(token) }).await.map(|r| r.into_inner())
    }

    async fn set_password(&mut self, password: &str) {
        let req = pb::SetPasswordRequest { group_id: 1, login: LOGIN.into(), password: password.into() };
        self.admin.set_password(req).await.unwrap();
    }

    async fn set_disabled(&mut self, disabled: bool) {
        let req = pb::SetUserDisabledRequest { group_id: 1, login: LOGIN.into(), disabled };
        self.admin.set_user_disabled(req).await.unwrap();
    }

    async fn rotate(&mut self, grace: Option<Duration>) -> pb::RotateSessionKeyResponse {
        let req = pb::RotateSessionKeyRequest {
            group_id: 1,
            grace_secs: grace.map(|g| g.as_secs()).unwrap_or(0),
            has_grace: grace.is_some(),
        };
        self.admin.rotate_session_key(req).await.unwrap().into_inner()
    }
}

/// Polls `token` until the node refuses it, for at most `within`; returns the refusal's code.
async fn refused_within(n: &mut Node, token: &[u8], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let code = n.use_token(token).await;
        if !code.is_empty() || Instant::now() >= deadline {
            return code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_tokens_outlive_the_ttl_and_expired_ones_cannot_be_refreshed() {
    let ttl = Duration::from_secs(1);
    let mut n = node(ttl).await;
    let first = n.login(PASSWORD).await.unwrap();
    assert_eq!(first.ttl_ms, 1_000);
    // Refresh at half-life, as a front-end does, for four TTLs: every token works.
    let started = Instant::now();
    let mut token = first.token.clone();
    let mut refreshes = 0;
    while started.elapsed() < ttl * 4 {
        tokio::time::sleep(ttl / 2).await;
        let fresh = n.refresh(&token).await.unwrap();
        assert_eq!(fresh.ttl_ms, 1_000);
        assert_ne!(fresh.token, token);
        token = fresh.token;
        assert_eq!(n.use_token(&token).await, "", "refreshed token {refreshes} works");
        refreshes += 1;
    }
    // The first token has long expired: refused, and it cannot be renewed either.
    assert_eq!(n.use_token(&first.token).await, "AUTHFAILED");
    assert_eq!(code_of(&n.refresh(&first.token).await.unwrap_err()), "AUTHFAILED");
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_revokes_every_token_and_announces_it_on_watch() {
    let mut n = node(Duration::from_secs(3600)).await;
    let a = n.login(PASSWORD).await.unwrap();
    let b = n.login(PASSWORD).await.unwrap();
    assert_eq!(n.use_token(&a.token).await, "");
    let mut watch = n.storage.watch(pb::WatchRequest { group_id: 1, heartbeat_ms: 100 }).await.unwrap().into_inner();

    n.set_password("new password").await;
    // Refused by the node itself, at once: no front-end cooperation needed.
    assert_eq!(n.use_token(&a.token).await, "AUTHFAILED");
    assert_eq!(n.use_token(&b.token).await, "AUTHFAILED");
    assert_eq!(code_of(&n.refresh(&a.token).await.unwrap_err()), "AUTHFAILED");
    assert_eq!(code_of(&n.login(PASSWORD).await.unwrap_err()), "AUTHFAILED");
    let c = n.login("new password").await.unwrap();
    assert_eq!(n.use_token(&c.token).await, "");

    // The account event that lets front-ends end the sessions without waiting for a command.
    let event = tokio::time::timeout(DEADLINE, async {
        loop {
            let e = watch.next().await.unwrap().unwrap();
            if !e.heartbeat {
                return e;
            }
        }
    })
    .await
    .expect("account event within the deadline");
    assert_eq!((event.tenant_id, event.account_id, event.mailbox_id), (c.tenant_id, c.account_id, 0));
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_refuses_tokens_and_logins_and_enabling_revives_only_logins() {
    let mut n = node(Duration::from_secs(3600)).await;
    let before = n.login(PASSWORD).await.unwrap();
    n.set_disabled(true).await;
    assert_eq!(n.use_token(&before.token).await, "AUTHFAILED");
    assert_eq!(code_of(&n.refresh(&before.token).await.unwrap_err()), "AUTHFAILED");
    assert_eq!(code_of(&n.login(PASSWORD).await.unwrap_err()), "AUTHFAILED", "right password, disabled");

    n.set_disabled(false).await;
    let after = n.login(PASSWORD).await.unwrap();
    assert_eq!(n.use_token(&after.token).await, "");
    assert_eq!(n.use_token(&before.token).await, "AUTHFAILED", "enabling does not revive old sessions");
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_tokens_through_the_grace_period_only() {
    let mut n = node(Duration::from_secs(3600)).await;
    let old = n.login(PASSWORD).await.unwrap();
    let grace = Duration::from_secs(2);
    let rotated_at = Instant::now();
    let r = n.rotate(Some(grace)).await;
    assert!(r.key_id >= 2, "{r:?}");
    // During the grace period the old token works, and refreshing moves it to the new key.
    assert_eq!(n.use_token(&old.token).await, "");
    let moved = n.refresh(&old.token).await.unwrap().token;
    assert_eq!(u32::from_be_bytes(moved[1..5].try_into().unwrap()), r.key_id, "signed with the new key");
    // After it, the old key verifies nothing; the refreshed token lives on.
    let code = refused_within(&mut n, &old.token, grace + DEADLINE).await;
    assert_eq!(code, "AUTHFAILED");
    assert!(rotated_at.elapsed() >= grace, "refused only after the grace period");
    assert_eq!(n.use_token(&moved).await, "");

    // No grace: the replaced key stops at once (a key that may have leaked).
    n.rotate(Some(Duration::ZERO)).await;
    assert_eq!(n.use_token(&moved).await, "AUTHFAILED");
    let fresh = n.login(PASSWORD).await.unwrap();
    assert_eq!(n.use_token(&fresh.token).await, "");

    // The default grace is the token TTL.
    let r = n.rotate(None).await;
    let until = r.previous_valid_until_ms - mailraft_server::shared::now_ms();
    assert!((3_590_000..=3_600_000).contains(&until), "{until}");
    assert_eq!(n.use_token(&fresh.token).await, "");
    n.node.shutdown().await;
}
