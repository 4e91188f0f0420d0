# SPDX-License-Identifier: LGPL-3.0-or-later
# Shared by the packaging tests (sourced): a throwaway redis-server and
# polling with a deadline.

# start_redis DIR: redis-server on unix socket DIR/redis.sock; sets REDIS_SOCK.
start_redis() {
    local dir=$1
    redis-server --port 0 --unixsocket "$dir/redis.sock" --dir "$dir" --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    REDIS_SOCK=$dir/redis.sock
    wait_for 10 "redis-server answers" redis-cli -s "$REDIS_SOCK" ping
}

stop_redis() {
    [ -n "${REDIS_SOCK:-}" ] && redis-cli -s "$REDIS_SOCK" shutdown nosave >/dev/null 2>&1 || true
}

# wait_for SECONDS WHAT COMMAND...: run COMMAND until it succeeds; fail after SECONDS.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local end=$(($(date +%s%N) / 1000000 + secs * 1000))
    until "$@" >/dev/null 2>&1; do
        if [ $(($(date +%s%N) / 1000000)) -ge $end ]; then
            echo "FAIL: timed out after ${secs}s waiting until $what"
            return 1
        fi
        sleep 0.05
    done
}

# redis_is KEY-COMMAND... EXPECTED: true when the reply equals EXPECTED.
redis_is() {
    local want=${*: -1}
    local got
    got=$(redis-cli -s "$REDIS_SOCK" "${@:1:$#-1}")
    [ "$got" = "$want" ]
}

fail() {
    echo "FAIL: $*"
    exit 1
}
