#!/usr/bin/env bash
# The one test command: installs what is missing, then runs every test in the workspace (unit,
# property, storage suite, IMAP sessions over sockets, and real clients — Python imaplib, curl,
# mbsync — against a `mailraft dev` the tests start themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

# Keep the build outside the clone so RocksDB's C++ (~16 min cold) is compiled once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mailraft-target}"

# Helm chart, alerts and dashboard (tests/deploy); first, so nextest's summary stays the closing line.
"${MAILRAFT_TOOLS:-$HOME/.cache/mailraft-tools}/venv/bin/python" tests/deploy/check_deploy.py

if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests; run them first so nextest's summary is the closing line.
  cargo test --workspace --doc -q
  # Build every test binary (and the `mailraft` binary) once, then bring the compose cluster up
  # from that binary's image (deploy/build-image.sh --binary): 3 storage nodes, 2 front-ends and
  # Prometheus: a storage node stopped under writes, then under mailraft-bench load a follower stopped,
  # the leader paused, a front-end restarted and a rolling upgrade of the storage nodes, nothing
  # acknowledged lost; every dashboard panel has data. Skips loudly without a Docker engine.
  cargo nextest run --workspace --no-run
  MAILRAFT_BIN="$CARGO_TARGET_DIR/debug/mailraft" python3 tests/deploy/compose_test.py
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
