//! Session tokens: who a front-end session is, signed by the cluster.
//!
//! `Authenticate` checks the password once and returns a token; every later call carries it and
//! the node verifies it before doing anything, so a front-end can only act as the (tenant,
//! account) that logged in. The token is stateless: `version || postcard(Claims) || HMAC-SHA256`
//! over the first two parts, keyed with the session key that `Command::Init` replicated to every
//! node. Any node of the group can therefore verify a token another node issued, and tokens
//! survive restarts and leader changes. The tag is compared in constant time (`verify_slice`).

use hmac::{Hmac, Mac};
use mailraft_model::{AccountId, Principal, TenantId};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ServerError;

type HmacSha256 = Hmac<Sha256>;

/// Format version byte: a future format change can coexist with tokens issued before it.
const VERSION: u8 = 1;
/// HMAC-SHA256 output length.
const TAG_LEN: usize = 32;
/// How long a session token is valid.
pub const TOKEN_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// What a token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant the account lives in.
    pub tenant: TenantId,
    /// The authenticated account.
    pub account: AccountId,
    /// Canonical login, for logs and for the front-end's display.
    pub login: String,
    /// Unix milliseconds after which the token is refused.
    pub expires_ms: i64,
}

impl Claims {
    /// The principal commands act for.
    pub fn principal(&self) -> Principal {
        Principal { tenant: self.tenant, account: self.account }
    }
}

fn mac(key: &[u8]) -> Result<HmacSha256, ServerError> {
    // HMAC accepts keys of any length; the error branch is unreachable in practice.
    HmacSha256::new_from_slice(key).map_err(|_| ServerError::internal("invalid session key"))
}

/// Signs `claims` with `key`.
pub fn issue(key: &[u8], claims: &Claims) -> Result<Vec<u8>, ServerError> {
    let mut out = vec![VERSION];
    out.extend(postcard::to_allocvec(claims).map_err(ServerError::internal)?);
    let mut m = mac(key)?;
    m.update(&out);
    out.extend_from_slice(&m.finalize().into_bytes());
    Ok(out)
}

/// Checks the signature and expiry of `token`; any failure is [`ServerError::BadToken`] so a
/// caller learns nothing about why a forged token was refused.
pub fn verify(key: &[u8], token: &[u8], now_ms: i64) -> Result<Claims, ServerError> {
    if token.len() <= TAG_LEN + 1 || token[0] != VERSION {
        return Err(ServerError::BadToken);
    }
    let (body, tag) = token.split_at(token.len() - TAG_LEN);
    let mut m = mac(key)?;
    m.update(body);
    m.verify_slice(tag).map_err(|_| ServerError::BadToken)?;
    let claims: Claims = postcard::from_bytes(&body[1..]).map_err(|_| ServerError::BadToken)?;
    if claims.expires_ms <= now_ms {
        return Err(ServerError::BadToken);
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims { tenant: 1, account: 2, login: "a@b.test".into(), expires_ms: 1_000 }
    }

    #[test]
    fn round_trip() {
        let t = issue(b"key", &claims()).unwrap();
        assert_eq!(verify(b"key", &t, 999).unwrap(), claims());
    }

    #[test]
    fn refuses_expired_forged_and_garbage() {
        let t = issue(b"key", &claims()).unwrap();
        assert!(matches!(verify(b"key", &t, 1_000), Err(ServerError::BadToken)));
        assert!(matches!(verify(b"other", &t, 0), Err(ServerError::BadToken)));
        let mut tampered = t.clone();
        tampered[2] ^= 1;
        assert!(matches!(verify(b"key", &tampered, 0), Err(ServerError::BadToken)));
        assert!(matches!(verify(b"key", b"", 0), Err(ServerError::BadToken)));
        assert!(matches!(verify(b"key", &[1u8; 40], 0), Err(ServerError::BadToken)));
    }
}
