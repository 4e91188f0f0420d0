# SPDX-License-Identifier: LGPL-3.0-or-later
# dray license check against the license-gated fixture modules (tests/module.cmake).
if(TARGET mod_lic_pro AND TARGET mod_lic_ent AND TARGET dray-license AND TARGET dray_cli)
  # An LD_PRELOAD library whose crypto_sign_verify_detached accepts anything:
  # the run-time swap a statically linked, hidden libsodium defeats.
  add_library(fake_sodium_verify SHARED ${CMAKE_CURRENT_SOURCE_DIR}/modules/fake_verify.c)
  set(_cli_lic_real)
  if(TARGET dray_pro_test AND TARGET dray_enterprise_test)
    set(_cli_lic_real $<TARGET_FILE:dray_pro_test> $<TARGET_FILE:dray_enterprise_test>)
  endif()
  add_test(NAME test_cli_license
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_cli_license.sh
                   $<TARGET_FILE:dray_cli> $<TARGET_FILE:dray-license> ${DRAY_LICENSE_TEST_KEY}
                   $<TARGET_FILE:mod_lic_pro> $<TARGET_FILE:mod_lic_ent>
                   $<TARGET_FILE:fake_sodium_verify> ${_cli_lic_real})
  set_tests_properties(test_cli_license PROPERTIES LABELS "module;integration" TIMEOUT 120)
  # A release build as the vendor makes it: a vendor keypair made at test
  # time, a scratch build with DRAY_LICENSE_PUBKEYS, the licensing checks
  # against its real modules (tests/release_build.sh). The scratch build is
  # never sanitized, so sanitizer builds do not repeat it.
  if(NOT DRAY_SANITIZE)
    add_test(NAME test_release_build
             COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/release_build.sh ${PROJECT_SOURCE_DIR}
                     $<TARGET_FILE:dray-license> ${DRAY_LICENSE_TEST_KEY}
                     ${DRAY_LICENSE_TEST_PASSPHRASE})
    set_tests_properties(test_release_build PROPERTIES LABELS "module;release" TIMEOUT 600
                         SKIP_RETURN_CODE 77)
  endif()
endif()

# dray push loads modules (config, --module, $DRAY_MODULES): encryption
# seals CLI pushes.
if(TARGET dray_enterprise_test AND TARGET dray-license AND TARGET dray_cli)
  add_test(NAME test_cli_push_modules
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_cli_push_modules.sh
                   $<TARGET_FILE:dray_cli> $<TARGET_FILE:dray-license> ${DRAY_LICENSE_TEST_KEY}
                   $<TARGET_FILE:dray_enterprise_test>)
  set_tests_properties(test_cli_push_modules PROPERTIES LABELS "module;integration" TIMEOUT 120)
endif()
