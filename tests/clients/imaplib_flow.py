#!/usr/bin/env python3
"""A real-client session against Mailraft with Python's imaplib, checking every reply.

Usage: imaplib_flow.py HOST PORT USER PASSWORD [--tls]

Exits non-zero with a message on the first reply that is not what RFC 3501 says it must be.
"""
import email
import imaplib
import re
import ssl
import sys
import time
import uuid

from imapcheck import check, ok


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if "--tls" in sys.argv:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=30)
    else:
        m = imaplib.IMAP4(host, port, timeout=30)

    caps = m.capabilities
    check("IMAP4REV1" in caps, f"IMAP4rev1 advertised: {caps}")

    ok(m.login(user, password), "LOGIN")
    check("UIDPLUS" in m.capabilities or "UIDPLUS" in [c.upper() for c in m.capabilities],
          f"UIDPLUS after login: {m.capabilities}")

    box = "Py-" + uuid.uuid4().hex[:8]
    ok(m.create(box), "CREATE")
    typ, data = m.create(box)
    check(typ == "NO", f"CREATE of existing mailbox must fail, got {typ} {data}")

    data = ok(m.list('""', "*"), "LIST")
    names = [d.decode() for d in data if d]
    check(any(box in n for n in names), f"LIST shows new mailbox: {names}")
    check(any('"INBOX"' in n or " INBOX" in n for n in names), f"LIST shows INBOX: {names}")

    bodies = []
    for i in range(3):
        body = (
            f"From: Alice <alice@example.test>\r\n"
            f"To: Bob <bob@example.test>\r\n"
            f"Subject: test message {i}\r\n"
            f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\n"
            f"\r\n"
            f"Hello number {i}, a keyword: {'banana' if i == 1 else 'apple'}\r\n"
        ).encode()
        bodies.append(body)
        typ, data = m.append(box, "(\\Flagged)" if i == 0 else None,
                             imaplib.Time2Internaldate(time.time()), body)
        check(typ == "OK", f"APPEND {i}: {typ} {data}")
        check(b"APPENDUID" in data[0], f"APPENDUID in APPEND reply: {data}")
        uid = int(re.search(rb"APPENDUID (\d+) (\d+)", data[0]).group(2))
        check(uid == i + 1, f"APPEND {i} got UID {uid}, expected {i + 1}")

    typ, data = m.select(box)
    check(typ == "OK", f"SELECT: {typ} {data}")
    check(int(data[0]) == 3, f"SELECT EXISTS 3: {data}")
    check(m.untagged_responses.get("UIDVALIDITY"), "SELECT sends UIDVALIDITY")
    check(m.untagged_responses.get("UIDNEXT", [b"0"])[-1] == b"4",
          f"UIDNEXT 4: {m.untagged_responses.get('UIDNEXT')}")

    data = ok(m.fetch("1:3", "(UID FLAGS RFC822.SIZE)"), "FETCH flags")
    check(len([d for d in data if d]) == 3, f"FETCH 3 messages: {data}")
    check(b"\\Flagged" in data[0], f"message 1 flagged: {data[0]}")

    data = ok(m.fetch("2", "(BODY.PEEK[])"), "FETCH BODY.PEEK[]")
    check(data[0][1] == bodies[1], f"BODY[] bytes identical: {data[0][1]!r}")
    data = ok(m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"), "FETCH HEADER.FIELDS")
    check(data[0][1].strip() == b"Subject: test message 1", f"subject field: {data[0][1]!r}")
    data = ok(m.fetch("1", "(ENVELOPE BODYSTRUCTURE)"), "FETCH ENVELOPE")
    check(b'"test message 0"' in data[0] and b'"alice" "example.test"' in data[0].lower(),
          f"ENVELOPE content: {data[0]!r}")
    check(b'("TEXT" "PLAIN"' in data[0].upper(), f"BODYSTRUCTURE: {data[0]!r}")

    data = ok(m.fetch("3", "(FLAGS)"), "FETCH FLAGS before")
    check(b"\\Seen" not in data[0], "PEEK did not set \\Seen")
    data = ok(m.fetch("3", "(BODY[TEXT])"), "FETCH BODY[TEXT]")
    check(any(b"\\Seen" in (d[0] if isinstance(d, tuple) else d) for d in data if d),
          f"non-PEEK BODY sets \\Seen and reports FLAGS: {data!r}")

    data = ok(m.store("2", "+FLAGS", "(\\Deleted $Label1)"), "STORE +FLAGS")
    check(b"\\Deleted" in data[0] and b"$Label1" in data[0], f"STORE reply has new flags: {data}")

    data = ok(m.search(None, "BODY", "banana"), "SEARCH BODY")
    check(data[0].split() == [b"2"], f"SEARCH BODY banana -> 2: {data}")
    data = ok(m.search(None, "FLAGGED"), "SEARCH FLAGGED")
    check(data[0].split() == [b"1"], f"SEARCH FLAGGED -> 1: {data}")
    data = ok(m.search(None, "OR", "SUBJECT", "\"message 0\"", "SEEN"), "SEARCH OR")
    check(sorted(data[0].split()) == [b"1", b"3"], f"SEARCH OR -> 1 3: {data}")
    data = ok(m.uid("SEARCH", None, "UID", "2:*"), "UID SEARCH")
    check(data[0].split() == [b"2", b"3"], f"UID SEARCH 2:* -> 2 3: {data}")

    typ, data = m.expunge()
    check(typ == "OK", f"EXPUNGE: {typ} {data}")
    check(data == [b"2"], f"EXPUNGE reports seq 2: {data}")

    data = ok(m.fetch("1:*", "(UID)"), "FETCH after expunge")
    uids = sorted(int(re.search(rb"UID (\d+)", d).group(1)) for d in data if d)
    check(uids == [1, 3], f"UIDs after expunge: {uids}")

    ok(m.copy("1", "INBOX"), "COPY")
    data = ok(m.status(box, "(MESSAGES UIDNEXT UNSEEN)"), "STATUS")
    check(b"MESSAGES 2" in data[0] and b"UIDNEXT 4" in data[0], f"STATUS: {data}")

    ok(m.close(), "CLOSE")
    # imaplib refuses FETCH outside SELECTED itself, so ask the server directly.
    tag = m._new_tag()
    m.send(tag + b" FETCH 1 (FLAGS)\r\n")
    line = m._get_line()
    while not line.startswith(tag):
        line = m._get_line()
    check(line.split()[1] in (b"BAD", b"NO"), f"FETCH after CLOSE must fail (not selected): {line!r}")

    ok(m.rename(box, box + "-renamed"), "RENAME")
    data = ok(m.select(box + "-renamed"), "SELECT renamed")
    check(int(data[0]) == 2, f"renamed mailbox keeps messages: {data}")
    ok(m.close(), "CLOSE 2")
    ok(m.delete(box + "-renamed"), "DELETE")
    typ, _ = m.logout()
    check(typ == "BYE", f"LOGOUT answers BYE: {typ}")
    print("imaplib flow: all checks passed")


if __name__ == "__main__":
    main()
