#!/usr/bin/env bash
# Fetch Prisma's published query compiler (the Prisma 5/6 DataProxy front end runs it in-process)
# from the npm registry: pinned version, verified checksums, unpacked into a cache directory.
# The .wasm is a dependency, never committed. Idempotent: does nothing when the files are there.
#
#   tools/fetch-query-compiler.sh            # into ${TIDEPOOL_CACHE_DIR:-~/.cache/tidepool}
#   TIDEPOOL_CACHE_DIR=/some/dir tools/...   # elsewhere (then point [prisma] query_compiler_wasm at it)
#
# Keep VERSION in step with tidepool-qc's PINNED_VERSION (crates/tidepool-qc/src/locate.rs).
set -euo pipefail

VERSION=7.10.0-4.0edf323efd1d98336f3f0a68684b56f689b900d3
TGZ_SHA256=e897ff279274bdce1bb1dd9463aac35b368f3ee65bb02528b43de95217af0d68
WASM_SHA256=f2592df4586bc42ceffbfcdbaa764cc44612b533b61293119a7e6222cf5637f9

cache="${TIDEPOOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tidepool}"
dest="$cache/query-compiler/$VERSION/postgresql"
wasm="$dest/query_compiler_fast_bg.wasm"

if [[ -f "$wasm" && -f "$dest/query_compiler_fast_bg.js" ]] \
  && [[ "$(sha256sum "$wasm" | cut -d' ' -f1)" == "$WASM_SHA256" ]]; then
  echo "fetch-query-compiler: $wasm ready"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@prisma/query-compiler-wasm@$VERSION" >/dev/null)
tgz="$(ls "$tmp"/*.tgz)"
got="$(sha256sum "$tgz" | cut -d' ' -f1)"
if [[ "$got" != "$TGZ_SHA256" ]]; then
  echo "fetch-query-compiler: checksum mismatch for $tgz: $got (want $TGZ_SHA256)" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/postgresql/query_compiler_fast_bg.wasm package/postgresql/query_compiler_fast_bg.js
got="$(sha256sum "$tmp/package/postgresql/query_compiler_fast_bg.wasm" | cut -d' ' -f1)"
if [[ "$got" != "$WASM_SHA256" ]]; then
  echo "fetch-query-compiler: wasm checksum mismatch: $got (want $WASM_SHA256)" >&2
  exit 1
fi
mkdir -p "$dest"
cp "$tmp/package/postgresql/query_compiler_fast_bg.js" "$dest/"
cp "$tmp/package/postgresql/query_compiler_fast_bg.wasm" "$dest/.query_compiler_fast_bg.wasm.part"
mv "$dest/.query_compiler_fast_bg.wasm.part" "$wasm"
echo "fetch-query-compiler: $wasm ready"
