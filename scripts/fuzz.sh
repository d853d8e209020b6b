#!/usr/bin/env bash
# Coverage-guided fuzz campaign over every target in fuzz/ (or the ones named).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      default: 300 s, all targets
#
# Runs on the stable toolchain: cargo-fuzz with RUSTC_BOOTSTRAP=1 and no sanitizer (their runtimes
# ship only with nightly). Builds go to their own target directory, never the workspace's shared
# one (different compiler flags would evict it), and run under `nice` so other builds keep going.
# Inputs a campaign finds go to fuzz/corpus-work/<target>/ (not checked in; the next campaign
# continues from it). The checked-in fuzz/corpus/<target>/ holds the seeds (fuzz/seeds/
# make_seeds.py), the last campaign's minimized inputs and every crash reproducer; it is read as
# seeds here and replayed by the ordinary test suite. To check in what a campaign found (only the
# inputs that add coverage beyond what is there), from fuzz/ with the variables below:
#   cargo fuzz cmin --sanitizer none TARGET corpus-work/TARGET
#   cargo fuzz run --sanitizer none TARGET corpus/TARGET corpus-work/TARGET -- -merge=1
# A crash lands in fuzz/artifacts/<target>/; reproduce it with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none TARGET artifacts/TARGET/crash-…
# and, once fixed, copy it into fuzz/corpus/<target>/ as a regression test.
# Logs: fuzz/logs/<target>.log. Exits non-zero if any target found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(imap_input lmtp_input fetch_render mime seqset utf7 bench_response)
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${MAILRAFT_FUZZ_TARGET_DIR:-$HOME/.cache/mailraft-fuzz}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

secs=300
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  secs=$1
  shift
fi
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${ALL[@]}")

cd fuzz
nice -n 10 cargo fuzz build --sanitizer none
mkdir -p logs corpus-work

failed=()
printf '%-16s %12s %8s %8s %8s %s\n' target execs cov ft corpus result
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t"
  log="logs/$t.log"
  status=0
  nice -n 10 cargo fuzz run --sanitizer none "$t" "corpus-work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  corp=$(grep -o 'corp: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  result=ok
  if [[ $status -ne 0 ]]; then
    result="CRASH (see $log, fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
  printf '%-16s %12s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "crashes in: ${failed[*]}" >&2
  exit 1
fi
