#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# Build the benchmarks (Release) and run them, printing a table of medians.
#
#   bench/run.sh            3 full runs of bench_push and bench_server (~4 min)
#   bench/run.sh --smoke    1 run with tiny N, for CI: proves the harness works,
#                           judges no threshold
#   options: --runs N  --tcp (push over 127.0.0.1 too)  --build DIR  --no-build
#            --keep DIR (keep the raw outputs there)
#
# Exit status: 0 when every run completed and its own checks passed (jobs all
# processed, counters right); targets missed are reported, never fatal.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-bench"
RUNS=3
SMOKE=0
TCP=""
DO_BUILD=1
KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) SMOKE=1; RUNS=1 ;;
    --runs) RUNS="$2"; shift ;;
    --tcp) TCP="--tcp" ;;
    --build) BUILD="$2"; shift ;;
    --no-build) DO_BUILD=0 ;;
    --keep) KEEP="$2"; shift ;;
    -h|--help) sed -n '3,13p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$DO_BUILD" = 1 ]; then
    echo "== building (Release) in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDRAY_PRO=OFF -DDRAY_ENTERPRISE=OFF \
        >"$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log" >&2; exit 1; }
    rm -f "$BUILD.configure.log"
    cmake --build "$BUILD" -j"$(nproc)" --target bench_push bench_server >/dev/null
fi
PUSH="$BUILD/bench/bench_push"
SERVER="$BUILD/bench/bench_server"
for p in "$PUSH" "$SERVER"; do
    [ -x "$p" ] || { echo "run.sh: $p not built" >&2; exit 1; }
done

if [ -n "$KEEP" ]; then
    OUT="$KEEP"
    mkdir -p "$OUT"
else
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/dray-bench-out.XXXXXX")
    trap 'rm -rf "$OUT"' EXIT
fi

# The machine and the versions, for docs/benchmarks.md.
echo "== machine"
echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:       $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "memory:    $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "kernel:    $(uname -sr)"
echo "os:        $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
echo "redis:     $(redis-server --version | sed 's/^Redis server //')"
echo "compiler:  $(cc --version | head -1)"
echo "libraries: hiredis $(pkg-config --modversion hiredis), jansson $(pkg-config --modversion jansson), libsodium $(pkg-config --modversion libsodium)"
echo "dray:      $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- core 2>/dev/null || echo ' (core has uncommitted changes)')"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before the runs)"

if [ "$SMOKE" = 1 ]; then
    PUSH_ARGS="--smoke $TCP"
    SERVER_ARGS="--smoke"
else
    PUSH_ARGS="$TCP"
    SERVER_ARGS=""
fi

status=0
i=1
while [ "$i" -le "$RUNS" ]; do
    echo "== run $i of $RUNS"
    # shellcheck disable=SC2086
    if ! "$PUSH" $PUSH_ARGS >"$OUT/push.$i" 2>"$OUT/push.$i.err"; then
        echo "bench_push failed (run $i):" >&2; cat "$OUT/push.$i.err" >&2; status=1
    fi
    grep '^#' "$OUT/push.$i" | sed 's/^/   /' || true
    # shellcheck disable=SC2086
    if ! "$SERVER" $SERVER_ARGS >"$OUT/server.$i" 2>"$OUT/server.$i.err"; then
        echo "bench_server failed (run $i):" >&2; cat "$OUT/server.$i.err" >&2; status=1
    fi
    grep '^#' "$OUT/server.$i" | sed 's/^/   /' || true
    i=$((i + 1))
done

echo "== medians of $RUNS run(s)"
cat "$OUT"/push.* "$OUT"/server.* 2>/dev/null | grep '^RESULT' | awk -F'\t' -v smoke="$SMOKE" -v runs="$RUNS" '
function sort(a, n,    i, j, t) {
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
}
function fmt(v) {
    if (v >= 1000) return sprintf("%.0f", v)
    if (v >= 10) return sprintf("%.1f", v)
    return sprintf("%.2f", v)
}
{
    name = $2
    if (!(name in count)) { order[++nnames] = name; count[name] = 0 }
    vals[name, ++count[name]] = $3 + 0
    unit[name] = $4
    target[name] = $5
}
END {
    printf "%-34s %12s  %-7s %-25s %-10s %s\n", "metric", "median", "unit", "min .. max", "target", "verdict"
    for (k = 1; k <= nnames; k++) {
        name = order[k]; n = count[name]
        for (i = 1; i <= n; i++) a[i] = vals[name, i]
        sort(a, n)
        med = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        t = target[name]; verdict = ""
        if (t != "-" && !smoke) {
            lim = substr(t, 3) + 0
            if (substr(t, 1, 2) == ">=") verdict = med >= lim ? "met" : "MISSED"
            else verdict = med <= lim ? "met" : "MISSED"
        }
        printf "%-34s %12s  %-7s %-25s %-10s %s\n", name, fmt(med), unit[name], fmt(a[1]) " .. " fmt(a[n]), t, verdict
        if (n < runs) short = 1
    }
    if (short) printf "(some metrics have fewer than %d samples: a run failed)\n", runs
}'
[ -n "$KEEP" ] && echo "raw outputs kept in $OUT"
exit $status
