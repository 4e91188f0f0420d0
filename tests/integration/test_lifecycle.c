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
#include "harness.h"

/* What the handlers saw; reset before each test. */
static atomic_int runs;            /* handler entries */
static atomic_int finished;        /* handler returns */
static atomic_int release;         /* blocking handlers return once this is set */
static atomic_int fail_on_release; /* then they fail instead of succeeding */
static atomic_int release_fail;    /* SlowFail handlers return (failing) once set */
static atomic_int retrying_lines;  /* log lines saying a write is being retried */

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
    test_wait_until(test_flag_set, &release, 60);
    atomic_fetch_add(&finished, 1);
    if (atomic_load(&fail_on_release))
        return dray_result_fail(res, "SlowError", "failed after the stop");
    return 0;
}

/* Runs until the test releases it, then fails. */
static int
h_slow_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)ud;
    atomic_fetch_add(&runs, 1);
    test_wait_until(test_flag_set, &release_fail, 60);
    atomic_fetch_add(&finished, 1);
    return dray_result_fail(res, "SlowError", "failed while redis was down");
}

static pthread_mutex_t lost_mu = PTHREAD_MUTEX_INITIALIZER;
static char lost_log[8192]; /* ERROR lines that say "lost" */

/* Runs until the test releases it, then asks to run again in 60 s. */
static int
h_slow_defer(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)ud;
    atomic_fetch_add(&runs, 1);
    test_wait_until(test_flag_set, &release_fail, 60);
    atomic_fetch_add(&finished, 1);
    return dray_result_defer(res, 60, "not now");
}

static void
count_sink(dray_log_level level, const char *line, void *ud)
{
    (void)ud;
    if (strstr(line, "retrying for up to"))
        atomic_fetch_add(&retrying_lines, 1);
    if (level == DRAY_LOG_ERROR && strstr(line, "lost")) {
        pthread_mutex_lock(&lost_mu);
        size_t n = strlen(lost_log);
        snprintf(lost_log + n, sizeof lost_log - n, "%s\n", line);
        pthread_mutex_unlock(&lost_mu);
    }
    if (getenv("TEST_LOG"))
        fprintf(stderr, "%s\n", line);
}

static void
opts_for_test(dray_options *o, int conc, int timeout_s)
{
    test_options(o, "default", conc);
    o->poll_interval_s = 60; /* the poller must not move retries back */
    o->shutdown_timeout_s = timeout_s;
}

static void
start(test_running *r, dray_options *o, const dray_class_opts *fail_opts)
{
    test_server_new(r, o);
    assert_int_equal(dray_server_register(r->s, "Fail", h_fail, NULL, fail_opts), 0);
    assert_int_equal(dray_server_register(r->s, "Slow", h_slow, NULL, NULL), 0);
    assert_int_equal(dray_server_register(r->s, "SlowFail", h_slow_fail, NULL, NULL), 0);
    assert_int_equal(dray_server_register(r->s, "SlowDefer", h_slow_defer, NULL, NULL), 0);
    test_server_go(r);
}

static void
push_raw(const char *queue, const char *json)
{
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH queue:%s %s", queue, json));
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
    redisReply *r = test_redis_cmd(test_rc, "ZRANGE retry 0 -1 WITHSCORES");
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
each_setup(void **state)
{
    test_flush(state);
    atomic_store(&runs, 0);
    atomic_store(&finished, 0);
    atomic_store(&release, 0);
    atomic_store(&fail_on_release, 0);
    atomic_store(&release_fail, 0);
    atomic_store(&retrying_lines, 0);
    lost_log[0] = '\0';
    return 0;
}

/* Every payload of test_retry_count_extremes has its outcome in Redis. */
static int
outcomes_written(void *a)
{
    (void)a;
    return test_int("ZCARD retry") + test_int("ZCARD dead") >= 6 &&
           test_int("LLEN queue:default") == 0;
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
    test_running r;
    dray_options o;
    opts_for_test(&o, 2, 5);
    /* so huge counts are still below the limit and take the backoff path */
    dray_class_opts co = {.retry = INT_MAX};
    start(&r, &o, &co);
    want = 4;
    assert_true(test_wait_until(finished_reached, NULL, 20));
    /* the two malformed payloads never reach a handler: wait for every
     * outcome to be written, not only for the handlers */
    assert_true(test_wait_until(outcomes_written, NULL, 20));
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
    assert_int_equal(test_int("ZCARD retry"), 2);
    /* two exhausted + two malformed (not an integer count), kept whole */
    assert_int_equal(test_int("ZCARD dead"), 4);
    redisReply *d = test_redis_cmd(test_rc, "ZRANGE dead 0 -1");
    int malformed = 0;
    for (size_t i = 0; i < d->elements; i++) {
        /* a malformed payload is kept whole as args[0] of a Dray::MalformedJob */
        json_t *e = json_loads(d->element[i]->str, 0, NULL);
        const char *raw = json_string_value(json_array_get(json_object_get(e, "args"), 0));
        if (raw && !strcmp(json_string_value(json_object_get(e, "class")), "Dray::MalformedJob"))
            malformed +=
                strstr(raw, "1e30") != NULL || strstr(raw, "\"retry_count\":\"x\"") != NULL;
        json_decref(e);
    }
    freeReplyObject(d);
    assert_int_equal(malformed, 2);
    assert_int_equal(test_int("LLEN queue:default"), 0);
}

static int
queue_len_is_1(void *a)
{
    (void)a;
    return test_int("LLEN queue:default") == 1;
}

/* A handler that ignores the stop and finishes just after the shutdown
 * timeout requeued its job: it ran once, its outcome counts, and the
 * requeued copy is gone, so no process runs it again. */
static void
test_requeued_copy_removed_when_handler_finishes(void **state)
{
    (void)state;
    const char *job = "{\"class\":\"Slow\",\"jid\":\"b00000000000000000000001\",\"args\":[],"
                      "\"queue\":\"default\",\"retry\":true}";
    push_raw("default", job);
    test_running r;
    dray_options o;
    opts_for_test(&o, 1, 1);
    start(&r, &o, NULL);
    want = 1;
    assert_true(test_wait_until(runs_reached, NULL, 10));
    assert_int_equal(test_int("LLEN queue:default"), 0);
    double t0 = dray_now();
    dray_server_stop(r.s);
    /* the timeout expires and the job goes back; then the handler ends */
    assert_true(test_wait_until(queue_len_is_1, NULL, 10));
    double requeued_after = dray_now() - t0;
    redisReply *copy = test_redis_cmd(test_rc, "LINDEX queue:default 0");
    assert_string_equal(copy->str, job); /* the copy is the job, byte for byte */
    freeReplyObject(copy);
    atomic_store(&release, 1);
    pthread_join(r.th, NULL);
    assert_int_equal(r.rc, 0);
    dray_server_counts c;
    dray_server_counts_get(r.s, &c);
    dray_server_free(r.s);
    print_message("requeued %.2f s after the stop\n", requeued_after);
    assert_int_equal(atomic_load(&runs), 1);
    assert_int_equal(c.processed, 1);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    assert_int_equal(test_int("ZCARD retry"), 0);

    /* a second process finds nothing to run again */
    opts_for_test(&o, 1, 1);
    start(&r, &o, NULL);
    want = 1;
    int ran_again = test_wait_until(runs_reached, NULL, 0.5) && atomic_load(&runs) > 1;
    dray_server_stop(r.s);
    pthread_join(r.th, NULL);
    dray_server_free(r.s);
    assert_false(ran_again);
    assert_int_equal(atomic_load(&runs), 1);
}

static int
retrying_reached(void *a)
{
    (void)a;
    return atomic_load(&retrying_lines) >= want;
}

/* Push a SlowFail and a Slow job (jids <tag>0...01 and <tag>0...02; the
 * Slow payload into slow), run both on two workers, then kill Redis, stop
 * the server and let the SlowFail handler fail. Returns dray_now() at the
 * kill; r's server is stopping, its thread still to be joined. */
static double
two_running_then_redis_down(test_running *r, char tag, char *slow, size_t slowlen)
{
    char failing[256];
    snprintf(failing, sizeof failing,
             "{\"class\":\"SlowFail\",\"jid\":\"%c00000000000000000000001\","
             "\"args\":[],\"queue\":\"default\",\"retry\":true}",
             tag);
    snprintf(slow, slowlen,
             "{\"class\":\"Slow\",\"jid\":\"%c00000000000000000000002\",\"args\":[],"
             "\"queue\":\"default\",\"retry\":true}",
             tag);
    push_raw("default", failing);
    push_raw("default", slow);
    dray_log_set_sink(count_sink, NULL);
    dray_options o;
    opts_for_test(&o, 2, 1);
    o.log_level = DRAY_LOG_WARN;
    start(r, &o, NULL);
    want = 2;
    assert_true(test_wait_until(runs_reached, NULL, 10));
    redisFree(test_rc);
    test_rc = NULL;
    test_redis_kill(&test_srv);
    double t0 = dray_now();
    dray_server_stop(r->s);
    atomic_store(&release_fail, 1); /* fails now, with Redis gone */
    return t0;
}

/* Redis dies with two jobs running, then SIGTERM: one handler fails while
 * Redis is down, the other outlives the timeout. Redis comes back within
 * the write window: the failure lands in the retry set and the unfinished
 * job in its queue; nothing is lost. */
static void
test_redis_down_at_sigterm(void **state)
{
    (void)state;
    char slow[256];
    test_running r;
    double t0 = two_running_then_redis_down(&r, 'c', slow, sizeof slow);
    /* both writes (the failure, then the requeue at the timeout) retry */
    want = 2;
    int retried = test_wait_until(retrying_reached, NULL, 8);
    double down_for = dray_now() - t0;
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    test_rc = test_redis_connect(&test_srv);
    pthread_join(r.th, NULL);
    double stop_took = dray_now() - t0;
    assert_int_equal(r.rc, 0);
    print_message("redis down %.2f s at the stop; the stop took %.2f s\n", down_for, stop_took);

    double score;
    long long count;
    int lost = 0;
    if (retry_entry("c00000000000000000000001", &score, &count))
        lost++;
    redisReply *q = test_redis_cmd(test_rc, "LRANGE queue:default 0 -1");
    if (!(q->elements == 1 && !strcmp(q->element[0]->str, slow)))
        lost++;
    freeReplyObject(q);
    print_message("jobs lost: %d of 2\n", lost);
    assert_true(retried);
    assert_int_equal(lost, 0);
    assert_int_equal(count, 0);

    /* the slow one finishes after all: it ran once and its copy goes */
    atomic_store(&release, 1);
    dray_server_free(r.s);
    dray_log_set_sink(NULL, NULL);
    assert_int_equal(atomic_load(&runs), 2);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    assert_int_equal(test_int("ZCARD retry"), 1);
}

/* Redis stays down past the write window: the stop still ends (bounded),
 * and each job it could not write is logged whole at ERROR as lost. */
static void
test_redis_down_for_good_logs_lost(void **state)
{
    (void)state;
    char slow[256];
    test_running r;
    double t0 = two_running_then_redis_down(&r, 'e', slow, sizeof slow);
    assert_true(test_wait_until(test_server_done, &r, 60));
    double took = dray_now() - t0;
    pthread_join(r.th, NULL);
    print_message("the stop took %.1f s with redis down (timeout 1 s)\n", took);
    pthread_mutex_lock(&lost_mu);
    /* the retry payload is the job with its failure fields, as written */
    const char *rl = strstr(lost_log, "retry not recorded");
    int failing_logged = rl && strstr(rl, "e00000000000000000000001") && strstr(rl, "SlowError");
    int slow_logged = strstr(lost_log, slow) != NULL;
    pthread_mutex_unlock(&lost_mu);
    if (!failing_logged || !slow_logged)
        print_message("lost lines:\n%s", lost_log);
    assert_true(failing_logged); /* its retry, whole */
    assert_true(slow_logged);    /* its requeue, whole */
    assert_true(took < 1 + 25);
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    test_rc = test_redis_connect(&test_srv);
    atomic_store(&release, 1);
    dray_server_free(r.s);
    dray_log_set_sink(NULL, NULL);
}

static int
schedule_has_1(void *a)
{
    (void)a;
    return test_int("ZCARD schedule") == 1;
}

/* A handler defers its job while Redis is down (no stop involved): the
 * schedule-set write retries and lands when Redis is back. */
static void
test_defer_during_outage_lands(void **state)
{
    (void)state;
    push_raw("default", "{\"class\":\"SlowDefer\",\"jid\":\"f00000000000000000000001\","
                        "\"args\":[],\"queue\":\"default\",\"retry\":true}");
    dray_log_set_sink(count_sink, NULL);
    test_running r;
    dray_options o;
    opts_for_test(&o, 1, 5);
    o.log_level = DRAY_LOG_WARN;
    start(&r, &o, NULL);
    want = 1;
    assert_true(test_wait_until(runs_reached, NULL, 10));
    redisFree(test_rc);
    test_rc = NULL;
    test_redis_kill(&test_srv);
    atomic_store(&release_fail, 1);
    want = 1;
    int retried = test_wait_until(retrying_reached, NULL, 5);
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    test_rc = test_redis_connect(&test_srv);
    int landed = test_wait_until(schedule_has_1, NULL, 10);
    dray_server_stop(r.s);
    pthread_join(r.th, NULL);
    dray_server_free(r.s);
    dray_log_set_sink(NULL, NULL);
    print_message("deferred job in the schedule set after the outage: %s\n", landed ? "yes" : "no");
    assert_true(landed);
    assert_true(retried);
    redisReply *z = test_redis_cmd(test_rc, "ZRANGE schedule 0 -1");
    assert_int_equal(z->elements, 1);
    assert_non_null(strstr(z->element[0]->str, "f00000000000000000000001"));
    assert_non_null(strstr(z->element[0]->str, "\"deferred\":1"));
    freeReplyObject(z);
}

/* A payload that says it was deferred INT64_MAX times is deferred again:
 * the count stays at the largest integer (it overflowed, undefined
 * behaviour, and was written back as INT64_MIN). */
static void
test_defer_count_saturates(void **state)
{
    (void)state;
    push_raw("default", "{\"class\":\"SlowDefer\",\"jid\":\"f00000000000000000000002\","
                        "\"args\":[],\"queue\":\"default\",\"deferred\":9223372036854775807}");
    test_running r;
    dray_options o;
    opts_for_test(&o, 1, 5);
    start(&r, &o, NULL);
    atomic_store(&release_fail, 1);
    int landed = test_wait_until(schedule_has_1, NULL, 10);
    dray_server_stop(r.s);
    pthread_join(r.th, NULL);
    dray_server_free(r.s);
    assert_true(landed);
    redisReply *z = test_redis_cmd(test_rc, "ZRANGE schedule 0 -1");
    assert_int_equal(z->elements, 1);
    print_message("deferred again: %s\n", z->element[0]->str);
    assert_non_null(strstr(z->element[0]->str, "f00000000000000000000002"));
    assert_non_null(strstr(z->element[0]->str, "\"deferred\":9223372036854775807"));
    freeReplyObject(z);
}

typedef struct freeing {
    dray_server *s;
    atomic_int returned;
} freeing;

static void *
free_main(void *arg)
{
    freeing *f = arg;
    dray_server_free(f->s);
    atomic_store(&f->returned, 1);
    return NULL;
}

/* Embedded use: stop_now while a handler runs, then free. free must wait
 * for the handler (which then records its outcome through the server), not
 * free what it uses (ASan: heap-use-after-free on the old code). */
static void
test_free_waits_for_running_handler(void **state)
{
    (void)state;
    push_raw("default", "{\"class\":\"Slow\",\"jid\":\"d00000000000000000000001\",\"args\":[],"
                        "\"queue\":\"default\",\"retry\":true}");
    test_running r;
    dray_options o;
    opts_for_test(&o, 1, 25);
    start(&r, &o, NULL);
    want = 1;
    assert_true(test_wait_until(runs_reached, NULL, 10));
    dray_server_stop_now(r.s);
    pthread_join(r.th, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(dray_server_wait(r.s, 0), DRAY_ESTATE);
    assert_int_equal(test_int("LLEN queue:default"), 1); /* requeued at once */

    freeing f = {.s = r.s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, free_main, &f), 0);
    /* free must still be waiting 2 s later: the handler has not returned */
    int returned_early = test_wait_until(test_flag_set, &f.returned, 2.0);
    atomic_store(&fail_on_release, 1); /* its failure goes through the server */
    atomic_store(&release, 1);
    pthread_join(th, NULL);
    assert_false(returned_early);
    assert_int_equal(atomic_load(&finished), 1);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    assert_int_equal(test_int("ZCARD retry"), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_retry_count_extremes, each_setup),
        cmocka_unit_test_setup(test_requeued_copy_removed_when_handler_finishes, each_setup),
        cmocka_unit_test_setup(test_redis_down_at_sigterm, each_setup),
        cmocka_unit_test_setup(test_redis_down_for_good_logs_lost, each_setup),
        cmocka_unit_test_setup(test_defer_during_outage_lands, each_setup),
        cmocka_unit_test_setup(test_defer_count_saturates, each_setup),
        cmocka_unit_test_setup(test_free_waits_for_running_handler, each_setup),
    };
    return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
