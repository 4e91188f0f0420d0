# SPDX-License-Identifier: LGPL-3.0-or-later
# dray run --processes / --isolate: crash isolation, timeouts (issue 14).
# The sanitizers must leave SIGSEGV/SIGABRT to dray's handler in the children.
if(TARGET dray_cli)
  add_library(test_supervisor_jobs MODULE integration/test_supervisor_jobs.c)
  target_link_libraries(test_supervisor_jobs PRIVATE dray)
  dray_add_test(test_supervisor SOURCES integration/test_supervisor.c LABELS integration
                TIMEOUT 300
                ENV "ASAN_OPTIONS=handle_segv=0:handle_abort=0"
                    "UBSAN_OPTIONS=handle_segv=0:handle_abort=0"
                    "TSAN_OPTIONS=handle_segv=0:handle_abort=0")
  add_dependencies(test_supervisor dray_cli test_supervisor_jobs)
  target_compile_definitions(test_supervisor PRIVATE
    DRAY_CLI_PATH="$<TARGET_FILE:dray_cli>"
    DRAY_SUP_JOBS="$<TARGET_FILE:test_supervisor_jobs>")
endif()
