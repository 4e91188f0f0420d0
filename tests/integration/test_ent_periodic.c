/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Periodic jobs and leader election of dray Enterprise with 3 worker
 * processes (ent_worker) on a real redis-server, driven by a fake clock
 * (the enterprise.test_clock setting of the test build: a Redis key the
 * leader reads instead of TIME) so minutes pass in a second:
 *   - one process leads (dear-leader holds its identity);
 *   - each tick of an every-minute and an every-5-minutes loop is enqueued
 *     exactly once;
 *   - the leader is killed and the clock jumps 5 minutes: another process
 *     takes over within the lease and backfills the missed ticks, once;
 *   - re-examining old minutes enqueues nothing twice (markers per tick);
 *   - a graceful stop hands leadership over at once;
 *   - a gap longer than the backfill window: only the window is backfilled.
 */
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

#define NPROC 3
#define T0 1893492030LL /* 2030-01-01 10:00:30 UTC */
#define LEASE 5

static const char *settings[] = {
    "enterprise.test_clock=ent:test:clock", "enterprise.leader_lease=5",
    "enterprise.periodic=* * * * * Tick name=every",
    "enterprise.periodic=*/5 * * * * | Tick name=five queue=default", NULL};

static void
set_clock(long long t)
{
    freeReplyObject(test_redis_cmd(ent_rc, "SET ent:test:clock %lld", t));
}

static int
ticks_reach(void *p)
{
    return ent_rint(ent_rc, "LLEN ent:test:ticks") >= *(long long *)p;
}

static void
wait_ticks(long long n)
{
    if (!test_wait_until(ticks_reach, &n, 30))
        fail_msg("ticks: %lld, want %lld", ent_rint(ent_rc, "LLEN ent:test:ticks"), n);
}

/* How often each "<loop> <tick>" was enqueued; fails on any duplicate. */
static long long
count_ticks(const char *loop, long long from, long long to)
{
    redisReply *r = test_redis_cmd(ent_rc, "LRANGE ent:test:ticks 0 -1");
    long long n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        char l[64];
        long long t;
        if (sscanf(r->element[i]->str, "%63s %lld", l, &t) != 2)
            fail_msg("bad tick record %s", r->element[i]->str);
        for (size_t j = i + 1; j < r->elements; j++) {
            char l2[64];
            long long t2;
            sscanf(r->element[j]->str, "%63s %lld", l2, &t2);
            if (!strcmp(l, l2) && t == t2)
                fail_msg("tick %s %lld enqueued twice", l, t);
        }
        n += !strcmp(l, loop) && t >= from && t <= to;
    }
    freeReplyObject(r);
    return n;
}

/* The pid in dear-leader's identity ("host:pid:nonce"), or 0. */
static pid_t
leader_pid(void)
{
    char *id = ent_rstr(ent_rc, "GET dear-leader");
    if (!id)
        return 0;
    const char *a = strchr(id, ':');
    pid_t pid = a ? (pid_t)atoi(a + 1) : 0;
    free(id);
    return pid;
}

static int
has_leader(void *p)
{
    pid_t not = p ? *(pid_t *)p : 0;
    pid_t l = leader_pid();
    return l != 0 && l != not ;
}

static ent_proc *
leader_of(ent_proc *p, int n)
{
    pid_t l = leader_pid();
    for (int i = 0; i < n; i++)
        if (p[i].pid == l)
            return &p[i];
    fail_msg("dear-leader names pid %d, not one of ours", (int)l);
    return NULL;
}

static void
test_leader_ticks_backfill(void **state)
{
    (void)state;
    freeReplyObject(test_redis_cmd(ent_rc, "FLUSHALL"));
    set_clock(T0);
    ent_proc p[NPROC];
    for (int i = 0; i < NPROC; i++)
        assert_int_equal(ent_proc_start(&p[i], ent_srv.url, "default", 2, settings), 0);
    assert_true(test_wait_until(has_leader, NULL, 30));
    ent_proc *lead = leader_of(p, NPROC);
    /* the leader is a live process in Sidekiq's registry: the Web UI badge */
    char *id = ent_rstr(ent_rc, "GET dear-leader");
    assert_int_equal(ent_rint(ent_rc, "SISMEMBER processes %s", id), 1);
    long long ttl = ent_rint(ent_rc, "PTTL dear-leader");
    assert_true(ttl > 0 && ttl <= LEASE * 1000);
    free(id);

    /* 10:00 for both loops, then one minute at a time to 10:09 */
    long long expect = 2;
    wait_ticks(expect);
    for (int m = 1; m <= 9; m++) {
        set_clock(T0 + 60 * m);
        expect += 1 + (m % 5 == 0);
        wait_ticks(expect);
    }
    assert_int_equal(count_ticks("every", T0 - 30, T0 - 30 + 9 * 60), 10);
    assert_int_equal(count_ticks("five", T0 - 30, T0 - 30 + 9 * 60), 2);
    long long last = ent_rint(ent_rc, "HGET ent:periodic:every last");
    assert_int_equal(last, T0 - 30 + 9 * 60);
    assert_int_equal(ent_rint(ent_rc, "HGET ent:periodic:five next"), T0 - 30 + 10 * 60);
    assert_int_equal(ent_rint(ent_rc, "ZCARD ent:periodic:loops"), 2);

    /* Kill the leader and let 5 minutes pass with nobody leading. */
    pid_t old = lead->pid;
    ent_proc_kill(lead);
    double t_kill = test_now();
    set_clock(T0 + 14 * 60);
    assert_true(test_wait_until(has_leader, &old, 30));
    double took = test_now() - t_kill;
    printf("leader killed: pid %d took over after %.2fs (lease %ds)\n", (int)leader_pid(), took,
           LEASE);
    assert_true(took <= LEASE + 2.5);
    /* 10:10-10:14 of "every" and 10:10 of "five", backfilled once */
    expect += 5 + 1;
    wait_ticks(expect);
    assert_int_equal(count_ticks("every", T0 - 30 + 10 * 60, T0 - 30 + 14 * 60), 5);
    assert_int_equal(count_ticks("five", T0 - 30 + 10 * 60, T0 - 30 + 14 * 60), 1);

    /* Make the leader look at 10:00-10:14 again: every tick has its marker. */
    freeReplyObject(test_redis_cmd(ent_rc, "HSET ent:periodic:every checked %lld", T0 - 30 - 60));
    long long cur = T0 - 30 + 14 * 60;
    for (double end = test_now() + 10;
         ent_rint(ent_rc, "HGET ent:periodic:every checked") != cur;) {
        if (test_now() > end)
            fail_msg("the leader did not re-examine the loop");
        usleep(5000);
    }
    assert_int_equal(ent_rint(ent_rc, "LLEN ent:test:ticks"), expect);

    /* A graceful stop hands leadership over at the next heartbeat, not
     * after the lease. */
    lead = leader_of(p, NPROC);
    old = lead->pid;
    double t_stop = test_now();
    assert_int_equal(ent_proc_stop(lead), 0);
    assert_true(test_wait_until(has_leader, &old, 30));
    took = test_now() - t_stop;
    printf("leader stopped: handed over after %.2fs\n", took);
    assert_true(took < LEASE - 1);
    set_clock(T0 + 15 * 60);
    expect += 2;
    wait_ticks(expect);
    assert_int_equal(count_ticks("every", 0, T0 * 2), 16);
    assert_int_equal(count_ticks("five", 0, T0 * 2), 4);
    for (int i = 0; i < NPROC; i++)
        ent_proc_stop(&p[i]);
}

static void
test_backfill_window(void **state)
{
    (void)state;
    /* Continues from the state above: every loop checked up to 10:15. Three
     * hours later one process starts: only the last hour is backfilled. */
    long long now = T0 + 3 * 3600 + 15 * 60; /* 13:15:30 */
    set_clock(now);
    long long before = ent_rint(ent_rc, "LLEN ent:test:ticks");
    ent_proc p;
    assert_int_equal(ent_proc_start(&p, ent_srv.url, "default", 4, settings), 0);
    /* 12:16..13:15 for every (60), 12:20..13:15 for five (12) */
    long long from = now - 30 - 59 * 60;
    wait_ticks(before + 72);
    assert_int_equal(count_ticks("every", from, now), 60);
    assert_int_equal(count_ticks("five", from, now), 12);
    assert_int_equal(count_ticks("every", T0 + 15 * 60, from - 1), 0);
    assert_int_equal(ent_rint(ent_rc, "HGET ent:periodic:every last"), now - 30);
    ent_proc_stop(&p);
    /* backfill 0: only the current minute */
    const char *off[] = {"enterprise.test_clock=ent:test:clock", "enterprise.backfill=0",
                         "enterprise.periodic=* * * * * Tick name=every", NULL};
    set_clock(now + 600);
    before = ent_rint(ent_rc, "LLEN ent:test:ticks");
    assert_int_equal(ent_proc_start(&p, ent_srv.url, "default", 2, off), 0);
    wait_ticks(before + 1);
    assert_int_equal(count_ticks("every", now + 570, now + 570), 1);
    assert_int_equal(ent_proc_stop(&p), 0);
    assert_int_equal(ent_rint(ent_rc, "LLEN ent:test:ticks"), before + 1);
    /* tick markers expire: backfill window + a day */
    long long ttl = ent_rint(ent_rc, "TTL ent:periodic:every:t:%lld", now + 570);
    assert_true(ttl > 86000 && ttl <= 86400);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_ticks_backfill),
        cmocka_unit_test(test_backfill_window),
    };
    return cmocka_run_group_tests(tests, ent_setup, ent_teardown);
}
