//! LIST (RFC 3501 §6.3.8) with CHILDREN (RFC 3348) and SPECIAL-USE (RFC 6154) attributes, and
//! the LIST-EXTENDED options (RFC 5258 §3) clients send with SPECIAL-USE.
//!
//! The reference and pattern are joined; `*` matches across levels and `%` within one. Parents
//! that do not exist as mailboxes but have existing descendants ("a" for "a/b") are listed with
//! `\Noselect` when the pattern matches them, so clients can draw the tree. `LIST ref ""` returns
//! only the hierarchy delimiter and the reference's root. A reference or pattern that is not
//! valid modified UTF-7 matches nothing (`names.rs`).
//!
//! The pinned imap-codec (2.0.0-alpha.10) parses only the base LIST syntax: its
//! `ext_list_extended` feature covers LIST responses, not the command's selection and return
//! options. `connection/extended.rs` therefore strips `(SPECIAL-USE)` and `RETURN (...)` from
//! the command line, lets imap-codec parse the rest, and hands the options over as
//! [`ListOptions`] in [`Ctx::list_options`]. Only the options below are understood; LIST-EXTENDED
//! itself is not advertised.

use std::collections::{BTreeMap, BTreeSet};

use imap_codec::imap_types::core::{Atom, QuotedChar};
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::Data;
use mailraft_proto as proto;

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::names::{
    DELIMITER, ancestors, decode_list_mailbox, decode_reference, encode_mailbox, join_reference,
    matches, reference_root,
};

/// The LIST-EXTENDED selection and return options of one LIST command (RFC 5258 §3, RFC 6154
/// §5.1). The default is a base LIST.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Selection option SPECIAL-USE (RFC 6154 §5.1): only mailboxes with a special use.
    pub special_use_only: bool,
    /// Selection option SUBSCRIBED (RFC 5258 §3.1): subscribed names, existing or not, instead
    /// of existing mailboxes.
    pub subscribed_only: bool,
    /// Return option SUBSCRIBED (RFC 5258 §3.2; implied by the selection option): mark
    /// subscribed names `\Subscribed`.
    pub return_subscribed: bool,
}

impl ListOptions {
    /// Reads the option atoms of `LIST (select...) ref pat RETURN (ret...)`. RETURN (SPECIAL-USE)
    /// and RETURN (CHILDREN) ask for attributes every LIST here carries anyway. Options this
    /// server does not implement (RECURSIVEMATCH, REMOTE, extensions) are refused: RFC 5258 §3
    /// wants `BAD` for options the server does not recognise, and a silently ignored selection
    /// option would return a different set of mailboxes than the client asked for.
    pub fn parse<'a>(
        select: impl IntoIterator<Item = &'a str>,
        ret: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, String> {
        let mut options = Self::default();
        for option in select {
            match option.to_ascii_uppercase().as_str() {
                "SPECIAL-USE" => options.special_use_only = true,
                "SUBSCRIBED" => {
                    options.subscribed_only = true;
                    options.return_subscribed = true;
                }
                _ => return Err(format!("unsupported LIST selection option {option}")),
            }
        }
        for option in ret {
            match option.to_ascii_uppercase().as_str() {
                "SPECIAL-USE" | "CHILDREN" => {}
                "SUBSCRIBED" => options.return_subscribed = true,
                _ => return Err(format!("unsupported LIST return option {option}")),
            }
        }
        Ok(options)
    }
}

/// `LIST [(options)] reference pattern [RETURN (options)]`.
pub async fn run(
    ctx: &mut Ctx<'_>,
    reference: Mailbox<'static>,
    pattern: ListMailbox<'static>,
) -> Result<Reply, FrontendError> {
    let options = ctx.list_options;
    let (Some(reference), Some(pattern)) = (decode_reference(&reference), decode_list_mailbox(&pattern)) else {
        return Ok(Reply::ok("LIST completed"));
    };
    if pattern.is_empty() {
        let root = Mailbox::try_from(reference_root(&reference).to_owned())
            .map_err(|e| FrontendError::Internal(e.to_string()))?;
        ctx.out.data(Data::List { items: vec![FlagNameAttribute::Noselect], delimiter: delimiter(), mailbox: root });
        return Ok(Reply::ok("LIST completed"));
    }
    let pattern = join_reference(&reference, &pattern);
    let user = ctx.user()?;
    let listing = ctx.shared.storage.list_mailboxes(&user.ctx).await?;
    for data in responses(&listing, &pattern, options) {
        ctx.out.data(data);
    }
    Ok(Reply::ok("LIST completed"))
}

/// The LIST responses for the account's `listing`, a joined `pattern` and `options`.
pub fn responses(listing: &proto::ListMailboxesResponse, pattern: &str, options: ListOptions) -> Vec<Data<'static>> {
    let existing: BTreeMap<&str, &str> =
        listing.mailboxes.iter().map(|m| (m.name.as_str(), m.special_use.as_str())).collect();
    let subscribed: BTreeSet<&str> = listing.subscriptions.iter().map(String::as_str).collect();
    let tree = with_ancestors(existing.keys().copied());
    let names: BTreeSet<&str> = if options.subscribed_only { subscribed.clone() } else { tree.clone() };
    let mut out = Vec::new();
    for name in ordered(&names) {
        if !matches(pattern, name) {
            continue;
        }
        let special_use = existing.get(name).copied().filter(|s| !s.is_empty());
        if options.special_use_only && special_use.is_none() {
            continue;
        }
        let mut items = Vec::new();
        match existing.get(name) {
            // RFC 5258 §3.4: a subscribed name without a mailbox is `\NonExistent`.
            None if options.subscribed_only => items.extend(attribute("NonExistent")),
            None => items.push(FlagNameAttribute::Noselect),
            Some(_) => items.extend(special_use.and_then(attribute)),
        }
        let children = if has_children(&tree, name) { "HasChildren" } else { "HasNoChildren" };
        items.extend(attribute(children));
        if options.return_subscribed && subscribed.contains(name) {
            items.extend(attribute("Subscribed"));
        }
        if let Some(mailbox) = encode_mailbox(name) {
            out.push(Data::List { items, delimiter: delimiter(), mailbox });
        }
    }
    out
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

    /// No options.
    const NONE: [&str; 0] = [];

    fn listing() -> proto::ListMailboxesResponse {
        let mailbox = |name: &str, special_use: &str| proto::MailboxInfo {
            name: name.to_owned(),
            special_use: special_use.to_owned(),
            ..Default::default()
        };
        proto::ListMailboxesResponse {
            mailboxes: vec![mailbox("INBOX", ""), mailbox("Sent", "Sent"), mailbox("a/Trash", "Trash")],
            subscriptions: vec!["Sent".to_owned(), "gone".to_owned()],
        }
    }

    fn render(data: Vec<Data<'static>>) -> Vec<String> {
        data.into_iter()
            .map(|d| {
                let mut out = crate::response::Out::new();
                out.data(d);
                String::from_utf8_lossy(out.as_bytes()).trim_end().to_owned()
            })
            .collect()
    }

    /// RFC 6154 §5.1: the SPECIAL-USE selection option lists only special-use mailboxes, with
    /// their attribute; RETURN (SPECIAL-USE) is the base listing (it always has them).
    #[test]
    fn special_use_selection_and_return() {
        let options = ListOptions::parse(["special-use"], NONE).unwrap();
        assert_eq!(
            render(responses(&listing(), "*", options)),
            vec![
                "* LIST (\\Sent \\HasNoChildren) \"/\" Sent",
                "* LIST (\\Trash \\HasNoChildren) \"/\" a/Trash",
            ]
        );
        let options = ListOptions::parse(NONE, ["SPECIAL-USE", "CHILDREN"]).unwrap();
        assert_eq!(options, ListOptions::default());
        assert_eq!(
            render(responses(&listing(), "*", options)),
            vec![
                "* LIST (\\HasNoChildren) \"/\" INBOX",
                "* LIST (\\Sent \\HasNoChildren) \"/\" Sent",
                "* LIST (\\Noselect \\HasChildren) \"/\" a",
                "* LIST (\\Trash \\HasNoChildren) \"/\" a/Trash",
            ]
        );
    }

    /// RFC 5258 §3.1, §3.4: SUBSCRIBED lists subscriptions, `\NonExistent` where no mailbox is.
    #[test]
    fn subscribed_selection() {
        let options = ListOptions::parse(["SUBSCRIBED"], NONE).unwrap();
        assert_eq!(
            render(responses(&listing(), "*", options)),
            vec![
                "* LIST (\\Sent \\HasNoChildren \\Subscribed) \"/\" Sent",
                "* LIST (\\NonExistent \\HasNoChildren \\Subscribed) \"/\" gone",
            ]
        );
        let options = ListOptions::parse(NONE, ["subscribed"]).unwrap();
        assert!(options.return_subscribed && !options.subscribed_only);
        assert!(ListOptions::parse(["RECURSIVEMATCH"], NONE).is_err());
        assert!(ListOptions::parse(NONE, ["STATUS"]).is_err());
    }
}
