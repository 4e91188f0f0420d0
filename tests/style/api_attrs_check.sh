#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# The public headers' promises to callers (STYLE.md rule 4, issue 17): an
# ignored result of a fallible call and a NULL where a handle must be do not
# compile under -Werror. Compiles small callers against core/include and
# fails when one that must be refused is accepted, or one that must build
# does not. Also: every `DRAY_API int` prototype carries DRAY_WUR unless it is
# listed below as unable to fail.
# usage: api_attrs_check.sh CC SOURCE_DIR
set -euo pipefail
cc=${1:?usage: api_attrs_check.sh CC SOURCE_DIR}
src=${2:?usage: api_attrs_check.sh CC SOURCE_DIR}
inc="$src/core/include"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# compile NAME BODY: 0 when the caller builds under -Werror.
compile() {
    cat >"$tmp/$1.c" <<C
#include <stddef.h>
#include "dray/dray.h"
#include "dray/inspect.h"
int probe(dray_server *s, dray_job *j, dray_result *res, dray_api *a, dray_config *cfg);
int
probe(dray_server *s, dray_job *j, dray_result *res, dray_api *a, dray_config *cfg)
{
    dray_module_verdict v;
    dray_stats st;
    (void)s; (void)j; (void)res; (void)a; (void)cfg; (void)v; (void)st;
    $2
    return 0;
}
C
    "$cc" -std=c11 -Wall -Wextra -Werror -I"$inc" -c "$tmp/$1.c" -o "$tmp/$1.o" >"$tmp/$1.log" 2>&1
}

# A caller that checks everything builds: the probes below fail for their
# own reason, not a broken include path.
if ! compile ok 'if (dray_job_set(j, "k", NULL) || dray_server_on_error(s, NULL, NULL) ||
                    dray_server_on_death(s, NULL, NULL) || dray_server_wait(s, 0) ||
                    dray_server_statsd(s, "h:1", 0, NULL) || dray_result_backtrace_add(res, "l") ||
                    dray_server_check_module(s, "p", &v) || dray_server_check_modules(s, cfg, NULL, NULL) ||
                    dray_api_stats_get(a, &st)) return 1;'; then
    echo "FAIL: a caller that checks every result does not build:"
    cat "$tmp/ok.log"
    exit 1
fi

# must_refuse NAME WHAT BODY
must_refuse() {
    if compile "$1" "$3"; then
        echo "FAIL: $1: $2 compiles"
        fail=1
    elif ! grep -q -- "$4" "$tmp/$1.log"; then
        echo "FAIL: $1: refused, but not for $4:"
        cat "$tmp/$1.log"
        fail=1
    else
        echo "ok: $1 refused ($4)"
    fi
}
wur=unused-result
must_refuse job_set "ignoring dray_job_set" 'dray_job_set(j, "k", NULL);' $wur
must_refuse on_error "ignoring dray_server_on_error" 'dray_server_on_error(s, NULL, NULL);' $wur
must_refuse on_death "ignoring dray_server_on_death" 'dray_server_on_death(s, NULL, NULL);' $wur
must_refuse wait "ignoring dray_server_wait" 'dray_server_wait(s, 1);' $wur
must_refuse statsd "ignoring dray_server_statsd" 'dray_server_statsd(s, "h:1", 0, NULL);' $wur
must_refuse backtrace "ignoring dray_result_backtrace_add" 'dray_result_backtrace_add(res, "l");' $wur
must_refuse check_module "ignoring dray_server_check_module" 'dray_server_check_module(s, "p", &v);' $wur
must_refuse check_modules "ignoring dray_server_check_modules" 'dray_server_check_modules(s, cfg, NULL, NULL);' $wur
nn=nonnull
must_refuse api_null "a NULL api handle" 'if (dray_api_stats_get(NULL, &st)) return 1;' $nn
must_refuse stats_null "a NULL stats out" 'if (dray_api_stats_get(a, NULL)) return 1;' $nn
must_refuse server_null "a NULL server" 'dray_server_stop(NULL);' $nn
must_refuse job_null "a NULL job" 'return dray_job_class(NULL) != NULL;' $nn
must_refuse cfg_null "a NULL config" 'if (dray_config_load_file(NULL, "f")) return 1;' $nn

# Every int-returning public call is WUR unless it cannot fail.
cannot_fail='dray_job_retry_count|dray_result_fail|dray_result_defer|dray_job_cancelled|dray_config_get_all'
missing=$(cat "$inc/dray/dray.h" "$inc/dray/inspect.h" | tr '\n' ' ' | grep -o 'DRAY_API [^;(]*(' |
          grep -E '^DRAY_API int ' | grep -Ev "($cannot_fail)\(" || true)
if [ -n "$missing" ]; then
    echo "FAIL: int-returning public calls without DRAY_WUR (or list them as unable to fail):"
    echo "$missing"
    fail=1
fi
exit $fail
