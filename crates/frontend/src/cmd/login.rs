//! LOGIN (RFC 3501 §6.2.3). Refused over cleartext unless allowed (LOGINDISABLED); the
//! password is handed to the storage tier and never logged.

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::secret::Secret;

use super::{Ctx, Reply, authenticate};
use crate::error::FrontendError;

/// `LOGIN user password`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    username: AString<'static>,
    password: Secret<AString<'static>>,
) -> Result<Reply, FrontendError> {
    if ctx.session.login_disabled() {
        return Err(FrontendError::PrivacyRequired);
    }
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| FrontendError::BadArguments("user name and password must be UTF-8".into()))
    };
    let user = text(username.as_ref())?;
    let password = text(password.declassify().as_ref())?;
    authenticate::login(ctx, &user, &password).await
}
