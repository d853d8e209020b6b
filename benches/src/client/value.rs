//! The generic IMAP data tokenizer (RFC 3501 §4): atoms, numbers, quoted strings, literals, NIL
//! and parenthesized lists, read from one complete frame. The response parser builds typed
//! responses on top of it.

use super::parse::ParseError;

/// One IMAP data item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom, a number, NIL, a flag (`\Seen`) or a section spec (`BODY[1.MIME]<0>`).
    Atom(String),
    /// A quoted string or a literal, as raw bytes.
    Str(Vec<u8>),
    /// A parenthesized list.
    List(Vec<Value>),
}

impl Value {
    /// The atom text, if this is an atom.
    pub fn atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// A number atom.
    pub fn number(&self) -> Option<u64> {
        self.atom().and_then(|a| a.parse().ok())
    }

    /// Atom or string as text (lossy for 8-bit strings).
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Atom(a) => Some(a.clone()),
            Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            Value::List(_) => None,
        }
    }
}

/// A cursor over one frame.
pub struct Cursor<'a> {
    b: &'a [u8],
    /// Current offset.
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `b` (the frame without its final CRLF).
    pub fn new(b: &'a [u8]) -> Cursor<'a> {
        Cursor { b, pos: 0 }
    }

    /// The next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// True when everything was consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    /// The unconsumed rest.
    pub fn rest(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or_default()
    }

    /// Consumes one SP if present; returns whether it did.
    pub fn space(&mut self) -> bool {
        if self.peek() == Some(b' ') {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `c` or fails.
    pub fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ParseError::Expected(c as char, self.pos))
        }
    }

    /// An atom: ATOM-CHARs, plus a bracketed section `[...]` (which may contain spaces and
    /// parens, e.g. `BODY[HEADER.FIELDS (SUBJECT)]`) and a partial `<n>` (RFC 3501 §7.4.2).
    pub fn atom(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            match c {
                b'[' => {
                    let close = self.b[self.pos..]
                        .iter()
                        .position(|&x| x == b']')
                        .ok_or(ParseError::Unterminated("section", self.pos))?;
                    self.pos += close + 1;
                }
                b' ' | b'(' | b')' | b'{' | b'"' | b']' => break,
                c if c < 0x20 || c == 0x7f => break,
                _ => self.pos += 1,
            }
        }
        if self.pos == start {
            return Err(ParseError::Expected('a', self.pos));
        }
        Ok(String::from_utf8_lossy(&self.b[start..self.pos]).into_owned())
    }

    /// A number (RFC 3501 `number`: 32-bit unsigned; we accept 64-bit for MODSEQ).
    pub fn number(&mut self) -> Result<u64, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.b[start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ParseError::Expected('0', start))
    }

    /// A quoted string with `\"` and `\\` escapes (RFC 3501 §4.3).
    fn quoted(&mut self) -> Result<Vec<u8>, ParseError> {
        let start = self.pos;
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => {
                    return Err(ParseError::Unterminated("quoted", start));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let Some(&next) = self.b.get(self.pos + 1) else {
                        return Err(ParseError::Unterminated("quoted", start));
                    };
                    if next != b'"' && next != b'\\' {
                        return Err(ParseError::BadEscape(self.pos));
                    }
                    out.push(next);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A literal `{n}CRLF<n octets>` (or `~{n}`), already complete inside the frame.
    fn literal(&mut self) -> Result<Vec<u8>, ParseError> {
        if self.peek() == Some(b'~') {
            self.pos += 1;
        }
        self.expect(b'{')?;
        let n = self.number()? as usize;
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        self.expect(b'}')?;
        self.expect(b'\r')?;
        self.expect(b'\n')?;
        let end = self.pos.checked_add(n).ok_or(ParseError::BadLiteral)?;
        let data = self
            .b
            .get(self.pos..end)
            .ok_or(ParseError::BadLiteral)?
            .to_vec();
        self.pos = end;
        Ok(data)
    }

    /// Any value.
    pub fn value(&mut self) -> Result<Value, ParseError> {
        self.value_depth(0)
    }

    fn value_depth(&mut self, depth: usize) -> Result<Value, ParseError> {
        // Bound recursion: a hostile server must not overflow our stack.
        if depth > 64 {
            return Err(ParseError::TooDeep);
        }
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.quoted()?)),
            Some(b'{') | Some(b'~') => Ok(Value::Str(self.literal()?)),
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        None => return Err(ParseError::Unterminated("list", self.pos)),
                        _ => {}
                    }
                    if !items.is_empty() {
                        self.expect(b' ')?;
                    }
                    items.push(self.value_depth(depth + 1)?);
                }
            }
            Some(_) => Ok(Value::Atom(self.atom()?)),
            None => Err(ParseError::Expected('v', self.pos)),
        }
    }

    /// Values separated by single spaces until the end of the frame.
    pub fn values_to_end(&mut self) -> Result<Vec<Value>, ParseError> {
        let mut out = Vec::new();
        while !self.at_end() {
            if !out.is_empty() {
                self.expect(b' ')?;
            }
            out.push(self.value()?);
        }
        Ok(out)
    }
}
