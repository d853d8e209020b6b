//! Entry point of the `mime` fuzz target (`fuzz/`) and of its corpus replay test
//! (`tests/fuzz_corpus.rs`): arbitrary bytes as an APPENDed message. Must not panic; asserts the
//! invariants FETCH relies on, so a failed assertion is a finding like a crash.

use crate::structure::BodyPart;
use crate::{MAX_DEPTH, MessageInfo, Section, SectionText, analyze, body_text, header_values, section, sent_date};

/// Analyses `raw` as APPEND does and reads it back as FETCH and SEARCH do.
///
/// Checks: the stored encoding round-trips; every part's offsets satisfy
/// `header_start <= header_end == body_start <= body_end <= size` and lie inside their parent;
/// nesting stops at [`MAX_DEPTH`]; a multipart has children; every section of every part path
/// either is absent or is a slice of the message (HEADER.FIELDS aside, which is assembled).
pub fn analyze_message(raw: &[u8]) {
    let info = analyze(raw);
    assert_eq!(info.size, raw.len() as u64);
    assert!(info.header_len <= info.size, "header_len {} past the end", info.header_len);
    let bytes = info.to_bytes().expect("encoding a MessageInfo cannot fail");
    assert_eq!(MessageInfo::from_bytes(&bytes).ok().as_ref(), Some(&info), "storage encoding does not round-trip");
    check_part(&info.body, 0, info.size, 0);

    let mut paths = vec![Vec::new()];
    part_paths(&info.body, &mut Vec::new(), &mut paths, 0);
    for path in paths {
        for text in [
            SectionText::Full,
            SectionText::Header,
            SectionText::Text,
            SectionText::Mime,
            SectionText::HeaderFields { names: vec!["subject".into(), "from".into()], not: false },
            SectionText::HeaderFields { names: vec!["subject".into()], not: true },
        ] {
            let assembled = matches!(text, SectionText::HeaderFields { .. });
            let s = Section { part: path.clone(), text };
            if let Some(bytes) = section(raw, &info, &s)
                && !assembled
            {
                assert!(is_slice_of(&bytes, raw), "section {s:?} is not a slice of the message");
            }
        }
    }
    // SEARCH's decoders: only "no panic" to check.
    header_values(raw, "subject");
    header_values(raw, "from");
    sent_date(raw);
    body_text(raw);
}

/// Offsets of `part` (at nesting `depth`) inside `[lo, hi]`, recursively.
fn check_part(part: &BodyPart, lo: u64, hi: u64, depth: usize) {
    assert!(depth <= MAX_DEPTH + 1, "nesting {depth} past MAX_DEPTH");
    assert!(
        lo <= part.header_start
            && part.header_start <= part.header_end
            && part.header_end == part.body_start
            && part.body_start <= part.body_end
            && part.body_end <= hi,
        "bad offsets {}..{}..{}..{} inside {lo}..{hi}",
        part.header_start,
        part.header_end,
        part.body_start,
        part.body_end
    );
    assert_eq!(part.size, part.body_end - part.body_start, "size differs from the body's offsets");
    if part.is_multipart() {
        assert!(!part.children.is_empty(), "multipart without children");
    }
    for child in &part.children {
        check_part(child, part.body_start, part.body_end, depth + 1);
    }
    if let Some(message) = &part.message {
        assert!(
            part.body_start <= message.header_end && message.header_end <= part.body_end,
            "encapsulated header end {} outside {}..{}",
            message.header_end,
            part.body_start,
            part.body_end
        );
        assert_eq!(message.body.header_start, part.body_start, "encapsulated body does not start at the part body");
        check_part(&message.body, part.body_start, part.body_end, depth + 1);
    }
}

/// Most part paths looked at per message: hostile input can have thousands of parts.
const MAX_PATHS: usize = 256;

/// RFC 3501 §6.4.5 part numbers of every part below `container` (a message's body), encapsulated
/// messages included, depth-first, numbered as [`crate::resolve`] reads them.
fn part_paths(container: &BodyPart, prefix: &mut Vec<u32>, out: &mut Vec<Vec<u32>>, depth: usize) {
    if depth > MAX_DEPTH + 1 {
        return;
    }
    // A body that is not multipart is its own single part 1.
    let parts: Vec<&BodyPart> =
        if container.is_multipart() { container.children.iter().collect() } else { vec![container] };
    for (i, part) in parts.into_iter().enumerate() {
        if out.len() >= MAX_PATHS {
            return;
        }
        prefix.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
        out.push(prefix.clone());
        if let Some(message) = &part.message {
            part_paths(&message.body, prefix, out, depth + 1);
        } else if part.is_multipart() {
            part_paths(part, prefix, out, depth + 1);
        }
        prefix.pop();
    }
}

/// Whether `inner` lies inside `outer`'s memory (a borrowed slice of it).
fn is_slice_of(inner: &[u8], outer: &[u8]) -> bool {
    let (start, end) = (outer.as_ptr() as usize, outer.as_ptr() as usize + outer.len());
    let p = inner.as_ptr() as usize;
    inner.is_empty() || (start <= p && p + inner.len() <= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_nested_message() {
        analyze_message(
            b"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n\
              Subject: in\r\n\r\nbody\r\n--x\r\n\r\nsecond\r\n--x--\r\n",
        );
        analyze_message(b"");
        analyze_message(b"\r\n\r\n");
    }
}
