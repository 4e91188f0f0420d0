#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# The module benchmarks (Pro: pro_bench; Enterprise: bench_ent). They are
# programs that print figures, not tests: they judge no threshold, so they
# are not registered with CTest. Each starts its own redis-server.
#
#   bench/modules.sh [--build DIR] [--no-build] [--smoke]
#     --build DIR  an existing build tree (default: build)
#     --no-build   do not build the two targets first
#     --smoke      tiny sizes, to prove the harness works
#
# Exit status: 0 when each benchmark that exists in the build ran to the end.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build"
DO_BUILD=1
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD="$2"; shift ;;
    --no-build) DO_BUILD=0 ;;
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '3,11p' "$0"; exit 0 ;;
    *) echo "modules.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$DO_BUILD" = 1 ]; then
    for t in pro_bench bench_ent; do
        cmake --build "$BUILD" -j2 --target "$t" >/dev/null 2>&1 ||
            echo "modules.sh: target $t not built (module not configured?)" >&2
    done
fi

ran=0
if [ -x "$BUILD/tests/pro_bench" ]; then
    echo "== Pro: reliable vs basic fetch, batch overhead (pro_bench)"
    if [ "$SMOKE" = 1 ]; then
        PRO_BENCH_JOBS=2000 PRO_BENCH_BATCH=2000 "$BUILD/tests/pro_bench"
    else
        "$BUILD/tests/pro_bench"
    fi
    ran=$((ran + 1))
fi
if [ -x "$BUILD/tests/bench_ent" ]; then
    echo "== Enterprise: module overhead per feature (bench_ent)"
    if [ "$SMOKE" = 1 ]; then
        "$BUILD/tests/bench_ent" 2000
    else
        "$BUILD/tests/bench_ent" 20000
    fi
    ran=$((ran + 1))
fi
if [ "$ran" = 0 ]; then
    echo "modules.sh: neither pro_bench nor bench_ent is built in $BUILD" >&2
    exit 1
fi
