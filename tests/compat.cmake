# SPDX-License-Identifier: LGPL-3.0-or-later
#
# Sidekiq 7/8 compatibility (docs/sidekiq-compat.md), against a real
# redis-server: Sidekiq 8 payload fixtures (tests/fixtures/sidekiq8) with
# integer ms timestamps, the timestamps = ms writer, retry_for, backoff
# discard/kill, error_backtrace, the process record, the CLI's time columns.
dray_add_test(test_compat SOURCES integration/test_compat.c LABELS integration)
target_compile_definitions(test_compat PRIVATE DRAY_CLI_PATH="$<TARGET_FILE:dray_cli>")
add_dependencies(test_compat dray_cli)
