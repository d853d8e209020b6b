#!/usr/bin/env python3
"""CONDSTORE (RFC 7162) as Python's imaplib drives it, against Mailraft.

Usage: condstore_imaplib.py HOST PORT USER PASSWORD

ENABLE CONDSTORE, SELECT with HIGHESTMODSEQ, FETCH MODSEQ and CHANGEDSINCE, a conditional
UID STORE answered with MODIFIED, SEARCH MODSEQ, STATUS HIGHESTMODSEQ, and the MODSEQ in the
FETCH a second connection's change causes. Exits non-zero on the first reply that is not what
RFC 7162 says it must be.
"""
import imaplib
import re
import sys
import uuid

from imapcheck import check, ok


def modseq(data):
    match = re.search(rb"MODSEQ \(?(\d+)", data)
    check(match is not None, f"MODSEQ in {data!r}")
    return int(match.group(1))


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    m = imaplib.IMAP4(host, port, timeout=30)
    ok(m.login(user, password), "LOGIN")
    check("CONDSTORE" in m.capabilities, f"CONDSTORE advertised: {m.capabilities}")

    box = "Cs-" + uuid.uuid4().hex[:8]
    ok(m.create(box), "CREATE")
    for i in range(3):
        body = f"From: a@example.test\r\nSubject: cs {i}\r\n\r\nbody {i}\r\n".encode()
        ok(m.append(box, None, None, body), f"APPEND {i}")

    # ENABLE CONDSTORE (RFC 7162 §3.1), then SELECT reports HIGHESTMODSEQ (§3.1.2.1).
    ok(m.enable("CONDSTORE"), "ENABLE")
    _, enabled = m.response("ENABLED")
    check(enabled and enabled[0] and b"CONDSTORE" in enabled[0].upper(), f"ENABLED CONDSTORE: {enabled!r}")
    ok(m.select(box), "SELECT")
    _, highest = m.response("HIGHESTMODSEQ")
    check(highest and highest[0], f"HIGHESTMODSEQ after SELECT: {highest!r}")
    highest = int(highest[0])

    # FETCH MODSEQ (§3.1.4.2).
    data = ok(m.fetch("1:*", "(MODSEQ)"), "FETCH MODSEQ")
    seqs = [modseq(d) for d in data]
    check(len(seqs) == 3 and max(seqs) == highest, f"per-message MODSEQ {seqs} vs {highest}")

    # Conditional STORE (§3.1.3): message 3 changes, then a STORE conditional on the old value
    # leaves it alone and names its UID in MODIFIED.
    data = ok(m.uid("STORE", "3", "+FLAGS", "(\\Flagged)"), "UID STORE")
    after = modseq(data[0])
    check(after > highest, f"STORE reports the new MODSEQ: {data!r}")
    typ, data = m.uid("STORE", "1:3", f"(UNCHANGEDSINCE {highest})", "+FLAGS.SILENT", "(\\Seen)")
    check(typ == "OK", f"conditional STORE: {typ} {data!r}")
    # imaplib files the tagged reply's response code under its name.
    _, modified = m.response("MODIFIED")
    check(modified == [b"3"], f"MODIFIED 3: {modified!r}")
    # .SILENT, yet each changed message is reported with its MODSEQ (§3.1.3).
    check(len(data) == 2 and all(modseq(d) > after for d in data), f"FETCH MODSEQ of 1 and 2: {data!r}")
    data = ok(m.fetch("1:3", "(FLAGS)"), "FETCH FLAGS")
    check(b"\\Seen" in data[0] and b"\\Seen" not in data[2], f"only 1 and 2 stored: {data!r}")

    # FETCH CHANGEDSINCE (§3.1.4.1): only what changed after the SELECT's value.
    data = ok(m.uid("FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {highest})"), "CHANGEDSINCE")
    check(len(data) == 3 and all(b"MODSEQ" in d for d in data), f"three changed, with MODSEQ: {data!r}")
    data = ok(m.uid("FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {after})"), "CHANGEDSINCE after")
    check(len(data) == 2, f"only the two conditional stores: {data!r}")

    # SEARCH MODSEQ (§3.1.5) ends with the highest MODSEQ of the matches (§3.1.6).
    data = ok(m.search(None, "MODSEQ", str(after + 1)), "SEARCH MODSEQ")
    check(re.fullmatch(rb"1 2 \(MODSEQ \d+\)", data[0]) is not None, f"SEARCH result: {data!r}")
    data = ok(m.status(box, "(HIGHESTMODSEQ)"), "STATUS")
    status_highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", data[0]).group(1))
    check(b"(MODSEQ %d)" % status_highest in ok(m.search(None, "MODSEQ", "1"), "SEARCH MODSEQ 1")[0],
          "SEARCH MODSEQ 1 reports the mailbox's highest")

    # Another connection's change reaches this one with MODSEQ (§3.1).
    other = imaplib.IMAP4(host, port, timeout=30)
    ok(other.login(user, password), "LOGIN 2")
    ok(other.select(box), "SELECT 2")
    ok(other.store("2", "+FLAGS", "(\\Answered)"), "STORE 2")
    ok(m.noop(), "NOOP")
    _, fetches = m.response("FETCH")
    check(fetches and fetches[-1] and b"\\Answered" in fetches[-1], f"unsolicited FETCH: {fetches!r}")
    check(modseq(fetches[-1]) > status_highest, f"with the new MODSEQ: {fetches!r}")
    other.logout()

    ok(m.close(), "CLOSE")
    ok(m.delete(box), "DELETE")
    m.logout()
    print("all checks passed")


if __name__ == "__main__":
    main()
