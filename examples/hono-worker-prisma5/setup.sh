#!/usr/bin/env bash
# Install the pinned packages and generate the Prisma client offline (--no-engine: the app
# talks to tidepool's DataProxy routes). Idempotent, like ../prisma/setup.sh.
set -euo pipefail
cd "$(dirname "$0")"

lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
lock_stamp=node_modules/.tidepool-lock.sha256
if [[ ! -f "$lock_stamp" || "$(cat "$lock_stamp")" != "$lock_sum" ]]; then
  npm ci --ignore-scripts --no-audit --no-fund
  echo "$lock_sum" >"$lock_stamp"
fi

gen_sum="$(cat package-lock.json prisma/schema.prisma | sha256sum | cut -d' ' -f1)"
gen_stamp=node_modules/.tidepool-generate.sha256
if [[ ! -f "$gen_stamp" || "$(cat "$gen_stamp")" != "$gen_sum" || ! -f node_modules/.prisma/client/edge.js ]]; then
  # No network: both engine variables stop the 5.x/6.x CLI from downloading engines
  # that `generate --no-engine` does not use.
  PRISMA_SCHEMA_ENGINE_BINARY=/bin/true PRISMA_QUERY_ENGINE_LIBRARY=/bin/true \
  CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 \
    npx --no-install prisma generate --no-engine
  echo "$gen_sum" >"$gen_stamp"
fi
# The query compiler tidepool runs for these clients (pinned, checksummed, cached).
../../tools/fetch-query-compiler.sh
echo "setup.sh: ready"
