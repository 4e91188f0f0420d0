# SPDX-License-Identifier: LicenseRef-dray-commercial
#
# dray Enterprise tests (label `module`; the cron unit test is `unit`),
# included by tests/CMakeLists.txt. They load dray-enterprise-test.so
# (enterprise/CMakeLists.txt: the throwaway test key table, ENT_TESTING)
# into real worker processes (tests/enterprise/ent_worker.c) against a
# private redis-server (tests/support), with license keys signed at test
# time by the build-time throwaway key.
#
#   test_ent_cron     cron parser, time zones against glibc, DST   (unit)
#   test_ent_config   license gating and configuration errors       (module)
#   test_ent_unique   unique jobs                                   (module)
#   test_ent_limit    rate limits, 4 worker processes               (module)
#   test_ent_periodic periodic jobs + leader election, 3 processes  (module)
#   test_ent_crypto   encrypted arguments                           (module)
#   test_ent_plain    a plain class costs no Redis with the module   (module)
#   test_ent_pro_push Pro + Enterprise: plain pushes skip the hooks  (module)
#   bench_ent         throughput figures (a program, not a test: bench/modules.sh)
if(NOT TARGET dray_enterprise_test)
  return()
endif()

set(_et ${CMAKE_CURRENT_LIST_DIR}/enterprise)

dray_add_test(test_ent_cron SOURCES ${_et}/test_ent_cron.c ${DRAY_ENT_SRC_DIR}/cron.c
              ${DRAY_ENT_SRC_DIR}/tz.c ${DRAY_ENT_SRC_DIR}/err.c LABELS unit TIMEOUT 120)
target_include_directories(test_ent_cron PRIVATE ${DRAY_ENT_SRC_DIR})

# The worker/pusher process the integration tests run (an application:
# links libdray and loads the module like `dray run --module` would).
add_executable(ent_worker ${_et}/ent_worker.c)
target_link_libraries(ent_worker PRIVATE dray PkgConfig::HIREDIS PkgConfig::JANSSON)
target_compile_definitions(ent_worker PRIVATE ENT_MODULE="$<TARGET_FILE:dray_enterprise_test>")
add_dependencies(ent_worker dray_enterprise_test)

add_library(ent_test_support STATIC ${_et}/ent_support.c ${PROJECT_SOURCE_DIR}/tests/support/shared_jobs.c)
target_include_directories(ent_test_support PUBLIC ${_et})
target_link_libraries(ent_test_support PUBLIC dray_test_support dray_license_vendor PkgConfig::CMOCKA
                      dray_license_testkeys PkgConfig::JANSSON PkgConfig::SODIUM)
target_compile_definitions(ent_test_support PRIVATE
  DRAY_TEST_LICENSE_KEY="${DRAY_LICENSE_TEST_KEY}"
  DRAY_TEST_LICENSE_PASSPHRASE="${DRAY_LICENSE_TEST_PASSPHRASE}"
  ENT_WORKER="$<TARGET_FILE:ent_worker>")
add_dependencies(ent_test_support dray_license_testkey ent_worker)

# dray_ent_test(NAME [TIMEOUT s]): tests/integration/NAME.c with the helpers.
function(dray_ent_test name)
  cmake_parse_arguments(E "" "TIMEOUT" "" ${ARGN})
  if(NOT E_TIMEOUT)
    set(E_TIMEOUT 300)
  endif()
  dray_add_test(${name} SOURCES ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/integration/${name}.c
                LABELS module TIMEOUT ${E_TIMEOUT} LIBS ent_test_support)
  target_compile_definitions(${name} PRIVATE ENT_MODULE="$<TARGET_FILE:dray_enterprise_test>")
  add_dependencies(${name} dray_enterprise_test ent_worker)
endfunction()

dray_ent_test(test_ent_config TIMEOUT 120)
if(TARGET mod_fetchy OR EXISTS ${CMAKE_CURRENT_LIST_DIR}/modules/fetchy.c)
  target_compile_definitions(test_ent_config PRIVATE MOD_FETCHY="$<TARGET_FILE:mod_fetchy>")
  add_dependencies(test_ent_config mod_fetchy)
endif()
dray_ent_test(test_ent_unique)
dray_ent_test(test_ent_limit)
dray_ent_test(test_ent_periodic)
dray_ent_test(test_ent_crypto)
dray_ent_test(test_ent_plain TIMEOUT 120)
# Pro and Enterprise together: pushes no hook wants stay on the core's path.
if(TARGET dray_pro_test AND TARGET dray_pro_batch)
  dray_ent_test(test_ent_pro_push TIMEOUT 120)
  target_link_libraries(test_ent_pro_push PRIVATE dray_pro_batch)
  target_compile_definitions(test_ent_pro_push PRIVATE PRO_MODULE="$<TARGET_FILE:dray_pro_test>")
  add_dependencies(test_ent_pro_push dray_pro_test)
endif()

# Throughput figures: not a test (it judges nothing); bench/modules.sh runs it.
add_executable(bench_ent ${_et}/bench_ent.c)
target_link_libraries(bench_ent PRIVATE dray ent_test_support PkgConfig::HIREDIS)
target_compile_definitions(bench_ent PRIVATE ENT_MODULE="$<TARGET_FILE:dray_enterprise_test>")
add_dependencies(bench_ent dray_enterprise_test)

# Producer instructions per plain-class push with no module, Pro, Enterprise
# or both (bench/push_modules.sh runs it under callgrind): not a test.
if(TARGET dray_pro_test)
  add_executable(bench_push_modules ${_et}/bench_push_modules.c)
  target_link_libraries(bench_push_modules PRIVATE dray ent_test_support PkgConfig::HIREDIS)
  target_compile_definitions(bench_push_modules PRIVATE
    ENT_MODULE="$<TARGET_FILE:dray_enterprise_test>" PRO_MODULE="$<TARGET_FILE:dray_pro_test>")
  add_dependencies(bench_push_modules dray_enterprise_test dray_pro_test)
endif()
