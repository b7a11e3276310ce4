#!/usr/bin/env bash
# Instructions per transaction of the tidepool process, counted by valgrind's callgrind: a
# measure that does not depend on the machine's load (unlike CPU time), for comparing two
# builds of the hot path. pgbench select-only runs through tidepool (transaction mode, pool 20,
# SCRAM) twice, T1 and T2 transactions per client; the counters are zeroed before and dumped
# after each run, so logins and warm-up cancel out of
#   (instructions(T2 run) - instructions(T1 run)) / (CLIENTS * (T2 - T1)).
#
# Usage: TIDEPOOL_BIN=/path/to/tidepool bench/callgrind.sh
# Environment: TIDEPOOL_BIN [target/release/tidepool], CLIENTS [4], T1 [200], T2 [1000],
#   PROTOCOL [simple] (pgbench -M), LABEL [the binary path] (first column), OUT_DIR [bench/out/callgrind-<timestamp>]
# Prints one Markdown row; callgrind dumps stay in OUT_DIR for callgrind_annotate.
set -Eeuo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLIENTS=${CLIENTS:-4}
T1=${T1:-200}
T2=${T2:-1000}
PROTOCOL=${PROTOCOL:-simple}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out/callgrind-$STAMP}
TIDEPOOL_BIN=${TIDEPOOL_BIN:-$REPO_ROOT/target/release/tidepool}
[[ -x $TIDEPOOL_BIN ]] || die "no tidepool binary at $TIDEPOOL_BIN"
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || die "valgrind (callgrind) is needed"
mkdir -p "$OUT_DIR/logs"

PG_BINDIR=$(find_pg_bindir)
PGBENCH=$PG_BINDIR/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found"
setup_os_user
bench_install_trap
bench_init_run_dir
start_postgres 100
PGPASSWORD=$BENCH_PASSWORD "$PGBENCH" -i -s 1 -q -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" "$BENCH_DB" \
    >"$OUT_DIR/logs/pgbench-init.log" 2>&1 || die "pgbench -i failed"

ports=$(free_ports 2)
TP_PORT=${ports%% *}
cp -f "$TIDEPOOL_BIN" "$RUN_DIR/pooler-under-test"
cat >"$RUN_DIR/pooler.toml" <<EOF
[server]
pg_listen    = "127.0.0.1:$TP_PORT"
admin_listen = "127.0.0.1:${ports##* }"

[[databases]]
name      = "$BENCH_DB"
url       = "postgres://postgres@127.0.0.1:$PG_PORT/$BENCH_DB"
pool_size = 20
pool_mode = "transaction"

[[users]]
name     = "$BENCH_USER"
password = "$BENCH_PASSWORD"
EOF
log "starting tidepool under callgrind on port $TP_PORT"
(cd "$RUN_DIR" && exec env RUST_LOG=warn valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$OUT_DIR/callgrind.out" \
    "$RUN_DIR/pooler-under-test" serve --config "$RUN_DIR/pooler.toml" >"$RUN_DIR/tidepool.log" 2>&1) &
TP_PID=$!
PIDS_TO_KILL+=("$TP_PID")
wait_port "$TP_PORT" 180 || die "tidepool did not listen"

run() { # transactions-per-client
    PGPASSWORD=$BENCH_PASSWORD "$PGBENCH" -n -S -M "$PROTOCOL" -c "$CLIENTS" -j 1 -t "$1" \
        -h 127.0.0.1 -p "$TP_PORT" -U "$BENCH_USER" "$BENCH_DB" >>"$OUT_DIR/logs/pgbench.log" 2>&1 || die "pgbench failed"
}
dumped() { # label -> instructions since the last zeroing
    callgrind_control -d "$1" "$TP_PID" >/dev/null
    sleep 1
    local f
    f=$(ls -t "$OUT_DIR"/callgrind.out.* | head -n 1)
    awk '/^(summary|totals):/ {print $2; exit}' "$f"
}
run 20 # warm-up: the pool's server connections are opened here
callgrind_control -z "$TP_PID" >/dev/null
run "$T1"
i1=$(dumped t1)
callgrind_control -z "$TP_PID" >/dev/null
run "$T2"
i2=$(dumped t2)
per=$(((i2 - i1) / (CLIENTS * (T2 - T1))))
log "instructions: T1 run $i1, T2 run $i2"
echo "| ${LABEL:-$TIDEPOOL_BIN} | -M $PROTOCOL | $CLIENTS | $per |" | tee "$OUT_DIR/result.md"
