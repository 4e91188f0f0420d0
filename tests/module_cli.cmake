# SPDX-License-Identifier: LGPL-3.0-or-later
# dray license check against the license-gated fixture modules (tests/module.cmake).
if(TARGET mod_lic_pro AND TARGET mod_lic_ent AND TARGET dray-license AND TARGET dray_cli)
  add_test(NAME test_cli_license
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_cli_license.sh
                   $<TARGET_FILE:dray_cli> $<TARGET_FILE:dray-license> ${DRAY_LICENSE_TEST_KEY}
                   $<TARGET_FILE:mod_lic_pro> $<TARGET_FILE:mod_lic_ent>)
  set_tests_properties(test_cli_license PROPERTIES LABELS "module;integration" TIMEOUT 120)
endif()
