/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Orphan recovery with the default liveness settings (heartbeat 5 s,
 * pro.orphan_after 60 s, pro.orphan_check 5 s) and no restart of any
 * process: B is already running when A is SIGKILLed holding jobs; B must
 * put them back within 90 s (Sidekiq Pro waits for the next process start,
 * by default at most once an hour). Takes about 65 s.
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

typedef struct held {
    pid_t pid;
    long long n;
} held;

static int
wip_is(void *p)
{
    held *h = p;
    return pro_wip_of(h->pid) == h->n;
}

static void
test_default_liveness(void **state)
{
    (void)state;
    dray_client *cli;
    assert_int_equal(pro_plain_client(&cli), 0);
    const char *defaults[] = {"concurrency=4", "heartbeat=5", NULL};
    pro_worker a, b;
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), defaults), 0);
    char jids[4][DRAY_JID_BYTES];
    for (int i = 0; i < 4; i++) {
        json_t *args = json_pack("[i, i]", i, 5000);
        assert_int_equal(dray_client_push(cli, "Work", args, NULL, jids[i]), 0);
        json_decref(args);
    }
    held four = {a.pid, 4};
    assert_true(pro_wait(wip_is, &four, 15));
    assert_int_equal(pro_worker_start(&b, pro_srv.url, pro_license_default(), defaults), 0);
    assert_true(pro_wait_int(pro_rc, 2, 15, "SCARD processes"));
    pid_t apid = a.pid;
    assert_int_equal(pro_worker_stop(&a, SIGKILL, 5), 0);
    double t0 = pro_now();
    held none = {apid, 0};
    int ok = pro_wait(wip_is, &none, 100);
    double took = pro_now() - t0;
    fprintf(stderr,
            "default settings: 4 orphaned jobs recovered %.1f s after SIGKILL, by a process "
            "that was already running\n",
            took);
    if (!ok)
        pro_worker_dump(&b, 30);
    assert_true(ok);
    assert_true(took < 90);
    for (int i = 0; i < 4; i++)
        assert_true(pro_wait_int(pro_rc, 2, 30, "HGET t:runs %s", jids[i]));
    assert_int_equal(pro_int(pro_rc, "GET pro:stat:recovered"), 4);
    assert_int_equal(pro_worker_stop(&b, SIGTERM, 20), 0);
    dray_client_free(cli);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_default_liveness)};
    return cmocka_run_group_tests(tests, pro_setup_redis, pro_teardown);
}
