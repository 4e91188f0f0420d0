/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Pro's reliable fetch through Redis Sentinel (support/sentinel_fixture.c:
 * master, replica, three sentinels). A worker in this process, with
 * dray-pro-test.so loaded and licensed, drains a backlog through
 * redis-sentinel://; while jobs are being fetched and run, SENTINEL
 * FAILOVER promotes the replica and the old master is then SIGKILLed. Every
 * job Redis acknowledged (pushed, and replicated before the failover) must
 * run; the jobs the producer pushes after the kill too. A job may run twice
 * (its fetch or acknowledgement written on the old master after the
 * replica's promotion was never replicated): counted and printed, never
 * lost. Runs in plain TCP, or over TLS (rediss-sentinel://) with argument
 * `tls` (ctest test_pro_sentinel_tls).
 *
 * PRO_SENTINEL_FETCH=basic runs the same with pro.reliable_fetch off, for
 * comparison (the numbers it prints).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "pro_test.h"
#include "sentinel_fixture.h"
#include "test_skip.h"

#define NJOBS 3000 /* the backlog the failover hits */
#define NLATE 500  /* pushed after the old master's kill */
#define NALL (NJOBS + NLATE)

static test_sentinel S;
static atomic_int seen[NALL];
static atomic_int nran;
static const test_seen seen_all = {seen, NALL, &nran};

static int
h_work(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    test_seen_add(&seen_all, job);
    struct timespec ts = {0, 4 * 1000 * 1000}; /* a job's work: keeps a backlog */
    nanosleep(&ts, NULL);
    return 0;
}

static int
all_ran(void *arg)
{
    (void)arg;
    for (int i = 0; i < NALL; i++)
        if (!atomic_load(&seen[i]))
            return 0;
    return 1;
}

/* Nothing left in the new master's queue nor in any work-in-progress list. */
static int
drained(void *arg)
{
    (void)arg;
    redisReply *r = test_sentinel_at(S.rport, "EVAL %s 0",
                                     "local n = redis.call('LLEN', 'queue:default') "
                                     "for _, k in ipairs(redis.call('KEYS', 'pro:fetch:wip:*')) do "
                                     "n = n + redis.call('LLEN', k) end return n");
    int ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    if (r)
        freeReplyObject(r);
    return ok;
}

static void
run_failover(int tls)
{
    S.tls = tls;
    if (test_sentinel_start(&S)) {
        test_sentinel_stop(&S);
        TEST_SKIP();
    }
    int basic = getenv("PRO_SENTINEL_FETCH") && !strcmp(getenv("PRO_SENTINEL_FETCH"), "basic");
    for (int i = 0; i < NALL; i++)
        atomic_store(&seen[i], 0);
    atomic_store(&nran, 0);

    char ca[400];
    snprintf(ca, sizeof ca, "%s/ca.pem", S.certs);
    dray_options o;
    dray_options_init(&o);
    o.redis_url = S.url;
    o.concurrency = 4;
    o.heartbeat_s = 1;
    o.poll_interval_s = 0.2;
    o.shutdown_timeout_s = 5;
    o.connect_timeout_ms = 500;
    o.log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_ERROR;
    if (tls)
        o.redis_tls_ca_file = ca;
    char err[512];

    /* The backlog, acknowledged by the master and replicated. */
    dray_client *c;
    assert_int_equal(dray_client_new(&o, &c, err, sizeof err), 0);
    json_t *list = json_array();
    for (int i = 0; i < NJOBS; i++)
        json_array_append_new(list, json_pack("[i]", i));
    size_t pushed = 0;
    assert_int_equal(dray_client_push_bulk(c, "Work", list, NULL, NULL, &pushed), 0);
    json_decref(list);
    assert_int_equal((int)pushed, NJOBS);
    assert_true(test_wait_until(test_sentinel_replica_in_sync, &S, 10));

    test_running r;
    test_server_new(&r, &o);
    assert_int_equal(dray_server_set_config(r.s, "license", pro_license_default()), 0);
    if (basic)
        assert_int_equal(dray_server_set_config(r.s, "pro.reliable_fetch", "no"), 0);
    if (dray_server_load_module(r.s, PRO_MODULE, err, sizeof err))
        fail_msg("load %s: %s", PRO_MODULE, err);
    assert_int_equal(dray_server_register(r.s, "Work", h_work, NULL, NULL), 0);
    test_server_go(&r);

    /* Failover while jobs are being fetched and run, then the kill. */
    test_at_least some = {&nran, NJOBS / 6};
    assert_true(test_wait_until(test_reached, &some, 30));
    double t0 = test_now();
    int at_failover = atomic_load(&nran);
    assert_int_equal(test_sentinel_failover(&S), 0);
    assert_true(test_wait_until(test_sentinel_switched, &S, 20));
    double sw = test_now();
    int at_switch = atomic_load(&nran);
    test_sentinel_reap(&S.mpid);
    double killed = test_now();

    /* The producer carries on against the new master. */
    int retries = 0;
    for (int i = NJOBS; i < NALL; i++) {
        json_t *args = json_pack("[i]", i);
        while (dray_client_push(c, "Work", args, NULL, NULL)) {
            retries++;
            struct timespec back = {0, 50 * 1000 * 1000}; /* retry backoff, not a wait */
            nanosleep(&back, NULL);
        }
        json_decref(args);
    }
    int ok = test_wait_until(all_ran, NULL, 60);
    double done = test_now();
    int empty = test_wait_until(drained, NULL, 30);
    int missing = 0, twice = 0;
    for (int i = 0; i < NALL; i++) {
        missing += !atomic_load(&seen[i]);
        twice += atomic_load(&seen[i]) > 1;
    }
    printf("# pro %s fetch through sentinel (%s): failover at %d of %d jobs run, switched in "
           "%.0f ms (%d run meanwhile); after the kill %d pushes (%d retries), all run %.0f ms "
           "after the kill; %d lost, %d ran twice, queue and wip lists %s\n",
           basic ? "basic" : "reliable", tls ? "TLS" : "plain", at_failover, NJOBS,
           (sw - t0) * 1000, at_switch - at_failover, NLATE, retries, (done - killed) * 1000,
           missing, twice, empty ? "empty" : "NOT empty");
    assert_int_equal(missing, 0);
    assert_true(ok);
    assert_true(empty);
    assert_true(done - killed < 30.0);

    dray_client_free(c);
    test_server_finish(&r);
    test_sentinel_stop(&S);
}

static void
test_reliable_fetch_failover(void **state)
{
    (void)state;
    run_failover(0);
}

static void
test_reliable_fetch_failover_tls(void **state)
{
    (void)state;
    run_failover(1);
}

static int
teardown(void **state)
{
    (void)state;
    test_sentinel_stop(&S);
    return 0;
}

/* Modules stay loaded for the life of a process: one variant per run.
 * usage: test_pro_sentinel [tls] */
int
main(int argc, char **argv)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test_teardown(test_reliable_fetch_failover, teardown),
    };
    const struct CMUnitTest tls[] = {
        cmocka_unit_test_teardown(test_reliable_fetch_failover_tls, teardown),
    };
    int rc = argc > 1 && !strcmp(argv[1], "tls") ? cmocka_run_group_tests(tls, NULL, NULL)
                                                 : cmocka_run_group_tests(plain, NULL, NULL);
    return test_exit_code(rc);
}
