/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Payloads other Sidekiq clients write, run by a real server against a real
 * redis-server: integers beyond 64 bits (Ruby bignums) run, the handler reads
 * their digits, and the retry set, the scheduler and the dead set keep them
 * byte for byte; jids that are not 24 hex characters run. Before the fix
 * both kinds went straight to the dead set as malformed. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dray/inspect.h"
#include "internal.h"
#include "harness.h"

#define BIG_ARGS "[18446744073709551616,-1180591620717411303424,123456789012345678901234567890]"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int runs;            /* handler calls */
static char seen[4][3][64]; /* digits of args[0..2], per call */
static char jids[8][160];   /* jids seen by the jid handler */
static int njids;

/* Fails the first time, succeeds after its retry. */
static int
h_big(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    json_t *a = dray_job_args(job);
    pthread_mutex_lock(&mu);
    int k = runs < 4 ? runs : 3;
    for (size_t i = 0; i < 3; i++) {
        const char *d = dray_json_bigint(json_array_get(a, i));
        snprintf(seen[k][i], sizeof seen[k][i], "%s", d ? d : "(not a bigint)");
    }
    runs++;
    pthread_mutex_unlock(&mu);
    if (dray_job_retry_count(job) < 0)
        return dray_result_fail(res, "RuntimeError", "first run fails");
    return 0;
}

static int
h_jid(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    pthread_mutex_lock(&mu);
    if (njids < 8)
        snprintf(jids[njids++], sizeof jids[0], "%s", dray_job_jid(job));
    pthread_mutex_unlock(&mu);
    return 0;
}

static double
backoff_2s(const dray_job *job, int count, void *ud)
{
    (void)job;
    (void)count;
    (void)ud;
    return 2.0;
}

static void
start(test_running *r)
{
    dray_options o;
    test_options(&o, NULL, 2);
    o.log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_OFF;
    test_server_new(r, &o);
    dray_class_opts co;
    memset(&co, 0, sizeof co);
    co.backoff = backoff_2s;
    assert_int_equal(dray_server_register(r->s, "Big", h_big, NULL, &co), 0);
    assert_int_equal(dray_server_register(r->s, "BigDies", test_h_fail, NULL, NULL), 0);
    assert_int_equal(dray_server_register(r->s, "Jid", h_jid, NULL, NULL), 0);
    test_server_go(r);
}

static int
runs_at_least(void *arg)
{
    pthread_mutex_lock(&mu);
    int ok = runs >= *(int *)arg;
    pthread_mutex_unlock(&mu);
    return ok;
}

static int
jids_at_least(void *arg)
{
    pthread_mutex_lock(&mu);
    int ok = njids >= *(int *)arg;
    pthread_mutex_unlock(&mu);
    return ok;
}

/* Non-zero once the sorted set named by key has a member. */
static int
zset_not_empty(void *key)
{
    return test_int("ZCARD %s", (const char *)key) > 0;
}

/* The only member of zset key (a new string, free()). */
static char *
only_member(const char *key)
{
    redisReply *r = test_redis_cmd(test_rc, "ZRANGE %s 0 -1", key);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    char *m = strdup(r->element[0]->str);
    freeReplyObject(r);
    return m;
}

static void
test_bignums_run_and_keep_digits(void **state)
{
    (void)state;
    test_flush(state);
    /* as Ruby's Sidekiq writes them */
    freeReplyObject(test_redis_cmd(test_rc, "SADD queues default"));
    freeReplyObject(test_redis_cmd(
        test_rc, "LPUSH queue:default %s",
        "{\"class\":\"Big\",\"args\":" BIG_ARGS ",\"retry\":true,\"queue\":\"default\","
        "\"jid\":\"b1b2b3b4b5b6b7b8b9b0b1b2\",\"created_at\":1700000000.25,"
        "\"enqueued_at\":1700000000.5}"));
    freeReplyObject(test_redis_cmd(
        test_rc, "LPUSH queue:default %s",
        "{\"class\":\"BigDies\",\"args\":" BIG_ARGS ",\"retry\":0,\"queue\":\"default\","
        "\"jid\":\"d1d2d3d4d5d6d7d8d9d0d1d2\",\"created_at\":1700000000.25}"));
    test_running r;
    start(&r);

    /* first run fails: the retry set holds the digits byte for byte */
    int one = 1, two = 2;
    int ran = test_wait_until(runs_at_least, &one, 15);
    print_message("bignum job: handler runs %d\n", runs);
    assert_true(ran);
    assert_true(test_wait_until(zset_not_empty, "retry", 15));
    char *m = only_member("retry");
    assert_non_null(strstr(m, "\"args\":" BIG_ARGS ","));
    assert_non_null(strstr(m, "\"retry_count\":0"));
    assert_null(strstr(m, "bigint"));
    free(m);

    /* retry_count 0 ("straight to dead"): the dead set keeps the digits */
    assert_true(test_wait_until(zset_not_empty, "dead", 15));
    m = only_member("dead");
    assert_non_null(strstr(m, "\"class\":\"BigDies\""));
    assert_non_null(strstr(m, "\"args\":" BIG_ARGS ","));
    free(m);

    /* the scheduler moves it back after 2 s; the second run sees the same digits */
    assert_true(test_wait_until(runs_at_least, &two, 15));
    test_server_finish(&r);
    static const char *const want[3] = {"18446744073709551616", "-1180591620717411303424",
                                        "123456789012345678901234567890"};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++)
            assert_string_equal(seen[k][i], want[i]);
    redisReply *x = test_redis_cmd(test_rc, "ZCARD retry");
    assert_int_equal(x->integer, 0);
    freeReplyObject(x);

    /* "retry now" from the dead set (the CLI's path) keeps the digits too */
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    dray_api *api;
    assert_int_equal(dray_api_new(&o, &api, NULL, 0), 0);
    int moved = dray_api_set_retry(api, DRAY_SET_DEAD, "d1d2d3d4d5d6d7d8d9d0d1d2");
    if (moved)
        fail_msg("retry from the dead set: %s: %s", dray_err_name(moved), dray_api_errstr(api));
    dray_api_free(api);
    x = test_redis_cmd(test_rc, "LRANGE queue:default 0 -1");
    assert_int_equal(x->elements, 1);
    assert_non_null(strstr(x->element[0]->str, "\"args\":" BIG_ARGS ","));
    freeReplyObject(x);
}

static void
test_foreign_jids_run(void **state)
{
    (void)state;
    test_flush(state);
    static const char *const want[3] = {"abc", "0f8fad5b-d9cb-469f-a165-70867728950e",
                                        "0123456789abcdef0123456789abcdef"};
    freeReplyObject(test_redis_cmd(test_rc, "SADD queues default"));
    for (int i = 0; i < 3; i++) {
        char p[256];
        snprintf(p, sizeof p,
                 "{\"class\":\"Jid\",\"args\":[%d],\"jid\":\"%s\",\"queue\":\"default\"}", i,
                 want[i]);
        freeReplyObject(test_redis_cmd(test_rc, "LPUSH queue:default %s", p));
    }
    test_running r;
    start(&r);
    int three = 3;
    int ok = test_wait_until(jids_at_least, &three, 15);
    test_server_finish(&r);
    print_message("foreign jids run: %d of 3\n", njids);
    assert_true(ok);
    for (int i = 0; i < 3; i++) {
        int found = 0;
        for (int k = 0; k < njids; k++)
            found |= !strcmp(jids[k], want[i]);
        assert_true(found);
    }
    redisReply *x = test_redis_cmd(test_rc, "ZCARD dead");
    assert_int_equal(x->integer, 0);
    freeReplyObject(x);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bignums_run_and_keep_digits),
        cmocka_unit_test(test_foreign_jids_run),
    };
    return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
