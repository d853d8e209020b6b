#!/usr/bin/env bash
# mbsync (isync) syncing a mailbox both ways over implicit TLS with certificate verification.
# Usage: mbsync_flow.sh HOST TLS_PORT USER PASSWORD CA_CERT
set -euo pipefail
host=$1 tls_port=$2 user=$3 pass=$4 ca=$5
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
box="Sync$RANDOM$RANDOM"
mkdir -p "$tmp/mail/$box"/{cur,new,tmp} "$tmp/state"

cat > "$tmp/mbsyncrc" <<RC
IMAPAccount mailraft
Host localhost
Port $tls_port
User $user
Pass $pass
TLSType IMAPS
CertificateFile $ca
AuthMechs PLAIN LOGIN

IMAPStore remote
Account mailraft

MaildirStore local
Path $tmp/mail/
Inbox $tmp/mail/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns $box
Create Both
Expunge Both
SyncState $tmp/state/
RC
# isync < 1.5 spells TLSType as SSLType.
if mbsync --version 2>/dev/null | grep -qE 'isync 1\.[0-4]\.'; then
  sed -i 's/^TLSType/SSLType/' "$tmp/mbsyncrc"
fi

# 1. A message written locally goes up (mbsync creates the mailbox on the server).
printf 'From: near <near@example.test>\r\nSubject: from maildir\r\n\r\nlocal to server\r\n' \
  > "$tmp/mail/$box/new/1.local:2,"
mbsync -c "$tmp/mbsyncrc" -a >"$tmp/log1" 2>&1 || fail "mbsync up: $(cat "$tmp/log1")"

# 2. Check with curl that the server has it, then append one on the server side.
out=$(curl -s --max-time 20 --cacert "$ca" --user "$user:$pass" "imaps://localhost:$tls_port/$box;UID=1")
grep -q 'local to server' <<<"$out" || fail "server has the maildir message: $out"
printf 'From: far <far@example.test>\r\nSubject: from server\r\n\r\nserver to local\r\n' > "$tmp/up.eml"
curl -s --max-time 20 --cacert "$ca" --user "$user:$pass" -T "$tmp/up.eml" "imaps://localhost:$tls_port/$box" \
  || fail "append via curl"

# 3. The server's message comes down.
mbsync -c "$tmp/mbsyncrc" -a >"$tmp/log2" 2>&1 || fail "mbsync down: $(cat "$tmp/log2")"
grep -rl 'server to local' "$tmp/mail/$box" >/dev/null || fail "maildir got the server message"
n=$(find "$tmp/mail/$box" -type f -path '*/cur/*' -o -type f -path '*/new/*' | wc -l)
[ "$n" -eq 2 ] || fail "maildir has 2 messages, found $n"

# 4. A flag set locally (Flagged, maildir "F") goes up.
f=$(grep -rl 'server to local' "$tmp/mail/$box")
case "$f" in
  *:2,*) flags=$(printf '%s' "${f##*:2,}F" | fold -w1 | sort -u | tr -d '\n'); mv "$f" "${f%:2,*}:2,$flags";;
  *) mv "$f" "$f:2,F";;
esac
mbsync -c "$tmp/mbsyncrc" -a >"$tmp/log3" 2>&1 || fail "mbsync flags: $(cat "$tmp/log3")"
out=$(curl -s --max-time 20 --cacert "$ca" --user "$user:$pass" "imaps://localhost:$tls_port/$box" -X 'UID FETCH 2 FLAGS')
grep -q 'Flagged' <<<"$out" || fail "flag synced up: $out"
echo "mbsync flow: all checks passed"
