# SPDX-License-Identifier: LGPL-3.0-or-later
# This process's figures (core/src/procmetrics.c, dray run --metrics-listen):
# bounded under endless class names, hostile names escaped. Over HTTP with
# the Prometheus parser: tests/web.cmake (test_web_procmetrics).
dray_add_test(test_procmetrics SOURCES integration/test_procmetrics.c LABELS unit TIMEOUT 60)
