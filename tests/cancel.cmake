# SPDX-License-Identifier: LGPL-3.0-or-later
# dray cancel / dray_api_cancel (issue 14): queued, scheduled, retry and
# running jobs, thread mode and --processes, and the fetch race.
if(TARGET dray_cli)
  add_library(test_cancel_jobs MODULE integration/test_cancel_jobs.c)
  target_link_libraries(test_cancel_jobs PRIVATE dray)
  dray_add_test(test_cancel SOURCES integration/test_cancel.c LABELS integration TIMEOUT 300)
  add_dependencies(test_cancel dray_cli test_cancel_jobs)
  target_compile_definitions(test_cancel PRIVATE
    DRAY_CLI_PATH="$<TARGET_FILE:dray_cli>"
    DRAY_CANCEL_JOBS="$<TARGET_FILE:test_cancel_jobs>")
endif()
