#!/usr/bin/env bash
# Regenerate fixtures/: run the whole suite against the reference executor
# through capture-proxy.mjs and split the recording per scenario.
#
#   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/prisma_dev ./capture-fixtures.sh
set -euo pipefail
cd "$(dirname "$0")"
: "${DATABASE_URL:?DATABASE_URL is required}"
./setup.sh >/dev/null

capture="$(mktemp -t capture.XXXXXX.jsonl)"
proxy_port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"

# The inner command runs with ACCELERATE_URL pointing at the reference server;
# put the proxy in front of it and point the suite at the proxy.
./run-reference.sh -- bash -c '
  set -euo pipefail
  target="http://${ACCELERATE_URL#prisma+postgres://}"; target="${target%%/\?*}"
  TARGET="$target" PORT='"$proxy_port"' CAPTURE_OUT='"$capture"' node capture-proxy.mjs >&2 &
  proxy=$!
  trap "kill $proxy 2>/dev/null || true" EXIT
  for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:'"$proxy_port"'/health >/dev/null 2>&1 && break; sleep 0.1; done
  ACCELERATE_URL="prisma+postgres://127.0.0.1:'"$proxy_port"'/?api_key=fixture-key" \
  CAPTURE_CONTROL_URL="http://127.0.0.1:'"$proxy_port"'" \
  RESULTS_OUT="${RESULTS_OUT:-results-reference.json}" \
    node --import tsx suite.mjs
'
node make-fixtures.mjs "$capture" fixtures
rm -f "$capture"
