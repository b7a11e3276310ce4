#!/usr/bin/env bash
# Start Prisma's reference Accelerate server (@prisma/query-plan-executor) on a
# free local port in front of DATABASE_URL.
#
#   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/prisma_dev ./run-reference.sh
#       -> runs in the foreground, prints ACCELERATE_URL=...
#   DATABASE_URL=... ./run-reference.sh -- node --import tsx suite.mjs
#       -> starts the server, runs the command with ACCELERATE_URL exported,
#          stops the server, exits with the command's status
#
# Env: DATABASE_URL (required), REFERENCE_PORT (default: a free port),
#      API_KEY (default: reference; the reference server ignores it).
set -euo pipefail
cd "$(dirname "$0")"

: "${DATABASE_URL:?DATABASE_URL is required (postgresql://...)}"
if [[ ! -d node_modules/@prisma/query-plan-executor ]]; then
  echo "run-reference.sh: dependencies missing, run ./setup.sh first" >&2
  exit 2
fi

port="${REFERENCE_PORT:-$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}"
log="${REFERENCE_LOG:-$(mktemp -t reference-server.XXXXXX.log)}"
PORT="$port" node reference-server.mjs >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "run-reference.sh: server exited; log:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null

export ACCELERATE_URL="prisma+postgres://127.0.0.1:$port/?api_key=${API_KEY:-reference}"
echo "ACCELERATE_URL=$ACCELERATE_URL (server log: $log)" >&2

if [[ "${1:-}" == "--" ]]; then
  shift
  set +e
  "$@"
  status=$?
  set -e
  exit "$status"
fi
wait "$pid"
