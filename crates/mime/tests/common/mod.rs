//! Shared fixtures: hand-written messages, written with LF and converted to CRLF so
//! every test can run against both line-ending styles.
#![allow(dead_code)]

use mailraft_mime::{MessageInfo, Section, SectionText, section};

/// Converts LF line endings to CRLF.
pub fn crlf(lf: &str) -> Vec<u8> {
    lf.replace('\n', "\r\n").into_bytes()
}

/// Both variants of a fixture.
pub fn both(lf: &str) -> [Vec<u8>; 2] {
    [lf.as_bytes().to_vec(), crlf(lf)]
}

/// Parses a section spec like "1.2.MIME", "HEADER", "2.HEADER.FIELDS (a b)" or "".
pub fn spec(s: &str) -> Section {
    let mut part = Vec::new();
    let mut rest = s;
    loop {
        let (head, tail) = rest.split_once('.').unwrap_or((rest, ""));
        match head.parse::<u32>() {
            Ok(n) => {
                part.push(n);
                rest = tail;
            }
            Err(_) => break,
        }
    }
    let upper = rest.to_ascii_uppercase();
    let names = |list: &str| -> Vec<String> {
        list.trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let text = if upper.is_empty() {
        SectionText::Full
    } else if upper == "HEADER" {
        SectionText::Header
    } else if upper == "TEXT" {
        SectionText::Text
    } else if upper == "MIME" {
        SectionText::Mime
    } else if let Some(list) = upper.strip_prefix("HEADER.FIELDS.NOT") {
        SectionText::HeaderFields {
            names: names(list),
            not: true,
        }
    } else if let Some(list) = upper.strip_prefix("HEADER.FIELDS") {
        SectionText::HeaderFields {
            names: names(list),
            not: false,
        }
    } else {
        panic!("bad spec {s}")
    };
    Section { part, text }
}

/// BODY[spec] as a lossy string, or None.
pub fn fetch(raw: &[u8], info: &MessageInfo, s: &str) -> Option<String> {
    section(raw, info, &spec(s)).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub const SIMPLE: &str = "From: Alice <alice@example.com>\n\
To: Bob <bob@example.org>\n\
Subject: Hello\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
Message-ID: <m1@example.com>\n\
\n\
Hi Bob,\n\
how are you?\n";

pub const ALTERNATIVE: &str = "From: a@example.com\n\
Subject: alt\n\
MIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=\"b1\"\n\
\n\
This is the preamble.\n\
--b1\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
plain text\n\
--b1\n\
Content-Type: text/html; charset=utf-8\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
<p>html=20text</p>\n\
--b1--\n\
epilogue\n";

pub const MIXED: &str = "From: a@example.com\n\
Subject: report\n\
Content-Type: multipart/mixed; boundary=outer\n\
\n\
--outer\n\
Content-Type: multipart/alternative; boundary=outer-inner\n\
\n\
--outer-inner\n\
Content-Type: text/plain\n\
\n\
see attached\n\
--outer-inner\n\
Content-Type: text/html\n\
\n\
<b>see attached</b>\n\
--outer-inner--\n\
--outer\n\
Content-Type: application/pdf; name=\"r.pdf\"\n\
Content-Transfer-Encoding: base64\n\
Content-Disposition: attachment; filename=\"r.pdf\"\n\
Content-ID: <pdf1@example.com>\n\
Content-Description: The report\n\
\n\
JVBERi0xLjQKJcfs\n\
j6IKMSAwIG9iago=\n\
--outer--\n";

pub const NESTED: &str = "From: outer@example.com\n\
Subject: fwd\n\
Content-Type: multipart/mixed; boundary=\"X\"\n\
\n\
--X\n\
Content-Type: text/plain\n\
\n\
forwarding\n\
--X\n\
Content-Type: message/rfc822\n\
Content-Description: forwarded\n\
\n\
From: inner@example.com\n\
To: someone@example.net\n\
Subject: =?utf-8?q?inner_caf=C3=A9?=\n\
Content-Type: multipart/alternative; boundary=\"Y\"\n\
\n\
--Y\n\
Content-Type: text/plain\n\
\n\
inner plain\n\
--Y\n\
Content-Type: text/html\n\
\n\
<p>inner html</p>\n\
--Y--\n\
--X\n\
Content-Type: message/rfc822\n\
\n\
Subject: simple inner\n\
\n\
simple inner body\n\
--X--\n";
