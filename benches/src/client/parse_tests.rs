//! Framer and parser tests: a server transcript split at every byte boundary must produce the
//! same responses as when received whole.

use super::framer::Framer;
use super::parse::{Code, FetchData, ParseError, Response, Status, Untagged, parse_response};

const TRANSCRIPT: &[u8] = b"* OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] ready\r\n\
* 3 EXISTS\r\n\
* 0 RECENT\r\n\
* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Bench)\r\n\
* OK [UIDVALIDITY 1700000000] UIDs valid\r\n\
* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n\
b1 OK [READ-WRITE] SELECT completed\r\n\
* 2 FETCH (UID 7 FLAGS (\\Seen $Bench) RFC822.SIZE 12 BODY[] {12}\r\nHi\r\nthere\r\n!)\r\n\
* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {5}\r\nab{3} UID 9)\r\n\
* LIST (\\HasNoChildren) \"/\" \"Sent Items\"\r\n\
* LIST () \"/\" {5}\r\nDraft\r\n\
* STATUS INBOX (MESSAGES 3 UIDNEXT 10)\r\n\
* SEARCH 2 3 (MODSEQ 917)\r\n\
* 1 EXPUNGE\r\n\
* VANISHED (EARLIER) 1:5\r\n\
+ go ahead\r\n\
b2 OK [APPENDUID 1700000000 11] APPEND completed\r\n\
b3 NO [TRYCREATE] no such mailbox\r\n\
* BYE logging out\r\n";

fn frames_with_chunks(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut f = Framer::new(1 << 20);
    let mut out = Vec::new();
    for c in chunks {
        f.push(c);
        while let Some(frame) = f.next_frame().unwrap() {
            out.push(frame);
        }
    }
    assert_eq!(f.pending(), 0, "bytes left over");
    out
}

#[test]
fn split_at_every_boundary_gives_the_same_frames() {
    let whole = frames_with_chunks(&[TRANSCRIPT]);
    assert_eq!(whole.len(), 19);
    for cut in 0..=TRANSCRIPT.len() {
        let (a, b) = TRANSCRIPT.split_at(cut);
        assert_eq!(frames_with_chunks(&[a, b]), whole, "cut at {cut}");
    }
    // Byte by byte too.
    let singles: Vec<&[u8]> = TRANSCRIPT.chunks(1).collect();
    assert_eq!(frames_with_chunks(&singles), whole);
    // And every frame parses.
    for f in &whole {
        parse_response(f).unwrap();
    }
}

#[test]
fn parses_typed_responses() {
    let frames = frames_with_chunks(&[TRANSCRIPT]);
    let p: Vec<Response> = frames.iter().map(|f| parse_response(f).unwrap()).collect();
    match &p[0] {
        Response::Untagged(Untagged::Cond {
            status: Status::Ok,
            code: Some(Code::Capability(c)),
            ..
        }) => {
            assert!(c.iter().any(|x| x == "LITERAL+"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p[1], Response::Untagged(Untagged::Exists(3)));
    assert_eq!(p[2], Response::Untagged(Untagged::Recent(0)));
    match &p[4] {
        Response::Untagged(Untagged::Cond {
            code: Some(Code::UidValidity(1_700_000_000)),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match &p[6] {
        Response::Tagged {
            tag,
            status: Status::Ok,
            code: Some(Code::Other(name, _)),
            ..
        } => {
            assert_eq!(tag, "b1");
            assert_eq!(name, "READ-WRITE");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p[7],
        Response::Untagged(Untagged::Fetch {
            seq: 2,
            data: FetchData {
                uid: Some(7),
                flags: Some(vec!["\\Seen".into(), "$Bench".into()]),
                body: Some(b"Hi\r\nthere\r\n!".to_vec()),
                size: Some(12),
                modseq: None,
            }
        })
    );
    match &p[8] {
        Response::Untagged(Untagged::Fetch { seq: 3, data }) => {
            assert_eq!(data.uid, Some(9));
            assert_eq!(data.body.as_deref(), Some(&b"ab{3}"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p[9],
        Response::Untagged(Untagged::List {
            name: "Sent Items".into()
        })
    );
    assert_eq!(
        p[10],
        Response::Untagged(Untagged::List {
            name: "Draft".into()
        })
    );
    assert_eq!(
        p[11],
        Response::Untagged(Untagged::Status {
            mailbox: "INBOX".into(),
            items: vec![("MESSAGES".into(), 3), ("UIDNEXT".into(), 10)]
        })
    );
    assert_eq!(p[12], Response::Untagged(Untagged::Search(vec![2, 3])));
    assert_eq!(p[13], Response::Untagged(Untagged::Expunge(1)));
    assert_eq!(
        p[14],
        Response::Untagged(Untagged::Vanished {
            earlier: true,
            set: "1:5".into()
        })
    );
    assert_eq!(p[15], Response::Continuation("go ahead".into()));
    match &p[16] {
        Response::Tagged {
            code:
                Some(Code::AppendUid {
                    uidvalidity: 1_700_000_000,
                    uid: 11,
                }),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    match &p[17] {
        Response::Tagged {
            status: Status::No,
            text,
            ..
        } => assert_eq!(text, "no such mailbox"),
        other => panic!("{other:?}"),
    }
    match &p[18] {
        Response::Untagged(Untagged::Cond {
            status: Status::Bye,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_responses_are_errors() {
    assert_eq!(
        parse_response(b"* 1 FETCH (UID)\r\n"),
        Err(ParseError::OddFetch)
    );
    assert!(parse_response(b"* 1 FETCH (UID 1\r\n").is_err());
    assert!(parse_response(b"* STATUS INBOX (MESSAGES x)\r\n").is_err());
    assert!(parse_response(b"b1 MAYBE done\r\n").is_err());
    assert!(parse_response(b"* LIST () \"/\" \"unterminated\r\n").is_err());
    assert!(parse_response(b"* 1 FETCH (FLAGS (\\Seen) BODY[] \"a\\qb\")\r\n").is_err());
    // Deep nesting is bounded.
    let deep = format!("* 1 FETCH (X {}{})\r\n", "(".repeat(200), ")".repeat(200));
    assert_eq!(parse_response(deep.as_bytes()), Err(ParseError::TooDeep));
    // Unknown responses are kept, not rejected.
    assert_eq!(
        parse_response(b"* ENABLED QRESYNC\r\n").unwrap(),
        Response::Untagged(Untagged::Other("ENABLED".into()))
    );
}

#[test]
fn framer_caps_size() {
    let mut f = Framer::new(64);
    f.push(b"* 1 FETCH (BODY[] {1000}\r\n");
    assert!(matches!(f.next_frame(), Err(ParseError::TooLarge(_))));
    let mut f = Framer::new(16);
    f.push(&[b'x'; 40]);
    assert!(matches!(f.next_frame(), Err(ParseError::TooLarge(_))));
}

#[test]
fn quoting_escapes() {
    assert_eq!(super::quote(r#"a"b\c"#), r#""a\"b\\c""#);
}
