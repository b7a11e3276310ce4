#!/usr/bin/env bash
# Smoke test: run this Worker under `wrangler dev` (local workerd) against an
# Accelerate-compatible server and create users through it.
#
#   ACCELERATE_URL='prisma+postgres://127.0.0.1:4466/?api_key=KEY' ./smoke.sh
#
# Env:
#   ACCELERATE_URL  required; passed to the Worker as DATABASE_URL. Use a
#                   localhost/127.0.0.1 host: the Prisma client speaks plain
#                   http only to those, https to anything else.
#   DATABASE_URL    optional direct postgresql:// URL of the same database; if
#                   set, schema.sql is applied first (needs psql).
#   SMOKE_PORT      optional port for wrangler dev (default: a free one)
#
# Exit codes: 0 all checks passed; 1 a check failed or wrangler did not come
# up for another reason; 2 usage/setup error; 3 workerd cannot start on this
# machine (binary missing or not runnable).
set -uo pipefail
cd "$(dirname "$0")"

if [[ -z "${ACCELERATE_URL:-}" ]]; then
  echo "smoke: ACCELERATE_URL is required (prisma+postgres://127.0.0.1:PORT/?api_key=KEY)" >&2
  exit 2
fi
./setup.sh >/dev/null || { echo "smoke: setup.sh failed" >&2; exit 2; }

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# 1. Can workerd run here at all?
workerd_bin="$(node -e 'try{console.log(require.resolve("@cloudflare/workerd-linux-64/bin/workerd"))}catch{process.exit(1)}' 2>/dev/null)"
if [[ -z "$workerd_bin" ]] || ! wd_version="$("$workerd_bin" --version 2>&1)"; then
  echo "smoke: SKIP workerd cannot start on this machine (${workerd_bin:-@cloudflare/workerd-linux-64 not installed}): ${wd_version:-}" >&2
  exit 3
fi
echo "smoke: $wd_version"

# 2. Optional: create the table.
if [[ -n "${DATABASE_URL:-}" ]]; then
  psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f schema.sql >/dev/null || { echo "smoke: applying schema.sql failed" >&2; exit 2; }
fi

# 3. Start wrangler dev in its own process group so we can stop all of it.
port="${SMOKE_PORT:-$(free_port)}"
inspector_port="$(free_port)"
log="$(mktemp -t wrangler-dev.XXXXXX.log)"
WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false NO_UPDATE_NOTIFIER=1 \
  setsid node node_modules/wrangler/bin/wrangler.js dev \
    --ip 127.0.0.1 --port "$port" --inspector-port "$inspector_port" \
    --var "DATABASE_URL:$ACCELERATE_URL" --log-level info >"$log" 2>&1 </dev/null &
wpid=$!
cleanup() {
  kill -TERM -- "-$wpid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$wpid" 2>/dev/null || true
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
ready=0
for _ in $(seq 1 600); do
  if curl -fsS "$base/" >/dev/null 2>&1; then ready=1; break; fi
  if ! kill -0 "$wpid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  echo "smoke: wrangler dev did not become ready on $base; log:" >&2
  tail -n 40 "$log" >&2
  if grep -qiE 'workerd.*(not found|error while loading|cannot execute|exec format|GLIBC|Illegal instruction|failed to start)|spawn .*workerd' "$log"; then
    echo "smoke: SKIP workerd cannot start on this machine" >&2
    exit 3
  fi
  exit 1
fi
echo "smoke: wrangler dev ready on $base (log: $log)"

# 4. Checks.
passed=0; failed=0
check() { # name expected_status body jq-like node assertion
  local name="$1" want="$2" data="$3" assertion="$4" out status resp
  out="$(curl -sS -X POST "$base/" -H 'content-type: application/json' --data-binary "$data" -w $'\n%{http_code}')"
  status="${out##*$'\n'}"; resp="${out%$'\n'*}"
  if [[ "$status" == "$want" ]] && RESP="$resp" node -e "const r=JSON.parse(process.env.RESP); if(!($assertion)) process.exit(1)" 2>/dev/null; then
    echo "ok   $name -> $status $resp"; passed=$((passed+1))
  else
    echo "FAIL $name -> $status $resp (wanted $want and: $assertion)"; failed=$((failed+1))
  fi
}
run_id="$(date +%s)-$RANDOM"
check "create user" 201 "{\"name\":\"Smoke One\",\"email\":\"smoke1-$run_id@example.com\",\"password\":\"s3cret\"}" \
  "Number.isInteger(r.id) && r.name==='Smoke One' && r.email==='smoke1-$run_id@example.com' && !('password' in r)"
check "create second user" 201 "{\"name\":\"Smoke Two ✓\",\"email\":\"smoke2-$run_id@example.com\",\"password\":\"x\"}" \
  "Number.isInteger(r.id) && r.name==='Smoke Two ✓'"
check "duplicate email is P2002" 409 "{\"name\":\"Again\",\"email\":\"smoke1-$run_id@example.com\",\"password\":\"x\"}" \
  "r.code==='P2002'"
check "invalid body" 400 '{"name":"No email"}' "typeof r.error==='string'"

if [[ $failed -ne 0 ]]; then
  echo "smoke: wrangler log tail:"; tail -n 30 "$log"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
