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
install(FILES ${_dray_src}/docs/man/dray.1 ${_dray_src}/docs/man/dray-license.1
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT cli)
install(FILES ${_dray_src}/docs/man/dray.conf.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5 COMPONENT cli)
install(FILES ${_dray_src}/docs/man/libdray.3 DESTINATION ${CMAKE_INSTALL_MANDIR}/man3 COMPONENT dev)
install(FILES ${_dray_src}/packaging/systemd/dray@.service DESTINATION ${DRAY_SYSTEMD_UNITDIR}
        COMPONENT cli)
install(FILES ${_dray_src}/README.md ${_dray_src}/docs/cli.md ${_dray_src}/docs/sidekiq-compat.md
        ${_dray_src}/docs/redis-keys.md ${_dray_src}/docs/modules.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT cli)

# Per package: /usr/share/doc/<pkg>/copyright and changelog.Debian.gz (policy 12.5, 12.7).
set(DRAY_DEB_VERSION "${PROJECT_VERSION}-1")
find_program(DRAY_GZIP gzip)
function(_dray_deb_docs component pkg license_name license_file)
  set(dir ${PROJECT_BINARY_DIR}/debian-docs/${pkg})
  file(READ ${license_file} text)
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
  if(DRAY_GZIP)
    execute_process(COMMAND ${DRAY_GZIP} -9nf ${dir}/changelog.Debian)
  endif()
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
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/dray-jobs/dray")
set(CPACK_STRIP_FILES ON)
set(_dray_exact "(= ${PROJECT_VERSION}-1)")

set(CPACK_DEBIAN_LIBS_PACKAGE_NAME libdray0)
set(CPACK_DEBIAN_LIBS_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_LIBS_DESCRIPTION "Sidekiq-compatible background jobs for C - library\nlibdray pushes and runs background jobs on Redis with Sidekiq's keys and job\nJSON, so C programs share queues with Ruby Sidekiq. This package has the\nshared library.")
set(CPACK_DEBIAN_LIBS_PACKAGE_CONTROL_EXTRA ${_dray_src}/packaging/debian/ldconfig.triggers)
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
set(CPACK_DEBIAN_CLI_PACKAGE_CONTROL_EXTRA ${_dray_src}/packaging/debian/dray.postinst)
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
