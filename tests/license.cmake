# SPDX-License-Identifier: LicenseRef-dray-commercial
#
# License-key tests, included by tests/CMakeLists.txt. They link only the
# licensing libraries (never the core) and the throwaway test key table
# (licensing/CMakeLists.txt documents the targets and variables used here).
#
#   test_license         cmocka unit test                      label unit
#   test_license_cli     dray-license end to end (sh)          label unit
#   test_license_guard   release tables refuse the test key    label unit
#   fuzz_license_corpus  fuzz target over the seed corpus      label fuzz
#   fuzz_license         libFuzzer binary (clang, DRAY_FUZZ=ON; not a ctest):
#                        tests/fuzz/run-license-fuzz.sh BUILD_DIR SECONDS
if(NOT TARGET dray_licensing)
  return()
endif()
if(NOT TARGET PkgConfig::CMOCKA)
  pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
endif()
option(DRAY_FUZZ "Build libFuzzer targets (clang only)" OFF)

set(_lic_tests ${CMAKE_CURRENT_LIST_DIR})

add_executable(test_license ${_lic_tests}/unit/test_license.c)
target_link_libraries(test_license PRIVATE dray_license_vendor dray_license_testkeys
                      PkgConfig::CMOCKA)
target_compile_definitions(test_license PRIVATE
  DRAY_TEST_LICENSE_KEY="${DRAY_LICENSE_TEST_KEY}"
  DRAY_TEST_LICENSE_PUB="${DRAY_LICENSE_TEST_PUB}"
  DRAY_TEST_LICENSE_PASSPHRASE="${DRAY_LICENSE_TEST_PASSPHRASE}"
  DRAY_TEST_REVOKED_LID="${DRAY_LICENSE_TEST_REVOKED_LID}")
add_dependencies(test_license dray_license_testkey)
add_test(NAME test_license COMMAND test_license)
set_tests_properties(test_license PROPERTIES LABELS unit TIMEOUT 120 SKIP_RETURN_CODE 77
                     ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout")

add_test(NAME test_license_cli
         COMMAND sh ${_lic_tests}/unit/test_license_cli.sh $<TARGET_FILE:dray-license>)
set_tests_properties(test_license_cli PROPERTIES LABELS unit TIMEOUT 300)

# The configure/build guard against trusting the throwaway key in a release
# table: a scratch configure of this source tree, building key tables only.
add_test(NAME test_license_guard
         COMMAND sh ${_lic_tests}/unit/test_license_guard.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(test_license_guard PROPERTIES LABELS unit TIMEOUT 600)

# The fuzz target as a plain program over the committed seed corpus.
add_executable(fuzz_license_regress ${_lic_tests}/fuzz/fuzz_license.c)
target_link_libraries(fuzz_license_regress PRIVATE dray_license_vendor dray_license_testkeys)
add_test(NAME fuzz_license_corpus
         COMMAND fuzz_license_regress ${_lic_tests}/fuzz/corpus/license)
set_tests_properties(fuzz_license_corpus PROPERTIES LABELS fuzz TIMEOUT 120)

# libFuzzer build: library sources compiled into the target so they carry
# coverage instrumentation.
if(DRAY_FUZZ)
  if(CMAKE_C_COMPILER_ID MATCHES "Clang")
    get_target_property(_lic_src dray_licensing SOURCE_DIR)
    add_executable(fuzz_license ${_lic_tests}/fuzz/fuzz_license.c
                   ${_lic_src}/src/license.c ${_lic_src}/src/message.c ${_lic_src}/src/keyfile.c
                   $<TARGET_OBJECTS:dray_license_testkeys>)
    target_include_directories(fuzz_license PRIVATE ${_lic_src}/include ${_lic_src}/src)
    target_link_libraries(fuzz_license PRIVATE PkgConfig::SODIUM PkgConfig::JANSSON)
    target_compile_definitions(fuzz_license PRIVATE DRAY_LIBFUZZER)
    target_compile_options(fuzz_license PRIVATE -fsanitize=fuzzer,address -fno-omit-frame-pointer)
    target_link_options(fuzz_license PRIVATE -fsanitize=fuzzer,address)
    set_target_properties(fuzz_license PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  else()
    message(STATUS "DRAY_FUZZ: ${CMAKE_C_COMPILER_ID} has no libFuzzer; fuzz_license not built "
                   "(configure with CC=clang)")
  endif()
endif()
