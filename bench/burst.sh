#!/usr/bin/env bash
# Serverless burst and connect storm: PgBouncer vs tidepool, side by side in one run.
#
# Starts a private PostgreSQL cluster (free port, fsync off), PgBouncer and tidepool in
# transaction mode with the same pool size, and drives both with bench/loadgen (Rust,
# tokio-postgres):
#   burst : CLIENTS (10,000) concurrent SCRAM clients into a pool of POOL_SIZE (20), equal
#           select-only transactions for BENCH_SECONDS; tps, per-transaction latency p50/p99
#           (almost all of it is pool wait: FIFO means p99/p50 stays small), failures, the
#           proxy's CPU time per transaction (/proc/PID/stat), and the most upstream connections
#           sampled in pg_stat_activity every 50 ms.
#   storm : STORM_RATE (1,000) new connections per second for STORM_SECONDS (10): connect,
#           SELECT 1, close; failures and latency.
# Prints a Markdown table with tidepool/PgBouncer ratios (also bench/out/burst-latest.md).
#
# Environment: CLIENTS [10000] POOL_SIZE [20] BENCH_SECONDS [20] PROTOCOLS ["simple extended"]
#   STORM_RATE [1000] STORM_SECONDS [10] TARGETS ["pgbouncer tidepool"] SKIP_BUILD [0]
#   OUT_DIR [bench/out/burst-<timestamp>]  (and lib.sh's PG_BINDIR, TIDEPOOL_BIN, ...)
set -Eeuo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLIENTS=${CLIENTS:-10000}
POOL_SIZE=${POOL_SIZE:-20}
BENCH_SECONDS=${BENCH_SECONDS:-20}
PROTOCOLS=${PROTOCOLS:-"simple extended"}
STORM_RATE=${STORM_RATE:-1000}
STORM_SECONDS=${STORM_SECONDS:-10}
TARGETS=${TARGETS:-"pgbouncer tidepool"}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out/burst-$STAMP}
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/runs"

# Each proxy logs in upstream as its own role, so sampling tells their connections apart.
export PGB_UPSTREAM_USER=up_pgbouncer TP_UPSTREAM_USER=up_tidepool
PG_BINDIR=$(find_pg_bindir)
setup_os_user
raise_nofile
bench_install_trap
bench_init_run_dir
want() { [[ " $TARGETS " == *" $1 "* ]]; }

LOADGEN=${LOADGEN_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/tidepool-loadgen}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building tidepool and the load generator (release)"
    (cd "$REPO_ROOT" && cargo build --release -p tidepool -p tidepool-loadgen) >"$OUT_DIR/logs/cargo-build.log" 2>&1 ||
        { tail -n 15 "$OUT_DIR/logs/cargo-build.log" >&2; die "cargo build failed"; }
fi
TIDEPOOL_BIN=${TIDEPOOL_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/tidepool}
[[ -x $LOADGEN ]] || die "no load generator at $LOADGEN"

start_postgres $((4 * POOL_SIZE + 40))
PGPASSWORD=$BENCH_PASSWORD "$PG_BINDIR/pgbench" -i -s 1 -q -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" "$BENCH_DB" \
    >"$OUT_DIR/logs/pgbench-init.log" 2>&1 || die "pgbench -i failed"
psql_admin "$BENCH_DB" -c "VACUUM ANALYZE" >/dev/null

declare -A PORT=() PID=()
if want pgbouncer; then
    ensure_pgbouncer
    start_pgbouncer "$POOL_SIZE"
    PORT[pgbouncer]=$PGB_PORT PID[pgbouncer]=$PGB_PID
fi
if want tidepool; then
    start_tidepool "$POOL_SIZE" || die "tidepool failed to start (logs in $OUT_DIR/logs)"
    PORT[tidepool]=$TP_PORT PID[tidepool]=$TP_PID
fi

SAMPLE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$BENCH_DB"
# loadgen MODE TARGET ARGS... -> its key=value result line
loadgen() {
    local mode=$1 target=$2
    shift 2
    local url="postgres://$BENCH_USER:$BENCH_PASSWORD@127.0.0.1:${PORT[$target]}/$BENCH_DB?connect_timeout=60"
    "$LOADGEN" "$mode" --url "$url" --sample-url "$SAMPLE_URL" --sample-db "$BENCH_DB" --sample-user "up_$target" --pid "${PID[$target]}" "$@" \
        2>>"$OUT_DIR/runs/$mode-$target.err"
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "–" }'; }

ROWS=()
for proto in $PROTOCOLS; do
    declare -A R=()
    for t in $TARGETS; do
        log "burst: $CLIENTS clients, -M $proto, ${BENCH_SECONDS}s → $t"
        R[$t]=$(loadgen burst "$t" --clients "$CLIENTS" --seconds "$BENCH_SECONDS" --protocol "$proto")
        log "  ${R[$t]}"
        echo "${R[$t]}" >"$OUT_DIR/runs/burst-$proto-$t.txt"
    done
    b=${R[pgbouncer]:-} p=${R[tidepool]:-}
    for k in tps p50_ms p99_ms p99_over_p50 cpu_us_per_tx max_upstream failed connect_failed; do
        ROWS+=("| burst $CLIENTS clients, $proto | $k | $(field "$b" $k) | $(field "$p" $k) | $(ratio "$(field "$p" $k)" "$(field "$b" $k)") |")
    done
    unset R
done
declare -A S=()
for t in $TARGETS; do
    log "storm: $STORM_RATE new connections/s for ${STORM_SECONDS}s → $t"
    S[$t]=$(loadgen storm "$t" --rate "$STORM_RATE" --seconds "$STORM_SECONDS")
    log "  ${S[$t]}"
done
for k in ok failed p50_ms p99_ms cpu_us_per_conn max_upstream; do
    ROWS+=("| storm $STORM_RATE conn/s × ${STORM_SECONDS}s | $k | $(field "${S[pgbouncer]:-}" $k) | $(field "${S[tidepool]:-}" $k) | $(ratio "$(field "${S[tidepool]:-}" $k)" "$(field "${S[pgbouncer]:-}" $k)") |")
done

MD=$OUT_DIR/results.md
{
    echo "## Burst and connect storm: PgBouncer vs tidepool"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $("$PG_BINDIR/postgres" --version)," \
        "$("${PGBOUNCER_BIN:-pgbouncer}" --version 2>/dev/null | head -n 1), tidepool $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null)." \
        "pool_size $POOL_SIZE, transaction mode, SCRAM client auth, fsync off; load generator bench/loadgen on the same cores." \
        "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| run | measure | pgbouncer | tidepool | tidepool/pgbouncer |"
    echo "|---|---|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
} >"$MD"
cp -f "$MD" "$BENCH_DIR/out/burst-latest.md"
cat "$MD"
