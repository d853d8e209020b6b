//! Authenticate: login + password → session token.
//!
//! The account is read linearizably (a password change is effective at once), the password is
//! checked with argon2 on the blocking pool, and on success a token valid for
//! [`TOKEN_TTL_MS`] is signed with the replicated session key. Every failure (unknown domain,
//! unknown user, wrong password, malformed login) is the same `AUTHFAILED`, and an unknown user
//! costs the same argon2 work as a wrong password, so neither the answer nor its timing reveals
//! which logins exist.

use mailraft_model::{ModelError, query};
use mailraft_proto as pb;

use crate::error::ServerError;
use crate::password::{self, Login};
use crate::shared::now_ms;
use crate::storage_service::StorageService;
use crate::token::{self, Claims, TOKEN_TTL_MS};

impl StorageService {
    pub(crate) async fn authenticate_op(&self, req: pb::AuthenticateRequest) -> Result<pb::AuthenticateResponse, ServerError> {
        if let Some(ctx) = &req.ctx {
            self.shared.check_group(ctx.group_id)?;
        }
        let key = self.shared.session_key()?.to_vec();
        let login = Login::parse(&req.login).ok();
        self.shared.linearize().await?;
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
        let (ok, found) = tokio::task::spawn_blocking(move || {
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
        let (Some(login), Some((who, _)), true) = (login, found, ok) else {
            tracing::info!("authentication failed");
            return Err(ServerError::AuthFailed);
        };
        let claims = Claims {
            tenant: who.tenant,
            account: who.account,
            login: login.canonical(),
            expires_ms: now_ms().saturating_add(TOKEN_TTL_MS),
        };
        let token = token::issue(&key, &claims)?;
        crate::metrics::record_tenant(who.tenant);
        tracing::info!(account = who.account, "authenticated");
        Ok(pb::AuthenticateResponse { token, tenant_id: who.tenant, account_id: who.account, login: claims.login })
    }
}
