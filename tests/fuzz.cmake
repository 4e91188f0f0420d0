# SPDX-License-Identifier: LGPL-3.0-or-later
#
# Fuzz targets for the core's parsers of attacker-controlled bytes, included
# by tests/CMakeLists.txt (the license-key target lives in license.cmake).
# One source per target, tests/fuzz/fuzz_<name>.c, built two ways:
#
#   fuzz_<name>_corpus  the target as a plain program over its committed
#                       seed corpus tests/fuzz/corpus/<name>  label fuzz
#   fuzz_<name>         libFuzzer binary (clang, DRAY_FUZZ=ON; not a ctest),
#                       ASan+UBSan, core sources compiled in so they carry
#                       coverage: tests/fuzz/run-fuzz.sh BUILD_DIR SECONDS
#
#   job        dray_job_parse, round trip, time/retry/timeout/backtrace readers
#   redis_url  dray__redis_url_parse (redis, rediss, unix, sentinel, query)
#   config     dray_config_load_file and dray_config_to_options
#   backtrace  dray web's error_backtrace reader (core/cli/web_backtrace.c)
option(DRAY_FUZZ "Build libFuzzer targets (clang only)" OFF)

set(DRAY_FUZZ_TARGETS job redis_url config backtrace)
set(_fuzz_dir ${CMAKE_CURRENT_LIST_DIR}/fuzz)
# Targets whose code is not in the core library: its sources compiled in.
set(_fuzz_extra_backtrace ${PROJECT_SOURCE_DIR}/core/cli/web_backtrace.c)

foreach(name ${DRAY_FUZZ_TARGETS})
  add_executable(fuzz_${name}_regress ${_fuzz_dir}/fuzz_${name}.c ${_fuzz_extra_${name}})
  target_include_directories(fuzz_${name}_regress PRIVATE ${PROJECT_SOURCE_DIR}/core/cli)
  target_link_libraries(fuzz_${name}_regress PRIVATE dray_static)
  add_test(NAME fuzz_${name}_corpus
           COMMAND fuzz_${name}_regress ${_fuzz_dir}/corpus/${name})
  set_tests_properties(fuzz_${name}_corpus PROPERTIES LABELS fuzz TIMEOUT 120)
endforeach()

if(DRAY_FUZZ)
  if(CMAKE_C_COMPILER_ID MATCHES "Clang")
    get_target_property(_fuzz_core_src dray_objs SOURCES)
    get_target_property(_fuzz_core_libs dray_objs INTERFACE_LINK_LIBRARIES)
    set(_fuzz_san -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
    foreach(name ${DRAY_FUZZ_TARGETS})
      add_executable(fuzz_${name} ${_fuzz_dir}/fuzz_${name}.c ${_fuzz_core_src}
                     ${_fuzz_extra_${name}})
      target_include_directories(fuzz_${name} PRIVATE ${PROJECT_SOURCE_DIR}/core/include
                                 ${PROJECT_SOURCE_DIR}/core/src ${PROJECT_SOURCE_DIR}/core/cli)
      target_link_libraries(fuzz_${name} PRIVATE ${_fuzz_core_libs})
      target_compile_definitions(fuzz_${name} PRIVATE DRAY_LIBFUZZER)
      # -Wno-error: clang warns where gcc, the -Werror compiler, does not
      target_compile_options(fuzz_${name} PRIVATE ${_fuzz_san} -fno-omit-frame-pointer -Wno-error)
      target_link_options(fuzz_${name} PRIVATE ${_fuzz_san})
      set_target_properties(fuzz_${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                            ${CMAKE_BINARY_DIR}/fuzz)
    endforeach()
  else()
    message(STATUS "DRAY_FUZZ: ${CMAKE_C_COMPILER_ID} has no libFuzzer; core fuzz targets not "
                   "built (configure with CC=clang)")
  endif()
endif()
