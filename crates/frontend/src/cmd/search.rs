//! SEARCH and UID SEARCH (RFC 3501 §6.4.4, §6.4.8). The criteria are translated to a storage
//! key (sequence numbers become UIDs through the session's map) and evaluated next to the data;
//! results are mapped back to sequence numbers for the non-UID form. Messages the client has not
//! been told about yet (arrived since the last EXISTS) are left out, so every number returned is
//! one the client can use.
//!
//! A SEARCH with the MODSEQ criterion (RFC 7162 §3.1.5) ends a non-empty result with
//! `(MODSEQ n)`, the highest mod-sequence of the matches (§3.1.6), which the storage computes
//! next to the data.

use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::search::SearchKey;
use mailraft_proto as proto;

use super::{Ctx, Reply, condstore};
use crate::error::FrontendError;
use crate::search::SearchError;

/// `[UID] SEARCH [CHARSET c] criteria`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    charset: Option<Charset<'static>>,
    criteria: Vec1<SearchKey<'static>>,
    uid: bool,
) -> Result<Reply, FrontendError> {
    let with_modseq = criteria.as_ref().iter().any(condstore::has_modseq_key);
    let (user, selected) = super::selected(ctx.session)?;
    let key = crate::search::check_charset(charset.as_ref())
        .and_then(|()| crate::search::criteria_to_proto(criteria.as_ref(), &selected.map))
        .map_err(|e| match e {
            SearchError::BadCharset(_) => FrontendError::BadCharset(e.to_string()),
            other => FrontendError::BadArguments(other.to_string()),
        })?;
    let request = proto::SearchRequest {
        ctx: Some(user.ctx.clone()),
        mailbox_id: selected.mailbox_id,
        uidvalidity: selected.uidvalidity,
        key: Some(key),
    };
    let response = ctx.shared.storage.search(request).await?;
    let mut numbers: Vec<u32> = response
        .uids
        .iter()
        .filter_map(|u| selected.map.seq_of(*u).map(|seq| if uid { *u } else { seq }))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let numbers: Vec<NonZeroU32> = numbers.into_iter().filter_map(NonZeroU32::new).collect();
    // RFC 7162 §3.1.6: only with a MODSEQ criterion and only for a non-empty result.
    let modseq = if with_modseq && !numbers.is_empty() { NonZeroU64::new(response.highest_modseq) } else { None };
    ctx.out.data(Data::Search(numbers, modseq));
    Ok(Reply::ok("SEARCH completed"))
}
