//! STATUS (RFC 3501 §6.3.10): counters of a mailbox without selecting it. RECENT is always 0
//! (this server does not track `\Recent`). HIGHESTMODSEQ is RFC 7162 §3.1.7 (and makes STATUS a
//! CONDSTORE enabling command, §3.1).

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::{decode_mailbox, encode_mailbox};

/// `STATUS mailbox (items)`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    mailbox: Mailbox<'static>,
    item_names: &[StatusDataItemName],
) -> Result<Reply, FrontendError> {
    let name = decode_mailbox(&mailbox)?;
    let user = ctx.user()?;
    let status = ctx.shared.storage.status(&user.ctx, &name).await?;
    let mut items = Vec::new();
    for item in item_names {
        let value = match item {
            StatusDataItemName::Messages => Some(StatusDataItem::Messages(status.messages)),
            StatusDataItemName::Recent => Some(StatusDataItem::Recent(0)),
            StatusDataItemName::UidNext => NonZeroU32::new(status.uidnext).map(StatusDataItem::UidNext),
            StatusDataItemName::UidValidity => {
                NonZeroU32::new(status.uidvalidity).map(StatusDataItem::UidValidity)
            }
            StatusDataItemName::Unseen => Some(StatusDataItem::Unseen(status.unseen)),
            StatusDataItemName::Deleted => Some(StatusDataItem::Deleted(status.deleted)),
            StatusDataItemName::HighestModSeq => Some(StatusDataItem::HighestModSeq(status.highest_modseq)),
            // DELETED-STORAGE belongs to QUOTA (RFC 9208), which is not advertised.
            _ => None,
        };
        items.extend(value);
    }
    let mailbox = encode_mailbox(&name).ok_or_else(|| FrontendError::Internal("unencodable mailbox name".into()))?;
    ctx.out.data(Data::Status { mailbox, items: Cow::Owned(items) });
    Ok(Reply::ok("STATUS completed"))
}
