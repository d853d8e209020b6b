//! ENABLE (RFC 5161): no extension of this server needs enabling, so the answer is an empty
//! `* ENABLED` — which RFC 5161 §3.1 allows for capabilities the server does not support. ENABLE
//! is therefore not advertised.

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::response::Data;

use super::{Ctx, Reply};
use crate::error::FrontendError;

/// `ENABLE cap...`.
pub fn run(ctx: &mut Ctx<'_>, _requested: Vec1<CapabilityEnable<'static>>) -> Result<Reply, FrontendError> {
    ctx.out.data(Data::Enabled { capabilities: Vec::new() });
    Ok(Reply::ok("ENABLE completed"))
}
