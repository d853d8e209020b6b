//! Splits the server's byte stream into whole responses: a line plus every literal it announces
//! (RFC 3501 §4.3: `{n}CRLF` followed by exactly n octets, after which the line continues).
//!
//! Sans-I/O: [`Framer::push`] bytes as they arrive in any chunking, then call
//! [`Framer::next_frame`] until it returns `None`. The scan position is kept between calls so a
//! large literal arriving in small reads is not rescanned.

use super::parse::ParseError;

/// Incremental response splitter with a size cap.
#[derive(Debug)]
pub struct Framer {
    /// Bytes received and not yet returned as frames.
    buf: Vec<u8>,
    /// Offset in `buf` where the current line segment of the pending frame starts (after the
    /// last complete literal), so scanning resumes there.
    seg_start: usize,
    /// A frame larger than this is an error rather than unbounded memory growth.
    max_frame: usize,
}

impl Framer {
    /// A framer refusing responses larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Framer {
        Framer {
            buf: Vec::with_capacity(8192),
            seg_start: 0,
            max_frame,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet framed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete response (line with literals inlined, ending in CRLF), if buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ParseError> {
        loop {
            let Some(rel) = find_crlf(&self.buf[self.seg_start..]) else {
                if self.buf.len() > self.max_frame {
                    return Err(ParseError::TooLarge(self.buf.len()));
                }
                return Ok(None);
            };
            let line_end = self.seg_start + rel; // index of '\r'
            match literal_len(&self.buf[self.seg_start..line_end])? {
                Some(n) => {
                    let lit_end = line_end
                        .checked_add(2)
                        .and_then(|v| v.checked_add(n))
                        .ok_or(ParseError::TooLarge(usize::MAX))?;
                    if lit_end > self.max_frame {
                        return Err(ParseError::TooLarge(lit_end));
                    }
                    if self.buf.len() < lit_end {
                        return Ok(None);
                    }
                    self.seg_start = lit_end;
                }
                None => {
                    let end = line_end + 2;
                    let rest = self.buf.split_off(end);
                    let frame = std::mem::replace(&mut self.buf, rest);
                    self.seg_start = 0;
                    return Ok(Some(frame));
                }
            }
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// If the line segment ends with a literal announcement `{n}` (or `~{n}`, RFC 3516 binary), n.
pub fn literal_len(seg: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(body) = seg.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = body.iter().rposition(|&c| c == b'{') else {
        return Ok(None);
    };
    let digits = &body[open + 1..];
    // Servers never send LITERAL+ `{n+}`, but tolerate it.
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let text = std::str::from_utf8(digits).map_err(|_| ParseError::BadLiteral)?;
    text.parse::<usize>()
        .map(Some)
        .map_err(|_| ParseError::BadLiteral)
}
