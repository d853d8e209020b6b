//! Authenticate: login + password → session token.
//!
//! The account is read linearizably (a password change is effective at once), the password is
//! checked with argon2 on the blocking pool, and on success a token valid for the configured TTL
//! is signed with the replicated session key (`token.rs`). Every failure (unknown domain,
//! unknown user, wrong password, malformed login, disabled account) is the same `AUTHFAILED`, and an unknown user
//! costs the same argon2 work as a wrong password, so neither the answer nor its timing reveals
//! which logins exist.
//!
//! Guessing is bounded by failure budgets per client address and per login (`auth_budget.rs`):
//! after a few failures attempts are spaced by a growing delay, then blocked; a blocked attempt
//! is answered `THROTTLED` (IMAP `NO [UNAVAILABLE]`, RFC 5530 §3) without any argon2 work. The
//! argon2 work itself runs on a bounded set of hashing threads (`limits.rs`); when none is free
//! in time the answer is the same, again without hashing. The budgets are consulted after the
//! read-index round, so only the leader (which serves every Authenticate of the group, from
//! every front-end) keeps them.

use std::net::IpAddr;
use std::time::Instant;

use mailraft_model::{ModelError, query};
use mailraft_proto as pb;

use crate::auth_budget::{Admission, Key};
use crate::error::ServerError;
use crate::password::{self, Login};
use crate::storage_service::StorageService;

impl StorageService {
    pub(crate) async fn authenticate_op(&self, req: pb::AuthenticateRequest) -> Result<pb::AuthenticateResponse, ServerError> {
        if let Some(ctx) = &req.ctx {
            self.shared.check_group(ctx.group_id)?;
        }
        // Fails fast (UNAVAILABLE) on a node that cannot sign yet, before any argon2 work.
        self.shared.session_keys()?;
        let login = Login::parse(&req.login).ok();
        self.shared.linearize().await?;
        let client: Option<IpAddr> = req.client_ip.parse().ok();
        let mut keys = Vec::with_capacity(2);
        keys.extend(client.map(Key::source));
        keys.extend(login.as_ref().map(|l| Key::Login(l.canonical())));
        let budget = &self.shared.pools.auth;
        match budget.admit(&keys, Instant::now()) {
            Admission::Refuse(why) => {
                tracing::info!(client = ?client, reason = why, "authentication refused without checking");
                return Err(ServerError::Throttled("too many failed logins, try again later".into()));
            }
            Admission::Proceed(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
            Admission::Proceed(_) => {}
        }
        let found = match &login {
            Some(l) => {
                let (domain, local) = (l.domain.clone(), l.local.clone());
                self.shared
                    .read(move |kv| match query::find_account(kv, &domain, &local) {
                        Ok(found) => Ok(Some(found)),
                        Err(ModelError::NotFound(_)) => Ok(None),
                        Err(e) => Err(e),
                    })
                    .await?
            }
            None => None,
        };
        let password = req.password;
        let (ok, found) = self
            .shared
            .pools
            .hash(move || {
                let ok = match &found {
                    Some((_, account)) => password::verify(&account.password_hash, &password),
                    None => {
                        password::verify_dummy(&password);
                        false
                    }
                };
                (ok, found)
            })
            .await?;
        // A disabled account fails like a wrong password, after the same work, and costs the
        // budgets the same: whether a guess counted must not tell that it was right.
        let (Some(login), Some((who, account)), true) = (login, found, ok) else {
            budget.failed(&keys, Instant::now());
            tracing::info!(client = ?client, "authentication failed");
            return Err(ServerError::AuthFailed);
        };
        if account.disabled {
            budget.failed(&keys, Instant::now());
            tracing::info!(account = who.account, "authentication refused: account disabled");
            return Err(ServerError::AuthFailed);
        }
        budget.succeeded(&Key::Login(login.canonical()));
        let (token, claims, ttl_ms) = self.shared.issue_token(who, &account, login.canonical(), "login")?;
        crate::metrics::record_tenant(who.tenant);
        tracing::info!(account = who.account, "authenticated");
        let (tenant_id, account_id) = (who.tenant, who.account);
        Ok(pb::AuthenticateResponse { token, tenant_id, account_id, login: claims.login, ttl_ms })
    }
}
