/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Sidekiq 7/8 compatibility against a real redis-server: Sidekiq 8's integer
 * ms timestamps read everywhere (fixtures in tests/fixtures/sidekiq8),
 * written on request; retry_for; backoff discard/kill; error_backtrace;
 * the process record's version, embedded, weights and capsules; the CLI's
 * time columns. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>
#include <zlib.h>

#include "dray/dray.h"
#include "harness.h"

#ifndef DRAY_CLI_PATH
#error "DRAY_CLI_PATH must name the dray binary"
#endif

static atomic_int ran, deaths;
static atomic_int null_line_rc; /* dray_result_backtrace_add(res, NULL), from a handler */
static char seen_args[256];
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- helpers --------------------------------------------------------------- */

/* A fixture file's bytes (malloc'ed, NUL-terminated). */
static char *
fixture(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/sidekiq8/%s", DRAY_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    assert_true(n > 0);
    return buf;
}

static json_t *
fixture_json(const char *name)
{
    char *s = fixture(name);
    json_t *o = json_loads(s, 0, NULL);
    free(s);
    assert_non_null(o);
    return o;
}

/* The first member of a sorted set as JSON (new reference), or NULL. */
static json_t *
zfirst(const char *key)
{
    redisReply *r = test_redis_cmd(test_rc, "ZRANGE %s 0 0", key);
    json_t *o = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
        o = json_loadb(r->element[0]->str, r->element[0]->len, 0, NULL);
    freeReplyObject(r);
    return o;
}

/* The lines of a Sidekiq error_backtrace: Base64, zlib, JSON array. */
static json_t *
inflate_backtrace(const char *b64)
{
    size_t cap = strlen(b64), blen = 0;
    unsigned char *bin = malloc(cap + 1);
    assert_int_equal(sodium_base642bin(bin, cap + 1, b64, strlen(b64), NULL, &blen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    uLongf out_len = 1 << 20;
    unsigned char *out = malloc(out_len);
    assert_int_equal(uncompress(out, &out_len, bin, blen), Z_OK);
    json_t *arr = json_loadb((const char *)out, out_len, 0, NULL);
    free(bin);
    free(out);
    assert_true(json_is_array(arr));
    return arr;
}

static void
opts_for_test(dray_options *o, const char *queues)
{
    test_options(o, queues, 2);
    o->log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_OFF;
}

static int
h_ok(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    char *a = json_dumps(dray_job_args(job), JSON_COMPACT);
    pthread_mutex_lock(&seen_mu);
    snprintf(seen_args, sizeof seen_args, "%s", a ? a : "");
    pthread_mutex_unlock(&seen_mu);
    free(a);
    atomic_fetch_add(&ran, 1);
    return 0;
}

static int
h_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)ud;
    atomic_fetch_add(&ran, 1);
    return dray_result_fail(res, "RuntimeError", "boom");
}

static atomic_int discarded_at_seen; /* death handlers saw a job with discarded_at */

static void
on_death(const dray_job *job, const char *ecls, const char *msg, void *ud)
{
    if (json_is_number(dray_job_get(job, "discarded_at")))
        atomic_fetch_add(&discarded_at_seen, 1);
    (void)ecls;
    (void)msg;
    (void)ud;
    atomic_fetch_add(&deaths, 1);
}

static double
backoff_discard(const dray_job *job, int count, void *ud)
{
    (void)job;
    (void)count;
    (void)ud;
    return DRAY_BACKOFF_DISCARD;
}

static int
ran_at_least(void *arg)
{
    return atomic_load(&ran) >= *(int *)arg;
}

static int
deaths_at_least(void *arg)
{
    return atomic_load(&deaths) >= *(int *)arg;
}

static void
push_obj(const char *queue, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    test_push_raw(queue, s);
    free(s);
}

/* Run `dray ARGS...` against test_srv; *out gets its stdout (malloc'ed). */
static int
run_cli(char **out, ...)
{
    const char *argv[16];
    int n = 0;
    va_list ap;
    va_start(ap, out);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 12)
        argv[n++] = a;
    va_end(ap);
    argv[n++] = "--redis-url";
    argv[n++] = test_srv.url;
    argv[n] = NULL;
    test_output r = test_exec(DRAY_CLI_PATH, argv);
    fputs(r.err, stderr);
    free(r.err);
    *out = r.out;
    return r.code;
}

/* ---- setup ----------------------------------------------------------------- */

static int
setup(void **state)
{
    atomic_store(&ran, 0);
    atomic_store(&deaths, 0);
    return test_setup(state);
}

/* ---- tests ----------------------------------------------------------------- */

static void
test_time_from_json(void **state)
{
    (void)state;
    json_t *ms = json_integer(1765000000123LL), *sec = json_real(1765000000.5);
    json_t *isec = json_integer(1765000000), *str = json_string("1765000000");
    assert_true(dray_time_from_json(ms) == 1765000000.123);
    assert_true(dray_time_from_json(sec) == 1765000000.5);
    assert_true(dray_time_from_json(isec) == 1765000000.0);
    assert_true(dray_time_from_json(str) == 0);
    assert_true(dray_time_from_json(NULL) == 0);
    json_decref(ms);
    json_decref(sec);
    json_decref(isec);
    json_decref(str);
}

/* A Sidekiq 8 job (integer ms created_at/enqueued_at): the queue's latency
 * is seconds since its enqueued_at, and it runs. */
static void
test_sidekiq8_job_latency_and_run(void **state)
{
    (void)state;
    json_t *fx = fixture_json("queue_default_0.json");
    double enq = (double)json_integer_value(json_object_get(fx, "enqueued_at")) / 1000.0;
    push_obj("default", fx);

    dray_options o;
    opts_for_test(&o, "default");
    dray_api *api;
    assert_int_equal(dray_api_new(&o, &api, NULL, 0), 0);
    dray_queue_info *q;
    size_t n;
    assert_int_equal(dray_api_queues_list(api, &q, &n), 0);
    assert_int_equal(n, 1);
    double want = dray_now() - enq;
    printf("latency of a Sidekiq 8 job: %.3f s (want %.3f s)\n", q[0].latency, want);
    assert_true(q[0].latency > want - 5 && q[0].latency < want + 5);
    dray_api_queues_free(q, n);
    dray_api_free(api);

    test_running r = {0};
    assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
    assert_int_equal(dray_server_register(r.s, "HardJob", h_ok, NULL, NULL), 0);
    test_server_go(&r);
    int one = 1;
    assert_true(test_wait_until(ran_at_least, &one, 10));
    test_server_finish(&r);
    assert_string_equal(seen_args, "[1,\"two\"]");
    json_decref(fx);
}

/* retry_for counts from the first failure, in either timestamp form: a job
 * whose failed_at (ms) is older than retry_for dies at once; one still
 * inside it is retried whatever its count (Sidekiq 8: exclusive). */
static void
test_retry_for(void **state)
{
    (void)state;
    json_t *old = fixture_json("retry_0.json"); /* failed_at Dec 2025, retry_for 3600 */
    json_object_set_new(old, "retry_count", json_integer(0));
    json_object_set_new(old, "class", json_string("Fails"));
    json_object_set_new(old, "jid", json_string("0ld0ld0ld0ld0ld0ld0ld0ld"));
    push_obj("default", old);
    json_t *young = json_deep_copy(old);
    json_object_set_new(young, "jid", json_string("y0ungy0ungy0ungy0ungy0un"));
    json_object_set_new(young, "failed_at", json_integer((json_int_t)((dray_now() - 10) * 1000.0)));
    json_object_set_new(young, "retry_count", json_integer(30)); /* past max_retries 25 */
    push_obj("default", young);

    dray_options o;
    opts_for_test(&o, "default");
    test_running r = {0};
    assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
    assert_int_equal(dray_server_register(r.s, "Fails", h_fail, NULL, NULL), 0);
    test_server_go(&r);
    int okr = test_wait_int(1, 10, "ZCARD retry"), okd = test_wait_int(1, 10, "ZCARD dead");
    test_server_finish(&r);
    printf("retry_for: retry set %lld, dead set %lld\n", test_int("ZCARD %s", "retry"),
           test_int("ZCARD %s", "dead"));
    assert_true(okr && okd);
    json_t *d = zfirst("dead"), *t = zfirst("retry");
    assert_string_equal(json_string_value(json_object_get(d, "jid")), "0ld0ld0ld0ld0ld0ld0ld0ld");
    assert_string_equal(json_string_value(json_object_get(t, "jid")), "y0ungy0ungy0ungy0ungy0un");
    /* failed_at keeps the first failure's value and form */
    assert_true(json_equal(json_object_get(d, "failed_at"), json_object_get(old, "failed_at")));
    assert_int_equal(json_integer_value(json_object_get(t, "retry_count")), 31);
    json_decref(d);
    json_decref(t);
    json_decref(old);
    json_decref(young);
}

/* The class option retry_for does the same for jobs that do not carry it. */
static void
test_retry_for_class_option(void **state)
{
    (void)state;
    json_t *j = json_pack("{s:s, s:[], s:s, s:s, s:I, s:i}", "class", "Fails", "args", "jid",
                          "c1a55c1a55c1a55c1a55c1a5", "queue", "default", "failed_at",
                          (json_int_t)((dray_now() - 100) * 1000.0), "retry_count", 2);
    push_obj("default", j);
    dray_options o;
    opts_for_test(&o, "default");
    test_running r = {0};
    dray_class_opts co = {0};
    co.retry_for = 60;
    assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
    assert_int_equal(dray_server_register(r.s, "Fails", h_fail, NULL, &co), 0);
    test_server_go(&r);
    int ok = test_wait_int(1, 10, "ZCARD dead");
    test_server_finish(&r);
    printf("class retry_for 60 s, first failure 100 s ago: retry %lld, dead %lld\n",
           test_int("ZCARD %s", "retry"), test_int("ZCARD %s", "dead"));
    assert_true(ok);
    assert_int_equal(test_int("ZCARD %s", "retry"), 0);
    json_decref(j);
}

/* A backoff answering DRAY_BACKOFF_DISCARD drops the job (death handlers
 * run, no set holds it); DRAY_BACKOFF_KILL sends it to the dead set at once. */
static void
test_backoff_discard_kill(void **state)
{
    (void)state;
    dray_options o;
    opts_for_test(&o, "default");
    test_running r = {0};
    dray_class_opts cd = {0}, ck = {0};
    cd.backoff = backoff_discard;
    ck.backoff = test_backoff_kill;
    assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
    assert_int_equal(dray_server_register(r.s, "Disc", h_fail, NULL, &cd), 0);
    assert_int_equal(dray_server_register(r.s, "Kill", h_fail, NULL, &ck), 0);
    assert_int_equal(dray_server_on_death(r.s, on_death, NULL), 0);
    test_push_raw("default", "{\"class\":\"Disc\",\"args\":[],\"jid\":\"d15cd15cd15cd15cd15cd15c\","
                             "\"retry\":true}");
    test_push_raw("default", "{\"class\":\"Kill\",\"args\":[],\"jid\":\"k111k111k111k111k111k111\","
                             "\"retry\":true}");
    test_server_go(&r);
    int two = 2;
    int ok = test_wait_until(deaths_at_least, &two, 10) && test_wait_until(ran_at_least, &two, 10);
    test_server_finish(&r);
    printf("discard/kill: ran %d, deaths %d, retry %lld, dead %lld\n", atomic_load(&ran),
           atomic_load(&deaths), test_int("ZCARD %s", "retry"), test_int("ZCARD %s", "dead"));
    assert_true(ok);
    assert_int_equal(test_int("ZCARD %s", "retry"), 0);
    assert_int_equal(test_int("ZCARD %s", "dead"), 1);
    assert_int_equal(atomic_load(&discarded_at_seen), 1); /* the discarded one only */
    json_t *d = zfirst("dead");
    assert_string_equal(json_string_value(json_object_get(d, "jid")), "k111k111k111k111k111k111");
    json_decref(d);
}

/* "backtrace": N keeps the handler's first N lines; "backtrace": true with
 * no lines given stores the captured stack of the failing call. */
static void
test_error_backtrace(void **state)
{
    (void)state;
    dray_options o;
    opts_for_test(&o, "default");
    test_running r = {0};
    assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
    assert_int_equal(dray_server_register(r.s, "Lines", test_h_fail_lines, &ran, NULL), 0);
    assert_int_equal(dray_server_register(r.s, "Stack", h_fail, NULL, NULL), 0);
    assert_int_equal(dray_server_register(r.s, "NoBt", h_fail, NULL, NULL), 0);
    test_push_raw("default",
                  "{\"class\":\"Lines\",\"args\":[],\"jid\":\"11e511e511e511e511e511e5\","
                  "\"backtrace\":2}");
    test_push_raw("default",
                  "{\"class\":\"Stack\",\"args\":[],\"jid\":\"57ac57ac57ac57ac57ac57ac\","
                  "\"backtrace\":true}");
    test_push_raw("default", "{\"class\":\"NoBt\",\"args\":[],\"jid\":\"0b70b70b70b70b70b70b70b7\","
                             "\"backtrace\":false}");
    test_server_go(&r);
    int ok = test_wait_int(3, 10, "ZCARD retry");
    test_server_finish(&r);
    assert_true(ok);
    redisReply *rr = test_redis_cmd(test_rc, "ZRANGE retry 0 -1");
    int checked = 0;
    for (size_t i = 0; i < rr->elements; i++) {
        json_t *e = json_loadb(rr->element[i]->str, rr->element[i]->len, 0, NULL);
        const char *cls = json_string_value(json_object_get(e, "class"));
        const char *bt = json_string_value(json_object_get(e, "error_backtrace"));
        if (!strcmp(cls, "Lines")) {
            assert_non_null(bt);
            json_t *lines = inflate_backtrace(bt);
            json_t *want =
                json_pack("[s,s]", "parse.c:12:in `parse_row'", "import.c:40:in `import'");
            assert_true(json_equal(lines, want));
            json_decref(want);
            json_decref(lines);
            checked++;
        } else if (!strcmp(cls, "Stack")) {
            assert_non_null(bt);
            json_t *lines = inflate_backtrace(bt);
            printf("captured backtrace: %zu lines, first: %s\n", json_array_size(lines),
                   json_string_value(json_array_get(lines, 0)));
            assert_true(json_array_size(lines) >= 1);
            assert_non_null(strstr(json_string_value(json_array_get(lines, 0)), "test_compat"));
            json_decref(lines);
            checked++;
        } else {
            assert_null(bt);
            checked++;
        }
        json_decref(e);
    }
    freeReplyObject(rr);
    assert_int_equal(checked, 3);
}

/* Fails with a line that is not UTF-8. */
static int
h_fail_badline(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)ud;
    atomic_store(&null_line_rc, dray_result_backtrace_add(res, NULL));
    if (dray_result_backtrace_add(res, "bad \xff\xfe byte") ||
        dray_result_backtrace_add(res, "good.c:1"))
        return dray_result_fail(res, "NoMemory", "backtrace lines not kept");
    atomic_fetch_add(&ran, 1);
    return dray_result_fail(res, "RuntimeError", "boom");
}

/* Bad bytes in the new fields lose nothing: junk "backtrace" and
 * "retry_for" are ignored (the job is retried as usual), a backtrace line
 * that is not UTF-8 is replaced, not a reason to drop the failure. */
static void
test_bad_compat_fields(void **state)
{
    (void)state;
    dray_options o;
    opts_for_test(&o, "default");
    test_running r = {0};
    assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
    assert_int_equal(dray_server_register(r.s, "Fails", h_fail, NULL, NULL), 0);
    assert_int_equal(dray_server_register(r.s, "BadLine", h_fail_badline, NULL, NULL), 0);
    test_push_raw("default",
                  "{\"class\":\"Fails\",\"args\":[],\"jid\":\"junkjunkjunkjunkjunkjun1\","
                  "\"backtrace\":\"yes\",\"retry_for\":\"soon\"}");
    test_push_raw("default",
                  "{\"class\":\"Fails\",\"args\":[],\"jid\":\"junkjunkjunkjunkjunkjun2\","
                  "\"backtrace\":-3,\"retry_for\":-60,\"failed_at\":1,\"retry_count\":0}");
    test_push_raw("default",
                  "{\"class\":\"BadLine\",\"args\":[],\"jid\":\"junkjunkjunkjunkjunkjun3\","
                  "\"backtrace\":true}");
    test_server_go(&r);
    int ok = test_wait_int(3, 10, "ZCARD retry");
    test_server_finish(&r);
    printf("bad fields: retry %lld, dead %lld\n", test_int("ZCARD %s", "retry"),
           test_int("ZCARD %s", "dead"));
    assert_true(ok);
    assert_int_equal(test_int("ZCARD %s", "dead"), 0);
    assert_int_equal(atomic_load(&null_line_rc), DRAY_EINVAL);
    redisReply *rr = test_redis_cmd(test_rc, "ZRANGE retry 0 -1");
    for (size_t i = 0; i < rr->elements; i++) {
        json_t *e = json_loadb(rr->element[i]->str, rr->element[i]->len, 0, NULL);
        const char *bt = json_string_value(json_object_get(e, "error_backtrace"));
        if (!strcmp(json_string_value(json_object_get(e, "class")), "BadLine")) {
            assert_non_null(bt);
            json_t *lines = inflate_backtrace(bt);
            json_t *want = json_pack("[s,s]", "(line was not valid utf-8)", "good.c:1");
            assert_true(json_equal(lines, want));
            json_decref(want);
            json_decref(lines);
        } else {
            assert_null(bt);
        }
        json_decref(e);
    }
    freeReplyObject(rr);
}

/* timestamps_ms = 1 writes Sidekiq 8's integer ms on push and on failure;
 * the default writes float seconds. */
static void
test_timestamps_ms_writer(void **state)
{
    (void)state;
    for (int ms = 0; ms <= 1; ms++) {
        redisReply *fl = test_redis_cmd(test_rc, "FLUSHALL");
        freeReplyObject(fl);
        dray_options o;
        opts_for_test(&o, "default");
        o.timestamps_ms = ms;
        dray_client *c;
        assert_int_equal(dray_client_new(&o, &c, NULL, 0), 0);
        char jid[DRAY_JID_BYTES];
        double t0 = dray_now();
        json_t *args = json_array();
        assert_int_equal(dray_client_push(c, "Fails", args, NULL, jid), 0);
        json_decref(args);
        redisReply *q = test_redis_cmd(test_rc, "LINDEX queue:default 0");
        assert_int_equal(q->type, REDIS_REPLY_STRING);
        json_t *j = json_loadb(q->str, q->len, 0, NULL);
        freeReplyObject(q);
        const char *f[2] = {"created_at", "enqueued_at"};
        for (int i = 0; i < 2; i++) {
            json_t *v = json_object_get(j, f[i]);
            assert_true(ms ? json_is_integer(v) : json_is_real(v));
            assert_true(dray_time_from_json(v) > t0 - 1 && dray_time_from_json(v) < t0 + 5);
        }
        json_decref(j);
        dray_client_free(c);

        test_running r = {0};
        assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
        assert_int_equal(dray_server_register(r.s, "Fails", h_fail, NULL, NULL), 0);
        test_server_go(&r);
        int ok = test_wait_int(1, 10, "ZCARD retry");
        test_server_finish(&r);
        assert_true(ok);
        json_t *e = zfirst("retry");
        json_t *fa = json_object_get(e, "failed_at");
        printf("timestamps_ms=%d: failed_at %s\n", ms, json_is_integer(fa) ? "integer" : "real");
        assert_true(ms ? json_is_integer(fa) : json_is_real(fa));
        assert_true(dray_time_from_json(fa) > t0 - 1 && dray_time_from_json(fa) < t0 + 10);
        json_decref(e);
    }
}

/* The inspection API and the CLI show a Sidekiq 8 retry's ms times as the
 * right dates (--json in epoch seconds, the table's FAILED column). */
static void
test_cli_times_of_sidekiq8_entries(void **state)
{
    (void)state;
    char *m = fixture("retry_0.json");
    json_t *fx = json_loads(m, 0, NULL);
    double failed = (double)json_integer_value(json_object_get(fx, "failed_at")) / 1000.0;
    double score = dray_now() + 600;
    char sc[32];
    snprintf(sc, sizeof sc, "%.6f", score);
    redisReply *r = test_redis_cmd(test_rc, "ZADD retry %s %s", sc, m);
    freeReplyObject(r);

    char *out;
    assert_int_equal(run_cli(&out, "retries", "list", "--json", NULL), 0);
    json_t *arr = json_loads(out, 0, NULL);
    free(out);
    assert_true(json_is_array(arr));
    json_t *e = json_array_get(arr, 0);
    printf("--json failed_at %.3f (fixture %.3f)\n",
           json_number_value(json_object_get(e, "failed_at")), failed);
    assert_true(json_number_value(json_object_get(e, "failed_at")) == failed);
    assert_true(json_number_value(json_object_get(e, "created_at")) ==
                (double)json_integer_value(json_object_get(fx, "created_at")) / 1000.0);
    json_decref(arr);

    char date[40];
    time_t t = (time_t)failed;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    assert_int_equal(run_cli(&out, "retries", "list", NULL), 0);
    printf("%s", out);
    assert_non_null(strstr(out, "FAILED"));
    assert_non_null(strstr(out, date));
    free(out);
    json_decref(fx);
    free(m);
}

/* Dead-set pruning by age works on Sidekiq 8 entries (scores stay seconds):
 * one that died 200 days ago goes, one that died now stays. */
static void
test_dead_pruning_sidekiq8(void **state)
{
    (void)state;
    char *m = fixture("dead_0.json");
    char sc[32];
    snprintf(sc, sizeof sc, "%.6f", dray_now() - 200.0 * 86400);
    redisReply *r = test_redis_cmd(test_rc, "ZADD dead %s %s", sc, m);
    freeReplyObject(r);
    json_t *fresh = json_loads(m, 0, NULL);
    json_object_set_new(fresh, "jid", json_string("f4e5hf4e5hf4e5hf4e5hf4e5"));
    char *fs = json_dumps(fresh, JSON_COMPACT);
    snprintf(sc, sizeof sc, "%.6f", dray_now());
    r = test_redis_cmd(test_rc, "ZADD dead %s %s", sc, fs);
    freeReplyObject(r);
    free(fs);
    json_decref(fresh);
    free(m);
    test_push_raw("default",
                  "{\"class\":\"Fails\",\"args\":[],\"jid\":\"d1ed1ed1ed1ed1ed1ed1ed1e\","
                  "\"retry\":0}");
    dray_options o;
    opts_for_test(&o, "default");
    test_running rr = {0};
    assert_int_equal(dray_server_new(&o, &rr.s, NULL, 0), 0);
    assert_int_equal(dray_server_register(rr.s, "Fails", h_fail, NULL, NULL), 0);
    test_server_go(&rr);
    int one = 1;
    assert_true(test_wait_until(ran_at_least, &one, 10));
    int ok = test_wait_int(2, 10, "ZCARD dead");
    test_server_finish(&rr);
    assert_true(ok);
    redisReply *s = test_redis_cmd(test_rc, "ZRANGE dead 0 -1");
    int old_left = 0;
    for (size_t i = 0; i < s->elements; i++)
        old_left += strstr(s->element[i]->str, "c4d5e6f7a8b9c0d1e2f3a4b5") != NULL;
    freeReplyObject(s);
    assert_int_equal(old_left, 0);
}

/* The heartbeat's info: Sidekiq 7's version/embedded/weights and 8's
 * capsules, as launcher.rb#to_data and Capsule#to_h write them. */
static void
test_process_record(void **state)
{
    (void)state;
    dray_options o;
    opts_for_test(&o, "critical,3 default,1");
    test_running r = {0};
    assert_int_equal(dray_server_new(&o, &r.s, NULL, 0), 0);
    test_server_go(&r);
    char key[300];
    snprintf(key, sizeof key, "%s", dray_server_identity(r.s));
    json_t *info = NULL;
    double until = test_now() + 10;
    while (!info && test_now() < until) {
        redisReply *h = test_redis_cmd(test_rc, "HGET %s info", key);
        if (h->type == REDIS_REPLY_STRING)
            info = json_loadb(h->str, h->len, 0, NULL);
        freeReplyObject(h);
        if (!info)
            usleep(20000); /* polling for the first beat */
    }
    char *out;
    assert_int_equal(run_cli(&out, "processes", NULL), 0);
    printf("%s", out);
    int cli_ok = strstr(out, "VERSION") && strstr(out, "dray " DRAY_VERSION_STRING);
    free(out);
    assert_true(cli_ok);
    dray_api *api;
    assert_int_equal(dray_api_new(&o, &api, NULL, 0), 0);
    dray_process_info *p;
    size_t n;
    assert_int_equal(dray_api_processes_list(api, &p, &n), 0);
    test_server_finish(&r);
    assert_non_null(info);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].version, "dray " DRAY_VERSION_STRING);
    dray_api_processes_free(p, n);
    dray_api_free(api);
    assert_string_equal(json_string_value(json_object_get(info, "version")),
                        "dray " DRAY_VERSION_STRING);
    assert_true(json_is_false(json_object_get(info, "embedded")));
    json_t *want_w = json_pack("[{s:i, s:i}]", "critical", 3, "default", 1);
    assert_true(json_equal(json_object_get(info, "weights"), want_w));
    json_t *want_c = json_pack("{s:{s:i, s:s, s:O}}", "default", "concurrency", 2, "mode",
                               "weighted", "weights", json_array_get(want_w, 0));
    char *got = json_dumps(json_object_get(info, "capsules"), JSON_COMPACT);
    printf("capsules: %s\n", got);
    free(got);
    assert_true(json_equal(json_object_get(info, "capsules"), want_c));
    json_decref(want_w);
    json_decref(want_c);
    json_decref(info);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_from_json),
        cmocka_unit_test_setup_teardown(test_sidekiq8_job_latency_and_run, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_retry_for, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_retry_for_class_option, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_backoff_discard_kill, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_error_backtrace, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_compat_fields, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_timestamps_ms_writer, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cli_times_of_sidekiq8_entries, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_dead_pruning_sidekiq8, setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_process_record, setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
