# SPDX-License-Identifier: LGPL-3.0-or-later
# Paused queues (core/src/pause.c): never fetched while paused, through
# heartbeats, a batched fetch, a Redis restart and a bad `paused` key;
# resume runs each job once. The browser side is in tests/web.cmake.
dray_add_test(test_pause SOURCES integration/test_pause.c LABELS integration TIMEOUT 120)
add_test(NAME pause_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/pause_cli.sh ${PROJECT_BINARY_DIR})
set_tests_properties(pause_cli PROPERTIES LABELS "integration;cli" TIMEOUT 60)
