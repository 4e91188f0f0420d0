#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# packaging_docs BUILD: what the docs promise, checked against an install to
# a temporary prefix (no build tree at run time):
#   - every ```c block of README.md compiles as shown: a program is built with
#     pkg-config and run against a throwaway redis-server (its job must be in
#     the schedule set); a handler library is built with -fvisibility=hidden
#     -Wall -Wextra -Wmissing-prototypes -Werror, must export exactly
#     dray_register_handlers, and runs a job under the installed `dray run`;
#   - `dray run` with no handlers warns at start (and still stops cleanly);
#   - the man pages render without warnings, and every flag of every
#     command's --help appears in dray(1);
#   - dray@.service passes `systemd-analyze verify`.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tests/packaging_lib.sh"
tmp=$(mktemp -d /tmp/dray-docs.XXXXXX)
trap 'stop_redis; [ -n "${DRAY_PID:-}" ] && kill -KILL $DRAY_PID 2>/dev/null; rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
prefix=$tmp/prefix
dray=$prefix/bin/dray
libdir=$(dirname "$(ls "$prefix"/lib*/libdray.so)")
export PKG_CONFIG_PATH="$libdir/pkgconfig"
unset LD_LIBRARY_PATH
start_redis "$tmp"
export DRAY_REDIS_URL="unix://$REDIS_SOCK"

# ---- README's C snippets ---------------------------------------------------
awk -v dir="$tmp" '
    /^```c$/ { n++; out = sprintf("%s/readme%d.c", dir, n); inblk = 1; next }
    /^```$/ && inblk { inblk = 0; close(out); next }
    inblk { print > out }
' "$src/README.md"
blocks=$(ls "$tmp"/readme*.c 2>/dev/null | wc -l)
[ "$blocks" -ge 2 ] || fail "README.md has $blocks C blocks, expected a program and a handler library"
strict="-std=c11 -Wall -Wextra -Wmissing-prototypes -Wstrict-prototypes -Werror"
nprog=0
nlib=0
for f in "$tmp"/readme*.c; do
    name=$(basename "$f" .c)
    if grep -q 'dray_register_handlers' "$f"; then
        # shellcheck disable=SC2046
        cc $strict -shared -fPIC -fvisibility=hidden "$f" -o "$tmp/lib$name.so" \
            $(pkg-config --cflags --libs dray) || fail "README $name (handler library) does not compile"
        exports=$(nm -D --defined-only "$tmp/lib$name.so" | awk '$2 == "T" {print $3}')
        [ "$exports" = "dray_register_handlers" ] ||
            fail "README $name exports [$exports], expected only dray_register_handlers"
        classes=$(grep -o 'dray_server_register(s, "[A-Za-z]*"' "$f" | sed 's/.*"\(.*\)"/\1/')
        [ -n "$classes" ] || fail "README $name registers no class"
        redis-cli -s "$REDIS_SOCK" flushall >/dev/null
        for k in $classes; do
            "$dray" push "$k" '["report.pdf"]' >/dev/null || fail "dray push $k"
        done
        want=$(echo "$classes" | wc -l)
        "$dray" run --require "$tmp/lib$name.so" -c 2 -t 5 >"$tmp/$name.log" 2>&1 &
        DRAY_PID=$!
        wait_for 20 "the README handler ran $want job(s)" redis_is get stat:processed "$want" ||
            { cat "$tmp/$name.log"; exit 1; }
        kill -TERM $DRAY_PID
        rc=0
        wait $DRAY_PID || rc=$?
        DRAY_PID=
        [ $rc -eq 0 ] || { cat "$tmp/$name.log"; fail "dray run exited $rc after TERM"; }
        redis_is get stat:failed "" || redis_is get stat:failed 0 || fail "README handler failed a job"
        if grep -q "no job handlers registered" "$tmp/$name.log"; then
            fail "dray run warned about missing handlers with --require"
        fi
        nlib=$((nlib + 1))
    elif grep -q 'int main' "$f"; then
        # shellcheck disable=SC2046
        cc $strict "$f" -o "$tmp/$name" $(pkg-config --cflags --libs dray) -Wl,-rpath,"$libdir" ||
            fail "README $name (program) does not compile"
        redis-cli -s "$REDIS_SOCK" flushall >/dev/null
        jid=$("$tmp/$name") || fail "README $name exited non-zero"
        [[ "$jid" =~ ^[0-9a-f]{24}$ ]] || fail "README $name printed '$jid', not a jid"
        redis-cli -s "$REDIS_SOCK" zrange schedule 0 -1 | grep -q "\"jid\":\"$jid\"" ||
            fail "README $name: job $jid is not in the schedule set"
        nprog=$((nprog + 1))
    else
        cc $strict -fsyntax-only "$f" $(pkg-config --cflags dray) || fail "README $name does not compile"
    fi
done
[ $nprog -ge 1 ] && [ $nlib -ge 1 ] || fail "README: $nprog programs, $nlib handler libraries run"
echo "packaging_docs: README: $blocks C blocks compile; $nprog program(s) pushed, $nlib handler library ran its job"

# ---- dray run without handlers warns at start -------------------------------
"$dray" run -c 1 >"$tmp/nohandlers.log" 2>&1 &
DRAY_PID=$!
wait_for 20 "dray run without --require logs its start" grep -q "starting" "$tmp/nohandlers.log" ||
    { cat "$tmp/nohandlers.log"; exit 1; }
kill -TERM $DRAY_PID
rc=0
wait $DRAY_PID || rc=$?
DRAY_PID=
[ $rc -eq 0 ] || fail "dray run without handlers exited $rc after TERM"
grep -q "no job handlers registered" "$tmp/nohandlers.log" ||
    { cat "$tmp/nohandlers.log"; fail "dray run with no handlers did not warn"; }
echo "packaging_docs: dray run with no handlers warns"

# ---- man pages ---------------------------------------------------------------
export MANPATH=$prefix/share/man
for page in dray.1 dray.conf.5 dray-license.1 libdray.3; do
    f=$(ls "$prefix"/share/man/man*/"$page".gz)
    warn=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null) || fail "man -l $page failed"
    [ -z "$warn" ] || fail "man $page: $warn"
    LC_ALL=C MANWIDTH=80 man -l "$f" 2>/dev/null | col -b >"$tmp/$page.txt"
    grep -q '^NAME' "$tmp/$page.txt" || fail "man $page renders no NAME section"
done
text=$(LC_ALL=C man 1 dray 2>/dev/null | col -b)
[[ "$text" == *"dray - Sidekiq-compatible"* ]] || fail "man dray (MANPATH=$MANPATH) finds no page"
cmds=$("$dray" --help | awk '/^Commands:/ {on = 1; next} /^$/ {on = 0} on && $1 != "X" {print $1}')
missing=
nflags=0
for c in "" $cmds; do
    if [ -n "$c" ]; then h=$("$dray" help "$c" 2>&1 || true); else h=$("$dray" --help); fi
    for flag in $(echo "$h" | grep -oE '(^|[ ,\[])--?[a-zA-Z][a-zA-Z-]*' | sed 's/^[ ,\[]//' | sort -u); do
        nflags=$((nflags + 1))
        grep -qe "$flag\b" "$tmp/dray.1.txt" || missing="$missing $c:$flag"
    done
done
[ -z "$missing" ] || fail "flags in 'dray help' missing from dray(1):$missing"
[ $nflags -ge 20 ] || fail "only $nflags flags found in dray's help"
echo "packaging_docs: 4 man pages render; all $nflags flags of $(echo $cmds | wc -w) commands' help are in dray(1)"

# ---- systemd unit ------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
    mkdir "$tmp/unit"
    sed "s#/usr/bin/dray#$dray#" "$src/packaging/systemd/dray@.service" >"$tmp/unit/dray@ci.service"
    out=$(systemd-analyze verify "$tmp/unit/dray@ci.service" 2>&1) || fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    grep -q '^ExecReload=/bin/kill -TSTP \$MAINPID$' "$src/packaging/systemd/dray@.service" ||
        fail "dray@.service: reload is not TSTP (quiet)"
    echo "packaging_docs: dray@.service passes systemd-analyze verify"
else
    echo "packaging_docs: SKIPPED systemd-analyze verify (no systemd-analyze)"
    exit 77
fi
echo "packaging_docs: ok"
