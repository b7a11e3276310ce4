#!/usr/bin/env bash
# pgbench: direct PostgreSQL vs PgBouncer vs tidepool, on this machine.
#
# Builds tidepool (release), starts a private PostgreSQL cluster on a free
# port (never the system one), loads pgbench data, starts PgBouncer and
# tidepool in transaction mode with the same pool size, then runs pgbench
# for every combination of
#   workload  : select-only (-S), tpcb-like (default script)
#   protocol  : -M simple, -M prepared
#   clients   : 10, 50, 200
#   connection: persistent, --connect (-C: a new connection per transaction)
# against each target, interleaved (direct, pgbouncer, tidepool per row),
# and prints a Markdown table of tps to stdout (progress goes to stderr).
# Results and logs land in bench/out/pgbench-<timestamp>/ (+ pgbench-latest.md).
#
# Clients always log in as user "bench" / password "bench" with SCRAM
# (Postgres: pg_hba scram-sha-256; PgBouncer: auth_type scram-sha-256 with
# a userlist; tidepool: its [[users]] entry); both proxies connect to
# Postgres as the superuser with trust. fsync is off: the proxies are what
# is measured. Everything started is stopped on exit (trap), even on Ctrl-C.
#
# Usage: bench/pgbench.sh           full matrix, BENCH_SECONDS=10 (~15 min)
#        QUICK=1 bench/pgbench.sh   scale 1, -M simple, 10 and 200 clients, 5 s runs
# Environment (defaults in brackets):
#   BENCH_SECONDS [10; QUICK 5]       duration of each pgbench run (-T)
#   SCALE [10; QUICK 1]               pgbench -i scale
#   CLIENTS ["10 50 200"; QUICK "10 200"]
#   PROTOCOLS ["simple prepared"; QUICK "simple"]
#   WORKLOADS ["select tpcb"]         CONNECT_MODES ["persistent connect"]
#   TARGETS ["direct pgbouncer tidepool"]
#   POOL_SIZE [20]                    JOBS [2] (pgbench -j)
#   SKIP_BUILD [0]                    TIDEPOOL_BIN [target/release/tidepool]
#   TIDEPOOL_LOG [warn] (RUST_LOG)    PGB_AUTH_TYPE [scram-sha-256]
#   PGB_PASSWORD_FORMAT [verifier: SCRAM verifier in the userlist; plain: cleartext]
#   OUT_DIR [bench/out/pgbench-<timestamp>]   PG_BINDIR, PG_EXTRA_CONF
# A target that cannot run (e.g. tidepool not built yet) shows "n/a";
# a run where pgbench aborted clients shows "N*" (partial tps), one with no
# result "ERR" (logs in OUT_DIR/runs).
set -Eeuo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    BENCH_SECONDS=${BENCH_SECONDS:-5}
    SCALE=${SCALE:-1}
    CLIENTS=${CLIENTS:-"10 200"}
    PROTOCOLS=${PROTOCOLS:-"simple"}
fi
BENCH_SECONDS=${BENCH_SECONDS:-10}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-"10 50 200"}
PROTOCOLS=${PROTOCOLS:-"simple prepared"}
WORKLOADS=${WORKLOADS:-"select tpcb"}
CONNECT_MODES=${CONNECT_MODES:-"persistent connect"}
TARGETS=${TARGETS:-"direct pgbouncer tidepool"}
POOL_SIZE=${POOL_SIZE:-20}
JOBS=${JOBS:-2}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out/pgbench-$STAMP}
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/runs"

max_clients=0
for c in $CLIENTS; do ((c > max_clients)) && max_clients=$c; done

PG_BINDIR=$(find_pg_bindir)
PGBENCH=$PG_BINDIR/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found"
setup_os_user
raise_nofile
bench_install_trap
bench_init_run_dir

want() { [[ " $TARGETS " == *" $1 "* ]]; }

declare -A PORT=()
declare -A NOTE=()

# tidepool is built first so a long compile does not sit between data load and runs.
if want tidepool; then
    if ! build_tidepool; then
        NOTE[tidepool]="no binary at ${TIDEPOOL_BIN}"
        log "tidepool: ${NOTE[tidepool]}; its column will be n/a"
    fi
fi

start_postgres $((max_clients + 2 * POOL_SIZE + 40))
want direct && PORT[direct]=$PG_PORT

log "pgbench -i -s $SCALE"
PGPASSWORD=$BENCH_PASSWORD "$PGBENCH" -i -s "$SCALE" -q -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" "$BENCH_DB" \
    >"$OUT_DIR/logs/pgbench-init.log" 2>&1 || { tail "$OUT_DIR/logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql_admin "$BENCH_DB" -c "VACUUM ANALYZE" >/dev/null

if want pgbouncer; then
    ensure_pgbouncer
    start_pgbouncer "$POOL_SIZE"
    PORT[pgbouncer]=$PGB_PORT
fi
if want tidepool && [[ -z ${NOTE[tidepool]:-} ]]; then
    if start_tidepool "$POOL_SIZE"; then
        PORT[tidepool]=$TP_PORT
    else
        NOTE[tidepool]="failed to start or answer (see logs/tidepool.log)"
        log "tidepool: ${NOTE[tidepool]}"
    fi
fi

# run_one TARGET WORKLOAD PROTOCOL CLIENTS CONNECT -> prints tps | ERR | n/a
run_one() {
    local target=$1 workload=$2 proto=$3 clients=$4 connect=$5
    local port=${PORT[$target]:-}
    if [[ -z $port ]]; then echo "n/a"; return; fi
    local jobs=$((JOBS < clients ? JOBS : clients))
    # pgbench 15 prepares statements synchronously (PQprepare) per thread: with fewer threads
    # than clients, a thread blocks preparing one client while its other clients hold every
    # pooled server inside a transaction, and any transaction pooler deadlocks until its queue
    # timeout. Prepared rows therefore run one thread per client, for every target alike.
    if [ "$proto" = prepared ]; then jobs=$clients; fi
    local args=(-n -T "$BENCH_SECONDS" -c "$clients" -j "$jobs" -M "$proto")
    [[ $workload == select ]] && args+=(-S)
    [[ $connect == connect ]] && args+=(-C)
    local name="$workload-$proto-c$clients-$connect-$target"
    local logf=$OUT_DIR/runs/$name.log
    if [[ $workload == tpcb ]]; then
        # What pgbench's own pre-run vacuum does, straight to Postgres.
        psql_admin "$BENCH_DB" -c "VACUUM pgbench_branches, pgbench_tellers" -c "TRUNCATE pgbench_history" >/dev/null
    fi
    psql_admin "$BENCH_DB" -c "CHECKPOINT" >/dev/null
    local rc=0
    echo "+ pgbench ${args[*]} -h 127.0.0.1 -p $port -U $BENCH_USER $BENCH_DB" >"$logf"
    PGPASSWORD=$BENCH_PASSWORD PGCONNECT_TIMEOUT=10 timeout $((BENCH_SECONDS + 120)) \
        "$PGBENCH" "${args[@]}" -h 127.0.0.1 -p "$port" -U "$BENCH_USER" "$BENCH_DB" >>"$logf" 2>&1 || rc=$?
    local tps
    tps=$(awk '/^tps = / {print $3; exit}' "$logf")
    if [[ -z $tps ]]; then
        echo "ERR"
    elif [[ $rc -ne 0 ]] || grep -qE 'aborted' "$logf"; then
        printf '%.0f*\n' "$tps" # partial result: some clients aborted
    else
        printf '%.0f\n' "$tps"
    fi
}

EVENTS=()
# ensure_alive TARGET ROWLABEL: if the proxy process has exited, record how
# (exit status / signal, its log kept as logs/<target>.died-<n>.log) and
# start it again on new ports, so one crash does not void the whole matrix.
ensure_alive() {
    local t=$1 pid
    case $t in
        pgbouncer) pid=${PGB_PID:-} ;;
        tidepool) pid=${TP_PID:-} ;;
        *) return 0 ;;
    esac
    [[ -z $pid || -z ${PORT[$t]:-} ]] && return 0
    kill -0 "$pid" 2>/dev/null && return 0
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    local what="exited with status $rc"
    ((rc > 128)) && what="was killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
    local n=$((${#EVENTS[@]} + 1))
    cp -f "$RUN_DIR/$t.log" "$OUT_DIR/logs/$t.died-$n.log" 2>/dev/null || true
    log "$t $what $2; restarting it (log: logs/$t.died-$n.log)"
    EVENTS+=("$t $what $2 (log: logs/$t.died-$n.log); restarted")
    unset "PORT[$t]"
    if [[ $t == tidepool ]]; then
        start_tidepool "$POOL_SIZE" && PORT[tidepool]=$TP_PORT
    else
        start_pgbouncer "$POOL_SIZE" && PORT[pgbouncer]=$PGB_PORT
    fi
}

ratio() { # a b -> a/b formatted, or "-"
    if [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ && $2 -gt 0 ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'
    else
        echo "-"
    fi
}

CSV=$OUT_DIR/results.csv
echo "workload,protocol,clients,connection,direct_tps,pgbouncer_tps,tidepool_tps" >"$CSV"
ROWS=()
total=0
for w in $WORKLOADS; do for p in $PROTOCOLS; do for c in $CLIENTS; do for m in $CONNECT_MODES; do
    total=$((total + 1))
done; done; done; done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "running $total workloads x {$TARGETS}, ${BENCH_SECONDS}s each (load average $LOAD_BEFORE)"
i=0
for w in $WORKLOADS; do
    for p in $PROTOCOLS; do
        for c in $CLIENTS; do
            for m in $CONNECT_MODES; do
                i=$((i + 1))
                declare -A R=()
                label="$( [[ $w == select ]] && echo "select-only" || echo "tpcb-like" ) -M $p, $c clients, $m"
                for t in direct pgbouncer tidepool; do
                    if want "$t"; then
                        ensure_alive "$t" "before \"$label\""
                        R[$t]=$(run_one "$t" "$w" "$p" "$c" "$m")
                    else
                        R[$t]="n/a"
                    fi
                done
                for t in pgbouncer tidepool; do ensure_alive "$t" "during \"$label\""; done
                log "[$i/$total] $label: direct=${R[direct]} pgbouncer=${R[pgbouncer]} tidepool=${R[tidepool]}"
                echo "$w,$p,$c,$m,${R[direct]},${R[pgbouncer]},${R[tidepool]}" >>"$CSV"
                ROWS+=("| $label | ${R[direct]} | ${R[pgbouncer]} | ${R[tidepool]} | $(ratio "${R[tidepool]}" "${R[pgbouncer]}") | $(ratio "${R[tidepool]}" "${R[direct]}") |")
                unset R
            done
        done
    done
done

MD=$OUT_DIR/results.md
{
    echo "## pgbench: direct vs PgBouncer vs tidepool"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $("$PG_BINDIR/postgres" --version)," \
        "$( [[ -n ${PGBOUNCER_BIN:-} ]] && "$PGBOUNCER_BIN" --version | head -n 1 || echo "PgBouncer not run")," \
        "tidepool $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')${NOTE[tidepool]:+ (${NOTE[tidepool]})}."
    echo "Scale $SCALE, ${BENCH_SECONDS}s per run, pool_size $POOL_SIZE (transaction mode), pgbench -j $JOBS," \
        "SCRAM client auth, fsync off; tps from pgbench (with -C it includes connection setup)." \
        "Load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews results)."
    echo
    echo "| workload | direct tps | pgbouncer tps | tidepool tps | tidepool/pgbouncer | tidepool/direct |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    if ((${#EVENTS[@]})); then
        echo "**Proxy process deaths during the run:**"
        echo
        printf -- '- %s\n' "${EVENTS[@]}"
        echo
    fi
    echo "N* = pgbench aborted some clients on errors (partial result, no ratio); ERR = no result;" \
        "n/a = target not run. See runs/*.log. PgBouncer < 1.21 has no prepared statements in transaction mode."
} >"$MD"
cp -f "$MD" "$BENCH_DIR/out/pgbench-latest.md"
cat "$MD"
log "results: $MD"
