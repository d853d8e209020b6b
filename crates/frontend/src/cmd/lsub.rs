//! LSUB (RFC 3501 §6.3.9): subscribed names matching the pattern. Subscriptions may name
//! mailboxes that no longer exist (§6.3.6); those, and unsubscribed parents of subscribed names
//! matched by a trailing `%`, are returned with `\Noselect`.

use std::collections::BTreeSet;

use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::Data;

use super::list::{delimiter, ordered};
use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::{ancestors, decode_list_mailbox, decode_reference, encode_mailbox, join_reference, matches};

/// `LSUB reference pattern`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    reference: Mailbox<'static>,
    pattern: ListMailbox<'static>,
) -> Result<Reply, FrontendError> {
    // A reference or pattern that is not valid modified UTF-7 matches nothing (names.rs).
    let (Some(reference), Some(pattern)) = (decode_reference(&reference), decode_list_mailbox(&pattern)) else {
        return Ok(Reply::ok("LSUB completed"));
    };
    let pattern = join_reference(&reference, &pattern);
    let user = ctx.user()?;
    let listing = ctx.shared.storage.list_mailboxes(&user.ctx).await?;
    let existing: BTreeSet<&str> = listing.mailboxes.iter().map(|m| m.name.as_str()).collect();
    let subscribed: BTreeSet<&str> = listing.subscriptions.iter().map(String::as_str).collect();
    let mut names: BTreeSet<&str> = subscribed.clone();
    if pattern.contains('%') {
        for name in &subscribed {
            names.extend(ancestors(name));
        }
    }
    for name in ordered(&names) {
        if !matches(&pattern, name) {
            continue;
        }
        let mut items = Vec::new();
        if !subscribed.contains(name) || !existing.contains(name) {
            items.push(FlagNameAttribute::Noselect);
        }
        if let Some(mailbox) = encode_mailbox(name) {
            ctx.out.data(Data::Lsub { items, delimiter: delimiter(), mailbox });
        }
    }
    Ok(Reply::ok("LSUB completed"))
}
