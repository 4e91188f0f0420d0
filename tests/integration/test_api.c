/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The inspection API against a real redis-server: Sidekiq::Stats numbers,
 * queue sizes and latency, process listing (a hand-written Sidekiq 6
 * heartbeat and a live dray_server), and the retry/delete/kill moves with
 * the exact keys they leave behind, in and out of a namespace. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"
#include "harness.h"

static dray_api *
api_new(const char *ns, long dead_max)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    o.ns = ns;
    o.dead_max_jobs = dead_max;
    dray_api *a;
    char err[256];
    assert_int_equal(dray_api_new(&o, &a, err, sizeof err), 0);
    return a;
}

/* A job member as Sidekiq's retry handler writes it. */
static char *
job_json(const char *jid, const char *klass, const char *queue, int retry_count)
{
    json_t *o = json_pack("{s:s, s:[i,s], s:s, s:s, s:b, s:f, s:f}", "class", klass, "args", 1, "x",
                          "jid", jid, "queue", queue, "retry", 1, "created_at", 1700000000.5,
                          "enqueued_at", 1700000001.25);
    if (retry_count >= 0) {
        json_object_set_new(o, "retry_count", json_integer(retry_count));
        json_object_set_new(o, "error_class", json_string("RuntimeError"));
        json_object_set_new(o, "error_message", json_string("boom"));
        json_object_set_new(o, "failed_at", json_real(1700000002.0));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static const char J1[] = "aaaaaaaaaaaaaaaaaaaaaaa1";
static const char J2[] = "aaaaaaaaaaaaaaaaaaaaaaa2";
static const char J3[] = "aaaaaaaaaaaaaaaaaaaaaaa3";

/* ---- stats and queues ------------------------------------------------------ */

static void
test_stats(void **state)
{
    (void)state;
    double now = dray_now();
    test_run("SET stat:processed 10");
    test_run("SET stat:failed 3");
    test_run("ZADD schedule 1 a 2 b");
    test_run("ZADD retry 1 c");
    test_run("ZADD dead 1 d 2 e 3 f 4 g");
    test_run("SADD processes p1 p2 gone");
    test_run("HSET p1 busy 2 info {}");
    test_run("HSET p2 busy 3 info {}");
    test_run("SADD queues default critical empty");
    char old[128];
    snprintf(old, sizeof old, "{\"class\":\"A\",\"args\":[],\"enqueued_at\":%.6f}", now - 100);
    test_run("RPUSH queue:default %s", old); /* the oldest is at the right */
    test_run("LPUSH queue:default {} {}");
    test_run("LPUSH queue:critical {} {}");
    dray_api *a = api_new(NULL, 0);
    dray_stats st;
    assert_int_equal(dray_api_stats_get(a, &st), 0);
    assert_int_equal(st.processed, 10);
    assert_int_equal(st.failed, 3);
    assert_int_equal(st.scheduled_size, 2);
    assert_int_equal(st.retry_size, 1);
    assert_int_equal(st.dead_size, 4);
    assert_int_equal(st.processes_size, 3);
    assert_int_equal(st.workers_size, 5);
    assert_int_equal(st.enqueued, 5);
    assert_true(st.default_queue_latency > 99 && st.default_queue_latency < 110);
    dray_api_free(a);

    /* An empty database: all zero. */
    test_flush(NULL);
    a = api_new(NULL, 0);
    assert_int_equal(dray_api_stats_get(a, &st), 0);
    assert_int_equal(st.processed + st.failed + st.enqueued + st.workers_size, 0);
    assert_true(st.default_queue_latency == 0);
    dray_api_free(a);
}

static void
test_queues(void **state)
{
    (void)state;
    double now = dray_now();
    test_run("SADD queues low default critical");
    char j[128];
    snprintf(j, sizeof j, "{\"class\":\"A\",\"args\":[],\"enqueued_at\":%.6f}", now - 30);
    test_run("LPUSH queue:default %s", j);
    test_run("LPUSH queue:default {\"class\":\"B\",\"args\":[]}");
    test_run("LPUSH queue:critical {\"class\":\"B\",\"args\":[]}"); /* no enqueued_at: 0 */
    test_run("LPUSH queue:critical not-json");
    dray_api *a = api_new(NULL, 0);
    dray_queue_info *q;
    size_t n;
    assert_int_equal(dray_api_queues_list(a, &q, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(q[0].name, "critical");
    assert_int_equal(q[0].size, 2);
    assert_true(q[0].latency == 0);
    assert_string_equal(q[1].name, "default");
    assert_int_equal(q[1].size, 2);
    assert_true(q[1].latency > 29 && q[1].latency < 40);
    assert_string_equal(q[2].name, "low");
    assert_int_equal(q[2].size, 0);
    assert_true(q[2].latency == 0);
    dray_api_queues_free(q, n);
    test_flush(NULL);
    assert_int_equal(dray_api_queues_list(a, &q, &n), 0);
    assert_int_equal(n, 0);
    assert_null(q);
    dray_api_free(a);
}

/* ---- processes ------------------------------------------------------------- */

static void
test_processes_sidekiq_heartbeat(void **state)
{
    (void)state;
    /* What Sidekiq 6.4 writes (launcher.rb ❤): processes set + identity hash. */
    const char *id = "web-1:4242:0123456789ab";
    test_run("SADD processes %s dead-host:1:ffffffffffff", id);
    test_run("HSET %s info {\"hostname\":\"web-1\",\"started_at\":1700000000.5,\"pid\":4242,"
             "\"tag\":\"shop\",\"concurrency\":25,\"queues\":[\"critical\",\"default\"],"
             "\"labels\":[\"blue\",\"canary\"],\"identity\":\"%s\"} busy 3 beat 1700000100.25 "
             "rtt_us 120 quiet true rss 51200",
             id, id);
    dray_api *a = api_new(NULL, 0);
    dray_process_info *p;
    size_t n;
    assert_int_equal(dray_api_processes_list(a, &p, &n), 0);
    assert_int_equal(n, 1); /* the member without a hash is skipped */
    assert_string_equal(p[0].identity, id);
    assert_string_equal(p[0].hostname, "web-1");
    assert_string_equal(p[0].tag, "shop");
    assert_string_equal(p[0].queues, "critical,default");
    assert_string_equal(p[0].labels, "blue,canary");
    assert_int_equal(p[0].pid, 4242);
    assert_int_equal(p[0].concurrency, 25);
    assert_int_equal(p[0].busy, 3);
    assert_int_equal(p[0].quiet, 1);
    assert_true(p[0].beat == 1700000100.25);
    assert_true(p[0].started_at == 1700000000.5);
    assert_int_equal(p[0].rss_kb, 51200);
    assert_int_equal(p[0].rtt_us, 120);
    assert_non_null(strstr(p[0].info, "\"concurrency\":25"));
    dray_api_processes_free(p, n);
    /* The dead member is not pruned by a read. */
    assert_int_equal(test_int("SCARD processes"), 2);
    dray_api_free(a);
}

typedef struct watch {
    dray_api *api;
    int want_quiet;
    char identity[256];
} watch;

static int
process_seen(void *arg)
{
    watch *w = arg;
    dray_process_info *p;
    size_t n;
    if (dray_api_processes_list(w->api, &p, &n))
        return 0;
    int ok = n == 1 && p[0].quiet == w->want_quiet && !strcmp(p[0].identity, w->identity);
    dray_api_processes_free(p, n);
    return ok;
}

static int
process_gone(void *arg)
{
    (void)arg;
    return test_int("SCARD processes") == 0;
}

static void
test_processes_live_server_and_signals(void **state)
{
    (void)state;
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    o.concurrency = 2;
    o.queues = "critical,2 default";
    o.heartbeat_s = 1;
    o.shutdown_timeout_s = 1;
    o.tag = "apitest";
    o.log_level = DRAY_LOG_WARN;
    test_running r;
    test_server_new(&r, &o);
    test_server_go(&r);
    dray_api *a = api_new(NULL, 0);
    watch w = {a, 0, ""};
    snprintf(w.identity, sizeof w.identity, "%s", dray_server_identity(r.s));
    assert_true(test_wait_until(process_seen, &w, 10));
    dray_process_info *p;
    size_t n;
    assert_int_equal(dray_api_processes_list(a, &p, &n), 0);
    assert_int_equal(p[0].concurrency, 2);
    assert_string_equal(p[0].queues, "critical,default");
    assert_string_equal(p[0].tag, "apitest");
    assert_int_equal(p[0].pid, (long)getpid());
    assert_true(fabs(dray_now() - p[0].beat) < 5);
    dray_api_processes_free(p, n);

    /* Quiet through Redis, as the Web UI does. */
    assert_int_equal(dray_api_signal(a, w.identity, "TSTP"), 0);
    w.want_quiet = 1;
    assert_true(test_wait_until(process_seen, &w, 10));
    /* Stop through Redis: the server leaves the processes set and run returns. */
    assert_int_equal(dray_api_signal(a, w.identity, "TERM"), 0);
    assert_int_equal(pthread_join(r.th, NULL), 0);
    assert_int_equal(r.rc, 0);
    assert_true(test_wait_until(process_gone, NULL, 5));
    dray_server_free(r.s);
    dray_api_free(a);
}

static void
test_signal(void **state)
{
    (void)state;
    test_run("SADD processes host:1:abc");
    dray_api *a = api_new(NULL, 0);
    assert_int_equal(dray_api_signal(a, "host:1:abc", "TSTP"), 0);
    assert_int_equal(dray_api_signal(a, "host:1:abc", "TTIN"), 0);
    /* LPUSH: the heartbeat's RPOP takes the oldest first */
    char *s = test_str("LINDEX host:1:abc-signals -1");
    assert_string_equal(s, "TSTP");
    free(s);
    assert_int_equal(test_int("LLEN host:1:abc-signals"), 2);
    long long ttl = test_int("TTL host:1:abc-signals");
    assert_true(ttl > 55 && ttl <= 60);
    assert_int_equal(dray_api_signal(a, "host:1:abc", "KILL"), DRAY_EINVAL);
    assert_int_equal(dray_api_signal(a, "host:1:abc", "tstp"), DRAY_EINVAL);
    assert_int_equal(dray_api_signal(a, "", "TSTP"), DRAY_EINVAL);
    assert_int_equal(dray_api_signal(a, "nobody:1:x", "TERM"), DRAY_ENOTFOUND);
    assert_non_null(strstr(dray_api_errstr(a), "nobody:1:x"));
    assert_int_equal(test_int("EXISTS nobody:1:x-signals"), 0);
    dray_api_free(a);
}

/* ---- job sets -------------------------------------------------------------- */

static void
test_set_list(void **state)
{
    (void)state;
    char *m1 = job_json(J1, "A", "default", 0);
    char *m2 = job_json(J2, "B", "low", 4);
    char *m3 = job_json(J3, "C", "q", -1);
    test_run("ZADD retry 300 %s 100 %s 200 %s", m3, m1, m2);
    test_run("ZADD dead 300 %s 100 %s 200 %s 150 not-json", m3, m1, m2);
    dray_api *a = api_new(NULL, 0);
    dray_set_entry *e;
    size_t n;
    assert_int_equal(dray_api_set_list(a, DRAY_SET_RETRY, 0, 0, &e, &n), 0);
    assert_int_equal(n, 3);
    assert_true(e[0].score == 100 && e[1].score == 200 && e[2].score == 300);
    assert_string_equal(e[0].member, m1);
    assert_int_equal(e[0].member_len, strlen(m1));
    assert_string_equal(e[0].jid, J1);
    assert_string_equal(e[0].klass, "A");
    assert_string_equal(e[0].queue, "default");
    assert_string_equal(e[0].error_class, "RuntimeError");
    assert_string_equal(e[0].error_message, "boom");
    assert_int_equal(e[0].retry_count, 0);
    assert_int_equal(e[1].retry_count, 4);
    assert_int_equal(e[2].retry_count, -1);
    assert_null(e[2].error_class);
    dray_api_entries_free(e, n);
    /* paging */
    assert_int_equal(dray_api_set_list(a, DRAY_SET_RETRY, 1, 1, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].jid, J2);
    dray_api_entries_free(e, n);
    assert_int_equal(dray_api_set_list(a, DRAY_SET_RETRY, 5, 10, &e, &n), 0);
    assert_int_equal(n, 0);
    assert_null(e);
    /* dead: newest first; a member that is not JSON is listed raw */
    assert_int_equal(dray_api_set_list(a, DRAY_SET_DEAD, 0, 3, &e, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(e[0].jid, J3);
    assert_string_equal(e[1].jid, J2);
    assert_string_equal(e[2].member, "not-json");
    assert_null(e[2].jid);
    assert_null(e[2].klass);
    dray_api_entries_free(e, n);
    long long size;
    assert_int_equal(dray_api_set_size(a, DRAY_SET_DEAD, &size), 0);
    assert_int_equal(size, 4);
    assert_int_equal(dray_api_set_size(a, DRAY_SET_SCHEDULE, &size), 0);
    assert_int_equal(size, 0);
    assert_int_equal(dray_api_set_size(a, (dray_set)7, &size), DRAY_EINVAL);
    /* find */
    assert_int_equal(dray_api_set_find(a, DRAY_SET_RETRY, J2, &e), 0);
    assert_string_equal(e->member, m2);
    assert_true(e->score == 200);
    dray_api_entries_free(e, 1);
    assert_int_equal(dray_api_set_find(a, DRAY_SET_SCHEDULE, J2, &e), DRAY_ENOTFOUND);
    assert_null(e);
    dray_api_free(a);
    free(m1);
    free(m2);
    free(m3);
}

static void
test_set_names(void **state)
{
    (void)state;
    dray_set s;
    assert_int_equal(dray_set_parse("retries", &s), 0);
    assert_int_equal(s, DRAY_SET_RETRY);
    assert_int_equal(dray_set_parse("scheduled", &s), 0);
    assert_int_equal(s, DRAY_SET_SCHEDULE);
    assert_int_equal(dray_set_parse("morgue", &s), 0);
    assert_int_equal(s, DRAY_SET_DEAD);
    assert_int_equal(dray_set_parse("queue", &s), DRAY_EINVAL);
    assert_string_equal(dray_set_name(DRAY_SET_SCHEDULE), "schedule");
    assert_null(dray_set_name((dray_set)3));
}

/* The job at the head (right end) of a queue, parsed. */
static json_t *
queue_head(const char *key)
{
    char *s = test_str("LINDEX %s -1", key);
    assert_non_null(s);
    json_t *o = json_loads(s, 0, NULL);
    free(s);
    assert_non_null(o);
    return o;
}

/* Assert o equals the member m except for enqueued_at and retry_count. */
static void
assert_same_job(json_t *o, const char *m)
{
    json_t *orig = json_loads(m, 0, NULL);
    json_t *a = json_deep_copy(o);
    json_object_del(a, "enqueued_at");
    json_object_del(orig, "enqueued_at");
    json_object_del(a, "retry_count");
    json_object_del(orig, "retry_count");
    assert_true(json_equal(a, orig));
    json_decref(a);
    json_decref(orig);
}

static void
test_retry_moves(void **state)
{
    (void)state;
    char *m1 = job_json(J1, "A", "low", 3);
    char *m2 = job_json(J2, "B", "default", 0);
    char *m3 = job_json(J3, "C", "sched", -1);
    /* J1's jid also appears in J2's args: found by parsed jid, not substring */
    json_t *o2 = json_loads(m2, 0, NULL);
    json_array_append_new(json_object_get(o2, "args"), json_string(J1));
    free(m2);
    m2 = json_dumps(o2, JSON_COMPACT);
    json_decref(o2);
    test_run("ZADD retry 100 %s 100 %s", m2, m1); /* same score, as Sidekiq's remove_job worries */
    test_run("ZADD schedule 50 %s", m3);
    dray_api *a = api_new(NULL, 0);
    double before = dray_now();

    /* From the retry set: retry_count decremented, fresh enqueued_at. */
    assert_int_equal(dray_api_set_retry(a, DRAY_SET_RETRY, J1), 0);
    assert_int_equal(test_int("ZCARD retry"), 1);
    assert_int_equal(test_int("ZSCORE retry %s", m2), 100); /* the other member, byte-exact */
    assert_int_equal(test_int("SISMEMBER queues low"), 1);
    assert_int_equal(test_int("LLEN queue:low"), 1);
    json_t *o = queue_head("queue:low");
    assert_int_equal(json_integer_value(json_object_get(o, "retry_count")), 2);
    double enq = json_real_value(json_object_get(o, "enqueued_at"));
    assert_true(enq >= before - 1 && enq <= dray_now() + 1);
    assert_same_job(o, m1);
    json_decref(o);
    /* again: gone */
    assert_int_equal(dray_api_set_retry(a, DRAY_SET_RETRY, J1), DRAY_ENOTFOUND);
    assert_non_null(strstr(dray_api_errstr(a), J1));

    /* retry_count 0 becomes -1, as Ruby's `-= 1` does */
    assert_int_equal(dray_api_set_retry(a, DRAY_SET_RETRY, J2), 0);
    o = queue_head("queue:default");
    assert_int_equal(json_integer_value(json_object_get(o, "retry_count")), -1);
    json_decref(o);

    /* From the schedule set: unchanged but for enqueued_at (add_to_queue). */
    assert_int_equal(dray_api_set_retry(a, DRAY_SET_SCHEDULE, J3), 0);
    assert_int_equal(test_int("ZCARD schedule"), 0);
    assert_int_equal(test_int("SISMEMBER queues sched"), 1);
    o = queue_head("queue:sched");
    assert_null(json_object_get(o, "retry_count"));
    assert_non_null(json_object_get(o, "enqueued_at"));
    assert_same_job(o, m3);
    json_decref(o);
    dray_api_free(a);
    free(m1);
    free(m2);
    free(m3);
}

static void
test_retry_from_dead_and_bad_queue(void **state)
{
    (void)state;
    char *m1 = job_json(J1, "A", "default", 25);
    json_t *bad =
        json_pack("{s:s, s:[], s:s, s:s}", "class", "B", "args", "jid", J2, "queue", "has space");
    char *m2 = json_dumps(bad, JSON_COMPACT);
    json_decref(bad);
    test_run("ZADD dead 10 %s 20 %s 30 garbage", m1, m2);
    dray_api *a = api_new(NULL, 0);
    assert_int_equal(dray_api_set_retry(a, DRAY_SET_DEAD, J1), 0);
    json_t *o = queue_head("queue:default");
    assert_int_equal(json_integer_value(json_object_get(o, "retry_count")), 24);
    json_decref(o);
    /* an invalid queue name: refused, the member stays */
    assert_int_equal(dray_api_set_retry(a, DRAY_SET_DEAD, J2), DRAY_EQUEUE);
    assert_int_equal(test_int("ZSCORE dead %s", m2), 20);
    assert_int_equal(test_int("ZCARD dead"), 2);
    /* it can still be deleted */
    assert_int_equal(dray_api_set_delete(a, DRAY_SET_DEAD, J2), 0);
    assert_int_equal(test_int("ZCARD dead"), 1);
    dray_api_free(a);
    free(m1);
    free(m2);
}

static void
test_delete(void **state)
{
    (void)state;
    char *m1 = job_json(J1, "A", "default", 1);
    char *m2 = job_json(J2, "B", "default", 1);
    test_run("ZADD retry 1 %s 2 %s", m1, m2);
    test_run("ZADD schedule 1 %s", m1);
    dray_api *a = api_new(NULL, 0);
    assert_int_equal(dray_api_set_delete(a, DRAY_SET_RETRY, J1), 0);
    assert_int_equal(test_int("ZCARD retry"), 1);
    assert_int_equal(test_int("ZSCORE retry %s", m2), 2);
    assert_int_equal(test_int("ZCARD schedule"), 1); /* other sets untouched */
    assert_int_equal(dray_api_set_delete(a, DRAY_SET_RETRY, J1), DRAY_ENOTFOUND);
    assert_int_equal(dray_api_set_delete(a, DRAY_SET_DEAD, J2), DRAY_ENOTFOUND);
    assert_int_equal(dray_api_set_delete(a, DRAY_SET_RETRY, ""), DRAY_EINVAL);
    /* glob characters in a jid are escaped for ZSCAN MATCH */
    assert_int_equal(dray_api_set_delete(a, DRAY_SET_RETRY, "*"), DRAY_ENOTFOUND);
    assert_int_equal(test_int("ZCARD retry"), 1);
    assert_int_equal(dray_api_set_delete(a, (dray_set)-1, J2), DRAY_EINVAL);
    dray_api_free(a);
    free(m1);
    free(m2);
}

static void
test_kill(void **state)
{
    (void)state;
    char *m1 = job_json(J1, "A", "default", 2);
    char *m3 = job_json(J3, "C", "default", -1);
    double now = dray_now();
    test_run("ZADD retry 1 %s", m1);
    test_run("ZADD schedule 1 %s", m3);
    /* a dead set with an entry older than 180 days and 6 recent ones */
    test_run("ZADD dead %f ancient", now - 181.0 * 86400);
    for (int i = 0; i < 6; i++)
        test_run("ZADD dead %f recent%d", now - 1000 + i, i);
    dray_api *a = api_new(NULL, 5); /* dead_max_jobs 5 */
    assert_int_equal(dray_api_set_kill(a, DRAY_SET_RETRY, J1), 0);
    assert_int_equal(test_int("ZCARD retry"), 0);
    assert_int_equal(test_int("ZCARD dead"), 5); /* trimmed by age, then to 5 */
    assert_int_equal(test_int("ZSCORE dead ancient"), -1);
    assert_int_equal(test_int("ZSCORE dead recent0"), -1);
    assert_int_equal(test_int("ZSCORE dead recent1"), -1);
    char *score = test_str("ZSCORE dead %s", m1); /* byte-exact member, scored now */
    assert_non_null(score);
    assert_true(fabs(atof(score) - now) < 5);
    free(score);
    /* from the schedule set too */
    assert_int_equal(dray_api_set_kill(a, DRAY_SET_SCHEDULE, J3), 0);
    assert_int_equal(test_int("ZCARD schedule"), 0);
    assert_int_not_equal(test_int("ZRANK dead %s", m3), -1);
    /* not from the dead set, not twice */
    assert_int_equal(dray_api_set_kill(a, DRAY_SET_DEAD, J3), DRAY_EINVAL);
    assert_int_equal(dray_api_set_kill(a, DRAY_SET_RETRY, J1), DRAY_ENOTFOUND);
    dray_api_free(a);

    /* Sidekiq's defaults: 10000 jobs, 180 days. */
    test_flush(NULL);
    test_run("ZADD retry 1 %s", m1);
    test_run("ZADD dead %f ancient %f recent", now - 181.0 * 86400, now - 179.0 * 86400);
    a = api_new(NULL, 0);
    assert_int_equal(dray_api_set_kill(a, DRAY_SET_RETRY, J1), 0);
    assert_int_equal(test_int("ZCARD dead"), 2);
    assert_int_equal(test_int("ZSCORE dead ancient"), -1);
    dray_api_free(a);
    free(m1);
    free(m3);
}

static void
test_many_members_scan(void **state)
{
    (void)state;
    /* Enough members for ZSCAN to need several rounds (skiplist encoding). */
    for (int i = 0; i < 3000; i++) {
        char jid[DRAY_JID_BYTES];
        snprintf(jid, sizeof jid, "%024d", i);
        char *m = job_json(jid, "Bulk", "default", 0);
        test_run("ZADD retry %d %s", i, m);
        free(m);
    }
    dray_api *a = api_new(NULL, 0);
    char jid[DRAY_JID_BYTES];
    snprintf(jid, sizeof jid, "%024d", 2999);
    dray_set_entry *e;
    assert_int_equal(dray_api_set_find(a, DRAY_SET_RETRY, jid, &e), 0);
    assert_true(e->score == 2999);
    dray_api_entries_free(e, 1);
    assert_int_equal(dray_api_set_retry(a, DRAY_SET_RETRY, jid), 0);
    assert_int_equal(test_int("ZCARD retry"), 2999);
    assert_int_equal(test_int("LLEN queue:default"), 1);
    dray_api_free(a);
}

static void
test_namespace(void **state)
{
    (void)state;
    char *m1 = job_json(J1, "A", "default", 1);
    char *m2 = job_json(J2, "B", "low", 1);
    test_run("SET myapp:stat:processed 7");
    test_run("SET stat:processed 1000");
    test_run("ZADD myapp:retry 1 %s 2 %s", m1, m2);
    test_run("ZADD retry 1 %s", m1); /* the same job outside the namespace */
    test_run("SADD myapp:queues default");
    test_run("LPUSH myapp:queue:default {}");
    test_run("SADD myapp:processes h:1:n");
    test_run("HSET myapp:h:1:n info {\"hostname\":\"h\",\"concurrency\":3} busy 1");
    dray_api *a = api_new("myapp", 0);
    dray_stats st;
    assert_int_equal(dray_api_stats_get(a, &st), 0);
    assert_int_equal(st.processed, 7);
    assert_int_equal(st.retry_size, 2);
    assert_int_equal(st.enqueued, 1);
    assert_int_equal(st.workers_size, 1);
    assert_int_equal(st.processes_size, 1);
    dray_queue_info *q;
    size_t n;
    assert_int_equal(dray_api_queues_list(a, &q, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(q[0].size, 1);
    dray_api_queues_free(q, n);
    dray_process_info *p;
    assert_int_equal(dray_api_processes_list(a, &p, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].concurrency, 3);
    dray_api_processes_free(p, n);

    assert_int_equal(dray_api_set_retry(a, DRAY_SET_RETRY, J1), 0);
    assert_int_equal(test_int("LLEN myapp:queue:default"), 2);
    assert_int_equal(test_int("ZCARD retry"), 1); /* outside: untouched */
    assert_int_equal(test_int("EXISTS queue:default"), 0);
    assert_int_equal(dray_api_set_kill(a, DRAY_SET_RETRY, J2), 0);
    assert_int_equal(test_int("ZCARD myapp:dead"), 1);
    assert_int_equal(test_int("EXISTS dead"), 0);
    assert_int_equal(dray_api_signal(a, "h:1:n", "TERM"), 0);
    assert_int_equal(test_int("LLEN myapp:h:1:n-signals"), 1);
    assert_int_equal(test_int("EXISTS h:1:n-signals"), 0);
    assert_int_equal(dray_api_set_delete(a, DRAY_SET_DEAD, J2), 0);
    assert_int_equal(test_int("ZCARD myapp:dead"), 0);
    dray_api_free(a);
    free(m1);
    free(m2);
}

static void
test_connection_errors(void **state)
{
    (void)state;
    dray_options o;
    dray_options_init(&o);
    o.redis_url = "unix:///nonexistent/redis.sock";
    dray_api *a;
    assert_int_equal(dray_api_new(&o, &a, NULL, 0), 0);
    dray_stats st;
    assert_int_equal(dray_api_stats_get(a, &st), DRAY_ECONN);
    assert_non_null(strstr(dray_api_errstr(a), "nonexistent"));
    dray_queue_info *q;
    size_t n;
    assert_int_equal(dray_api_queues_list(a, &q, &n), DRAY_ECONN);
    assert_int_equal(dray_api_set_retry(a, DRAY_SET_RETRY, J1), DRAY_ECONN);
    assert_int_equal(dray_api_signal(a, "x", "TSTP"), DRAY_ECONN);
    dray_api_free(a);
    dray_api_free(NULL);
    char err[256];
    o.redis_url = "http://nope";
    assert_int_equal(dray_api_new(&o, &a, err, sizeof err), DRAY_EURL);
    assert_null(a);
    o.redis_url = test_srv.url;
    o.ns = "bad ns";
    assert_int_equal(dray_api_new(&o, &a, err, sizeof err), DRAY_ECONFIG);
}

/* Allocation failures anywhere in a move: ENOMEM, never a half move. */
static void
test_alloc_failures(void **state)
{
    (void)state;
    char *m1 = job_json(J1, "A", "low", 3);
    int moved = 0;
    for (long k = 0; k < 200 && !moved; k++) {
        test_run("DEL retry queue:low");
        test_run("ZADD retry 1 %s", m1);
        dray_api *a = NULL;
        dray__alloc_fail_after(k);
        int r = dray_api_new(NULL, &a, NULL, 0);
        dray__alloc_fail_after(-1);
        if (r) {
            assert_int_equal(r, DRAY_ENOMEM);
            continue;
        }
        dray_api_free(a);
        a = api_new(NULL, 0);
        dray__alloc_fail_after(k);
        r = dray_api_set_retry(a, DRAY_SET_RETRY, J1);
        dray__alloc_fail_after(-1);
        assert_true(r == 0 || r == DRAY_ENOMEM || r == DRAY_ECONN);
        long long left = test_int("ZCARD retry"), queued = test_int("LLEN queue:low");
        assert_int_equal(left + queued, 1); /* never both, never neither */
        moved = r == 0;
        dray_api_free(a);
    }
    assert_true(moved);
    free(m1);
}

/* The listings read a set, then one pipeline per member (api.c's fan-out):
 * an allocation failure at any step gives DRAY_ENOMEM with nothing handed
 * out (ASan: nothing leaked), and the first k that succeeds gives the whole
 * listing. */
static void
test_listing_alloc_failures(void **state)
{
    (void)state;
    test_run("SADD queues b a");
    test_run("LPUSH queue:a {} {}");
    test_run("SADD processes p1 p2");
    test_run("HSET p1 busy 2 info {\"hostname\":\"h1\",\"queues\":[\"a\",\"b\"]}");
    test_run("HSET p2 busy 1 info {\"hostname\":\"h2\"}");
    dray_api *a = api_new(NULL, 0);
    int listed = 0, procs = 0, stats = 0;
    for (long k = 0; k < 400 && !(listed && procs && stats); k++) {
        dray_queue_info *q = (dray_queue_info *)1;
        size_t n = 99;
        dray__alloc_fail_after(k);
        int r = dray_api_queues_list(a, &q, &n);
        dray__alloc_fail_after(-1);
        if (r) {
            assert_int_equal(r, DRAY_ENOMEM);
            assert_null(q);
            assert_int_equal(n, 0);
            assert_non_null(strstr(dray_api_errstr(a), "out of memory"));
        } else if (!listed) {
            listed = 1;
            assert_int_equal(n, 2);
            assert_string_equal(q[0].name, "a");
            assert_int_equal(q[0].size, 2);
            assert_string_equal(q[1].name, "b");
            assert_int_equal(q[1].size, 0);
        }
        dray_api_queues_free(q, n);

        dray_process_info *p = (dray_process_info *)1;
        n = 99;
        dray__alloc_fail_after(k);
        r = dray_api_processes_list(a, &p, &n);
        dray__alloc_fail_after(-1);
        if (r) {
            assert_int_equal(r, DRAY_ENOMEM);
            assert_null(p);
            assert_int_equal(n, 0);
        } else if (!procs) {
            procs = 1;
            assert_int_equal(n, 2);
            assert_string_equal(p[0].identity, "p1");
            assert_string_equal(p[0].queues, "a,b");
            assert_int_equal(p[0].busy, 2);
            assert_string_equal(p[1].hostname, "h2");
        }
        dray_api_processes_free(p, n);

        dray_stats st;
        dray__alloc_fail_after(k);
        r = dray_api_stats_get(a, &st);
        dray__alloc_fail_after(-1);
        if (r) {
            assert_int_equal(r, DRAY_ENOMEM);
        } else if (!stats) {
            stats = 1;
            assert_int_equal(st.enqueued, 2);
            assert_int_equal(st.workers_size, 3);
        }
    }
    assert_true(listed && procs && stats);
    dray_api_free(a);
}

/* A link the server killed while the handle was idle: the listing (set
 * read, then the per-member pipeline) either fails with a connection error
 * and hands out nothing, or notices the dead link and redials; the next call
 * lists everything. */
static void
test_listing_link_killed(void **state)
{
    (void)state;
    test_run("SADD queues q1 q2 q3");
    test_run("LPUSH queue:q2 {}");
    dray_api *a = api_new(NULL, 0);
    dray_stats st;
    assert_int_equal(dray_api_stats_get(a, &st), 0); /* connected */
    test_run("CLIENT KILL TYPE normal SKIPME yes");
    dray_queue_info *q = (dray_queue_info *)1;
    size_t n = 99;
    int r = dray_api_queues_list(a, &q, &n);
    if (r) {
        assert_int_equal(r, DRAY_ECONN);
        assert_null(q);
        assert_int_equal(n, 0);
        assert_true(dray_api_errstr(a)[0] != '\0');
        r = dray_api_queues_list(a, &q, &n);
    }
    assert_int_equal(r, 0);
    assert_int_equal(n, 3);
    assert_string_equal(q[1].name, "q2");
    assert_int_equal(q[1].size, 1);
    dray_api_queues_free(q, n);
    dray_api_free(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_stats, test_flush),
        cmocka_unit_test_setup(test_queues, test_flush),
        cmocka_unit_test_setup(test_processes_sidekiq_heartbeat, test_flush),
        cmocka_unit_test_setup(test_processes_live_server_and_signals, test_flush),
        cmocka_unit_test_setup(test_signal, test_flush),
        cmocka_unit_test_setup(test_set_list, test_flush),
        cmocka_unit_test(test_set_names),
        cmocka_unit_test_setup(test_retry_moves, test_flush),
        cmocka_unit_test_setup(test_retry_from_dead_and_bad_queue, test_flush),
        cmocka_unit_test_setup(test_delete, test_flush),
        cmocka_unit_test_setup(test_kill, test_flush),
        cmocka_unit_test_setup(test_many_members_scan, test_flush),
        cmocka_unit_test_setup(test_namespace, test_flush),
        cmocka_unit_test(test_connection_errors),
        cmocka_unit_test_setup(test_alloc_failures, test_flush),
        cmocka_unit_test_setup(test_listing_alloc_failures, test_flush),
        cmocka_unit_test_setup(test_listing_link_killed, test_flush),
    };
    return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
