//! Property tests: analyze() and section() never panic and offsets are always sane,
//! on arbitrary bytes and on MIME-shaped random input.

#![allow(clippy::unwrap_used)] // tests may unwrap (HELPER_RULES)

use mailraft_mime::{BodyPart, MessageInfo, Section, SectionText, analyze, section};
use proptest::prelude::*;

fn check(part: &BodyPart, lo: u64, hi: u64, len: u64) {
    assert!(lo <= part.header_start);
    assert!(part.header_start <= part.header_end);
    assert!(part.header_end <= part.body_start);
    assert!(part.body_start <= part.body_end);
    assert!(part.body_end <= hi && hi <= len);
    assert_eq!(part.size, part.body_end - part.body_start);
    if part.is_multipart() {
        assert!(!part.children.is_empty());
    }
    for c in &part.children {
        check(c, part.body_start, part.body_end, len);
    }
    if let Some(m) = &part.message {
        assert!(part.body_start <= m.header_end && m.header_end <= part.body_end);
        check(&m.body, part.body_start, part.body_end, len);
    }
}

fn check_info(raw: &[u8], info: &MessageInfo) {
    assert_eq!(info.size, raw.len() as u64);
    assert!(info.header_len <= info.size);
    assert_eq!(info.body.header_end, info.header_len);
    check(&info.body, 0, info.size, info.size);
    let round = MessageInfo::from_bytes(&info.to_bytes().unwrap()).unwrap();
    assert_eq!(&round, info);
}

fn texts() -> Vec<SectionText> {
    vec![
        SectionText::Full,
        SectionText::Header,
        SectionText::Text,
        SectionText::Mime,
        SectionText::HeaderFields {
            names: vec!["subject".into(), "content-type".into()],
            not: false,
        },
        SectionText::HeaderFields {
            names: vec!["from".into()],
            not: true,
        },
    ]
}

fn exercise_sections(raw: &[u8], info: &MessageInfo, paths: &[Vec<u32>]) {
    for path in paths {
        for text in texts() {
            let s = Section {
                part: path.clone(),
                text,
            };
            if let Some(bytes) = section(raw, info, &s) {
                assert!(
                    matches!(s.text, SectionText::HeaderFields { .. }) || bytes.len() <= raw.len()
                );
            }
        }
    }
}

/// MIME-ish fragments so the generator reaches multipart and message/rfc822 code.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Content-Type: multipart/mixed; boundary=b\r\n".to_string()),
        Just("Content-Type: multipart/digest; boundary=\"c\"\n".to_string()),
        Just("Content-Type: message/rfc822\r\n".to_string()),
        Just("Content-Transfer-Encoding: base64\r\n".to_string()),
        Just("Subject: =?utf-8?q?x?=\r\n".to_string()),
        Just("From: G: a@b, <c@d>;\r\n".to_string()),
        Just("\r\n".to_string()),
        Just("\n".to_string()),
        Just("--b\r\n".to_string()),
        Just("--b--\r\n".to_string()),
        Just("--c\n".to_string()),
        Just("--c--".to_string()),
        Just(" folded\r\n".to_string()),
        "[ -~]{0,20}",
        "[\\x00-\\xff]{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        let info = analyze(&raw);
        check_info(&raw, &info);
        exercise_sections(&raw, &info, &[vec![], vec![1], vec![2], vec![1, 1], vec![0]]);
        let _ = mailraft_mime::body_text(&raw);
        let _ = mailraft_mime::header_values(&raw, "subject");
        let _ = mailraft_mime::sent_date(&raw);
    }

    #[test]
    fn mime_shaped(parts in proptest::collection::vec(fragment(), 0..40)) {
        let raw = parts.concat().into_bytes();
        let info = analyze(&raw);
        check_info(&raw, &info);
        let paths = [vec![], vec![1], vec![2], vec![1, 1], vec![1, 2], vec![2, 1], vec![1, 1, 1], vec![3, 1, 2]];
        exercise_sections(&raw, &info, &paths);
        let _ = mailraft_mime::body_text(&raw);
        let _ = mailraft_mime::header_values(&raw, "from");
    }
}
