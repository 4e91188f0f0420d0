/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Paused queues (core/src/pause.c) against a real redis-server: a queue
 * paused before the process starts is never fetched while another queue
 * drains, through several heartbeats; a pause while running holds new jobs
 * back; resume runs every job exactly once; a `paused` key of the wrong
 * type stops fetching with a clear error (never runs what may be paused)
 * and loses nothing. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "server.h"

#define NJOBS 40 /* per queue */

static atomic_int ran[2][NJOBS];  /* [queue held, queue free][arg]: runs of each job */
static atomic_int nran[2];        /* jobs run per queue */
static atomic_int wrongtype_logs; /* ERROR lines naming the bad paused key */

/* Class "Job", args [which, i]: which 0 for the held queue, 1 the free one. */
static int
h_job(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    json_t *a = dray_job_args(job);
    long which = (long)json_integer_value(json_array_get(a, 0));
    long i = (long)json_integer_value(json_array_get(a, 1));
    if (which >= 0 && which < 2 && i >= 0 && i < NJOBS) {
        atomic_fetch_add(&ran[which][i], 1);
        atomic_fetch_add(&nran[which], 1);
    }
    return 0;
}

static void
sink(dray_log_level level, const char *line, void *ud)
{
    (void)ud;
    if (level == DRAY_LOG_ERROR && strstr(line, "WRONGTYPE"))
        atomic_fetch_add(&wrongtype_logs, 1);
    if (getenv("TEST_LOG"))
        fprintf(stderr, "%s\n", line);
}

static int
setup(void **state)
{
    if (test_setup(state))
        return -1;
    dray_log_set_sink(sink, NULL);
    return test_rc ? 0 : -1;
}

static void
reset(void)
{
    test_run("FLUSHALL");
    for (int q = 0; q < 2; q++) {
        atomic_store(&nran[q], 0);
        for (int i = 0; i < NJOBS; i++)
            atomic_store(&ran[q][i], 0);
    }
    atomic_store(&wrongtype_logs, 0);
}

static void
push_jobs(const char *queue, int which)
{
    for (int i = 0; i < NJOBS; i++)
        test_run("LPUSH queue:%s "
                 "{\"class\":\"Job\",\"args\":[%d,%d],\"jid\":\"j%d-%d\",\"queue\":\"%s\"}",
                 queue, which, i, which, i, queue);
    test_run("SADD queues %s", queue);
}

static long long
llen(const char *queue)
{
    return test_int("LLEN queue:%s", queue);
}

/* Held queue first: unpaused, strict order would take it first. */
static void
start(test_running *r, int conc, int fetch_batch)
{
    dray_options o;
    test_options(&o, "held free", conc);
    o.fetch_batch = fetch_batch;
    o.log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_INFO;
    test_server_new(r, &o);
    assert_int_equal(dray_server_register(r->s, "Job", h_job, NULL, NULL), 0);
    test_server_go(r);
}

static void
stop(test_running *r)
{
    dray_server_stop(r->s);
    assert_true(test_wait_until(test_server_done, r, 30));
    test_server_finish(r);
}

static int
held_ran(void *a)
{
    (void)a;
    return atomic_load(&nran[0]) > 0;
}

static int
free_drained(void *a)
{
    (void)a;
    return atomic_load(&nran[1]) == NJOBS;
}

static int
held_drained(void *a)
{
    (void)a;
    return atomic_load(&nran[0]) == NJOBS;
}

/* Every job of both queues ran exactly once and both lists are empty. */
static void
assert_each_once(void)
{
    for (int q = 0; q < 2; q++)
        for (int i = 0; i < NJOBS; i++)
            if (atomic_load(&ran[q][i]) != 1)
                fail_msg("job %d of queue %d ran %d times", i, q, atomic_load(&ran[q][i]));
    assert_int_equal(llen("held"), 0);
    assert_int_equal(llen("free"), 0);
}

/* The free queue drains (within drain_s) while the held one stays
 * untouched for 3 s more; resumed, the held queue drains too; then r stops
 * and every job has run exactly once. */
static void
drain_free_then_resume(test_running *r, dray_api *api, double drain_s)
{
    assert_true(test_wait_until(free_drained, NULL, drain_s));
    assert_false(test_wait_until(held_ran, NULL, 3.0));
    assert_int_equal(llen("held"), NJOBS);
    assert_int_equal(dray_api_queue_resume(api, "held"), 0);
    assert_true(test_wait_until(held_drained, NULL, 20));
    stop(r);
    assert_each_once();
}

/* Paused before the process starts: not one job of it runs, from the first
 * fetch on, through 4 heartbeats while the other queue drains. */
static void
run_paused_then_resume(int conc, int fetch_batch)
{
    reset();
    dray_api *api = test_api(NULL);
    assert_int_equal(dray_api_queue_pause(api, "held"), 0);
    int p = 0;
    assert_int_equal(dray_api_queue_paused(api, "held", &p), 0);
    assert_int_equal(p, 1);
    push_jobs("held", 0);
    push_jobs("free", 1);
    test_running r;
    start(&r, conc, fetch_batch);
    assert_true(test_wait_until(free_drained, NULL, 20));
    /* 4 heartbeats (1 s each) more: the held queue stays untouched */
    assert_false(test_wait_until(held_ran, NULL, 4.0));
    assert_int_equal(llen("held"), NJOBS);
    assert_int_equal(atomic_load(&nran[0]), 0);

    assert_int_equal(dray_api_queue_resume(api, "held"), 0);
    assert_int_equal(dray_api_queue_paused(api, "held", &p), 0);
    assert_int_equal(p, 0);
    assert_true(test_wait_until(held_drained, NULL, 20));
    stop(&r);
    assert_each_once();
    dray_api_free(api);
}

static void
test_paused_before_start(void **state)
{
    (void)state;
    run_paused_then_resume(4, 1);
}

static void
test_paused_batched_fetch(void **state)
{
    (void)state;
    run_paused_then_resume(2, 5); /* BLMPOP ... COUNT 5 */
}

/* Paused while the worker waits on both queues. One worker: its copy
 * turns in a refresh at the start of a fetch, so the fetch that follows
 * (and every later one) leaves the queue out. Resume runs them all once. */
static int
paused_seen(void *a)
{
    dray_server *s = a;
    return atomic_load(&s->queues[0].paused);
}

static void
test_pause_while_running(void **state)
{
    (void)state;
    reset();
    test_running r;
    start(&r, 1, 1);
    dray_api *api = test_api(NULL);
    assert_int_equal(dray_api_queue_pause(api, "held"), 0);
    /* within the bound: one refresh period plus one 2 s fetch */
    assert_true(test_wait_until(paused_seen, r.s, 3.5));
    push_jobs("held", 0);
    push_jobs("free", 1);
    drain_free_then_resume(&r, api, 20);
    dray_api_free(api);
}

/* Every queue paused: workers wait without a busy loop and stop promptly. */
static int
both_paused_seen(void *a)
{
    dray_server *s = a;
    return atomic_load(&s->queues[0].paused) && atomic_load(&s->queues[1].paused);
}

static void
test_all_paused_then_stop(void **state)
{
    (void)state;
    reset();
    dray_api *api = test_api(NULL);
    assert_int_equal(dray_api_queue_pause(api, "held"), 0);
    assert_int_equal(dray_api_queue_pause(api, "free"), 0);
    push_jobs("held", 0);
    push_jobs("free", 1);
    test_running r;
    start(&r, 2, 1);
    assert_true(test_wait_until(both_paused_seen, r.s, 5));
    assert_false(test_wait_until(held_ran, NULL, 2.0));
    assert_int_equal(atomic_load(&nran[1]), 0);
    double t0 = test_now();
    stop(&r);
    assert_true(test_now() - t0 < 5.0);
    assert_int_equal(llen("held"), NJOBS);
    assert_int_equal(llen("free"), NJOBS);
    char **names;
    size_t n;
    assert_int_equal(dray_api_paused_list(api, &names, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "free");
    assert_string_equal(names[1], "held");
    dray_api_paused_free(names, n);
    assert_int_equal(dray_api_queue_pause(api, "bad name"), DRAY_EQUEUE);
    assert_int_equal(dray_api_queue_pause(api, ""), DRAY_EQUEUE);
    dray_api_free(api);
}

/* A bad byte: `paused` is a string. No worker can tell what is paused, so
 * none fetches (an ERROR names WRONGTYPE); repaired, every job runs once. */
static int
wrongtype_logged(void *a)
{
    (void)a;
    return atomic_load(&wrongtype_logs) > 0;
}

static void
test_paused_key_wrong_type(void **state)
{
    (void)state;
    reset();
    test_run("SET paused held");
    push_jobs("held", 0);
    push_jobs("free", 1);
    test_running r;
    start(&r, 2, 1);
    assert_true(test_wait_until(wrongtype_logged, NULL, 10));
    assert_int_equal(atomic_load(&nran[0]) + atomic_load(&nran[1]), 0);
    assert_int_equal(llen("held"), NJOBS);
    assert_int_equal(llen("free"), NJOBS);
    test_run("DEL paused");
    assert_true(test_wait_until(free_drained, NULL, 30));
    assert_true(test_wait_until(held_drained, NULL, 30));
    stop(&r);
    assert_each_once();
}

/* Redis killed and back (from its saved data) while a queue is paused:
 * the workers reconnect, the pause holds, the other queue drains, and
 * resume runs everything once. */
static void
test_pause_survives_redis_restart(void **state)
{
    (void)state;
    reset();
    dray_api *api = test_api(NULL);
    assert_int_equal(dray_api_queue_pause(api, "held"), 0);
    push_jobs("held", 0);
    test_running r;
    start(&r, 2, 1);
    assert_true(test_wait_until(paused_seen, r.s, 5));
    test_run("SAVE"); /* the restart loads it */
    redisFree(test_rc);
    test_redis_kill(&test_srv);
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    test_rc = test_redis_connect(&test_srv);
    dray_api_free(api); /* its link died with the server */
    api = test_api(NULL);
    assert_int_equal(llen("held"), NJOBS);
    push_jobs("free", 1);
    drain_free_then_resume(&r, api, 30);
    dray_api_free(api);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paused_before_start),
        cmocka_unit_test(test_paused_batched_fetch),
        cmocka_unit_test(test_pause_while_running),
        cmocka_unit_test(test_all_paused_then_stop),
        cmocka_unit_test(test_paused_key_wrong_type),
        cmocka_unit_test(test_pause_survives_redis_restart),
    };
    return cmocka_run_group_tests(tests, setup, test_teardown);
}
