#!/usr/bin/env bash
# Several tidepool nodes sharing one connection budget ([cluster], docs/deploy.md): aggregate
# select-only tps of 1, 2 and 3 nodes with the same global pool_size, and the Redis round trips
# the lease protocol costs per checkout (tidepool_cluster_lease_round_trips_total over
# tidepool_transactions_total, summed over the nodes' /metrics).
#
# Builds tidepool (release) unless SKIP_BUILD=1, starts a private PostgreSQL and a redis-server on
# free ports, then for each row starts the nodes (real processes), runs one pgbench per node at
# the same time (-S -M simple, CLIENTS per node, BENCH_SECONDS), sums their tps, scrapes metrics,
# stops the nodes. Prints a Markdown table.
# Environment: BENCH_SECONDS [8] CLIENTS [8] POOL_SIZE [10] SCALE [1] TIDEPOOL_BIN SKIP_BUILD
set -Eeuo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_SECONDS=${BENCH_SECONDS:-8}
CLIENTS=${CLIENTS:-8}
POOL_SIZE=${POOL_SIZE:-10}
SCALE=${SCALE:-1}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out/cluster-$STAMP}
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/runs"

PG_BINDIR=$(find_pg_bindir)
PGBENCH=$PG_BINDIR/pgbench
setup_os_user
raise_nofile
bench_install_trap
bench_init_run_dir
build_tidepool || die "no tidepool binary at $TIDEPOOL_BIN"
start_postgres $((4 * CLIENTS + 2 * POOL_SIZE + 40))
PGPASSWORD=$BENCH_PASSWORD "$PGBENCH" -i -s "$SCALE" -q -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" "$BENCH_DB" \
    >"$OUT_DIR/logs/pgbench-init.log" 2>&1 || die "pgbench -i failed"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$RUN_DIR" \
    >"$RUN_DIR/redis.log" 2>&1 &
PIDS_TO_KILL+=("$!")
wait_port "$REDIS_PORT" 20 || die "redis-server did not start"
cp -f "$TIDEPOOL_BIN" "$RUN_DIR/pooler-under-test"

# start_node I CLUSTER(0/1) -> NODE_PORT[I], NODE_ADMIN[I], NODE_PID[I]
declare -A NODE_PORT=() NODE_ADMIN=() NODE_PID=()
start_node() {
    local i=$1 cluster=$2 ports
    ports=$(free_ports 2)
    NODE_PORT[$i]=${ports%% *}
    NODE_ADMIN[$i]=${ports##* }
    local cfg=$RUN_DIR/node$i.toml
    cat >"$cfg" <<EOF
[server]
pg_listen    = "127.0.0.1:${NODE_PORT[$i]}"
admin_listen = "127.0.0.1:${NODE_ADMIN[$i]}"

[[databases]]
name      = "$BENCH_DB"
url       = "postgres://postgres@127.0.0.1:$PG_PORT/$BENCH_DB"
pool_size = $POOL_SIZE
pool_mode = "transaction"
pool_timeout = "60s"

[[users]]
name     = "$BENCH_USER"
password = "$BENCH_PASSWORD"
EOF
    if ((cluster)); then
        printf '\n[cluster]\nredis_url = "redis://127.0.0.1:%s"\nnode_id = "n%s"\n' "$REDIS_PORT" "$i" >>"$cfg"
    fi
    (cd "$RUN_DIR" && exec env RUST_LOG=warn "$RUN_DIR/pooler-under-test" serve --config "$cfg" >"$RUN_DIR/node$i.log" 2>&1) &
    NODE_PID[$i]=$!
    PIDS_TO_KILL+=("${NODE_PID[$i]}")
    wait_port "${NODE_PORT[$i]}" 30 || die "node $i did not start"
    check_proxy "node$i" "${NODE_PORT[$i]}" || die "node $i does not answer"
}

stop_node() {
    kill -TERM "${NODE_PID[$1]}" 2>/dev/null || true
    wait "${NODE_PID[$1]}" 2>/dev/null || true
}

metric() { # i name -> value (0 when absent)
    curl -s "http://127.0.0.1:${NODE_ADMIN[$1]}/metrics" | awk -v m="$2" '$1 == m { v += $2 } END { print v + 0 }'
}

# row LABEL NODES CLUSTER
row() {
    local label=$1 nodes=$2 cluster=$3 i
    for ((i = 1; i <= nodes; i++)); do start_node "$i" "$cluster"; done
    sleep 3 # membership settles (first heartbeats)
    local before_rt=0 before_tx=0
    for ((i = 1; i <= nodes; i++)); do
        before_rt=$((before_rt + $(metric "$i" tidepool_cluster_lease_round_trips_total)))
        before_tx=$((before_tx + $(metric "$i" tidepool_transactions_total)))
    done
    local pids=()
    for ((i = 1; i <= nodes; i++)); do
        PGPASSWORD=$BENCH_PASSWORD "$PGBENCH" -n -S -M simple -T "$BENCH_SECONDS" -c "$CLIENTS" -j 1 \
            -h 127.0.0.1 -p "${NODE_PORT[$i]}" -U "$BENCH_USER" "$BENCH_DB" >"$OUT_DIR/runs/$label-node$i.log" 2>&1 &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    local tps=0 failed=0 rt=0 tx=0
    for ((i = 1; i <= nodes; i++)); do
        local t f
        t=$(awk '/^tps = / { print int($3) }' "$OUT_DIR/runs/$label-node$i.log")
        f=$(awk -F': ' '/number of failed transactions/ { split($2, a, " "); print a[1] }' "$OUT_DIR/runs/$label-node$i.log")
        tps=$((tps + ${t:-0}))
        failed=$((failed + ${f:-0}))
        rt=$((rt + $(metric "$i" tidepool_cluster_lease_round_trips_total)))
        tx=$((tx + $(metric "$i" tidepool_transactions_total)))
    done
    rt=$((rt - before_rt))
    tx=$((tx - before_tx))
    local per
    per=$(awk -v r="$rt" -v t="$tx" 'BEGIN { if (t > 0) printf "%.5f", r / t; else print "n/a" }')
    printf '| %s | %d | %d | %d | %d | %d | %s |\n' "$label" "$nodes" "$tps" "$failed" "$tx" "$rt" "$per"
    for ((i = 1; i <= nodes; i++)); do stop_node "$i"; done
}

log "rows: $CLIENTS clients per node, $BENCH_SECONDS s, global pool_size $POOL_SIZE"
{
    echo "| setup | nodes | aggregate tps | failed | checkouts | lease round trips | round trips per checkout |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    row single 1 0
    row cluster-1 1 1
    row cluster-2 2 1
    row cluster-3 3 1
} | tee "$OUT_DIR/table.md"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT_DIR/table.md"
