# SPDX-License-Identifier: LGPL-3.0-or-later
# One rule for a library named without '/', --module and --require alike
# (after module.cmake, which builds the record fixture).
if(TARGET mod_record)
  add_library(path_handlers MODULE integration/path_handlers.c)
  dray_add_test(test_module_path SOURCES integration/test_module_path.c LABELS "module;integration")
  target_compile_definitions(test_module_path PRIVATE MOD_PATH="$<TARGET_FILE:mod_record>"
                             JOBS_PATH="$<TARGET_FILE:path_handlers>")
  add_dependencies(test_module_path mod_record path_handlers)
endif()
