/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* redis-sentinel:// against real processes: a master, its replica and three
 * sentinels (redis-server --sentinel), all started here. A worker and a
 * producer run through the sentinels; SENTINEL FAILOVER promotes the
 * replica, the old master is then killed, and both must carry on against
 * the new master within a bounded time, losing nothing that Redis had
 * replicated. The CLI works through the sentinels too. Everything runs
 * twice: in plain TCP (redis-sentinel://) and with every process on TLS
 * (rediss-sentinel://: TLS to the sentinels, to the masters, and in
 * replication), from support/sentinel_fixture.c. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"
#include "harness.h"
#include "sentinel_fixture.h"
#include "test_skip.h"

static test_sentinel S;
static const char *url;
static int ready;

static int
setup_with(int tls)
{
    S.tls = tls;
    ready = test_sentinel_start(&S) == 0;
    url = S.url;
    return 0;
}

static int
setup_plain(void **state)
{
    (void)state;
    return setup_with(0);
}

static int
setup_tls(void **state)
{
    (void)state;
    return setup_with(1);
}

static int
teardown(void **state)
{
    (void)state;
    test_sentinel_stop(&S);
    return 0;
}

#define NJOBS 1200
static atomic_int seen[NJOBS];
static atomic_int nran;
static const test_seen seen_all = {seen, NJOBS, &nran};
static double last_run; /* test_now() of the latest job (under mu) */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int
h_ok(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    test_seen_add(&seen_all, job);
    pthread_mutex_lock(&mu);
    last_run = test_now();
    pthread_mutex_unlock(&mu);
    return 0;
}

typedef struct range {
    int from, to;
} range;

static int
ran_range(void *arg)
{
    range *g = arg;
    for (int i = g->from; i < g->to; i++)
        if (!atomic_load(&seen[i]))
            return 0;
    return 1;
}

/* Push jobs [from, to) through the sentinels, retrying each until Redis
 * takes it; the number of failed attempts. */
static int
push_range(dray_client *c, int from, int to)
{
    int retries = 0;
    double deadline = test_now() + 30;
    for (int i = from; i < to; i++)
        while (test_push_arg(c, "Ok", i)) {
            if (test_now() > deadline)
                fail_msg("push %d: Redis took no job for 30 s: %s", i, dray_client_errstr(c));
            retries++;
            dray__sleep_ms(50);
        }
    return retries;
}

static void
test_failover_then_kill_old_master(void **state)
{
    (void)state;
    if (!ready)
        TEST_SKIP();
    dray_options o;
    dray_options_init(&o);
    o.redis_url = url;
    o.concurrency = 4;
    o.heartbeat_s = 1;
    o.poll_interval_s = 0.2;
    o.shutdown_timeout_s = 5;
    o.connect_timeout_ms = 500;
    o.log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_ERROR;
    char ca[400];
    snprintf(ca, sizeof ca, "%s/ca.pem", S.certs);
    if (S.tls)
        o.redis_tls_ca_file = ca;
    for (int i = 0; i < NJOBS; i++)
        atomic_store(&seen[i], 0);
    atomic_store(&nran, 0);
    test_running r;
    test_server_new(&r, &o);
    assert_int_equal(dray_server_register(r.s, "Ok", h_ok, NULL, NULL), 0);
    test_server_go(&r);
    char err[256];
    dray_client *c;
    assert_int_equal(dray_client_new(&o, &c, err, sizeof err), 0);

    /* Phase 1: through the sentinels to the first master. */
    range a = {0, 400};
    assert_int_equal(push_range(c, a.from, a.to), 0);
    assert_true(test_wait_until(ran_range, &a, 20));
    range b = {400, 800}; /* left in the queue while no worker drains them fast */
    push_range(c, b.from, b.to);
    assert_true(
        test_wait_until(test_sentinel_replica_in_sync, &S, 10)); /* what async replication needs */

    /* Failover, then the old master dies. */
    double t0 = test_now();
    assert_int_equal(test_sentinel_failover(&S), 0);
    assert_true(test_wait_until(test_sentinel_switched, &S, 20));
    double switched = test_now();
    test_sentinel_reap(&S.mpid);
    double killed = test_now();

    /* Phase 3: the producer and the workers carry on against the new master. */
    range d = {800, NJOBS};
    int retries = push_range(c, d.from, d.to);
    double pushed = test_now();
    range all = {0, NJOBS};
    assert_true(test_wait_until(ran_range, &all, 30));
    pthread_mutex_lock(&mu);
    double done = last_run;
    pthread_mutex_unlock(&mu);
    int missing = 0;
    for (int i = 0; i < NJOBS; i++)
        missing += !atomic_load(&seen[i]);
    printf("# failover (%s): sentinels switched %.0f ms after SENTINEL FAILOVER; after the old "
           "master's kill the producer pushed %d jobs in %.0f ms (%d retries) and all %d jobs "
           "had run %.0f ms after the kill; %d lost, %d ran twice\n",
           S.tls ? "TLS" : "plain", (switched - t0) * 1000, d.to - d.from, (pushed - killed) * 1000,
           retries, NJOBS, (done - killed) * 1000, missing, atomic_load(&nran) - NJOBS);
    assert_int_equal(missing, 0);
    assert_true(done - killed < 15.0);

    /* The CLI through the sentinels sees the new master's counters. */
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "env DRAY_REDIS_URL=%s %s%s %s stats --json 2>&1", url,
             S.tls ? "DRAY_REDIS_TLS_CA_FILE=" : "", S.tls ? ca : "", DRAY_CLI_PATH);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    if (st != 0 || !strstr(out, "\"processed\""))
        fail_msg("dray stats through sentinel: status %d: %s", st, out);

    dray_client_free(c);
    test_server_finish(&r);
}

static void
test_no_sentinel_answers(void **state)
{
    (void)state;
    if (!ready)
        TEST_SKIP();
    char u[200];
    int dead = test_free_port();
    snprintf(u, sizeof u, "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d/nosuchmaster", dead,
             S.stls[1]);
    dray_options o;
    dray_options_init(&o);
    o.redis_url = u;
    o.connect_timeout_ms = 500;
    dray_client *c;
    char err[256];
    assert_int_equal(dray_client_new(&o, &c, err, sizeof err), 0);
    double t0 = test_now();
    int e = test_push_arg(c, "Ok", 1);
    double ms = (test_now() - t0) * 1000;
    assert_int_equal(e, DRAY_ECONN);
    const char *m = dray_client_errstr(c);
    if (!strstr(m, "no master 'nosuchmaster' from the sentinels") ||
        !strstr(m, "Connection refused") || !strstr(m, "unknown master"))
        fail_msg("message: %s", m);
    assert_true(ms < 3000);
    dray_client_free(c);
}

/* A master demoted under dray: its write refusal (READONLY) drops the link
 * and says "nothing written" (DRAY_ECONN), for single commands and
 * pipelines, so callers reconnect (through the sentinels) and retry. */
static void
test_readonly_reply_drops_the_link(void **state)
{
    (void)state;
    test_redis one = {0};
    if (test_redis_start(&one))
        fail_msg("redis-server did not start");
    dray__redis_cfg cfg;
    char err[256];
    dray_options o;
    dray_options_init(&o);
    o.redis_url = one.url;
    assert_int_equal(dray__redis_cfg_init(&cfg, &o, err, sizeof err), 0);
    dray__conn c;
    dray__conn_init(&c, &cfg);
    assert_int_equal(dray__conn_cmdf(&c, NULL, "LPUSH k a"), 0);
    /* Demote it: a replica of a master that is not there stays read-only. */
    redisContext *rc = test_redis_connect(&one);
    redisReply *r = test_redis_cmd(rc, "REPLICAOF 127.0.0.1 %d", test_free_port());
    freeReplyObject(r);
    redisFree(rc);

    assert_int_equal(dray__conn_cmdf(&c, NULL, "LPUSH k b"), DRAY_ECONN);
    assert_non_null(strstr(c.errstr, "READONLY"));
    assert_null(c.ctx); /* dropped: the next command reconnects */

    dray__pipe p;
    dray__pipe_init(&p, &c);
    dray__pipe_addf(&p, "LPUSH k c");
    dray__pipe_addf(&p, "LPUSH k d");
    assert_int_equal(dray__pipe_run(&p), DRAY_ECONN);
    assert_int_equal(p.cmd[0].st, DRAY_ECONN);
    assert_int_equal(p.cmd[1].st, DRAY_ECONN);
    dray__pipe_close(&p);
    assert_null(c.ctx);

    dray__pipe_init(&p, &c);
    dray__pipe_begin(&p);
    dray__pipe_addf(&p, "LPUSH k e");
    dray__pipe_commit(&p);
    assert_int_equal(dray__pipe_run(&p), DRAY_ECONN);
    dray__pipe_close(&p);
    dray__conn_close(&c);
    dray__redis_cfg_close(&cfg);
    test_redis_stop(&one);
}

/* rediss-sentinel:// verifies the sentinels' certificates as rediss://
 * verifies a master's: without the CA every sentinel's refusal is named,
 * and a sentinel URL to plaintext ports fails fast, never downgrading. */
static void
test_tls_sentinel_refusals(void **state)
{
    (void)state;
    if (!ready)
        TEST_SKIP();
    dray_options o;
    dray_options_init(&o);
    o.redis_url = url;
    o.connect_timeout_ms = 500;
    dray_client *c;
    char err[256], u[320];
    assert_int_equal(dray_client_new(&o, &c, err, sizeof err), 0);
    double t0 = test_now();
    assert_int_equal(test_push_arg(c, "Ok", 1), DRAY_ECONN);
    const char *m = dray_client_errstr(c);
    if (!strstr(m, "no master 'mymaster' from the sentinels") || !strstr(m, "certificate"))
        fail_msg("no CA: %s", m);
    assert_true(test_now() - t0 < 3.0);
    dray_client_free(c);

    /* TLS spoken to the sentinels' plain ports. */
    char ca[400];
    snprintf(ca, sizeof ca, "%s/ca.pem", S.certs);
    snprintf(u, sizeof u, "rediss-sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster", S.sport[0],
             S.sport[1]);
    o.redis_url = u;
    o.redis_tls_ca_file = ca;
    assert_int_equal(dray_client_new(&o, &c, err, sizeof err), 0);
    t0 = test_now();
    assert_int_equal(test_push_arg(c, "Ok", 2), DRAY_ECONN);
    m = dray_client_errstr(c);
    if (!strstr(m, "no master 'mymaster' from the sentinels"))
        fail_msg("plaintext sentinels: %s", m);
    assert_true(test_now() - t0 < 3.0);
    dray_client_free(c);
    /* Nothing reached the master. */
    redisReply *r = test_sentinel_at(S.mport, "DBSIZE");
    assert_non_null(r);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

int
main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_readonly_reply_drops_the_link),
        cmocka_unit_test(test_no_sentinel_answers),
        cmocka_unit_test(test_failover_then_kill_old_master),
    };
    const struct CMUnitTest tls[] = {
        cmocka_unit_test(test_tls_sentinel_refusals),
        cmocka_unit_test(test_failover_then_kill_old_master),
    };
    int rc = cmocka_run_group_tests_name("sentinel", plain, setup_plain, teardown);
    rc += cmocka_run_group_tests_name("sentinel over TLS", tls, setup_tls, teardown);
    return test_exit_code(rc);
}
