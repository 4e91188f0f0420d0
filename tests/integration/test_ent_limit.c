/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Rate limits of dray Enterprise under contention from 4 worker processes
 * (ent_worker) on a real redis-server, measured by the handlers
 * themselves: never more than N concurrent holders, never more than N per
 * bucket or sliding window; deferred jobs keep their retry_count and never
 * spend a retry; after `reschedule` deferrals a job fails normally; a
 * crashed holder's slot is reclaimed after lock_timeout; per-tenant
 * limiters; fetch-time queue limits leave an over-limit queue untouched
 * while other queues are worked.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "dray/dray.h"
#include "ent_support.h"

#define NPROC 4

static dray_client *cli; /* plain pushes: no module needed in this process */

static void
start_workers(ent_proc *p, int n, const char *queues, int conc, const char *const *settings)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(ent_proc_start(&p[i], ent_srv.url, queues, conc, settings), 0);
}

static void
stop_workers(ent_proc *p, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(ent_proc_stop(&p[i]), 0);
}

static void
push(const char *klass, const char *args, const char *queue, const char *extra, int n)
{
    json_t *a = json_loads(args, 0, NULL), *x = extra ? json_loads(extra, 0, NULL) : NULL;
    assert_non_null(a);
    dray_push_opts po = {.queue = queue, .extra = x};
    for (int i = 0; i < n; i++)
        if (dray_client_push(cli, klass, a, &po, NULL))
            fail_msg("push: %s", dray_client_errstr(cli));
    json_decref(a);
    json_decref(x);
}

/* Every record of ent:test:ran, as a JSON array (new reference). */
static json_t *
ran(void)
{
    json_t *all = json_array();
    redisReply *r = test_redis_cmd(ent_rc, "LRANGE ent:test:ran 0 -1");
    for (size_t i = 0; i < r->elements; i++)
        json_array_append_new(all, json_loads(r->element[i]->str, 0, NULL));
    freeReplyObject(r);
    return all;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Start times the Stamp handlers wrote for group g, sorted; *n of them. */
static double *
stamps(const char *g, size_t *n)
{
    redisReply *r = test_redis_cmd(ent_rc, "LRANGE ent:test:stamps:%s 0 -1", g);
    double *t = calloc(r->elements + 1, sizeof *t);
    for (size_t i = 0; i < r->elements; i++)
        t[i] = atof(r->element[i]->str);
    *n = r->elements;
    freeReplyObject(r);
    qsort(t, *n, sizeof *t, cmp_double);
    return t;
}

/* Run `jobs` Stamp jobs tagged g on nproc (<= NPROC) workers of 4 threads
 * under limiter (one settings line), stop them; the start times, sorted
 * (the caller frees them). */
static double *
run_stamped(const char *limiter, int nproc, const char *g, int jobs, size_t *n)
{
    const char *settings[] = {limiter, NULL};
    ent_proc p[NPROC];
    char args[32];
    snprintf(args, sizeof args, "[\"%s\"]", g);
    start_workers(p, nproc, "default", 4, settings);
    push("Stamp", args, NULL, NULL, jobs);
    ent_wait_for("LLEN ent:test:ran", jobs, 120);
    stop_workers(p, nproc);
    return stamps(g, n);
}

static int
setup(void **state)
{
    if (ent_setup(state))
        return -1;
    dray_options o;
    dray_options_init(&o);
    o.redis_url = ent_srv.url;
    return dray_client_new(&o, &cli, NULL, 0);
}

static int
teardown(void **state)
{
    dray_client_free(cli);
    return ent_teardown(state);
}

/* ---- concurrent ------------------------------------------------------------------ */

static void
test_concurrent(void **state)
{
    (void)state;
    const char *settings[] = {
        "enterprise.limiter=conc concurrent 3 class=Conc backoff=0.02 reschedule=100000", NULL};
    ent_proc p[NPROC];
    start_workers(p, NPROC, "default", 4, settings);
    push("Conc", "[\"g\", 60]", NULL, NULL, 24);
    push("Conc", "[\"g\", 60]", NULL, "{\"retry_count\": 2}", 16);
    ent_wait_for("LLEN ent:test:ran", 40, 120);
    stop_workers(p, NPROC);
    long long max = ent_rint(ent_rc, "GET ent:test:max:g");
    printf("concurrent 3: 40 jobs, highest concurrency measured by the handlers %lld\n", max);
    assert_true(max <= 3);
    assert_true(max >= 2); /* 16 threads on 4 processes did contend */
    json_t *all = ran();
    int deferred = 0, kept = 0;
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
    {
        int rcount = (int)json_integer_value(json_object_get(r, "retry_count"));
        deferred += json_integer_value(json_object_get(r, "deferred")) > 0;
        /* deferrals never spend a retry: -1 (never failed) or the 2 pushed */
        assert_true(rcount == -1 || rcount == 2);
        kept += rcount == 2;
        assert_int_equal(json_integer_value(json_object_get(r, "overrated")),
                         0); /* reset on admission */
    }
    json_decref(all);
    printf("concurrent 3: %d of 40 jobs were deferred at least once\n", deferred);
    assert_true(deferred > 0);
    assert_int_equal(kept, 16);
    assert_int_equal(ent_rint(ent_rc, "ZCARD retry"), 0);
    assert_int_equal(ent_rint(ent_rc, "ZCARD ent:lmtr:conc:c"), 0); /* every slot given back */
    assert_true(ent_rint(ent_rc, "HGET ent:lmtr:conc overages") > 0);
    assert_int_equal(ent_rint(ent_rc, "HGET ent:lmtr:conc taken"), 40);
    assert_true(ent_rint(ent_rc, "ZSCORE ent:limiters conc") > 0);
}

static void
test_crashed_holder(void **state)
{
    (void)state;
    const char *settings[] = {
        "enterprise.limiter=solo concurrent 1 class=Block lock_timeout=2 backoff=0.1 "
        "reschedule=1000",
        NULL};
    ent_proc a, b;
    start_workers(&a, 1, "default", 1, settings);
    push("Block", "[1]", NULL, NULL, 1);
    ent_wait_for("LLEN ent:test:started", 1, 30);
    assert_int_equal(ent_rint(ent_rc, "ZCARD ent:lmtr:solo:c"), 1);
    ent_proc_kill(&a); /* dies holding the slot */
    start_workers(&b, 1, "default", 2, settings);
    push("Block", "[2]", NULL, NULL, 1);
    /* deferred while the dead holder's slot lives, run once it is reclaimed */
    double t0 = test_now();
    ent_wait_for("LLEN ent:test:started", 2, 30);
    double waited = test_now() - t0;
    printf("crashed holder: the next job started after %.2fs (lock_timeout 2s)\n", waited);
    assert_true(waited > 0.5);
    freeReplyObject(test_redis_cmd(ent_rc, "RPUSH ent:test:gate 1"));
    ent_wait_for("LLEN ent:test:ran", 1, 30);
    assert_int_equal(ent_proc_stop(&b), 0);
}

static void
test_reschedule_max(void **state)
{
    (void)state;
    const char *settings[] = {
        "enterprise.limiter=one concurrent 1 class=Block reschedule=2 backoff=0.05", NULL};
    ent_proc w;
    start_workers(&w, 1, "default", 2, settings);
    push("Block", "[1]", NULL, NULL, 1);
    ent_wait_for("LLEN ent:test:started", 1, 30);
    push("Block", "[2]", NULL, NULL, 1);
    /* deferred twice, then an ordinary failure: one retry spent */
    ent_wait_for("ZCARD retry", 1, 30);
    redisReply *r = test_redis_cmd(ent_rc, "ZRANGE retry 0 0");
    json_t *job = json_loads(r->element[0]->str, 0, NULL);
    freeReplyObject(r);
    const char *msg = json_string_value(json_object_get(job, "error_message"));
    assert_non_null(strstr(msg, "OverLimit: limiter one (concurrent, limit 1) still over its limit "
                                "after 2 reschedules"));
    assert_string_equal(json_string_value(json_object_get(job, "error_class")), "DrayHookError");
    assert_int_equal(json_integer_value(json_object_get(job, "retry_count")), 0);
    assert_int_equal(json_integer_value(json_object_get(job, "deferred")), 2);
    assert_null(json_object_get(job, "overrated")); /* reset (Sidekiq #6010) */
    json_decref(job);
    freeReplyObject(test_redis_cmd(ent_rc, "RPUSH ent:test:gate 1"));
    ent_wait_for("LLEN ent:test:ran", 1, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
}

static void
test_per_tenant(void **state)
{
    (void)state;
    const char *settings[] = {
        "enterprise.limiter=tenant-{arg0} concurrent 1 class=Tenant backoff=0.02 reschedule=100000",
        NULL};
    ent_proc p[2];
    start_workers(p, 2, "default", 4, settings);
    push("Tenant", "[\"acme\", 50]", NULL, NULL, 6);
    push("Tenant", "[\"globex\", 50]", NULL, NULL, 6);
    push("Tenant", "[\"bad name!\", 1]", NULL, NULL, 1);
    ent_wait_for("LLEN ent:test:ran", 12, 60);
    ent_wait_for("ZCARD retry", 1, 30);
    stop_workers(p, 2);
    assert_int_equal(ent_rint(ent_rc, "GET ent:test:max:acme"), 1);
    assert_int_equal(ent_rint(ent_rc, "GET ent:test:max:globex"), 1);
    assert_int_equal(ent_rint(ent_rc, "HGET ent:lmtr:tenant-acme taken"), 6);
    assert_int_equal(ent_rint(ent_rc, "HGET ent:lmtr:tenant-globex taken"), 6);
    redisReply *r = test_redis_cmd(ent_rc, "ZRANGE retry 0 0");
    assert_non_null(strstr(r->element[0]->str, "name 'tenant-bad name!' has illegal characters"));
    freeReplyObject(r);
}

/* wait=: a worker waits for room instead of deferring. */
static void
test_wait(void **state)
{
    (void)state;
    const char *settings[] = {"enterprise.limiter=wt concurrent 1 class=Conc wait=10 backoff=100",
                              NULL};
    ent_proc w;
    start_workers(&w, 1, "default", 3, settings);
    push("Conc", "[\"wt\", 200]", NULL, NULL, 3);
    ent_wait_for("LLEN ent:test:ran", 3, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    assert_int_equal(ent_rint(ent_rc, "GET ent:test:max:wt"), 1);
    assert_int_equal(ent_rint(ent_rc, "ZCARD schedule"), 0);
    json_t *all = ran();
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
        assert_int_equal(json_integer_value(json_object_get(r, "deferred")), 0);
    json_decref(all);
}

/* ---- rates ----------------------------------------------------------------------- */

static void
test_bucket(void **state)
{
    (void)state;
    size_t n;
    double *t = run_stamped(
        "enterprise.limiter=b5 bucket 5/second class=Stamp backoff=0.02 reschedule=100000", NPROC,
        "b", 30, &n);
    assert_int_equal(n, 30);
    /* A start at h in [k + eps, k + 1) was admitted in second k (the
     * handler starts within eps of its admission): at most 5 per second. */
    const double eps = 0.05;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        double k = floor(t[i]);
        int c = 0;
        for (size_t j = 0; j < n; j++)
            c += t[j] >= k + eps && t[j] < k + 1;
        if (c > worst)
            worst = c;
    }
    printf("bucket 5/second: 30 jobs over %.2fs, at most %d started in one second\n",
           t[n - 1] - t[0], worst);
    assert_true(worst <= 5);
    assert_true(t[n - 1] - t[0] >= 4.0); /* 30 jobs need 6 buckets */
    free(t);
}

static void
test_window(void **state)
{
    (void)state;
    size_t n;
    double *t =
        run_stamped("enterprise.limiter=w4 window 4/1s class=Stamp backoff=0.02 reschedule=100000",
                    NPROC, "w", 20, &n);
    assert_int_equal(n, 20);
    /* Admissions in any 1 s window <= 4; a start is at most eps after its
     * admission, so starts in [h, h + 1 - eps) <= 4. */
    const double eps = 0.05;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int c = 0;
        for (size_t j = i; j < n && t[j] < t[i] + 1 - eps; j++)
            c++;
        if (c > worst)
            worst = c;
    }
    printf("window 4/1s: 20 jobs over %.2fs, at most %d started in any 0.95s\n", t[n - 1] - t[0],
           worst);
    assert_true(worst <= 4);
    assert_true(t[n - 1] - t[0] >= 3.5);
    free(t);
}

static void
test_leaky(void **state)
{
    (void)state;
    size_t n;
    double *t =
        run_stamped("enterprise.limiter=lk leaky 4/1s class=Stamp backoff=0.02 reschedule=100000",
                    2, "l", 16, &n);
    /* A burst of 4, then 4 per second: in any interval of length L at most
     * 4 + 4 L start (plus the eps slack). */
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            double len = t[j] - t[i];
            if ((double)(j - i + 1) > 4 + 4 * (len + 0.05) + 1e-9)
                ok = 0;
        }
    printf("leaky 4/1s: 16 jobs over %.2fs\n", t[n - 1] - t[0]);
    assert_true(ok);
    assert_true(t[n - 1] - t[0] >= 2.5); /* 12 after the burst at 4/s */
    free(t);
}

/* ---- fetch time ------------------------------------------------------------------ */

static void
test_fetch_time(void **state)
{
    (void)state;
    const char *settings[] = {"enterprise.limiter=q2 concurrent 2 queue=throttled", NULL};
    ent_proc p[NPROC];
    start_workers(p, NPROC, "throttled default", 3, settings);
    push("Block", "[1]", "throttled", NULL, 10);
    ent_wait_for("LLEN ent:test:started", 2, 30);
    /* Other queues are worked meanwhile: 40 jobs on default run... */
    push("Record", "[1]", "default", NULL, 40);
    ent_wait_for("LLEN ent:test:ran", 40, 60);
    /* ...while the over-limit queue was not touched: no fetch, no reschedule. */
    assert_int_equal(ent_rint(ent_rc, "LLEN ent:test:started"), 2);
    assert_int_equal(ent_rint(ent_rc, "LLEN queue:throttled"), 8);
    assert_int_equal(ent_rint(ent_rc, "ZCARD schedule"), 0);
    assert_int_equal(ent_rint(ent_rc, "ZCARD ent:lmtr:q2:c"), 2);
    /* Release one at a time: one more starts each time, never more than 2 run. */
    for (int k = 1; k <= 8; k++) {
        freeReplyObject(test_redis_cmd(ent_rc, "RPUSH ent:test:gate 1"));
        char cmd[64];
        snprintf(cmd, sizeof cmd, "LLEN ent:test:started");
        ent_wait_for(cmd, 2 + k, 30);
        long long started = ent_rint(ent_rc, "LLEN ent:test:started");
        long long done = ent_rint(ent_rc, "LLEN ent:test:ran") - 40;
        assert_true(started - done <= 2);
    }
    freeReplyObject(test_redis_cmd(ent_rc, "RPUSH ent:test:gate 1 1"));
    ent_wait_for("LLEN ent:test:ran", 50, 30);
    assert_int_equal(ent_rint(ent_rc, "LLEN queue:throttled"), 0);
    assert_int_equal(ent_rint(ent_rc, "ZCARD schedule"), 0);
    /* every job ran once, none deferred */
    json_t *all = ran();
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
        assert_int_equal(json_integer_value(json_object_get(r, "deferred")), 0);
    json_decref(all);
    stop_workers(p, NPROC);
    assert_int_equal(ent_rint(ent_rc, "ZCARD ent:lmtr:q2:c"), 0); /* acked: slots given back */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_concurrent, ent_flush),
        cmocka_unit_test_setup(test_crashed_holder, ent_flush),
        cmocka_unit_test_setup(test_reschedule_max, ent_flush),
        cmocka_unit_test_setup(test_per_tenant, ent_flush),
        cmocka_unit_test_setup(test_wait, ent_flush),
        cmocka_unit_test_setup(test_bucket, ent_flush),
        cmocka_unit_test_setup(test_window, ent_flush),
        cmocka_unit_test_setup(test_leaky, ent_flush),
        cmocka_unit_test_setup(test_fetch_time, ent_flush),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
