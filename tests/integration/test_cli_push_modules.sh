#!/usr/bin/env bash
# SPDX-License-Identifier: LicenseRef-dray-commercial
# dray push loads modules as dray run does (config `module`, --module,
# $DRAY_MODULES), so Enterprise encryption seals what the CLI pushes; a
# module that refuses stops the push before anything is written.
# Usage: test_cli_push_modules.sh DRAY DRAY_LICENSE TESTKEY ENT_SO
set -u
dray=$1 tool=$2 key=$3 ent=$4
export DRAY_LICENSE_PASSPHRASE=dray-throwaway-test-passphrase
tmp=$(mktemp -d)
redis-server --port 0 --unixsocket "$tmp/r.sock" --dir "$tmp" --save "" --daemonize yes \
    --pidfile "$tmp/r.pid" --logfile "$tmp/r.log" >/dev/null
trap 'redis-cli -s "$tmp/r.sock" shutdown nosave >/dev/null 2>&1; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do redis-cli -s "$tmp/r.sock" ping >/dev/null 2>&1 && break; sleep 0.02; done
url="unix://$tmp/r.sock"
unset DRAY_LICENSE DRAY_LICENSE_FILE DRAY_MODULES
fail=0
"$tool" issue --key "$key" --sub "ACME Corp" --tier enterprise --expires 2099-12-31 \
    --ledger "$tmp/l" >"$tmp/license" 2>/dev/null || { echo "cannot issue a key"; exit 1; }
old=$("$tool" issue --key "$key" --sub "ACME Corp" --tier enterprise --expires 2020-01-31 \
    --issued-at 2019-01-01 --allow-past --ledger "$tmp/l" 2>/dev/null)
printf '1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n' >"$tmp/keys"
chmod 600 "$tmp/keys"
settings="license_file $tmp/license
enterprise.encrypt_keys $tmp/keys
enterprise.encrypt Secret"
printf 'module %s\n%s\n' "$ent" "$settings" >"$tmp/with-module.conf"
printf '%s\n' "$settings" >"$tmp/no-module.conf"
secret='[1, {"card": "4111-PLAINTEXT"}]'
sealed() { # NAME CMD...: the push succeeds and the queued job is sealed
    local name=$1; shift
    redis-cli -s "$tmp/r.sock" del queue:default >/dev/null
    out=$("$@" 2>&1); rc=$?
    q=$(redis-cli -s "$tmp/r.sock" lrange queue:default 0 -1)
    if [ $rc != 0 ] || [ -z "$q" ] || grep -q PLAINTEXT <<<"$q" || ! grep -q 'dray-enc1' <<<"$q"; then
        echo "FAIL $name: exit $rc: $out"; echo "queue: $q"; fail=1
    else
        echo "ok   $name"
    fi
}
sealed "config module" "$dray" push Secret "$secret" -C "$tmp/with-module.conf" --redis-url "$url"
sealed "--module" "$dray" push Secret "$secret" -C "$tmp/no-module.conf" --module "$ent" --redis-url "$url"
sealed "DRAY_MODULES" env DRAY_MODULES="$ent" "$dray" push Secret "$secret" -C "$tmp/no-module.conf" --redis-url "$url"
sealed "bulk" "$dray" push Secret "$secret" --count 3 -C "$tmp/with-module.conf" --redis-url "$url"
# a refusing module: nothing is pushed
redis-cli -s "$tmp/r.sock" del queue:default >/dev/null
printf 'module %s\nlicense %s\n%s\n' "$ent" "$old" "enterprise.encrypt Secret" >"$tmp/lapsed.conf"
out=$("$dray" push Secret "$secret" -C "$tmp/lapsed.conf" --redis-url "$url" 2>&1); rc=$?
n=$(redis-cli -s "$tmp/r.sock" llen queue:default)
if [ $rc = 0 ] || [ "$n" != 0 ] || ! grep -q "refused to load" <<<"$out"; then
    echo "FAIL refusing module: exit $rc, $n queued: $out"; fail=1
else
    echo "ok   refusing module: exit $rc, nothing queued"
fi
exit $fail
