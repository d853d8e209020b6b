//! NOOP (RFC 3501 §6.1.2): does nothing itself; its point is the unsolicited updates the
//! connection sends before every tagged reply in the selected state.

use super::{Ctx, Reply};
use crate::error::FrontendError;

/// `NOOP`.
pub fn run(_ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    Ok(Reply::ok("NOOP completed"))
}
