# SPDX-License-Identifier: LGPL-3.0-or-later
# Formatting: every tracked C file as clang-format 14 leaves it (issue 17).
add_test(NAME format_check COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/style/format_check.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(format_check PROPERTIES LABELS style SKIP_RETURN_CODE 77 TIMEOUT 120)
# Public header attributes: ignored results of fallible calls and NULL
# handles do not compile (STYLE.md rule 4, issue 17).
add_test(NAME api_attrs_check COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/style/api_attrs_check.sh
         ${CMAKE_C_COMPILER} ${PROJECT_SOURCE_DIR})
set_tests_properties(api_attrs_check PROPERTIES LABELS style TIMEOUT 120)
