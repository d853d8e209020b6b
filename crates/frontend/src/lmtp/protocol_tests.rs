use bytes::BytesMut;

use super::*;

fn addr(local: &str, domain: &str) -> Address {
    Address { local: local.into(), domain: domain.into() }
}

#[test]
fn replies_are_multiline_with_enhanced_codes() {
    assert_eq!(Reply::new(250, "2.1.0", "ok").to_wire(), "250 2.1.0 ok\r\n");
    let lhlo = Reply::plain(250, vec!["host".into(), "PIPELINING".into(), "SIZE 10".into()]);
    assert_eq!(lhlo.to_wire(), "250-host\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    // Text cannot smuggle a second reply line.
    assert_eq!(Reply::new(550, "5.1.1", "a\r\n250 b").to_wire(), "550 5.1.1 a  250 b\r\n");
}

#[test]
fn commands_parse_case_insensitively() {
    assert_eq!(parse_command(b"lhlo mx.example.org"), Ok(Command::Lhlo("mx.example.org".into())));
    assert_eq!(parse_command(b"EHLO x"), Ok(Command::HeloEhlo));
    assert_eq!(parse_command(b"noop whatever"), Ok(Command::Noop));
    assert_eq!(parse_command(b"QUIT"), Ok(Command::Quit));
    assert_eq!(parse_command(b"data"), Ok(Command::Data));
    assert_eq!(parse_command(b"VRFY bob").map(|_| ()), Ok(()));
    assert_eq!(parse_command(b"DATA x").unwrap_err().code, 501);
    assert_eq!(parse_command(b"LHLO").unwrap_err().code, 501);
    assert_eq!(parse_command(b"STARTTLS").unwrap_err().to_wire(), "500 5.5.1 command not recognized\r\n");
    assert_eq!(parse_command(b"\xff\xfe").unwrap_err().code, 500);
}

#[test]
fn mail_from_takes_size_and_body() {
    assert_eq!(
        parse_command(b"MAIL FROM:<a@b.example> SIZE=1234 BODY=8BITMIME"),
        Ok(Command::Mail { from: Some(addr("a", "b.example")), size: Some(1234), body: BodyType::EightBitMime })
    );
    assert_eq!(
        parse_command(b"mail from:<>"),
        Ok(Command::Mail { from: None, size: None, body: BodyType::SevenBit })
    );
    // Source routes are accepted and ignored (RFC 5321 Appendix C); a space after the colon is tolerated.
    assert_eq!(
        parse_command(b"MAIL FROM: <@relay.example:x@y.example> BODY=7bit"),
        Ok(Command::Mail { from: Some(addr("x", "y.example")), size: None, body: BodyType::SevenBit })
    );
    assert_eq!(parse_command(b"MAIL FROM:<a@b> SIZE=x").unwrap_err().to_wire(), "501 5.5.4 SIZE needs a number\r\n");
    assert_eq!(parse_command(b"MAIL FROM:<a@b> BODY=BINARYMIME").unwrap_err().code, 501);
    assert_eq!(parse_command(b"MAIL FROM:<a@b> SMTPUTF8").unwrap_err().to_wire(), "555 5.5.4 MAIL parameter SMTPUTF8 not supported\r\n");
    assert_eq!(parse_command(b"MAIL TO:<a@b>").unwrap_err().code, 501);
    assert_eq!(parse_command(b"MAIL FROM:a@b").unwrap_err().code, 501);
    assert_eq!(parse_command(b"MAIL FROM:<a@@b>").unwrap_err().to_wire(), "501 5.1.7 bad sender address syntax\r\n");
}

#[test]
fn rcpt_addresses() {
    assert_eq!(parse_command(b"RCPT TO:<bob+lists@Example.ORG>"), Ok(Command::Rcpt(addr("bob+lists", "Example.ORG"))));
    assert_eq!(parse_command(b"RCPT TO:<\"john doe\"@example.org>"), Ok(Command::Rcpt(addr("john doe", "example.org"))));
    assert_eq!(parse_command(b"RCPT TO:<\"a>b\"@example.org>"), Ok(Command::Rcpt(addr("a>b", "example.org"))));
    assert_eq!(parse_command(b"RCPT TO:<x@[127.0.0.1]>"), Ok(Command::Rcpt(addr("x", "[127.0.0.1]"))));
    // The last: a quoted-pair escaping a control character (fuzz finding, 2026-12-02).
    for bad in [&b"RCPT TO:<>"[..], b"RCPT TO:<postmaster>", b"RCPT TO:<a..b@c>", b"RCPT TO:<a@-c>", b"RCPT TO:<j\xc3\xb6@c>", b"RCPT TO:<\"q \\\x1e \"@x.org>"] {
        let err = parse_command(bad).unwrap_err();
        assert_eq!((err.code, err.enhanced), (501, Some("5.1.3")), "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(parse_command(b"RCPT TO:<a@b> NOTIFY=NEVER").unwrap_err().code, 555);
    // A parameter name that is not an esmtp-keyword is not echoed (control octets, 8-bit, length).
    for name in [&b"\x01X"[..], b"\xc3\xa9", &[b'A'; 300]] {
        let mut line = b"MAIL FROM:<a@b> ".to_vec();
        line.extend_from_slice(name);
        line.extend_from_slice(b"=1");
        assert_eq!(parse_command(&line).unwrap_err().to_wire(), "555 5.5.4 MAIL parameter (unrecognised) not supported\r\n");
    }
    let long = format!("RCPT TO:<{}@b>", "x".repeat(65));
    assert_eq!(parse_command(long.as_bytes()).unwrap_err().code, 501);
}

#[test]
fn addresses_print_quoted_when_needed() {
    assert_eq!(addr("bob+x", "example.org").to_string(), "bob+x@example.org");
    assert_eq!(addr("john \"j\" doe", "example.org").to_string(), "\"john \\\"j\\\" doe\"@example.org");
    let parsed = parse_address(&addr("a\\b\"c d", "x.y").to_string()).unwrap();
    assert_eq!(parsed, addr("a\\b\"c d", "x.y"));
}

#[test]
fn bdat_arguments() {
    assert_eq!(parse_command(b"BDAT 10"), Ok(Command::Bdat { size: 10, last: false }));
    assert_eq!(parse_command(b"bdat 0 last"), Ok(Command::Bdat { size: 0, last: true }));
    assert!(parse_command(b"BDAT").is_err());
    assert!(parse_command(b"BDAT -1").is_err());
    assert!(parse_command(b"BDAT 1 FIRST").is_err());
    assert!(parse_command(b"BDAT 1 LAST x").is_err());
}

#[test]
fn lines_are_split_and_capped() {
    let mut r = LineReader::new(8);
    let mut buf = BytesMut::from(&b"NOOP\r\nRSET\nQU"[..]);
    assert_eq!(r.next(&mut buf), Some(Line::Complete(b"NOOP".to_vec())));
    assert_eq!(r.next(&mut buf), Some(Line::Complete(b"RSET".to_vec())));
    assert!(r.needs_input(&buf));
    assert_eq!(r.next(&mut buf), None);
    buf.extend_from_slice(b"IT\r\n");
    assert_eq!(r.next(&mut buf), Some(Line::Complete(b"QUIT".to_vec())));

    // An over-long line is dropped as it arrives and reported once at its end.
    buf.extend_from_slice(b"0123456789");
    assert_eq!(r.next(&mut buf), None);
    assert!(buf.is_empty(), "the long line is not buffered");
    buf.extend_from_slice(b"more");
    assert_eq!(r.next(&mut buf), None);
    buf.extend_from_slice(b"end\r\nNOOP\r\n");
    assert_eq!(r.next(&mut buf), Some(Line::TooLong));
    assert_eq!(r.next(&mut buf), Some(Line::Complete(b"NOOP".to_vec())));
    // Exactly the cap, with its CR arriving before the LF, is fine.
    buf.extend_from_slice(b"12345678\r");
    assert_eq!(r.next(&mut buf), None);
    buf.extend_from_slice(b"\n");
    assert_eq!(r.next(&mut buf), Some(Line::Complete(b"12345678".to_vec())));
}

/// Feeds `input` in pieces of `step` bytes; returns the body and what is left after it.
fn unstuff(input: &[u8], step: usize, limit: u64) -> (Body, Vec<u8>) {
    let mut reader = DotReader::new(limit);
    let mut buf = BytesMut::new();
    let mut rest = input;
    loop {
        let take = step.min(rest.len());
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        if reader.feed(&mut buf) == Progress::Done {
            let mut left = buf.to_vec();
            left.extend_from_slice(rest);
            return (reader.into_body(), left);
        }
        assert!(take > 0, "input ended before the terminator");
    }
}

#[test]
fn dot_unstuffing_in_any_split() {
    let wire = b"Subject: x\r\n\r\n..leading dot\r\n..\r\n...\r\nbare\nlf.\r\n.x\r\n.\r\nNOOP\r\n";
    let want = b"Subject: x\r\n\r\n.leading dot\r\n.\r\n..\r\nbare\nlf.\r\nx\r\n";
    for step in 1..wire.len() {
        let (body, left) = unstuff(wire, step, 1 << 20);
        assert_eq!(body.into_bytes(), want.to_vec(), "step {step}");
        assert_eq!(left, b"NOOP\r\n".to_vec(), "step {step}");
    }
}

#[test]
fn only_crlf_dot_crlf_terminates() {
    // A bare LF before the dot does not end the body (SMTP smuggling), nor does ".\n".
    let (body, left) = unstuff(b"a\n.\r\nb\r\n.\n\r\n.\r\n", 3, 100);
    assert_eq!(body.into_bytes(), b"a\n.\r\nb\r\n\n\r\n".to_vec());
    assert!(left.is_empty());
    // An empty message.
    let (body, _) = unstuff(b".\r\n", 1, 100);
    assert!(body.is_empty());
}

#[test]
fn oversized_bodies_are_counted_not_kept() {
    let (body, left) = unstuff(b"0123456789\r\n0123456789\r\n.\r\nX", 4, 15);
    assert!(body.overflowed());
    assert_eq!(body.len(), 24);
    assert!(body.into_bytes().is_empty());
    assert_eq!(left, b"X".to_vec());
}

#[test]
fn chunks_take_exact_octets() {
    let mut body = Body::new(100);
    let mut chunk = ChunkReader::new(5);
    let mut buf = BytesMut::from(&b"a.\r\n"[..]);
    assert_eq!(chunk.feed(&mut buf, &mut body), Progress::NeedMore);
    buf.extend_from_slice(b"bBDAT 0 LAST\r\n");
    assert_eq!(chunk.feed(&mut buf, &mut body), Progress::Done);
    assert_eq!(&buf[..], b"BDAT 0 LAST\r\n");
    assert_eq!(ChunkReader::new(0).feed(&mut buf, &mut body), Progress::Done);
    assert_eq!(body.into_bytes(), b"a.\r\nb".to_vec());
}
