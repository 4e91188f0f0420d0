# SPDX-License-Identifier: LGPL-3.0-or-later
#
# Install layout and RPATH, included before core/ so every target sees them.
#
#   DRAY_EXAMPLESDIR     where the demo and its handler library go
#                        (LIBDIR/dray/examples; package dray)
#   DRAY_EXAMPLES_RPATH  the demo's RPATH (finds LIBDIR from there)
#   DRAY_SYSTEMD_UNITDIR where dray@.service goes (relative: under the prefix)
#
# Installed programs find libdray.so through a relative RPATH
# ($ORIGIN/../LIBDIR), so `cmake --install build --prefix /any/dir` runs
# without LD_LIBRARY_PATH. When LIBDIR is one the linker searches anyway
# (the packages' /usr/lib/<multiarch>), no RPATH is written: Debian policy
# and lintian refuse one there.
include_guard(GLOBAL)

set(DRAY_EXAMPLESDIR "${CMAKE_INSTALL_LIBDIR}/dray/examples")
set(DRAY_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Install directory of dray@.service (relative: under the install prefix)")

list(FIND CMAKE_C_IMPLICIT_LINK_DIRECTORIES "${CMAKE_INSTALL_FULL_LIBDIR}" _dray_libdir_is_system)
if(_dray_libdir_is_system EQUAL -1)
  file(RELATIVE_PATH _dray_bin_to_lib "/p/${CMAKE_INSTALL_BINDIR}" "/p/${CMAKE_INSTALL_LIBDIR}")
  file(RELATIVE_PATH _dray_ex_to_lib "/p/${DRAY_EXAMPLESDIR}" "/p/${CMAKE_INSTALL_LIBDIR}")
  set(CMAKE_INSTALL_RPATH "$ORIGIN/${_dray_bin_to_lib}")
  set(DRAY_EXAMPLES_RPATH "$ORIGIN/${_dray_ex_to_lib}")
else()
  set(CMAKE_INSTALL_RPATH "")
  set(DRAY_EXAMPLES_RPATH "")
endif()
