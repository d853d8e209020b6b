//! Render tests: parse a real FETCH command with imap-codec, render against a real message
//! analysed by `mailraft_mime`, encode the response with imap-codec and compare with the RFC 3501
//! syntax expected on the wire.

use std::num::NonZeroU32;

use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::{CommandCodec, ResponseCodec};
use proto::BodyWanted;

use super::*;

const SIMPLE: &[u8] = b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
From: Alice <alice@example.com>\r\n\
Subject: hi\r\n\
To: bob@example.org, Undisclosed: ;\r\n\
Message-ID: <x@y>\r\n\
Content-Type: text/plain; charset=US-ASCII\r\n\
\r\n\
abc";

const MULTI: &[u8] = b"From: a@b.c\r\n\
Subject: multi\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
caf=C3=A9\r\n\
--XX\r\n\
Content-Type: application/octet-stream; name=\"d.bin\"\r\n\
Content-Disposition: attachment; filename=\"d.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAEC\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
From: x@y.z\r\n\
\r\n\
inner body\r\n\
--XX--\r\n";

/// Item names from a real FETCH command line.
fn items(spec: &str) -> Vec<MessageDataItemName<'static>> {
    let line = format!("a FETCH 1 {spec}\r\n");
    let (_, cmd) = CommandCodec::new().decode(line.as_bytes()).expect("parses");
    match cmd.body {
        CommandBody::Fetch {
            macro_or_item_names,
            ..
        } => expand(&macro_or_item_names),
        other => panic!("not a fetch: {other:?}"),
    }
}

fn message(raw: &[u8]) -> proto::FetchedMessage {
    proto::FetchedMessage {
        uid: 42,
        flags: vec!["\\Seen".into(), "$Junk".into()],
        modseq: 7,
        // 2024-03-01 12:34:56 UTC, given in +0200.
        internal_date: 1_709_296_496,
        tz_offset_minutes: 120,
        size: raw.len() as u64,
        structure: Vec::new(),
        body: raw.to_vec(),
        save_date: 0,
    }
}

/// Renders and encodes `* 1 FETCH (...)`.
fn render(raw: &[u8], spec: &str, opts: &RenderOptions) -> String {
    let info = mailraft_mime::analyze(raw);
    let out = fetch_items(&items(spec), &message(raw), Some(&info), 1, opts).expect("renders");
    encode(out)
}

fn encode(items: Vec<MessageDataItem<'static>>) -> String {
    let resp = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::try_from(items).expect("non-empty"),
    });
    String::from_utf8(ResponseCodec::new().encode(&resp).dump()).expect("utf-8")
}

#[test]
fn simple_bodystructure_and_body() {
    let got = render(SIMPLE, "(BODYSTRUCTURE BODY)", &RenderOptions::default());
    assert_eq!(
        got,
        "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 1 NIL NIL NIL NIL) \
         BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 1))\r\n"
    );
}

#[test]
fn envelope_with_group_and_nil() {
    let got = render(SIMPLE, "ENVELOPE", &RenderOptions::default());
    let alice = "((\"Alice\" NIL \"alice\" \"example.com\"))";
    assert_eq!(
        got,
        format!(
            "* 1 FETCH (ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800\" \"hi\" {alice} {alice} {alice} \
             ((NIL NIL \"bob\" \"example.org\")(NIL NIL \"Undisclosed\" NIL)(NIL NIL NIL NIL)) \
             NIL NIL NIL \"<x@y>\"))\r\n"
        )
    );
}

#[test]
fn simple_items_and_macros() {
    let got = render(SIMPLE, "FAST", &RenderOptions::default());
    assert_eq!(
        got,
        format!(
            "* 1 FETCH (FLAGS (\\Seen $Junk) INTERNALDATE \"01-Mar-2024 14:34:56 +0200\" RFC822.SIZE {})\r\n",
            SIMPLE.len()
        )
    );
    let all = items("ALL");
    assert_eq!(all.len(), 4);
    assert_eq!(items("FULL").len(), 5);
    let got = render(
        SIMPLE,
        "(UID FLAGS)",
        &RenderOptions {
            add_uid: true,
            add_flags: true,
            add_modseq: false,
        },
    );
    assert_eq!(got, "* 1 FETCH (UID 42 FLAGS (\\Seen $Junk))\r\n");
    let got = render(
        SIMPLE,
        "RFC822.SIZE",
        &RenderOptions {
            add_uid: true,
            add_flags: true,
            add_modseq: false,
        },
    );
    assert_eq!(
        got,
        format!(
            "* 1 FETCH (UID 42 RFC822.SIZE {} FLAGS (\\Seen $Junk))\r\n",
            SIMPLE.len()
        )
    );
}

/// RFC 7162 §3.1.4.2: MODSEQ as asked for, and added once when CHANGEDSINCE implies it.
#[test]
fn modseq_item() {
    let got = render(SIMPLE, "(UID MODSEQ)", &RenderOptions::default());
    assert_eq!(got, "* 1 FETCH (UID 42 MODSEQ (7))\r\n");
    let implied = RenderOptions { add_modseq: true, ..RenderOptions::default() };
    assert_eq!(render(SIMPLE, "FLAGS", &implied), "* 1 FETCH (FLAGS (\\Seen $Junk) MODSEQ (7))\r\n");
    assert_eq!(render(SIMPLE, "(MODSEQ UID)", &implied), "* 1 FETCH (MODSEQ (7) UID 42)\r\n");
}

/// RFC 3501 §7.4.2: one FETCH response names each data item once, however often the
/// command asked for it (the FLAGS twice seen under a compliance run).
#[test]
fn repeated_items_are_answered_once() {
    let opts = RenderOptions { add_uid: true, add_flags: true, add_modseq: true };
    let got = render(SIMPLE, "(FLAGS UID FLAGS BODY.PEEK[HEADER] BODY[HEADER] UID)", &opts);
    assert_eq!(got.matches("FLAGS").count(), 1, "{got}");
    assert_eq!(got.matches("UID").count(), 1, "{got}");
    assert_eq!(got.matches("BODY[HEADER]").count(), 1, "{got}");
    assert!(got.starts_with("* 1 FETCH (FLAGS (\\Seen $Junk) UID 42 BODY[HEADER] {"), "{got}");
    assert_eq!(got.matches("MODSEQ").count(), 1, "{got}");
    // Different sections and partial origins are different items.
    let got = render(SIMPLE, "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[]<0.1> BODY.PEEK[]<1.1>)", &opts);
    assert_eq!(got.matches("BODY[").count(), 4, "{got}");
}

#[test]
fn body_sections() {
    let o = RenderOptions::default();
    assert_eq!(
        render(SIMPLE, "BODY.PEEK[HEADER.FIELDS (subject)]", &o),
        "* 1 FETCH (BODY[HEADER.FIELDS (subject)] {15}\r\nSubject: hi\r\n\r\n)\r\n"
    );
    assert_eq!(
        render(SIMPLE, "BODY[TEXT]", &o),
        "* 1 FETCH (BODY[TEXT] {3}\r\nabc)\r\n"
    );
    assert_eq!(
        render(SIMPLE, "BODY[1]", &o),
        "* 1 FETCH (BODY[1] {3}\r\nabc)\r\n"
    );
    // Partial: the response names only the origin (RFC 3501 §7.4.2).
    assert_eq!(
        render(SIMPLE, "BODY[TEXT]<1.5>", &o),
        "* 1 FETCH (BODY[TEXT]<1> {2}\r\nbc)\r\n"
    );
    assert_eq!(
        render(SIMPLE, "BODY[TEXT]<9.5>", &o),
        "* 1 FETCH (BODY[TEXT]<9> {0}\r\n)\r\n"
    );
    // A part that does not exist is an empty string.
    assert_eq!(
        render(SIMPLE, "BODY[2]", &o),
        "* 1 FETCH (BODY[2] {0}\r\n)\r\n"
    );
    let full = render(SIMPLE, "RFC822", &o);
    assert_eq!(
        full,
        format!(
            "* 1 FETCH (RFC822 {{{}}}\r\n{})\r\n",
            SIMPLE.len(),
            String::from_utf8_lossy(SIMPLE)
        )
    );
    let header_len = SIMPLE.len() - 3;
    assert_eq!(
        render(SIMPLE, "RFC822.HEADER", &o),
        format!(
            "* 1 FETCH (RFC822.HEADER {{{header_len}}}\r\n{})\r\n",
            String::from_utf8_lossy(&SIMPLE[..header_len])
        )
    );
    assert_eq!(
        render(SIMPLE, "RFC822.TEXT", &o),
        "* 1 FETCH (RFC822.TEXT {3}\r\nabc)\r\n"
    );
}

#[test]
fn multipart_bodystructure() {
    let got = render(MULTI, "BODYSTRUCTURE", &RenderOptions::default());
    let text = "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 9 1 NIL NIL NIL NIL)";
    let app = "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"d.bin\") NIL NIL \"BASE64\" 4 NIL \
               (\"ATTACHMENT\" (\"FILENAME\" \"d.bin\")) NIL NIL)";
    let inner_env = "(NIL \"inner\" ((NIL NIL \"x\" \"y.z\")) ((NIL NIL \"x\" \"y.z\")) ((NIL NIL \"x\" \"y.z\")) \
                     NIL NIL NIL NIL NIL)";
    let inner_body =
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL)";
    let msg = format!(
        "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 41 {inner_env} {inner_body} 4 NIL NIL NIL NIL)"
    );
    assert_eq!(
        got,
        format!(
            "* 1 FETCH (BODYSTRUCTURE ({text}{app}{msg} \"MIXED\" (\"BOUNDARY\" \"XX\") NIL NIL NIL))\r\n"
        )
    );
}

#[test]
fn multipart_sections() {
    let o = RenderOptions::default();
    assert_eq!(
        render(MULTI, "BODY.PEEK[1]", &o),
        "* 1 FETCH (BODY[1] {9}\r\ncaf=C3=A9)\r\n"
    );
    assert_eq!(
        render(MULTI, "BODY.PEEK[2.MIME]", &o),
        "* 1 FETCH (BODY[2.MIME] {142}\r\nContent-Type: application/octet-stream; name=\"d.bin\"\r\n\
         Content-Disposition: attachment; filename=\"d.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n)\r\n"
    );
    assert_eq!(
        render(MULTI, "BODY.PEEK[3.HEADER]", &o),
        "* 1 FETCH (BODY[3.HEADER] {31}\r\nSubject: inner\r\nFrom: x@y.z\r\n\r\n)\r\n"
    );
    assert_eq!(
        render(MULTI, "BODY.PEEK[3.TEXT]", &o),
        "* 1 FETCH (BODY[3.TEXT] {10}\r\ninner body)\r\n"
    );
    assert_eq!(
        render(MULTI, "BODY.PEEK[3.1]", &o),
        "* 1 FETCH (BODY[3.1] {10}\r\ninner body)\r\n"
    );
}

#[test]
fn binary_items() {
    let o = RenderOptions::default();
    assert_eq!(
        render(MULTI, "BINARY.PEEK[1]", &o),
        "* 1 FETCH (BINARY[1] {5}\r\ncafé)\r\n"
    );
    assert_eq!(
        render(MULTI, "BINARY[2]", &o),
        "* 1 FETCH (BINARY[2] ~{3}\r\n\x00\x01\x02)\r\n"
    );
    assert_eq!(
        render(MULTI, "BINARY.SIZE[2]", &o),
        "* 1 FETCH (BINARY.SIZE[2] 3)\r\n"
    );
}

#[test]
fn needs_per_item() {
    use BodyWanted::{BodyFull, BodyHeader, BodyNone};
    let n = |spec: &str| needs(&items(spec));
    let want = |structure, body, sets_seen| Needs {
        structure,
        body,
        sets_seen,
    };
    assert_eq!(n("FAST"), want(false, BodyNone, false));
    assert_eq!(n("(UID FLAGS)"), want(false, BodyNone, false));
    assert_eq!(n("ALL"), want(true, BodyNone, false));
    assert_eq!(n("BODYSTRUCTURE"), want(true, BodyNone, false));
    assert_eq!(n("BODY.PEEK[HEADER]"), want(false, BodyHeader, false));
    assert_eq!(
        n("BODY[HEADER.FIELDS (From)]"),
        want(false, BodyHeader, true)
    );
    assert_eq!(n("RFC822.HEADER"), want(false, BodyHeader, false));
    assert_eq!(n("BODY.PEEK[]"), want(false, BodyFull, false));
    assert_eq!(n("BODY[]"), want(false, BodyFull, true));
    assert_eq!(n("RFC822"), want(false, BodyFull, true));
    assert_eq!(n("RFC822.TEXT"), want(true, BodyFull, true));
    assert_eq!(n("BODY.PEEK[TEXT]"), want(true, BodyFull, false));
    assert_eq!(n("BODY.PEEK[1.MIME]"), want(true, BodyFull, false));
    assert_eq!(
        n("(RFC822.HEADER BODY.PEEK[])"),
        want(false, BodyFull, false)
    );
    assert_eq!(
        n("(BODY.PEEK[] RFC822.HEADER)"),
        want(false, BodyFull, false)
    );
    assert_eq!(n("BINARY[1]"), want(true, BodyFull, true));
    assert_eq!(n("BINARY.PEEK[]"), want(false, BodyFull, false));
}

#[test]
fn header_only_fetch_without_structure() {
    let header_len = SIMPLE.len() - 3;
    let mut msg = message(SIMPLE);
    msg.body.truncate(header_len);
    let got = fetch_items(
        &items("BODY.PEEK[HEADER.FIELDS (Subject)]"),
        &msg,
        None,
        1,
        &RenderOptions::default(),
    )
    .expect("renders");
    assert_eq!(
        encode(got),
        "* 1 FETCH (BODY[HEADER.FIELDS (Subject)] {15}\r\nSubject: hi\r\n\r\n)\r\n"
    );
}

#[test]
fn missing_inputs_are_errors() {
    let o = RenderOptions::default();
    let msg = message(SIMPLE);
    assert_eq!(
        fetch_items(&items("ENVELOPE"), &msg, None, 3, &o),
        Err(RenderError::MissingStructure { seq: 3 })
    );
    let mut no_body = message(SIMPLE);
    no_body.body.clear();
    let info = mailraft_mime::analyze(SIMPLE);
    assert_eq!(
        fetch_items(&items("RFC822"), &no_body, Some(&info), 4, &o),
        Err(RenderError::MissingBody { seq: 4 })
    );
    let mut zero = message(SIMPLE);
    zero.uid = 0;
    assert_eq!(
        fetch_items(&items("UID"), &zero, None, 5, &o),
        Err(RenderError::Corrupt {
            seq: 5,
            what: "uid"
        })
    );
}

#[test]
fn internal_date_bad_offset_falls_back_to_utc() {
    let mut msg = message(SIMPLE);
    msg.tz_offset_minutes = 100_000;
    let got = fetch_items(
        &items("INTERNALDATE"),
        &msg,
        None,
        1,
        &RenderOptions::default(),
    )
    .expect("renders");
    assert_eq!(
        encode(got),
        "* 1 FETCH (INTERNALDATE \"01-Mar-2024 12:34:56 +0000\")\r\n"
    );
}

#[test]
fn nul_bytes_never_panic() {
    let raw = b"Subject: a\x00b\r\n\r\nx\x00y";
    let info = mailraft_mime::analyze(raw);
    let out = fetch_items(
        &items("(ENVELOPE BODY[])"),
        &message(raw),
        Some(&info),
        1,
        &RenderOptions::default(),
    )
    .expect("renders");
    let resp = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::try_from(out).expect("items"),
    });
    let bytes = ResponseCodec::new().encode(&resp).dump();
    assert!(!bytes.contains(&0));
    assert!(bytes.windows(3).any(|w| w == b"x\x80y"));
}

#[test]
fn whole_message_without_structure() {
    let got = fetch_items(
        &items("(BODY.PEEK[] RFC822)"),
        &message(SIMPLE),
        None,
        1,
        &RenderOptions::default(),
    )
    .expect("renders");
    let body = String::from_utf8_lossy(SIMPLE);
    let n = SIMPLE.len();
    assert_eq!(
        encode(got),
        format!("* 1 FETCH (BODY[] {{{n}}}\r\n{body} RFC822 {{{n}}}\r\n{body})\r\n")
    );
}
