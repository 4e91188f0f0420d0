# SPDX-License-Identifier: LGPL-3.0-or-later
# Lifecycle: graceful stop and requeue, Redis down at shutdown, freeing a
# server with handlers still running, retry_count extremes.
dray_add_test(test_lifecycle SOURCES integration/test_lifecycle.c LABELS integration TIMEOUT 300)

