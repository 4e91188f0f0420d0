/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Execution metrics (issue 11): jobs run by dray show up in Sidekiq 7.3.9's
 * own Sidekiq::Metrics::Query (what its Metrics page reads) with the right
 * processed/failed counts, time and histogram; the keys are Sidekiq's, with
 * its TTLs; the "metrics" setting turns them off. Sidekiq 6.4 has no metrics:
 * registered only as test_interop_metrics_sk7 (Skipped without
 * $DRAY_SIDEKIQ7_ENV). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "interop_support.h"

#define N_FAST 200
#define N_SLOW 6
#define N_FLAKY 7
#define N_WRAPPED 3
#define N_ODD 4
#define SLOW_MS 70

static char long_class[3001]; /* "Metrics::Long" then 'L' to 3000 bytes */
static const char *ODD_CLASS = "Metrics::\xc3\x9cnic\xc3\xb8"
                               "de Job";

static int
h_slow(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    struct timespec ts = {0, SLOW_MS * 1000000L}; /* the job's own work, not a wait */
    nanosleep(&ts, NULL);
    it_rec_add(job);
    return 0;
}

/* Builds long_class, then the shared setup. */
static int
metrics_setup(void **state)
{
    memcpy(long_class, "Metrics::Long", 13);
    memset(long_class + 13, 'L', sizeof long_class - 14);
    long_class[sizeof long_class - 1] = '\0';
    return it_setup(state);
}

static int want_runs; /* jobs the workload runs */
static void
push_n(dray_client *c, const char *klass, int n, int retry, json_t *extra)
{
    size_t pushed = 0;
    assert_int_equal(it_push_n(c, klass, NULL, retry, extra, n, NULL, &pushed), 0);
    assert_int_equal(pushed, (size_t)n);
}

/* Run the workload on a dray server (metrics on or off), stop it. */
static void
run_workload(int no_metrics)
{
    dray_options o;
    it_opts(&o, &it_srv, "default", 4);
    o.no_metrics = no_metrics;
    it_server *t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "Metrics::Fast", it_h_record, NULL, NULL), 0);
    assert_int_equal(dray_server_register(t->s, "Metrics::Slow", h_slow, NULL, NULL), 0);
    assert_int_equal(
        dray_server_register(t->s, "Metrics::Flaky", it_h_fail, "flaky on purpose", NULL), 0);
    assert_int_equal(dray_server_register(t->s, "Metrics::Wrapper", it_h_record, NULL, NULL), 0);
    assert_int_equal(dray_server_register(t->s, long_class, it_h_record, NULL, NULL), 0);
    assert_int_equal(dray_server_register(t->s, ODD_CLASS, it_h_record, NULL, NULL), 0);
    it_go(t);

    dray_client *c;
    assert_int_equal(it_client_new(NULL, &c), 0);
    push_n(c, "Metrics::Fast", N_FAST, 0, NULL);
    push_n(c, "Metrics::Slow", N_SLOW, 0, NULL);
    push_n(c, "Metrics::Flaky", N_FLAKY, DRAY_RETRY_NONE, NULL);
    json_t *wrapped = json_pack("{s:s}", "wrapped", "Metrics::Wrapped"); /* ActiveJob's shape */
    push_n(c, "Metrics::Wrapper", N_WRAPPED, 0, wrapped);
    json_decref(wrapped);
    push_n(c, long_class, N_ODD, 0, NULL);
    push_n(c, ODD_CLASS, N_ODD, 0, NULL);
    dray_client_free(c);

    want_runs = N_FAST + N_SLOW + N_FLAKY + N_WRAPPED + 2 * N_ODD;
    if (!it_wait_runs(want_runs, 30))
        fail_msg("dray ran %d of %d jobs", it_rec_total(), want_runs);
    it_finish(t); /* the stop flushes what the last minute counted */
}

static long long
total(const json_t *top, const char *klass, const char *metric)
{
    json_t *jr = json_object_get(top, klass);
    if (!jr)
        fail_msg("Sidekiq::Metrics::Query#top_jobs does not list %.60s", klass);
    json_t *v = json_object_get(jr, metric);
    return v ? json_integer_value(v) : 0;
}

static long long
hist_sum(const json_t *per, const char *klass, const char *const *labels)
{
    json_t *h = jget(jget(per, klass), "hist");
    long long n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v)
    {
        int in = !labels;
        for (int i = 0; labels && labels[i]; i++)
            in |= !strcmp(labels[i], k);
        if (in)
            n += json_integer_value(v);
    }
    return n;
}

/* A key written in the minute of now or the one before. */
static int
has_minute_key(const char *prefix_fmt_klass, int hist)
{
    time_t now = time(NULL);
    for (int back = 0; back <= 120; back += 60) {
        time_t t = now - back;
        struct tm tm;
        gmtime_r(&t, &tm);
        char key[3200];
        if (hist)
            snprintf(key, sizeof key, "%s-%02d-%02d:%d", prefix_fmt_klass, tm.tm_mday, tm.tm_hour,
                     tm.tm_min);
        else
            snprintf(key, sizeof key, "j|%04d%02d%02d|%d:%d", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min);
        long long ttl = it_rint(it_rc, "TTL %b", key, strlen(key));
        if (ttl > 0) {
            /* 8 hours, as SHORT_TERM and HISTOGRAM_TTL */
            assert_in_range(ttl, 28800 - 120, 28800);
            return 1;
        }
    }
    return 0;
}

static void
test_dray_jobs_in_sidekiq_metrics(void **state)
{
    (void)state;
    run_workload(0);
    json_t *classes = json_pack("[sssss]", "Metrics::Fast", "Metrics::Slow", "Metrics::Flaky",
                                "Metrics::Wrapped", ODD_CLASS);
    json_array_append_new(classes, json_string(long_class));
    json_t *r = sk_runf(it_srv.url, "metrics", "{s:o}", "classes", classes);
    json_t *top = jget(r, "top_jobs");
    json_t *per = jget(r, "for_job");

    assert_int_equal(total(top, "Metrics::Fast", "p"), N_FAST);
    assert_int_equal(total(top, "Metrics::Fast", "f"), 0);
    assert_int_equal(total(top, "Metrics::Slow", "p"), N_SLOW);
    assert_int_equal(total(top, "Metrics::Slow", "f"), 0);
    if (total(top, "Metrics::Slow", "ms") < N_SLOW * SLOW_MS)
        fail_msg("Metrics::Slow: %lld ms for %d runs of >= %d ms",
                 total(top, "Metrics::Slow", "ms"), N_SLOW, SLOW_MS);
    assert_int_equal(total(top, "Metrics::Flaky", "p"), N_FLAKY);
    assert_int_equal(total(top, "Metrics::Flaky", "f"), N_FLAKY);
    assert_int_equal(total(top, "Metrics::Flaky", "ms"), 0); /* failures add no time */
    /* a wrapped job counts under the class it wraps, as Sidekiq's middleware */
    assert_int_equal(total(top, "Metrics::Wrapped", "p"), N_WRAPPED);
    assert_null(json_object_get(top, "Metrics::Wrapper"));
    assert_int_equal(total(top, ODD_CLASS, "p"), N_ODD);
    assert_int_equal(total(top, long_class, "p"), N_ODD);
    assert_int_equal(json_object_size(top), 6);

    /* histograms: one count per successful run, none for failures */
    assert_int_equal(hist_sum(per, "Metrics::Fast", NULL), N_FAST);
    assert_int_equal(hist_sum(per, "Metrics::Slow", NULL), N_SLOW);
    static const char *const under_65[] = {"20ms", "30ms", "45ms", NULL};
    assert_int_equal(hist_sum(per, "Metrics::Slow", under_65), 0);
    assert_int_equal(hist_sum(per, "Metrics::Flaky", NULL), 0);
    assert_int_equal(hist_sum(per, "Metrics::Wrapped", NULL), N_WRAPPED);
    assert_int_equal(hist_sum(per, ODD_CLASS, NULL), N_ODD);
    assert_int_equal(hist_sum(per, long_class, NULL), N_ODD);
    double avg = jnum(jget(per, "Metrics::Slow"), "avg_ms");
    if (avg < SLOW_MS)
        fail_msg("Metrics::Slow average %.1f ms < %d", avg, SLOW_MS);

    /* Sidekiq's key names, byte for byte, with its TTLs */
    assert_true(has_minute_key(NULL, 0));
    assert_true(has_minute_key("Metrics::Fast", 1));
    assert_true(has_minute_key(ODD_CLASS, 1));
    assert_false(has_minute_key("Metrics::Flaky", 1));
    json_decref(r);
}

static void
test_metrics_off(void **state)
{
    (void)state;
    run_workload(1);
    json_t *r = sk_runf(it_srv.url, "metrics", "{s:[s]}", "classes", "Metrics::Fast");
    assert_int_equal(json_object_size(jget(r, "top_jobs")), 0);
    assert_int_equal(hist_sum(jget(r, "for_job"), "Metrics::Fast", NULL), 0);
    redisReply *k = test_redis_cmd(it_rc, "KEYS *");
    for (size_t i = 0; i < k->elements; i++)
        if (!strncmp(k->element[i]->str, "j|", 2) || strstr(k->element[i]->str, "Metrics::"))
            fail_msg("metrics off, but %s was written", k->element[i]->str);
    freeReplyObject(k);
    /* the jobs ran all the same */
    json_t *st = sk_run(it_srv.url, "stats", NULL);
    assert_int_equal(jint(st, "processed"), want_runs);
    json_decref(st);
    json_decref(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dray_jobs_in_sidekiq_metrics, it_each_setup,
                                        it_each_teardown),
        cmocka_unit_test_setup_teardown(test_metrics_off, it_each_setup, it_each_teardown),
    };
    return test_exit_code(cmocka_run_group_tests(tests, metrics_setup, it_teardown));
}
