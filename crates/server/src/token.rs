//! Session tokens: who a front-end session is, signed by the cluster.
//!
//! `Authenticate` checks the password once and returns a token; every later call carries it and
//! the node verifies it before doing anything, so a front-end can only act as the (tenant,
//! account) that logged in. The token is stateless:
//! `version || key id (u32 BE) || postcard(Claims) || HMAC-SHA256` over everything before the
//! tag, keyed with the replicated session key of that id (`Command::Init`, and
//! `Command::RotateSessionKey`, which keeps the replaced key verifying through a grace period).
//! Any node of the group can therefore verify a token another node issued, and tokens survive
//! restarts and leader changes. The tag is compared in constant time (`verify_slice`).
//!
//! Lifetime and revocation:
//! - A token lives `token_ttl` (config `auth.token_ttl_secs`); the front-end exchanges it for a
//!   fresh one (`RefreshToken`) at half its life, so a session (or IDLE) can stay open for days
//!   while a stolen token is only good for one TTL.
//! - The claims carry the account's credential generation. [`check_account`], run on every use
//!   against the node's own copy of the account (one point read), refuses the token once the
//!   generation changed (new password, account disabled) or the account is disabled or gone.
//!
//! Every refusal is [`ServerError::BadToken`] to the caller, so it learns nothing about why; the
//! reason is only counted (`mailraft_session_tokens_refused_total{reason}`). One exception: a
//! token from a *newer* state than this node's (a key or generation this node has not applied
//! yet) is `UNAVAILABLE`, so the front-end retries on an up-to-date node instead of ending the
//! session.

use std::time::Duration;

use hmac::{Hmac, Mac};
use mailraft_model::{Account, AccountId, Principal, SessionKey, SessionKeys, TenantId};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ServerError;

type HmacSha256 = Hmac<Sha256>;

/// Format version byte. Version 1 (no key id, no generation) is refused: such a token cannot be
/// checked for revocation, and its session logs in again.
const VERSION: u8 = 2;
/// Bytes before the claims: version and key id.
const HEADER_LEN: usize = 1 + 4;
/// HMAC-SHA256 output length.
const TAG_LEN: usize = 32;
/// Default token lifetime. Short enough that a leaked token is soon useless, long enough that
/// refreshing (at half of it) costs nothing noticeable.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Shortest lifetime accepted in the configuration: each session refreshes every half TTL.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(1);

/// What a token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant the account lives in.
    pub tenant: TenantId,
    /// The authenticated account.
    pub account: AccountId,
    /// Canonical login, for logs and for the front-end's display.
    pub login: String,
    /// The account's credential generation when the token was issued.
    pub generation: u64,
    /// Unix milliseconds after which the token is refused.
    pub expires_ms: i64,
}

impl Claims {
    /// The principal commands act for.
    pub fn principal(&self) -> Principal {
        Principal { tenant: self.tenant, account: self.account }
    }
}

/// Why a token was refused (counted, never told to the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token of this format, or its signature does not match.
    Invalid,
    /// Signed with a key that no longer verifies (rotated out, grace period over).
    KeyRetired,
    /// Past its expiry.
    Expired,
    /// The account's credentials changed, or it was disabled or deleted.
    Revoked,
    /// Issued by a node that has applied more than this one (newer key or generation).
    Ahead,
}

impl Refusal {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::KeyRetired => "key_retired",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::Ahead => "ahead",
        }
    }
}

impl From<Refusal> for ServerError {
    fn from(refusal: Refusal) -> Self {
        crate::metrics::token_refused(refusal.label());
        match refusal {
            Refusal::Ahead => ServerError::Unavailable("session state not yet replicated to this node".into()),
            _ => ServerError::BadToken,
        }
    }
}

fn mac(key: &[u8]) -> Result<HmacSha256, ServerError> {
    // HMAC accepts keys of any length; the error branch is unreachable in practice.
    HmacSha256::new_from_slice(key).map_err(|_| ServerError::internal("invalid session key"))
}

/// Signs `claims` with `key`.
pub fn issue(key: &SessionKey, claims: &Claims) -> Result<Vec<u8>, ServerError> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&key.id.to_be_bytes());
    out.extend(postcard::to_allocvec(claims).map_err(ServerError::internal)?);
    let mut m = mac(&key.secret)?;
    m.update(&out);
    out.extend_from_slice(&m.finalize().into_bytes());
    Ok(out)
}

/// Checks the format, signature and expiry of `token` against the node's `keys` at `now_ms`.
pub fn verify(keys: &SessionKeys, token: &[u8], now_ms: i64) -> Result<Claims, Refusal> {
    if token.len() <= HEADER_LEN + TAG_LEN || token[0] != VERSION {
        return Err(Refusal::Invalid);
    }
    let key_id = u32::from_be_bytes([token[1], token[2], token[3], token[4]]);
    let Some(key) = keys.verifying(key_id, now_ms) else {
        // The next key: a rotation this node has not applied yet. Anything further is made up.
        return Err(match key_id.checked_sub(keys.current.id) {
            Some(1) => Refusal::Ahead,
            Some(_) => Refusal::Invalid,
            None => Refusal::KeyRetired,
        });
    };
    let (body, tag) = token.split_at(token.len() - TAG_LEN);
    let mut m = mac(&key.secret).map_err(|_| Refusal::Invalid)?;
    m.update(body);
    m.verify_slice(tag).map_err(|_| Refusal::Invalid)?;
    let claims: Claims = postcard::from_bytes(&body[HEADER_LEN..]).map_err(|_| Refusal::Invalid)?;
    if claims.expires_ms <= now_ms {
        return Err(Refusal::Expired);
    }
    Ok(claims)
}

/// Checks the claims against the account as this node knows it (`None`: no such account).
pub fn check_account(claims: &Claims, account: Option<&Account>) -> Result<(), Refusal> {
    let Some(account) = account else {
        return Err(Refusal::Revoked);
    };
    if claims.generation > account.generation {
        return Err(Refusal::Ahead);
    }
    if account.disabled || claims.generation != account.generation {
        return Err(Refusal::Revoked);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use mailraft_model::RetiredKey;

    use super::*;

    fn claims() -> Claims {
        Claims { tenant: 1, account: 2, login: "a@b.test".into(), generation: 3, expires_ms: 1_000 }
    }

    fn key(id: u32) -> SessionKey {
        SessionKey { id, secret: format!("key {id}").into_bytes() }
    }

    fn ring(current: u32) -> SessionKeys {
        SessionKeys { current: key(current), previous: None }
    }

    fn account(generation: u64, disabled: bool) -> Account {
        Account {
            id: 2,
            tenant: 1,
            login: "a".into(),
            password_hash: String::new(),
            quota_bytes: None,
            used_bytes: 0,
            generation,
            disabled,
        }
    }

    #[test]
    fn round_trip() {
        let t = issue(&key(1), &claims()).unwrap();
        assert_eq!(verify(&ring(1), &t, 999).unwrap(), claims());
    }

    #[test]
    fn refuses_expired_forged_and_garbage() {
        let t = issue(&key(1), &claims()).unwrap();
        assert_eq!(verify(&ring(1), &t, 1_000), Err(Refusal::Expired));
        let other = SessionKeys { current: SessionKey { id: 1, secret: b"other".to_vec() }, previous: None };
        assert_eq!(verify(&other, &t, 0), Err(Refusal::Invalid));
        let mut tampered = t.clone();
        tampered[HEADER_LEN + 2] ^= 1;
        assert_eq!(verify(&ring(1), &tampered, 0), Err(Refusal::Invalid));
        assert_eq!(verify(&ring(1), b"", 0), Err(Refusal::Invalid));
        assert_eq!(verify(&ring(1), &[2u8; 40], 0), Err(Refusal::Invalid), "key id 0x02020202");
        let mut v1 = t;
        v1[0] = 1;
        assert_eq!(verify(&ring(1), &v1, 0), Err(Refusal::Invalid));
    }

    #[test]
    fn a_rotated_key_verifies_only_during_its_grace_period() {
        let old = issue(&key(1), &claims()).unwrap();
        let keys = SessionKeys { current: key(2), previous: Some(RetiredKey { key: key(1), valid_until_ms: 500 }) };
        assert_eq!(verify(&keys, &old, 499).unwrap(), claims());
        assert_eq!(verify(&keys, &old, 500), Err(Refusal::KeyRetired));
        let new = issue(&key(2), &claims()).unwrap();
        assert_eq!(verify(&keys, &new, 999).unwrap(), claims());
        // Re-labelling an old token with the current key id does not make its tag match.
        let mut relabelled = old;
        relabelled[1..HEADER_LEN].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(verify(&keys, &relabelled, 0), Err(Refusal::Invalid));
        // A key this node has not applied yet: retry elsewhere, not "revoked".
        let future = issue(&key(3), &claims()).unwrap();
        assert_eq!(verify(&keys, &future, 0), Err(Refusal::Ahead));
    }

    #[test]
    fn the_account_decides_revocation() {
        let c = claims();
        assert_eq!(check_account(&c, Some(&account(3, false))), Ok(()));
        assert_eq!(check_account(&c, Some(&account(4, false))), Err(Refusal::Revoked));
        assert_eq!(check_account(&c, Some(&account(3, true))), Err(Refusal::Revoked));
        assert_eq!(check_account(&c, None), Err(Refusal::Revoked));
        assert_eq!(check_account(&c, Some(&account(2, false))), Err(Refusal::Ahead));
    }
}
