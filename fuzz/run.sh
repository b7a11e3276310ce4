#!/usr/bin/env bash
# Runs one fuzz target: fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags…]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and works on the stable toolchain through
# RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only -Z flags to rustc). Seeds are generated into
# fuzz/seeds/ on first use; new corpus entries go to fuzz/corpus/TARGET, crashes to
# fuzz/artifacts/TARGET (all three are git-ignored).
# FUZZ_SANITIZER=none skips AddressSanitizer (about 5x faster on the Prisma targets; the Neon and
# Prisma crates forbid unsafe code); the default is cargo-fuzz's own, address.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh TARGET [SECONDS] [libFuzzer flags...]}
secs=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
[ -d seeds ] || cargo run -q -p tidepool-fuzz-seedgen
mkdir -p "corpus/$target"
exec env RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer "${FUZZ_SANITIZER:-address}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
