#!/usr/bin/env bash
# SPDX-License-Identifier: LicenseRef-dray-commercial
# A release build made as the vendor makes one (docs/licensing.md): a fresh
# vendor keypair generated now with the built dray-license (never committed,
# deleted on exit), a scratch configure of SRC with
# -DDRAY_LICENSE_PUBKEYS=<its .pub>, the CLI, the vendor tool and the real
# Pro and Enterprise modules built there, keys issued with the vendor's
# private key, then the licensing checks that make sense for a release:
#   - the release key table holds the vendor key and not the throwaway one;
#   - vendor keys load Pro and Enterprise (`dray license check --module`),
#     a Pro key is refused by Enterprise, a lapsed vendor key is refused;
#   - a key signed by the throwaway test key, a key signed by another
#     vendor-looking key, a flipped byte and an edited payload are refused,
#     also under an LD_PRELOAD that makes libsodium's verify return 0;
#   - the release modules pass the nm check (one export, no libsodium import);
#   - dray-license end to end (tests/unit/test_license_cli.sh) with the
#     release tool.
# Exit 0 when all hold, 1 naming each failure, 77 (Skipped) when the
# scratch build cannot be configured here (no compiler / packages).
# Usage: release_build.sh SRC DRAY_LICENSE TEST_KEY TEST_PASSPHRASE
#   DRAY_LICENSE, TEST_KEY: this build's tool and throwaway key (the key a
#   release must refuse). The LD_PRELOAD library (tests/modules/fake_verify.c)
#   is compiled here, unsanitized like the release build.
set -u
src=$1 tool=$2 testkey=$3 testpass=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dray-release.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
fake=$tmp/fake_verify.so
${CC:-cc} -shared -fPIC -o "$fake" "$src/tests/modules/fake_verify.c" ||
    { echo "FAIL cannot compile tests/modules/fake_verify.c"; exit 1; }
b=$tmp/build
fail=0
t0=$(date +%s)
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
check() { # check NAME WANT_EXIT WANT_REGEX CMD...
    local name=$1 want=$2 text=$3 out got
    shift 3
    out=$("$@" 2>&1)
    got=$?
    if [ "$got" != "$want" ] || ! grep -q -E -- "$text" <<<"$out"; then
        bad "$name: exit $got (want $want, /$text/), output:"
        sed 's/^/     /' <<<"$out"
    else
        ok "$name"
    fi
}
unset DRAY_LICENSE DRAY_LICENSE_FILE DRAY_MODULES

# 1. The vendor's keypair, made at test time with a passphrase made now.
vpass=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
mkdir -p "$tmp/vendor" "$tmp/other"
DRAY_LICENSE_PASSPHRASE=$vpass "$tool" keygen --name vendor --dir "$tmp/vendor" >/dev/null ||
    { echo "FAIL dray-license keygen"; exit 1; }
# a second keypair nobody trusts: a key it signs is a stranger's
DRAY_LICENSE_PASSPHRASE=$vpass "$tool" keygen --name other --dir "$tmp/other" >/dev/null ||
    { echo "FAIL dray-license keygen (other)"; exit 1; }
vpub=$tmp/vendor/vendor.pub
vkid=$(sed -n 's/.*kid \([0-9a-f]*\).*/\1/p' "$vpub" | head -1)
tkid=$(sed -n 's/.*kid \([0-9a-f]*\).*/\1/p' "${testkey%.key}.pub" | head -1)
[ -n "$vkid" ] && [ -n "$tkid" ] || { echo "FAIL no kid in $vpub or the test key's .pub"; exit 1; }

# 2. The release build: the vendor key only, warnings as errors, no tests.
if ! cmake -S "$src" -B "$b" -DDRAY_WERROR=ON -DDRAY_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DDRAY_LICENSE_PUBKEYS="$vpub" >"$tmp/conf.log" 2>&1; then
    if grep -q -i "could not find\|no cmake_c_compiler\|not found" "$tmp/conf.log"; then
        echo "SKIP cannot configure a release build here:"; tail -5 "$tmp/conf.log"; exit 77
    fi
    echo "FAIL configure with DRAY_LICENSE_PUBKEYS=$vpub:"; tail -20 "$tmp/conf.log"; exit 1
fi
if ! cmake --build "$b" -j"${JOBS:-2}" --target dray_cli dray-license dray_pro dray_enterprise \
    >"$tmp/build.log" 2>&1; then
    echo "FAIL release build:"; tail -30 "$tmp/build.log"; exit 1
fi
t1=$(date +%s)
echo "     release build: $((t1 - t0)) s"
dray=$b/core/dray
rtool=$b/licensing/dray-license
pro=$(find "$b/pro" -maxdepth 2 -name 'dray-pro.so' | head -1)
ent=$(find "$b/enterprise" -maxdepth 2 -name 'dray-enterprise.so' | head -1)
[ -x "$dray" ] && [ -x "$rtool" ] && [ -f "$pro" ] && [ -f "$ent" ] ||
    { echo "FAIL release build made no dray, dray-license, dray-pro.so or dray-enterprise.so"; exit 1; }

# 3. What the release table trusts. Two throwaway keys: this build's
# (TEST_KEY) and the one the release build made for its own tests.
skey=$b/licensing/testkey/dray-test.key
skid=$(sed -n 's/.*kid \([0-9a-f]*\).*/\1/p' "${skey%.key}.pub" | head -1)
[ -f "$skey" ] && [ -n "$skid" ] || { echo "FAIL the release build made no throwaway key"; exit 1; }
table=$b/licensing/dray_license_keys.c
if grep -q "\"$vkid\"" "$table"; then ok "release table holds vendor kid $vkid"; else bad "release table lacks vendor kid $vkid"; fi
for k in "$tkid" "$skid"; do
    if grep -q "\"$k\"" "$table"; then bad "release table holds the throwaway kid $k"; else ok "release table lacks the throwaway kid $k"; fi
done

# 4. Keys: the vendor's, the throwaway key's, a stranger's.
issue() { # issue PASSPHRASE KEYFILE TIER EXPIRES [ARGS...]
    local p=$1 k=$2 tier=$3 exp=$4
    shift 4
    DRAY_LICENSE_PASSPHRASE=$p "$rtool" issue --key "$k" --sub "ACME Corp" --tier "$tier" \
        --expires "$exp" --ledger "$tmp/ledger" "$@" 2>/dev/null
}
vpro=$(issue "$vpass" "$tmp/vendor/vendor.key" pro 2099-12-31)
vent=$(issue "$vpass" "$tmp/vendor/vendor.key" enterprise 2099-12-31)
vold=$(issue "$vpass" "$tmp/vendor/vendor.key" enterprise 2020-01-31 --issued-at 2019-01-01 --allow-past)
tent=$(issue "$testpass" "$testkey" enterprise 2099-12-31)
sent=$(issue "$testpass" "$skey" enterprise 2099-12-31)
oent=$(issue "$vpass" "$tmp/other/other.key" enterprise 2099-12-31)
for v in vpro vent vold tent sent oent; do
    [ -n "${!v}" ] || { echo "FAIL cannot issue the $v key"; exit 1; }
done

check "vendor pro key loads release Pro" 0 "^OK .*\(pro tier\)" \
    "$dray" license check --module "$pro" --key "$vpro"
check "vendor enterprise key loads release Pro and Enterprise" 0 "OK .*dray-enterprise.so" \
    "$dray" license check --module "$pro" --module "$ent" --key "$vent"
check "vendor pro key refused by release Enterprise" 4 "REFUSED .*enterprise" \
    "$dray" license check --module "$ent" --key "$vpro"
check "lapsed vendor key refused" 4 "REFUSED" \
    "$dray" license check --module "$ent" --key "$vold"
flip() { local k=$1; printf '%s' "${k:0:20}$([ "${k:20:1}" = A ] && echo B || echo A)${k:21}"; }
forged=$(python3 - "$vent" <<'PY'
import base64, sys
pfx, pl, sig = sys.argv[1].split('.')
raw = base64.urlsafe_b64decode(pl + '=' * (-len(pl) % 4))
raw = raw.replace(b'ACME Corp', b'EVIL Corp')
print(pfx + '.' + base64.urlsafe_b64encode(raw).decode().rstrip('=') + '.' + sig)
PY
)
[ -n "$forged" ] && [ "$forged" != "$vent" ] || bad "cannot forge a key"
for so in "$pro" "$ent"; do
    m=$(basename "$so")
    for k in tent sent oent forged flipped; do
        case $k in flipped) key=$(flip "$vent") ;; *) key=${!k} ;; esac
        check "$k key refused by release $m" 4 "REFUSED" \
            "$dray" license check --module "$so" --key "$key"
        check "$k key refused by release $m under LD_PRELOAD" 4 "REFUSED" \
            env LD_PRELOAD="$fake" "$dray" license check --module "$so" --key "$key"
    done
done

# 5. The release modules export one symbol and import no libsodium.
check "nm check of the release modules" 0 "" sh "$src/tests/modules/nm_check.sh" "$pro" "$ent"
# 6. The vendor tool of the release build, end to end.
check "dray-license end to end (release tool)" 0 "" sh "$src/tests/unit/test_license_cli.sh" "$rtool"

echo "     release build and checks: $(($(date +%s) - t0)) s"
exit $fail
