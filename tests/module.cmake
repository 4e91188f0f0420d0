# SPDX-License-Identifier: LGPL-3.0-or-later
#
# Module ABI and loader tests (label `module`), included by tests/CMakeLists.txt.
# Fixture modules live in tests/modules/ and are built here with
# dray_add_module (cmake/DrayModule.cmake) against the throwaway test key
# table, into <build>/tests/modules/:
#
#   record.so                every hook point, recorded in Redis
#   fetchy.so, fetchy2.so    fetch providers (two, to collide)
#   wants.so                 push hooks with and without push_wants (ABI 1.2)
#   misfit_<case>.so         modules the loader must refuse
#   lic_pro.so, lic_ent.so   license-gated (pro / enterprise tier)
#   noentry.so, leaky_*.so   not built with dray_add_module: a shared object
#                            without the entry symbol, and nm-check negatives
#
#   test_module          hooks, fetch provider, refusals     (cmocka, real Redis)
#   test_module_wants    push_wants: unwanted pushes skip the chain (cmocka, real Redis)
#   test_module_license  license gating and check mode       (cmocka, real Redis)
#   module_nm            nm check of every dray_add_module target
#   module_nm_catches_*  the nm check itself fails on a bad module
if(NOT COMMAND dray_add_module OR NOT TARGET dray_licensing)
  return()
endif()

set(_mt ${CMAKE_CURRENT_LIST_DIR}/modules)
set(_mt_out ${CMAKE_CURRENT_BINARY_DIR}/modules)

dray_add_module(mod_record SOURCES ${_mt}/record.c TEST_KEYS OUTPUT_NAME record)
dray_add_module(mod_fetchy SOURCES ${_mt}/fetchy.c TEST_KEYS OUTPUT_NAME fetchy)
dray_add_module(mod_wants SOURCES ${_mt}/wants.c TEST_KEYS OUTPUT_NAME wants)
dray_add_module(mod_fetchy2 SOURCES ${_mt}/fetchy.c TEST_KEYS OUTPUT_NAME fetchy2)
target_compile_definitions(mod_fetchy2 PRIVATE FETCHY_NAME="fetchy2")
set(_fixtures mod_record mod_fetchy mod_fetchy2 mod_wants)

set(_misfits newer_minor newer_major badsig initfail nofill badhook requires)
foreach(m IN LISTS _misfits)
  string(TOUPPER ${m} M)
  dray_add_module(mod_misfit_${m} SOURCES ${_mt}/misfit.c TEST_KEYS OUTPUT_NAME misfit_${m})
  target_compile_definitions(mod_misfit_${m} PRIVATE MISFIT_${M} MISFIT_NAME="misfit_${m}")
  list(APPEND _fixtures mod_misfit_${m})
endforeach()

foreach(t pro ent)
  dray_add_module(mod_lic_${t} SOURCES ${_mt}/licensed.c TEST_KEYS OUTPUT_NAME lic_${t})
  list(APPEND _fixtures mod_lic_${t})
endforeach()
target_compile_definitions(mod_lic_pro PRIVATE LICENSED_NAME="lic_pro"
                           LICENSED_TIER=DRAY_LICENSE_TIER_PRO)
target_compile_definitions(mod_lic_ent PRIVATE LICENSED_NAME="lic_ent"
                           LICENSED_TIER=DRAY_LICENSE_TIER_ENTERPRISE)

# Not dray_add_module targets: shapes the loader and the nm check must refuse.
add_library(mod_noentry MODULE ${_mt}/noentry.c)
foreach(v export undefined)
  string(TOUPPER ${v} V)
  add_library(mod_leaky_${v} MODULE ${_mt}/leaky.c)
  target_include_directories(mod_leaky_${v} PRIVATE ${PROJECT_SOURCE_DIR}/core/include)
  target_link_libraries(mod_leaky_${v} PRIVATE PkgConfig::HIREDIS PkgConfig::JANSSON)
  target_compile_definitions(mod_leaky_${v} PRIVATE LEAKY_${V})
  list(APPEND _fixtures mod_leaky_${v})
endforeach()
list(APPEND _fixtures mod_noentry)
foreach(t IN LISTS _fixtures)
  set_target_properties(${t} PROPERTIES PREFIX "" LIBRARY_OUTPUT_DIRECTORY ${_mt_out})
endforeach()
set_target_properties(mod_noentry PROPERTIES OUTPUT_NAME noentry)
set_target_properties(mod_leaky_export PROPERTIES OUTPUT_NAME leaky_export)
set_target_properties(mod_leaky_undefined PROPERTIES OUTPUT_NAME leaky_undefined)

# Each test sees the fixtures it loads as MOD_<NAME>="<path>".
function(_dray_module_paths test)
  foreach(t ${ARGN})
    string(REGEX REPLACE "^mod_" "" n ${t})
    string(TOUPPER ${n} N)
    target_compile_definitions(${test} PRIVATE MOD_${N}="$<TARGET_FILE:${t}>")
    add_dependencies(${test} ${t})
  endforeach()
endfunction()

dray_add_test(test_module SOURCES integration/test_module.c LABELS module TIMEOUT 300)
_dray_module_paths(test_module mod_record mod_fetchy mod_fetchy2 mod_noentry
                   mod_misfit_newer_minor mod_misfit_newer_major mod_misfit_badsig
                   mod_misfit_initfail mod_misfit_nofill mod_misfit_badhook mod_misfit_requires)

dray_add_test(test_module_wants SOURCES integration/test_module_wants.c LABELS module TIMEOUT 120)
_dray_module_paths(test_module_wants mod_wants)

dray_add_test(test_module_license SOURCES integration/test_module_license.c LABELS module
              TIMEOUT 120 LIBS dray_license_vendor dray_license_testkeys)
_dray_module_paths(test_module_license mod_lic_pro mod_lic_ent)
target_compile_definitions(test_module_license PRIVATE
  DRAY_TEST_LICENSE_KEY="${DRAY_LICENSE_TEST_KEY}"
  DRAY_TEST_LICENSE_PASSPHRASE="${DRAY_LICENSE_TEST_PASSPHRASE}"
  DRAY_TEST_REVOKED_LID="${DRAY_LICENSE_TEST_REVOKED_LID}")
add_dependencies(test_module_license dray_license_testkey)

# nm: every module built with dray_add_module (fixtures here, and pro/ and
# enterprise/ when they exist) exports only dray_module_init and binds no
# dray_* symbol.
get_property(_dray_mods GLOBAL PROPERTY DRAY_MODULE_TARGETS)
set(_nm_files)
foreach(t IN LISTS _dray_mods)
  list(APPEND _nm_files $<TARGET_FILE:${t}>)
endforeach()
add_test(NAME module_nm COMMAND sh ${_mt}/nm_check.sh ${_nm_files})
set_tests_properties(module_nm PROPERTIES LABELS module TIMEOUT 60)
# ... and the check can fail: a second export, an undefined dray_* symbol.
add_test(NAME module_nm_catches_export
         COMMAND sh ${_mt}/nm_check.sh $<TARGET_FILE:mod_leaky_export>)
set_tests_properties(module_nm_catches_export PROPERTIES LABELS module TIMEOUT 60
  PASS_REGULAR_EXPRESSION "FAIL [^\n]*leaky_export[^\n]*: exports [^\n]*leaky_extra_symbol")
add_test(NAME module_nm_catches_undefined
         COMMAND sh ${_mt}/nm_check.sh $<TARGET_FILE:mod_leaky_undefined>)
set_tests_properties(module_nm_catches_undefined PROPERTIES LABELS module TIMEOUT 60
  PASS_REGULAR_EXPRESSION "FAIL [^\n]*leaky_undefined[^\n]*: binds core symbols dray_job_class")
