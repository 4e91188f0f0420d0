#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# Producer instructions per pushed job of a plain class (no module feature
# configured for it) with no module, Pro, Enterprise and both loaded, under
# callgrind (deterministic). Each figure is (Ir at N2 - Ir at N1) / (N2 - N1)
# inside measure_bulk (one dray_client_push_bulk) and measure_single
# (dray_client_push calls) of build/tests/bench_push_modules, so start-up,
# module loads and the first connect are left out.
#
#   bench/push_modules.sh [--build DIR] [N1 N2]   (default build, 500 1500)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build"
if [ "${1:-}" = "--build" ]; then BUILD="$2"; shift 2; fi
N1=${1:-500}
N2=${2:-1500}
B="$BUILD/tests/bench_push_modules"
[ -x "$B" ] || { echo "push_modules.sh: build the target bench_push_modules first" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "push_modules.sh: valgrind is not installed" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Ir of function fn in one run of mode at size n.
ir() {
    valgrind --tool=callgrind --toggle-collect="$3" --callgrind-out-file="$tmp/cg.out" \
        "$B" "$1" "$2" >/dev/null 2>"$tmp/vg.err" || { cat "$tmp/vg.err" >&2; exit 1; }
    callgrind_annotate "$tmp/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}'
}
printf '%-6s %14s %14s   (instructions per plain-class job, N %s..%s)\n' mode bulk single "$N1" "$N2"
for mode in core pro ent both; do
    b1=$(ir $mode "$N1" measure_bulk); b2=$(ir $mode "$N2" measure_bulk)
    s1=$(ir $mode "$N1" measure_single); s2=$(ir $mode "$N2" measure_single)
    printf '%-6s %14d %14d\n' $mode $(( (b2 - b1) / (N2 - N1) )) $(( (s2 - s1) / (N2 - N1) ))
done
