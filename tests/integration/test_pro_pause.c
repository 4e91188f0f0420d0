/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Paused queues under Pro reliable fetch: the core hands the module's fetch
 * only the queues that are not paused (core/src/pause.c), so a worker
 * process with the module loaded takes nothing from a paused queue (neither
 * the queue nor any work-in-progress list holds its jobs) while another
 * queue drains; resumed, every job runs exactly once. A worker killed with
 * SIGKILL while the queue is paused, and another started, still leave it.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pro_test.h"

#define NJOBS 30

static void
push(const char *queue, int n)
{
    dray_push_opts po = {.queue = queue};
    for (int i = 0; i < n; i++) {
        json_t *args = json_pack("[i, i]", i, 0);
        if (dray_client_push(pro_cli, "Work", args, &po, NULL))
            fail_msg("push: %s", dray_client_errstr(pro_cli));
        json_decref(args);
    }
}

static int
runs_are(void *p)
{
    return pro_int(pro_rc, "HLEN t:runs") == *(long long *)p;
}

static int
runs_over(void *p)
{
    return pro_int(pro_rc, "HLEN t:runs") > *(long long *)p;
}

/* Every job ran exactly once. */
static void
assert_runs_once(long long n)
{
    assert_int_equal(pro_int(pro_rc, "HLEN t:runs"), n);
    redisReply *v = test_redis_cmd(pro_rc, "HVALS t:runs");
    for (size_t i = 0; i < v->elements; i++)
        assert_string_equal(v->element[i]->str, "1");
    freeReplyObject(v);
}

static void
test_reliable_fetch_skips_paused(void **state)
{
    (void)state;
    freeReplyObject(test_redis_cmd(pro_rc, "FLUSHALL"));
    freeReplyObject(test_redis_cmd(pro_rc, "SADD paused held"));
    push("held", NJOBS);
    push("free", NJOBS);
    pro_worker a, b;
    const char *args[] = {"concurrency=3", "queues=held free", "heartbeat=1", NULL};
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), args), 0);
    long long n = NJOBS;
    if (!pro_wait(runs_are, &n, 30)) {
        pro_worker_dump(&a, 30);
        fail_msg("%lld of %d jobs of the free queue ran", pro_int(pro_rc, "HLEN t:runs"), NJOBS);
    }
    /* 3 heartbeats more: the paused queue keeps every job, none in flight */
    assert_false(pro_wait(runs_over, &n, 3.0));
    assert_int_equal(pro_int(pro_rc, "LLEN queue:held"), NJOBS);

    /* killed and replaced while paused: its recovery puts nothing of held
     * in flight, and the new process does not take held either */
    assert_int_equal(pro_worker_stop(&a, SIGKILL, 10), 0);
    assert_int_equal(pro_worker_start(&b, pro_srv.url, pro_license_default(), args), 0);
    assert_false(pro_wait(runs_over, &n, 3.0));
    assert_int_equal(pro_int(pro_rc, "LLEN queue:held"), NJOBS);

    freeReplyObject(test_redis_cmd(pro_rc, "SREM paused held"));
    long long all = 2 * NJOBS;
    if (!pro_wait(runs_are, &all, 30)) {
        pro_worker_dump(&b, 30);
        fail_msg("%lld of %d jobs ran after resume", pro_int(pro_rc, "HLEN t:runs"), 2 * NJOBS);
    }
    assert_int_equal(pro_worker_stop(&b, SIGTERM, 15), 0);
    assert_runs_once(2 * NJOBS);
    assert_int_equal(pro_int(pro_rc, "LLEN queue:held"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reliable_fetch_skips_paused),
    };
    return cmocka_run_group_tests(tests, pro_setup, pro_teardown);
}
