//! LOGOUT (RFC 3501 §6.1.3): `* BYE`, then the tagged OK, then the server closes.

use super::{Ctx, Next, Reply};
use crate::error::FrontendError;

/// `LOGOUT`.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    ctx.out.bye(None, "logging out");
    Ok(Reply::ok("LOGOUT completed").then(Next::Close))
}
