//! ID (RFC 2971): identifies the server; the client's parameters are ignored (and not logged,
//! they may identify a person).

use imap_codec::imap_types::core::{IString, NString};
use imap_codec::imap_types::response::Data;

use super::{Ctx, Reply};
use crate::error::FrontendError;

/// `ID (...)`.
pub fn run(
    ctx: &mut Ctx<'_>,
    _parameters: Option<Vec<(IString<'static>, NString<'static>)>>,
) -> Result<Reply, FrontendError> {
    let mut parameters = Vec::new();
    for (key, value) in [("name", "mailraft"), ("version", env!("CARGO_PKG_VERSION"))] {
        if let (Ok(key), Ok(value)) = (IString::try_from(key), IString::try_from(value)) {
            parameters.push((key, NString(Some(value))));
        }
    }
    ctx.out.data(Data::Id { parameters: Some(parameters) });
    Ok(Reply::ok("ID completed"))
}
