//! LIST (RFC 3501 §6.3.8) with CHILDREN (RFC 3348) and SPECIAL-USE (RFC 6154) attributes.
//!
//! The reference and pattern are joined; `*` matches across levels and `%` within one. Parents
//! that do not exist as mailboxes but have existing descendants ("a" for "a/b") are listed with
//! `\Noselect` when the pattern matches them, so clients can draw the tree. `LIST ref ""` returns
//! only the hierarchy delimiter and the reference's root.

use std::collections::{BTreeMap, BTreeSet};

use imap_codec::imap_types::core::{Atom, QuotedChar};
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::Data;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::{
    DELIMITER, ancestors, decode_list_mailbox, decode_mailbox, encode_mailbox, join_reference,
    matches, reference_root,
};

/// `LIST reference pattern`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    reference: Mailbox<'static>,
    pattern: ListMailbox<'static>,
) -> Result<Reply, FrontendError> {
    let reference = reference_name(&reference)?;
    let pattern = decode_list_mailbox(&pattern)?;
    if pattern.is_empty() {
        let root = Mailbox::try_from(reference_root(&reference).to_owned())
            .map_err(|e| FrontendError::Internal(e.to_string()))?;
        ctx.out.data(Data::List { items: vec![FlagNameAttribute::Noselect], delimiter: delimiter(), mailbox: root });
        return Ok(Reply::ok("LIST completed"));
    }
    let pattern = join_reference(&reference, &pattern);
    let user = ctx.user()?;
    let listing = ctx.shared.storage.list_mailboxes(&user.ctx).await?;
    let existing: BTreeMap<&str, &str> =
        listing.mailboxes.iter().map(|m| (m.name.as_str(), m.special_use.as_str())).collect();
    let tree = with_ancestors(existing.keys().copied());
    for name in ordered(&tree) {
        if !matches(&pattern, name) {
            continue;
        }
        let mut items = Vec::new();
        match existing.get(name) {
            None => items.push(FlagNameAttribute::Noselect),
            Some(special_use) if !special_use.is_empty() => items.extend(attribute(special_use)),
            Some(_) => {}
        }
        let children = if has_children(&tree, name) { "HasChildren" } else { "HasNoChildren" };
        items.extend(attribute(children));
        if let Some(mailbox) = encode_mailbox(name) {
            ctx.out.data(Data::List { items, delimiter: delimiter(), mailbox });
        }
    }
    Ok(Reply::ok("LIST completed"))
}

/// A reference argument as a storage name (the reference may be empty).
pub fn reference_name(reference: &Mailbox<'_>) -> Result<String, FrontendError> {
    decode_mailbox(reference)
}

/// The hierarchy delimiter as LIST spells it.
pub fn delimiter() -> Option<QuotedChar> {
    Some(QuotedChar::unvalidated(DELIMITER))
}

/// A mailbox attribute (`\HasChildren`, `\Sent`, ...).
pub fn attribute(name: &str) -> Option<FlagNameAttribute<'static>> {
    Atom::try_from(name.to_owned()).ok().map(FlagNameAttribute::from)
}

/// The names plus all their ancestors.
pub fn with_ancestors<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let mut tree = BTreeSet::new();
    for name in names {
        tree.extend(ancestors(name));
        tree.insert(name);
    }
    tree
}

/// INBOX first (clients expect it at the top), then the rest in name order.
pub fn ordered<'a>(tree: &'a BTreeSet<&'a str>) -> impl Iterator<Item = &'a str> + 'a {
    let inbox = tree.contains("INBOX").then_some("INBOX");
    inbox.into_iter().chain(tree.iter().copied().filter(|n| *n != "INBOX"))
}

/// Whether any name in `tree` lies below `name`.
pub fn has_children(tree: &BTreeSet<&str>, name: &str) -> bool {
    let prefix = format!("{name}{DELIMITER}");
    tree.range(prefix.as_str()..).next().is_some_and(|n| n.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_helpers() {
        let tree = with_ancestors(["a/b/c", "INBOX", "z"]);
        assert_eq!(ordered(&tree).collect::<Vec<_>>(), vec!["INBOX", "a", "a/b", "a/b/c", "z"]);
        assert!(has_children(&tree, "a"));
        assert!(has_children(&tree, "a/b"));
        assert!(!has_children(&tree, "a/b/c"));
        assert!(!has_children(&tree, "z"));
    }
}
