#!/bin/sh
# SPDX-License-Identifier: LicenseRef-dray-commercial
# The vendor foot-gun: a release build (DRAY_LICENSE_PUBKEYS) must never
# trust the throwaway test key, whatever path names it: a symlink into the
# build dir, a copy made before configure, or a file replaced by a copy
# after configure. A genuine vendor key builds. Configures and builds only
# the key-table targets of a scratch build of SRC.
# Usage: test_license_guard.sh SRC
set -u
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
b=$tmp/build
keys=$tmp/keys
mkdir -p "$keys"
fail=0
conf() { cmake -S "$src" -B "$b" -DDRAY_WERROR=OFF -DDRAY_TESTS=OFF "$@" >"$tmp/log" 2>&1; }
table() { cmake --build "$b" -j2 --target dray_license_keys >>"$tmp/log" 2>&1; }
refused() { # refused NAME: configure or the table build must fail, naming the test key
    if conf -DDRAY_LICENSE_PUBKEYS="$2" && table; then
        echo "FAIL $1: a release build trusts the throwaway key"; fail=1
    elif ! grep -q -i "throwaway" "$tmp/log"; then
        echo "FAIL $1: refused without saying why:"; tail -5 "$tmp/log"; fail=1
    else
        echo "ok   $1: $(grep -i -m1 throwaway "$tmp/log" | cut -c1-160)"
    fi
}
conf || { cat "$tmp/log"; exit 1; }
cmake --build "$b" -j2 --target dray_license_testkey dray-license >"$tmp/log" 2>&1 ||
    { cat "$tmp/log"; exit 1; }
test=$b/licensing/testkey/dray-test.pub
tool=$b/licensing/dray-license
[ -f "$test" ] && [ -x "$tool" ] || { echo "no test key or dray-license in $b"; exit 1; }
export DRAY_LICENSE_PASSPHRASE=scratch-vendor-passphrase
"$tool" keygen --name vendor --dir "$keys" >/dev/null || exit 1

ln -s "$test" "$keys/release.pub"
refused "symlink to the test key" "$keys/release.pub"
cp "$test" "$keys/copy.pub"
refused "copy of the test key" "$keys/copy.pub"
# a vendor key at configure time, replaced by the test key before the build
cp "$keys/vendor.pub" "$keys/swapped.pub"
if conf -DDRAY_LICENSE_PUBKEYS="$keys/swapped.pub"; then
    cp "$test" "$keys/swapped.pub"
    if table; then
        echo "FAIL swapped after configure: the table trusts the throwaway key"; fail=1
    elif grep -q "throwaway test key" "$tmp/log"; then
        echo "ok   swapped after configure: refused at build time"
    else
        echo "FAIL swapped after configure: refused without saying why"; tail -5 "$tmp/log"; fail=1
    fi
else
    echo "FAIL a vendor key does not configure"; tail -5 "$tmp/log"; fail=1
fi
# a genuine vendor key builds, and its table holds it
vkid=$(sed -n 's/.*kid \([0-9a-f]*\).*/\1/p' "$keys/vendor.pub")
if conf -DDRAY_LICENSE_PUBKEYS="$keys/vendor.pub" && table &&
    grep -q "\"$vkid\"" "$b/licensing/dray_license_keys.c"; then
    echo "ok   vendor key $vkid builds"
else
    echo "FAIL vendor key $vkid:"; tail -5 "$tmp/log"; fail=1
fi
exit $fail
