#!/usr/bin/env bash
# Fetch Prisma's published query compiler (the Prisma 5/6 DataProxy front end runs it in-process)
# and Prisma's schema tooling (@prisma/prisma-schema-wasm, same engines commit: its DMMF tells which
# request values become plan parameters, so plans are cached by query shape) from the npm registry:
# pinned versions, verified checksums, unpacked into a cache directory. The .wasm files are
# dependencies, never committed. Idempotent: does nothing when the files are there.
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

SCHEMA_TGZ_SHA256=f93e20ffe92411f56d4ba5396a66d0dcc0b73a5484c33c3eabfdd5bdd40ad97c
SCHEMA_WASM_SHA256=e77f37d7e9bdae4100769cbcd5a59918796943f6bed0f8ee99d9eeb7f75fde58
SCHEMA_JS_SHA256=9f2ee87882307376ac65315c0531cceecf703f964110e9e6490e464f03de3002
sdest="$cache/prisma-schema-wasm/$VERSION"
swasm="$sdest/prisma_schema_build_bg.wasm"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ -f "$swasm" && -f "$sdest/prisma_schema_build.js" ]] \
  && [[ "$(sha256sum "$swasm" | cut -d' ' -f1)" == "$SCHEMA_WASM_SHA256" ]]; then
  echo "fetch-query-compiler: $swasm ready"
else
  mkdir -p "$tmp/s"
  (cd "$tmp/s" && npm pack --silent "@prisma/prisma-schema-wasm@$VERSION" >/dev/null)
  tgz="$(ls "$tmp"/s/*.tgz)"
  got="$(sha256sum "$tgz" | cut -d' ' -f1)"
  if [[ "$got" != "$SCHEMA_TGZ_SHA256" ]]; then
    echo "fetch-query-compiler: checksum mismatch for $tgz: $got (want $SCHEMA_TGZ_SHA256)" >&2
    exit 1
  fi
  tar -xzf "$tgz" -C "$tmp/s" package/src/prisma_schema_build_bg.wasm package/src/prisma_schema_build.js
  for f in prisma_schema_build_bg.wasm:$SCHEMA_WASM_SHA256 prisma_schema_build.js:$SCHEMA_JS_SHA256; do
    got="$(sha256sum "$tmp/s/package/src/${f%%:*}" | cut -d' ' -f1)"
    if [[ "$got" != "${f##*:}" ]]; then
      echo "fetch-query-compiler: ${f%%:*} checksum mismatch: $got (want ${f##*:})" >&2
      exit 1
    fi
  done
  mkdir -p "$sdest"
  cp "$tmp/s/package/src/prisma_schema_build.js" "$sdest/"
  cp "$tmp/s/package/src/prisma_schema_build_bg.wasm" "$sdest/.prisma_schema_build_bg.wasm.part"
  mv "$sdest/.prisma_schema_build_bg.wasm.part" "$swasm"
  echo "fetch-query-compiler: $swasm ready"
fi

if [[ -f "$wasm" && -f "$dest/query_compiler_fast_bg.js" ]] \
  && [[ "$(sha256sum "$wasm" | cut -d' ' -f1)" == "$WASM_SHA256" ]]; then
  echo "fetch-query-compiler: $wasm ready"
  exit 0
fi
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
