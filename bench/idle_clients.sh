#!/usr/bin/env bash
# Memory per idle client: opens IDLE_CLIENTS (default 10,000) idle,
# authenticated client connections to tidepool and to PgBouncer (same
# transaction-mode config as bench/pgbench.sh: pool 20, user bench/bench,
# SCRAM), and reports each proxy's RSS growth per client.
#
# The clients are one Python asyncio process (bench/idle_clients.py) that
# does the startup/SCRAM handshake by hand, waits for ReadyForQuery, stays
# idle, then checks a sample still answers SELECT 1.
#
# Usage: bench/idle_clients.sh
#        IDLE_CLIENTS=2000 TARGETS=pgbouncer bench/idle_clients.sh
# Environment: IDLE_CLIENTS [10000], TARGETS ["pgbouncer tidepool"],
#   POOL_SIZE [20], CONCURRENCY [64] (handshakes in flight), SKIP_BUILD [0],
#   TIDEPOOL_BIN, TIDEPOOL_LOG, PGB_AUTH_TYPE, PGB_PASSWORD_FORMAT [verifier|plain], OUT_DIR [bench/out/idle-<timestamp>]
# Needs `ulimit -n` above IDLE_CLIENTS (the hard limit is used).
set -Eeuo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
TARGETS=${TARGETS:-"pgbouncer tidepool"}
POOL_SIZE=${POOL_SIZE:-20}
CONCURRENCY=${CONCURRENCY:-64}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out/idle-$STAMP}
mkdir -p "$OUT_DIR/logs"

command -v python3 >/dev/null || die "python3 is needed for the idle clients"
PG_BINDIR=$(find_pg_bindir)
setup_os_user
raise_nofile
if (($(ulimit -n) < IDLE_CLIENTS + 100)); then
    die "open files limit $(ulimit -n) is too low for $IDLE_CLIENTS clients (lower IDLE_CLIENTS)"
fi
bench_install_trap
bench_init_run_dir

want() { [[ " $TARGETS " == *" $1 "* ]]; }
declare -A NOTE=()

if want tidepool && ! build_tidepool; then
    NOTE[tidepool]="no binary at $TIDEPOOL_BIN"
    log "tidepool: ${NOTE[tidepool]}"
fi
start_postgres 100

run_idle() { # name port pid
    local name=$1 port=$2 pid=$3
    log "$name: opening $IDLE_CLIENTS idle clients (pid $pid, RSS $(rss_kb "$pid") kB)"
    python3 "$BENCH_DIR/idle_clients.py" --target "$name" --port "$port" --pid "$pid" \
        --user "$BENCH_USER" --password "$BENCH_PASSWORD" --database "$BENCH_DB" \
        --clients "$IDLE_CLIENTS" --concurrency "$CONCURRENCY" \
        >"$OUT_DIR/$name.json" 2>"$OUT_DIR/logs/$name-clients.stderr.log" ||
        { log "$name: client run failed"; tail -n 5 "$OUT_DIR/logs/$name-clients.stderr.log" >&2; return 1; }
    log "$name: $(cat "$OUT_DIR/$name.json")"
}

declare -A ROW=()
row_from_json() { # name -> markdown row
    python3 - "$OUT_DIR/$1.json" "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
per = d["rss_delta_per_client_bytes"]
print(f"| {sys.argv[2]} | {d['connected']}/{d['clients']} | {d['rss_before_kb']/1024:.1f} MiB | "
      f"{d['rss_after_kb']/1024:.1f} MiB | {per/1024:.2f} KiB | {d['connect_seconds']} s | "
      f"{d['sample_ok']}/{d['sample_total']} |" + (f" errors: {d['errors']}" if d['errors'] else ""))
EOF
}

if want pgbouncer; then
    ensure_pgbouncer
    start_pgbouncer "$POOL_SIZE"
    if run_idle pgbouncer "$PGB_PORT" "$PGB_PID"; then ROW[pgbouncer]=$(row_from_json pgbouncer); fi
    kill -TERM "$PGB_PID" 2>/dev/null || true
fi
if want tidepool && [[ -z ${NOTE[tidepool]:-} ]]; then
    if start_tidepool "$POOL_SIZE"; then
        if run_idle tidepool "$TP_PORT" "$TP_PID"; then ROW[tidepool]=$(row_from_json tidepool); fi
    else
        NOTE[tidepool]="failed to start or answer (see logs/tidepool.log)"
    fi
fi

MD=$OUT_DIR/results.md
{
    echo "## Idle clients: RSS per connected, authenticated client"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $IDLE_CLIENTS clients (SCRAM, user bench), pool_size $POOL_SIZE, transaction mode;" \
        "RSS of the proxy process before (after one warm-up login) and 2 s after all clients connected (kernel socket buffers are not in RSS)."
    echo
    echo "| proxy | connected | RSS before | RSS after | RSS per client | connect time | sample SELECT 1 ok |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in pgbouncer tidepool; do
        want "$t" || continue
        echo "${ROW[$t]:-| $t | n/a ${NOTE[$t]:+(${NOTE[$t]})} | | | | | |}"
    done
} >"$MD"
cp -f "$MD" "$BENCH_DIR/out/idle-latest.md"
cat "$MD"
log "results: $MD"
