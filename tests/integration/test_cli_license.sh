#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# dray license check: verdicts and exit codes, with keys issued at test time
# by the throwaway build-time key.
# Usage: test_cli_license.sh DRAY DRAY_LICENSE TESTKEY LIC_PRO_SO LIC_ENT_SO
#                            [FAKE_VERIFY_SO [REAL_MODULE_SO...]]
set -u
dray=$1 tool=$2 key=$3 pro=$4 ent=$5
fake=${6:-}
shift 5; [ $# -gt 0 ] && shift
real=("$@")
export DRAY_LICENSE_PASSPHRASE=dray-throwaway-test-passphrase
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check NAME WANT_EXIT WANT_TEXT CMD...
    local name=$1 want=$2 text=$3; shift 3
    out=$("$@" 2>&1); got=$?
    if [ "$got" != "$want" ] || ! grep -q -- "$text" <<<"$out"; then
        echo "FAIL $name: exit $got (want $want), output:"; echo "$out"; fail=1
    else
        echo "ok   $name"
    fi
}
unset DRAY_LICENSE DRAY_LICENSE_FILE
prokey=$("$tool" issue --key "$key" --sub "ACME Corp" --tier pro --expires 2099-12-31 --ledger "$tmp/l" 2>/dev/null)
entkey=$("$tool" issue --key "$key" --sub "ACME Corp" --tier enterprise --expires 2099-12-31 --ledger "$tmp/l" 2>/dev/null)
oldkey=$("$tool" issue --key "$key" --sub "ACME Corp" --tier enterprise --expires 2020-01-31 --issued-at 2019-01-01 --allow-past --ledger "$tmp/l" 2>/dev/null)
[ -n "$prokey" ] && [ -n "$entkey" ] && [ -n "$oldkey" ] || { echo "cannot issue test keys"; exit 1; }
check "pro key, pro module" 0 "OK.*licensed to ACME Corp" "$dray" license check --module "$pro" --key "$prokey"
check "pro key, enterprise module" 4 "REFUSED.*needs enterprise" "$dray" license check --module "$pro" --module "$ent" --key "$prokey"
check "enterprise key, both" 0 "OK.*lic_ent" "$dray" license check --module "$pro" --module "$ent" --key "$entkey"
check "lapsed key" 4 "REFUSED" "$dray" license check --module "$ent" --key "$oldkey"
check "--key warns about ps" 0 "warning: --key puts the license key on the command line" \
    "$dray" license check --module "$pro" --key "$prokey"
printf '%s\n' "$entkey" > "$tmp/key"
check "key file" 0 "OK" "$dray" license check --module "$ent" --key-file "$tmp/key"
printf 'module %s\nlicense %s\n' "$ent" "$entkey" > "$tmp/dray.conf"
check "from config" 0 "OK" "$dray" license check -C "$tmp/dray.conf"
out=$("$dray" license check --module "$ent" --key-file "$tmp/key" 2>&1)
if grep -q "on the command line" <<<"$out"; then echo "FAIL key file warned: $out"; fail=1; else echo "ok   key file: no warning"; fi
check "json" 0 '"ok":true' "$dray" license check --module "$ent" --key "$entkey" --json
check "no module" 2 "no module configured" "$dray" license check
check "no key" 4 "REFUSED" "$dray" license check --module "$pro"
flipped="${prokey:0:20}$( [ "${prokey:20:1}" = A ] && echo B || echo A )${prokey:21}"
check "flipped byte" 4 "REFUSED" "$dray" license check --module "$pro" --key "$flipped"
# A key whose payload was edited after signing (licensee and term changed,
# old signature kept). A module that resolves crypto_sign_verify_detached
# from outside itself accepts it under an LD_PRELOAD that returns 0.
# (An ASan build insists its runtime comes first in the library list; the
# preloaded fake must not trip that check, which is not what is tested.)
preload_asan="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
forged=$(python3 - "$entkey" <<'PY'
import base64, sys
pfx, pl, sig = sys.argv[1].split('.')
raw = base64.urlsafe_b64decode(pl + '=' * (-len(pl) % 4))
raw = raw.replace(b'ACME Corp', b'EVIL Corp')
print(pfx + '.' + base64.urlsafe_b64encode(raw).decode().rstrip('=') + '.' + sig)
PY
)
if [ -n "$fake" ]; then
    [ -n "$forged" ] && [ "$forged" != "$entkey" ] || { echo "FAIL cannot forge a key"; fail=1; }
    for so in "$pro" "$ent" "${real[@]}"; do
        check "forged key, $(basename "$so")" 4 "REFUSED" "$dray" license check --module "$so" --key "$forged"
        check "forged key under LD_PRELOAD, $(basename "$so")" 4 "signature is invalid" \
            env LD_PRELOAD="$fake" ASAN_OPTIONS="$preload_asan" "$dray" license check --module "$so" --key "$forged"
        check "genuine key under LD_PRELOAD, $(basename "$so")" 0 "OK" \
            env LD_PRELOAD="$fake" ASAN_OPTIONS="$preload_asan" "$dray" license check --module "$so" --key "$entkey"
    done
fi
exit $fail
