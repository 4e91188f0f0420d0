/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The shared test harness (tests/support/harness.h) against a real
 * redis-server and real child processes: a dropped connection is
 * reconnected by test_flush, children that die by a signal or stall are
 * reported and reaped, the log capture keeps every line from many threads
 * and filters by level, and a server on a thread works its jobs. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static void
test_redis_reads_and_reconnect(void **state)
{
    test_run("SET k 5");
    assert_int_equal(test_int("GET k"), 5);
    assert_int_equal(test_int("INCR k"), 6);
    assert_int_equal(test_int("LRANGE k 0 -1"), -1); /* an error reply is not a number */
    char *v = test_str("GET k");
    assert_string_equal(v, "6");
    free(v);
    assert_null(test_str("GET missing"));
    test_push_raw("q", "{\"class\":\"A\",\"args\":[]}");
    assert_int_equal(test_int("LLEN queue:q"), 1);
    assert_int_equal(test_int("SISMEMBER queues q"), 1);

    /* Redis dies under the harness's connection: the next flush reconnects */
    test_redis_kill(&test_srv);
    assert_null(redisCommand(test_rc, "PING"));
    assert_int_not_equal(test_rc->err, 0);
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    assert_int_equal(test_flush(state), 0);
    assert_int_equal(test_rc->err, 0);
    assert_int_equal(test_int("DBSIZE"), 0);
}

static void
test_exec_captures_streams_and_signals(void **state)
{
    (void)state;
    test_output r = test_exec(
        "/bin/sh", (const char *const[]){"-c", "printf out; printf err >&2; exit 3", NULL});
    assert_int_equal(r.code, 3);
    assert_string_equal(r.out, "out");
    assert_string_equal(r.err, "err");
    test_expect_code(&r, 3, "sh exit 3");
    test_output_free(&r);
    assert_null(r.out);

    /* more than a pipe buffer on both streams at once: no deadlock */
    r = test_exec("/bin/sh", (const char *const[]){
                                 "-c", "yes | head -c 300000; yes | head -c 200000 >&2", NULL});
    assert_int_equal(r.code, 0);
    assert_int_equal(strlen(r.out), 300000);
    assert_int_equal(strlen(r.err), 200000);
    test_output_free(&r);

    r = test_exec("/bin/sh", (const char *const[]){"-c", "kill -9 $$", NULL});
    assert_int_equal(r.code, 128 + 9);
    test_output_free(&r);

    r = test_exec("/nonexistent/dray", (const char *const[]){NULL});
    assert_int_equal(r.code, 127);
    test_output_free(&r);
}

static int
file_has_marker(void *path)
{
    FILE *f = fopen(path, "r");
    char line[64] = "";
    int ok = f && fgets(line, sizeof line, f) && !strcmp(line, "marker-1\n");
    if (f)
        fclose(f);
    return ok;
}

static void
test_spawned_child_stalls_then_is_killed(void **state)
{
    (void)state;
    char log[400];
    snprintf(log, sizeof log, "%s/child.log", test_srv.dir);
    unlink(log);
    pid_t pid = test_spawn_logged(
        log, "HARNESS_MARK=marker-1",
        (char *const[]){"/bin/sh", "-c", "echo $HARNESS_MARK; exec sleep 60", NULL});
    /* the child's environment and output reach the log */
    test_child_wait(pid, log, file_has_marker, log, 10, "the child did not log its marker");
    /* it stalls: the wait gives up on time, kills and reaps it */
    double t0 = test_now();
    assert_int_equal(test_wait_exit(pid, 0.3), -1);
    assert_true(test_now() - t0 < 5);
    assert_int_equal(kill(pid, 0), -1); /* reaped: no such process */
    unlink(log);

    pid = test_spawn_logged(log, NULL, (char *const[]){"/bin/sh", "-c", "exit 7", NULL});
    assert_int_equal(test_wait_exit(pid, 10), 7);
    unlink(log);
}

#define LOG_THREADS 4
#define LOG_LINES 500

static void *
log_main(void *arg)
{
    long t = (long)(intptr_t)arg;
    char line[64];
    for (int i = 0; i < LOG_LINES; i++) {
        snprintf(line, sizeof line, "warn t%ld n%d.", t, i);
        test_log_capture(DRAY_LOG_WARN, line, NULL);
        test_log_capture(DRAY_LOG_DEBUG, "debug line", NULL);
    }
    return NULL;
}

static void
test_log_capture_threads_and_levels(void **state)
{
    (void)state;
    test_log_reset(DRAY_LOG_WARN);
    pthread_t th[LOG_THREADS];
    for (long t = 0; t < LOG_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, log_main, (void *)(intptr_t)t), 0);
    for (int t = 0; t < LOG_THREADS; t++)
        pthread_join(th[t], NULL);
    int missing = 0;
    for (int t = 0; t < LOG_THREADS; t++)
        for (int i = 0; i < LOG_LINES; i++) {
            char needle[64];
            snprintf(needle, sizeof needle, "warn t%d n%d.", t, i);
            missing += !test_log_contains(needle);
        }
    assert_int_equal(missing, 0);
    assert_false(test_log_contains("debug line"));
    char *l = test_log_line("t3 n499");
    assert_string_equal(l, "warn t3 n499.");
    free(l);
    test_log_reset(DRAY_LOG_DEBUG);
    assert_false(test_log_has("warn"));
    test_log_capture(DRAY_LOG_DEBUG, "debug line", NULL);
    assert_true(test_log_has("debug line"));
    test_log_reset(DRAY_LOG_DEBUG);
}

static atomic_int worked;

static void
test_server_on_a_thread(void **state)
{
    (void)state;
    atomic_store(&worked, 0);
    for (int i = 0; i < 20; i++)
        test_push_job("Count", "h", json_pack("[i]", i), i == 0 ? "{\"custom\":1}" : NULL);
    dray_client *c = test_client(NULL);
    assert_int_equal(test_push_arg(c, "Count", 20), 0);
    dray_client_free(c);
    assert_int_equal(test_int("LLEN queue:h"), 20);
    assert_int_equal(test_int("LLEN queue:default"), 1);
    test_running r;
    dray_options o;
    test_options(&o, "h default", 2);
    test_server_new(&r, &o);
    assert_int_equal(dray_server_register(r.s, "Count", test_h_count, &worked, NULL), 0);
    test_server_go(&r);
    test_at_least all = {&worked, 21};
    assert_true(test_wait_until(test_reached, &all, 15));
    assert_false(test_server_done(&r));
    test_server_finish(&r);
    assert_int_equal(atomic_load(&worked), 21);
    assert_int_equal(test_int("LLEN queue:h") + test_int("LLEN queue:default"), 0);
}

/* test_free_port: 200 ports, none repeated, none in the kernel's ephemeral
 * range (where bind(0) probes came from and collided: a replica and a
 * sentinel were once handed the same port), each bindable when returned. */
static void
test_free_ports_distinct(void **state)
{
    (void)state;
    int seen[200];
    for (int i = 0; i < 200; i++) {
        int p = test_free_port();
        assert_true(p >= 1024 && p < 32768);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(seen[j], p);
        seen[i] = p;
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_redis_reads_and_reconnect, test_flush),
        cmocka_unit_test(test_exec_captures_streams_and_signals),
        cmocka_unit_test(test_free_ports_distinct),
        cmocka_unit_test(test_spawned_child_stalls_then_is_killed),
        cmocka_unit_test(test_log_capture_threads_and_levels),
        cmocka_unit_test_setup(test_server_on_a_thread, test_flush),
    };
    /* writing to the killed Redis must fail the call, not kill the test */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
