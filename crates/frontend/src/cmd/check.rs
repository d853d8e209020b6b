//! CHECK (RFC 3501 §6.4.1): every write is already committed through Raft before it is
//! acknowledged, so there is nothing to checkpoint; it behaves like NOOP.

use super::{Ctx, Reply};
use crate::error::FrontendError;

/// `CHECK`.
pub fn run(_ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    Ok(Reply::ok("CHECK completed"))
}
