//! BODYSTRUCTURE / ENVELOPE content of hand-written messages, LF and CRLF.

#![allow(clippy::unwrap_used)] // tests may unwrap (HELPER_RULES)

mod common;

use common::{ALTERNATIVE, MIXED, NESTED, SIMPLE, both};
use mailraft_mime::{Address, BodyPart, analyze};

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// Checks the offset invariants of a tree against the raw message.
fn check_offsets(raw: &[u8], part: &BodyPart, lo: u64, hi: u64) {
    assert!(lo <= part.header_start, "{part:?}");
    assert!(part.header_start <= part.header_end);
    assert_eq!(part.header_end, part.body_start);
    assert!(part.body_start <= part.body_end);
    assert!(part.body_end <= hi && hi <= raw.len() as u64);
    assert_eq!(part.size, part.body_end - part.body_start);
    for child in &part.children {
        check_offsets(raw, child, part.body_start, part.body_end);
    }
    if let Some(m) = &part.message {
        assert_eq!(m.body.header_start, part.body_start);
        assert_eq!(m.body.header_end, m.header_end);
        assert_eq!(m.body.body_end, part.body_end);
        check_offsets(raw, &m.body, part.body_start, part.body_end);
    }
}

fn body_of<'a>(raw: &'a [u8], part: &BodyPart) -> &'a [u8] {
    &raw[part.body_start as usize..part.body_end as usize]
}

#[test]
fn simple_text_message() {
    for raw in both(SIMPLE) {
        let info = analyze(&raw);
        assert_eq!(info.size, raw.len() as u64);
        let body_len = if raw.contains(&b'\r') { 23 } else { 21 };
        assert_eq!(info.header_len as usize, raw.len() - body_len);
        assert_eq!(info.lines, 8);
        let b = &info.body;
        assert_eq!(
            (b.content_type.as_str(), b.subtype.as_str()),
            ("text", "plain")
        );
        assert_eq!(b.params, vec![p("charset", "us-ascii")]);
        assert_eq!(b.encoding, "7bit");
        assert_eq!(b.lines, 2);
        assert_eq!(b.header_start, 0);
        assert_eq!(b.body_start, info.header_len);
        assert!(body_of(&raw, b).starts_with(b"Hi Bob,"));
        assert!(b.children.is_empty() && b.message.is_none());
        let e = &info.envelope;
        assert_eq!(e.subject.as_deref(), Some("Hello"));
        assert_eq!(e.date.as_deref(), Some("Tue, 2 Jan 2024 10:00:00 +0000"));
        assert_eq!(e.message_id.as_deref(), Some("<m1@example.com>"));
        assert_eq!(
            e.from,
            vec![Address {
                name: Some("Alice".into()),
                adl: None,
                mailbox: Some("alice".into()),
                host: Some("example.com".into())
            }]
        );
        assert_eq!(e.sender, e.from);
        assert_eq!(e.reply_to, e.from);
        assert_eq!(e.to[0].host.as_deref(), Some("example.org"));
        assert_eq!(e.in_reply_to, None);
        check_offsets(&raw, b, 0, info.size);
    }
}

#[test]
fn multipart_alternative() {
    for raw in both(ALTERNATIVE) {
        let info = analyze(&raw);
        let b = &info.body;
        assert_eq!(
            (b.content_type.as_str(), b.subtype.as_str()),
            ("multipart", "alternative")
        );
        assert_eq!(b.params, vec![p("boundary", "b1")]);
        assert_eq!(b.children.len(), 2);
        let (t, h) = (&b.children[0], &b.children[1]);
        assert_eq!(t.subtype, "plain");
        assert_eq!(t.params, vec![p("charset", "utf-8")]);
        assert_eq!(body_of(&raw, t), b"plain text");
        assert_eq!(t.size, 10);
        assert_eq!(t.lines, 1);
        assert_eq!(h.subtype, "html");
        assert_eq!(h.encoding, "quoted-printable");
        assert_eq!(body_of(&raw, h), b"<p>html=20text</p>");
        // The multipart body covers preamble and epilogue.
        assert_eq!(b.body_end, info.size);
        assert!(body_of(&raw, b).starts_with(b"This is the preamble."));
        check_offsets(&raw, b, 0, info.size);
    }
}

#[test]
fn mixed_with_nested_alternative_and_base64_attachment() {
    for raw in both(MIXED) {
        let info = analyze(&raw);
        let b = &info.body;
        assert_eq!(b.subtype, "mixed");
        assert_eq!(b.children.len(), 2);
        let alt = &b.children[0];
        assert_eq!(alt.subtype, "alternative");
        assert_eq!(alt.children.len(), 2);
        assert_eq!(body_of(&raw, &alt.children[0]), b"see attached");
        assert_eq!(body_of(&raw, &alt.children[1]), b"<b>see attached</b>");
        let pdf = &b.children[1];
        assert_eq!(
            (pdf.content_type.as_str(), pdf.subtype.as_str()),
            ("application", "pdf")
        );
        assert_eq!(pdf.params, vec![p("name", "r.pdf")]);
        assert_eq!(pdf.encoding, "base64");
        assert_eq!(pdf.id.as_deref(), Some("<pdf1@example.com>"));
        assert_eq!(pdf.description.as_deref(), Some("The report"));
        assert_eq!(
            pdf.disposition,
            Some(("attachment".into(), vec![p("filename", "r.pdf")]))
        );
        assert_eq!(pdf.lines, 0);
        let expected: &[u8] = if raw.contains(&b'\r') {
            b"JVBERi0xLjQKJcfs\r\nj6IKMSAwIG9iago="
        } else {
            b"JVBERi0xLjQKJcfs\nj6IKMSAwIG9iago="
        };
        assert_eq!(body_of(&raw, pdf), expected);
        check_offsets(&raw, b, 0, info.size);
    }
}

#[test]
fn nested_message_rfc822() {
    for raw in both(NESTED) {
        let info = analyze(&raw);
        let b = &info.body;
        assert_eq!(b.children.len(), 3);
        let fwd = &b.children[1];
        assert_eq!(
            (fwd.content_type.as_str(), fwd.subtype.as_str()),
            ("message", "rfc822")
        );
        assert_eq!(fwd.description.as_deref(), Some("forwarded"));
        assert!(fwd.params.is_empty());
        let m = fwd.message.as_ref().expect("encapsulated");
        assert_eq!(
            m.envelope.subject.as_deref(),
            Some("=?utf-8?q?inner_caf=C3=A9?=")
        );
        assert_eq!(m.envelope.from[0].mailbox.as_deref(), Some("inner"));
        assert_eq!(m.envelope.sender, m.envelope.from);
        assert_eq!(m.body.subtype, "alternative");
        assert_eq!(m.body.children.len(), 2);
        assert_eq!(body_of(&raw, &m.body.children[0]), b"inner plain");
        assert!(fwd.lines > 0);
        assert!(body_of(&raw, fwd).starts_with(b"From: inner@example.com"));
        assert!(body_of(&raw, fwd).ends_with(b"--Y--"));
        let simple = &b.children[2];
        let m2 = simple.message.as_ref().expect("encapsulated");
        assert_eq!(m2.body.subtype, "plain");
        assert_eq!(body_of(&raw, &m2.body), b"simple inner body");
        check_offsets(&raw, b, 0, info.size);
    }
}

#[test]
fn encoded_message_rfc822_is_opaque() {
    let raw = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQpib2R5\r\n";
    let info = analyze(raw);
    assert_eq!(info.body.subtype, "rfc822");
    assert!(info.body.message.is_none());
}

#[test]
fn digest_parts_default_to_message_rfc822() {
    let raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nbody one\r\n--d--\r\n";
    let info = analyze(raw);
    let child = &info.body.children[0];
    assert_eq!(
        (child.content_type.as_str(), child.subtype.as_str()),
        ("message", "rfc822")
    );
    let m = child.message.as_ref().expect("encapsulated");
    assert_eq!(m.envelope.subject.as_deref(), Some("one"));
}

#[test]
fn group_addresses_in_envelope() {
    let raw = b"From: a@x\r\nTo: Friends: b@y, \"C D\" <c@z>;, e@w\r\nCc: undisclosed-recipients:;\r\n\r\n";
    let e = analyze(raw).envelope;
    let shape: Vec<(Option<&str>, Option<&str>)> =
        e.to.iter()
            .map(|a| (a.mailbox.as_deref(), a.host.as_deref()))
            .collect();
    assert_eq!(
        shape,
        vec![
            (Some("Friends"), None),
            (Some("b"), Some("y")),
            (Some("c"), Some("z")),
            (None, None),
            (Some("e"), Some("w")),
        ]
    );
    assert_eq!(e.to[2].name.as_deref(), Some("C D"));
    assert_eq!(e.cc.len(), 2);
    assert_eq!(e.cc[0].mailbox.as_deref(), Some("undisclosed-recipients"));
    assert_eq!(e.cc[1], Address::default());
}

#[test]
fn missing_headers_and_headerless_input() {
    let info = analyze(b"\r\njust a body\r\n");
    assert_eq!(info.header_len, 2);
    assert_eq!(info.envelope, Default::default());
    assert_eq!(info.body.subtype, "plain");
    assert_eq!(info.body.size, 13);

    let info = analyze(b"no header here\nsecond line");
    assert_eq!(info.header_len, 0);
    assert_eq!(info.body.size, 26);
    assert_eq!(info.body.lines, 2);
}

#[test]
fn empty_input() {
    let info = analyze(b"");
    assert_eq!(info.size, 0);
    assert_eq!(info.header_len, 0);
    assert_eq!(info.lines, 0);
    assert_eq!(
        (info.body.content_type.as_str(), info.body.subtype.as_str()),
        ("text", "plain")
    );
    assert_eq!(info.body.body_end, 0);
}

#[test]
fn garbage_bytes() {
    let raw: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
    let info = analyze(&raw);
    assert_eq!(info.size, 2000);
    assert_eq!(info.body.content_type, "text");
    check_offsets(&raw, &info.body, 0, info.size);
}

#[test]
fn broken_multiparts_degrade_to_text() {
    // No boundary parameter.
    let info = analyze(b"Content-Type: multipart/mixed\r\n\r\nbody\r\n");
    assert_eq!(
        (info.body.content_type.as_str(), info.body.subtype.as_str()),
        ("text", "plain")
    );
    // Boundary never appears.
    let info = analyze(b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nbody\r\n");
    assert_eq!(info.body.content_type, "text");
    assert!(info.body.children.is_empty());
    // Missing close delimiter: last part runs to the end.
    let raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\npart\r\n";
    let info = analyze(raw);
    assert_eq!(info.body.children.len(), 1);
    assert_eq!(info.body.children[0].body_end, raw.len() as u64);
}

#[test]
fn invalid_content_type_defaults_and_params_order() {
    let info = analyze(b"Content-Type: bogus\r\n\r\nx");
    assert_eq!(info.body.params, vec![p("charset", "us-ascii")]);
    let info = analyze(b"Content-Type: text/plain; format=flowed\r\n\r\nx");
    assert_eq!(
        info.body.params,
        vec![p("charset", "us-ascii"), p("format", "flowed")]
    );
}

#[test]
fn extension_fields() {
    let raw = b"Content-Type: text/plain\r\nContent-Language: en, fr\r\nContent-Location: http://example.com/a\r\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\nContent-Disposition: inline\r\n\r\nx";
    let b = analyze(raw).body;
    assert_eq!(b.language, vec!["en".to_string(), "fr".to_string()]);
    assert_eq!(b.location.as_deref(), Some("http://example.com/a"));
    assert_eq!(b.md5.as_deref(), Some("Q2hlY2sgSW50ZWdyaXR5IQ=="));
    assert_eq!(b.disposition, Some(("inline".to_string(), vec![])));
}

#[test]
fn deep_nesting_is_capped() {
    let mut raw = String::new();
    for i in 0..200 {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    raw.push_str("\r\nleaf\r\n");
    let info = analyze(raw.as_bytes());
    let mut depth = 0;
    let mut part = &info.body;
    while let Some(child) = part.children.first() {
        part = child;
        depth += 1;
    }
    assert!(depth <= mailraft_mime::MAX_DEPTH);
    assert!(info.to_bytes().is_ok());
}
