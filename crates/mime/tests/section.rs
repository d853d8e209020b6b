//! BODY[section] extraction (RFC 3501 §6.4.5) on hand-written messages, LF and CRLF.

#![allow(clippy::unwrap_used)] // tests may unwrap (HELPER_RULES)

mod common;

use common::{ALTERNATIVE, MIXED, NESTED, SIMPLE, both, crlf, fetch, spec};
use mailraft_mime::{Section, SectionText, analyze, section};

/// Converts an expected LF string to the line-ending style of `raw`.
fn eol(raw: &[u8], lf: &str) -> String {
    if raw.contains(&b'\r') {
        lf.replace('\n', "\r\n")
    } else {
        lf.to_string()
    }
}

#[test]
fn top_level_sections_of_simple_message() {
    for raw in both(SIMPLE) {
        let info = analyze(&raw);
        let all = String::from_utf8(raw.clone()).unwrap();
        assert_eq!(fetch(&raw, &info, "").unwrap(), all);
        let header = fetch(&raw, &info, "HEADER").unwrap();
        assert!(header.starts_with("From: Alice"));
        assert!(header.ends_with(&eol(&raw, "<m1@example.com>\n\n")));
        let text = fetch(&raw, &info, "TEXT").unwrap();
        assert_eq!(text, eol(&raw, "Hi Bob,\nhow are you?\n"));
        assert_eq!(header.len() + text.len(), raw.len());
        // Non-multipart message: part 1 is its body.
        assert_eq!(fetch(&raw, &info, "1").unwrap(), text);
        assert_eq!(fetch(&raw, &info, "1.MIME").unwrap(), header);
        assert_eq!(fetch(&raw, &info, "2"), None);
        assert_eq!(fetch(&raw, &info, "1.1"), None);
        assert_eq!(fetch(&raw, &info, "0"), None);
        assert_eq!(fetch(&raw, &info, "1.HEADER"), None);
        assert_eq!(fetch(&raw, &info, "MIME"), None);
    }
}

#[test]
fn header_fields_and_not() {
    for raw in both(SIMPLE) {
        let info = analyze(&raw);
        assert_eq!(
            fetch(&raw, &info, "HEADER.FIELDS (subject FROM)").unwrap(),
            eol(&raw, "From: Alice <alice@example.com>\nSubject: Hello\n\n")
        );
        assert_eq!(
            fetch(&raw, &info, "HEADER.FIELDS.NOT (subject from to date)").unwrap(),
            eol(&raw, "Message-ID: <m1@example.com>\n\n")
        );
        assert_eq!(
            fetch(&raw, &info, "HEADER.FIELDS (X-None)").unwrap(),
            eol(&raw, "\n")
        );
    }
}

#[test]
fn header_fields_keep_folding_and_repeats() {
    let raw = crlf("Received: from a\n\tby b\nSubject: x\nreceived: from c\n\nbody");
    let info = analyze(&raw);
    assert_eq!(
        fetch(&raw, &info, "HEADER.FIELDS (RECEIVED)").unwrap(),
        "Received: from a\r\n\tby b\r\nreceived: from c\r\n\r\n"
    );
}

#[test]
fn header_fields_without_blank_line() {
    let raw = b"Subject: only header";
    let info = analyze(raw);
    assert_eq!(fetch(raw, &info, "HEADER").unwrap(), "Subject: only header");
    assert_eq!(
        fetch(raw, &info, "HEADER.FIELDS (SUBJECT)").unwrap(),
        "Subject: only header\r\n\r\n"
    );
    assert_eq!(fetch(raw, &info, "TEXT").unwrap(), "");
}

#[test]
fn multipart_alternative_parts() {
    for raw in both(ALTERNATIVE) {
        let info = analyze(&raw);
        assert_eq!(fetch(&raw, &info, "1").unwrap(), "plain text");
        assert_eq!(fetch(&raw, &info, "2").unwrap(), "<p>html=20text</p>");
        assert_eq!(
            fetch(&raw, &info, "1.MIME").unwrap(),
            eol(&raw, "Content-Type: text/plain; charset=utf-8\n\n")
        );
        assert_eq!(
            fetch(&raw, &info, "2.MIME").unwrap(),
            eol(
                &raw,
                "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
            )
        );
        assert_eq!(fetch(&raw, &info, "3"), None);
        assert_eq!(fetch(&raw, &info, "1.1"), None);
        assert_eq!(fetch(&raw, &info, "1.TEXT"), None);
        assert!(
            fetch(&raw, &info, "TEXT")
                .unwrap()
                .starts_with("This is the preamble.")
        );
    }
}

#[test]
fn mixed_nested_parts() {
    for raw in both(MIXED) {
        let info = analyze(&raw);
        assert_eq!(fetch(&raw, &info, "1.1").unwrap(), "see attached");
        assert_eq!(fetch(&raw, &info, "1.2").unwrap(), "<b>see attached</b>");
        assert_eq!(
            fetch(&raw, &info, "2").unwrap(),
            eol(&raw, "JVBERi0xLjQKJcfs\nj6IKMSAwIG9iago=")
        );
        assert!(
            fetch(&raw, &info, "1")
                .unwrap()
                .starts_with("--outer-inner")
        );
        assert_eq!(
            fetch(&raw, &info, "1.MIME").unwrap(),
            eol(
                &raw,
                "Content-Type: multipart/alternative; boundary=outer-inner\n\n"
            )
        );
        assert!(
            fetch(&raw, &info, "2.MIME")
                .unwrap()
                .starts_with("Content-Type: application/pdf")
        );
        assert_eq!(fetch(&raw, &info, "1.3"), None);
        assert_eq!(fetch(&raw, &info, "2.1"), None);
    }
}

#[test]
fn encapsulated_message_sections() {
    for raw in both(NESTED) {
        let info = analyze(&raw);
        let whole = fetch(&raw, &info, "2").unwrap();
        assert!(whole.starts_with("From: inner@example.com"));
        assert!(whole.ends_with("--Y--"));
        let header = fetch(&raw, &info, "2.HEADER").unwrap();
        assert!(header.starts_with("From: inner@example.com"));
        assert!(header.ends_with(&eol(&raw, "boundary=\"Y\"\n\n")));
        let text = fetch(&raw, &info, "2.TEXT").unwrap();
        assert_eq!(header.len() + text.len(), whole.len());
        assert!(text.starts_with("--Y"));
        assert_eq!(fetch(&raw, &info, "2.1").unwrap(), "inner plain");
        assert_eq!(fetch(&raw, &info, "2.2").unwrap(), "<p>inner html</p>");
        assert_eq!(
            fetch(&raw, &info, "2.2.MIME").unwrap(),
            eol(&raw, "Content-Type: text/html\n\n")
        );
        assert_eq!(
            fetch(&raw, &info, "2.HEADER.FIELDS (SUBJECT)").unwrap(),
            eol(&raw, "Subject: =?utf-8?q?inner_caf=C3=A9?=\n\n")
        );
        assert_eq!(
            fetch(&raw, &info, "2.MIME").unwrap(),
            eol(
                &raw,
                "Content-Type: message/rfc822\nContent-Description: forwarded\n\n"
            )
        );
        // Non-multipart encapsulated message: N.1 is its body.
        assert_eq!(fetch(&raw, &info, "3.1").unwrap(), "simple inner body");
        assert_eq!(fetch(&raw, &info, "3.TEXT").unwrap(), "simple inner body");
        assert_eq!(
            fetch(&raw, &info, "3.HEADER").unwrap(),
            eol(&raw, "Subject: simple inner\n\n")
        );
        assert_eq!(
            fetch(&raw, &info, "3.1.MIME").unwrap(),
            eol(&raw, "Subject: simple inner\n\n")
        );
        assert_eq!(fetch(&raw, &info, "3.2"), None);
        assert_eq!(fetch(&raw, &info, "2.3"), None);
        assert_eq!(fetch(&raw, &info, "1.HEADER"), None);
    }
}

#[test]
fn top_level_message_rfc822() {
    let raw =
        crlf("Subject: outer\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body\n");
    let info = analyze(&raw);
    assert_eq!(
        fetch(&raw, &info, "1").unwrap(),
        "Subject: inner\r\n\r\ninner body\r\n"
    );
    assert_eq!(
        fetch(&raw, &info, "1.HEADER").unwrap(),
        "Subject: inner\r\n\r\n"
    );
    assert_eq!(fetch(&raw, &info, "1.TEXT").unwrap(), "inner body\r\n");
    assert_eq!(fetch(&raw, &info, "1.1").unwrap(), "inner body\r\n");
    assert_eq!(fetch(&raw, &info, "1.2"), None);
}

#[test]
fn borrowed_except_header_fields() {
    let raw = crlf(SIMPLE);
    let info = analyze(&raw);
    assert!(matches!(
        section(&raw, &info, &spec("TEXT")),
        Some(std::borrow::Cow::Borrowed(_))
    ));
    assert!(matches!(
        section(&raw, &info, &spec("HEADER.FIELDS (TO)")),
        Some(std::borrow::Cow::Owned(_))
    ));
}

#[test]
fn mismatched_info_does_not_panic() {
    let raw = crlf(NESTED);
    let info = analyze(&raw);
    let short = &raw[..20];
    for s in [
        "",
        "HEADER",
        "TEXT",
        "2",
        "2.HEADER",
        "2.HEADER.FIELDS (A)",
        "2.TEXT",
        "2.1.MIME",
    ] {
        let _ = fetch(short, &info, s);
    }
    let huge = Section {
        part: vec![u32::MAX, 0],
        text: SectionText::Full,
    };
    assert_eq!(section(&raw, &info, &huge), None);
}
