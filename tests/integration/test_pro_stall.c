/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Reliable fetch against a Redis that stalls (issue 10, section 1). One
 * worker process (4 threads, command timeout lowered to 1 s, so a reply
 * that takes longer than 3 s makes a worker give up and reconnect) works
 * through N jobs while the test freezes its redis-server several times:
 * SIGSTOP / SIGCONT, and once DEBUG SLEEP from a connection of its own.
 * Stalls of 1 s (no timeout) up to 8 s (beyond every timeout): a fetch the
 * worker gave up on completes when Redis wakes up, into the worker's list.
 * Every jid must run at least once (0 lost), nothing may end in the dead
 * set, and every list must drain. Runs with pro.fetch_batch 1 and 8.
 *
 * Sizes: PRO_STALL_JOBS (default 4000); PRO_STALL_SECONDS, a space
 * separated list of stall lengths ("1 4 2 8"; a stall given as "d4" uses
 * DEBUG SLEEP instead of SIGSTOP). Prints jobs, stalls, duplicates and the
 * strays the worker recovered.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "pro_test.h"

#define MAX_STALLS 16

typedef struct progress {
    long long want; /* distinct jids run */
} progress;

static int
ran_at_least(void *p)
{
    progress *g = p;
    return pro_int(pro_rc, "HLEN t:runs") >= g->want;
}

static int
drained(void *p)
{
    (void)p;
    return pro_int(pro_rc, "LLEN queue:default") == 0 && pro_wip_len("*") == 0;
}

/* Freeze redis-server for `secs`: SIGSTOP, or DEBUG SLEEP sent on a
 * connection of its own (not waited for until the sleep is over). The
 * length of the stall is the fault itself, so it is timed, not polled. */
static void
stall(double secs, int debug_sleep)
{
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    if (debug_sleep) {
        redisContext *d = test_redis_connect(&pro_srv);
        char arg[32];
        snprintf(arg, sizeof arg, "%.3f", secs);
        assert_int_equal(redisAppendCommand(d, "DEBUG SLEEP %s", arg), REDIS_OK);
        int done = 0;
        while (!done)
            assert_int_equal(redisBufferWrite(d, &done), REDIS_OK);
        nanosleep(&ts, NULL);
        redisReply *r = NULL;
        assert_int_equal(redisGetReply(d, (void **)&r), REDIS_OK); /* the sleep ended */
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
        redisFree(d);
        return;
    }
    assert_int_equal(kill(pro_srv.pid, SIGSTOP), 0);
    pro_srv_stopped = 1;
    nanosleep(&ts, NULL);
    assert_int_equal(kill(pro_srv.pid, SIGCONT), 0);
    pro_srv_stopped = 0;
}

static void
run_stalls(const char *batch)
{
    long njobs = pro_env_long("PRO_STALL_JOBS", 4000);
    char plan[256];
    snprintf(plan, sizeof plan, "%s",
             getenv("PRO_STALL_SECONDS") ? getenv("PRO_STALL_SECONDS") : "1 d4 2 8");
    double secs[MAX_STALLS];
    int dbg[MAX_STALLS], ns = 0;
    char *save = NULL;
    for (char *t = strtok_r(plan, " ", &save); t && ns < MAX_STALLS;
         t = strtok_r(NULL, " ", &save)) {
        dbg[ns] = t[0] == 'd';
        secs[ns] = strtod(t + dbg[ns], NULL);
        ns++;
    }

    dray_client *cli;
    assert_int_equal(pro_plain_client(&cli), 0);
    json_t *list = json_array();
    for (long i = 0; i < njobs; i++)
        json_array_append_new(list, json_pack("[I, i]", (json_int_t)i, (int)(i % 2)));
    size_t pushed = 0;
    assert_int_equal(dray_client_push_bulk(cli, "Work", list, NULL, NULL, &pushed), 0);
    json_decref(list);
    assert_int_equal((long)pushed, njobs);
    dray_client_free(cli);

    char fb[64];
    snprintf(fb, sizeof fb, "pro.fetch_batch=%s", batch);
    const char *args[] = {"concurrency=4", "command_timeout=1000", fb, NULL};
    pro_worker w;
    assert_int_equal(pro_worker_start(&w, pro_srv.url, pro_license_default(), args), 0);

    double start = pro_now();
    for (int i = 0; i < ns; i++) {
        /* Stall while the workers are busy: wait for a share of the jobs
         * to run first, so every stall hits fetches in flight. */
        progress g = {(long long)(i + 1) * njobs / (2 * (ns + 1))};
        assert_true(pro_wait(ran_at_least, &g, 60));
        if (pro_worker_reap(&w)) {
            pro_worker_dump(&w, 30);
            fail_msg("the worker exited during the run");
        }
        stall(secs[i], dbg[i]);
    }
    progress all = {njobs};
    int ok = pro_wait(ran_at_least, &all, 40);
    int empty = pro_wait(drained, NULL, 20);
    double elapsed = pro_now() - start;
    long long done = pro_int(pro_rc, "HLEN t:runs");
    long long maxruns, dups = pro_run_dups(&maxruns);
    char *strays = pro_str(pro_rc, "GET pro:stat:strays");
    char stalls[256] = "";
    for (int i = 0; i < ns; i++) {
        size_t n = strlen(stalls);
        snprintf(stalls + n, sizeof stalls - n, "%s%.0f s%s", i ? ", " : "", secs[i],
                 dbg[i] ? " (DEBUG SLEEP)" : "");
    }
    fprintf(stderr,
            "stall (fetch_batch %s): %ld jobs, stalls %s, %.1f s\n"
            "stall (fetch_batch %s): ran %lld distinct jids, lost %lld; %lld ran more than "
            "once (max %lld runs); strays recovered %s; dead set %lld; left in lists %lld, "
            "in the queue %lld\n",
            batch, njobs, stalls, elapsed, batch, done, njobs - done, dups, maxruns,
            strays ? strays : "0", pro_int(pro_rc, "ZCARD dead"), pro_wip_len("*"),
            pro_int(pro_rc, "LLEN queue:default"));
    free(strays);
    if (!ok || !empty)
        pro_worker_dump(&w, 40);
    assert_int_equal(done, njobs); /* every jid ran at least once: none lost */
    assert_true(empty);
    assert_int_equal(pro_int(pro_rc, "ZCARD dead"), 0);
    assert_int_equal(pro_worker_stop(&w, SIGTERM, 30), 0);
}

static void
test_stall_single(void **state)
{
    (void)state;
    run_stalls("1");
}

static void
test_stall_batch8(void **state)
{
    (void)state;
    run_stalls("8");
}

static int
setup(void **state)
{
    snprintf(pro_srv.extra, sizeof pro_srv.extra, "--enable-debug-command local");
    return pro_setup_redis(state);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stall_single, setup, pro_teardown),
        cmocka_unit_test_setup_teardown(test_stall_batch8, setup, pro_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
