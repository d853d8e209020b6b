//! STARTTLS (RFC 3501 §6.2.1): the tagged OK is sent in cleartext, then the TLS handshake
//! starts; the connection discards anything the client pipelined after the command.

use super::{Ctx, Next, Reply};
use crate::error::FrontendError;

/// `STARTTLS`.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    if ctx.session.tls {
        return Ok(Reply::bad("TLS is already active"));
    }
    if !ctx.session.starttls_available {
        return Ok(Reply::bad("STARTTLS is not available on this port"));
    }
    Ok(Reply::ok("begin TLS negotiation now").then(Next::StartTls))
}
