# SPDX-License-Identifier: LGPL-3.0-or-later
# dray run --processes with Pro's reliable fetch (issue 14). After pro.cmake
# (files are included in name order): needs its test support and module.
if(TARGET dray_cli AND TARGET pro_test_support AND TARGET test_cancel_jobs)
  dray_add_test(test_sup_pro SOURCES integration/test_sup_pro.c LABELS "integration;module"
                TIMEOUT 300 LIBS pro_test_support
                ENV "ASAN_OPTIONS=handle_segv=0:handle_abort=0"
                    "UBSAN_OPTIONS=handle_segv=0:handle_abort=0"
                    "TSAN_OPTIONS=handle_segv=0:handle_abort=0")
  add_dependencies(test_sup_pro dray_cli test_cancel_jobs dray_pro_test)
  target_compile_definitions(test_sup_pro PRIVATE
    DRAY_CLI_PATH="$<TARGET_FILE:dray_cli>"
    DRAY_CANCEL_JOBS="$<TARGET_FILE:test_cancel_jobs>")
endif()
