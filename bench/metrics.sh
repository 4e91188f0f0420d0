#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# What execution metrics cost on the job path: bench_server's no-op run with
# metrics on and off (BENCH_METRICS=0), interleaved ROUNDS times in one run,
# medians of throughput and worker CPU per job, and the on/off ratios.
#   bench/metrics.sh [BUILD_DIR] [ROUNDS] [JOBS]
set -eu
build=${1:-build}
rounds=${2:-7}
jobs=${3:-200000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
i=0
while [ "$i" -lt "$rounds" ]; do
    for m in 1 0; do
        BENCH_METRICS=$m "$build/bench/bench_server" --only noop --conc 10 --fetch-batch 1,10 \
            --no-wire --no-ceiling --jobs "$jobs" | grep '^RESULT' >>"$out/m$m"
    done
    i=$((i + 1))
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for name in dray.noop.c10 dray.noop.c10.worker_cpu dray.noop.c10.fb10 dray.noop.c10.fb10.worker_cpu; do
    on=$(awk -v n="$name" '$2==n {print $3}' "$out/m1" | median)
    off=$(awk -v n="$name" '$2==n {print $3}' "$out/m0" | median)
    printf '%-32s on %10.2f  off %10.2f  on/off %.4f  (median of %s)\n' "$name" "$on" "$off" \
        "$(echo "$on $off" | awk '{print $1/$2}')" "$rounds"
done
