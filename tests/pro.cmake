# SPDX-License-Identifier: LicenseRef-dray-commercial
#
# dray Pro tests (label `module`; the long chaos runs also `chaos`),
# included by tests/CMakeLists.txt. They load dray-pro-test.so (the
# throwaway test key table) into worker processes (tests/pro/worker.c) and
# a producer in the test process, against a redis-server each test starts.
#
#   test_pro_module       license gating, settings, eviction warning, `dray run`
#   test_pro_fetch        reliable fetch: ack, requeue on stop, orphan recovery, poison pill
#   test_pro_fetch_chaos  N jobs, kill -9 of workers + restarts   (PRO_CHAOS_JOBS, PRO_CHAOS_KILLS)
#   test_pro_orphans      recovery with default liveness settings, no restarts, < 90 s
#   test_pro_stall        N jobs while redis-server stalls (SIGSTOP, DEBUG SLEEP) 1-8 s: 0 lost
#   test_pro_sentinel     reliable fetch through Sentinel: failover + kill mid-backlog, plain and TLS: 0 lost
#   test_pro_liveness     live processes, slow jobs, smallest orphan_after: 0 recoveries
#   test_pro_batch        complete / success / death, nesting, reopen, errors, TTLs
#   test_pro_batch_chaos  a 10,000-job batch under kill -9: each callback once
#   test_pro_expiry       expired jobs dropped, counted, batch success
#   test_pro_webhook      HTTP receiver on 127.0.0.1: body, signature, 500 retry, restart
#   pro_bench             reliable vs basic fetch, batch overhead (program: bench/modules.sh)
if(NOT TARGET dray_pro_test OR NOT TARGET dray_pro_batch)
  return()
endif()

set(_pt ${CMAKE_CURRENT_LIST_DIR}/pro)
set(_pro_logs ${CMAKE_CURRENT_BINARY_DIR}/pro-logs)
file(MAKE_DIRECTORY ${_pro_logs})

add_executable(pro_worker ${_pt}/worker.c)
target_link_libraries(pro_worker PRIVATE dray dray_pro_batch Threads::Threads)

add_library(pro_test_support STATIC ${_pt}/pro_test.c ${PROJECT_SOURCE_DIR}/tests/support/shared_jobs.c)
target_include_directories(pro_test_support PUBLIC ${_pt})
target_link_libraries(pro_test_support PUBLIC dray_static dray_test_support dray_license_vendor
                      dray_license_testkeys PkgConfig::JANSSON PkgConfig::SODIUM)
target_include_directories(pro_test_support PUBLIC ${PROJECT_SOURCE_DIR}/core/include)
target_compile_definitions(pro_test_support PUBLIC
  PRO_MODULE="$<TARGET_FILE:dray_pro_test>"
  PRO_WORKER="$<TARGET_FILE:pro_worker>"
  PRO_LOG_DIR="${_pro_logs}"
  DRAY_TEST_LICENSE_KEY="${DRAY_LICENSE_TEST_KEY}"
  DRAY_TEST_LICENSE_PASSPHRASE="${DRAY_LICENSE_TEST_PASSPHRASE}")
add_dependencies(pro_test_support dray_license_testkey dray_pro_test pro_worker)

function(_dray_pro_test name timeout labels)
  if(NOT EXISTS ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/integration/${name}.c)
    return()
  endif()
  dray_add_test(${name} SOURCES integration/${name}.c LABELS ${labels} TIMEOUT ${timeout}
                LIBS dray_pro_batch pro_test_support)
  add_dependencies(${name} dray_pro_test pro_worker)
endfunction()

_dray_pro_test(test_pro_module 120 module)
_dray_pro_test(test_pro_fetch 300 module)
_dray_pro_test(test_pro_pause 120 module)
_dray_pro_test(test_pro_fetch_chaos 300 "module;chaos")
_dray_pro_test(test_pro_orphans 300 "module;chaos")
_dray_pro_test(test_pro_stall 300 "module;chaos")
_dray_pro_test(test_pro_sentinel 300 "module;sentinel")
if(TARGET test_pro_sentinel)
  add_test(NAME test_pro_sentinel_tls COMMAND test_pro_sentinel tls)
  set_tests_properties(test_pro_sentinel_tls PROPERTIES LABELS "module;sentinel;tls" TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endif()
_dray_pro_test(test_pro_liveness 180 "module;chaos")
_dray_pro_test(test_pro_batch 180 module)
_dray_pro_test(test_pro_batch_chaos 300 "module;chaos")
_dray_pro_test(test_pro_expiry 120 module)
_dray_pro_test(test_pro_webhook 180 module)
if(TARGET dray-batch AND TARGET test_pro_batch)
  target_compile_definitions(test_pro_batch PRIVATE DRAY_BATCH_TOOL="$<TARGET_FILE:dray-batch>")
  add_dependencies(test_pro_batch dray-batch)
  if(TARGET dray_cli)
    target_compile_definitions(test_pro_batch PRIVATE DRAY_CLI="$<TARGET_FILE:dray_cli>")
    add_dependencies(test_pro_batch dray_cli)
  endif()
endif()
if(TARGET dray_cli AND TARGET test_pro_module)
  target_compile_definitions(test_pro_module PRIVATE DRAY_CLI="$<TARGET_FILE:dray_cli>")
  add_dependencies(test_pro_module dray_cli)
endif()

if(EXISTS ${_pt}/bench_pro.c)
  add_executable(pro_bench ${_pt}/bench_pro.c)
  target_link_libraries(pro_bench PRIVATE dray_pro_batch pro_test_support Threads::Threads)
  # Not a test (it judges nothing): bench/modules.sh runs it and prints figures.
endif()
