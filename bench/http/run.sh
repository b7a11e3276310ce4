#!/usr/bin/env bash
# HTTP APIs benchmark: tidepool's Prisma Accelerate-compatible `POST /query`
# against Prisma's reference server (@prisma/query-plan-executor), and its
# Neon-compatible `POST /sql` against pgbench through tidepool's wire listener
# and against a new direct Postgres connection per request. One command, one
# run, everything on 127.0.0.1, every load bounded in time.
#
# What it does
#   1. builds tidepool (cargo build --release -p tidepool; SKIP_BUILD=1 skips),
#      starts a private PostgreSQL cluster (initdb on a free port in a temp dir,
#      as the `postgres` OS user when root; never the system cluster), creates
#      database "bench" with the Prisma test schema (tests/clients/prisma/
#      schema.sql) + SEED_USERS users, and pgbench tables (scale SCALE);
#   2. starts tidepool (pool_size POOL_SIZE, transaction mode, HTTP + wire
#      listeners, one API key) and the reference executor via
#      tests/clients/prisma/run-reference.sh, both on the same database;
#   3. Prisma: for User.findUnique by id (random seeded id per request) and
#      User.createOne (unique email per request), bodies taken from the
#      captured fixtures (make_bodies.py): wrk -t THREADS -c CONNECTIONS
#      --latency against tidepool, then the reference (warm-up first);
#   4. Neon: point select by primary key on pgbench_accounts (random aid):
#      wrk against /sql (password in Neon-Connection-String; and with the API
#      key as Authorization: Bearer), pgbench -S through tidepool's wire
#      listener, pgbench -C -S straight to Postgres (connect per request);
#   5. query cache: User.findMany (20 rows) with `cache-control: no-cache`
#      (uncached, runs on PostgreSQL every time) and with `max-age=3600`
#      (served from tidepool's cache after the first request), same run;
#   6. prints Markdown tables (req/s, p50, p99, errors, CPU used per process)
#      with a machine description; also written to OUT_DIR/results.md and
#      bench/http/out/latest.md.
# Every wrk response is checked (status 200 and an expected substring) by
# wrk.lua; pgbench failures/aborts are counted. Runs with errors are flagged.
# Everything started is stopped on exit (trap), also on Ctrl-C.
#
# Usage: bench/http/run.sh                 (~3 min with the defaults, plus the build)
# Environment [defaults]:
#   BENCH_SECONDS [10]   measured duration of each load      WARMUP_SECONDS [3]
#   CONNECTIONS [64]     wrk -c / pgbench -c                  THREADS [2] (wrk -t, pgbench -j)
#   POOL_SIZE [20]       tidepool pool_size                   SCALE [10] pgbench scale
#   SEED_USERS [10000]   Prisma users seeded (findUnique ids) PG_MAX_CONNECTIONS [200]
#   SKIP_BUILD [0]       TIDEPOOL_BIN [target/release/tidepool]
#   TIDEPOOL_REV         revision label for the report [git describe --dirty when
#                        TIDEPOOL_BIN is the default]
#   SKIP_REFERENCE [0]   1: no @prisma/query-plan-executor runs (columns n/a)
#   ONLY_CACHE [0]       1: only the query-cache section (implies SKIP_REFERENCE)
#   CONNECT_JOBS [CONNECTIONS]  pgbench -j of the connect-per-request run (one
#                        thread per client: pgbench connects synchronously)
#   WAIT_QUIET [0]       wait up to this many seconds for an idle machine first
#   OUT_DIR [bench/http/out/http-<timestamp>]   PG_BINDIR (PostgreSQL bin dir)
# Needs: wrk (installed with apt-get when missing and root), pgbench/initdb,
# node (for the reference; tests/clients/prisma/setup.sh must have run once).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
PRISMA_DIR=$REPO_ROOT/tests/clients/prisma

BENCH_SECONDS=${BENCH_SECONDS:-10}
WARMUP_SECONDS=${WARMUP_SECONDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
POOL_SIZE=${POOL_SIZE:-20}
SCALE=${SCALE:-10}
SEED_USERS=${SEED_USERS:-10000}
PG_MAX_CONNECTIONS=${PG_MAX_CONNECTIONS:-200}
ONLY_CACHE=${ONLY_CACHE:-0}
SKIP_REFERENCE=${SKIP_REFERENCE:-$ONLY_CACHE}
CONNECT_JOBS=${CONNECT_JOBS:-$CONNECTIONS}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$HERE/out/http-$STAMP}
RUNS=$OUT_DIR/runs
LOGS=$OUT_DIR/logs
mkdir -p "$RUNS" "$LOGS"

DB=bench
DB_USER=bench
DB_PASSWORD=bench
API_KEY="tp-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ tools

find_pg_bindir() {
    if [[ -n ${PG_BINDIR:-} ]]; then echo "$PG_BINDIR"; return; fi
    local initdb
    if initdb=$(command -v initdb 2>/dev/null); then
        initdb=$(readlink -f "$initdb")
        if [[ -x $(dirname "$initdb")/pg_ctl ]]; then dirname "$initdb"; return; fi
    fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $d && -x $d/initdb ]] || die "no PostgreSQL server binaries (set PG_BINDIR)"
    echo "$d"
}

ensure_wrk() {
    command -v wrk >/dev/null 2>&1 && return
    [[ $(id -u) -eq 0 ]] || die "wrk missing: apt-get install wrk"
    log "wrk not found: installing it with apt-get"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
    command -v wrk >/dev/null 2>&1 || die "wrk install failed"
}

# initdb/pg_ctl refuse root: run them as $PG_OS_USER (postgres, else tidepool-pg).
AS_PG=()
PG_OS_USER=$(id -un)
if [[ $(id -u) -eq 0 ]]; then
    if id postgres >/dev/null 2>&1; then
        PG_OS_USER=postgres
    else
        id tidepool-pg >/dev/null 2>&1 ||
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin tidepool-pg
        PG_OS_USER=tidepool-pg
    fi
    AS_PG=(setpriv "--reuid=$PG_OS_USER" "--regid=$PG_OS_USER" --init-groups --)
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port timeout_s
    local port=$1 deadline=$((SECONDS + ${2:-30}))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# ------------------------------------------------------------------ lifecycle

RUN_DIR=""
PG_STARTED=0
TP_PID=""
REF_WRAPPER_PID=""
REF_PID=""

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "$REF_PID" "$REF_WRAPPER_PID" "$TP_PID"; do
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
    done
    for pid in "$REF_PID" "$REF_WRAPPER_PID" "$TP_PID"; do
        [[ -n $pid ]] || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    if ((PG_STARTED)); then
        (cd "$RUN_DIR" && "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/pgdata" -m immediate -w stop >/dev/null 2>&1)
    fi
    if [[ -n $RUN_DIR && -d $RUN_DIR ]]; then
        cp -f "$RUN_DIR"/*.log "$RUN_DIR"/*.toml "$LOGS/" 2>/dev/null
        rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql_admin() { # DB ARGS...: superuser psql straight to Postgres
    local db=$1
    shift
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" "$@"
}

start_postgres() {
    PG_PORT=$(free_port)
    PGDATA_DIR=$RUN_DIR/pgdata
    log "initdb ($PG_BINDIR, as $PG_OS_USER), start on port $PG_PORT, max_connections $PG_MAX_CONNECTIONS"
    (cd "$RUN_DIR" && "${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$PGDATA_DIR" -U postgres -A trust \
        -E UTF8 --locale=C --no-sync >"$RUN_DIR/initdb.log" 2>&1) ||
        { cat "$RUN_DIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
# --- bench/http ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$RUN_DIR'
max_connections = $PG_MAX_CONNECTIONS
shared_buffers = 256MB
# The servers in front of Postgres are what is measured, not the disk.
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 4GB
checkpoint_timeout = 30min
password_encryption = 'scram-sha-256'
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    cat >"$PGDATA_DIR/pg_hba.conf" <<EOF
local all postgres trust
host  all postgres 127.0.0.1/32 trust
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
EOF
    (cd "$RUN_DIR" && "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$RUN_DIR/postgres.log" \
        -w -t 60 start >/dev/null) || { tail -n 30 "$RUN_DIR/postgres.log" >&2; die "postgres failed to start"; }
    PG_STARTED=1
    psql_admin postgres -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD'" >/dev/null
    psql_admin postgres -c "CREATE DATABASE $DB OWNER $DB_USER" >/dev/null
}

start_tidepool() {
    TP_PG_PORT=$(free_port)
    TP_HTTP_PORT=$(free_port)
    while [[ $TP_HTTP_PORT == "$TP_PG_PORT" ]]; do TP_HTTP_PORT=$(free_port); done
    TP_ADMIN_PORT=$(free_port)
    while [[ $TP_ADMIN_PORT == "$TP_PG_PORT" || $TP_ADMIN_PORT == "$TP_HTTP_PORT" ]]; do TP_ADMIN_PORT=$(free_port); done
    local cfg=$RUN_DIR/tidepool.toml key_sha
    key_sha=$(printf '%s' "$API_KEY" | sha256sum | cut -d' ' -f1)
    cat >"$cfg" <<EOF
[server]
pg_listen   = "127.0.0.1:$TP_PG_PORT"
http_listen = "127.0.0.1:$TP_HTTP_PORT"
admin_listen = "127.0.0.1:$TP_ADMIN_PORT"
log_level   = "warn"

[[databases]]
name      = "$DB"
url       = "postgres://postgres@127.0.0.1:$PG_PORT/$DB"
pool_size = $POOL_SIZE
pool_mode = "transaction"
max_client_conn = 20000

[[users]]
name     = "$DB_USER"
password = "$DB_PASSWORD"

[[api_keys]]
sha256   = "$key_sha"
database = "$DB"
label    = "bench/http"
EOF
    # Run a copy: a concurrent `cargo build` may replace target/release/tidepool mid-run.
    cp -f "$TIDEPOOL_BIN" "$RUN_DIR/tidepool"
    log "starting tidepool ($TIDEPOOL_BIN, $TP_REV): wire 127.0.0.1:$TP_PG_PORT, http 127.0.0.1:$TP_HTTP_PORT"
    (cd "$RUN_DIR" && exec env RUST_LOG="${TIDEPOOL_LOG:-warn}" "$RUN_DIR/tidepool" serve --config "$cfg" >"$RUN_DIR/tidepool.log" 2>&1) &
    TP_PID=$!
    wait_port "$TP_HTTP_PORT" 30 && wait_port "$TP_PG_PORT" 10 ||
        { tail -n 20 "$RUN_DIR/tidepool.log" >&2; die "tidepool did not start"; }
}

# Reference executor via the suite's own launcher; sets REF_PORT and REF_PID (node).
start_reference() {
    REF_NOTE=""
    if [[ $SKIP_REFERENCE == 1 ]]; then REF_NOTE="SKIP_REFERENCE=1"; return 1; fi
    if ! command -v node >/dev/null 2>&1; then REF_NOTE="node not installed"; return 1; fi
    if ! (cd "$PRISMA_DIR" && ./setup.sh) >"$LOGS/prisma-setup.log" 2>&1; then
        REF_NOTE="tests/clients/prisma/setup.sh failed (see logs/prisma-setup.log)"
        return 1
    fi
    REF_PORT=$(free_port)
    (cd "$PRISMA_DIR" && exec env DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/$DB" \
        REFERENCE_PORT="$REF_PORT" REFERENCE_LOG="$RUN_DIR/reference.log" ./run-reference.sh \
        >"$RUN_DIR/run-reference.log" 2>&1) &
    REF_WRAPPER_PID=$!
    local deadline=$((SECONDS + 60))
    until curl -fsS "http://127.0.0.1:$REF_PORT/health" >/dev/null 2>&1; do
        if ! kill -0 "$REF_WRAPPER_PID" 2>/dev/null || ((SECONDS > deadline)); then
            cat "$RUN_DIR/run-reference.log" "$RUN_DIR/reference.log" >&2 2>/dev/null
            REF_NOTE="reference server did not start"
            return 1
        fi
        sleep 0.2
    done
    REF_PID=$(pgrep -P "$REF_WRAPPER_PID" -x node | head -n 1 || true)
    REF_VERSION=$(node -p "require('$PRISMA_DIR/node_modules/@prisma/query-plan-executor/package.json').version")
    log "reference @prisma/query-plan-executor $REF_VERSION on 127.0.0.1:$REF_PORT (node pid ${REF_PID:-?})"
}

# ------------------------------------------------------------------ CPU accounting
# CPU time (clock ticks) from /proc/PID/stat: utime+stime, plus cutime+cstime
# with a second argument (the postmaster reaps its backends, so their time
# ends up there).
CLK_TCK=$(getconf CLK_TCK)
proc_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    local f
    read -r -a f <<<"$s"
    if [[ -n ${2:-} ]]; then echo $((f[11] + f[12] + f[13] + f[14])); else echo $((f[11] + f[12])); fi
}

pg_ticks() { # postmaster (with reaped children) + live children
    local pm total p s f
    pm=$(head -n 1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    total=$(proc_ticks "$pm" children)
    for p in /proc/[0-9]*/stat; do
        s=$(cat "$p" 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        [[ ${f[1]} == "$pm" ]] && total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

machine_busy_ticks() { # all CPUs, non-idle time (user nice system irq softirq steal)
    local _c u n s _idle _iowait irq sirq st _rest
    read -r _c u n s _idle _iowait irq sirq st _rest </proc/stat
    echo $((u + n + s + irq + sirq + st))
}

# measure NAME SERVER_PID CMD...: runs CMD (stdout/stderr to runs/NAME.out/.err)
# and sets CPU_TEXT to "server / postgres / client / rest" cores used during
# it; "rest" is everything else busy on the machine (other users' work, the
# idle server of the other side): it should be near 0 for a clean run.
measure() {
    local name=$1 spid=$2
    shift 2
    local s0=0 s1=0 p0 p1 m0 m1 t0 t1 rc=0
    [[ -n $spid ]] && s0=$(proc_ticks "$spid")
    p0=$(pg_ticks)
    m0=$(machine_busy_ticks)
    t0=$EPOCHREALTIME
    local TIMEFORMAT='%U %S'
    { time "$@" >"$RUNS/$name.out" 2>"$RUNS/$name.err"; } 2>"$RUNS/$name.time" || rc=$?
    t1=$EPOCHREALTIME
    m1=$(machine_busy_ticks)
    [[ -n $spid ]] && s1=$(proc_ticks "$spid")
    p1=$(pg_ticks)
    local cu cs
    read -r cu cs <"$RUNS/$name.time" || true
    CPU_TEXT=$(awk -v s="$((s1 - s0))" -v p="$((p1 - p0))" -v m="$((m1 - m0))" -v cu="${cu:-0}" -v cs="${cs:-0}" \
        -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" -v has="${spid:+1}" 'BEGIN {
            w = t1 - t0; if (w <= 0) w = 1
            # A backend that exits between the two samples may be seen neither
            # alive nor reaped yet: tiny negative deltas are clamped to 0.
            if (s < 0) s = 0; if (p < 0) p = 0
            srv = s / hz / w; pg = p / hz / w; cli = (cu + cs) / w
            rest = m / hz / w - srv - pg - cli; if (rest < 0) rest = 0
            printf "%s / %.2f / %.2f / %.2f", (has ? sprintf("%.2f", srv) : "-"), pg, cli, rest }')
    return "$rc"
}

# ------------------------------------------------------------------ results

declare -A RPS=() P50=() P99=() MEAN=() ERRS=() CPU=() EXTRA=()
BAD_RUNS=()

us_to_ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }

# run_wrk NAME URL SERVER_PID BODY TAG ID_MAX EXPECT HEADER...
run_wrk() {
    local name=$1 url=$2 spid=$3 body=$4 tag=$5 idmax=$6 expect=$7
    shift 7
    local hdr=() h
    for h in "$@"; do hdr+=(-H "$h"); done
    local common=(-t "$THREADS" -c "$CONNECTIONS" --timeout 10s "${hdr[@]}" -s "$HERE/wrk.lua" "$url")
    if ((WARMUP_SECONDS > 0)); then
        timeout $((WARMUP_SECONDS + 30)) wrk -d "${WARMUP_SECONDS}s" "${common[@]}" -- "$body" "w$tag" "$idmax" "$expect" \
            >"$RUNS/$name.warmup.out" 2>&1 || true
    fi
    psql_admin "$DB" -c "CHECKPOINT" >/dev/null
    log "  $name: wrk -t $THREADS -c $CONNECTIONS -d ${BENCH_SECONDS}s --latency $url"
    measure "$name" "$spid" timeout $((BENCH_SECONDS + 60)) \
        wrk -d "${BENCH_SECONDS}s" --latency "${common[@]}" -- "$body" "$tag" "$idmax" "$expect" || true
    local line kv
    line=$(grep -m 1 '^WRK_RESULT' "$RUNS/$name.out" || true)
    if [[ -z $line ]]; then
        RPS[$name]=ERR; P50[$name]=-; P99[$name]=-; MEAN[$name]=-; ERRS[$name]="no result"; CPU[$name]=$CPU_TEXT
        BAD_RUNS+=("$name: wrk gave no result (runs/$name.out/.err)")
        return
    fi
    declare -A K=()
    for kv in $line; do [[ $kv == *=* ]] && K[${kv%%=*}]=${kv#*=}; done
    RPS[$name]=$(printf '%.0f' "${K[rps]}")
    P50[$name]=$(us_to_ms "${K[p50_us]}")
    P99[$name]=$(us_to_ms "${K[p99_us]}")
    MEAN[$name]=$(us_to_ms "${K[mean_us]}")
    local sock=$((K[sock_connect] + K[sock_read] + K[sock_write] + K[sock_timeout]))
    local bad=$((K[non200] + K[badbody] + sock))
    if ((bad == 0)); then
        ERRS[$name]="0 / ${K[requests]}"
    else
        ERRS[$name]="**$bad** / ${K[requests]}"
        BAD_RUNS+=("$name: ${K[non200]} non-200, ${K[badbody]} 200s without the expected body, $sock socket errors/timeouts; first: $(grep -m 1 '^WRK_FIRST_BAD' "$RUNS/$name.out" | cut -c 15-200 || true)")
    fi
    CPU[$name]=$CPU_TEXT
    log "  $name: ${RPS[$name]} req/s, p50 ${P50[$name]} ms, p99 ${P99[$name]} ms, errors ${ERRS[$name]}, cpu $CPU_TEXT"
}

# run_pgbench NAME PORT SERVER_PID JOBS LATENCY EXTRA_ARGS...: pgbench -S -M extended
# with a per-transaction log (-l); p50/p99 from that log. LATENCY says which:
#   query     the logged transaction latency (persistent connections)
#   interval  per client, the time between two consecutive transaction ends.
#             With -C and one client per thread (-j = -c) that is disconnect +
#             connect + query: the whole cost of a request that opens its own
#             connection. (pgbench's logged latency excludes connecting under
#             -C, and its connect is blocking, so with fewer threads than
#             clients every client of a thread also waits for the others'.)
run_pgbench() {
    local name=$1 port=$2 spid=$3 jobs=$4 latency=$5
    shift 5
    local ldir=$RUNS/$name.txlog
    mkdir -p "$ldir"
    psql_admin "$DB" -c "CHECKPOINT" >/dev/null
    local args=(-n -S -M extended -c "$CONNECTIONS" -j "$jobs" -T "$BENCH_SECONDS" -l --log-prefix "$ldir/tx" "$@"
        -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB")
    log "  $name: pgbench ${args[*]}"
    echo "+ pgbench ${args[*]}" >"$RUNS/$name.cmd"
    measure "$name" "$spid" env PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=10 \
        timeout $((BENCH_SECONDS + 120)) "$PGBENCH" "${args[@]}" || true
    local out=$RUNS/$name.out
    local tps mean failed aborted conn
    tps=$(awk '/^tps = / {print $3; exit}' "$out")
    mean=$(awk '/^latency average = / {print $4; exit}' "$out")
    failed=$(awk -F'[: ]+' '/^number of failed transactions/ {print $5; exit}' "$out")
    conn=$(awk '/^average connection time = / {print $5; exit}' "$out")
    aborted=$(cat "$RUNS/$name.err" "$out" | { grep -c 'aborted' || true; })
    if [[ -z $tps ]]; then
        RPS[$name]=ERR; P50[$name]=-; P99[$name]=-; MEAN[$name]=-; ERRS[$name]="no result"; CPU[$name]=$CPU_TEXT
        BAD_RUNS+=("$name: pgbench gave no result (runs/$name.out/.err)")
        return
    fi
    local sorted=$ldir/sorted n
    # log line: client_id transaction_no latency_us script_no end_epoch_s end_us ...
    if [[ $latency == interval ]]; then
        cat "$ldir"/tx.* 2>/dev/null | awk '{
            end = $5 * 1000000 + $6
            if ($1 in last) print end - last[$1]
            last[$1] = end }' | sort -n >"$sorted"
    else
        cat "$ldir"/tx.* 2>/dev/null | awk '{print $3}' | sort -n >"$sorted"
    fi
    n=$(cat "$ldir"/tx.* 2>/dev/null | wc -l)
    local m
    m=$(wc -l <"$sorted")
    RPS[$name]=$(printf '%.0f' "$tps")
    MEAN[$name]=$(awk -v m="$mean" 'BEGIN { printf "%.2f", m }')
    if ((m > 0)); then
        P50[$name]=$(us_to_ms "$(sed -n "$(((m * 50 + 99) / 100))p" "$sorted")")
        P99[$name]=$(us_to_ms "$(sed -n "$(((m * 99 + 99) / 100))p" "$sorted")")
    else
        P50[$name]=-; P99[$name]=-
    fi
    rm -f "$sorted" "$ldir"/tx.*   # large; the summary stays in runs/NAME.out
    local bad=$((${failed:-0} + aborted))
    if ((bad == 0)); then ERRS[$name]="0 / $n"; else
        ERRS[$name]="**$bad** / $n"
        BAD_RUNS+=("$name: ${failed:-0} failed transactions, $aborted aborted clients (runs/$name.err)")
    fi
    [[ -n $conn ]] && EXTRA[$name]="average connection time $conn ms"
    CPU[$name]=$CPU_TEXT
    log "  $name: ${RPS[$name]} tps, p50 ${P50[$name]} ms, p99 ${P99[$name]} ms, mean ${MEAN[$name]} ms, errors ${ERRS[$name]}, cpu $CPU_TEXT${conn:+, conn $conn ms}"
}

per_req() { # CPU_TEXT FIELD RPS -> microseconds of CPU per request for field 1 (server) or 2 (PG)
    awk -v t="$1" -v f="$2" -v r="$3" 'BEGIN { split(t, a, " / "); if (r + 0 > 0 && a[f] ~ /^[0-9.]+$/) printf "%.0f µs", a[f] * 1000000 / r; else printf "-" }'
}

ratio() { # a b -> a/b as "1.23x", "-" when either is not a number
    if [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ && $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'
    else
        echo "-"
    fi
}

# ------------------------------------------------------------------ sanity checks

# check_json NAME URL BODY_FILE SUBST PYTHON_ASSERTION HEADER...: one request
# with curl; the response must be 200 and satisfy the assertion on `r` (parsed JSON).
check_json() {
    local name=$1 url=$2 body=$3 subst=$4 assertion=$5
    shift 5
    local hdr=() h code
    for h in "$@"; do hdr+=(-H "$h"); done
    sed -e "s/__ID__/$subst/" -e "s/__SEQ__/$subst/" "$body" >"$RUNS/check-$name.req"
    code=$(curl -sS -o "$RUNS/check-$name.resp" -w '%{http_code}' -X POST "${hdr[@]}" \
        --data-binary "@$RUNS/check-$name.req" "$url") || code=000
    if [[ $code != 200 ]] || ! python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert $assertion, r" \
        "$RUNS/check-$name.resp" 2>>"$RUNS/check-$name.err"; then
        log "sanity check $name failed: HTTP $code: $(head -c 600 "$RUNS/check-$name.resp")"
        return 1
    fi
}

# ================================================================== main

PG_BINDIR=$(find_pg_bindir)
PGBENCH=$PG_BINDIR/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found"
ensure_wrk
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TIDEPOOL_BIN=${TIDEPOOL_BIN:-$REPO_ROOT/target/release/tidepool}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building tidepool (cargo build --release -p tidepool)"
    (cd "$REPO_ROOT" && cargo build --release -p tidepool) >"$LOGS/cargo-build.log" 2>&1 ||
        { tail -n 20 "$LOGS/cargo-build.log" >&2; die "cargo build failed"; }
fi
[[ -x $TIDEPOOL_BIN ]] || die "no tidepool binary at $TIDEPOOL_BIN"
"$REPO_ROOT/tools/fetch-query-compiler.sh" >/dev/null || die "tools/fetch-query-compiler.sh failed"
if [[ -n ${TIDEPOOL_REV:-} ]]; then
    TP_REV=$TIDEPOOL_REV
elif [[ $TIDEPOOL_BIN == "$REPO_ROOT/target/release/tidepool" ]]; then
    TP_REV=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?')
else
    TP_REV="binary $TIDEPOOL_BIN"
fi

BODIES=$OUT_DIR/bodies
python3 "$HERE/make_bodies.py" "$PRISMA_DIR/fixtures" "$BODIES"

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tidepool-bench-http.XXXXXX")
chmod 755 "$RUN_DIR"
[[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER:" "$RUN_DIR"

start_postgres
log "Prisma schema + $SEED_USERS users; pgbench -i -s $SCALE"
psql_admin "$DB" -f "$PRISMA_DIR/schema.sql" >/dev/null
psql_admin "$DB" -c "INSERT INTO \"User\" (name, email, password, \"updatedAt\")
    SELECT 'User ' || g, 'user' || g || '@example.com', 'secret', now() FROM generate_series(1, $SEED_USERS) g" >/dev/null
PGPASSWORD=$DB_PASSWORD "$PGBENCH" -i -s "$SCALE" -q -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$DB" \
    >"$LOGS/pgbench-init.log" 2>&1 || { tail "$LOGS/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql_admin "$DB" -c "VACUUM ANALYZE" >/dev/null
ACCOUNTS=$((100000 * SCALE))

start_tidepool
HAVE_REF=1
start_reference || { HAVE_REF=0; log "reference: n/a ($REF_NOTE)"; }

TP=http://127.0.0.1:$TP_HTTP_PORT
PRISMA_HDR=("Content-Type: application/json" "Accept: application/json")
TP_PRISMA_HDR=("${PRISMA_HDR[@]}" "Authorization: Bearer $API_KEY")
# The reference ignores the key (see run-reference.sh); the client sends one anyway.
REF_PRISMA_HDR=("${PRISMA_HDR[@]}" "Authorization: Bearer reference")
NEON_PW_HDR=("Content-Type: application/json" "Neon-Raw-Text-Output: true" "Neon-Array-Mode: true"
    "Neon-Connection-String: postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$TP_HTTP_PORT/$DB")
NEON_KEY_HDR=("Content-Type: application/json" "Neon-Raw-Text-Output: true" "Neon-Array-Mode: true"
    "Neon-Connection-String: postgresql://$DB_USER@127.0.0.1:$TP_HTTP_PORT/$DB" "Authorization: Bearer $API_KEY")

log "sanity checks (one request per endpoint)"
FIND_OK='r["data"]["id"] == 42 and r["data"]["email"] == "user42@example.com"'
create_ok() { echo "r[\"data\"][\"email\"] == \"bench-check-$1@example.com\""; }
NEON_OK='r["rowCount"] == 1 and len(r["rows"]) == 1'
check_json tp-find "$TP/query" "$BODIES/prisma-find-unique.json" 42 "$FIND_OK" "${TP_PRISMA_HDR[@]}" ||
    die "tidepool findUnique"
check_json tp-create "$TP/query" "$BODIES/prisma-create.json" check-tp "$(create_ok tp)" "${TP_PRISMA_HDR[@]}" ||
    die "tidepool createOne"
check_json tp-neon-pw "$TP/sql" "$BODIES/neon-point-select.json" 42 "$NEON_OK" "${NEON_PW_HDR[@]}" ||
    die "tidepool /sql (password)"
check_json tp-neon-key "$TP/sql" "$BODIES/neon-point-select.json" 42 "$NEON_OK" "${NEON_KEY_HDR[@]}" ||
    die "tidepool /sql (API key)"
if ((HAVE_REF)); then
    REF=http://127.0.0.1:$REF_PORT
    check_json ref-find "$REF/query" "$BODIES/prisma-find-unique.json" 42 "$FIND_OK" "${REF_PRISMA_HDR[@]}" ||
        die "reference findUnique"
    check_json ref-create "$REF/query" "$BODIES/prisma-create.json" check-ref "$(create_ok ref)" "${REF_PRISMA_HDR[@]}" ||
        die "reference createOne"
    # Same plan, same row: both servers must answer with the same data.
    python3 - "$RUNS/check-tp-find.resp" "$RUNS/check-ref-find.resp" <<'EOF' || die "tidepool and reference disagree on findUnique"
import json, sys
a, b = (json.load(open(p))["data"] for p in sys.argv[1:3])
assert a == b, (a, b)
EOF
fi
MANY_OK='len(r["data"]) == 20 and r["data"][0]["id"] == 1'
check_json tp-many-nocache "$TP/query" "$BODIES/prisma-find-many.json" 0 "$MANY_OK" "${TP_PRISMA_HDR[@]}" "cache-control: no-cache" ||
    die "tidepool findMany (no-cache)"
for want in miss ttl; do
    got=$(curl -sS -o /dev/null -D - -X POST "${TP_PRISMA_HDR[@]/#/-H}" -H "cache-control: max-age=3600" \
        --data-binary "@$BODIES/prisma-find-many.json" "$TP/query" | tr -d '\r' | awk -F': ' 'tolower($1) == "accelerate-cache-status" {print $2}')
    [[ $got == "$want" ]] || die "tidepool cache: expected accelerate-cache-status $want, got '${got:-none}'"
done
PGPASSWORD=$DB_PASSWORD "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$TP_PG_PORT" -U "$DB_USER" -d "$DB" \
    -c "SELECT count(*) FROM pgbench_branches" >/dev/null || die "tidepool wire listener"

if ((${WAIT_QUIET:-0} > 0)); then
    # Other work on the machine skews everything: wait (bounded) until the
    # machine is idle, i.e. below 0.3 busy cores over 5 s, before measuring.
    log "waiting up to ${WAIT_QUIET}s for a quiet machine"
    quiet_deadline=$((SECONDS + WAIT_QUIET))
    while ((SECONDS < quiet_deadline)); do
        b0=$(machine_busy_ticks); sleep 5; b1=$(machine_busy_ticks)
        (((b1 - b0) * 10 < 3 * 5 * CLK_TCK)) && { log "machine quiet"; break; }
    done
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $LOAD_BEFORE"

log "Query cache: findMany (20 users) uncached vs cached, tidepool"
MANY_EXPECT='"data":[{"id":1,'
run_wrk cache-uncached "$TP/query" "$TP_PID" "$BODIES/prisma-find-many.json" c 1 "$MANY_EXPECT" "${TP_PRISMA_HDR[@]}" "cache-control: no-cache"
run_wrk cache-hit "$TP/query" "$TP_PID" "$BODIES/prisma-find-many.json" c 1 "$MANY_EXPECT" "${TP_PRISMA_HDR[@]}" "cache-control: max-age=3600"
CACHE_METRICS=$(curl -sS "http://127.0.0.1:$TP_ADMIN_PORT/metrics" | grep -E '^tidepool_cache_(hits|misses|stores)' | tr '\n' ' ' || true)

if [[ $ONLY_CACHE != 1 ]]; then
log "Prisma /query (findUnique by id, createOne), tidepool vs reference"
run_wrk prisma-find-tp "$TP/query" "$TP_PID" "$BODIES/prisma-find-unique.json" tp "$SEED_USERS" '"data":{"id":' "${TP_PRISMA_HDR[@]}"
if ((HAVE_REF)); then
    run_wrk prisma-find-ref "$REF/query" "$REF_PID" "$BODIES/prisma-find-unique.json" ref "$SEED_USERS" '"data":{"id":' "${REF_PRISMA_HDR[@]}"
fi
run_wrk prisma-create-tp "$TP/query" "$TP_PID" "$BODIES/prisma-create.json" tp 1 '"data":{"id":' "${TP_PRISMA_HDR[@]}"
if ((HAVE_REF)); then
    run_wrk prisma-create-ref "$REF/query" "$REF_PID" "$BODIES/prisma-create.json" ref 1 '"data":{"id":' "${REF_PRISMA_HDR[@]}"
fi

log "Prisma 5/6 DataProxy (graphql, compiled in-process): findUnique warm/cold, createOne"
# The schema of tests/clients/prisma5 describes the same tables; a 5.x client uploads it like this.
P5_B64=$(base64 -w0 "$REPO_ROOT/tests/clients/prisma5/prisma/schema.prisma")
P5_HASH=$(printf '%s' "$P5_B64" | sha256sum | cut -d' ' -f1)
P5=$TP/5.22.0/$P5_HASH
curl -sf -X PUT -H "Authorization: Bearer $API_KEY" --data-binary "$P5_B64" "$P5/schema" >/dev/null \
    || die "Prisma 5 schema upload (is the query compiler fetched? tools/fetch-query-compiler.sh)"
printf '%s' '{"modelName":"User","action":"findUnique","query":{"arguments":{"where":{"id":__ID__}},"selection":{"$composites":true,"$scalars":true}}}' >"$BODIES/p5-find-unique.json"
printf '%s' '{"modelName":"User","action":"createOne","query":{"arguments":{"data":{"name":"bench","email":"p5-__SEQ__@bench.example","password":"x"}},"selection":{"$composites":true,"$scalars":true}}}' >"$BODIES/p5-create.json"
printf '%s' '{"modelName":"User","action":"findMany","query":{"arguments":{"where":{"id":1},"take":__N__},"selection":{"$composites":true,"$scalars":true}}}' >"$BODIES/p5-find-cold.json"
# Plans are cached by query shape (values become parameters). Warm: one id. Random: random ids in
# 1..SEED_USERS (one shape: compiled once). Cold: findMany with take = a new number each time (take
# is not a parameter position, so every request is a new shape and compiles). createOne: unique email
# (one shape).
run_wrk p5-find-warm "$P5/graphql" "$TP_PID" "$BODIES/p5-find-unique.json" p5w 1 '"findUniqueUser":{"' "Authorization: Bearer $API_KEY"
run_wrk p5-find-random "$P5/graphql" "$TP_PID" "$BODIES/p5-find-unique.json" p5r "$SEED_USERS" '"findUniqueUser":{"' "Authorization: Bearer $API_KEY"
run_wrk p5-find-cold "$P5/graphql" "$TP_PID" "$BODIES/p5-find-cold.json" p5c "$SEED_USERS" '"findManyUser":[' "Authorization: Bearer $API_KEY"
run_wrk p5-create "$P5/graphql" "$TP_PID" "$BODIES/p5-create.json" p5 1 '"createOneUser":{"' "Authorization: Bearer $API_KEY"
P5_PLANS=$(curl -sS "http://127.0.0.1:$TP_ADMIN_PORT/metrics" | grep -E '^tidepool_dataproxy_plans' | tr '\n' ' ' || true)

log "Neon point select: /sql vs pgbench via tidepool wire vs pgbench -C direct"
run_wrk neon-sql-pw "$TP/sql" "$TP_PID" "$BODIES/neon-point-select.json" n "$ACCOUNTS" '"rowCount":1' "${NEON_PW_HDR[@]}"
run_wrk neon-sql-key "$TP/sql" "$TP_PID" "$BODIES/neon-point-select.json" n "$ACCOUNTS" '"rowCount":1' "${NEON_KEY_HDR[@]}"
run_pgbench wire-pooled "$TP_PG_PORT" "$TP_PID" "$THREADS" query
run_pgbench direct-connect "$PG_PORT" "" "$CONNECT_JOBS" interval -C
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
CREATED=$(psql_admin "$DB" -At -c "SELECT count(*) FROM \"User\" WHERE email LIKE 'bench-%'")
MANY_BYTES=$(wc -c <"$RUNS/check-tp-many-nocache.resp" 2>/dev/null || echo "?")

# ------------------------------------------------------------------ report

v() { local a=$1 k=$2; local -n m=$a; echo "${m[$k]:-n/a}"; }
row() { # LABEL NAME
    echo "| $1 | $(v RPS "$2") | $(v P50 "$2") | $(v P99 "$2") | $(v MEAN "$2") | $(v ERRS "$2") | $(v CPU "$2") |"
}

CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM_GIB=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
REF_LABEL="query-plan-executor ${REF_VERSION:-n/a}"

MD=$OUT_DIR/results.md
{
    echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/http/run.sh\` (tidepool $TP_REV, release build)."
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| CPU | $(nproc) cores (nproc), ${CPU_MODEL:-unknown} |"
    echo "| RAM | $MEM_GIB GiB |"
    echo "| kernel | $(uname -sr) |"
    echo "| PostgreSQL | $("$PG_BINDIR/postgres" --version | sed 's/^postgres (PostgreSQL) //'), fsync off, max_connections $PG_MAX_CONNECTIONS |"
    echo "| load generator | $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}'), $("$PGBENCH" --version) |"
    echo "| Node.js (reference) | $(node --version 2>/dev/null || echo n/a) |"
    echo "| load average before / after | $LOAD_BEFORE / $LOAD_AFTER |"
    echo
    echo "Everything (load generator, server under test, PostgreSQL) shares the same $(nproc) cores over 127.0.0.1." \
        "$CONNECTIONS concurrent keep-alive connections, ${BENCH_SECONDS}s per measurement after a ${WARMUP_SECONDS}s warm-up" \
        "(wrk -t $THREADS -c $CONNECTIONS --latency; pgbench -j $THREADS -c $CONNECTIONS)." \
        "tidepool: pool_size $POOL_SIZE, transaction mode, upstream as the superuser." \
        "Latencies in ms. Errors: bad responses / responses (non-200, 200 without the expected body, socket errors; pgbench: failed + aborted)." \
        "CPU: cores used during the measurement by server / PostgreSQL (all backends) / load generator / rest of the machine" \
        "(1.00 = one core busy; rest is anything else that ran, near 0 in a clean run)."
    echo
    echo "### Query cache (\`POST /query\` with \`cache-control\`)"
    echo
    echo "The same \`User.findMany\` body (20 users, all 13 columns; ${MANY_BYTES:-?} bytes of JSON per response)" \
        "with \`cache-control: no-cache\` (runs on PostgreSQL every time) and with \`max-age=3600\`" \
        "(the first request stores it; every later one is a \`ttl\` hit served from memory)." \
        "CPU per request: tidepool's and PostgreSQL's CPU time (from /proc/PID/stat) divided by the requests served."
    echo
    echo "| request | req/s | p50 | p99 | mean | errors | CPU server / PG / wrk / rest | tidepool CPU/req | PG CPU/req |"
    echo "|---|---:|---:|---:|---:|---:|---|---:|---:|"
    for c in cache-uncached cache-hit; do
        label=$([[ $c == cache-hit ]] && echo "cached (ttl hit)" || echo "uncached (no-cache)")
        echo "| $label | $(v RPS $c) | $(v P50 $c) | $(v P99 $c) | $(v MEAN $c) | $(v ERRS $c) | $(v CPU $c) | $(per_req "$(v CPU $c)" 1 "$(v RPS $c)") | $(per_req "$(v CPU $c)" 2 "$(v RPS $c)") |"
    done
    echo
    echo "| hit vs uncached | req/s ratio | p50 ratio | p99 ratio |"
    echo "|---|---:|---:|---:|"
    echo "| cached / uncached | $(ratio "$(v RPS cache-hit)" "$(v RPS cache-uncached)") | $(ratio "$(v P50 cache-hit)" "$(v P50 cache-uncached)") | $(ratio "$(v P99 cache-hit)" "$(v P99 cache-uncached)") |"
    echo
    echo "Cache counters after the runs: \`${CACHE_METRICS:-n/a}\`"
    echo
    if [[ $ONLY_CACHE == 1 ]]; then
        echo "(ONLY_CACHE=1: the other sections were not run.)"
    else
    echo "### Prisma Accelerate API (\`POST /query\`)"
    echo
    echo "Bodies are the captured Prisma 7 plans from \`tests/clients/prisma/fixtures\`: \`User.findUnique\` by id" \
        "(all 13 columns; random id in 1..$SEED_USERS) and \`User.createOne\` (name, email, password; unique email per request)." \
        "Reference: Prisma's \`@prisma/query-plan-executor\` ${REF_VERSION:-} (Node.js, one event loop;" \
        "its \`pg\` pool has 10 connections — the executor does not expose the size) on the same database.${REF_NOTE:+ Reference: n/a ($REF_NOTE).}"
    echo
    echo "| operation | server | req/s | p50 | p99 | mean | errors | CPU server / PG / wrk / rest |"
    echo "|---|---|---:|---:|---:|---:|---:|---|"
    row "findUnique by id | tidepool" prisma-find-tp
    row "findUnique by id | $REF_LABEL" prisma-find-ref
    row "createOne | tidepool" prisma-create-tp
    row "createOne | $REF_LABEL" prisma-create-ref
    echo
    echo "| operation | req/s tidepool/reference | p50 tidepool/reference | p99 tidepool/reference |"
    echo "|---|---:|---:|---:|"
    for op in find create; do
        label=$([[ $op == find ]] && echo "findUnique by id" || echo "createOne")
        echo "| $label | $(ratio "$(v RPS prisma-$op-tp)" "$(v RPS prisma-$op-ref)") |" \
            "$(ratio "$(v P50 prisma-$op-tp)" "$(v P50 prisma-$op-ref)") |" \
            "$(ratio "$(v P99 prisma-$op-tp)" "$(v P99 prisma-$op-ref)") |"
    done
    echo
    echo "### Prisma 5/6 DataProxy (\`POST /{version}/{hash}/graphql\`)"
    echo
    echo "JSON-protocol bodies as a Prisma 5.22 client sends them, compiled in-process by the pinned query compiler" \
        "(wasmi interpreter) and run as above; plans cached by query shape (literal values become parameters)." \
        "Warm: the same id every time; random: random id in 1..$SEED_USERS (one shape, compiled once);" \
        "cold: findMany with a new \`take\` each request (not a parameter position: a compile every request);" \
        "createOne: unique email (one shape). Plan counters after the section: ${P5_PLANS:-n/a}"
    echo
    echo "| request | req/s | p50 | p99 | mean | errors | CPU server / PG / wrk / rest | tidepool CPU/req |"
    echo "|---|---:|---:|---:|---:|---:|---|---:|"
    for c in p5-find-warm p5-find-random p5-find-cold p5-create prisma-find-tp prisma-create-tp; do
        echo "| $c | $(v RPS $c) | $(v P50 $c) | $(v P99 $c) | $(v MEAN $c) | $(v ERRS $c) | $(v CPU $c) | $(per_req "$(v CPU $c)" 1 "$(v RPS $c)") |"
    done
    echo
    echo "### Neon-compatible \`POST /sql\`: point select by primary key"
    echo
    echo "\`SELECT abalance FROM pgbench_accounts WHERE aid = \$1\`, random aid in 1..$ACCOUNTS (pgbench scale $SCALE)," \
        "all paths with the extended protocol (/sql runs its statement with Parse/Bind/Execute; pgbench \`-M extended\`)." \
        "The direct connect-per-request clients authenticate with SCRAM-SHA-256 like every other path (also /sql's password)." \
        "pgbench p50/p99 come from its per-transaction log: for the pooled run the logged latency; for \`-C\` (run with" \
        "\`-j $CONNECT_JOBS\`, one thread per client, because pgbench connects synchronously) the time between a client's" \
        "consecutive transaction ends, i.e. disconnect + connect + query. pgbench's mean is run time x clients / transactions."
    echo
    echo "| client path | req/s | p50 | p99 | mean | errors | CPU tidepool / PG / client / rest |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    row "\`/sql\`, password in \`Neon-Connection-String\` (wrk)" neon-sql-pw
    row "\`/sql\`, API key as \`Authorization: Bearer\` (wrk)" neon-sql-key
    row "pgbench -S through tidepool's wire listener (pooled, -j $THREADS)" wire-pooled
    row "pgbench -C -S straight to PostgreSQL (new connection per request, -j $CONNECT_JOBS)" direct-connect
    echo
    if [[ -n ${EXTRA[direct-connect]:-} ]]; then echo "Connect per request, pgbench's ${EXTRA[direct-connect]}."; echo; fi
    echo "| comparison | req/s ratio | p50 ratio | p99 ratio | mean ratio |"
    echo "|---|---:|---:|---:|---:|"
    for s in neon-sql-pw neon-sql-key; do
        label=$([[ $s == neon-sql-pw ]] && echo "/sql (password)" || echo "/sql (API key)")
        echo "| $label vs connect per request | $(ratio "$(v RPS $s)" "$(v RPS direct-connect)") |" \
            "$(ratio "$(v P50 $s)" "$(v P50 direct-connect)") | $(ratio "$(v P99 $s)" "$(v P99 direct-connect)") |" \
            "$(ratio "$(v MEAN $s)" "$(v MEAN direct-connect)") |"
        echo "| $label vs wire pooled | $(ratio "$(v RPS $s)" "$(v RPS wire-pooled)") |" \
            "$(ratio "$(v P50 $s)" "$(v P50 wire-pooled)") | $(ratio "$(v P99 $s)" "$(v P99 wire-pooled)") |" \
            "$(ratio "$(v MEAN $s)" "$(v MEAN wire-pooled)") |"
    done
    echo
    echo "Latency ratios below 1 mean /sql is faster. Rows created by the createOne runs: $CREATED."
    fi
    busy=()
    for k in "${!CPU[@]}"; do
        rest=${CPU[$k]##*/ }
        awk -v r="$rest" 'BEGIN { exit !(r > 0.25) }' && busy+=("$k ($rest cores)")
    done
    if ((${#busy[@]})); then
        echo
        echo "**Machine busy with other work** during: ${busy[*]} — those numbers are low/noisy; rerun on a quiet machine."
    fi
    if ((${#BAD_RUNS[@]})); then
        echo
        echo "**Runs with errors** (their req/s include the bad responses):"
        echo
        printf -- '- %s\n' "${BAD_RUNS[@]}"
    fi
} >"$MD"
cp -f "$MD" "$HERE/out/latest.md"
cat "$MD"
log "results: $MD (runs and logs beside it)"
