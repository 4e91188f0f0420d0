/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The server against a real redis-server: processing, queue order, the
 * failure path, scheduler, heartbeat, remote signals, shutdown, outages. */
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

typedef struct tally {
    atomic_int ok, fail, running;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int release;      /* blocking handlers wait for this */
    char order[4096]; /* first letters of args[0], in run order */
    int norder;
    char seen_jids[512][DRAY_JID_BYTES];
    int nseen;
} tally;

static tally T;

static void
tally_reset(void)
{
    pthread_mutex_destroy(&T.mu);
    pthread_cond_destroy(&T.cond);
    memset(&T, 0, sizeof T);
    pthread_mutex_init(&T.mu, NULL);
    pthread_cond_init(&T.cond, NULL);
}

static int
h_ok(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    const char *s = json_string_value(json_array_get(dray_job_args(job), 0));
    pthread_mutex_lock(&T.mu);
    if (s && T.norder < (int)sizeof T.order - 1)
        T.order[T.norder++] = s[0];
    if (T.nseen < 512)
        memcpy(T.seen_jids[T.nseen++], dray_job_jid(job), DRAY_JID_BYTES);
    pthread_mutex_unlock(&T.mu);
    atomic_fetch_add(&T.ok, 1);
    return 0;
}

static int
h_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)ud;
    atomic_fetch_add(&T.fail, 1);
    return dray_result_fail(res, "ArgumentError", "bad thing %d", 42);
}

static int
h_block(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    pthread_mutex_lock(&T.mu);
    atomic_fetch_add(&T.running, 1);
    pthread_cond_broadcast(&T.cond);
    while (!T.release)
        pthread_cond_wait(&T.cond, &T.mu);
    pthread_mutex_unlock(&T.mu);
    atomic_fetch_add(&T.ok, 1);
    return 0;
}

static void
release_blocked(void)
{
    pthread_mutex_lock(&T.mu);
    T.release = 1;
    pthread_cond_broadcast(&T.cond);
    pthread_mutex_unlock(&T.mu);
}

static void
start(test_running *r, dray_options *o)
{
    test_server_new(r, o);
    assert_int_equal(dray_server_register(r->s, "Ok", h_ok, NULL, NULL), 0);
    assert_int_equal(dray_server_register(r->s, "Fail", h_fail, NULL, NULL), 0);
    assert_int_equal(dray_server_register(r->s, "Block", h_block, NULL, NULL), 0);
}

static int wanted;
static int
ok_reached(void *a)
{
    (void)a;
    return atomic_load(&T.ok) >= wanted;
}
static int
fail_reached(void *a)
{
    (void)a;
    return atomic_load(&T.fail) >= wanted;
}
static int
running_reached(void *a)
{
    (void)a;
    return atomic_load(&T.running) >= wanted;
}

static int
setup(void **state)
{
    pthread_mutex_init(&T.mu, NULL);
    pthread_cond_init(&T.cond, NULL);
    return test_setup(state);
}

static int
each_setup(void **state)
{
    test_flush(state);
    tally_reset();
    return 0;
}

static void
test_processes_and_flushes_stats(void **state)
{
    (void)state;
    for (int i = 0; i < 100; i++)
        test_push_job("Ok", NULL, json_pack("[s]", "x"), NULL);
    test_running r;
    dray_options o;
    test_options(&o, "default", 4);
    start(&r, &o);
    test_server_go(&r);
    wanted = 100;
    assert_true(test_wait_until(ok_reached, NULL, 20));
    test_server_finish(&r);
    assert_int_equal(atomic_load(&T.ok), 100);
    assert_int_equal(test_int("GET stat:processed"), 100);
    assert_int_equal(test_int("GET stat:failed"), -1 == test_int("GET stat:failed") ? -1 : 0);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    /* the process left the registry */
    assert_int_equal(test_int("SCARD processes"), 0);
}

static void
test_strict_order(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++)
        test_push_job("Ok", "low", json_pack("[s]", "l"), NULL);
    for (int i = 0; i < 5; i++)
        test_push_job("Ok", "high", json_pack("[s]", "h"), NULL);
    test_running r;
    dray_options o;
    test_options(&o, "high low", 1);
    start(&r, &o);
    test_server_go(&r);
    wanted = 10;
    assert_true(test_wait_until(ok_reached, NULL, 20));
    test_server_finish(&r);
    assert_string_equal(T.order, "hhhhhlllll");
}

static void
test_weighted_order(void **state)
{
    (void)state;
    dray_client *c = test_client(NULL);
    json_t *la = json_array(), *lb = json_array();
    for (int i = 0; i < 400; i++) {
        json_array_append_new(la, json_pack("[s]", "a"));
        json_array_append_new(lb, json_pack("[s]", "b"));
    }
    dray_push_opts pa = {.queue = "a"}, pb = {.queue = "b"};
    assert_int_equal(dray_client_push_bulk(c, "Ok", la, &pa, NULL, NULL), 0);
    assert_int_equal(dray_client_push_bulk(c, "Ok", lb, &pb, NULL, NULL), 0);
    json_decref(la);
    json_decref(lb);
    dray_client_free(c);
    test_running r;
    dray_options o;
    test_options(&o, "a,3 b,1", 1);
    start(&r, &o);
    test_server_go(&r);
    wanted = 400;
    assert_true(test_wait_until(ok_reached, NULL, 30));
    test_server_finish(&r);
    int na = 0;
    for (int i = 0; i < 400; i++)
        na += T.order[i] == 'a';
    /* expected 300 of the first 400 from "a" (weight 3:1); both queues served */
    if (na < 255 || na > 345)
        fail_msg("weighted fetch took %d of the first 400 from a (expected about 300)", na);
}

static json_t *
zfirst(const char *key, double *score)
{
    redisReply *r = test_redis_cmd(test_rc, "ZRANGE %s 0 0 WITHSCORES", key);
    if (r->elements != 2) {
        freeReplyObject(r);
        return NULL;
    }
    json_t *o = json_loads(r->element[0]->str, 0, NULL);
    if (score)
        *score = atof(r->element[1]->str);
    freeReplyObject(r);
    return o;
}

static int
retry_has_count(void *want)
{
    json_t *o = zfirst("retry", NULL);
    int ok = o && json_integer_value(json_object_get(o, "retry_count")) == *(int *)want;
    json_decref(o);
    return ok;
}

static void
test_retry_fields_and_backoff(void **state)
{
    (void)state;
    test_push_job("Fail", "work", json_pack("[i]", 7), "{\"custom\":{\"keep\":true}}");
    test_running r;
    dray_options o;
    test_options(&o, "work", 2);
    start(&r, &o);
    test_server_go(&r);
    int want = 0;
    double t0 = dray_now();
    assert_true(test_wait_until(retry_has_count, &want, 10));
    double score;
    json_t *j = zfirst("retry", &score);
    assert_string_equal(json_string_value(json_object_get(j, "error_class")), "ArgumentError");
    assert_string_equal(json_string_value(json_object_get(j, "error_message")), "bad thing 42");
    assert_string_equal(json_string_value(json_object_get(j, "queue")), "work");
    assert_true(json_is_real(json_object_get(j, "failed_at")));
    assert_null(json_object_get(j, "retried_at"));
    assert_true(json_is_true(json_object_get(json_object_get(j, "custom"), "keep")));
    /* count 0: 0^4 + 15 + rand(10) * 1 seconds */
    double fa = json_real_value(json_object_get(j, "failed_at"));
    if (score < fa + 15 - 0.01 || score > fa + 24 + 0.01)
        fail_msg("first retry score %.3f not in failed_at+[15,24] (failed_at %.3f)", score, fa);
    /* make it due now: the scheduler moves it back and it fails again */
    char *member = json_dumps(j, JSON_COMPACT);
    redisReply *rr = test_redis_cmd(test_rc, "ZRANGE retry 0 0");
    freeReplyObject(
        test_redis_cmd(test_rc, "ZADD retry XX 0 %b", rr->element[0]->str, rr->element[0]->len));
    freeReplyObject(rr);
    free(member);
    json_decref(j);
    want = 1;
    assert_true(test_wait_until(retry_has_count, &want, 10));
    j = zfirst("retry", &score);
    double ra = json_real_value(json_object_get(j, "retried_at"));
    assert_true(ra >= t0);
    assert_true(json_real_value(json_object_get(j, "failed_at")) == fa);
    /* count 1: 1 + 15 + rand(10) * 2 */
    if (score < ra + 16 - 0.01 || score > ra + 34 + 0.01)
        fail_msg("second retry score %.3f not in retried_at+[16,34]", score);
    json_decref(j);
    test_server_finish(&r);
    assert_int_equal(atomic_load(&T.fail), 2);
    assert_int_equal(test_int("GET stat:failed"), 2);
    assert_int_equal(test_int("GET stat:processed"), 2);
}

static int
zcard_is(void *arg)
{
    const char **kv = arg;
    return test_int("ZCARD %s", kv[0]) == atoll(kv[1]);
}

static void
test_dead_paths(void **state)
{
    (void)state;
    /* retry: 0 is truthy in Ruby: no retries, straight to dead */
    test_push_job("Fail", NULL, json_pack("[s]", "zero"), "{\"retry\":0}");
    /* retry: false: discarded, not dead */
    test_push_job("Fail", NULL, json_pack("[s]", "false"), "{\"retry\":false}");
    /* dead: false: exhausted but not kept */
    test_push_job("Fail", NULL, json_pack("[s]", "nodead"), "{\"retry\":0,\"dead\":false}");
    /* unknown class: retried like Sidekiq's NameError */
    test_push_job("NoSuchJob", NULL, json_pack("[]"), NULL);
    /* malformed payload: to dead as a Dray::MalformedJob, worker continues */
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH queue:default %s", "{not json"));
    test_push_job("Ok", NULL, json_pack("[s]", "after"), NULL);
    test_running r;
    dray_options o;
    test_options(&o, "default", 1);
    start(&r, &o);
    test_server_go(&r);
    wanted = 1;
    assert_true(test_wait_until(ok_reached, NULL, 10));
    const char *dead2[2] = {"dead", "2"};
    assert_true(test_wait_until(zcard_is, dead2, 10));
    const char *retry1[2] = {"retry", "1"};
    assert_true(test_wait_until(retry_has_count, &(int){0}, 10));
    assert_true(zcard_is(retry1));
    test_server_finish(&r);
    json_t *j = zfirst("retry", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "error_class")), "NameError");
    assert_non_null(strstr(json_string_value(json_object_get(j, "error_message")), "NoSuchJob"));
    json_decref(j);
    redisReply *d = test_redis_cmd(test_rc, "ZRANGE dead 0 -1");
    int raw = 0, zero = 0;
    for (size_t i = 0; i < d->elements; i++) {
        json_t *m = json_loads(d->element[i]->str, 0, NULL);
        const char *a0 = json_string_value(json_array_get(json_object_get(m, "args"), 0));
        const char *mc = json_string_value(json_object_get(m, "class"));
        if (a0 && mc && !strcmp(a0, "{not json") && !strcmp(mc, "Dray::MalformedJob"))
            raw++;
        json_decref(m);
        if (strstr(d->element[i]->str, "\"zero\""))
            zero++;
    }
    freeReplyObject(d);
    assert_int_equal(raw, 1);
    assert_int_equal(zero, 1);
    assert_int_equal(atomic_load(&T.fail), 3);
}

static void
test_dead_trims(void **state)
{
    (void)state;
    double now = dray_now();
    /* an old member beyond the age limit, and a cap of 5 members */
    freeReplyObject(test_redis_cmd(test_rc, "ZADD dead %f %s", now - 1000, "{\"old\":1}"));
    for (int i = 0; i < 8; i++)
        test_push_job("Fail", NULL, json_pack("[i]", i), "{\"retry\":0}");
    test_running r;
    dray_options o;
    test_options(&o, "default", 1);
    o.dead_max_jobs = 5;
    o.dead_timeout_s = 100;
    start(&r, &o);
    test_server_go(&r);
    wanted = 8;
    assert_true(test_wait_until(fail_reached, NULL, 10));
    test_server_finish(&r);
    assert_int_equal(test_int("ZCARD dead"), 5);
    assert_int_equal(test_int("ZSCORE dead %s", "{\"old\":1}"), -1);
    /* the newest five survive */
    redisReply *d = test_redis_cmd(test_rc, "ZRANGE dead 0 -1");
    for (size_t i = 0; i < d->elements; i++) {
        json_t *o2 = json_loads(d->element[i]->str, 0, NULL);
        assert_true(json_integer_value(json_array_get(json_object_get(o2, "args"), 0)) >= 3);
        json_decref(o2);
    }
    freeReplyObject(d);
}

static void
test_scheduler_exactly_once_two_processes(void **state)
{
    (void)state;
    /* 300 jobs due now in schedule and retry */
    dray_client *c = test_client(NULL);
    json_t *l = json_array();
    for (int i = 0; i < 250; i++)
        json_array_append_new(l, json_pack("[s]", "s"));
    dray_push_opts in = {.in = 1};
    char *jids = malloc(250 * DRAY_JID_BYTES);
    assert_int_equal(dray_client_push_bulk(c, "Ok", l, &in, jids, NULL), 0);
    json_decref(l);
    dray_client_free(c);
    for (int i = 0; i < 50; i++)
        freeReplyObject(test_redis_cmd(test_rc,
                                       "ZADD retry %f "
                                       "{\"class\":\"Ok\",\"args\":[\"r\"],\"jid\":\"%024x\","
                                       "\"queue\":\"default\",\"retry_count\":0}",
                                       dray_now() - 5, i));
    /* a member that is not a job must not block the others: it goes to dead */
    freeReplyObject(test_redis_cmd(test_rc, "ZADD schedule %f %s", dray_now() - 30, "not a job"));
    /* a job due far in the future must not move */
    freeReplyObject(test_redis_cmd(
        test_rc,
        "ZADD schedule %f {\"class\":\"Ok\",\"args\":[\"f\"],\"jid\":\"ffffffffffffffffffffffff\"}",
        dray_now() + 3600));
    test_running a, b;
    dray_options o;
    test_options(&o, "default", 3);
    o.poll_interval_s = 0.05;
    start(&a, &o);
    start(&b, &o);
    test_server_go(&a);
    test_server_go(&b);
    wanted = 300;
    assert_true(test_wait_until(ok_reached, NULL, 30));
    test_server_finish(&a);
    test_server_finish(&b);
    assert_int_equal(atomic_load(&T.ok), 300);
    assert_int_equal(test_int("ZCARD schedule"), 1);
    assert_int_equal(test_int("ZCARD retry"), 0);
    assert_int_equal(test_int("ZCARD dead"), 1);
    assert_true(test_int("ZSCORE dead %s", "not a job") > 0);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    /* every scheduled jid ran exactly once */
    for (int i = 0; i < 250; i++) {
        int n = 0;
        for (int k = 0; k < T.nseen; k++)
            n += !strcmp(T.seen_jids[k], jids + (size_t)i * DRAY_JID_BYTES);
        assert_int_equal(n, 1);
    }
    free(jids);
}

static int
hash_busy_is(void *arg)
{
    const char *id = arg;
    redisReply *r = test_redis_cmd(test_rc, "HGET %s busy", id);
    int ok = r->type == REDIS_REPLY_STRING && atoi(r->str) == wanted;
    freeReplyObject(r);
    return ok;
}

static void
test_heartbeat_fields_and_work(void **state)
{
    (void)state;
    test_push_job("Block", "hb", json_pack("[s]", "b"), NULL);
    test_running r;
    dray_options o;
    test_options(&o, "hb,2 other", 3);
    o.tag = "myapp";
    o.labels = "blue,canary";
    start(&r, &o);
    char id[256];
    snprintf(id, sizeof id, "%s", dray_server_identity(r.s));
    test_server_go(&r);
    wanted = 1;
    assert_true(test_wait_until(running_reached, NULL, 10));
    assert_true(test_wait_until(hash_busy_is, (void *)id, 10));
    assert_int_equal(test_int("SISMEMBER processes %s", id), 1);
    redisReply *h = test_redis_cmd(test_rc, "HGET %s info", id);
    json_t *info = json_loads(h->str, 0, NULL);
    freeReplyObject(h);
    assert_non_null(info);
    assert_string_equal(json_string_value(json_object_get(info, "identity")), id);
    assert_int_equal(json_integer_value(json_object_get(info, "concurrency")), 3);
    assert_string_equal(json_string_value(json_object_get(info, "tag")), "myapp");
    assert_int_equal(json_array_size(json_object_get(info, "queues")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(info, "labels"), 1)),
                        "canary");
    assert_true(json_is_real(json_object_get(info, "started_at")));
    assert_true(json_integer_value(json_object_get(info, "pid")) > 0);
    json_decref(info);
    h = test_redis_cmd(test_rc, "HMGET %s beat quiet rss rtt_us", id);
    assert_true(atof(h->element[0]->str) > dray_now() - 10);
    assert_string_equal(h->element[1]->str, "false");
    assert_true(atol(h->element[2]->str) > 0);
    assert_true(atol(h->element[3]->str) > 0);
    freeReplyObject(h);
    assert_true(test_int("TTL %s", id) > 0 && test_int("TTL %s", id) <= 60);
    /* the workers hash holds the running job as Sidekiq 6.4 writes it */
    h = test_redis_cmd(test_rc, "HGETALL %s:workers", id);
    assert_int_equal(h->elements, 2);
    json_t *w = json_loads(h->element[1]->str, 0, NULL);
    freeReplyObject(h);
    assert_string_equal(json_string_value(json_object_get(w, "queue")), "hb");
    json_t *p = json_loads(json_string_value(json_object_get(w, "payload")), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(p, "class")), "Block");
    assert_true(json_is_integer(json_object_get(w, "run_at")));
    json_decref(p);
    json_decref(w);
    release_blocked();
    test_server_finish(&r);
    assert_int_equal(test_int("EXISTS %s:workers", id), 0);
}

static int
hash_quiet(void *arg)
{
    redisReply *r = test_redis_cmd(test_rc, "HGET %s quiet", (const char *)arg);
    int ok = r->type == REDIS_REPLY_STRING && !strcmp(r->str, "true");
    freeReplyObject(r);
    return ok;
}

static int
thread_done(void *arg)
{
    test_running *r = arg;
    return pthread_tryjoin_np(r->th, NULL) == 0;
}

static void
test_remote_signals(void **state)
{
    (void)state;
    test_running r;
    dray_options o;
    test_options(&o, "default", 2);
    start(&r, &o);
    const char *id = dray_server_identity(r.s);
    char idcopy[256];
    snprintf(idcopy, sizeof idcopy, "%s", id);
    test_server_go(&r);
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH %s-signals TSTP", idcopy));
    assert_true(test_wait_until(hash_quiet, idcopy, 10));
    /* quiet: new jobs stay in the queue (workers may be in a 2 s BRPOP; any
     * job fetched there goes straight back) */
    test_push_job("Ok", NULL, json_pack("[s]", "q"), NULL);
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH %s-signals TERM", idcopy));
    assert_true(test_wait_until(thread_done, &r, 15));
    assert_int_equal(r.rc, 0);
    dray_server_free(r.s);
    assert_int_equal(atomic_load(&T.ok), 0);
    assert_int_equal(test_int("LLEN queue:default"), 1);
    assert_int_equal(test_int("SISMEMBER processes %s", idcopy), 0);
}

static void
test_shutdown_requeues_running(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++)
        test_push_job("Block", "slow", json_pack("[i]", i), NULL);
    /* a job behind them must stay where it is */
    test_push_job("Ok", "slow", json_pack("[s]", "tail"), NULL);
    redisReply *before = test_redis_cmd(test_rc, "LRANGE queue:slow 0 -1");
    assert_int_equal(before->elements, 11);
    test_running r;
    dray_options o;
    test_options(&o, "slow", 10);
    o.shutdown_timeout_s = 1;
    start(&r, &o);
    test_server_go(&r);
    wanted = 10;
    assert_true(test_wait_until(running_reached, NULL, 10));
    double t0 = dray_now();
    dray_server_stop(r.s);
    pthread_join(r.th, NULL);
    double took = dray_now() - t0;
    assert_int_equal(r.rc, 0);
    assert_true(took >= 0.9 && took < 4.5);
    /* all ten back at the head (the BRPOP end), unchanged; tail untouched */
    redisReply *after = test_redis_cmd(test_rc, "LRANGE queue:slow 0 -1");
    assert_int_equal(after->elements, 11);
    assert_string_equal(after->element[0]->str, before->element[0]->str);
    for (size_t i = 1; i < 11; i++) {
        int found = 0;
        for (size_t k = 1; k < 11; k++)
            found += !strcmp(after->element[i]->str, before->element[k]->str);
        assert_int_equal(found, 1);
    }
    freeReplyObject(after);
    freeReplyObject(before);
    assert_int_equal(test_int("ZCARD retry"), 0);
    assert_int_equal(test_int("ZCARD dead"), 0);
    assert_int_equal(test_int("GET stat:failed"), -1);
    /* the blocked handlers finish later: their requeued copies leave the
     * queue (free waits for them), so none runs twice; the tail stays */
    release_blocked();
    dray_server_free(r.s);
    assert_int_equal(atomic_load(&T.ok), 10);
    assert_int_equal(test_int("LLEN queue:slow"), 1);
    redisReply *tail = test_redis_cmd(test_rc, "LINDEX queue:slow 0");
    assert_non_null(strstr(tail->str, "tail"));
    freeReplyObject(tail);
}

static void
test_batch_fetch_and_stop_order(void **state)
{
    (void)state;
    /* batched fetch processes everything */
    dray_client *c = test_client(NULL);
    json_t *l = json_array();
    for (int i = 0; i < 500; i++)
        json_array_append_new(l, json_pack("[s]", "x"));
    assert_int_equal(dray_client_push_bulk(c, "Ok", l, NULL, NULL, NULL), 0);
    json_decref(l);
    dray_client_free(c);
    test_running r;
    dray_options o;
    test_options(&o, "default", 3);
    o.fetch_batch = 8;
    start(&r, &o);
    test_server_go(&r);
    wanted = 500;
    assert_true(test_wait_until(ok_reached, NULL, 20));
    test_server_finish(&r);
    assert_int_equal(test_int("GET stat:processed"), 500);

    /* a stop puts the running job and the fetched, unstarted ones back in
     * their original order, the running one first */
    tally_reset();
    for (int i = 0; i < 5; i++)
        test_push_job("Block", "b", json_pack("[i]", i), NULL);
    redisReply *before = test_redis_cmd(test_rc, "LRANGE queue:b 0 -1");
    test_options(&o, "b", 1);
    o.fetch_batch = 5;
    o.shutdown_timeout_s = 1;
    start(&r, &o);
    test_server_go(&r);
    wanted = 1;
    assert_true(test_wait_until(running_reached, NULL, 10));
    assert_int_equal(test_int("LLEN queue:b"), 0); /* all five fetched at once */
    dray_server_stop(r.s);
    pthread_join(r.th, NULL);
    redisReply *after = test_redis_cmd(test_rc, "LRANGE queue:b 0 -1");
    assert_int_equal(after->elements, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(after->element[i]->str, before->element[i]->str);
    freeReplyObject(after);
    /* the running one finishes after all: its copy (at the BRPOP end) goes */
    release_blocked();
    dray_server_free(r.s);
    after = test_redis_cmd(test_rc, "LRANGE queue:b 0 -1");
    assert_int_equal(after->elements, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(after->element[i]->str, before->element[i]->str);
    freeReplyObject(after);
    freeReplyObject(before);
}

static atomic_int outage_lines, back_lines;
static void
count_sink(dray_log_level level, const char *line, void *ud)
{
    (void)level;
    (void)ud;
    if (strstr(line, "redis unavailable"))
        atomic_fetch_add(&outage_lines, 1);
    if (strstr(line, "is back after"))
        atomic_fetch_add(&back_lines, 1);
}

static void
test_redis_restart_mid_run(void **state)
{
    (void)state;
    dray_log_set_sink(count_sink, NULL);
    test_running r;
    dray_options o;
    test_options(&o, "default", 4);
    o.log_level = DRAY_LOG_INFO;
    start(&r, &o);
    test_server_go(&r);
    for (int i = 0; i < 20; i++)
        test_push_job("Ok", NULL, json_pack("[s]", "before"), NULL);
    wanted = 20;
    assert_true(test_wait_until(ok_reached, NULL, 10));
    redisFree(test_rc);
    test_redis_kill(&test_srv);
    double down = dray_now();
    /* let the workers notice and back off (a condition, not a sleep) */
    while (atomic_load(&outage_lines) == 0 && dray_now() - down < 10)
        dray__sleep_ms(10);
    assert_int_equal(atomic_load(&outage_lines), 1);
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    test_rc = test_redis_connect(&test_srv);
    double up = dray_now();
    for (int i = 0; i < 20; i++)
        test_push_job("Ok", NULL, json_pack("[s]", "after"), NULL);
    wanted = 40;
    assert_true(test_wait_until(ok_reached, NULL, 15));
    double resumed = dray_now() - up;
    test_server_finish(&r);
    dray_log_set_sink(NULL, NULL);
    if (resumed > 5.0)
        fail_msg("took %.1f s to resume after redis returned", resumed);
    assert_int_equal(atomic_load(&outage_lines), 1);
    assert_int_equal(atomic_load(&back_lines), 1);
}

/* Lines that mention a forged "FAKE ERROR", copied by the sink below. */
static struct {
    pthread_mutex_t mu;
    char lines[16][512];
    int n, signal_seen, class_seen;
} forged = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void
forged_sink(dray_log_level level, const char *line, void *ud)
{
    (void)level;
    (void)ud;
    if (!strstr(line, "FAKE ERROR"))
        return;
    pthread_mutex_lock(&forged.mu);
    if (forged.n < 16)
        snprintf(forged.lines[forged.n++], sizeof forged.lines[0], "%s", line);
    forged.signal_seen |= strstr(line, "FAKE ERROR signal") != NULL;
    forged.class_seen |= strstr(line, "FAKE ERROR class") != NULL;
    pthread_mutex_unlock(&forged.mu);
}

static int
forged_both(void *p)
{
    (void)p;
    pthread_mutex_lock(&forged.mu);
    int both = forged.signal_seen && forged.class_seen;
    pthread_mutex_unlock(&forged.mu);
    return both;
}

/* A remote signal and a job class from Redis carrying a newline and a
 * forged log line: each is logged as one line, the control bytes escaped. */
static void
test_log_injection(void **state)
{
    (void)state;
    dray_log_set_sink(forged_sink, NULL);
    test_running r;
    dray_options o;
    test_options(&o, "default", 1);
    o.log_level = DRAY_LOG_INFO;
    start(&r, &o);
    char id[256];
    snprintf(id, sizeof id, "%s", dray_server_identity(r.s));
    test_server_go(&r);
    freeReplyObject(
        test_redis_cmd(test_rc, "LPUSH %s-signals %s", id,
                       "BOGUS\r\n2026-01-01T00:00:00.000Z ERROR main FAKE ERROR signal\x1b[2J"));
    test_push_raw("default", "{\"class\":\"Nope\\n2026-01-01T00:00:00.000Z ERROR main FAKE "
                             "ERROR class\",\"args\":[],\"jid\":\"0123456789abcdef01234567\","
                             "\"retry\":false}");
    int both = test_wait_until(forged_both, NULL, 15);
    test_server_finish(&r);
    dray_log_set_sink(NULL, NULL);
    assert_true(both);
    int signal_line = 0;
    for (int i = 0; i < forged.n; i++) {
        const char *l = forged.lines[i];
        if (strchr(l, '\n') || strchr(l, '\r') || strchr(l, '\x1b'))
            fail_msg("a log line holds a raw control byte: %s", l);
        signal_line |= strstr(l, "BOGUS\\r\\n2026-01-01T00:00:00.000Z ERROR main FAKE ERROR "
                                 "signal\\x1b[2J") != NULL;
    }
    assert_true(signal_line);
    printf("%d log lines mention the forged text, none holds a control byte\n", forged.n);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_processes_and_flushes_stats, each_setup),
        cmocka_unit_test_setup(test_strict_order, each_setup),
        cmocka_unit_test_setup(test_weighted_order, each_setup),
        cmocka_unit_test_setup(test_retry_fields_and_backoff, each_setup),
        cmocka_unit_test_setup(test_dead_paths, each_setup),
        cmocka_unit_test_setup(test_dead_trims, each_setup),
        cmocka_unit_test_setup(test_scheduler_exactly_once_two_processes, each_setup),
        cmocka_unit_test_setup(test_heartbeat_fields_and_work, each_setup),
        cmocka_unit_test_setup(test_remote_signals, each_setup),
        cmocka_unit_test_setup(test_shutdown_requeues_running, each_setup),
        cmocka_unit_test_setup(test_batch_fetch_and_stop_order, each_setup),
        cmocka_unit_test_setup(test_redis_restart_mid_run, each_setup),
        cmocka_unit_test_setup(test_log_injection, each_setup),
    };
    return cmocka_run_group_tests(tests, setup, test_teardown);
}
