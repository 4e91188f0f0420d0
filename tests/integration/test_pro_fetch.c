/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Reliable fetch with real worker processes: jobs go through the private
 * work-in-progress lists and leave them on ack; a graceful stop pushes the
 * running jobs back; a process killed with SIGKILL has its jobs recovered
 * by a process that was already running (from its tick, not at start),
 * exactly once even with several candidates; a job that kills every
 * process running it ends in the dead set as a poison pill.
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

#include "dray/pro_batch.h"
#include "pro_test.h"

static void
push(const char *klass, const char *queue, int n, long sleep_ms, char (*jids)[DRAY_JID_BYTES])
{
    dray_push_opts po = {.queue = queue};
    for (int i = 0; i < n; i++) {
        json_t *args = json_pack("[i, I]", i, (json_int_t)sleep_ms);
        int r = dray_client_push(pro_cli, klass, args, &po, jids ? jids[i] : NULL);
        json_decref(args);
        if (r)
            fail_msg("push: %s", dray_client_errstr(pro_cli));
    }
}

/* ---- conditions ---------------------------------------------------------------- */

typedef struct want {
    const char *what;
    long long n;
    const char *arg;
} want;

static int
runs_at_least(void *p)
{
    want *w = p;
    return pro_int(pro_rc, "HLEN t:runs") >= w->n;
}

static int
wip_is(void *p)
{
    want *w = p;
    return pro_wip_len(w->arg) == w->n;
}

static int
int_is(void *p)
{
    want *w = p;
    return pro_int(pro_rc, w->what, w->arg) == w->n;
}

static const char *
pidpat(pid_t pid, char *buf, size_t n)
{
    snprintf(buf, n, "*:%d:*", (int)pid);
    return buf;
}

/* ---- tests --------------------------------------------------------------------- */

static void
test_process_and_ack(void **state)
{
    (void)state;
    pro_worker a, b;
    const char *args[] = {"concurrency=4", NULL};
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), args), 0);
    assert_int_equal(pro_worker_start(&b, pro_srv.url, pro_license_default(), args), 0);
    push("Work", "default", 500, 0, NULL);
    want all = {.n = 500};
    if (!pro_wait(runs_at_least, &all, 30)) {
        pro_worker_dump(&a, 30);
        fail_msg("only %lld of 500 jobs ran", pro_int(pro_rc, "HLEN t:runs"));
    }
    /* Every ack lands (parked acks go out with the next fetch). */
    want empty = {.n = 0, .arg = "*"};
    assert_true(pro_wait(wip_is, &empty, 10));
    assert_int_equal(pro_int(pro_rc, "LLEN queue:default"), 0);
    /* one list per worker thread (2 processes x 4), each registered */
    assert_int_equal(pro_int(pro_rc, "ZCARD pro:fetch:procs"), 8);
    /* No job ran twice. */
    redisReply *v = test_redis_cmd(pro_rc, "HVALS t:runs");
    for (size_t i = 0; i < v->elements; i++)
        assert_string_equal(v->element[i]->str, "1");
    freeReplyObject(v);
    assert_int_equal(pro_worker_stop(&a, SIGTERM, 15), 0);
    assert_int_equal(pro_worker_stop(&b, SIGTERM, 15), 0);
    assert_int_equal(pro_wip_len("*"), 0);
}

/* Several queues: the non-blocking script takes from any; the blocking
 * wait rotates (weighted) so a job on any queue is picked up soon. */
static void
test_several_queues(void **state)
{
    (void)state;
    pro_worker a;
    const char *args[] = {"concurrency=2", "queues=a,1 b,1 c,1", "pro.fetch_poll=0.2", NULL};
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), args), 0);
    want one = {.n = 1};
    push("Work", "c", 1, 0, NULL);
    assert_true(pro_wait(runs_at_least, &one, 10));
    push("Work", "b", 10, 0, NULL);
    push("Work", "a", 10, 0, NULL);
    want all = {.n = 21};
    assert_true(pro_wait(runs_at_least, &all, 10));
    assert_int_equal(pro_worker_stop(&a, SIGTERM, 15), 0);
}

static void
test_stop_requeues(void **state)
{
    (void)state;
    pro_worker a;
    const char *args[] = {"concurrency=2", "timeout=1", NULL};
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), args), 0);
    char jids[2][DRAY_JID_BYTES];
    push("Work", "default", 2, 30000, jids);
    char pat[64];
    want two = {.n = 2, .arg = pidpat(a.pid, pat, sizeof pat)};
    assert_true(pro_wait(wip_is, &two, 10));
    assert_int_equal(pro_worker_stop(&a, SIGTERM, 20), 0);
    /* Both back at the head of the queue, the list empty. */
    assert_int_equal(pro_int(pro_rc, "LLEN queue:default"), 2);
    assert_int_equal(pro_wip_len("*"), 0);
}

/* pro.fetch_batch: one fetch takes several jobs while a backlog waits;
 * all run once, and a graceful stop puts back the running ones and those
 * taken ahead, so none is left in the list or lost. */
static void
test_batched_fetch(void **state)
{
    (void)state;
    pro_worker a;
    const char *args[] = {"concurrency=2", "pro.fetch_batch=8", "timeout=1", NULL};
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), args), 0);
    push("Work", "default", 600, 0, NULL);
    want all = {.n = 600};
    assert_true(pro_wait(runs_at_least, &all, 30));
    want empty = {.n = 0, .arg = "*"};
    assert_true(pro_wait(wip_is, &empty, 10));
    redisReply *v = test_redis_cmd(pro_rc, "HVALS t:runs");
    for (size_t i = 0; i < v->elements; i++)
        assert_string_equal(v->element[i]->str, "1");
    freeReplyObject(v);
    assert_int_equal(pro_worker_stop(&a, SIGTERM, 20), 0);
    /* long jobs waiting before the worker starts: two run, up to 14 are
     * taken ahead (a worker blocked on an empty queue takes one) */
    freeReplyObject(test_redis_cmd(pro_rc, "DEL t:runs"));
    char jids[200][DRAY_JID_BYTES];
    push("Work", "default", 200, 20000, jids);
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), args), 0);
    char pat[64];
    want two = {.n = 2};
    assert_true(pro_wait(runs_at_least, &two, 10));
    long long held = pro_wip_len(pidpat(a.pid, pat, sizeof pat));
    fprintf(stderr, "batched fetch: %lld jobs in the list with 2 running\n", held);
    assert_true(held > 2);
    assert_int_equal(pro_worker_stop(&a, SIGTERM, 20), 0);
    assert_int_equal(pro_wip_len("*"), 0);
    assert_int_equal(pro_int(pro_rc, "LLEN queue:default"), 200);
    redisReply *q = test_redis_cmd(pro_rc, "LRANGE queue:default 0 -1");
    int seen = 0;
    for (int i = 0; i < 200; i++)
        for (size_t j = 0; j < q->elements; j++)
            if (strstr(q->element[j]->str, jids[i])) {
                seen++;
                break;
            }
    freeReplyObject(q);
    assert_int_equal(seen, 200);
}

/* B is running before A dies: its tick recovers A's jobs, once. */
static void
test_orphans_recovered_by_live_process(void **state)
{
    (void)state;
    pro_worker a, b, c;
    const char *fast[] = {"concurrency=3", "pro.orphan_after=3", "pro.orphan_check=0.5", NULL};
    assert_int_equal(pro_worker_start(&a, pro_srv.url, pro_license_default(), fast), 0);
    char jids[3][DRAY_JID_BYTES];
    push("Work", "default", 3, 2000, jids);
    char pat[64];
    want three = {.n = 3, .arg = pidpat(a.pid, pat, sizeof pat)};
    assert_true(pro_wait(wip_is, &three, 10));
    /* Two live candidates for the recovery. */
    assert_int_equal(pro_worker_start(&b, pro_srv.url, pro_license_default(), fast), 0);
    assert_int_equal(pro_worker_start(&c, pro_srv.url, pro_license_default(), fast), 0);
    want procs = {.what = "SCARD processes", .n = 3, .arg = ""};
    assert_true(pro_wait(int_is, &procs, 10));
    pid_t apid = a.pid;
    assert_int_equal(pro_worker_stop(&a, SIGKILL, 5), 0);
    double t0 = pro_now();
    want gone = {.n = 0, .arg = pidpat(apid, pat, sizeof pat)};
    assert_true(pro_wait(wip_is, &gone, 30));
    double took = pro_now() - t0;
    fprintf(stderr, "orphans of a SIGKILLed process recovered %.1f s after the kill\n", took);
    assert_true(took < 15);
    /* Each job ran in A (killed) and once more after recovery: never thrice. */
    for (int i = 0; i < 3; i++) {
        want twice = {.what = "HGET t:runs %s", .n = 2, .arg = jids[i]};
        assert_true(pro_wait(int_is, &twice, 15));
    }
    assert_int_equal(pro_int(pro_rc, "GET pro:stat:recovered"), 3);
    redisReply *leases = test_redis_cmd(pro_rc, "KEYS pro:fetch:lease:*");
    assert_int_equal(leases->elements, 0); /* released when the list was drained */
    freeReplyObject(leases);
    assert_int_equal(pro_worker_stop(&b, SIGTERM, 15), 0);
    assert_int_equal(pro_worker_stop(&c, SIGTERM, 15), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pro_int(pro_rc, "HGET t:runs %s", jids[i]), 2);
}

/* A job that kills its process: run 3 times, then the dead set, with the
 * reason; its batch's death callback fires once. With big, its args also
 * hold an integer beyond 64 bits (read as a fetched payload's are), which
 * the dead entry keeps exactly. */
static void
poison_pill(int big)
{
    dray_pro *p;
    assert_int_equal(dray_pro_new(pro_rc, NULL, &p), 0);
    dray_pro_batch_opts o = {
        .description = "poison", .on_death = {"Cb", NULL}, .on_complete = {"Cb", NULL}};
    char bid[DRAY_PRO_BID_BYTES], pjid[DRAY_JID_BYTES];
    assert_int_equal(dray_pro_batch_new(p, &o, bid), 0);
    static const char big_payload[] =
        "{\"class\":\"Poison\",\"args\":[\"boom\",123456789012345678901234567890]}";
    dray_job *parsed = NULL;
    if (big)
        assert_int_equal(dray_job_parse(big_payload, strlen(big_payload), 0, &parsed, NULL, 0), 0);
    json_t *args = big ? json_incref(dray_job_args(parsed)) : json_pack("[s]", "boom");
    dray_job_free(parsed);
    assert_int_equal(dray_pro_batch_push(p, pro_cli, bid, "Poison", args, NULL, pjid), 0);
    json_decref(args);
    args = json_pack("[s, i]", "fine", 0);
    assert_int_equal(dray_pro_batch_push(p, pro_cli, bid, "Work", args, NULL, NULL), 0);
    json_decref(args);
    assert_int_equal(dray_pro_batch_commit(p, bid, 0), 0);

    enum { NW = 3 };
    pro_worker w[NW];
    /* suspect_delay 2 s: the innocent job that shared a process with the pill
     * is held back at most that long (default 10 s), so the batch completes
     * well within the waits below even on a slow sanitizer build. */
    const char *fast[] = {"concurrency=2", "pro.orphan_after=3", "pro.orphan_check=0.5",
                          "pro.suspect_delay=2", NULL};
    for (int i = 0; i < NW; i++)
        assert_int_equal(pro_worker_start(&w[i], pro_srv.url, pro_license_default(), fast), 0);
    /* Restart whoever the pill kills until it is in the dead set. */
    int restarts = 0;
    double end = pro_now() + 90;
    while (pro_int(pro_rc, "ZCARD dead") == 0 && pro_now() < end) {
        for (int i = 0; i < NW; i++)
            if (pro_worker_reap(&w[i])) {
                restarts++;
                assert_int_equal(pro_worker_start(&w[i], pro_srv.url, pro_license_default(), fast),
                                 0);
            }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL); /* polling the children, not synchronising */
    }
    if (pro_int(pro_rc, "ZCARD dead") != 1) {
        redisReply *all = test_redis_cmd(pro_rc, "ZRANGE dead 0 -1");
        for (size_t i = 0; i < all->elements; i++)
            fprintf(stderr, "dead: %s\n", all->element[i]->str);
        freeReplyObject(all);
    }
    assert_int_equal(pro_int(pro_rc, "ZCARD dead"), 1);
    assert_int_equal(pro_int(pro_rc, "HGET t:poison %s", pjid), 3);
    assert_int_equal(restarts, 3);
    redisReply *d = test_redis_cmd(pro_rc, "ZRANGE dead 0 -1");
    dray_job *dj = NULL; /* read as the core reads payloads: bigints too */
    assert_int_equal(dray_job_parse(d->element[0]->str, d->element[0]->len, 0, &dj, NULL, 0), 0);
    freeReplyObject(d);
    assert_string_equal(dray_job_jid(dj), pjid);
    const char *ec = json_string_value(dray_job_get(dj, "error_class"));
    const char *em = json_string_value(dray_job_get(dj, "error_message"));
    assert_string_equal(ec ? ec : "(none)", "Dray::Pro::PoisonPill");
    assert_non_null(
        strstr(em ? em : "", "recovered 3 times from processes that died while running it"));
    dray_job_free(dj);
    if (big) {
        redisReply *raw = test_redis_cmd(pro_rc, "ZRANGE dead 0 0");
        assert_int_equal(raw->elements, 1);
        assert_non_null(strstr(raw->element[0]->str, "[\"boom\",123456789012345678901234567890]"));
        freeReplyObject(raw);
    }
    /* The batch: death once, complete once the other job ran, never success. */
    char key[128];
    snprintf(key, sizeof key, "%s:death", bid);
    want death = {.what = "HGET t:cb %s", .n = 1, .arg = key};
    assert_true(pro_wait(int_is, &death, 60));
    snprintf(key, sizeof key, "%s:complete", bid);
    want complete = {.what = "HGET t:cb %s", .n = 1, .arg = key};
    assert_true(pro_wait(int_is, &complete, 60));
    dray_pro_batch_status *st;
    assert_int_equal(dray_pro_batch_status_get(p, bid, &st), 0);
    assert_int_equal(st->dead, 1);
    assert_true(st->success_at == 0);
    dray_pro_batch_status_free(st);
    for (int i = 0; i < NW; i++)
        pro_worker_stop(&w[i], SIGTERM, 15);
    dray_pro_free(p);
}

static void
test_poison_pill(void **state)
{
    (void)state;
    poison_pill(0);
}

static void
test_poison_pill_bigint(void **state)
{
    (void)state;
    poison_pill(1);
}

/* A failed assertion leaves its workers running: none may outlive its test. */
int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_process_and_ack, pro_flush, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_several_queues, pro_flush, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_stop_requeues, pro_flush, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_batched_fetch, pro_flush, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_orphans_recovered_by_live_process, pro_flush,
                                        pro_leftovers),
        cmocka_unit_test_setup_teardown(test_poison_pill, pro_flush, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_poison_pill_bigint, pro_flush, pro_leftovers),
    };
    return cmocka_run_group_tests(tests, pro_setup, pro_teardown);
}
