//! RefreshToken: a valid session token → a fresh one, so a session can outlive one token TTL.
//!
//! The front-end calls it at half the token's life (and after an account event on the Watch
//! stream, to learn whether its session was revoked). The old token must still be valid here,
//! so an expired or revoked token can never be renewed. Like Authenticate it runs on the leader
//! after a read index, so a password change or a disable committed anywhere is seen before a new
//! token is signed; the new token carries the account's current generation and is signed with
//! the current session key (after a rotation, this is how sessions move to the new key).

use mailraft_model::{ModelError, query};
use mailraft_proto as pb;

use crate::error::ServerError;
use crate::storage_service::StorageService;
use crate::token;

impl StorageService {
    pub(crate) async fn refresh_token_op(
        &self,
        req: pb::RefreshTokenRequest,
    ) -> Result<pb::RefreshTokenResponse, ServerError> {
        let claims = self.shared.authorize_read(req.ctx.as_ref()).await?;
        let who = claims.principal();
        let account = self
            .shared
            .read_as(who, move |kv| match query::account(kv, who) {
                Ok(account) => Ok(Some(account)),
                Err(ModelError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        // Again on the linearized state: this node may have lagged behind a revocation.
        token::check_account(&claims, account.as_ref())?;
        let Some(account) = account else {
            return Err(ServerError::BadToken);
        };
        let (token, _, ttl_ms) = self.shared.issue_token(who, &account, claims.login, "refresh")?;
        Ok(pb::RefreshTokenResponse { token, ttl_ms })
    }
}
