#!/bin/sh
# SPDX-License-Identifier: LicenseRef-dray-commercial
#
# Build the license-key libFuzzer target with clang in its own build dir and
# run it for SECONDS (CI: ~30). Exit status is libFuzzer's: non-zero on a
# crash, leak or sanitizer report; the reproducer lands in BUILD_DIR/fuzz-artifacts/.
#
# usage: tests/fuzz/run-license-fuzz.sh BUILD_DIR [SECONDS]
#   env: DRAY_SOURCE_DIR (default: this checkout), CC_FUZZ (default: clang),
#        FUZZ_JOBS (default: 2, build parallelism)
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [SECONDS]" >&2
    exit 64
fi
BUILD=$1
SECONDS_=${2:-30}
SRC=${DRAY_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
SEEDS=$(cd "$(dirname "$0")" && pwd)/corpus/license

cmake -S "$SRC" -B "$BUILD" \
    -DCMAKE_C_COMPILER="${CC_FUZZ:-clang}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DDRAY_FUZZ=ON -DDRAY_TESTS=ON \
    -DDRAY_PRO=OFF -DDRAY_ENTERPRISE=OFF >/dev/null
cmake --build "$BUILD" --target fuzz_license -j "${FUZZ_JOBS:-2}"

# libFuzzer adds what it finds to the first directory; the seeds stay read-only.
WORK=$BUILD/fuzz-corpus/license
ART=$BUILD/fuzz-artifacts
mkdir -p "$WORK" "$ART"
exec "$BUILD/fuzz/fuzz_license" \
    -max_total_time="$SECONDS_" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -max_len=4096 \
    -artifact_prefix="$ART/" \
    -print_final_stats=1 \
    "$WORK" "$SEEDS"
