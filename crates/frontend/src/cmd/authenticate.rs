//! AUTHENTICATE PLAIN (RFC 3501 §6.2.2, RFC 4616) with SASL-IR (RFC 4959), and the login
//! completion shared with LOGIN.
//!
//! Without an initial response the connection sends an empty continuation (`+ `) and feeds the
//! client's base64 line to [`finish`]. Credentials never reach a log: the command bytes are not
//! logged anywhere and the password is only passed on to the storage tier.

use std::borrow::Cow;

use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::secret::Secret;

use super::{Ctx, Next, Reply, capability};
use crate::error::FrontendError;
use crate::session::User;

/// `AUTHENTICATE mechanism [initial-response]`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    mechanism: AuthMechanism<'static>,
    initial_response: Option<Secret<Cow<'static, [u8]>>>,
) -> Result<Reply, FrontendError> {
    if mechanism != AuthMechanism::Plain {
        // RFC 3501 §6.2.2: an unsupported mechanism is rejected with NO.
        return Ok(Reply::no(None, "unsupported authentication mechanism"));
    }
    if ctx.session.login_disabled() {
        return Err(FrontendError::PrivacyRequired);
    }
    match initial_response {
        Some(response) => plain(ctx, response.declassify()).await,
        None => Ok(Reply::ok("waiting for SASL response").then(Next::Sasl)),
    }
}

/// Completes AUTHENTICATE with the client's continuation line.
pub async fn finish(ctx: &mut Ctx<'_>, data: AuthenticateData<'_>) -> Result<Reply, FrontendError> {
    match data {
        // RFC 3501 §6.2.2: "*" cancels, answered with BAD.
        AuthenticateData::Cancel => Ok(Reply::bad("authentication cancelled")),
        AuthenticateData::Continue(response) => plain(ctx, response.declassify()).await,
    }
}

/// Checks a PLAIN message: `[authzid] NUL authcid NUL passwd` (RFC 4616 §2).
async fn plain(ctx: &mut Ctx<'_>, message: &[u8]) -> Result<Reply, FrontendError> {
    let (authzid, authcid, password) = parse_plain(message)?;
    if !authzid.is_empty() && authzid != authcid {
        return Err(FrontendError::AuthorizationFailed);
    }
    login(ctx, &authcid, &password).await
}

/// Splits a PLAIN message into (authzid, authcid, password).
pub fn parse_plain(message: &[u8]) -> Result<(String, String, String), FrontendError> {
    let malformed = || FrontendError::BadArguments("malformed PLAIN credentials".into());
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| malformed());
    let (authzid, authcid, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if authcid.is_empty() {
        return Err(malformed());
    }
    Ok((authzid, authcid, password))
}

/// Verifies credentials with the storage tier and enters the authenticated state. Counts
/// failures; past `max_auth_failures` the connection is closed with BYE.
pub async fn login(ctx: &mut Ctx<'_>, login: &str, password: &str) -> Result<Reply, FrontendError> {
    let storage = &ctx.shared.storage;
    // The client's address lets the storage tier's failure budgets hold per source across
    // front-ends (a guesser's connections are counted together wherever they land).
    match storage.authenticate(&ctx.session.id, login, password, ctx.session.peer).await {
        Ok(response) => {
            let span = tracing::Span::current();
            span.record("tenant", response.tenant_id);
            tracing::info!(tenant = response.tenant_id, account = response.account_id, "logged in");
            let ctx_proto = storage.context(response.token.clone(), &ctx.session.id);
            let user = User::authenticated(ctx_proto, &response);
            // Before the session acts, so a revocation from now on cannot be missed.
            ctx.session.revocations = Some(ctx.shared.watch.subscribe_account(user.tenant_id, user.account_id));
            ctx.session.login(user);
            Ok(Reply::ok_code(Some(capability::code(ctx.session)), "authentication successful"))
        }
        Err(error @ FrontendError::AuthFailed(_)) => {
            ctx.session.auth_failures += 1;
            tracing::info!(failures = ctx.session.auth_failures, "authentication failed");
            let reply = Reply::from_error(&error);
            if ctx.session.auth_failures >= ctx.shared.config.max_auth_failures {
                return Ok(reply.then(Next::Bye("too many authentication failures")));
            }
            Ok(reply)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain() {
        assert_eq!(
            parse_plain(b"\0user@example.org\0secret").unwrap(),
            (String::new(), "user@example.org".into(), "secret".into())
        );
        assert_eq!(parse_plain(b"admin\0user\0pw").unwrap().0, "admin");
        assert!(parse_plain(b"user\0pw").is_err());
        assert!(parse_plain(b"\0\0pw").is_err());
        assert!(parse_plain(b"a\0b\0c\0d").is_err());
        assert!(parse_plain(b"\0\xff\0pw").is_err());
    }
}
