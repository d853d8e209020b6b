//! Typed server responses (RFC 3501 §7) parsed from one frame produced by the framer.
//!
//! Only what the workloads and the consistency checker look at gets a typed variant; anything
//! else is kept as [`Untagged::Other`] so an unknown extension never fails a run. Malformed
//! syntax in the responses we do type is an error: the checker reports it as a violation.

use super::value::{Cursor, Value};

/// Why a frame is not a valid response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A specific byte was expected at an offset.
    #[error("expected {0:?} at offset {1}")]
    Expected(char, usize),
    /// A quoted string, list or section did not end.
    #[error("unterminated {0} starting at offset {1}")]
    Unterminated(&'static str, usize),
    /// A backslash escape other than `\"` or `\\` in a quoted string.
    #[error("bad escape in quoted string at offset {0}")]
    BadEscape(usize),
    /// A literal's length does not match the data.
    #[error("bad literal")]
    BadLiteral,
    /// Lists nested deeper than we accept.
    #[error("nesting too deep")]
    TooDeep,
    /// A response larger than the configured cap.
    #[error("response of {0} bytes exceeds the cap")]
    TooLarge(usize),
    /// A FETCH item list with a name but no value.
    #[error("odd number of FETCH items")]
    OddFetch,
    /// A response kind that needs data did not have it.
    #[error("missing data in {0}")]
    Missing(&'static str),
}

/// Condition of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok,
    /// Operational failure.
    No,
    /// Protocol error.
    Bad,
    /// Server is closing (untagged only).
    Bye,
    /// Pre-authenticated greeting (untagged only).
    Preauth,
}

/// A response code in brackets (RFC 3501 §7.1, RFC 4315 §3, RFC 7162 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `[APPENDUID uidvalidity uid]` (RFC 4315 §3); multi-append sets are kept as Other.
    AppendUid {
        /// UIDVALIDITY of the target mailbox.
        uidvalidity: u32,
        /// UID the message got.
        uid: u32,
    },
    /// `[UIDVALIDITY n]`.
    UidValidity(u32),
    /// `[UIDNEXT n]`.
    UidNext(u32),
    /// `[HIGHESTMODSEQ n]` (RFC 7162).
    HighestModseq(u64),
    /// `[CAPABILITY ...]`.
    Capability(Vec<String>),
    /// Anything else: the code name and its raw arguments.
    Other(String, String),
}

/// What a FETCH response said about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchData {
    /// UID, when included.
    pub uid: Option<u32>,
    /// FLAGS, when included.
    pub flags: Option<Vec<String>>,
    /// The first BODY[...] / BINARY[...] / RFC822 data item.
    pub body: Option<Vec<u8>>,
    /// RFC822.SIZE.
    pub size: Option<u64>,
    /// MODSEQ (RFC 7162 §3.1.4).
    pub modseq: Option<u64>,
}

/// An untagged response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged {
    /// `* OK|NO|BAD|BYE|PREAUTH [code] text`.
    Cond {
        /// The condition.
        status: Status,
        /// Bracketed code.
        code: Option<Code>,
        /// Human-readable text.
        text: String,
    },
    /// `* CAPABILITY ...`.
    Capability(Vec<String>),
    /// `* n EXISTS`.
    Exists(u32),
    /// `* n RECENT`.
    Recent(u32),
    /// `* n EXPUNGE`.
    Expunge(u32),
    /// `* n FETCH (...)`.
    Fetch {
        /// Message sequence number.
        seq: u32,
        /// The items.
        data: FetchData,
    },
    /// `* SEARCH n...`.
    Search(Vec<u32>),
    /// `* FLAGS (...)`.
    Flags(Vec<String>),
    /// `* LIST (flags) delim name` (and LSUB).
    List {
        /// Mailbox name (modified UTF-7, as sent).
        name: String,
    },
    /// `* STATUS mailbox (name value ...)`.
    Status {
        /// Mailbox name.
        mailbox: String,
        /// Item names (upper case) and values.
        items: Vec<(String, u64)>,
    },
    /// `* VANISHED [(EARLIER)] uid-set` (RFC 7162 §3.2.10), raw set.
    Vanished {
        /// `(EARLIER)` was given.
        earlier: bool,
        /// The UID set, raw.
        set: String,
    },
    /// Any other untagged response: its keyword.
    Other(String),
}

/// One response from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+ text`: the server waits for a literal or SASL data.
    Continuation(String),
    /// `* ...`.
    Untagged(Untagged),
    /// `tag OK|NO|BAD [code] text`.
    Tagged {
        /// The command's tag.
        tag: String,
        /// The condition.
        status: Status,
        /// Bracketed code.
        code: Option<Code>,
        /// Human-readable text.
        text: String,
    },
}

/// Parses one frame (with its CRLF) into a response.
pub fn parse_response(frame: &[u8]) -> Result<Response, ParseError> {
    let line = frame.strip_suffix(b"\r\n").unwrap_or(frame);
    let mut c = Cursor::new(line);
    match c.peek() {
        Some(b'+') => {
            c.pos += 1;
            c.space();
            Ok(Response::Continuation(
                String::from_utf8_lossy(c.rest()).into_owned(),
            ))
        }
        Some(b'*') => {
            c.pos += 1;
            c.expect(b' ')?;
            Ok(Response::Untagged(untagged(&mut c)?))
        }
        Some(_) => {
            let tag = c.atom()?;
            c.expect(b' ')?;
            let word = c.atom()?;
            let status = cond(&word).ok_or(ParseError::Missing("tagged status"))?;
            let (code, text) = resp_text(&mut c)?;
            Ok(Response::Tagged {
                tag,
                status,
                code,
                text,
            })
        }
        None => Err(ParseError::Missing("response")),
    }
}

fn cond(word: &str) -> Option<Status> {
    Some(match word.to_ascii_uppercase().as_str() {
        "OK" => Status::Ok,
        "NO" => Status::No,
        "BAD" => Status::Bad,
        "BYE" => Status::Bye,
        "PREAUTH" => Status::Preauth,
        _ => return None,
    })
}

fn untagged(c: &mut Cursor<'_>) -> Result<Untagged, ParseError> {
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        let n = u32::try_from(c.number()?).map_err(|_| ParseError::Missing("32-bit number"))?;
        c.expect(b' ')?;
        let word = c.atom()?.to_ascii_uppercase();
        return Ok(match word.as_str() {
            "EXISTS" => Untagged::Exists(n),
            "RECENT" => Untagged::Recent(n),
            "EXPUNGE" => Untagged::Expunge(n),
            "FETCH" => {
                c.expect(b' ')?;
                let Value::List(items) = c.value()? else {
                    return Err(ParseError::Missing("FETCH list"));
                };
                Untagged::Fetch {
                    seq: n,
                    data: fetch_data(items)?,
                }
            }
            _ => Untagged::Other(word),
        });
    }
    let word = c.atom()?.to_ascii_uppercase();
    if let Some(status) = cond(&word) {
        let (code, text) = resp_text(c)?;
        return Ok(Untagged::Cond { status, code, text });
    }
    c.space();
    Ok(match word.as_str() {
        "CAPABILITY" => Untagged::Capability(atoms(c.values_to_end()?)),
        "FLAGS" => match c.value()? {
            Value::List(l) => Untagged::Flags(atoms(l)),
            _ => return Err(ParseError::Missing("FLAGS list")),
        },
        "SEARCH" => {
            let mut out = Vec::new();
            for v in c.values_to_end()? {
                // RFC 7162 §3.1.5 appends `(MODSEQ n)`; skip it.
                if let Some(n) = v.number() {
                    out.push(u32::try_from(n).map_err(|_| ParseError::Missing("32-bit number"))?);
                }
            }
            Untagged::Search(out)
        }
        "LIST" | "LSUB" => {
            let vals = c.values_to_end()?;
            let name = vals
                .get(2)
                .and_then(Value::text)
                .ok_or(ParseError::Missing("LIST name"))?;
            Untagged::List { name }
        }
        "STATUS" => {
            let mailbox = c
                .value()?
                .text()
                .ok_or(ParseError::Missing("STATUS mailbox"))?;
            c.expect(b' ')?;
            let Value::List(l) = c.value()? else {
                return Err(ParseError::Missing("STATUS list"));
            };
            let mut items = Vec::new();
            for pair in l.chunks(2) {
                let (Some(k), Some(v)) = (
                    pair.first().and_then(Value::atom),
                    pair.get(1).and_then(Value::number),
                ) else {
                    return Err(ParseError::Missing("STATUS item"));
                };
                items.push((k.to_ascii_uppercase(), v));
            }
            Untagged::Status { mailbox, items }
        }
        "VANISHED" => {
            let vals = c.values_to_end()?;
            let earlier = matches!(vals.first(), Some(Value::List(_)));
            let set = vals
                .last()
                .and_then(Value::atom)
                .ok_or(ParseError::Missing("VANISHED set"))?;
            Untagged::Vanished {
                earlier,
                set: set.to_string(),
            }
        }
        _ => Untagged::Other(word),
    })
}

fn atoms(vals: Vec<Value>) -> Vec<String> {
    vals.into_iter().filter_map(|v| v.text()).collect()
}

/// `[code args] text` after a condition word (RFC 3501 §7.1 resp-text).
fn resp_text(c: &mut Cursor<'_>) -> Result<(Option<Code>, String), ParseError> {
    c.space();
    let mut code = None;
    if c.peek() == Some(b'[') {
        let start = c.pos + 1;
        let close = c
            .rest()
            .iter()
            .position(|&b| b == b']')
            .ok_or(ParseError::Unterminated("response code", c.pos))?;
        let inner = String::from_utf8_lossy(&c.rest()[1..close]).into_owned();
        c.pos = start + close;
        code = Some(parse_code(&inner));
        c.space();
    }
    Ok((code, String::from_utf8_lossy(c.rest()).into_owned()))
}

fn parse_code(inner: &str) -> Code {
    let (name, args) = inner.split_once(' ').unwrap_or((inner, ""));
    let name = name.to_ascii_uppercase();
    let nums: Vec<Option<u64>> = args.split(' ').map(|s| s.parse().ok()).collect();
    let n32 = |i: usize| {
        nums.get(i)
            .copied()
            .flatten()
            .and_then(|v| u32::try_from(v).ok())
    };
    let parsed = match name.as_str() {
        "APPENDUID" if nums.len() == 2 => n32(0).zip(n32(1)).map(|(v, u)| Code::AppendUid {
            uidvalidity: v,
            uid: u,
        }),
        "UIDVALIDITY" => n32(0).map(Code::UidValidity),
        "UIDNEXT" => n32(0).map(Code::UidNext),
        "HIGHESTMODSEQ" => nums.first().copied().flatten().map(Code::HighestModseq),
        "CAPABILITY" => Some(Code::Capability(
            args.split(' ').map(str::to_string).collect(),
        )),
        _ => None,
    };
    parsed.unwrap_or(Code::Other(name, args.to_string()))
}

fn fetch_data(items: Vec<Value>) -> Result<FetchData, ParseError> {
    if !items.len().is_multiple_of(2) {
        return Err(ParseError::OddFetch);
    }
    let mut d = FetchData::default();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let Some(key) = k.atom().map(str::to_ascii_uppercase) else {
            return Err(ParseError::Missing("FETCH item name"));
        };
        match key.as_str() {
            "UID" => {
                d.uid = Some(
                    v.number()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(ParseError::Missing("UID"))?,
                )
            }
            "FLAGS" => match v {
                Value::List(l) => d.flags = Some(atoms(l)),
                _ => return Err(ParseError::Missing("FLAGS list")),
            },
            "RFC822.SIZE" => d.size = Some(v.number().ok_or(ParseError::Missing("RFC822.SIZE"))?),
            "MODSEQ" => match v {
                Value::List(l) => d.modseq = l.first().and_then(Value::number),
                _ => return Err(ParseError::Missing("MODSEQ list")),
            },
            // Only the first body item is kept.
            k if (k.starts_with("BODY[") || k.starts_with("BINARY[") || k == "RFC822")
                && d.body.is_none() =>
            {
                d.body = match v {
                    Value::Str(s) => Some(s),
                    Value::Atom(a) if a.eq_ignore_ascii_case("NIL") => Some(Vec::new()),
                    _ => return Err(ParseError::Missing("body data")),
                };
            }
            _ => {}
        }
    }
    Ok(d)
}
