# SPDX-License-Identifier: LGPL-3.0-or-later
#
# What the Debian packages add to `cmake --install` (man pages, the systemd
# unit, docs), and the CPack setup that splits the install into .debs:
#
#   component   package          contents
#   libs        libdray0         libdray.so.0
#   dev         libdray-dev      headers, libdray.a, libdray.so, dray.pc, CMake package
#   cli         dray             dray, man pages, dray@.service, docs, the demo
#   pro         dray-pro         dray-pro.so, dray-batch, the batch API (commercial)
#   enterprise  dray-enterprise  dray-enterprise.so (commercial)
#
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DDRAY_TESTS=OFF \
#         -DDRAY_LICENSE_PUBKEYS=/path/vendor.pub
#   cmake --build build-deb && (cd build-deb && cpack -G DEB)
#
# Depends on Debian's libraries come from dpkg-shlibdeps; libdray0 itself is
# named explicitly (it is not installed while the packages are built).
# tests/packaging_deb.sh builds, lints, installs and runs them.
include_guard(GLOBAL)

# ---- files the packages carry besides the targets ---------------------------
set(_dray_src ${PROJECT_SOURCE_DIR})
# Man pages are installed gzipped (-n: no timestamp, reproducible), as Debian wants.
find_program(DRAY_GZIP gzip REQUIRED)
set(_dray_man_gz)
foreach(page dray.1:cli dray-license.1:cli dray.conf.5:cli libdray.3:dev dray-batch.1:pro)
  string(REPLACE ":" ";" page "${page}")
  list(GET page 0 file)
  list(GET page 1 component)
  string(REGEX MATCH "[0-9]$" section "${file}")
  set(gz ${PROJECT_BINARY_DIR}/man/${file}.gz)
  add_custom_command(OUTPUT ${gz}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
    COMMAND ${DRAY_GZIP} -9n -c ${_dray_src}/docs/man/${file} > ${gz}
    DEPENDS ${_dray_src}/docs/man/${file} VERBATIM)
  list(APPEND _dray_man_gz ${gz})
  install(FILES ${gz} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT ${component})
endforeach()
add_custom_target(dray_man ALL DEPENDS ${_dray_man_gz})
install(FILES ${_dray_src}/packaging/systemd/dray@.service DESTINATION ${DRAY_SYSTEMD_UNITDIR}
        COMPONENT cli)
install(FILES ${_dray_src}/README.md ${_dray_src}/docs/cli.md ${_dray_src}/docs/sidekiq-compat.md
        ${_dray_src}/docs/redis-keys.md ${_dray_src}/docs/modules.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT cli)

# Per package: /usr/share/doc/<pkg>/copyright and changelog.Debian.gz (policy 12.5, 12.7).
set(DRAY_DEB_VERSION "${PROJECT_VERSION}-1")
function(_dray_deb_docs component pkg license_name license_file)
  set(dir ${PROJECT_BINARY_DIR}/debian-docs/${pkg})
  if(license_name STREQUAL "LGPL-3+")
    # Debian ships the text (policy 12.5): refer to it
    set(text "This library is free software; you can redistribute it and/or modify it\n"
             "under the terms of the GNU Lesser General Public License as published by\n"
             "the Free Software Foundation; either version 3 of the License, or (at your\n"
             "option) any later version.\n\n"
             "On Debian systems, the complete text of the GNU Lesser General Public\n"
             "License version 3 can be found in /usr/share/common-licenses/LGPL-3.")
    string(CONCAT text ${text})
  else()
    file(READ ${license_file} text)
    string(STRIP "${text}" text)
  endif()
  # copyright-format: the licence text indented, blank lines as " ."
  string(REGEX REPLACE "\n\n" "\n.\n" text "${text}")
  string(REGEX REPLACE "\n" "\n " text "${text}")
  set(DRAY_PKG_LICENSE "${license_name}")
  set(DRAY_PKG_LICENSE_TEXT " ${text}")
  configure_file(${_dray_src}/packaging/debian/copyright.in ${dir}/copyright @ONLY)
  string(TIMESTAMP date "%a, %d %b %Y %H:%M:%S +0000" UTC)
  file(WRITE ${dir}/changelog.Debian
       "${pkg} (${DRAY_DEB_VERSION}) unstable; urgency=medium\n\n"
       "  * Package built by CPack from the dray tree.\n\n"
       " -- dray maintainers <dray@example.org>  ${date}\n")
  execute_process(COMMAND ${DRAY_GZIP} -9nf ${dir}/changelog.Debian)
  install(FILES ${dir}/copyright ${dir}/changelog.Debian.gz
          DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${pkg} COMPONENT ${component})
endfunction()
_dray_deb_docs(libs libdray0 LGPL-3+ ${_dray_src}/LICENSE-LGPL)
_dray_deb_docs(dev libdray-dev LGPL-3+ ${_dray_src}/LICENSE-LGPL)
_dray_deb_docs(cli dray LGPL-3+ ${_dray_src}/LICENSE-LGPL)
_dray_deb_docs(pro dray-pro dray-commercial ${_dray_src}/LICENSE-COMMERCIAL)
_dray_deb_docs(enterprise dray-enterprise dray-commercial ${_dray_src}/LICENSE-COMMERCIAL)

# ---- CPack ------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME dray)
set(CPACK_PACKAGE_VENDOR "dray")
set(CPACK_PACKAGE_CONTACT "dray maintainers <dray@example.org>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL libs dev cli)
if(TARGET dray_pro)
  list(APPEND CPACK_COMPONENTS_ALL pro)
endif()
if(TARGET dray_enterprise)
  list(APPEND CPACK_COMPONENTS_ALL enterprise)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libdray.so.0 is not installed while the packages are built: dpkg-shlibdeps
# finds it in the build tree (its dependency is named explicitly below).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/core)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON) # libdray0's shlibs file
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/dray-jobs/dray")
set(CPACK_STRIP_FILES ON)
set(_dray_exact "(= ${PROJECT_VERSION}-1)")

set(CPACK_DEBIAN_LIBS_PACKAGE_NAME libdray0)
set(CPACK_DEBIAN_LIBS_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_LIBS_DESCRIPTION "Sidekiq-compatible background jobs for C - library\nlibdray pushes and runs background jobs on Redis with Sidekiq's keys and job\nJSON, so C programs share queues with Ruby Sidekiq. This package has the\nshared library.")
set(CPACK_DEBIAN_LIBS_PACKAGE_CONTROL_EXTRA ${_dray_src}/packaging/debian/libdray0/triggers
    ${_dray_src}/packaging/debian/libdray0/postinst ${_dray_src}/packaging/debian/libdray0/postrm)
set(CPACK_DEBIAN_LIBS_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libdray-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libdray0 ${_dray_exact}, libjansson-dev, libhiredis-dev, libsodium-dev, zlib1g-dev, libssl-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION "Sidekiq-compatible background jobs for C - development files\nHeaders, the static library, pkg-config and CMake files for libdray.")

set(CPACK_DEBIAN_CLI_PACKAGE_NAME dray)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_CLI_PACKAGE_DEPENDS "libdray0 ${_dray_exact}, adduser")
set(CPACK_DEBIAN_CLI_PACKAGE_SUGGESTS "redis-server")
set(CPACK_DEBIAN_CLI_PACKAGE_CONTROL_EXTRA ${_dray_src}/packaging/debian/dray/postinst)
set(CPACK_DEBIAN_CLI_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_COMPONENT_CLI_DESCRIPTION "Sidekiq-compatible background job worker\nThe dray command runs worker processes (as the systemd service dray@NAME,\nconfigured in /etc/dray/NAME.conf) and inspects queues, retries and\nprocesses on Redis, Sidekiq's and its own.")

set(CPACK_DEBIAN_PRO_PACKAGE_NAME dray-pro)
set(CPACK_DEBIAN_PRO_PACKAGE_SECTION non-free/utils)
set(CPACK_DEBIAN_PRO_PACKAGE_DEPENDS "dray ${_dray_exact}")
set(CPACK_COMPONENT_PRO_DESCRIPTION "dray Pro module (commercial license)\nBatches, webhook notifications, reliable fetch and expiring jobs for dray.\nIt needs a license key signed by the vendor.")

set(CPACK_DEBIAN_ENTERPRISE_PACKAGE_NAME dray-enterprise)
set(CPACK_DEBIAN_ENTERPRISE_PACKAGE_SECTION non-free/utils)
set(CPACK_DEBIAN_ENTERPRISE_PACKAGE_DEPENDS "dray ${_dray_exact}")
set(CPACK_COMPONENT_ENTERPRISE_DESCRIPTION "dray Enterprise module (commercial license)\nRate limits, unique jobs, periodic jobs and encrypted arguments for dray.\nIt needs a license key signed by the vendor.")
include(CPack)
