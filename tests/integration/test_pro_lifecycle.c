/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * A graceful stop with Pro's reliable fetch: the stop's timeout passes, the
 * provider's bulk requeue moves the running job from the worker's private
 * list back to its queue, then its handler finishes after all. The job ran
 * once, its outcome counts, and neither the queue nor the private list keeps
 * a copy that would run again.
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

static void
test_requeued_then_finished_runs_once(void **state)
{
    (void)state;
    pro_worker a;
    const char *args[] = {"concurrency=1", "timeout=1", NULL};
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), args), 0);
    char jid[DRAY_JID_BYTES];
    json_t *jargs = json_pack("[s]", "gate");
    dray_push_opts po = {.queue = "default"};
    assert_int_equal(dray_client_push(pro_cli, "Gate", jargs, &po, jid), 0);
    json_decref(jargs);
    assert_true(pro_wait_int(pro_rc, 1, 10, "HEXISTS t:runs %s", jid));
    assert_int_equal(pro_wip_len("*"), 1);

    pro_worker_stop(&a, SIGTERM, 0); /* signal only: the gate holds the handler */
    /* the timeout passes and the provider puts the job back */
    assert_true(pro_wait_int(pro_rc, 1, 10, "LLEN queue:default"));
    assert_int_equal(pro_wip_len("*"), 0);
    freeReplyObject(test_redis_cmd(pro_rc, "SET t:gate 1"));
    assert_int_equal(pro_worker_stop(&a, 0, 20), 0);
    assert_true(WIFEXITED(a.status) && WEXITSTATUS(a.status) == 0);

    long long copies = pro_int(pro_rc, "LLEN queue:default"), wip = pro_wip_len("*");
    print_message("after the stop: %lld copies in the queue, %lld in private lists\n", copies, wip);
    assert_int_equal(copies, 0);
    assert_int_equal(wip, 0);
    assert_int_equal(pro_int(pro_rc, "HGET t:runs %s", jid), 1);
    assert_int_equal(pro_int(pro_rc, "GET stat:processed"), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requeued_then_finished_runs_once),
    };
    return cmocka_run_group_tests(tests, pro_setup, pro_teardown);
}
