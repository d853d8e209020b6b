//! RFC 5322 §3.4 address-list parsing into IMAP ENVELOPE address structures.
//!
//! mail-parser's address parser decodes RFC 2047 encoded words in display names, but
//! RFC 3501 §7.4.2 wants the phrase as it appears in the header (clients decode it, and
//! 8-bit text is not allowed in IMAP4rev1 strings). So this small tokenizer/parser keeps
//! names raw: quotes and escapes removed, encoded words untouched, whitespace normalised.
//! It is lenient: anything it cannot make sense of is skipped, never an error.

use crate::envelope::Address;
use crate::header::clean;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Quoted,
    Literal,
    Comment,
    Special(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// Semantic text: quoted strings and comments unescaped, without delimiters.
    text: String,
    /// Text as written (quoted strings keep quotes), used for local-part and domain.
    raw: String,
    /// Whitespace (or a comment) preceded this token.
    space_before: bool,
}

fn is_special(c: char) -> bool {
    matches!(c, '<' | '>' | ':' | ';' | ',' | '@' | '.')
}

/// Reads a delimited run (`"..."`, `(...)` with nesting) starting after the opener.
/// Returns (unescaped text, raw text including delimiters, index after the closer).
fn delimited(chars: &[char], open_at: usize, nested: bool) -> (String, String, usize) {
    let open = chars[open_at];
    let close = if open == '(' { ')' } else { '"' };
    let mut text = String::new();
    let mut raw = String::from(open);
    let mut depth = 1usize;
    let mut i = open_at + 1;
    while let Some(&c) = chars.get(i) {
        i += 1;
        raw.push(c);
        match c {
            '\\' => {
                if let Some(&next) = chars.get(i) {
                    raw.push(next);
                    text.push(next);
                    i += 1;
                }
            }
            _ if c == close => {
                depth -= 1;
                if depth == 0 {
                    return (text, raw, i);
                }
                text.push(c);
            }
            '(' if nested => {
                depth += 1;
                text.push(c);
            }
            _ => text.push(c),
        }
    }
    (text, raw, i)
}

fn tokenize(value: &str) -> Vec<Token> {
    let chars: Vec<char> = value.chars().collect();
    let mut tokens = Vec::new();
    let mut space = false;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let (kind, text, raw, next) = match c {
            ' ' | '\t' | '\r' | '\n' => {
                space = true;
                i += 1;
                continue;
            }
            '"' => {
                let (text, raw, next) = delimited(&chars, i, false);
                (Kind::Quoted, text, raw, next)
            }
            '(' => {
                let (text, raw, next) = delimited(&chars, i, true);
                (Kind::Comment, text, raw, next)
            }
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map_or(chars.len(), |p| i + p + 1);
                let raw: String = chars[i..end].iter().collect();
                (Kind::Literal, raw.clone(), raw, end)
            }
            c if is_special(c) => (Kind::Special(c), c.to_string(), c.to_string(), i + 1),
            _ => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| {
                        matches!(c, ' ' | '\t' | '\r' | '\n' | '"' | '(' | '[') || is_special(c)
                    })
                    .map_or(chars.len(), |p| i + p);
                let word: String = chars[i..end].iter().collect();
                (Kind::Word, word.clone(), word, end)
            }
        };
        let is_comment = kind == Kind::Comment;
        tokens.push(Token {
            kind,
            text,
            raw,
            space_before: space,
        });
        // A comment separates the tokens around it like whitespace does.
        space = is_comment;
        i = next.max(i + 1);
    }
    tokens
}

/// Display-name text: words joined by single spaces where the source had whitespace.
fn phrase(tokens: &[Token]) -> Option<String> {
    let mut out = String::new();
    for t in tokens.iter().filter(|t| t.kind != Kind::Comment) {
        if t.space_before && !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&t.text);
    }
    let out = clean(out.trim());
    (!out.is_empty()).then_some(out)
}

/// A comment used as the name when there is no display name (`user@host (Name)`).
fn comment_name(tokens: &[Token]) -> Option<String> {
    tokens
        .iter()
        .filter(|t| t.kind == Kind::Comment)
        .map(|t| clean(t.text.trim()))
        .find(|t| !t.is_empty())
}

fn join_raw(tokens: &[Token]) -> String {
    let joined: String = tokens
        .iter()
        .filter(|t| t.kind != Kind::Comment)
        .map(|t| t.raw.as_str())
        .collect();
    clean(&joined)
}

/// addr-spec (RFC 5322 §3.4.1): local-part "@" domain, split at the last `@`.
/// Without `@` the whole thing is the mailbox and the host is empty (not NIL: NIL host
/// means group syntax in RFC 3501 §7.4.2).
fn addr_spec(tokens: &[Token]) -> (String, String) {
    match tokens.iter().rposition(|t| t.kind == Kind::Special('@')) {
        Some(at) => (join_raw(&tokens[..at]), join_raw(&tokens[at + 1..])),
        None => (join_raw(tokens), String::new()),
    }
}

/// Accumulates the tokens of the address being parsed.
#[derive(Default)]
struct Pending {
    /// Tokens outside angle brackets.
    outer: Vec<Token>,
    /// Number of outer tokens seen before the `<` (the display name).
    name_len: usize,
    /// Tokens inside angle brackets, once a `<` has been seen.
    angle: Option<Vec<Token>>,
}

impl Pending {
    fn finish(&mut self, out: &mut Vec<Address>) {
        let pending = std::mem::take(self);
        let address = match pending.angle {
            Some(angle) => {
                let (before, after) = pending
                    .outer
                    .split_at(pending.name_len.min(pending.outer.len()));
                let name = phrase(before)
                    .or_else(|| comment_name(before))
                    .or_else(|| comment_name(after));
                // obs-route (RFC 5322 §4.4): "@a,@b:" before the addr-spec.
                let (adl, spec) = match angle.iter().rposition(|t| t.kind == Kind::Special(':')) {
                    Some(colon) => (Some(join_raw(&angle[..colon])), &angle[colon + 1..]),
                    None => (None, &angle[..]),
                };
                let (mailbox, host) = addr_spec(spec);
                if name.is_none() && mailbox.is_empty() && host.is_empty() {
                    return;
                }
                Address {
                    name,
                    adl: adl.filter(|a| !a.is_empty()),
                    mailbox: Some(mailbox),
                    host: Some(host),
                }
            }
            None => {
                let (mailbox, host) = addr_spec(&pending.outer);
                if mailbox.is_empty() && host.is_empty() {
                    return;
                }
                Address {
                    name: comment_name(&pending.outer),
                    adl: None,
                    mailbox: Some(mailbox),
                    host: Some(host),
                }
            }
        };
        out.push(address);
    }
}

/// Parses an unfolded address-list header value into ENVELOPE addresses, groups encoded
/// as RFC 3501 §7.4.2 start/end markers.
pub(crate) fn parse_address_list(value: &str) -> Vec<Address> {
    let mut out = Vec::new();
    let mut pending = Pending::default();
    let mut in_group = false;
    let mut in_angle = false;
    for token in tokenize(value) {
        if in_angle {
            if token.kind == Kind::Special('>') {
                in_angle = false;
            } else if let Some(angle) = pending.angle.as_mut() {
                angle.push(token);
            }
            continue;
        }
        match token.kind {
            Kind::Special('<') => {
                in_angle = true;
                pending.name_len = pending.outer.len();
                pending.angle = Some(Vec::new());
            }
            Kind::Special(':') if !in_group && pending.angle.is_none() => {
                // RFC 3501 §7.4.2: start of group = NIL host, mailbox = group name.
                let name = phrase(&pending.outer).unwrap_or_default();
                pending = Pending::default();
                out.push(Address {
                    name: None,
                    adl: None,
                    mailbox: Some(name),
                    host: None,
                });
                in_group = true;
            }
            Kind::Special(',') => pending.finish(&mut out),
            Kind::Special(';') => {
                pending.finish(&mut out);
                if in_group {
                    out.push(group_end());
                    in_group = false;
                }
            }
            _ => pending.outer.push(token),
        }
    }
    pending.finish(&mut out);
    if in_group {
        out.push(group_end());
    }
    out
}

/// RFC 3501 §7.4.2: end of group = NIL mailbox and NIL host.
fn group_end() -> Address {
    Address {
        name: None,
        adl: None,
        mailbox: None,
        host: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(name: Option<&str>, mailbox: &str, host: &str) -> Address {
        Address {
            name: name.map(str::to_string),
            adl: None,
            mailbox: Some(mailbox.to_string()),
            host: Some(host.to_string()),
        }
    }

    #[test]
    fn plain_and_named_addresses() {
        let got = parse_address_list(
            "a@b.example, \"Doe, John\" <john@x.example>, Jane Q. Public <jq@y>",
        );
        assert_eq!(
            got,
            vec![
                addr(None, "a", "b.example"),
                addr(Some("Doe, John"), "john", "x.example"),
                addr(Some("Jane Q. Public"), "jq", "y"),
            ]
        );
    }

    #[test]
    fn encoded_word_names_stay_raw() {
        let got = parse_address_list("=?utf-8?q?J=C3=B8rn?= <j@x>");
        assert_eq!(got, vec![addr(Some("=?utf-8?q?J=C3=B8rn?="), "j", "x")]);
    }

    #[test]
    fn comment_is_name_fallback() {
        let got = parse_address_list("user@host (Real Name)");
        assert_eq!(got, vec![addr(Some("Real Name"), "user", "host")]);
    }

    #[test]
    fn group_syntax() {
        let got = parse_address_list("Team: a@x, B <b@y>; c@z");
        assert_eq!(
            got,
            vec![
                Address {
                    name: None,
                    adl: None,
                    mailbox: Some("Team".into()),
                    host: None
                },
                addr(None, "a", "x"),
                addr(Some("B"), "b", "y"),
                group_end(),
                addr(None, "c", "z"),
            ]
        );
    }

    #[test]
    fn empty_group_and_unclosed_group() {
        let got = parse_address_list("undisclosed-recipients:;");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].mailbox.as_deref(), Some("undisclosed-recipients"));
        assert_eq!(got[0].host, None);
        assert_eq!(got[1], group_end());
        let got = parse_address_list("G: a@b");
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], group_end());
    }

    #[test]
    fn source_route_and_quoted_local_part() {
        let got = parse_address_list("<@relay.example,@r2:\"john doe\"@x.example>");
        assert_eq!(
            got,
            vec![Address {
                name: None,
                adl: Some("@relay.example,@r2".into()),
                mailbox: Some("\"john doe\"".into()),
                host: Some("x.example".into()),
            }]
        );
    }

    #[test]
    fn missing_domain_and_garbage() {
        assert_eq!(
            parse_address_list("MAILER-DAEMON"),
            vec![addr(None, "MAILER-DAEMON", "")]
        );
        assert!(parse_address_list(",,, <>").is_empty());
        assert!(parse_address_list("").is_empty());
        // Unbalanced delimiters do not panic.
        let _ = parse_address_list("\"unterminated <a@b");
        let _ = parse_address_list("(((a <b@c>");
        let _ = parse_address_list("[1.2.3.4");
    }
}
