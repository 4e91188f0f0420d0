# SPDX-License-Identifier: LGPL-3.0-or-later
# Install, documentation and Debian package tests (README "Building by hand",
# "Installing the Debian packages"). Each installs into a temporary prefix or
# (packaging_deb, root only) onto this machine, and uses only installed files.
# Not in sanitizer builds: programs they compile against the installed
# library would need the sanitizer runtime first.
# dray run's sd_notify (dray@.service is Type=notify): runs in every build.
add_test(NAME run_sd_notify COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sd_notify.sh ${PROJECT_BINARY_DIR})
set_tests_properties(run_sd_notify PROPERTIES LABELS "integration;packaging" TIMEOUT 120 SKIP_RETURN_CODE 77)
if(NOT DRAY_SANITIZE STREQUAL "")
  return()
endif()
add_test(NAME packaging_install COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/packaging.sh ${PROJECT_BINARY_DIR})
add_test(NAME packaging_docs COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/packaging_docs.sh ${PROJECT_BINARY_DIR})
set_tests_properties(packaging_install packaging_docs PROPERTIES LABELS packaging TIMEOUT 120
                     SKIP_RETURN_CODE 77)
# Builds the tree once more for /usr (no tests), then cpack, lintian, dpkg
# (about 60 s on 2 cores). Needs both modules: dray-pro and dray-enterprise
# are two of the five packages.
if(TARGET dray_pro AND TARGET dray_enterprise AND TARGET dray-license)
  add_test(NAME packaging_deb COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/packaging_deb.sh ${PROJECT_BINARY_DIR})
  set_tests_properties(packaging_deb PROPERTIES LABELS packaging TIMEOUT 600 SKIP_RETURN_CODE 77
                       RUN_SERIAL ON)
endif()
