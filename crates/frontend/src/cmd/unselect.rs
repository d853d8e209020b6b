//! UNSELECT (RFC 3691): leave the selected state without expunging (unlike CLOSE).

use super::{Ctx, Reply};
use crate::error::FrontendError;

/// `UNSELECT`.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    ctx.session.deselect();
    Ok(Reply::ok("UNSELECT completed"))
}
