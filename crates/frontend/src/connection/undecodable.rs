//! The `BAD` text for a message imap-codec could not decode.

/// Command names imap-codec parses, to tell "unknown command" from "bad arguments".
const KNOWN_COMMANDS: &[&str] = &[
    "APPEND", "AUTHENTICATE", "CAPABILITY", "CHECK", "CLOSE", "COPY", "CREATE", "DELETE", "ENABLE",
    "EXAMINE", "EXPUNGE", "FETCH", "ID", "IDLE", "LIST", "LOGIN", "LOGOUT", "LSUB", "MOVE",
    "NAMESPACE", "NOOP", "RENAME", "SEARCH", "SELECT", "STARTTLS", "STATUS", "STORE", "SUBSCRIBE",
    "UID", "UNSELECT", "UNSUBSCRIBE",
];

/// A clear text for a message imap-codec could not decode. Never echoes the message itself:
/// it may contain credentials.
pub(super) fn describe_undecodable(message: &[u8], has_tag: bool) -> String {
    if !has_tag {
        return "invalid command: missing or invalid tag".to_owned();
    }
    let mut words = message.split(|b| matches!(b, b' ' | b'\r' | b'\n')).filter(|w| !w.is_empty());
    let _tag = words.next();
    let Some(word) = words.next() else {
        return "invalid command: missing command name".to_owned();
    };
    let word = String::from_utf8_lossy(word).to_ascii_uppercase();
    match KNOWN_COMMANDS.iter().find(|known| **known == word) {
        Some(known) => format!("syntax error in {known} arguments"),
        None => "unknown command".to_owned(),
    }
}
