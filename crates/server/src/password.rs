//! Password hashing and login parsing, shared by Authenticate and the Admin service.
//!
//! Hashes are argon2id PHC strings with a random salt, computed by the proposer (hashing is
//! slow and random, so it never runs inside the replicated `apply`). Verification of an unknown
//! login runs against a dummy hash with the same parameters, so the response time does not
//! tell an attacker which logins exist. Both are CPU-heavy (and take 19 MiB each): callers run
//! them through `Pools::hash`, which bounds how many run at once. Both refuse passwords over
//! [`MAX_PASSWORD_LEN`] before any work, so a huge password costs nothing.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::ServerError;

/// Longest accepted password; argon2 takes any length, this only bounds the work per request.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, ServerError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(ServerError::Invalid(format!("password must be 1 to {MAX_PASSWORD_LEN} bytes")));
    }
    let salt = SaltString::generate(&mut OsRng);
    crate::metrics::password_hashed("hash");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServerError::internal(format!("password hashing: {e}")))
}

/// Whether `password` matches the PHC string `hash`. A malformed stored hash never matches,
/// and neither does a password that [`hash`] would have refused (no argon2 work for those:
/// the answer does not depend on the account, so it reveals nothing about it).
pub fn verify(hash: &str, password: &str) -> bool {
    verify_as(hash, password, "verify")
}

fn verify_as(hash: &str, password: &str, op: &'static str) -> bool {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => {
            crate::metrics::password_hashed(op);
            #[cfg(test)]
            tests::WORK.with(|w| w.set(w.get() + 1));
            Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
        }
        Err(_) => false,
    }
}

/// Spends the same work as [`verify`] for a login that does not exist.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(h) = DUMMY.get_or_init(|| hash("mailraft-dummy-password").ok()) {
        let _ = verify_as(h, password, "verify_unknown");
    }
}

/// A login `user@domain`, folded the way the model stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Lowercased local part.
    pub local: String,
    /// Lowercased domain: selects the tenant.
    pub domain: String,
}

impl Login {
    /// Parses `user@domain` (the last `@` separates, so quoted local parts with `@` work).
    pub fn parse(login: &str) -> Result<Login, ServerError> {
        let bad = || ServerError::Invalid("login must be user@domain".into());
        let (local, domain) = login.trim().rsplit_once('@').ok_or_else(bad)?;
        let ok = |s: &str| !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok(local) || !ok(domain) {
            return Err(bad());
        }
        Ok(Login { local: local.to_lowercase(), domain: domain.to_lowercase() })
    }

    /// `local@domain`.
    pub fn canonical(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    thread_local! {
        /// argon2 verifications run on this thread (tests only).
        pub(super) static WORK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn hash_and_verify() {
        let h = hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify(&h, "s3cret"));
        assert!(!verify(&h, "S3cret"));
        assert!(!verify("garbage", "s3cret"));
        assert!(hash("").is_err());
    }

    #[test]
    fn verify_refuses_over_long_passwords_without_hashing() {
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        // A hash of exactly this password cannot exist (hash refuses it), so build one from the
        // longest accepted prefix: verify must not even try the long one.
        let h = hash(&long[..MAX_PASSWORD_LEN]).unwrap();
        assert!(verify(&h, &long[..MAX_PASSWORD_LEN]));
        let before = WORK.with(|w| w.get());
        assert!(!verify(&h, &long));
        assert!(!verify(&h, ""));
        assert_eq!(WORK.with(|w| w.get()), before, "no argon2 work for refused passwords");
    }

    #[test]
    fn logins() {
        let l = Login::parse("Alice@Example.TEST").unwrap();
        assert_eq!(l, Login { local: "alice".into(), domain: "example.test".into() });
        assert_eq!(l.canonical(), "alice@example.test");
        assert!(Login::parse("alice").is_err());
        assert!(Login::parse("@x").is_err());
        assert!(Login::parse("a b@x").is_err());
    }
}
