#!/usr/bin/env bash
# Installs what building and testing Mailraft needs on a fresh Debian machine, and nothing when it
# is already there. Safe to run repeatedly.
set -euo pipefail

need=()
# bindgen (rocksdb's -sys crate) loads libclang at build time.
dpkg -s libclang1-14 >/dev/null 2>&1 || need+=(libclang1-14)
dpkg -s libclang-common-14-dev >/dev/null 2>&1 || need+=(libclang-common-14-dev)
# Real IMAP clients the end-to-end tests drive.
command -v mbsync >/dev/null 2>&1 || need+=(isync)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# An SMTP/LMTP client for the LMTP delivery tests (tests/lmtp.rs).
command -v swaks >/dev/null 2>&1 || need+=(swaks)
# Postfix's smtp-source (an MTA's bulk LMTP sender) for tests/lmtp.rs; the Postfix daemon is
# never started (no init system here), only the tool is used.
[ -x /usr/sbin/smtp-source ] || need+=(postfix)
# fusermount3 for the faultfs power-loss tests (crates/faultfs, tests/durability_power_loss.rs).
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo-nextest >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/cargo-nextest" ]; then
  echo "setup: cargo-nextest not found; tests will run with cargo test" >&2
fi

# helm, kubernetes-validate and promtool for the deployment checks (tests/deploy/check_deploy.py).
"$(dirname "$0")/../tests/deploy/setup_tools.sh"
