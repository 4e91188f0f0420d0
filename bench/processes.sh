#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# Throughput and RSS of `dray run` in one process against `--processes 2`
# and `--isolate` (issue 14). Prints figures; judges no threshold. Starts its
# own redis-server on a unix socket; uses the test handler library
# (SupOk: append one line to a file, return).
#
#   bench/processes.sh [BUILD_DIR] [JOBS] [ROUNDS]
#     BUILD_DIR  build tree with core/dray and tests/libtest_supervisor_jobs.so (build)
#     JOBS       jobs per round (default 4000; --isolate runs JOBS/10)
#     ROUNDS     rounds per mode; the median is printed (default 3)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
JOBS=${2:-4000}
ROUNDS=${3:-3}
DRAY=$BUILD/core/dray
LIB=$BUILD/tests/libtest_supervisor_jobs.so
[ -x "$DRAY" ] && [ -f "$LIB" ] || { echo "build dray_cli and test_supervisor_jobs first" >&2; exit 2; }
TMP=$(mktemp -d)
SOCK=$TMP/r.sock
redis-server --port 0 --unixsocket "$SOCK" --save '' --appendonly no --dir "$TMP" >/dev/null &
RPID=$!
trap 'kill $RPID 2>/dev/null; rm -rf "$TMP"' EXIT
R="redis-cli -s $SOCK"
i=0; while ! $R ping >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.05; done

now() { date +%s.%N; }
# RSS (kB) of a process and its children
tree_rss() {
    ps -o rss= -p "$1" --ppid "$1" 2>/dev/null | awk '{s+=$1} END {print s+0}'
}

run_mode() { # name jobs args...
    name=$1; n=$2; shift 2
    results=""
    r=0
    while [ $r -lt "$ROUNDS" ]; do
        $R flushall >/dev/null
        SUP_RUNLOG=$TMP/runs.log "$DRAY" run --redis-url "unix://$SOCK" -r "$LIB" \
            --set log_level=warn "$@" >"$TMP/dray.log" 2>&1 &
        P=$!
        while [ "$($R scard processes)" -lt 1 ]; do sleep 0.05; done
        sleep 0.5 # every child registered (at most --processes); not part of the timing
        rss=$(tree_rss $P)
        t0=$(now) # from the first push: the workers drain while the pushes arrive
        awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
            printf "LPUSH queue:default \x27{\"class\":\"SupOk\",\"args\":[],\"jid\":\"j%d\",\"queue\":\"default\",\"retry\":true,\"created_at\":1,\"enqueued_at\":1}\x27\n", i }' |
            $R >/dev/null
        # every run appends a line to runs.log (stat:processed lags: heartbeat)
        until [ -f "$TMP/runs.log" ] && [ "$(wc -l <"$TMP/runs.log")" -ge "$n" ]; do
            sleep 0.01
        done
        t1=$(now)
        kill -TERM $P; wait $P || true
        rm -f "$TMP/runs.log"
        results="$results $(echo "$t0 $t1 $n $rss" | awk '{printf "%.0f:%d", $3/($2-$1), $4}')"
        r=$((r+1))
    done
    echo "$results" | tr ' ' '\n' | grep . | sort -t: -k1 -n | awk -F: -v name="$name" -v n="$n" '
        { j[NR]=$1; m[NR]=$2 } END { k=int((NR+1)/2);
          printf "%-32s %6d jobs  median %7d jobs/s  RSS %6d kB  (runs:", name, n, j[k], m[k];
          for (i=1;i<=NR;i++) printf " %d", j[i]; print ")" }'
}

run_mode "one process -c 4" "$JOBS" -c 4
run_mode "--processes 2 -c 2" "$JOBS" --processes 2 -c 2
run_mode "--isolate --processes 4" "$((JOBS / 10))" --isolate --processes 4
