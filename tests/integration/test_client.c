/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The producer against a real redis-server: keys, list direction, scores,
 * bulk round trips, bad input writes nothing, AUTH, dropped connections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"
#include "harness.h"

static long long
cmdstat(redisContext *rc, const char *cmd)
{
    redisReply *r = test_redis_cmd(rc, "INFO commandstats");
    char needle[64];
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", cmd);
    const char *p = strstr(r->str, needle);
    long long v = p ? atoll(p + strlen(needle)) : 0;
    freeReplyObject(r);
    return v;
}

static void
test_push_one(void **state)
{
    (void)state;
    redisContext *rc = test_redis_connect(&test_srv);
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    dray_client *c = test_client(NULL);
    json_t *args = json_pack("[i,s,{s:f}]", 1, "two", "x", 2.5);
    char jid[DRAY_JID_BYTES];
    double before = dray_now();
    assert_int_equal(dray_client_push(c, "HardJob", args, NULL, jid), 0);
    char jid2[DRAY_JID_BYTES];
    dray_push_opts po = {.queue = "critical", .retry = 3};
    po.extra = json_pack("{s:s}", "bid", "B1");
    assert_int_equal(dray_client_push(c, "HardJob", args, &po, jid2), 0);
    json_decref(po.extra);
    assert_int_equal(dray_client_push(c, "Second", args, NULL, NULL), 0);

    redisReply *r = test_redis_cmd(rc, "SMEMBERS queues");
    assert_int_equal(r->elements, 2);
    freeReplyObject(r);
    r = test_redis_cmd(rc, "LRANGE queue:default 0 -1");
    assert_int_equal(r->elements, 2);
    /* LPUSH: the newest is at the left, the first pushed at the right (BRPOP end) */
    json_t *oldest = json_loads(r->element[1]->str, 0, NULL);
    json_t *newest = json_loads(r->element[0]->str, 0, NULL);
    freeReplyObject(r);
    assert_string_equal(json_string_value(json_object_get(oldest, "jid")), jid);
    assert_string_equal(json_string_value(json_object_get(oldest, "class")), "HardJob");
    assert_string_equal(json_string_value(json_object_get(newest, "class")), "Second");
    assert_true(json_equal(json_object_get(oldest, "args"), args));
    assert_true(json_is_true(json_object_get(oldest, "retry")));
    assert_string_equal(json_string_value(json_object_get(oldest, "queue")), "default");
    json_t *ca = json_object_get(oldest, "created_at"),
           *ea = json_object_get(oldest, "enqueued_at");
    assert_true(json_is_real(ca) && json_is_real(ea));
    assert_true(json_real_value(ca) >= before - 0.001 && json_real_value(ea) <= dray_now() + 0.001);
    assert_null(json_object_get(oldest, "at"));
    json_decref(oldest);
    json_decref(newest);

    r = test_redis_cmd(rc, "RPOP queue:critical");
    json_t *crit = json_loads(r->str, 0, NULL);
    freeReplyObject(r);
    assert_string_equal(json_string_value(json_object_get(crit, "jid")), jid2);
    assert_int_equal(json_integer_value(json_object_get(crit, "retry")), 3);
    assert_string_equal(json_string_value(json_object_get(crit, "bid")), "B1");
    json_decref(crit);
    json_decref(args);
    dray_client_free(c);
    redisFree(rc);
}

static void
test_schedule(void **state)
{
    (void)state;
    redisContext *rc = test_redis_connect(&test_srv);
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    dray_client *c = test_client(NULL);
    json_t *args = json_pack("[s]", "later");
    double now = dray_now();
    dray_push_opts in = {.in = 120};
    dray_push_opts at = {.at = now + 3600};
    dray_push_opts past = {.at = now - 10};
    char j1[DRAY_JID_BYTES], j2[DRAY_JID_BYTES];
    assert_int_equal(dray_client_push(c, "Later", args, &in, j1), 0);
    assert_int_equal(dray_client_push(c, "Later", args, &at, j2), 0);
    assert_int_equal(dray_client_push(c, "Now", args, &past, NULL), 0);
    redisReply *r = test_redis_cmd(rc, "ZRANGE schedule 0 -1 WITHSCORES");
    assert_int_equal(r->elements, 4);
    json_t *a = json_loads(r->element[0]->str, 0, NULL);
    double s1 = atof(r->element[1]->str), s2 = atof(r->element[3]->str);
    assert_string_equal(json_string_value(json_object_get(a, "jid")), j1);
    assert_true(s1 >= now + 119.9 && s1 <= now + 121);
    assert_true(s2 >= now + 3599.9 && s2 <= now + 3601);
    /* "at" is the score, not a field; no enqueued_at while scheduled */
    assert_null(json_object_get(a, "at"));
    assert_null(json_object_get(a, "enqueued_at"));
    assert_true(json_is_real(json_object_get(a, "created_at")));
    json_decref(a);
    freeReplyObject(r);
    /* a time in the past is pushed at once */
    r = test_redis_cmd(rc, "LLEN queue:default");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    /* scheduled bulk */
    json_t *list = json_pack("[[i],[i],[i]]", 1, 2, 3);
    size_t pushed;
    assert_int_equal(dray_client_push_bulk(c, "Later", list, &in, NULL, &pushed), 0);
    assert_int_equal(pushed, 3);
    r = test_redis_cmd(rc, "ZCARD schedule");
    assert_int_equal(r->integer, 5);
    freeReplyObject(r);
    json_decref(list);
    json_decref(args);
    dray_client_free(c);
    redisFree(rc);
}

static void
test_bulk_10000(void **state)
{
    (void)state;
    redisContext *rc = test_redis_connect(&test_srv);
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    freeReplyObject(test_redis_cmd(rc, "CONFIG RESETSTAT"));
    dray_client *c = test_client(NULL);
    json_t *list = json_array();
    for (int i = 0; i < 10000; i++)
        json_array_append_new(list, json_pack("[i]", i));
    char *jids = malloc(10000 * DRAY_JID_BYTES);
    size_t pushed = 0;
    dray_push_opts po = {.queue = "bulk"};
    assert_int_equal(dray_client_push_bulk(c, "BulkJob", list, &po, jids, &pushed), 0);
    assert_int_equal(pushed, 10000);
    redisReply *r = test_redis_cmd(rc, "LLEN queue:bulk");
    assert_int_equal(r->integer, 10000);
    freeReplyObject(r);
    /* a handful of commands: 10 LPUSH of 1000 jobs, each in its own MULTI */
    assert_true(cmdstat(rc, "lpush") <= 10);
    assert_true(cmdstat(rc, "exec") <= 10);
    /* FIFO: BRPOP end holds job 0, and the jids match in order */
    for (int i = 0; i < 3; i++) {
        r = test_redis_cmd(rc, "RPOP queue:bulk");
        json_t *o = json_loads(r->str, 0, NULL);
        assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "args"), 0)), i);
        assert_string_equal(json_string_value(json_object_get(o, "jid")),
                            jids + (size_t)i * DRAY_JID_BYTES);
        /* Sidekiq never has created_at after enqueued_at */
        assert_true(json_real_value(json_object_get(o, "created_at")) <=
                    json_real_value(json_object_get(o, "enqueued_at")));
        json_decref(o);
        freeReplyObject(r);
    }
    /* unique jids */
    for (int i = 1; i < 10000; i++)
        assert_string_not_equal(jids, jids + (size_t)i * DRAY_JID_BYTES);
    free(jids);
    json_decref(list);
    dray_client_free(c);
    redisFree(rc);
}

static void
test_bad_input_writes_nothing(void **state)
{
    (void)state;
    redisContext *rc = test_redis_connect(&test_srv);
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    o.max_payload = 200;
    dray_client *c;
    assert_int_equal(dray_client_new(&o, &c, NULL, 0), 0);
    json_t *args = json_array();
    json_t *obj = json_object();
    assert_int_equal(dray_client_push(c, "", args, NULL, NULL), DRAY_ECLASS);
    assert_int_equal(dray_client_push(c, NULL, args, NULL, NULL), DRAY_ECLASS);
    assert_int_equal(dray_client_push(c, "A", obj, NULL, NULL), DRAY_EARGS);
    assert_non_null(strstr(dray_client_errstr(c), "args"));
    dray_push_opts q = {.queue = ""};
    assert_int_equal(dray_client_push(c, "A", args, &q, NULL), DRAY_EQUEUE);
    q.queue = "has space";
    assert_int_equal(dray_client_push(c, "A", args, &q, NULL), DRAY_EQUEUE);
    dray_push_opts rt = {.retry = -7};
    assert_int_equal(dray_client_push(c, "A", args, &rt, NULL), DRAY_ERETRY);
    dray_push_opts ex = {.extra = json_pack("{s:s}", "jid", "not a jid")};
    assert_int_equal(dray_client_push(c, "A", args, &ex, NULL), DRAY_EJID);
    json_decref(ex.extra);
    json_t *big =
        json_pack("[s]", "0123456789012345678901234567890123456789012345678901234567890123456789"
                         "0123456789012345678901234567890123456789012345678901234567890123456789"
                         "0123456789012345678901234567890123456789");
    assert_int_equal(dray_client_push(c, "A", big, NULL, NULL), DRAY_ETOOBIG);
    assert_non_null(strstr(dray_client_errstr(c), "limit is 200"));
    json_t *bulk = json_pack("[[],{}]");
    assert_int_equal(dray_client_push_bulk(c, "A", bulk, NULL, NULL, NULL), DRAY_EARGS);
    assert_non_null(strstr(dray_client_errstr(c), "args[1]"));
    redisReply *r = test_redis_cmd(rc, "DBSIZE");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    json_decref(bulk);
    json_decref(big);
    json_decref(args);
    json_decref(obj);
    dray_client_free(c);
    redisFree(rc);
}

/* Fill stack below the caller with a pattern, so that a local read before
 * it is set holds garbage, not a lucky zero. */
static void __attribute__((noinline)) poison_stack(void)
{
    volatile unsigned char junk[16384];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = 0xa5;
}

/* An allocation failure at every step of a bulk push: DRAY_ENOMEM with
 * *pushed exactly what Redis holds (nothing: three jobs are one chunk) and
 * nothing freed that was never allocated; the first k that succeeds writes
 * all three. */
static void
test_bulk_alloc_failures(void **state)
{
    (void)state;
    redisContext *rc = test_redis_connect(&test_srv);
    dray_client *c = test_client(NULL);
    json_t *list = json_pack("[[i],[i],[i]]", 1, 2, 3);
    assert_non_null(list);
    char jids[3 * DRAY_JID_BYTES];
    int ok = 0;
    for (long k = 0; k < 300 && !ok; k++) {
        freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
        size_t pushed = 99;
        poison_stack();
        dray__alloc_fail_after(k);
        int r = dray_client_push_bulk(c, "Bulk", list, NULL, jids, &pushed);
        dray__alloc_fail_after(-1);
        redisReply *len = test_redis_cmd(rc, "LLEN queue:default");
        assert_int_equal(len->integer, (long long)pushed);
        freeReplyObject(len);
        if (r == 0) {
            ok = 1;
            assert_int_equal(pushed, 3);
        } else {
            if (r != DRAY_ENOMEM)
                print_error("k=%ld: %s\n", k, dray_client_errstr(c));
            assert_int_equal(r, DRAY_ENOMEM);
            assert_int_equal(pushed, 0);
            assert_true(dray_client_errstr(c)[0] != '\0');
        }
    }
    assert_true(ok);
    json_decref(list);
    dray_client_free(c);
    redisFree(rc);
}

static void
test_namespace(void **state)
{
    (void)state;
    redisContext *rc = test_redis_connect(&test_srv);
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    dray_client *c = test_client("myapp");
    json_t *args = json_array();
    assert_int_equal(dray_client_push(c, "A", args, NULL, NULL), 0);
    dray_push_opts in = {.in = 60};
    assert_int_equal(dray_client_push(c, "A", args, &in, NULL), 0);
    redisReply *r = test_redis_cmd(rc, "KEYS *");
    assert_int_equal(r->elements, 3);
    for (size_t i = 0; i < r->elements; i++)
        assert_memory_equal(r->element[i]->str, "myapp:", 6);
    freeReplyObject(r);
    json_decref(args);
    dray_client_free(c);
    redisFree(rc);
}

static void
test_dropped_connection(void **state)
{
    (void)state;
    dray_client *c = test_client(NULL);
    json_t *args = json_array();
    assert_int_equal(dray_client_push(c, "A", args, NULL, NULL), 0);
    test_redis_kill(&test_srv);
    int rc = dray_client_push(c, "A", args, NULL, NULL);
    assert_int_equal(rc, DRAY_ECONN);
    assert_non_null(strstr(dray_client_errstr(c), test_srv.sock));
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    /* the next push reconnects by itself */
    assert_int_equal(dray_client_push(c, "A", args, NULL, NULL), 0);
    redisContext *red = test_redis_connect(&test_srv);
    redisReply *r = test_redis_cmd(red, "LLEN queue:default");
    assert_int_equal(r->integer, 1);
    r = (freeReplyObject(r), test_redis_cmd(red, "SMEMBERS queues"));
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
    redisFree(red);
    json_decref(args);
    dray_client_free(c);
}

static void
test_auth(void **state)
{
    (void)state;
    test_redis auth;
    memset(&auth, 0, sizeof auth);
    snprintf(auth.extra, sizeof auth.extra, "--requirepass sekret");
    assert_int_equal(test_redis_start(&auth), 0);
    redisContext *rc = test_redis_connect(&auth);
    freeReplyObject(test_redis_cmd(rc, "AUTH sekret"));
    freeReplyObject(test_redis_cmd(rc, "ACL SETUSER app on >apppw ~* &* +@all"));
    char url[512];
    dray_options o;
    dray_options_init(&o);
    dray_client *c;
    json_t *args = json_array();
    snprintf(url, sizeof url, "%s?password=wrong", auth.url);
    o.redis_url = url;
    assert_int_equal(dray_client_new(&o, &c, NULL, 0), 0);
    assert_int_equal(dray_client_push(c, "A", args, NULL, NULL), DRAY_EAUTH);
    assert_non_null(strstr(dray_client_errstr(c), "AUTH refused"));
    dray_client_free(c);
    snprintf(url, sizeof url, "%s?password=sekret&db=2", auth.url);
    assert_int_equal(dray_client_new(&o, &c, NULL, 0), 0);
    assert_int_equal(dray_client_push(c, "A", args, NULL, NULL), 0);
    dray_client_free(c);
    snprintf(url, sizeof url, "%s?user=app&password=apppw", auth.url);
    assert_int_equal(dray_client_new(&o, &c, NULL, 0), 0);
    assert_int_equal(dray_client_push(c, "A", args, NULL, NULL), 0);
    dray_client_free(c);
    snprintf(url, sizeof url, "%s?user=app&password=nope", auth.url);
    assert_int_equal(dray_client_new(&o, &c, NULL, 0), 0);
    assert_int_equal(dray_client_push(c, "A", args, NULL, NULL), DRAY_EAUTH);
    dray_client_free(c);
    redisReply *r = test_redis_cmd(rc, "SELECT 2");
    freeReplyObject(r);
    r = test_redis_cmd(rc, "LLEN queue:default");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(rc);
    json_decref(args);
    test_redis_stop(&auth);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_one),   cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_bulk_10000), cmocka_unit_test(test_bad_input_writes_nothing),
        cmocka_unit_test(test_namespace),  cmocka_unit_test(test_dropped_connection),
        cmocka_unit_test(test_auth),       cmocka_unit_test(test_bulk_alloc_failures),
    };
    return cmocka_run_group_tests(tests, test_start, test_teardown);
}
