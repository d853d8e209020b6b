//! LIST-EXTENDED command syntax (RFC 5258 §6 `list`, RFC 6154 §6) that the pinned imap-codec
//! does not parse.
//!
//! imap-codec 2.0.0-alpha.10 knows only the base `LIST reference pattern`: its
//! `ext_list_extended` feature covers LIST responses, not the selection options before the
//! reference or the `RETURN (...)` after the pattern. Clients send both with SPECIAL-USE
//! (`LIST (SPECIAL-USE) "" "*"`, `LIST "" "*" RETURN (SPECIAL-USE)`), and answering them `BAD`
//! breaks folder discovery. So a message imap-codec refused is tried once more here: the option
//! lists are cut out, the remaining base command goes through imap-codec as usual, and the
//! options travel beside it as [`ListOptions`]. Nothing that imap-codec accepts reaches this
//! code, and nothing is executed that imap-codec did not parse.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::{Command, CommandBody};

use crate::cmd::list::ListOptions;

/// What [`decode`] made of a message imap-codec could not decode.
#[derive(Debug)]
pub(super) enum Extended {
    /// A LIST with options: the base command and the options.
    List(Command<'static>, ListOptions),
    /// A well-formed LIST with an option this server does not implement: `BAD` with this text.
    Unsupported(String),
}

/// `RETURN (`, which starts the return options at the end of the command (RFC 5258 §6).
const RETURN: &[u8] = b" RETURN (";

/// Reads `tag LIST [(select-opts)] reference pattern [RETURN (return-opts)]` CRLF. `None` when the
/// message is not such a command (the caller answers its usual `BAD`).
pub(super) fn decode(message: &[u8]) -> Option<Extended> {
    let tag_end = message.iter().position(|&b| b == b' ')?;
    let name_start = tag_end + 1;
    let name_len = message[name_start..].iter().position(|&b| b == b' ')?;
    if !message[name_start..name_start + name_len].eq_ignore_ascii_case(b"LIST") {
        return None;
    }
    let head = &message[..name_start + name_len + 1];
    let mut args = message[head.len()..].strip_suffix(b"\r\n")?;
    let mut stripped = false;

    // list-select-opts: a reference is an astring, which never starts with "(".
    let mut select = Vec::new();
    if let Some(inner) = args.strip_prefix(b"(") {
        let close = inner.iter().position(|&b| b == b')')?;
        select = atoms(&inner[..close])?;
        args = inner[close + 1..].strip_prefix(b" ")?;
        stripped = true;
    }
    // list-return-opts: the last " RETURN (" whose rest is a plain atom list up to the end.
    let mut ret = Vec::new();
    if let Some(at) = args.windows(RETURN.len()).rposition(|w| w.eq_ignore_ascii_case(RETURN))
        && let Some(inner) = args[at + RETURN.len()..].strip_suffix(b")")
        && let Some(options) = atoms(inner)
    {
        ret = options;
        args = &args[..at];
        stripped = true;
    }
    if !stripped {
        return None;
    }

    let mut base = head.to_vec();
    base.extend_from_slice(args);
    base.extend_from_slice(b"\r\n");
    let command = match CommandCodec::new().decode(&base) {
        Ok((&[], command)) if matches!(command.body, CommandBody::List { .. }) => command.into_static(),
        _ => return None,
    };
    Some(match ListOptions::parse(select.iter().copied(), ret.iter().copied()) {
        Ok(options) => Extended::List(command, options),
        Err(text) => Extended::Unsupported(text),
    })
}

/// Space-separated option names (RFC 5258 §6 `option-standard-tag` is an atom); `None` for
/// anything else, such as the parenthesised values of vendor options.
fn atoms(bytes: &[u8]) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    let is_atom = |w: &&str| w.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
    words.iter().all(is_atom).then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(message: &str) -> (String, ListOptions) {
        match decode(message.as_bytes()) {
            Some(Extended::List(command, options)) => {
                let CommandBody::List { reference, mailbox_wildcard } = command.body else {
                    panic!("not a LIST");
                };
                (format!("{reference:?} {mailbox_wildcard:?}"), options)
            }
            other => panic!("{message}: {other:?}"),
        }
    }

    /// RFC 6154 §5.1 examples: the selection and the return option, in either case.
    #[test]
    fn special_use_forms() {
        let (_, options) = list("t1 LIST (SPECIAL-USE) \"\" \"*\"\r\n");
        assert_eq!(options, ListOptions { special_use_only: true, ..ListOptions::default() });
        let (_, options) = list("t2 list \"\" \"*\" return (special-use)\r\n");
        assert_eq!(options, ListOptions::default());
        let (args, options) = list("t3 LIST (SUBSCRIBED) \"\" % RETURN (CHILDREN SPECIAL-USE)\r\n");
        assert!(args.contains("Token"), "{args}");
        assert!(options.subscribed_only && options.return_subscribed);
        // Empty option lists are allowed (RFC 5258 §6).
        assert_eq!(list("t4 LIST () \"\" * RETURN ()\r\n").1, ListOptions::default());
    }

    #[test]
    fn refusals() {
        // Not LIST, or no options to strip: the caller's BAD stands.
        assert!(decode(b"t1 LSUB (SPECIAL-USE) \"\" *\r\n").is_none());
        assert!(decode(b"t1 LIST \"\" (a b)\r\n").is_none());
        assert!(decode(b"t1 LIST (SPECIAL-USE) \"\r\n").is_none());
        assert!(decode(b"t1 LIST (SPECIAL-USE (x)) \"\" *\r\n").is_none());
        // Well-formed but not implemented here.
        assert!(matches!(
            decode(b"t1 LIST (RECURSIVEMATCH SUBSCRIBED) \"\" *\r\n"),
            Some(Extended::Unsupported(_))
        ));
        assert!(matches!(decode(b"t1 LIST \"\" * RETURN (STATUS)\r\n"), Some(Extended::Unsupported(_))));
    }
}
