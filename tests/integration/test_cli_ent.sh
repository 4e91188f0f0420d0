#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# dray limits / periodic / unique against Enterprise keys written as
# docs/redis-keys.md documents them, on a private redis-server.
# Usage: test_cli_ent.sh DRAY
set -u
dray=$1
tmp=$(mktemp -d)
redis-server --port 0 --unixsocket "$tmp/r.sock" --dir "$tmp" --save "" --daemonize yes \
    --pidfile "$tmp/r.pid" --logfile "$tmp/r.log" >/dev/null
trap 'redis-cli -s "$tmp/r.sock" shutdown nosave >/dev/null 2>&1; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do redis-cli -s "$tmp/r.sock" ping >/dev/null 2>&1 && break; sleep 0.02; done
r() { redis-cli -s "$tmp/r.sock" "$@" >/dev/null; }
url="unix://$tmp/r.sock"
fail=0
check() { # NAME WANT_EXIT REGEX CMD...
    local name=$1 want=$2 re=$3; shift 3
    out=$("$@" 2>&1); got=$?
    if [ "$got" != "$want" ] || ! grep -Eq -- "$re" <<<"$out"; then
        echo "FAIL $name: exit $got (want $want):"; echo "$out"; fail=1
    else echo "ok   $name"; fi
}
check "limits empty" 0 "no limiters" "$dray" limits --redis-url "$url"
r ZADD ent:limiters 1795800000 api-calls 1795800001 stripe
r HSET ent:lmtr:api-calls type c limit 5 interval 0 taken 12 overages 3
r ZADD ent:lmtr:api-calls:c 1795800100 jid1:aa 1795800100 jid2:bb
r HSET ent:lmtr:stripe type w limit 100 interval 60 taken 7 overages 0
check "limits table" 0 "api-calls +concurrent +5 .* 2 +12 +3" "$dray" limits --redis-url "$url"
check "limits window" 0 "stripe +window +100 +60" "$dray" limits --redis-url "$url"
check "limits json" 0 '"holders":2' "$dray" limits --redis-url "$url" --json
r SET dear-leader "host:1:abc"
r ZADD ent:periodic:loops 0 nightly
r HSET ent:periodic:nightly cron "0 3 * * *" class NightlyJob queue default tz Europe/Berlin last 1795800000 next 1795886400
check "periodic" 0 "leader: host:1:abc" "$dray" periodic --redis-url "$url"
check "periodic loop" 0 "nightly +0 3 \* \* \* +NightlyJob +Europe/Berlin" "$dray" periodic --redis-url "$url"
d=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
r HSET ent:unique:$d jid aaaaaaaaaaaaaaaaaaaaaaaa t 1
check "unique list" 0 "$d +aaaaaaaaaaaaaaaaaaaaaaaa" "$dray" unique list --redis-url "$url"
check "unique release by jid" 0 "released $d" "$dray" unique release aaaaaaaaaaaaaaaaaaaaaaaa --redis-url "$url"
check "unique gone" 3 "no unique lock" "$dray" unique release $d --redis-url "$url"
check "unique usage" 2 "actions" "$dray" unique
[ "$(redis-cli -s "$tmp/r.sock" exists ent:unique:$d)" = 0 ] || { echo "FAIL lock still there"; fail=1; }
# namespaced
r ZADD ns1:ent:limiters 1 only-in-ns
r HSET ns1:ent:lmtr:only-in-ns type b limit 9 interval 1 taken 0 overages 0
check "limits namespace" 0 "only-in-ns +bucket +9" "$dray" limits --redis-url "$url" --namespace ns1
# git-style extensions: `dray X` runs dray-X from $PATH (Pro ships dray-batch this way)
printf '#!/bin/sh\necho "ext:$*"\n' > "$tmp/dray-hello"; chmod +x "$tmp/dray-hello"
check "extension via PATH" 0 "^ext:a b$" env PATH="$tmp:$PATH" "$dray" hello a b
check "unknown command" 2 "unknown command 'nosuch'" "$dray" nosuch
check "no path tricks" 2 "unknown command" "$dray" ../x
exit $fail
