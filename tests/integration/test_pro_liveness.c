/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Orphan recovery never fires on a live process (issue 10, section 2).
 *
 *   1. pro.orphan_after below 3 heartbeats is refused at load, with a
 *      message naming both settings (heartbeat 5 s with orphan_after 3 s
 *      used to be accepted, and healthy processes were then taken for dead).
 *   2. Two live worker processes at the smallest accepted setting
 *      (heartbeat 1 s, pro.orphan_after 3 s, checks every 0.5 s) run jobs
 *      that take longer than orphan_after. During the first round one of
 *      them pauses (SIGSTOP) for 5 s, longer than orphan_after; during the
 *      second round redis-server stalls (SIGSTOP) for 8 s, which ages every
 *      beat at once. 0 recoveries, 0 duplicate runs, 0 poison pills, and
 *      every job runs. (Before the fix, the paused process's jobs were
 *      recovered by the other and ran twice.)
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "pro_test.h"

#define JOB_MS 5000 /* longer than orphan_after */
#define NJOBS 8     /* two rounds over 2 processes x 2 threads */

typedef struct exited {
    pro_worker *w;
} exited;

static int
has_exited(void *p)
{
    return pro_worker_reap(((exited *)p)->w);
}

static int
log_has(const pro_worker *w, const char *needle)
{
    FILE *f = fopen(w->log, "r");
    if (!f)
        return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* A worker with these settings must refuse to start, naming both. */
static void
assert_refused(const char *heartbeat, const char *after)
{
    const char *args[] = {heartbeat, after, NULL};
    pro_worker w;
    assert_int_equal(pro_worker_start(&w, pro_srv.url, pro_license_default(), args), 0);
    exited e = {&w};
    int gone = pro_wait(has_exited, &e, 20);
    if (!gone || !WIFEXITED(w.status) || WEXITSTATUS(w.status) != 3)
        pro_worker_dump(&w, 20);
    assert_true(gone);
    assert_true(WIFEXITED(w.status));
    assert_int_equal(WEXITSTATUS(w.status), 3); /* the module refused to load */
    assert_true(log_has(&w, "pro.orphan_after"));
    assert_true(log_has(&w, "heartbeat"));
}

static void
test_refused_below_three_heartbeats(void **state)
{
    (void)state;
    assert_refused("heartbeat=5", "pro.orphan_after=3");
    assert_refused("heartbeat=1", "pro.orphan_after=2.9");
    assert_refused("heartbeat=20", "pro.orphan_after=59");
}

typedef struct held_by {
    pid_t pid;
} held_by;

static int
holds_jobs(void *p)
{
    redisReply *k = test_redis_cmd(pro_rc, "KEYS pro:fetch:wip:*:%d:*", (int)((held_by *)p)->pid);
    long long n = 0;
    for (size_t i = 0; i < k->elements; i++)
        n += pro_int(pro_rc, "LLEN %s", k->element[i]->str);
    freeReplyObject(k);
    return n > 0;
}

static int
lists_empty(void *p)
{
    (void)p;
    return pro_int(pro_rc, "LLEN queue:default") == 0 && pro_wip_len("*") == 0;
}

static void
test_live_processes_never_recovered(void **state)
{
    (void)state;
    const char *args[] = {"concurrency=2", "heartbeat=1", "pro.orphan_after=3",
                          "pro.orphan_check=0.5", NULL};
    pro_worker w[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pro_worker_start(&w[i], pro_srv.url, pro_license_default(), args), 0);
    assert_true(pro_wait_at_least(pro_rc, 2, 20, "SCARD processes"));

    dray_client *cli;
    assert_int_equal(pro_plain_client(&cli), 0);
    for (int i = 0; i < NJOBS; i++) {
        json_t *a = json_pack("[i, i]", i, JOB_MS);
        assert_int_equal(dray_client_push(cli, "Work", a, NULL, NULL), 0);
        json_decref(a);
    }
    dray_client_free(cli);

    /* A live process pauses (SIGSTOP: a long GC pause, swap, a starved
     * host) while it runs jobs, for longer than orphan_after: its beat ages
     * past it, but it resumes and finishes them itself. */
    held_by hb = {w[1].pid};
    assert_true(pro_wait(holds_jobs, &hb, 20));
    assert_int_equal(kill(w[1].pid, SIGSTOP), 0);
    struct timespec pause = {5, 0}; /* the pause is the fault being injected */
    nanosleep(&pause, NULL);
    assert_int_equal(kill(w[1].pid, SIGCONT), 0);

    /* The second round started (a run is counted when it starts): freeze
     * Redis longer than orphan_after, with every thread inside a job. */
    assert_true(pro_wait_at_least(pro_rc, NJOBS / 2 + 1, 30, "HLEN t:runs"));
    assert_int_equal(kill(pro_srv.pid, SIGSTOP), 0);
    pro_srv_stopped = 1;
    struct timespec ts = {8, 0}; /* the stall is the fault being injected */
    nanosleep(&ts, NULL);
    assert_int_equal(kill(pro_srv.pid, SIGCONT), 0);
    pro_srv_stopped = 0;

    double resumed = pro_now();

    assert_true(pro_wait_at_least(pro_rc, NJOBS, 60, "HLEN t:runs"));
    assert_true(pro_wait(lists_empty, NULL, 30));
    /* Every silence the stall caused was cleared by a beat... */
    assert_true(pro_wait_int(pro_rc, 0, 30, "HLEN pro:fetch:silent"));
    /* ...and a false recovery, had one been coming, had its time: the
     * confirmation window (2 heartbeats + 5 s) plus orphan_after and a
     * check, counted from the end of the stall. */
    double left = resumed + 2 * 1 + 5 + 3 + 2 - pro_now();
    if (left > 0)
        pro_wait_at_least(pro_rc, 1, left,
                          "GET pro:stat:recovered"); /* checked below, with the other counts */
    assert_true(pro_wait_at_least(pro_rc, NJOBS, 30, "HLEN t:runs"));
    assert_true(pro_wait(lists_empty, NULL, 30));
    long long held = pro_wip_len("*");
    long long dups = pro_run_dups(NULL);
    long long recovered = pro_int(pro_rc, "GET pro:stat:recovered");
    long long dead = pro_int(pro_rc, "ZCARD dead");
    fprintf(stderr,
            "liveness: 2 live processes, heartbeat 1 s, orphan_after 3 s, jobs of %d ms, a 5 s "
            "pause of one, an 8 s Redis stall: %lld recoveries, %lld jobs run more than once, %lld "
            "in the dead set, "
            "%lld jobs left in lists\n",
            JOB_MS, recovered, dups, dead, held);
    if (recovered || dups || dead)
        for (int i = 0; i < 2; i++)
            pro_worker_dump(&w[i], 20);
    assert_int_equal(recovered, 0);
    assert_int_equal(dups, 0);
    assert_int_equal(dead, 0);
    assert_int_equal(pro_int(pro_rc, "HLEN t:runs"), NJOBS);
    assert_int_equal(held, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pro_worker_stop(&w[i], SIGTERM, 20), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refused_below_three_heartbeats, pro_setup_redis,
                                        pro_teardown),
        cmocka_unit_test_setup_teardown(test_live_processes_never_recovered, pro_setup_redis,
                                        pro_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
