/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Execution metrics (core/src/metrics.c) against a real redis-server: the
 * histogram buckets are Sidekiq's (shared.rb BUCKET_INTERVALS), per-worker
 * tables merge into one write, a flush Redis never got (server killed) is
 * written by the next one, and a flush whose reply was lost to a stall is
 * not written twice. Sidekiq 7's own reading of the keys is in
 * tests/interop/test_interop_metrics.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "server.h"

static int
setup(void **state)
{
    (void)state;
    snprintf(test_srv.extra, sizeof test_srv.extra,
             "--enable-debug-command yes"); /* DEBUG SLEEP: a stall */
    return test_start(state);
}

static void
test_buckets_are_sidekiqs(void **state)
{
    (void)state;
    /* BUCKET_INTERVALS: the first bound a run is under (ms < bound) */
    static const struct {
        double ms;
        int bucket;
    } kat[] = {{0, 0},      {19.999, 0},  {20, 1},      {29, 1},      {30, 2},
               {64.9, 3},   {65, 4},      {99, 4},      {100, 5},     {499, 8},
               {500, 9},    {1099, 10},   {1100, 11},   {5749, 14},   {5750, 15},
               {99999, 21}, {100000, 22}, {334999, 24}, {335000, 25}, {1e12, 25}};
    for (size_t i = 0; i < sizeof kat / sizeof *kat; i++) {
        if (dray__metrics_bucket(kat[i].ms) != kat[i].bucket)
            fail_msg("%.3f ms: bucket %d, Sidekiq's is %d", kat[i].ms,
                     dray__metrics_bucket(kat[i].ms), kat[i].bucket);
    }
}

/* Sum of field over every j|* hash (a flush may cross a minute). */
static long long
jsum(redisContext *c, const char *field)
{
    redisReply *k = test_redis_cmd(c, "KEYS j|*");
    long long n = 0;
    for (size_t i = 0; i < k->elements; i++) {
        redisReply *v = test_redis_cmd(c, "HGET %s %s", k->element[i]->str, field);
        if (v->type == REDIS_REPLY_STRING)
            n += atoll(v->str);
        freeReplyObject(v);
    }
    freeReplyObject(k);
    return n;
}

/* Sum of histogram bucket b of klass over its keys. */
static long long
hsum(redisContext *c, const char *klass, int b)
{
    redisReply *k = test_redis_cmd(c, "KEYS %s-*", klass);
    long long n = 0;
    for (size_t i = 0; i < k->elements; i++) {
        redisReply *v = test_redis_cmd(c, "BITFIELD %s GET u16 #%d", k->element[i]->str, b);
        n += v->element[0]->integer;
        freeReplyObject(v);
    }
    freeReplyObject(k);
    return n;
}

/* Redis does not answer a PING within 100 ms (stalled). */
static int
redis_busy(void *arg)
{
    (void)arg;
    struct timeval tv = {0, 100000};
    redisContext *p = redisConnectUnixWithTimeout(test_srv.sock, tv);
    if (!p || p->err) {
        redisFree(p);
        return 0;
    }
    redisSetTimeout(p, tv);
    redisReply *r = redisCommand(p, "PING");
    int busy = r == NULL;
    freeReplyObject(r);
    redisFree(p);
    return busy;
}

static dray_server *
new_server(int command_timeout_ms)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    o.concurrency = 2;
    o.log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_OFF;
    if (command_timeout_ms)
        o.command_timeout_ms = command_timeout_ms;
    dray_server *s;
    char err[256];
    assert_int_equal(dray_server_new(&o, &s, err, sizeof err), 0);
    return s;
}

static void
test_flush_survives_a_dead_redis(void **state)
{
    (void)state;
    redisContext *c = test_redis_connect(&test_srv);
    freeReplyObject(test_redis_cmd(c, "FLUSHALL"));
    dray_server *s = new_server(0);
    dray__conn conn;
    dray__conn_init(&conn, &s->cfg);
    dray__metrics_record(&s->workers[0].metrics, "A", 0, 10);
    dray__metrics_record(&s->workers[0].metrics, "A", 0, 10);
    dray__metrics_record(&s->workers[0].metrics, "A", 0, 10.7);
    dray__metrics_record(&s->workers[1].metrics, "A", 1, 99);
    dray__metrics_record(&s->workers[1].metrics, "A", 1, 99);
    dray__metrics_record(&s->workers[1].metrics, "B", 0, 500);

    redisFree(c);
    test_redis_kill(&test_srv); /* the flush finds no Redis */
    assert_int_not_equal(dray__metrics_flush(s, &conn, 1), 0);
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    c = test_redis_connect(&test_srv);
    assert_int_equal(jsum(c, "A|p"), 0); /* nothing reached Redis */

    dray__metrics_record(&s->workers[0].metrics, "A", 0, 25);
    assert_int_equal(dray__metrics_flush(s, &conn, 1), 0);
    assert_int_equal(jsum(c, "A|p"), 6);
    assert_int_equal(jsum(c, "A|f"), 2);
    assert_int_equal(jsum(c, "A|ms"), 10 + 10 + 10 + 25); /* whole ms; failures add none */
    assert_int_equal(jsum(c, "B|p"), 1);
    assert_int_equal(jsum(c, "B|ms"), 500);
    assert_int_equal(hsum(c, "A", 0), 3);
    assert_int_equal(hsum(c, "A", 1), 1);
    assert_int_equal(hsum(c, "B", 9), 1);
    /* a flush with nothing new writes nothing */
    assert_int_equal(dray__metrics_flush(s, &conn, 1), 0);
    assert_int_equal(jsum(c, "A|p"), 6);
    dray__conn_close(&conn);
    dray_server_free(s);
    redisFree(c);
}

static void
test_stalled_flush_not_counted_twice(void **state)
{
    (void)state;
    redisContext *c = test_redis_connect(&test_srv);
    freeReplyObject(test_redis_cmd(c, "FLUSHALL"));
    dray_server *s = new_server(300);
    dray__conn conn;
    dray__conn_init(&conn, &s->cfg);
    /* the link is up (a first flush), so the stall hits the block itself */
    dray__metrics_record(&s->workers[0].metrics, "D", 0, 1);
    assert_int_equal(dray__metrics_flush(s, &conn, 1), 0);
    for (int i = 0; i < 7; i++)
        dray__metrics_record(&s->workers[i % 2].metrics, "C", 0, 1);
    /* Redis stalls past the command timeout: the block is sent, its reply
     * lost; Redis runs it when the stall ends */
    assert_int_equal(redisAppendCommand(c, "DEBUG SLEEP 1.5"), REDIS_OK);
    int done = 0;
    while (!done)
        assert_int_equal(redisBufferWrite(c, &done), REDIS_OK);
    assert_true(test_wait_until(redis_busy, NULL, 5));
    assert_int_not_equal(dray__metrics_flush(s, &conn, 1), 0);
    redisReply *r = NULL;
    assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK); /* the stall is over */
    freeReplyObject(r);
    dray__metrics_record(&s->workers[0].metrics, "C", 0, 1);
    assert_int_equal(dray__metrics_flush(s, &conn, 1), 0);
    assert_int_equal(jsum(c, "C|p"), 8);
    assert_int_equal(hsum(c, "C", 0), 8);
    dray__conn_close(&conn);
    dray_server_free(s);
    redisFree(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_are_sidekiqs),
        cmocka_unit_test(test_flush_survives_a_dead_redis),
        cmocka_unit_test(test_stalled_flush_not_counted_twice),
    };
    return cmocka_run_group_tests(tests, setup, test_teardown);
}
