#!/usr/bin/env bash
# CI step: every fuzz target for a short time (FUZZ_SECONDS each, default 20), from the generated
# seeds. Installs cargo-fuzz (pinned) when missing. Fails on the first crash, leak of a panic or
# timeout; the reproducer is left in fuzz/artifacts/TARGET. The sanitizer is off: the crates fuzzed
# here contain no unsafe code, and a panic, stack overflow or over-limit allocation is what
# these runs look for (fuzz/run.sh runs with AddressSanitizer for longer sessions).
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.1
export RUSTC_BOOTSTRAP=1 FUZZ_SANITIZER=none
[ -d seeds ] || cargo run -q -p tidepool-fuzz-seedgen
cargo fuzz build --sanitizer none
log=$(mktemp)
n=0
for t in $(cargo fuzz list); do
  if ! ./run.sh "$t" "$secs" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t FAILED (reproducer in fuzz/artifacts/$t)"
    exit 1
  fi
  echo "fuzz: $t ${secs}s: $(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?') runs, no finding"
  n=$((n + 1))
done
rm -f "$log"
echo "fuzz: $n targets, $((n * secs))s, 0 findings"
