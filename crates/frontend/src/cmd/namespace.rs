//! NAMESPACE (RFC 2342): one personal namespace with no prefix and `/` as delimiter; no shared
//! or other-users namespaces.

use imap_codec::imap_types::core::{IString, QuotedChar};
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::response::Data;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::DELIMITER;

/// `NAMESPACE`.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    let prefix = IString::try_from("").map_err(|e| FrontendError::Internal(e.to_string()))?;
    let personal = vec![Namespace::new(prefix, Some(QuotedChar::unvalidated(DELIMITER)))];
    ctx.out.data(Data::Namespace { personal, other: Vec::new(), shared: Vec::new() });
    Ok(Reply::ok("NAMESPACE completed"))
}
