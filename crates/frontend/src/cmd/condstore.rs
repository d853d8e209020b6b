//! CONDSTORE (RFC 7162 §3.1) pieces shared by several commands: which commands turn it on, and
//! the MODSEQ items and codes they answer with.
//!
//! CONDSTORE is per connection: the first "CONDSTORE enabling command" (§3.1) switches
//! [`Session::condstore`](crate::session::Session::condstore) on until the connection closes.
//! From then on every untagged FETCH carries `MODSEQ (n)` (§3.1, §3.1.4.2) — the ones the
//! session sends for other sessions' changes (`session/updates.rs`), STORE's (`store.rs`) and
//! the FLAGS a FETCH adds after setting `\Seen` (`fetch.rs`) — and SELECT/EXAMINE answer
//! `OK [HIGHESTMODSEQ n]` (§3.1.2.1). The storage keeps a modseq for every message and mailbox,
//! so NOMODSEQ (§3.1.2.2) is never sent.
//!
//! QRESYNC (§3.2) is not implemented and not advertised: its forms (`SELECT (QRESYNC ...)`,
//! `UID FETCH ... (VANISHED)`) are refused with BAD, as §3.2.5 and §3.2.6 require of a server
//! where it is not enabled.

use std::num::NonZeroU64;

use imap_codec::imap_types::command::{CommandBody, FetchModifier, SelectParameter, StoreModifier};
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName};
use imap_codec::imap_types::response::Code;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::status::StatusDataItemName;

/// Whether `body` is a CONDSTORE enabling command (RFC 7162 §3.1): SELECT/EXAMINE with the
/// CONDSTORE parameter, STATUS HIGHESTMODSEQ, FETCH or SEARCH with MODSEQ, FETCH CHANGEDSINCE,
/// STORE UNCHANGEDSINCE. ENABLE CONDSTORE is handled by `enable.rs`.
pub fn enables(body: &CommandBody<'_>) -> bool {
    use CommandBody as C;
    match body {
        C::Select { parameters, .. } | C::Examine { parameters, .. } => {
            parameters.iter().any(|p| matches!(p, SelectParameter::CondStore))
        }
        C::Status { item_names, .. } => item_names.iter().any(|i| matches!(i, StatusDataItemName::HighestModSeq)),
        C::Fetch { macro_or_item_names, modifiers, .. } => {
            modifiers.iter().any(|m| matches!(m, FetchModifier::ChangedSince(_)))
                || matches!(macro_or_item_names, MacroOrMessageDataItemNames::MessageDataItemNames(items)
                    if items.iter().any(|i| matches!(i, MessageDataItemName::ModSeq)))
        }
        C::Search { criteria, .. } => criteria.as_ref().iter().any(has_modseq_key),
        C::Store { modifiers, .. } => modifiers.iter().any(|m| matches!(m, StoreModifier::UnchangedSince(_))),
        _ => false,
    }
}

/// Whether a search key, or a key nested in it, is MODSEQ (RFC 7162 §3.1.5); such a SEARCH
/// ends its response with `(MODSEQ n)` (§3.1.6).
pub fn has_modseq_key(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::Not(inner) => has_modseq_key(inner),
        SearchKey::Or(a, b) => has_modseq_key(a) || has_modseq_key(b),
        SearchKey::And(keys) => keys.as_ref().iter().any(has_modseq_key),
        _ => false,
    }
}

/// A mod-sequence as the protocol spells it (RFC 7162 §7 `mod-sequence-value`, at least 1).
/// Every stored message and mailbox has one; 0 would be a corrupt record and is raised to 1
/// instead of failing the response.
pub fn modseq_value(modseq: u64) -> NonZeroU64 {
    NonZeroU64::new(modseq).unwrap_or(NonZeroU64::MIN)
}

/// The `MODSEQ (n)` FETCH item (RFC 7162 §3.1.4.2).
pub fn modseq_item(modseq: u64) -> MessageDataItem<'static> {
    MessageDataItem::ModSeq(modseq_value(modseq))
}

/// `[HIGHESTMODSEQ n]` (RFC 7162 §3.1.2.1).
pub fn highest_modseq_code(modseq: u64) -> Code<'static> {
    Code::HighestModSeq(modseq_value(modseq))
}

#[cfg(test)]
mod tests {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;

    use super::*;

    fn enabling(line: &str) -> bool {
        let line = format!("a {line}\r\n");
        let (rest, command) = CommandCodec::new().decode(line.as_bytes()).expect("parses");
        assert!(rest.is_empty(), "{line}");
        enables(&command.body)
    }

    /// RFC 7162 §3.1: the list of CONDSTORE enabling commands, and look-alikes that are not.
    #[test]
    fn enabling_commands() {
        for yes in [
            "SELECT INBOX (CONDSTORE)",
            "EXAMINE INBOX (CONDSTORE)",
            "STATUS INBOX (MESSAGES HIGHESTMODSEQ)",
            "FETCH 1:* (FLAGS MODSEQ)",
            "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12)",
            "SEARCH MODSEQ 5",
            "UID SEARCH OR SEEN NOT MODSEQ 5",
            "STORE 1 (UNCHANGEDSINCE 7) +FLAGS (\\Seen)",
        ] {
            assert!(enabling(yes), "{yes}");
        }
        for no in ["SELECT INBOX", "STATUS INBOX (MESSAGES)", "FETCH 1:* ALL", "SEARCH SEEN", "STORE 1 +FLAGS (\\Seen)"] {
            assert!(!enabling(no), "{no}");
        }
    }
}
