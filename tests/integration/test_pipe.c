/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The pipeline helper and the pushes built on it, attacked against a real
 * redis-server: a refused command in the middle, a link killed mid-pipeline,
 * a refused job or chunk in a bulk push, a Redis stalled (SIGSTOP) while a
 * push waits for EXEC, an idle link the server closed. After each, the next
 * call on the same connection must read its own replies, and Redis must hold
 * exactly the jobs reported as pushed. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"
#include "harness.h"

static redisContext *
flushed(void)
{
    redisContext *rc = test_redis_connect(&test_srv);
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    return rc;
}

static long long
llen(redisContext *rc, const char *key)
{
    redisReply *r = test_redis_cmd(rc, "LLEN %s", key);
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

static dray_client *
client(size_t max_payload, int command_timeout_ms)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    if (max_payload)
        o.max_payload = max_payload;
    if (command_timeout_ms)
        o.command_timeout_ms = command_timeout_ms;
    dray_client *c;
    char err[256];
    assert_int_equal(dray_client_new(&o, &c, err, sizeof err), 0);
    return c;
}

/* ---- the helper ------------------------------------------------------------- */

static void
test_refused_in_middle(void **state)
{
    (void)state;
    redisContext *rc = flushed();
    dray__redis_cfg cfg;
    assert_int_equal(dray__redis_url_parse(&cfg, test_srv.url, NULL, 0), 0);
    dray__conn c;
    dray__conn_init(&c, &cfg);

    /* plain pipeline: the refusal is reported, the link stays in step */
    dray__pipe p;
    dray__pipe_init(&p, &c);
    dray__pipe_addf(&p, "SET k one");
    dray__pipe_addf(&p, "LPUSH k x"); /* WRONGTYPE */
    dray__pipe_addf(&p, "GET k");
    assert_int_equal(dray__pipe_run(&p), DRAY_EREDIS);
    assert_non_null(strstr(c.errstr, "WRONGTYPE"));
    assert_int_equal(p.cmd[0].st, 0);
    assert_int_equal(p.cmd[1].st, DRAY_EREDIS);
    assert_int_equal(p.cmd[2].st, 0);
    assert_string_equal(dray__pipe_reply(&p, 2)->str, "one");
    dray__pipe_close(&p);
    assert_non_null(c.ctx); /* all replies read: no reason to drop */

    /* MULTI with a command refused at queue time: EXECABORT, nothing runs */
    dray__pipe_init(&p, &c);
    dray__pipe_begin(&p);
    dray__pipe_addf(&p, "SET k two");
    dray__pipe_addf(&p, "NOSUCHCOMMAND");
    dray__pipe_commit(&p);
    assert_int_equal(dray__pipe_run(&p), DRAY_EREDIS);
    assert_int_equal(p.cmd[2].st, DRAY_EREDIS);
    assert_int_equal(p.cmd[3].st, DRAY_EREDIS);
    dray__pipe_close(&p);

    /* MULTI whose command fails at run time: the EXEC array names it */
    dray__pipe_init(&p, &c);
    dray__pipe_begin(&p);
    dray__pipe_addf(&p, "SET j x");
    dray__pipe_addf(&p, "LPUSH k x");
    dray__pipe_commit(&p);
    assert_int_equal(dray__pipe_run(&p), DRAY_EREDIS);
    assert_int_equal(p.cmd[3].st, DRAY_EREDIS);
    assert_int_equal(dray__pipe_reply(&p, 3)->type, REDIS_REPLY_ARRAY);
    dray__pipe_close(&p);

    /* the next call reads its own replies */
    dray__pipe_init(&p, &c);
    dray__pipe_addf(&p, "GET k");
    dray__pipe_addf(&p, "ECHO hello");
    assert_int_equal(dray__pipe_run(&p), 0);
    assert_string_equal(dray__pipe_reply(&p, 0)->str, "one");
    assert_string_equal(dray__pipe_reply(&p, 1)->str, "hello");
    dray__pipe_close(&p);

    dray__conn_close(&c);
    dray__redis_cfg_close(&cfg);
    redisFree(rc);
}

/* Kill the client that is blocked in BLPOP, from another connection. */
static int
killed_blpop(void *arg)
{
    redisContext *rc = arg;
    redisReply *r = test_redis_cmd(rc, "CLIENT LIST");
    const char *line = strstr(r->str, "cmd=blpop") ? r->str : NULL;
    long long id = 0;
    if (line) {
        /* the id of the line holding cmd=blpop */
        const char *hit = strstr(r->str, "cmd=blpop");
        const char *start = hit;
        while (start > r->str && start[-1] != '\n')
            start--;
        id = strtoll(start + 3, NULL, 10); /* "id=" */
    }
    freeReplyObject(r);
    if (!id)
        return 0;
    freeReplyObject(test_redis_cmd(rc, "CLIENT KILL ID %lld", id));
    return 1;
}

static void *
killer(void *arg)
{
    redisContext *rc = test_redis_connect(&test_srv);
    *(int *)arg = test_wait_until(killed_blpop, rc, 10);
    redisFree(rc);
    return NULL;
}

static void
test_killed_mid_pipeline(void **state)
{
    (void)state;
    redisContext *rc = flushed();
    dray__redis_cfg cfg;
    assert_int_equal(dray__redis_url_parse(&cfg, test_srv.url, NULL, 0), 0);
    dray__conn c;
    dray__conn_init(&c, &cfg);

    dray__pipe p;
    dray__pipe_init(&p, &c);
    dray__pipe_addf(&p, "SET before 1");
    dray__pipe_addf(&p, "BLPOP nothing 5");
    dray__pipe_addf(&p, "SET after 1");
    int killed = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, killer, &killed), 0);
    int rc1 = dray__pipe_run(&p);
    pthread_join(t, NULL);
    assert_int_equal(killed, 1);
    assert_int_equal(rc1, DRAY_EUNSURE);
    assert_int_equal(p.cmd[0].st, 0);
    assert_int_equal(p.cmd[1].st, DRAY_EUNSURE);
    assert_int_equal(p.cmd[2].st, DRAY_EUNSURE);
    assert_null(c.ctx); /* dropped: nothing stale can be read later */
    dray__pipe_close(&p);
    redisReply *r = test_redis_cmd(rc, "EXISTS after");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    /* the same dray__conn reconnects and reads the right replies */
    dray__pipe_init(&p, &c);
    dray__pipe_addf(&p, "ECHO one");
    dray__pipe_addf(&p, "GET before");
    assert_int_equal(dray__pipe_run(&p), 0);
    assert_string_equal(dray__pipe_reply(&p, 0)->str, "one");
    assert_string_equal(dray__pipe_reply(&p, 1)->str, "1");
    dray__pipe_close(&p);

    dray__conn_close(&c);
    dray__redis_cfg_close(&cfg);
    redisFree(rc);
}

/* ---- push_bulk --------------------------------------------------------------- */

/* A job refused in the middle of a bulk push (too big), after one round
 * trip of 8 chunks was done and a ninth chunk buffered: before the fix the
 * ninth chunk was left unsent and unread, and the next push flushed it (1000
 * jobs the caller was told were not pushed) and read its replies. */
static void
test_bulk_refused_job_then_next(void **state)
{
    (void)state;
    redisContext *rc = flushed();
    dray_client *c = client(400, 0);
    json_t *list = json_array();
    for (int i = 0; i < 10000; i++)
        json_array_append_new(list, json_pack("[i]", i));
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_array_set_new(list, 9500, json_pack("[s]", big));
    char *jids = calloc(10000, DRAY_JID_BYTES);
    size_t pushed = 12345;
    int rc1 = dray_client_push_bulk(c, "Bulk", list, NULL, jids, &pushed);
    char err1[DRAY_ERRSTR_BYTES];
    snprintf(err1, sizeof err1, "%s", dray_client_errstr(c));
    json_t *args = json_pack("[s]", "next");
    char jid[DRAY_JID_BYTES];
    long long n0 = llen(rc, "queue:default");
    int rc2 = dray_client_push(c, "Next", args, NULL, jid);
    long long n1 = llen(rc, "queue:default");
    print_message("refused job 9500: rc %s, *pushed %zu, LLEN %lld; next push rc %s, LLEN %lld\n",
                  dray_err_name(rc1), pushed, n0, dray_err_name(rc2), n1);
    assert_int_equal(rc1, DRAY_ETOOBIG);
    assert_non_null(strstr(err1, "9500"));
    /* exactly the first *pushed jobs are written: one whole round trip */
    assert_int_equal(pushed, 8000);
    assert_int_equal(n0, 8000);

    /* the next calls on the same client: correct, and nothing extra lands */
    assert_int_equal(rc2, 0);
    assert_int_equal(n1, 8001);
    size_t pushed2 = 0;
    json_t *list2 = json_pack("[[i],[i]]", 1, 2);
    assert_int_equal(dray_client_push_bulk(c, "Bulk", list2, NULL, NULL, &pushed2), 0);
    assert_int_equal(pushed2, 2);
    assert_int_equal(llen(rc, "queue:default"), 8003);
    /* the newest job is the last bulk one; "Next" sits just behind it */
    redisReply *r = test_redis_cmd(rc, "LINDEX queue:default 2");
    assert_non_null(strstr(r->str, jid));
    freeReplyObject(r);
    /* the oldest is job 0, the newest of the bulk push is job 7999 */
    r = test_redis_cmd(rc, "LINDEX queue:default -1");
    assert_non_null(strstr(r->str, jids));
    freeReplyObject(r);
    r = test_redis_cmd(rc, "LINDEX queue:default 3");
    assert_non_null(strstr(r->str, jids + 7999 * DRAY_JID_BYTES));
    freeReplyObject(r);
    free(jids);
    json_decref(list);
    json_decref(list2);
    json_decref(args);
    dray_client_free(c);
    redisFree(rc);
}

/* A chunk refused by Redis inside EXEC (LPUSH on a key of the wrong type):
 * before the fix the EXEC array counted as success and *pushed said 3000. */
static void
test_bulk_refused_chunk(void **state)
{
    (void)state;
    redisContext *rc = flushed();
    freeReplyObject(test_redis_cmd(rc, "SET queue:default not-a-list"));
    dray_client *c = client(0, 0);
    json_t *list = json_array();
    for (int i = 0; i < 3000; i++)
        json_array_append_new(list, json_pack("[i]", i));
    size_t pushed = 12345;
    int rc1 = dray_client_push_bulk(c, "Bulk", list, NULL, NULL, &pushed);
    print_message("refused chunks: rc %s, *pushed %zu, jobs in Redis 0\n", dray_err_name(rc1),
                  pushed);
    assert_int_equal(rc1, DRAY_EREDIS);
    assert_non_null(strstr(dray_client_errstr(c), "WRONGTYPE"));
    assert_int_equal(pushed, 0);
    freeReplyObject(test_redis_cmd(rc, "DEL queue:default"));
    /* the same client goes on correctly */
    assert_int_equal(dray_client_push_bulk(c, "Bulk", list, NULL, NULL, &pushed), 0);
    assert_int_equal(pushed, 3000);
    assert_int_equal(llen(rc, "queue:default"), 3000);
    json_decref(list);
    dray_client_free(c);
    redisFree(rc);
}

/* ---- no double write ------------------------------------------------------------ */

static int
nclients(redisContext *rc)
{
    redisReply *r = test_redis_cmd(rc, "INFO clients");
    const char *p = strstr(r->str, "connected_clients:");
    int n = p ? atoi(p + 18) : -1;
    freeReplyObject(r);
    return n;
}

struct want_clients {
    redisContext *rc;
    int n;
};

static int
clients_are(void *arg)
{
    struct want_clients *w = arg;
    return nclients(w->rc) == w->n;
}

/* Redis stalls (SIGSTOP) while a push waits for EXEC's reply. Before the fix
 * the client timed out, reconnected and sent the push again: after SIGCONT
 * both ran and the job was in Redis twice. */
static void
test_stalled_push_written_once(void **state)
{
    (void)state;
    redisContext *rc = flushed();
    dray_client *c = client(0, 300);
    json_t *args = json_pack("[s]", "once");
    assert_int_equal(dray_client_push(c, "Warm", args, NULL, NULL), 0); /* connected */
    freeReplyObject(test_redis_cmd(rc, "DEL queue:default"));
    int before = nclients(rc); /* this link, the client's, any left by other tests */
    redisFree(rc);

    assert_int_equal(kill(test_srv.pid, SIGSTOP), 0);
    double t0 = test_now();
    char jid[DRAY_JID_BYTES];
    int rc1 = dray_client_push(c, "Stalled", args, NULL, jid);
    double took = test_now() - t0;
    assert_int_equal(kill(test_srv.pid, SIGCONT), 0);
    /* Redis has read every byte the client sent once every link the client
     * dropped is gone: the client holds none now, this test one again. */
    rc = test_redis_connect(&test_srv);
    struct want_clients w = {rc, before - 1};
    assert_true(test_wait_until(clients_are, &w, 10));
    long long copies = llen(rc, "queue:default");
    print_message("stalled push: rc %s after %.0f ms; copies in Redis after SIGCONT: %lld\n",
                  dray_err_name(rc1), took * 1000, copies);
    assert_int_equal(copies, 1);
    assert_int_equal(rc1, DRAY_EUNSURE);
    assert_non_null(strstr(dray_client_errstr(c), "may have"));
    redisReply *r = test_redis_cmd(rc, "LINDEX queue:default 0");
    assert_non_null(strstr(r->str, "Stalled"));
    freeReplyObject(r);
    /* and the client goes on */
    assert_int_equal(dray_client_push(c, "After", args, NULL, NULL), 0);
    assert_int_equal(llen(rc, "queue:default"), 2);
    json_decref(args);
    dray_client_free(c);
    redisFree(rc);
}

/* An idle link the server closed is replaced before sending: the push
 * succeeds at once, written once. */
static void
test_idle_link_closed(void **state)
{
    (void)state;
    redisContext *rc = flushed();
    dray_client *c = client(0, 0);
    json_t *args = json_array();
    assert_int_equal(dray_client_push(c, "A", args, NULL, NULL), 0);
    freeReplyObject(test_redis_cmd(rc, "CLIENT KILL TYPE normal SKIPME yes"));
    assert_int_equal(dray_client_push(c, "B", args, NULL, NULL), 0);
    assert_int_equal(llen(rc, "queue:default"), 2);
    json_decref(args);
    dray_client_free(c);
    redisFree(rc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_in_middle),
        cmocka_unit_test(test_killed_mid_pipeline),
        cmocka_unit_test(test_bulk_refused_job_then_next),
        cmocka_unit_test(test_bulk_refused_chunk),
        cmocka_unit_test(test_stalled_push_written_once),
        cmocka_unit_test(test_idle_link_closed),
    };
    return cmocka_run_group_tests(tests, test_start, test_teardown);
}
