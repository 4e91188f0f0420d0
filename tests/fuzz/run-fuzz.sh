#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
#
# Build every libFuzzer target with clang in its own build dir and run each,
# one after the other, for SECONDS (CI: 20). TARGETs default to all of them:
# license (tests/license.cmake), job, redis_url, config, backtrace
# (tests/fuzz.cmake).
# Exit status is 0 only when every target ran clean; a crash, leak, sanitizer
# report or broken invariant leaves its reproducer in
# BUILD_DIR/fuzz-artifacts/<target>/ and the log in BUILD_DIR/fuzz-logs/.
#
# usage: tests/fuzz/run-fuzz.sh BUILD_DIR [SECONDS] [TARGET...]
#   env: DRAY_SOURCE_DIR (default: this checkout), CC_FUZZ (default: clang),
#        FUZZ_JOBS (default: 2, build parallelism)
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [SECONDS] [TARGET...]" >&2
    exit 64
fi
BUILD=$1
SECONDS_=${2:-20}
[ $# -ge 2 ] && shift 2 || shift 1
TARGETS=${*:-license job redis_url config backtrace}
SRC=${DRAY_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CORPORA=$(cd "$(dirname "$0")" && pwd)/corpus

cmake -S "$SRC" -B "$BUILD" \
    -DCMAKE_C_COMPILER="${CC_FUZZ:-clang}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DDRAY_FUZZ=ON -DDRAY_TESTS=ON \
    -DDRAY_PRO=OFF -DDRAY_ENTERPRISE=OFF >/dev/null
for t in $TARGETS; do
    cmake --build "$BUILD" --target "fuzz_$t" -j "${FUZZ_JOBS:-2}"
done

failed=""
for t in $TARGETS; do
    # libFuzzer adds what it finds to the first directory; the seeds stay read-only.
    WORK=$BUILD/fuzz-corpus/$t
    ART=$BUILD/fuzz-artifacts/$t
    LOG=$BUILD/fuzz-logs/$t.log
    mkdir -p "$WORK" "$ART" "$(dirname "$LOG")"
    echo "== fuzz_$t: $SECONDS_ s"
    if "$BUILD/fuzz/fuzz_$t" \
        -max_total_time="$SECONDS_" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -max_len=4096 \
        -artifact_prefix="$ART/" \
        -print_final_stats=1 \
        "$WORK" "$CORPORA/$t" >"$LOG" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec)|^#[0-9]+.*DONE' "$LOG" || true
    else
        echo "fuzz_$t FAILED (log: $LOG; reproducer in $ART/)" >&2
        tail -n 40 "$LOG" >&2
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz targets that failed:$failed" >&2
    exit 1
fi
