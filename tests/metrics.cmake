# SPDX-License-Identifier: LGPL-3.0-or-later
# Execution metrics (core/src/metrics.c): Sidekiq's buckets, the flush through
# a dead Redis and a stalled one. Sidekiq 7.3.9 reading them:
# tests/interop (test_interop_metrics_sk7).
dray_add_test(test_metrics SOURCES integration/test_metrics.c LABELS integration TIMEOUT 60)
