# SPDX-License-Identifier: LGPL-3.0-or-later
# Paused queues (core/src/pause.c): never fetched while paused, through
# heartbeats, a batched fetch, a Redis restart and a bad `paused` key;
# resume runs each job once. The browser side is in tests/web.cmake.
dray_add_test(test_pause SOURCES integration/test_pause.c LABELS integration TIMEOUT 120)
