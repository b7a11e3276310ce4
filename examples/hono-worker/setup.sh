#!/usr/bin/env bash
# npm ci (only when package-lock.json changed) + offline `prisma generate`
# (only when the schema changed). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f node_modules/.tidepool-lock.sha256 || "$(cat node_modules/.tidepool-lock.sha256)" != "$lock_sum" ]]; then
  # --ignore-scripts: prisma's hooks would try to download engines (not needed);
  # workerd and esbuild ship their binaries as npm packages and need no script.
  npm ci --ignore-scripts --no-audit --no-fund
  echo "$lock_sum" >node_modules/.tidepool-lock.sha256
fi

gen_sum="$(cat package-lock.json prisma/schema.prisma | sha256sum | cut -d' ' -f1)"
if [[ ! -f src/generated/.tidepool-schema.sha256 || "$(cat src/generated/.tidepool-schema.sha256)" != "$gen_sum" || ! -f src/generated/prisma/client.ts ]]; then
  PRISMA_SCHEMA_ENGINE_BINARY=/bin/true PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING=1 \
  CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 \
    npx --no-install prisma generate
  echo "$gen_sum" >src/generated/.tidepool-schema.sha256
fi
echo "setup.sh: ready"
