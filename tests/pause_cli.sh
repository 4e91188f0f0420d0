#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# pause_cli BUILD: `dray queues --pause/--resume` against a throwaway
# redis-server: the set `paused` changes, `dray queues` shows the state (table
# and --json), a bad queue name or two changes at once are usage errors (exit
# 2) that change nothing, and Redis gone is exit 1.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tests/packaging_lib.sh"
tmp=$(mktemp -d /tmp/dray-pause.XXXXXX)
trap 'stop_redis; rm -rf "$tmp"' EXIT
start_redis "$tmp"
dray=$build/core/dray
export DRAY_REDIS_URL="unix://$REDIS_SOCK"
rc() { redis-cli -s "$REDIS_SOCK" "$@"; }

rc sadd queues critical low >/dev/null
rc lpush queue:critical '{"class":"X","args":[],"jid":"j1","queue":"critical"}' >/dev/null
out=$("$dray" queues --pause critical) || fail "--pause exit $?"
[ "$out" = "queue critical paused" ] || fail "--pause said '$out'"
[ "$(rc smembers paused)" = "critical" ] || fail "paused set: $(rc smembers paused)"
[ "$(rc llen queue:critical)" = 1 ] || fail "pausing moved the job"
"$dray" queues | grep -Eq '^critical +1 +[0-9.]+s +paused$' || fail "table: $("$dray" queues)"
"$dray" queues | grep -Eq '^low +0 +[0-9.]+s +running$' || fail "table: $("$dray" queues)"
json=$("$dray" queues --json)
python3 -c 'import json,sys; q={x["name"]: x["paused"] for x in json.loads(sys.argv[1])}; sys.exit(q != {"critical": True, "low": False})' "$json" ||
    fail "--json: $json"
set +e
"$dray" queues --pause 'bad name' 2>"$tmp/err"; code=$?
set -e
[ $code = 2 ] || fail "bad name: exit $code"
grep -q "invalid queue name 'bad name'" "$tmp/err" || fail "bad name message: $(cat "$tmp/err")"
set +e
"$dray" queues --pause a --resume b 2>/dev/null; code=$?
set -e
[ $code = 2 ] || fail "two changes: exit $code"
[ "$(rc scard paused)" = 1 ] || fail "a refused command changed paused: $(rc smembers paused)"
out=$("$dray" queues --resume critical) || fail "--resume exit $?"
[ "$out" = "queue critical resumed" ] || fail "--resume said '$out'"
[ "$(rc exists paused)" = 0 ] || fail "paused set left: $(rc smembers paused)"
"$dray" queues --pause critical --namespace ns1 >/dev/null || fail "--pause with a namespace"
[ "$(rc smembers ns1:paused)" = "critical" ] || fail "namespaced paused set: $(rc keys '*paused*')"
[ "$(rc exists paused)" = 0 ] || fail "a namespaced pause wrote the bare key"
set +e
"$dray" queues --pause critical --redis-url "unix://$tmp/nope.sock" 2>/dev/null; code=$?
set -e
[ $code = 1 ] || fail "no redis: exit $code"

# Supervised children (dray run --processes 2) leave a paused queue alone
# while another drains, and run all of it once resumed.
jobs=$build/tests/libtest_web_jobs.so
if [ -f "$jobs" ]; then
    rc flushall >/dev/null
    "$dray" queues --pause held >/dev/null
    "$dray" push WebOk '[]' -q held --count 10 >/dev/null
    "$dray" push WebOk '[]' -q free --count 10 >/dev/null
    "$dray" run --processes 2 -c 2 -q held -q free --require "$jobs" --set heartbeat=1 -t 5 \
        >"$tmp/run.log" 2>&1 &
    RUN_PID=$!
    trap 'kill -KILL $RUN_PID 2>/dev/null || true; stop_redis; rm -rf "$tmp"' EXIT
    wait_for 30 "the free queue drained" redis_is llen queue:free 0 || { cat "$tmp/run.log"; exit 1; }
    # 3 s (past the 3 s bound) more: held keeps all 10, none in flight
    end=$(($(date +%s%N) / 1000000 + 3000))
    while [ $(($(date +%s%N) / 1000000)) -lt $end ]; do
        [ "$(rc llen queue:held)" = 10 ] || fail "a supervised child fetched from a paused queue"
        sleep 0.1
    done
    for k in $(rc --scan --pattern 'dray:inflight:*'); do
        rc lrange "$k" 0 -1 | grep -q '"queue":"held"' && fail "held job in flight in $k"
    done
    "$dray" queues --resume held >/dev/null
    wait_for 30 "the held queue drained" redis_is llen queue:held 0 || { cat "$tmp/run.log"; exit 1; }
    wait_for 30 "20 jobs counted" redis_is get stat:processed 20 || fail "processed $(rc get stat:processed), not 20"
    kill -TERM $RUN_PID
    wait $RUN_PID || fail "dray run --processes exit $?"
else
    echo "pause_cli: no $jobs: supervised part not run"
fi
echo "pause_cli: ok"
