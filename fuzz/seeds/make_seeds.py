#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

The checked-in corpus is these seeds plus the minimized corpora of campaigns (files named by
their SHA-1, as libFuzzer names them; see the "Fuzzing" section of docs/SECURITY.md).
Each target's input layout is documented at its entry function (see fuzz/Cargo.toml).
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- imap_input: [chunk pick][limit pick] client bytes -------------------------------------------
WHOLE, BYTEWISE, SMALL_READS = 0x80, 0x00, 0x07
TINY, SMALL, DEFAULT = 0, 1, 2
imap = {
    "greeting-commands": (WHOLE, SMALL, b"a1 CAPABILITY\r\na2 NOOP\r\na3 LOGOUT\r\n"),
    "login-quoted": (WHOLE, SMALL, b'a LOGIN "alice@example.test" "p w"\r\n'),
    "login-literals": (SMALL_READS, SMALL, b"a LOGIN {5}\r\nalice {3}\r\npw!\r\n"),
    "login-bytewise": (BYTEWISE, SMALL, b"a LOGIN {5}\r\nalice {3}\r\npw!\r\n"),
    "append-nonsync": (WHOLE, SMALL, b"a APPEND INBOX (\\Seen $Junk) {12+}\r\nSubject: x\r\n\r\n"),
    "append-date": (WHOLE, SMALL, b'a APPEND Sent () "05-Jan-2024 10:00:00 +0100" {3}\r\nabc\r\n'),
    "append-binary": (WHOLE, SMALL, b"a APPEND INBOX ~{4}\r\n\x00\x01\x02\x03\r\n"),
    "literal-too-big": (WHOLE, TINY, b"a APPEND INBOX {100}\r\nb NOOP\r\n"),
    "nonsync-too-big": (WHOLE, TINY, b"a APPEND INBOX {100+}\r\n" + b"x" * 100 + b"\r\nb NOOP\r\n"),
    "line-too-long": (WHOLE, TINY, b"a SELECT " + b"x" * 80 + b"\r\nb NOOP\r\n"),
    "line-too-long-literal-tail": (SMALL_READS, TINY, b"a LOGIN " + b"y" * 60 + b" {3}\r\nabc\r\nb NOOP\r\n"),
    "select-examine": (WHOLE, SMALL, b"a SELECT INBOX\r\nb EXAMINE \"Archive/2024\"\r\nc UNSELECT\r\nd CLOSE\r\n"),
    "create-utf7": (WHOLE, SMALL, b"a CREATE &AOk-t&AOk-\r\nb CREATE \"Entw&APw-rfe\"\r\nc DELETE &-x\r\n"),
    "bad-utf7": (WHOLE, SMALL, b"a CREATE &AOk\r\nb CREATE &AGE-\r\nc RENAME &AOk-&AOk- x\r\n"),
    "rename": (WHOLE, SMALL, b"a RENAME INBOX Old\r\nb RENAME a/b c/d\r\n"),
    "list-patterns": (WHOLE, SMALL, b'a LIST "" *\r\nb LIST "" %\r\nc LIST INBOX/ %/*\r\nd LSUB "Arch" "*%*%*"\r\n'),
    "list-backtracking": (WHOLE, DEFAULT, b'a LIST "" "*a*a*a*a*a*a*a*a*a*a*a*a*b"\r\n'),
    "subscribe": (WHOLE, SMALL, b"a SUBSCRIBE Work\r\nb UNSUBSCRIBE Work\r\n"),
    "status": (WHOLE, SMALL, b"a STATUS INBOX (MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)\r\n"),
    "fetch-items": (WHOLE, SMALL, b"a FETCH 1:* (FLAGS UID BODY.PEEK[HEADER.FIELDS (FROM)] BODY[1.2]<0.10>)\r\n"),
    "fetch-macros": (WHOLE, SMALL, b"a FETCH 2,4:6 ALL\r\nb UID FETCH 1:4294967295 FAST\r\nc FETCH * FULL\r\n"),
    "fetch-out-of-range": (WHOLE, SMALL, b"a FETCH 99 FLAGS\r\nb FETCH 0 FLAGS\r\nc FETCH 3:1 UID\r\n"),
    "store": (WHOLE, SMALL, b"a STORE 1:3 +FLAGS.SILENT (\\Deleted $Work)\r\nb UID STORE 5:* FLAGS (\\Recent)\r\n"),
    "store-bad-flag": (WHOLE, SMALL, b"a STORE 1 +FLAGS (\\Frob)\r\nb STORE 1 -FLAGS (\\*)\r\n"),
    "copy-move": (WHOLE, SMALL, b"a COPY 1:2 Trash\r\nb UID MOVE 1000:* &AOk-\r\nc MOVE 1 INBOX\r\n"),
    "expunge": (WHOLE, SMALL, b"a EXPUNGE\r\nb UID EXPUNGE 1:3,55\r\n"),
    "search": (WHOLE, SMALL, b"a SEARCH CHARSET UTF-8 OR FROM x NOT (SEEN UID 1:*) SINCE 1-Jan-2024 LARGER 10\r\n"),
    "search-badcharset": (WHOLE, SMALL, b"a SEARCH CHARSET KOI8-R TEXT x\r\nb UID SEARCH 1:*,* HEADER Subject {3}\r\nabc\r\n"),
    "idle-done": (SMALL_READS, SMALL, b"a IDLE\r\nDONE\r\nb NOOP\r\n"),
    "idle-bad": (WHOLE, SMALL, b"a IDLE\r\nNOPE\r\nb IDLE\r\n{3}\r\n"),
    "authenticate": (WHOLE, SMALL, b"a AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3\r\nb AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n"),
    "authenticate-cancel": (WHOLE, SMALL, b"a AUTHENTICATE PLAIN\r\n*\r\nb AUTHENTICATE LOGIN\r\n!!\r\n"),
    "enable-id-namespace": (WHOLE, SMALL, b'a ENABLE CONDSTORE UTF8=ACCEPT\r\nb ID ("name" "x")\r\nc NAMESPACE\r\nd ID NIL\r\n'),
    "starttls-pipelined": (WHOLE, SMALL, b"a STARTTLS\r\nb LOGIN x y\r\n"),
    "garbage": (WHOLE, SMALL, b"\x00\xff\r\n* OK\r\n+\r\n\r\n   \r\nA\r\n"),
    "lf-only": (WHOLE, SMALL, b"a NOOP\nb NOOP\r\n"),
    "unknown-command": (WHOLE, SMALL, b"a FROB x\r\nb XLIST \"\" *\r\nc GETQUOTAROOT INBOX\r\n"),
    "quoted-escapes": (WHOLE, SMALL, b'a SELECT "a\\"b\\\\c"\r\nb SELECT "bad\\q"\r\n'),
}
for name, (chunk, limit, data) in imap.items():
    write("imap_input", name, bytes([chunk, limit]) + data)

# --- lmtp_input: [chunk pick][config pick] client bytes ------------------------------------------
# config pick: % 3 picks max_message_bytes (64, 1024, 65536); 0x04: 1000 recipients (else 2);
# 0x08: 20 errors before 421 (else 3). See crates/frontend/src/lmtp/fuzzing.rs.
CAP64, CAP1K, ROOMY = 0x00, 0x01, 0x0E
HELLO = b"LHLO mx.example.org\r\n"
TX = HELLO + b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n"
lmtp = {
    "deliver": (WHOLE, CAP1K, TX + b"RCPT TO:<carol@example.org>\r\nDATA\r\nSubject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n"),
    "deliver-bytewise": (BYTEWISE, CAP1K, TX + b"DATA\r\nSubject: hi\r\n\r\nx\r\n.\r\nQUIT\r\n"),
    "deliver-small-reads": (SMALL_READS, CAP1K, TX + b"DATA\r\n..dot\r\n.\r\n"),
    "verdicts": (WHOLE, ROOMY, HELLO + b"MAIL FROM:<>\r\nRCPT TO:<nouser@x.org>\r\nRCPT TO:<nodomain@y.org>\r\n"
                 b"RCPT TO:<disabled@x.org>\r\nRCPT TO:<full@x.org>\r\nRCPT TO:<refused@x.org>\r\n"
                 b"RCPT TO:<later@x.org>\r\nRCPT TO:<defer@x.org>\r\nRCPT TO:<bounce@x.org>\r\n"
                 b"RCPT TO:<bob@x.org>\r\nDATA\r\nx\r\n.\r\n"),
    "dot-stuffing": (WHOLE, CAP1K, TX + b"DATA\r\n..\r\n...x\r\n. \r\n.a\r\n\r\n.\r\n"),
    "dot-smuggling-lf": (WHOLE, CAP1K, TX + b"DATA\r\nx\n.\nMAIL FROM:<e@vil.org>\r\nx\r\n.\n.\r\n\r\n.\r\n"),
    "dot-smuggling-cr": (SMALL_READS, CAP1K, TX + b"DATA\r\nx\r.\r\ny\r\r\n.\r\n"),
    "dot-split": (0x01, CAP1K, TX + b"DATA\r\n.\r.\r\n\r\n.\r\n"),
    "empty-body": (WHOLE, CAP1K, TX + b"DATA\r\n.\r\nRSET\r\n"),
    "data-too-big": (SMALL_READS, CAP64, TX + b"DATA\r\n" + b"0123456789abcdef\r\n" * 8 + b".\r\nNOOP\r\n"),
    "data-at-limit": (WHOLE, CAP64, TX + b"DATA\r\n" + b"x" * 62 + b"\r\n.\r\n"),
    "data-unterminated": (WHOLE, CAP64, TX + b"DATA\r\nno end\r\n."),
    "data-refused": (WHOLE, CAP1K, HELLO + b"DATA\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nRCPT TO:<nouser@b.c>\r\nDATA\r\n"),
    "bdat": (WHOLE, CAP1K, TX + b"BDAT 5\r\nhelloBDAT 3 LAST\r\n!\r\nQUIT\r\n"),
    "bdat-bytewise": (BYTEWISE, CAP1K, TX + b"BDAT 4\r\n.\r\nBDAT 0 LAST\r\n"),
    "bdat-zero": (WHOLE, CAP1K, TX + b"BDAT 0\r\nBDAT 0 last\r\n"),
    "bdat-too-big": (SMALL_READS, CAP64, TX + b"BDAT 40\r\n" + b"a" * 40 + b"BDAT 40 LAST\r\n" + b"b" * 40 + b"RSET\r\n"),
    "bdat-declared-huge": (WHOLE, CAP64, TX + b"BDAT 18446744073709551615 LAST\r\n" + b"z" * 100),
    "bdat-no-transaction": (WHOLE, CAP1K, HELLO + b"BDAT 3\r\nabcBDAT 2 LAST\r\nxyMAIL FROM:<>\r\nBDAT 1\r\nQ"),
    "bdat-then-rcpt-data": (WHOLE, CAP1K, TX + b"BDAT 1\r\nxRCPT TO:<carol@example.org>\r\nDATA\r\nBDAT 1 LAST\r\ny"),
    "bdat-syntax": (WHOLE, ROOMY, TX + b"BDAT\r\nBDAT x\r\nBDAT 1 FIRST\r\nBDAT 1 LAST x\r\nBDAT -1\r\n"),
    "mail-params": (WHOLE, CAP1K, HELLO + b"MAIL FROM:<a@b.c> SIZE=100 BODY=8BITMIME\r\nRSET\r\n"
                    b"MAIL FROM:<a@b.c> SIZE=99999\r\nMAIL FROM:<a@b.c> BODY=BINARYMIME\r\n"
                    b"MAIL FROM:<a@b.c> SIZE=x\r\nMAIL FROM: <a@b.c> AUTH=<>\r\n"),
    "mail-nested": (WHOLE, ROOMY, HELLO + b"MAIL FROM:<>\r\nMAIL FROM:<>\r\nmail from:<x@y.z>\r\n"),
    "mail-before-lhlo": (WHOLE, ROOMY, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<b@c.d>\r\nHELO x\r\nEHLO x\r\n"),
    "addresses": (WHOLE, ROOMY, HELLO + b"MAIL FROM:<@r1,@r2:a@b.c>\r\n"
                  b"RCPT TO:<\"q \\\" >\"@example.org>\r\nRCPT TO:<a..b@c.d>\r\nRCPT TO:<x@[127.0.0.1]>\r\n"
                  b"RCPT TO:<Postmaster>\r\nRCPT TO:<a@-b.c>\r\nRCPT TO:<" + b"l" * 65 + b"@x.y>\r\n"
                  b"RCPT TO:<x@" + b"d" * 64 + b".y>\r\nRCPT TO:<b@c.d> NOTIFY=NEVER\r\nRCPT TO:b@c.d\r\n"),
    "too-many-recipients": (WHOLE, CAP1K, TX + b"RCPT TO:<c@x.y>\r\nRCPT TO:<d@x.y>\r\nRCPT TO:<e@x.y>\r\nDATA\r\nm\r\n.\r\n"),
    "other-verbs": (WHOLE, ROOMY, b"NOOP\r\nnoop x\r\nVRFY bob\r\nEXPN list\r\nHELP\r\nRSET\r\nRSET x\r\nQUIT now\r\nSTARTTLS\r\nQUIT\r\nNOOP\r\n"),
    "too-many-errors": (WHOLE, CAP1K, b"x\r\ny\r\nz\r\nw\r\nNOOP\r\n"),
    "line-too-long": (SMALL_READS, ROOMY, HELLO + b"NOOP " + b"x" * 600 + b"\r\nNOOP\r\n"),
    "line-too-long-no-end": (WHOLE, ROOMY, b"RCPT TO:<" + b"y" * 1200),
    "line-at-limit": (WHOLE, ROOMY, b"NOOP " + b"x" * 507 + b"\r\nNOOP " + b"x" * 508 + b"\r\n"),
    "lf-only": (WHOLE, CAP1K, b"LHLO x\nMAIL FROM:<a@b.c>\nRCPT TO:<b@c.d>\nDATA\nbody\n.\n.\r\n"),
    "invalid-utf8": (WHOLE, ROOMY, b"\xff\xfe\r\nLHLO \xc3\xa9\r\nMAIL FROM:<a@b.c> \xc3\xa9=1\r\n\x00\r\n"),
    "pipelined-two-transactions": (WHOLE, CAP1K, TX + b"DATA\r\none\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<defer@x.y>\r\n"
                                   b"BDAT 3 LAST\r\ntwoLHLO again\r\nRCPT TO:<b@c.d>\r\n"),
}
for name, (chunk, pick, data) in lmtp.items():
    write("lmtp_input", name, bytes([chunk, pick]) + data)

# --- MIME messages (mime: as is; fetch_render: [section pick] + message) ------------------------
def crlf(s):
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

messages = {
    "plain": b"From: Alice <a@example.test>\nTo: b@example.test\nSubject: hi\nDate: Mon, 1 Jan 2024 10:00:00 +0100\n\nhello\n",
    "no-header": b"just a body line\n",
    "empty": b"",
    "header-only": b"Subject: x\n",
    "encoded-words": b"Subject: =?UTF-8?B?SMOpbGxv?= =?ISO-8859-1?Q?W=F6rld?=\nFrom: =?UTF-8?Q?J=C3=BCrgen?= <j@x>\n\nx\n",
    "groups": b"To: undisclosed-recipients:;\nCc: team: a@x, \"b, c\" <b@y>;, d@z\nFrom: <@relay:e@w>\n\n",
    "multipart": b"Content-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n--b1\nContent-Type: text/plain; charset=utf-8\n\npart one\n--b1\nContent-Type: application/pdf; name=x.pdf\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"x.pdf\"\n\nJVBERi0=\n--b1--\nepilogue\n",
    "nested-rfc822": b"Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\ntext\n--i\nContent-Type: text/html\n\n<p>x</p>\n--i--\n--o--\n",
    "digest": b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\n1\n--d\n\nSubject: two\n\n2\n--d--\n",
    "qp-latin1": b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nW=F6rld=\n soft break\n",
    "base64-rfc822": b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeAoKeQo=\n",
    "boundary-prefix": b"Content-Type: multipart/mixed; boundary=ab\n\n--ab\nContent-Type: multipart/mixed; boundary=abc\n\n--abc\n\nx\n--abc--\n--ab--\n",
    "no-boundary": b"Content-Type: multipart/mixed\n\n--x\n\ny\n--x--\n",
    "unterminated-multipart": b"Content-Type: multipart/mixed; boundary=z\n\n--z\n\nnever closed\n",
    "rfc2231": b"Content-Type: application/octet-stream; name*0*=UTF-8''%C3%A9t%C3%A9; name*1=.txt\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\n\nx\n",
    "eight-bit-header": b"Subject: caf\xc3\xa9 \xff\xfe\nFrom: \xe9 <x@y>\n\n\x80\x81\n",
    "folded": b"Subject: a\n very\n\tlong\nReferences: <a@b>\n <c@d>\n\nbody\n",
    "cr-only": b"Subject: x\rFrom: y\r\rbody\r",
    "mime-params": b"Content-Type: text/plain; charset=\"utf-8\"; format=flowed; delsp=yes\nContent-ID: <id@x>\nContent-Description: desc\nContent-Language: en, de\nContent-Location: http://x/y\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\nx\n",
}
deep = b"Content-Type: multipart/mixed; boundary=q\n\n--q\n" * 1
for i in range(60):
    deep += b"Content-Type: message/rfc822\n\n"
deep += b"Subject: bottom\n\nend\n--q--\n"
messages["deep-nesting"] = deep
for name, raw in messages.items():
    msg = raw if name == "cr-only" else crlf(raw)
    write("mime", name, msg)
    for pick in (0x00, 0x09):
        write("fetch_render", "%s-%02x" % (name, pick), bytes([pick]) + msg)

# --- seqset: [n] n big-endian UIDs, then the set ------------------------------------------------
def seq(uids, text):
    return bytes([len(uids)]) + b"".join(struct.pack(">I", u) for u in uids) + text

seqsets = {
    "range-star": seq([1, 2, 5, 9], b"1:*"),
    "reversed": seq([1, 2, 5, 9], b"*:2"),
    "singles": seq([3, 4, 7], b"2,1,3,3"),
    "beyond": seq([3, 4, 7], b"4"),
    "empty-map-star": seq([], b"*"),
    "empty-map-range": seq([], b"1:5"),
    "max-uid": seq([1, 4294967294, 4294967295], b"4294967295:*,1"),
    "overlap": seq([1, 2, 3, 4, 5, 6], b"1:3,2:5,6,5:6"),
    "zero": seq([1], b"0"),
    "junk": seq([1, 2], b"1:2:3"),
    "spaces": seq([1, 2], b"1, 2"),
    "huge-range": seq([10, 20, 30], b"1:4294967295"),
    "unsorted-map": seq([9, 1, 5, 1], b"1:*"),
    "many": seq(list(range(1, 32)), b"1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31,2:4,*"),
}
for name, data in seqsets.items():
    write("seqset", name, data)

# --- utf7: a mailbox name as sent, or a UTF-8 name ------------------------------------------------
for name, data in {
    "ascii": b"INBOX/Sent Items",
    "amp": b"Tom &- Jerry",
    "latin": b"Entw&APw-rfe",
    "cjk": b"&ZeVnLIqe-",
    "surrogate-pair": b"&2D3eAA-",
    "unterminated": b"&AOk",
    "non-canonical-ascii": b"&AGE-",
    "adjacent-shifts": b"&AOk-&AOk-",
    "bad-padding": b"&AOl-",
    "lone-surrogate": b"&2D0-",
    "bad-base64": b"&A.k-",
    "raw-utf8": "Entwürfe".encode(),
    "raw-emoji": "📬 Post".encode(),
    "control": b"a\x01b",
    "empty-shift": b"&-&-",
    "invalid-utf8": b"\xff\xfe&AOk-",
}.items():
    write("utf7", name, data)

# --- bench_response: [chunk pick][cap pick] server bytes ----------------------------------------
for name, (chunk, cap, data) in {
    "greeting": (0x80, 60, b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] ready\r\n"),
    "fetch-literal": (0x03, 60, b"* 1 FETCH (UID 4 FLAGS (\\Seen) BODY[] {5}\r\nhello)\r\na1 OK done\r\n"),
    "fetch-literal-bytewise": (0x00, 60, b"* 1 FETCH (BODY[HEADER] {4}\r\nab\r\n RFC822.SIZE 4)\r\n"),
    "binary-literal": (0x80, 60, b"* 2 FETCH (BINARY[1] ~{3}\r\n\x00\x01\x02)\r\n"),
    "list": (0x80, 60, b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n* LIST () "/" {5}\r\nA "b"\r\n'),
    "search": (0x80, 60, b"* SEARCH 1 2 3 (MODSEQ 9)\r\n* SEARCH\r\n"),
    "status": (0x80, 60, b"* STATUS INBOX (MESSAGES 3 UIDNEXT 9)\r\n"),
    "codes": (0x80, 60, b"a OK [APPENDUID 5 7] done\r\nb OK [COPYUID 5 1:3 7:9] x\r\nc NO [LIMIT] no\r\n"),
    "continuation": (0x80, 60, b"+ Ready\r\n+\r\n"),
    "bye": (0x80, 60, b"* BYE closing\r\n"),
    "too-large": (0x05, 0, b"* 1 FETCH (BODY[] {9999}\r\nabc"),
    "no-crlf-growing": (0x02, 1, b"* " + b"x" * 100),
    "unterminated-quote": (0x80, 60, b'* LIST () "/" "abc\r\n'),
    "deep-lists": (0x80, 60, b"* 1 FETCH " + b"(" * 200 + b")" * 200 + b"\r\n"),
    "bad-number": (0x80, 60, b"* 99999999999 EXISTS\r\n* 1 FETCH (UID x)\r\n"),
    "literal-overflow": (0x80, 60, b"* 1 FETCH (BODY[] {18446744073709551615}\r\n"),
    "expunge-vanished": (0x80, 60, b"* 3 EXPUNGE\r\n* VANISHED (EARLIER) 1:5\r\n* 4 RECENT\r\n"),
}.items():
    write("bench_response", name, bytes([chunk, cap]) + data)
