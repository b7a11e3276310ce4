#!/usr/bin/env bash
# Differential run: the suite against Prisma's reference executor, then against
# the server under test, then diff.mjs over the two results files.
#
#   ACCELERATE_URL='prisma+postgres://127.0.0.1:4466/?api_key=KEY' \
#   DATABASE_URL='postgresql://...'            # database the server under test uses
#   [REFERENCE_DATABASE_URL='postgresql://...'] # default: DATABASE_URL (runs are sequential
#                                              # and the suite recreates its tables)
#     ./differential.sh
#
# Writes results-reference.json and results-target.json (or $OUT_DIR/...).
# Exit status: 0 when both runs produce identical normalised results, 1 otherwise.
# The per-run pass/fail counts are printed but do not decide the exit status.
set -uo pipefail
cd "$(dirname "$0")"
: "${ACCELERATE_URL:?ACCELERATE_URL (server under test) is required}"
: "${DATABASE_URL:?DATABASE_URL is required}"
out="${OUT_DIR:-.}"
./setup.sh >/dev/null || exit 2

echo "== reference executor"
DATABASE_URL="${REFERENCE_DATABASE_URL:-$DATABASE_URL}" \
  ./run-reference.sh -- env DATABASE_URL="${REFERENCE_DATABASE_URL:-$DATABASE_URL}" \
  RESULTS_OUT="$out/results-reference.json" node --import tsx suite.mjs | tail -n 1
echo "== target $(sed -E 's/api_key=[^&]*/api_key=***/' <<<"$ACCELERATE_URL")"
RESULTS_OUT="$out/results-target.json" node --import tsx suite.mjs | tail -n 1
node diff.mjs "$out/results-reference.json" "$out/results-target.json"
