#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# Install the build into a temporary prefix and build examples/consumer
# against it with find_package(dray) and with pkg-config; run both.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/dray-pkg.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/dray/dray.h"
soname=$(objdump -p "$tmp"/prefix/lib*/libdray.so | awk '/SONAME/ {print $2}')
[ "$soname" = "libdray.so.0" ] || { echo "bad SONAME: $soname"; exit 1; }
libdir=$(dirname "$(ls "$tmp"/prefix/lib*/libdray.so)")
PKG_CONFIG_PATH="$libdir/pkgconfig" cmake -S "$src/examples/consumer" -B "$tmp/consumer" \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
for exe in consumer_cmake consumer_pkgconfig; do
    out=$(LD_LIBRARY_PATH="$libdir" "$tmp/consumer/$exe")
    case "$out" in
        "dray "*'"class":"HelloJob"'*) echo "packaging: $exe ok" ;;
        *) echo "packaging: $exe printed: $out"; exit 1 ;;
    esac
done
# exported symbols: only the public dray_ API
bad=$(nm -D --defined-only "$libdir/libdray.so" | awk '{print $3}' | grep -v '^dray_' | grep -v '^_' || true)
[ -z "$bad" ] || { echo "libdray.so exports non-API symbols: $bad"; exit 1; }
if nm -D --defined-only "$libdir/libdray.so" | awk '{print $3}' | grep -q '^dray__'; then
    echo "libdray.so exports internal dray__ symbols"; exit 1
fi
echo "packaging: ok (SONAME $soname, exports only dray_*)"
