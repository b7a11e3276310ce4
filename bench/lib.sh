# shellcheck shell=bash
# Shared helpers for bench/*.sh: a private PostgreSQL cluster, PgBouncer and
# tidepool on free 127.0.0.1 ports, all torn down by `bench_cleanup` (the
# scripts install it as an EXIT trap). Never touches the system Postgres.
#
# Everything lives in $RUN_DIR (a fresh temp dir); logs are copied to
# $OUT_DIR/logs on exit.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)

BENCH_USER=bench       # role clients log in as (all targets)
BENCH_PASSWORD=bench
BENCH_DB=bench

RUN_DIR=""
PIDS_TO_KILL=()
PG_STARTED=0

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- binaries

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

# Commands that refuse root (initdb, pg_ctl, pgbouncer) run as $PG_OS_USER.
setup_os_user() {
    AS_PG=()
    if [[ $(id -u) -ne 0 ]]; then PG_OS_USER=$(id -un); return; fi
    PG_OS_USER=${PG_OS_USER:-}
    if [[ -z $PG_OS_USER ]]; then
        if id postgres >/dev/null 2>&1; then
            PG_OS_USER=postgres
        else
            id tidepool-pg >/dev/null 2>&1 ||
                useradd --system --user-group --no-create-home --home-dir /nonexistent \
                    --shell /usr/sbin/nologin tidepool-pg
            PG_OS_USER=tidepool-pg
        fi
    fi
    # setpriv execs in place (no intermediate process), so $! is the real pid.
    AS_PG=(setpriv "--reuid=$PG_OS_USER" "--regid=$PG_OS_USER" --init-groups --)
}

ensure_pgbouncer() {
    PGBOUNCER_BIN=${PGBOUNCER_BIN:-$(command -v pgbouncer || true)}
    [[ -z $PGBOUNCER_BIN && -x /usr/sbin/pgbouncer ]] && PGBOUNCER_BIN=/usr/sbin/pgbouncer
    if [[ -z $PGBOUNCER_BIN ]]; then
        log "pgbouncer not found: installing it with apt-get"
        [[ $(id -u) -eq 0 ]] || die "pgbouncer missing and not root; install it (apt-get install pgbouncer)"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2
        PGBOUNCER_BIN=/usr/sbin/pgbouncer
    fi
    [[ -x $PGBOUNCER_BIN ]] || die "pgbouncer not executable: $PGBOUNCER_BIN"
}

# ---------------------------------------------------------------- utilities

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
    else
        local p
        while :; do
            p=$((20000 + RANDOM % 30000))
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
        done
    fi
}

# free_ports N: N distinct free ports on one line.
free_ports() {
    local n=$1 ports=() p
    while ((${#ports[@]} < n)); do
        p=$(free_port)
        [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
    done
    echo "${ports[*]}"
}

wait_port() { # port timeout_s
    local port=$1 deadline=$((SECONDS + ${2:-30}))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

raise_nofile() {
    local hard
    hard=$(ulimit -Hn)
    ulimit -n "$hard" 2>/dev/null || true
    log "open files limit: $(ulimit -n)"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- lifecycle

bench_init_run_dir() {
    RUN_DIR=$(mktemp -d "${BENCH_TMP:-/tmp}/bench-run.XXXXXX")
    chmod 755 "$RUN_DIR"
    [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER:" "$RUN_DIR"
    mkdir -p "$OUT_DIR/logs"
}

bench_cleanup() {
    local rc=$?
    set +e
    local pid
    for pid in "${PIDS_TO_KILL[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS_TO_KILL[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    if ((PG_STARTED)); then
        (cd "$RUN_DIR" && "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/pgdata" -m immediate -w stop >/dev/null 2>&1)
    fi
    if [[ -n $RUN_DIR && -d $RUN_DIR ]]; then
        mkdir -p "$OUT_DIR/logs"
        cp -f "$RUN_DIR"/*.log "$RUN_DIR"/*.ini "$RUN_DIR"/*.toml "$OUT_DIR/logs/" 2>/dev/null
        rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}

bench_install_trap() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# start_postgres [max_connections]
# -> PG_PORT; role $BENCH_USER (SCRAM password), database $BENCH_DB owned by it.
start_postgres() {
    local maxconn=${1:-300}
    PG_PORT=$(free_port)
    local data=$RUN_DIR/pgdata
    log "initdb ($PG_BINDIR, as $PG_OS_USER) and start on port $PG_PORT"
    (cd "$RUN_DIR" && "${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$data" -U postgres -A trust \
        -E UTF8 --locale=C --no-sync >"$RUN_DIR/initdb.log" 2>&1) ||
        { cat "$RUN_DIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$data/postgresql.conf" <<EOF
# --- tidepool bench ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$RUN_DIR'
max_connections = $maxconn
shared_buffers = ${PG_SHARED_BUFFERS:-256MB}
# The proxies are what is measured, not the disk.
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
${PG_EXTRA_CONF:-}
EOF
    cat >"$data/pg_hba.conf" <<EOF
local all postgres trust
host  all postgres 127.0.0.1/32 trust
# Per-proxy upstream roles (PGB_UPSTREAM_USER / TP_UPSTREAM_USER) tell their backends apart.
host  all up_pgbouncer,up_tidepool 127.0.0.1/32 trust
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
EOF
    (cd "$RUN_DIR" && "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$data" -l "$RUN_DIR/postgres.log" \
        -w -t 60 start >/dev/null) || { tail -n 30 "$RUN_DIR/postgres.log" >&2; die "postgres failed to start"; }
    PG_STARTED=1
    psql_admin postgres -c "CREATE ROLE $BENCH_USER LOGIN PASSWORD '$BENCH_PASSWORD'" >/dev/null
    psql_admin postgres -c "CREATE DATABASE $BENCH_DB OWNER $BENCH_USER" >/dev/null
    psql_admin postgres -c "CREATE ROLE up_pgbouncer LOGIN SUPERUSER" -c "CREATE ROLE up_tidepool LOGIN SUPERUSER" >/dev/null
}

# psql_admin DB ARGS...: superuser psql straight to Postgres (never via a proxy).
psql_admin() {
    local db=$1
    shift
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" "$@"
}

# start_pgbouncer POOL_SIZE -> PGB_PORT, PGB_PID
start_pgbouncer() {
    local pool=$1
    PGB_PORT=$(free_port)
    local ini=$RUN_DIR/pgbouncer.ini
    # Default: the SCRAM verifier Postgres stored for the role (PgBouncer's
    # recommended setup: no PBKDF2 per login, like a proxy that derives its
    # verifier once). PGB_PASSWORD_FORMAT=plain puts the cleartext password
    # in the userlist instead (PgBouncer then runs PBKDF2 on every login).
    local secret=$BENCH_PASSWORD
    if [[ ${PGB_PASSWORD_FORMAT:-verifier} != plain ]]; then
        secret=$(psql_admin postgres -At -c "SELECT rolpassword FROM pg_authid WHERE rolname = '$BENCH_USER'")
        [[ $secret == SCRAM-SHA-256* ]] || die "no SCRAM verifier for $BENCH_USER"
    fi
    printf '"%s" "%s"\n' "$BENCH_USER" "$secret" >"$RUN_DIR/userlist.txt"
    cat >"$ini" <<EOF
[databases]
$BENCH_DB = host=127.0.0.1 port=$PG_PORT dbname=$BENCH_DB user=${PGB_UPSTREAM_USER:-postgres} pool_size=$pool

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = ${PGB_AUTH_TYPE:-scram-sha-256}
auth_file = $RUN_DIR/userlist.txt
pool_mode = transaction
default_pool_size = $pool
max_db_connections = $pool
max_client_conn = 20000
listen_backlog = 4096
ignore_startup_parameters = extra_float_digits,options
log_connections = 0
log_disconnections = 0
logfile = $RUN_DIR/pgbouncer.log
pidfile = $RUN_DIR/pgbouncer.pid
EOF
    [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER:" "$ini" "$RUN_DIR/userlist.txt"
    log "starting pgbouncer ($("$PGBOUNCER_BIN" --version | head -n 1)) on port $PGB_PORT"
    (cd "$RUN_DIR" && exec "${AS_PG[@]}" "$PGBOUNCER_BIN" "$ini" >"$RUN_DIR/pgbouncer.stdout.log" 2>&1) &
    PGB_PID=$!
    PIDS_TO_KILL+=("$PGB_PID")
    wait_port "$PGB_PORT" 20 || { tail -n 20 "$RUN_DIR/pgbouncer.log" "$RUN_DIR/pgbouncer.stdout.log" >&2; die "pgbouncer did not start"; }
    check_proxy pgbouncer "$PGB_PORT" || die "pgbouncer does not answer queries"
}

# build_tidepool: cargo build --release -p tidepool (unless SKIP_BUILD=1).
# Returns non-zero (without exiting) when there is no binary afterwards.
build_tidepool() {
    TIDEPOOL_BIN=${TIDEPOOL_BIN:-$REPO_ROOT/target/release/tidepool}
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        log "building tidepool (cargo build --release -p tidepool)"
        if ! (cd "$REPO_ROOT" && cargo build --release -p tidepool) >"$OUT_DIR/logs/cargo-build.log" 2>&1; then
            log "cargo build failed (see $OUT_DIR/logs/cargo-build.log):"
            tail -n 15 "$OUT_DIR/logs/cargo-build.log" >&2
        fi
    fi
    [[ -x $TIDEPOOL_BIN ]]
}

# start_tidepool POOL_SIZE -> TP_PORT, TP_ADMIN_PORT, TP_PID (returns non-zero on failure)
start_tidepool() {
    local pool=$1 ports
    ports=$(free_ports 2)
    TP_PORT=${ports%% *}
    TP_ADMIN_PORT=${ports##* }
    # Run a snapshot of the binary under a neutral name: a concurrent
    # `cargo build` cannot swap the binary between restarts, and someone
    # else's `pkill -f "tidepool serve"` on this shared machine does not hit
    # the proxy being measured (seen here: runs died with exit status 0 =
    # SIGTERM drain).
    local bin=$RUN_DIR/pooler-under-test
    [[ -x $bin ]] || cp -f "$TIDEPOOL_BIN" "$bin"
    local cfg=$RUN_DIR/pooler.toml
    cat >"$cfg" <<EOF
[server]
pg_listen    = "127.0.0.1:$TP_PORT"
admin_listen = "127.0.0.1:$TP_ADMIN_PORT"
${TP_SERVER_EXTRA:-}

[[databases]]
name      = "$BENCH_DB"
url       = "postgres://${TP_UPSTREAM_USER:-postgres}@127.0.0.1:$PG_PORT/$BENCH_DB"
pool_size = $pool
pool_mode = "transaction"
max_client_conn = 20000

[[users]]
name     = "$BENCH_USER"
password = "$BENCH_PASSWORD"
EOF
    log "starting tidepool (snapshot of $TIDEPOOL_BIN) on port $TP_PORT (admin $TP_ADMIN_PORT)"
    (cd "$RUN_DIR" && exec env RUST_LOG="${TIDEPOOL_LOG:-warn}" "$bin" serve --config "$cfg" >"$RUN_DIR/tidepool.log" 2>&1) &
    TP_PID=$!
    PIDS_TO_KILL+=("$TP_PID")
    if ! wait_port "$TP_PORT" 30; then
        log "tidepool did not listen on $TP_PORT:"; tail -n 20 "$RUN_DIR/tidepool.log" >&2
        return 1
    fi
    check_proxy tidepool "$TP_PORT"
}

# check_proxy NAME PORT: one query through the proxy as the bench user.
check_proxy() {
    local out
    if ! out=$(PGPASSWORD=$BENCH_PASSWORD PGCONNECT_TIMEOUT=10 "$PG_BINDIR/psql" -X -At -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$2" -U "$BENCH_USER" -d "$BENCH_DB" -c "SELECT 40 + 2" 2>&1) || [[ $out != 42 ]]; then
        log "$1 sanity query failed: $out"
        return 1
    fi
}
