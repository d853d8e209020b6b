//! Keeping a logged-in session's storage token alive, and ending the session when the storage
//! tier revokes it.
//!
//! The token from `Authenticate` lives `ttl_ms` (storage config `auth.token_ttl_secs`). The
//! connection loop waits on [`due`] beside the client's socket, both while it waits for the next
//! command and during IDLE, and runs [`maintain`] when it fires:
//! - at half the token's life it exchanges the token for a fresh one (`RefreshToken`), so a
//!   session or an IDLE can stay open for days; a refresh that fails for a transient reason is
//!   retried after 1 s, doubling, until the token expires, and only then does the session end;
//! - when the watch hub delivers an account event for the session's account (a new password, a
//!   disabled account: see `watch.rs`), it refreshes at once, which the storage refuses for a
//!   revoked token.
//!
//! A refused refresh (`AUTHENTICATIONFAILED`: expired or revoked) ends the session: the loop
//! sends `* BYE` and closes. A command or an IDLE poll refused the same way does too (see
//! `connection.rs`), so a revocation whose event was lost (e.g. during a watch reconnect) still
//! ends the session at its next command, next poll, or next refresh.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::FrontendError;
use crate::session::Session;
use crate::storage::Storage;

/// First delay before a failed refresh is tried again.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest delay between refresh attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// BYE text of a session whose token the storage tier refused.
pub const REVOKED: &str = "session ended: credentials changed or expired, please log in again";
/// BYE text of a session whose token expired while the storage tier could not renew it.
pub const EXPIRED: &str = "session expired, please log in again";

/// When a session's token must be renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLifetime {
    /// When to ask for a fresh token; `None` when the storage announced no lifetime.
    refresh_at: Option<Instant>,
    /// When the token stops being accepted (a little later in truth: it was issued before we
    /// received it, so this errs on the safe side).
    expires_at: Option<Instant>,
    /// Delay before the next attempt after a failed one.
    retry: Duration,
}

impl TokenLifetime {
    /// The lifetime of a token received just now that is valid for `ttl_ms` (0: unknown, never
    /// refreshed).
    pub fn new(ttl_ms: u64) -> Self {
        Self::received_at(Instant::now(), ttl_ms)
    }

    fn received_at(now: Instant, ttl_ms: u64) -> Self {
        if ttl_ms == 0 {
            return Self { refresh_at: None, expires_at: None, retry: RETRY_FIRST };
        }
        let ttl = Duration::from_millis(ttl_ms);
        Self { refresh_at: Some(now + ttl / 2), expires_at: Some(now + ttl), retry: RETRY_FIRST }
    }

    /// When the next refresh is due, if ever.
    pub fn refresh_at(&self) -> Option<Instant> {
        self.refresh_at
    }

    /// A refresh at `now` failed transiently: `false` when the token will have expired before
    /// another attempt could succeed, otherwise schedules the next one.
    fn retry_after_failure(&mut self, now: Instant) -> bool {
        let next = now + self.retry;
        if self.expires_at.is_some_and(|expires| next >= expires) {
            return false;
        }
        self.refresh_at = Some(next);
        self.retry = (self.retry * 2).min(RETRY_MAX);
        true
    }
}

/// Resolves when [`maintain`] should run: the token's refresh is due, or the account's
/// credentials changed. Never resolves for a session that is not logged in.
pub async fn due(session: &Session) {
    let Some(user) = session.user() else {
        return std::future::pending().await;
    };
    let refresh = async {
        match user.lifetime.refresh_at() {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let revocation = async {
        match &session.revocations {
            Some(subscription) => subscription.changed().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = refresh => {}
        () = revocation => {}
    }
}

/// Renews the session's token (which also proves it was not revoked). `Err` carries the BYE
/// text when the session must end.
pub async fn maintain(storage: &Storage, session: &mut Session) -> Result<(), &'static str> {
    let Some(user) = session.user_mut() else {
        return Ok(());
    };
    match storage.refresh_token(&user.ctx).await {
        Ok(response) => {
            user.ctx.token = response.token;
            user.lifetime = TokenLifetime::new(response.ttl_ms);
            crate::metrics::token_refresh("ok");
            Ok(())
        }
        Err(FrontendError::AuthFailed(_)) => {
            crate::metrics::token_refresh("refused");
            tracing::info!(account = user.account_id, "session token refused, ending the session");
            Err(REVOKED)
        }
        Err(error) => {
            crate::metrics::token_refresh("failed");
            if user.lifetime.retry_after_failure(Instant::now()) {
                tracing::debug!(%error, "token refresh failed, will retry");
                Ok(())
            } else {
                tracing::warn!(%error, account = user.account_id, "token expired: storage could not renew it");
                Err(EXPIRED)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use mailraft_proto as proto;

    use super::*;
    use crate::session::User;
    use crate::storage::mock::{Mock, Server, Step, coded, serve};
    use crate::storage::route::RetryPolicy;
    use crate::watch::{ACCOUNT_MAILBOX, WatchHub};

    const DEADLINE: Duration = Duration::from_secs(10);

    /// A session logged in as account (1, 2) against `mock`, holding its account subscription.
    async fn logged_in(mock: Mock, ttl_ms: u64) -> (Server, Storage, Session, WatchHub) {
        let server = serve(mock).await;
        let storage = Storage::new(std::slice::from_ref(&server.addr), 1, RetryPolicy::new(DEADLINE, Duration::from_secs(1)));
        let hub = WatchHub::new();
        let mut session = Session::new("s".into(), true, false, false);
        let response = proto::AuthenticateResponse {
            token: b"token".to_vec(),
            tenant_id: 1,
            account_id: 2,
            login: "a@b".into(),
            ttl_ms,
        };
        session.login(User::authenticated(storage.context(response.token.clone(), "s"), &response));
        session.revocations = Some(hub.subscribe_account(1, 2));
        (server, storage, session, hub)
    }

    fn token(session: &Session) -> Vec<u8> {
        session.user().map(|u| u.ctx.token.clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn is_due_at_half_life_and_a_refresh_replaces_the_token() {
        let mock = Mock::default();
        mock.ttl_ms.store(60_000, Ordering::SeqCst);
        let (server, storage, mut session, _hub) = logged_in(mock, 200).await;
        tokio::time::timeout(DEADLINE, due(&session)).await.expect("due at half of 200 ms");
        assert_eq!(maintain(&storage, &mut session).await, Ok(()));
        assert_eq!(token(&session), b"token-1");
        assert_eq!(server.mock.calls("refresh_token")[0].token, b"token", "renewed with the old token");
        let refresh_at = session.user().and_then(|u| u.lifetime.refresh_at()).expect("scheduled");
        assert!(refresh_at > Instant::now() + Duration::from_secs(20), "the new lifetime (60 s) applies");
        assert!(tokio::time::timeout(Duration::from_millis(50), due(&session)).await.is_err());
    }

    #[tokio::test]
    async fn an_account_event_wakes_the_session_and_a_refused_refresh_ends_it() {
        let (server, storage, mut session, hub) = logged_in(Mock::default(), 0).await;
        assert!(tokio::time::timeout(Duration::from_millis(50), due(&session)).await.is_err(), "no TTL, no event");
        let event = proto::WatchEvent { tenant_id: 1, account_id: 2, mailbox_id: ACCOUNT_MAILBOX, ..Default::default() };
        hub.dispatch(&event);
        tokio::time::timeout(DEADLINE, due(&session)).await.expect("woken by the account event");
        server.mock.revoked.store(true, Ordering::SeqCst);
        assert_eq!(maintain(&storage, &mut session).await, Err(REVOKED));
    }

    #[tokio::test]
    async fn a_transient_failure_keeps_the_session_and_retries() {
        let mock = Mock::scripted([Step::Fail(coded("INTERNAL", None))]);
        let (server, storage, mut session, _hub) = logged_in(mock, 60_000).await;
        assert_eq!(maintain(&storage, &mut session).await, Ok(()));
        assert_eq!(token(&session), b"token", "kept the old token");
        tokio::time::timeout(DEADLINE, due(&session)).await.expect("retry due after about a second");
        assert_eq!(maintain(&storage, &mut session).await, Ok(()));
        assert_eq!(server.mock.calls("refresh_token").len(), 2);
        assert_eq!(token(&session), b"token-2");
    }

    #[test]
    fn refreshes_at_half_life_and_retries_until_expiry() {
        let now = Instant::now();
        let mut lifetime = TokenLifetime::received_at(now, 10_000);
        assert_eq!(lifetime.refresh_at(), Some(now + Duration::from_secs(5)));
        let failed_at = now + Duration::from_secs(5);
        assert!(lifetime.retry_after_failure(failed_at));
        assert_eq!(lifetime.refresh_at(), Some(failed_at + Duration::from_secs(1)));
        assert!(lifetime.retry_after_failure(failed_at));
        assert_eq!(lifetime.refresh_at(), Some(failed_at + Duration::from_secs(2)));
        // The next retry (4 s later) would come after expiry: give up.
        assert!(!lifetime.retry_after_failure(now + Duration::from_secs(7)));
    }

    #[test]
    fn no_ttl_means_no_refresh() {
        let mut lifetime = TokenLifetime::new(0);
        assert_eq!(lifetime.refresh_at(), None);
        assert!(lifetime.retry_after_failure(Instant::now()));
    }
}
