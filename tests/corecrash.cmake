# SPDX-License-Identifier: LGPL-3.0-or-later
# Core "never lose a job" tests (basic fetch stalls, fatal signals, malformed
# payloads, last-resort payload logs). The crash test needs the sanitizers
# to leave SIGSEGV/SIGABRT to dray's handler, which then re-raises them.
dray_add_test(test_core_crash SOURCES integration/test_core_crash.c LABELS integration TIMEOUT 180
              ENV "ASAN_OPTIONS=handle_segv=0:handle_abort=0"
                  "UBSAN_OPTIONS=handle_segv=0:handle_abort=0"
                  "TSAN_OPTIONS=handle_segv=0:handle_abort=0")
