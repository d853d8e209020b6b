//! APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315 §3).
//!
//! The literal was already bounded by the framer (`NO [TOOBIG]` before the continuation). A
//! missing target mailbox is answered with `NO [TRYCREATE]`. If the target is the selected
//! mailbox, the `EXISTS` comes from the change poll before the tagged reply.

use std::num::NonZeroU32;

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Code;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::decode_mailbox;

/// `APPEND mailbox [flags] [date] literal`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    mailbox: Mailbox<'static>,
    flags: Vec<Flag<'static>>,
    date: Option<DateTime>,
    message: LiteralOrLiteral8<'static>,
) -> Result<Reply, FrontendError> {
    let name = decode_mailbox(&mailbox)?;
    let flags = crate::flags::to_wire_list(&flags).map_err(|e| FrontendError::BadArguments(e.to_string()))?;
    let (internal_date, tz_offset_minutes) = match &date {
        Some(date) => {
            let date = date.as_ref();
            (date.timestamp(), date.offset().local_minus_utc() / 60)
        }
        None => (0, 0),
    };
    let body = match message {
        LiteralOrLiteral8::Literal(literal) => literal.into_inner().into_owned(),
        LiteralOrLiteral8::Literal8(literal) => literal.data.into_owned(),
    };
    if body.is_empty() {
        return Err(FrontendError::BadArguments("empty message".into()));
    }
    let user = ctx.user()?;
    let request = proto::AppendRequest {
        ctx: Some(user.ctx.clone()),
        mailbox: name,
        messages: vec![proto::AppendMessage { body, flags, internal_date, tz_offset_minutes }],
    };
    let response = ctx.shared.storage.append(request).await.map_err(|e| match e {
        FrontendError::NonExistent(m) => FrontendError::TryCreate(m),
        other => other,
    })?;
    let code = match (NonZeroU32::new(response.uidvalidity), response.uids.first().copied().and_then(NonZeroU32::new)) {
        (Some(uid_validity), Some(uid)) => Some(Code::AppendUid { uid_validity, uid }),
        _ => None,
    };
    Ok(Reply::ok_code(code, "APPEND completed"))
}
