//! ENABLE (RFC 5161). CONDSTORE is the only extension of this server that can be enabled (RFC
//! 7162 §3.1: ENABLE CONDSTORE is a CONDSTORE enabling command); `* ENABLED` lists it when
//! asked for and leaves out everything else requested, which RFC 5161 §3.1 allows for
//! capabilities the server does not support (QRESYNC among them: it is not implemented).

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::response::Data;

use super::{Ctx, Reply};
use crate::error::FrontendError;

/// `ENABLE cap...`.
pub fn run(ctx: &mut Ctx<'_>, requested: Vec1<CapabilityEnable<'static>>) -> Result<Reply, FrontendError> {
    let mut enabled = Vec::new();
    if requested.as_ref().iter().any(|c| matches!(c, CapabilityEnable::CondStore)) {
        ctx.session.condstore = true;
        enabled.push(CapabilityEnable::CondStore);
    }
    ctx.out.data(Data::Enabled { capabilities: enabled });
    Ok(Reply::ok("ENABLE completed"))
}
