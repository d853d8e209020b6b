#!/usr/bin/env python3
"""Hostile and broken input over raw sockets: every case gets a clear BAD/NO (with a response code
where RFC 5530 has one) and the server keeps serving a well-behaved client at the same time.

Usage: bad_input.py HOST PORT USER PASSWORD
"""
import imaplib
import socket
import sys

from imapcheck import check


class Raw:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=20)
        self.buf = b""
        greeting = self.line()
        check(greeting.startswith(b"* OK"), f"greeting: {greeting!r}")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise SystemExit(f"FAIL: connection closed, buffered {self.buf[:200]!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def send(self, data):
        self.s.sendall(data)

    def tagged(self, tag):
        """Reads lines up to the tagged reply; returns it."""
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return line


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    good = imaplib.IMAP4(host, port, timeout=20)
    good.login(user, password)

    r = Raw(host, port)
    # Garbage: not even a tag.
    r.send(b"\x00\xff\xfe garbage \x01\r\n")
    line = r.line()
    check(line.startswith(b"* BAD") or line.split(b" ")[1:2] == [b"BAD"], f"garbage -> BAD: {line!r}")

    # Unknown command.
    r.send(b"a1 FROBNICATE\r\n")
    line = r.tagged(b"a1")
    check(line.startswith(b"a1 BAD"), f"unknown command -> BAD: {line!r}")

    # Command in the wrong state (SELECT before login).
    r.send(b"a2 SELECT INBOX\r\n")
    line = r.tagged(b"a2")
    check(line.startswith(b"a2 BAD") or line.startswith(b"a2 NO"), f"wrong state -> BAD/NO: {line!r}")

    # Wrong password: NO [AUTHENTICATIONFAILED] (RFC 5530).
    r.send(b'a3 LOGIN "' + user.encode() + b'" "definitely-wrong"\r\n')
    line = r.tagged(b"a3")
    check(line.startswith(b"a3 NO") and b"[AUTHENTICATIONFAILED]" in line, f"bad password: {line!r}")

    # Over-long line (well above any sane limit): BAD, and the connection stays usable or is
    # closed with BYE — never a hang.
    r.send(b"a4 NOOP " + b"x" * (200 * 1024) + b"\r\n")
    line = r.line()
    check(b"BAD" in line or line.startswith(b"* BYE"), f"over-long line: {line[:120]!r}")

    r2 = Raw(host, port)
    # Huge synchronizing literal: refused before any byte is sent (no continuation).
    r2.send(b'b1 LOGIN "' + user.encode() + b'" "' + password.encode() + b'"\r\n')
    line = r2.tagged(b"b1")
    check(line.startswith(b"b1 OK"), f"login: {line!r}")
    r2.send(b"b2 APPEND INBOX {4000000000}\r\n")
    line = r2.line()
    check(line.startswith(b"b2 NO") or line.startswith(b"b2 BAD"), f"huge literal refused: {line!r}")
    check(b"TOOBIG" in line or b"too" in line.lower(), f"huge literal names the limit: {line!r}")
    r2.send(b"b3 NOOP\r\n")
    line = r2.tagged(b"b3")
    check(line.startswith(b"b3 OK"), f"connection usable after refused literal: {line!r}")

    # The well-behaved client was served throughout.
    typ, data = good.select("INBOX")
    check(typ == "OK", f"other client still served: {typ} {data}")
    good.logout()
    print("bad input: all checks passed")


if __name__ == "__main__":
    main()
