# SPDX-License-Identifier: LGPL-3.0-or-later
#
# Sidekiq 7/8 compatibility (docs/sidekiq-compat.md), against a real
# redis-server: Sidekiq 8 payload fixtures (tests/fixtures/sidekiq8) with
# integer ms timestamps, the timestamps = ms writer, retry_for, backoff
# discard/kill, error_backtrace, the process record, the CLI's time columns.
dray_add_test(test_compat SOURCES integration/test_compat.c LABELS integration)
target_compile_definitions(test_compat PRIVATE DRAY_CLI_PATH="$<TARGET_FILE:dray_cli>")
add_dependencies(test_compat dray_cli)

# Real Sidekiq reads dray's process record and error_backtrace: Debian's
# 6.4.1, and 7.3.9 where DRAY_SIDEKIQ7_ENV names sidekiq7.env (else Skipped).
find_program(DRAY_COMPAT_RUBY ruby)
if(NOT DRAY_COMPAT_RUBY)
  set(DRAY_COMPAT_RUBY ruby)
endif()
dray_add_test(test_interop_compat SOURCES interop/test_interop_compat.c LABELS interop)
target_compile_definitions(test_interop_compat PRIVATE DRAY_RUBY="${DRAY_COMPAT_RUBY}"
                           DRAY_INTEROP_DIR="${CMAKE_CURRENT_LIST_DIR}/interop")
add_test(NAME test_interop_compat7 COMMAND test_interop_compat 7)
set_tests_properties(test_interop_compat7 PROPERTIES LABELS interop TIMEOUT 120 SKIP_RETURN_CODE 77
                     ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout")
