#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# Usage: nm_check.sh MODULE.so...
# Each dray module must export exactly one dynamic symbol, dray_module_init,
# and leave no dray_* symbol undefined (it may not bind libdray: it reaches
# the core only through module.h's host table), and import no libsodium
# symbol nor need libsodium.so (verification linked in statically and hidden,
# so an LD_PRELOAD cannot replace it). Exit 1 naming every offence.
set -u
status=0
if [ $# -eq 0 ]; then
    echo "nm_check.sh: no modules given" >&2
    exit 2
fi
for so in "$@"; do
    bad=0
    if [ ! -f "$so" ]; then
        echo "FAIL $so: no such file"
        status=1
        continue
    fi
    # Defined dynamic symbols, minus the ones every ELF object has.
    defined=$(nm -D --defined-only "$so" | awk '{print $NF}' |
        grep -v -x -e '_init' -e '_fini' -e '__bss_start' -e '_edata' -e '_end' | sort -u)
    if [ "$defined" != "dray_module_init" ]; then
        echo "FAIL $so: exports" $(echo "$defined" | tr '\n' ' ') "(want only dray_module_init)"
        bad=1
    fi
    undefined=$(nm -D --undefined-only "$so" | awk '{print $NF}' | grep -E '^_?dray_' | sort -u)
    if [ -n "$undefined" ]; then
        echo "FAIL $so: binds core symbols" $(echo "$undefined" | tr '\n' ' ')
        bad=1
    fi
    crypto=$(nm -D --undefined-only "$so" | awk '{print $NF}' |
        grep -E '^_?(crypto_|sodium_|randombytes_)' | sort -u)
    if [ -n "$crypto" ]; then
        echo "FAIL $so: resolves libsodium symbols at run time" $(echo "$crypto" | tr '\n' ' ')
        bad=1
    fi
    if objdump -p "$so" | awk '$1 == "NEEDED" {print $2}' | grep -q '^libsodium'; then
        echo "FAIL $so: needs a shared libsodium"
        bad=1
    fi
    if [ $bad -eq 0 ]; then
        echo "ok   $so"
    else
        status=1
    fi
done
exit $status
