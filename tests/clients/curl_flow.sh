#!/usr/bin/env bash
# curl as an IMAP client: LIST, APPEND (upload), FETCH by UID, and the same over implicit TLS.
# Usage: curl_flow.sh HOST PORT TLS_PORT USER PASSWORD CA_CERT
set -euo pipefail
host=$1 port=$2 tls_port=$3 user=$4 pass=$5 ca=$6
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
c() { curl --silent --show-error --max-time 20 --user "$user:$pass" "$@"; }

# LIST
out=$(c "imap://$host:$port/")
grep -q 'INBOX' <<<"$out" || fail "LIST has INBOX: $out"

# APPEND via upload into a fresh mailbox.
box="Curl$RANDOM$RANDOM"
c "imap://$host:$port/" -X "CREATE $box" >/dev/null
printf 'From: curl <curl@example.test>\r\nTo: demo@example.test\r\nSubject: via curl\r\n\r\nuploaded by curl\r\n' > "$tmp/msg.eml"
c -T "$tmp/msg.eml" "imap://$host:$port/$box" || fail "APPEND via curl"

# FETCH the message back by UID; bytes identical.
c "imap://$host:$port/$box;UID=1" > "$tmp/got.eml" || fail "FETCH via curl"
cmp -s "$tmp/msg.eml" "$tmp/got.eml" || fail "fetched bytes differ: $(cat -A "$tmp/got.eml" | head -5)"

# EXAMINE-style listing of the mailbox shows 1 message.
out=$(c "imap://$host:$port/$box" -X "SEARCH ALL")
grep -q 'SEARCH 1' <<<"$out" || fail "SEARCH ALL -> 1: $out"

# Implicit TLS, certificate verified against the dev CA certificate.
out=$(c --cacert "$ca" "imaps://localhost:$tls_port/$box;UID=1")
grep -q 'uploaded by curl' <<<"$out" || fail "FETCH over imaps: $out"

c "imap://$host:$port/" -X "DELETE $box" >/dev/null
echo "curl flow: all checks passed"
