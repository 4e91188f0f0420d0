# SPDX-License-Identifier: LGPL-3.0-or-later
# Inspection API, configuration files and the dray command.
dray_add_test(test_config SOURCES unit/test_config.c LABELS unit)
dray_add_test(test_api SOURCES integration/test_api.c LABELS integration TIMEOUT 180)

# The CLI test runs the built `dray` binary against its own redis-server;
# test_cli_jobs is the handler library it loads with --require.
if(TARGET dray_cli)
  add_library(test_cli_jobs MODULE integration/test_cli_jobs.c)
  target_link_libraries(test_cli_jobs PRIVATE dray)
  dray_add_test(test_cli SOURCES integration/test_cli.c LABELS integration TIMEOUT 240)
  add_dependencies(test_cli dray_cli test_cli_jobs)
  target_compile_definitions(test_cli PRIVATE
    DRAY_CLI_PATH="$<TARGET_FILE:dray_cli>"
    DRAY_CLI_JOBS="$<TARGET_FILE:test_cli_jobs>")
endif()

# dray limits / periodic / unique over Enterprise keys (no module needed).
add_test(NAME test_cli_ent COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_cli_ent.sh
         $<TARGET_FILE:dray_cli>)
set_tests_properties(test_cli_ent PROPERTIES LABELS integration TIMEOUT 60)
