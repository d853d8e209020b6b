#!/usr/bin/env bash
# Runs a single-node Mailraft (storage + IMAP in one process) with a demo tenant, for local use.
# Extra arguments go to `mailraft dev` (see `mailraft dev --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mailraft-target}"
exec cargo run -q --bin mailraft -- dev "$@"
