# SPDX-License-Identifier: LGPL-3.0-or-later
# dray web (core/cli/web.c): the dashboard in headless Chromium (Debian's
# chromium + python3-websocket, driven by tests/interop/webui_driver.py) and
# /metrics read by python3-prometheus-client's parser. Each test starts its
# own redis-server, `dray web` and `dray run`; Skipped (77) when chromium or
# the parser is missing.
if(TARGET dray_cli)
  find_program(DRAY_WEB_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(NOT DRAY_WEB_PYTHON3)
    set(DRAY_WEB_PYTHON3 python3)
  endif()
  add_library(test_web_jobs MODULE ${CMAKE_CURRENT_LIST_DIR}/web/web_jobs.c)
  target_link_libraries(test_web_jobs PRIVATE dray)
  foreach(part browser metrics logs statsd procmetrics)
    add_test(NAME test_web_${part}
             COMMAND ${DRAY_WEB_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/web/test_web.py ${part}
                     $<TARGET_FILE:dray_cli> $<TARGET_FILE:test_web_jobs>
                     ${CMAKE_CURRENT_BINARY_DIR}/web-shots)
    set_tests_properties(test_web_${part} PROPERTIES LABELS "integration;web" TIMEOUT 240
                         SKIP_RETURN_CODE 77)
  endforeach()
endif()
# The paid modules' pages: the real modules (with a license issued by the
# build's throwaway key) write the data the pages and /metrics show.
if(TARGET dray_cli AND TARGET dray-license AND TARGET dray_pro_test AND TARGET dray_enterprise_test)
  add_test(NAME test_web_modules
           COMMAND ${DRAY_WEB_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/web/test_web.py modules
                   $<TARGET_FILE:dray_cli> $<TARGET_FILE:test_web_jobs>
                   ${CMAKE_CURRENT_BINARY_DIR}/web-shots $<TARGET_FILE:dray-license>
                   ${DRAY_LICENSE_TEST_KEY} $<TARGET_FILE:dray_pro_test>
                   $<TARGET_FILE:dray_enterprise_test>)
  set_tests_properties(test_web_modules PROPERTIES LABELS "integration;web;module" TIMEOUT 240
                       SKIP_RETURN_CODE 77
                       ENVIRONMENT "DRAY_LICENSE_PASSPHRASE=${DRAY_LICENSE_TEST_PASSPHRASE}")
endif()
