#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-3.0-or-later
# Fails when a tracked C file differs from what clang-format makes of it under
# the tree's .clang-format. Fix with `./dev format`.
# usage: format_check.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: format_check.sh SOURCE_DIR}
cd "$src"
if ! command -v clang-format >/dev/null; then
    echo "SKIPPED: clang-format is not installed (./dev setup installs it)"
    exit 77
fi
# The tree is formatted with Debian 12's clang-format 14; other majors break
# lines differently, so only 14 may judge.
major=$(clang-format --version | sed -n 's/.*version \([0-9]*\).*/\1/p')
if [ "$major" != 14 ]; then
    echo "SKIPPED: clang-format $major; the tree's format is clang-format 14's"
    exit 77
fi
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
    files=$(git ls-files '*.c' '*.h')
else
    files=$(find core licensing pro enterprise examples tests bench -name '*.[ch]' 2>/dev/null)
fi
bad=0
for f in $files; do
    [ -f "$f" ] || continue
    if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f"
        bad=$((bad + 1))
    fi
done
n=$(echo "$files" | wc -w)
if [ "$bad" -gt 0 ]; then
    echo "FAIL: $bad of $n C files need clang-format (run ./dev format)"
    exit 1
fi
echo "ok: $n C files match .clang-format"
