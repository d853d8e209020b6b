//! IDLE (RFC 2177): the connection sends `+ idling`, then pushes updates as the watch hub
//! reports them until the client sends `DONE` (see `connection::idle`).

use super::{Ctx, Next, Reply};
use crate::error::FrontendError;

/// `IDLE`.
pub fn run(_ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    Ok(Reply::ok("IDLE terminated").then(Next::Idle))
}
