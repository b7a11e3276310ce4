#!/usr/bin/env bash
# Install the pinned packages and generate the Prisma client offline.
# Idempotent: `npm ci` runs only when package-lock.json changed since the last
# install, `prisma generate` only when the schema or the install changed.
set -euo pipefail
cd "$(dirname "$0")"

lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
lock_stamp=node_modules/.tidepool-lock.sha256
if [[ ! -f "$lock_stamp" || "$(cat "$lock_stamp")" != "$lock_sum" ]]; then
  # --ignore-scripts: prisma's install hooks would try to download engines;
  # nothing here needs them (the client generator and compiler are WASM).
  npm ci --ignore-scripts --no-audit --no-fund
  echo "$lock_sum" >"$lock_stamp"
fi

gen_sum="$(cat package-lock.json prisma/schema.prisma | sha256sum | cut -d' ' -f1)"
gen_stamp=generated/.tidepool-schema.sha256
if [[ ! -f "$gen_stamp" || "$(cat "$gen_stamp")" != "$gen_sum" || ! -f generated/prisma/client.ts ]]; then
  # No network here: PRISMA_SCHEMA_ENGINE_BINARY stops the CLI from fetching
  # the schema engine, which `generate` does not use.
  PRISMA_SCHEMA_ENGINE_BINARY=/bin/true \
  PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING=1 \
  CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 \
    npx --no-install prisma generate
  echo "$gen_sum" >"$gen_stamp"
fi
echo "setup.sh: ready"
