"""The two assertions every imaplib client script here uses: exit with a message on the first
reply that is not what the RFC says it must be."""


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")


def ok(result, what):
    typ, data = result
    check(typ == "OK", f"{what}: expected OK, got {typ} {data!r}")
    return data
