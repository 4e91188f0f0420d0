# SPDX-License-Identifier: LGPL-3.0-or-later
#
# Interop with real Sidekiq 6.4 (Debian `ruby` + `ruby-sidekiq`; the
# namespace test also wants `ruby-redis-namespace` and skips without it).
# Included by tests/CMakeLists.txt. Each test starts its own redis-server
# and runs tests/interop/sidekiq_agent.rb as a subprocess against it.
#
#   test_interop_producer   dray pushes -> Sidekiq::Queue/ScheduledSet/Stats;
#                           Sidekiq::Client pushes -> dray_job_parse/dump
#   test_interop_server     Ruby-pushed jobs run in dray; ProcessSet, Workers,
#                           Stats; remote quiet!/stop!
#   test_interop_failures   RetrySet/DeadSet of dray's failures; Ruby's
#                           retry/kill with dray running; perform_in run by
#                           dray's scheduler; a dray-moved retry as Ruby sees it
#   test_interop_namespace  the same through redis-namespace
#   test_interop_nul        Sidekiq jobs whose strings hold NUL (\u0000) parse,
#                           run and get scheduled in dray like any other
#   test_interop_bigint     Ruby bignum args run in dray; RetrySet/DeadSet see
#                           the same Integers after dray's retry, scheduler, death
find_program(DRAY_RUBY_EXE ruby)
if(NOT DRAY_RUBY_EXE)
  message(WARNING "ruby not found: the interop tests will fail (apt-get install ruby ruby-sidekiq)")
  set(DRAY_RUBY_EXE ruby)
endif()

set(_it ${CMAKE_CURRENT_LIST_DIR}/interop)
foreach(t producer server failures namespace nul bigint fleet)
  dray_add_test(test_interop_${t}
    SOURCES ${_it}/test_interop_${t}.c ${_it}/interop_support.c
    LABELS interop TIMEOUT 120)
  target_include_directories(test_interop_${t} PRIVATE ${_it})
  target_compile_definitions(test_interop_${t} PRIVATE
    DRAY_RUBY="${DRAY_RUBY_EXE}" DRAY_INTEROP_DIR="${_it}")
  # The same test against Sidekiq 7.3.9 (shared/peers): Skipped unless
  # $DRAY_SIDEKIQ7_ENV names sidekiq7.env (.ci/run sets it). Sidekiq 7 has
  # no namespaces (redis-namespace is a 6.x feature): no _sk7 twin for it.
  if(t STREQUAL "namespace")
    continue()
  endif()
  add_test(NAME test_interop_${t}_sk7 COMMAND test_interop_${t})
  set_tests_properties(test_interop_${t}_sk7 PROPERTIES LABELS "interop;sidekiq7" TIMEOUT 180
                       SKIP_RETURN_CODE 77
                       ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout;DRAY_INTEROP_SIDEKIQ=7")
endforeach()

# Execution metrics exist since Sidekiq 7: only the _sk7 test.
add_executable(test_interop_metrics ${_it}/test_interop_metrics.c ${_it}/interop_support.c)
target_link_libraries(test_interop_metrics PRIVATE dray_static dray_test_support PkgConfig::CMOCKA)
target_include_directories(test_interop_metrics PRIVATE ${_it})
target_compile_definitions(test_interop_metrics PRIVATE DRAY_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  DRAY_RUBY="${DRAY_RUBY_EXE}" DRAY_INTEROP_DIR="${_it}")
add_test(NAME test_interop_metrics_sk7 COMMAND test_interop_metrics)
set_tests_properties(test_interop_metrics_sk7 PROPERTIES LABELS "interop;sidekiq7" TIMEOUT 180
                     SKIP_RETURN_CODE 77
                     ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout;DRAY_INTEROP_SIDEKIQ=7")

# Sidekiq 7.3.9's Web UI in headless Chromium against dray: only with 7.3.9.
# Debian's python3 (python3-websocket), not one earlier on PATH (pyenv).
find_program(DRAY_PYTHON3_EXE python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT DRAY_PYTHON3_EXE)
  set(DRAY_PYTHON3_EXE /usr/bin/python3)
endif()
add_executable(test_interop_webui ${_it}/test_interop_webui.c ${_it}/interop_support.c)
target_link_libraries(test_interop_webui PRIVATE dray_static dray_test_support PkgConfig::CMOCKA)
target_include_directories(test_interop_webui PRIVATE ${_it})
target_compile_definitions(test_interop_webui PRIVATE DRAY_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  DRAY_RUBY="${DRAY_RUBY_EXE}" DRAY_INTEROP_DIR="${_it}" DRAY_PYTHON3="${DRAY_PYTHON3_EXE}"
  DRAY_SHOTS_DIR="${CMAKE_CURRENT_BINARY_DIR}/webui-shots")
add_test(NAME test_interop_webui_sk7 COMMAND test_interop_webui)
set_tests_properties(test_interop_webui_sk7 PROPERTIES LABELS "interop;sidekiq7;browser"
                     TIMEOUT 240 SKIP_RETURN_CODE 77
                     ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout;DRAY_INTEROP_SIDEKIQ=7")
