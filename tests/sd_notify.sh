#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# run_sd_notify BUILD: `dray run` speaks systemd's notify protocol, as
# dray@.service (Type=notify) needs. A python3 listener stands in for systemd
# on a unix datagram socket ($NOTIFY_SOCKET, path and abstract '@' forms):
#   - READY=1 arrives once dray has loaded its config and handlers;
#   - TSTP (systemctl reload) reports STATUS=quiet, TERM reports STOPPING=1
#     before the process exits 0;
#   - a bad config exits 4 and never sends READY=1 (systemd marks it failed).
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tests/packaging_lib.sh"
command -v python3 >/dev/null || { echo "run_sd_notify: SKIPPED: no python3"; exit 77; }
tmp=$(mktemp -d /tmp/dray-notify.XXXXXX)
LISTENER=
trap 'stop_redis; [ -n "${DRAY_PID:-}" ] && kill -KILL $DRAY_PID 2>/dev/null; [ -n "$LISTENER" ] && kill $LISTENER 2>/dev/null; rm -rf "$tmp"' EXIT
start_redis "$tmp"
dray=$build/core/dray

# listen ADDR OUT: record each datagram on ADDR as one line of OUT ("\n" -> "|").
listen() {
    python3 - "$1" "$2" <<'PY' &
import socket, sys
addr, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
open(out + ".bound", "w").close()
with open(out, "a") as f:
    while True:
        f.write(s.recv(4096).decode().replace("\n", "|") + "\n")
        f.flush()
PY
    LISTENER=$!
    wait_for 10 "the listener is bound" test -e "$2.bound"
}

# flush_listener ADDR OUT: send a marker datagram to ADDR and wait until the
# listener has written it: everything sent to ADDR before is in OUT then.
flush_listener() {
    python3 - "$1" <<'PY'
import socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"MARK=1", "\0" + addr[1:] if addr.startswith("@") else addr)
PY
    wait_for 10 "the listener wrote everything" grep -q '^MARK=1' "$2"
}

for form in path abstract; do
    if [ $form = path ]; then addr=$tmp/notify.sock; else addr=@dray-notify-$$-$RANDOM; fi
    out=$tmp/$form.log
    listen "$addr" "$out"
    NOTIFY_SOCKET=$addr "$dray" run -c 1 --redis-url "unix://$REDIS_SOCK" \
        --require "$build/examples/libdemo_jobs.so" >"$tmp/$form.dray" 2>&1 &
    DRAY_PID=$!
    wait_for 20 "READY=1 ($form socket)" grep -q '^READY=1' "$out" || { cat "$tmp/$form.dray"; exit 1; }
    kill -TSTP $DRAY_PID
    wait_for 10 "STATUS=quiet after TSTP" grep -q '^STATUS=quiet' "$out"
    grep -q '^STOPPING=1' "$out" && fail "STOPPING=1 before any stop"
    kill -TERM $DRAY_PID
    rc=0
    wait $DRAY_PID || rc=$?
    DRAY_PID=
    [ $rc -eq 0 ] || { cat "$tmp/$form.dray"; fail "dray run exited $rc after TERM"; }
    # dray has exited; its datagrams are queued in order ahead of our marker
    flush_listener "$addr" "$out"
    grep -q '^STOPPING=1' "$out" || fail "no STOPPING=1 after TERM ($form socket): $(cat "$out")"
    order=$(grep -oE '^(READY|STOPPING)=1' "$out" | tr '\n' ' ')
    [ "$order" = "READY=1 STOPPING=1 " ] || fail "states in the wrong order: $order"
    kill $LISTENER
    wait $LISTENER 2>/dev/null || true
    LISTENER=
    echo "run_sd_notify: $form socket: $(tr '\n' ' ' <"$out")"
done

# A configuration error: exit 4, no READY=1.
out=$tmp/bad.log
listen "$tmp/bad.sock" "$out"
printf 'concurrency lots\n' >"$tmp/bad.conf"
rc=0
NOTIFY_SOCKET=$tmp/bad.sock "$dray" run -C "$tmp/bad.conf" --redis-url "unix://$REDIS_SOCK" \
    >"$tmp/bad.dray" 2>&1 || rc=$?
[ $rc -eq 4 ] || fail "bad config: exit $rc, expected 4"
# a READY sent before the exit is queued ahead of the marker (sendto queues
# datagrams on the bound socket synchronously, in order)
flush_listener "$tmp/bad.sock" "$out"
grep -q 'READY=1' "$out" && fail "READY=1 sent for a config that is refused"
echo "run_sd_notify: bad config exits 4 with no READY=1"
echo "run_sd_notify: ok"
