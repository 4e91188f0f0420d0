# SPDX-License-Identifier: LGPL-3.0-or-later
# rediss://: a real redis-server with --tls-port, certificates made at test
# time by support/tls_certs.sh (openssl CLI).
if(TARGET dray_cli)
  dray_add_test(test_tls SOURCES integration/test_tls.c LABELS integration tls TIMEOUT 180)
  add_dependencies(test_tls dray_cli)
  target_compile_definitions(test_tls PRIVATE DRAY_CLI_PATH="$<TARGET_FILE:dray_cli>")
endif()

# redis-sentinel://: master, replica and three sentinels (redis-server
# --sentinel), a failover and a kill. Label `sentinel` (slow: excludable
# under sanitizers with -LE sentinel).
if(TARGET dray_cli)
  dray_add_test(test_sentinel SOURCES integration/test_sentinel.c LABELS integration sentinel
                TIMEOUT 240)
  add_dependencies(test_sentinel dray_cli)
  target_compile_definitions(test_sentinel PRIVATE DRAY_CLI_PATH="$<TARGET_FILE:dray_cli>")
endif()
