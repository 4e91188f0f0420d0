#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# packaging_deb BUILD: build the Debian packages as a release would, lint
# them, install them on this machine and run them from the installed files.
#
#   1. a throwaway vendor keypair (dray-license keygen from BUILD), standing
#      in for the vendor's key: the modules are built with its public key; it
#      is never committed and is deleted at exit;
#   2. a fresh build for /usr (-DDRAY_TESTS=OFF) and `cpack -G DEB`: five
#      packages, Depends from dpkg-shlibdeps;
#   3. lintian on each: no error or warning (overrides: packaging/lintian/);
#   4. as root only (else exit 77 after step 3): dpkg -i, then with no build
#      tree: the demo from /usr/lib/<multiarch>/dray/examples against a
#      throwaway redis-server, `dray license check` of both modules with a key
#      signed by the throwaway key, the installed unit through
#      `systemd-analyze verify`, `man dray`; then dpkg --purge.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tests/packaging_lib.sh"
tmp=$(mktemp -d /tmp/dray-deb.XXXXXX)
installed=
cleanup() {
    stop_redis
    if [ -n "$installed" ]; then
        dpkg --purge dray-enterprise dray-pro dray libdray-dev libdray0 >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
for tool in cpack dpkg-deb dpkg-shlibdeps lintian fakeroot; do
    command -v $tool >/dev/null || { echo "packaging_deb: SKIPPED: $tool not installed (apt install dpkg-dev lintian fakeroot)"; exit 77; }
done
t0=$(date +%s)

# 1. throwaway vendor key
export DRAY_LICENSE_PASSPHRASE="throwaway-$$-$RANDOM"
"$build/licensing/dray-license" keygen --name vendor-ci --dir "$tmp" >/dev/null

# 2. build for /usr and package
cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DDRAY_TESTS=OFF -DDRAY_WERROR=ON -DDRAY_LICENSE_PUBKEYS="$tmp/vendor-ci.pub" \
    -DDRAY_SYSTEMD_UNITDIR=/lib/systemd/system >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log"; fail "configure for /usr"; }
cmake --build "$tmp/build" -j"${JOBS:-2}" >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log"; fail "build for /usr"; }
(cd "$tmp/build" && cpack -G DEB) >"$tmp/cpack.log" 2>&1 || { cat "$tmp/cpack.log"; fail "cpack"; }
t1=$(date +%s)
debs=$(ls "$tmp"/build/*.deb)
for p in libdray0 libdray-dev dray dray-pro dray-enterprise; do
    ls "$tmp"/build/${p}_*.deb >/dev/null 2>&1 || fail "cpack made no $p package: $debs"
done
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
deb() { ls "$tmp"/build/"$1"_*.deb; }
has() { # has PACKAGE PATH
    dpkg-deb -c "$(deb "$1")" >"$tmp/contents"
    grep -qE " \.$2( -> .*)?\$" "$tmp/contents" || fail "package $1 has no $2"
}
has libdray0 "/usr/lib/$multiarch/libdray.so.0"
has libdray-dev "/usr/lib/$multiarch/libdray.so"
has libdray-dev "/usr/include/dray/dray.h"
has libdray-dev "/usr/lib/$multiarch/pkgconfig/dray.pc"
has dray-pro "/usr/lib/$multiarch/dray/dray-pro.so"
has dray-enterprise "/usr/lib/$multiarch/dray/dray-enterprise.so"
has dray /lib/systemd/system/dray@.service
has dray /usr/share/man/man1/dray.1.gz
has dray /usr/share/man/man5/dray.conf.5.gz
has dray /usr/share/man/man1/dray-license.1.gz
has libdray-dev /usr/share/man/man3/libdray.3.gz
for p in libdray0 dray dray-pro dray-enterprise; do
    depends=$(dpkg-deb -f "$(deb $p)" Depends)
    echo "packaging_deb: $p Depends: $depends"
    for lib in libc6 $(case $p in
        libdray0) echo libhiredis0.14 libjansson4 libsodium23 libssl3 zlib1g ;;
        dray) echo libdray0 adduser ;;
        dray-pro) echo dray libhiredis0.14 libjansson4 libsodium23 libcurl4 ;;
        dray-enterprise) echo dray libhiredis0.14 libjansson4 ;;
    esac); do
        [[ ", $depends," == *", $lib "* || ", $depends," == *", $lib,"* ]] || fail "$p does not depend on $lib"
    done
done
# The modules link libsodium statically with hidden symbols (an LD_PRELOAD
# must not replace signature verification): the Enterprise package, whose
# only binary is the module, needs no shared libsodium.
[[ "$(dpkg-deb -f "$(deb dray-enterprise)" Depends)" != *libsodium* ]] ||
    fail "dray-enterprise depends on a shared libsodium: its module must link it statically"


# 3. lintian
lint_fail=0
for d in $debs; do
    out=$(lintian --suppress-tags-from-file "$src/packaging/lintian/suppressed" "$d" 2>&1 || true)
    if echo "$out" | grep -qE '^[EW]: '; then
        echo "$out"
        lint_fail=1
    fi
done
[ $lint_fail -eq 0 ] || fail "lintian reports errors or warnings"
echo "packaging_deb: 5 packages built in $((t1 - t0)) s, lintian clean"

if [ "$(id -u)" -ne 0 ]; then
    echo "packaging_deb: SKIPPED install (needs root: dpkg -i)"
    exit 77
fi
if dpkg-query -W -f='${Status}' libdray0 2>/dev/null | grep -q "install ok installed"; then
    echo "packaging_deb: SKIPPED install: libdray0 is already installed here (not ours to replace)"
    exit 77
fi

# 4. install and run from the installed files only
installed=1
dpkg -i $debs >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i"; }
rm -rf "$tmp/build"
getent passwd dray >/dev/null || fail "the dray package created no user dray"
unset LD_LIBRARY_PATH
[ "$(command -v dray)" = /usr/bin/dray ] || fail "dray is $(command -v dray), not /usr/bin/dray"
start_redis "$tmp"
ex=/usr/lib/$multiarch/dray/examples
out=$("$ex/dray-demo" "unix://$REDIS_SOCK" "$ex/libdemo_jobs.so" 2000 4 2>&1) || { echo "$out"; fail "installed demo"; }
processed=$(redis-cli -s "$REDIS_SOCK" get stat:processed)
[ "${processed:-0}" -ge 2000 ] || { echo "$out"; fail "installed demo processed $processed of 2000 jobs"; }
dray stats --redis-url "unix://$REDIS_SOCK" >/dev/null || fail "installed dray stats"
echo "packaging_deb: installed demo processed $processed jobs"
for tier in pro enterprise; do
    key=$("$build/licensing/dray-license" issue --key "$tmp/vendor-ci.key" --sub "CI" --tier $tier \
        --expires never --ledger "$tmp/ledger.jsonl" 2>/dev/null)
    mod=/usr/lib/$multiarch/dray/dray-$tier.so
    out=$(dray license check --module "$mod" --key "$key" 2>&1) || { echo "$out"; fail "dray-$tier refuses the CI vendor key"; }
done
# ... and refuse one signed by another key: the development build's
# throwaway test key, which test modules trust and release modules must not.
devkey=$(sed -n 's/^DRAY_LICENSE_TEST_KEY:INTERNAL=//p' "$build/CMakeCache.txt")
devpass=$(sed -n 's/^DRAY_LICENSE_TEST_PASSPHRASE:INTERNAL=//p' "$build/CMakeCache.txt")
if [ -r "$devkey" ] && [ -n "$devpass" ]; then
    key=$(DRAY_LICENSE_PASSPHRASE=$devpass "$build/licensing/dray-license" issue --key "$devkey" --sub CI \
        --tier pro --expires never --ledger "$tmp/dev-ledger.jsonl" 2>/dev/null)
    rc=0
    out=$(dray license check --module "/usr/lib/$multiarch/dray/dray-pro.so" --key "$key" 2>&1) || rc=$?
    [ $rc -eq 4 ] || { echo "$out"; fail "installed dray-pro: a key signed by the test key gives exit $rc, not 4"; }
    echo "packaging_deb: installed dray-pro refuses a key signed by the development test key: ${out##*: }"
fi
echo "packaging_deb: dray-pro and dray-enterprise accept a key signed by the build's vendor key"
mkdir -p "$tmp/unit"
cp /lib/systemd/system/dray@.service "$tmp/unit/dray@ci.service"
out=$(systemd-analyze verify "$tmp/unit/dray@ci.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
for page in "1 dray" "5 dray.conf" "1 dray-license" "3 libdray" "1 dray-batch"; do
    warn=$(LC_ALL=C MANWIDTH=80 man --warnings $page 2>&1 >/dev/null) || fail "man $page failed: $warn"
    [ -z "$warn" ] || fail "man $page warns: $warn"
    text=$(LC_ALL=C MANWIDTH=80 man $page 2>/dev/null | col -b)
    [[ "$text" == *"${page#* } - "* ]] || fail "man $page does not render its NAME line"
done
echo "packaging_deb: installed unit verifies, 5 man pages render (man dray ...)"
stop_redis
REDIS_SOCK=
dpkg --purge dray-enterprise dray-pro dray libdray-dev libdray0 >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "dpkg --purge"; }
installed=
[ ! -e /usr/bin/dray ] && [ ! -e "/usr/lib/$multiarch/libdray.so.0" ] || fail "files left after purge"
echo "packaging_deb: ok in $(($(date +%s) - t0)) s (purged)"
