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
# RPATH: the installed programs run from the prefix with no LD_LIBRARY_PATH
# (and find the installed libdray, not the build tree's).
for exe in "$tmp/prefix/bin/dray" "$libdir/dray/examples/dray-demo"; do
    rp=$(readelf -d "$exe" | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p')
    case "$rp" in
        *"$(cd "$build" && pwd)"*) echo "packaging: $exe has the build tree in its RPATH: $rp"; exit 1 ;;
        '$ORIGIN/'*) ;;
        *) echo "packaging: $exe RPATH is '$rp', not relative to \$ORIGIN"; exit 1 ;;
    esac
    found=$(env -u LD_LIBRARY_PATH ldd "$exe" | awk '/libdray.so/ {print $3}')
    [ "$found" -ef "$libdir/libdray.so.0" ] || { echo "packaging: $exe loads libdray from '$found'"; exit 1; }
done
out=$(env -u LD_LIBRARY_PATH "$tmp/prefix/bin/dray" version) || { echo "packaging: installed dray does not run: $out"; exit 1; }
echo "packaging: installed dray runs without LD_LIBRARY_PATH ($out)"
echo "packaging: ok (SONAME $soname, exports only dray_*)"
