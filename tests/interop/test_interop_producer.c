/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Producer interop with real Sidekiq 6.4 (issue 2): what dray pushes,
 * Sidekiq::Queue, ScheduledSet and Stats see exactly; what Sidekiq::Client
 * pushes, dray_job_parse reads without loss and dumps back equal in value. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "interop_support.h"

/* Arguments that are easy to damage: unicode, floats at the edges of
 * %.17g, negative zero, big integers, nesting, empty containers, null. */
static const char *HARD_ARGS =
    "[1, \"two\", 3.5, null, true, {\"k\": [1, {\"z\": \"\xc3\xbc\"}]},"
    " \"na\xc3\xafve caf\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
    "\xf0\x9f\x9a\x80\","
    " -42, 1.0e-7, 12345678901234, 4611686018427387904, -0.0, 0.30000000000000004, 1e300,"
    " 1700000000.123456, [[[]]], {}, \"quote\\\" backslash\\\\ tab\\t nl\\n\"]";

/* assert_json_eq against a JSON literal. */
static void
assert_json_lit(const char *what, const char *literal, const json_t *got)
{
    json_t *want = it_loads(literal);
    assert_json_eq(what, want, got);
    json_decref(want);
}

/* Ruby's record of jid in list `arr`; fails when it is not there. */
static json_t *
ruby_job(const json_t *arr, const char *jid)
{
    json_t *j = jfind(arr, "jid", jid);
    if (!j)
        fail_msg("Sidekiq does not list jid %s", jid);
    return j;
}

/* A time field as Ruby saw it: a Float equal to want within 1 us. */
static void
assert_ruby_time(const json_t *rj, const char *field, double want)
{
    json_t *t = jget(rj, field);
    const char *cls = jstr(t, "ruby_class");
    if (strcmp(cls, "Float"))
        fail_msg("Sidekiq reads %s as a %s, not a Float", field, cls);
    assert_close(field, want, jnum(t, "value"), 1e-6);
}

static void
test_dray_pushes_seen_by_sidekiq(void **state)
{
    (void)state;
    dray_client *c;
    assert_int_equal(it_client_new(NULL, &c), 0);
    double t0 = dray_now();

    /* one job with everything: hard args, queue, retry, custom fields */
    dray_job *full;
    assert_int_equal(dray_job_new("HardJob", it_loads(HARD_ARGS), &full), 0);
    json_t *extra =
        it_loads("{\"tags\": [\"alpha\", \"beta\"], \"custom_ctx\": {\"tenant\": 7, "
                 "\"trace\": \"abc\"}, \"bid\": \"HxBtApqAroMAzw\", \"nothing\": null}");
    dray_push_opts po = {.queue = "critical", .retry = 3, .extra = extra};
    if (dray_client_push_job(c, full, &po))
        fail_msg("push_job: %s", dray_client_errstr(c));
    json_decref(extra);

    /* the plain call with defaults */
    char plain_jid[DRAY_JID_BYTES];
    json_t *pargs = it_loads("[\"x\", 2]");
    assert_int_equal(dray_client_push(c, "Plain", pargs, NULL, plain_jid), 0);

    /* bulk: five jobs, one round trip */
    json_t *bulk = json_array();
    for (int i = 0; i < 5; i++)
        json_array_append_new(bulk, json_pack("[i, s, f]", i, i == 0 ? "b0" : "bn", i + 0.25));
    char bulk_jids[5][DRAY_JID_BYTES];
    size_t pushed = 0;
    dray_push_opts pb = {.queue = "bulk"};
    assert_int_equal(dray_client_push_bulk(c, "BulkJob", bulk, &pb, &bulk_jids[0][0], &pushed), 0);
    assert_int_equal(pushed, 5);

    /* scheduled: `in` (the job keeps the "at" dray chose) and `at` */
    dray_job *later;
    assert_int_equal(
        dray_job_new("LaterJob", it_loads("[{\"deep\": [1.5, \"\xc3\xbc\"]}]"), &later), 0);
    dray_push_opts pin = {.in = 600};
    assert_int_equal(dray_client_push_job(c, later, &pin), 0);
    double later_at = json_number_value(dray_job_get(later, "at"));
    assert_true(later_at > t0 + 599);

    double fixed_at = floor(t0) + 3600.123456;
    dray_job *atjob;
    assert_int_equal(dray_job_new("AtJob", it_loads("[\"at\"]"), &atjob), 0);
    dray_push_opts pat = {.at = fixed_at, .queue = "timed"};
    assert_int_equal(dray_client_push_job(c, atjob, &pat), 0);

    /* scheduled bulk: three jobs, one run time */
    json_t *sbulk = it_loads("[[1], [2], [3]]");
    char sbulk_jids[3][DRAY_JID_BYTES];
    dray_push_opts psb = {.in = 900};
    assert_int_equal(dray_client_push_bulk(c, "SBulkJob", sbulk, &psb, &sbulk_jids[0][0], &pushed),
                     0);
    assert_int_equal(pushed, 3);
    double t1 = dray_now();

    json_t *r =
        sk_runf(it_srv.url, "inspect", "{s:[sss]}", "queues", "critical", "default", "bulk");

    /* queues, sizes and Stats */
    assert_json_lit("Sidekiq::Queue.all", "[\"bulk\", \"critical\", \"default\"]",
                    jget(r, "queue_names"));
    json_t *sizes = jget(r, "queue_sizes");
    assert_int_equal(jint(sizes, "critical"), 1);
    assert_int_equal(jint(sizes, "default"), 1);
    assert_int_equal(jint(sizes, "bulk"), 5);
    json_t *stats = jget(r, "stats");
    assert_int_equal(jint(stats, "enqueued"), 7);
    assert_int_equal(jint(stats, "scheduled_size"), 5);
    assert_int_equal(jint(stats, "retry_size"), 0);
    assert_int_equal(jint(stats, "dead_size"), 0);
    json_t *queues = jget(r, "queues");
    double qlat = jnum(jget(r, "queue_latency"), "critical");
    if (qlat < 0 || qlat > 60)
        fail_msg("Sidekiq::Queue#latency of dray's queue is %.3f s", qlat);

    /* the full job: every field, as dray holds it, is what Ruby reads */
    json_t *rj = ruby_job(jget(queues, "critical"), dray_job_jid(full));
    assert_string_equal(jstr(rj, "klass"), "HardJob");
    assert_string_equal(jstr(rj, "queue"), "critical");
    assert_json_eq("args", dray_job_args(full), jget(rj, "args"));
    assert_json_eq("whole payload", dray_job_json(full), jget(rj, "item"));
    assert_json_lit("tags", "[\"alpha\", \"beta\"]", jget(rj, "tags"));
    json_t *item = jget(rj, "item");
    assert_int_equal(jint(item, "retry"), 3);
    assert_json_lit("custom_ctx", "{\"tenant\": 7, \"trace\": \"abc\"}", jget(item, "custom_ctx"));
    assert_string_equal(jstr(item, "bid"), "HxBtApqAroMAzw");
    assert_true(json_is_null(jget(item, "nothing")));
    assert_ruby_time(rj, "created_at", json_number_value(dray_job_get(full, "created_at")));
    assert_ruby_time(rj, "enqueued_at", json_number_value(dray_job_get(full, "enqueued_at")));
    assert_close("JobRecord#created_at", json_number_value(dray_job_get(full, "created_at")),
                 jnum(rj, "created_at_time"), 1e-6);
    assert_close("JobRecord#enqueued_at", json_number_value(dray_job_get(full, "enqueued_at")),
                 jnum(rj, "enqueued_at_time"), 1e-6);
    /* latency is seconds since enqueued_at: small and not negative */
    double lat = jnum(rj, "latency");
    if (lat < 0 || lat > 60)
        fail_msg("Sidekiq computes a latency of %.3f s for a job dray just pushed", lat);

    /* the plain push: Sidekiq's defaults */
    rj = ruby_job(jget(queues, "default"), plain_jid);
    assert_string_equal(jstr(rj, "klass"), "Plain");
    assert_string_equal(jstr(rj, "queue"), "default");
    assert_json_eq("plain args", pargs, jget(rj, "args"));
    assert_true(json_is_true(jget(jget(rj, "item"), "retry")));
    assert_string_equal(jstr(jget(rj, "created_at"), "ruby_class"), "Float");
    double ca = jnum(jget(rj, "created_at"), "value");
    assert_true(ca >= t0 - 1e-6 && ca <= t1 + 1e-6);
    assert_string_equal(jstr(jget(rj, "enqueued_at"), "ruby_class"), "Float");
    assert_true(jnum(jget(rj, "enqueued_at"), "value") >= ca - 1e-6);

    /* bulk */
    for (int i = 0; i < 5; i++) {
        rj = ruby_job(jget(queues, "bulk"), bulk_jids[i]);
        assert_string_equal(jstr(rj, "klass"), "BulkJob");
        assert_string_equal(jstr(rj, "queue"), "bulk");
        assert_json_eq("bulk args", json_array_get(bulk, (size_t)i), jget(rj, "args"));
        assert_string_equal(jstr(jget(rj, "created_at"), "ruby_class"), "Float");
        assert_string_equal(jstr(jget(rj, "enqueued_at"), "ruby_class"), "Float");
        double bca = jnum(jget(rj, "created_at"), "value");
        assert_true(bca >= t0 - 1e-6 && bca <= t1 + 1e-6);
    }

    /* scheduled: `at` of the SortedEntry is dray's run time */
    json_t *sched = jget(r, "scheduled");
    assert_int_equal(json_array_size(sched), 5);
    rj = ruby_job(sched, dray_job_jid(later));
    assert_string_equal(jstr(rj, "klass"), "LaterJob");
    assert_string_equal(jstr(rj, "queue"), "default");
    assert_json_eq("scheduled args", dray_job_args(later), jget(rj, "args"));
    assert_close("ScheduledSet entry at (in: 600)", later_at, jnum(rj, "at"), 1e-6);
    assert_close("ScheduledSet entry score", later_at, jnum(rj, "score"), 1e-6);
    assert_null(json_object_get(jget(rj, "item"), "at"));
    assert_null(json_object_get(jget(rj, "item"), "enqueued_at"));
    assert_true(json_is_null(jget(rj, "enqueued_at_time")));
    assert_ruby_time(rj, "created_at", json_number_value(dray_job_get(later, "created_at")));

    rj = ruby_job(sched, dray_job_jid(atjob));
    assert_string_equal(jstr(rj, "klass"), "AtJob");
    assert_string_equal(jstr(rj, "queue"), "timed");
    assert_close("ScheduledSet entry at (at: fixed)", fixed_at, jnum(rj, "at"), 1e-6);

    double first_at = -1;
    for (int i = 0; i < 3; i++) {
        rj = ruby_job(sched, sbulk_jids[i]);
        assert_string_equal(jstr(rj, "klass"), "SBulkJob");
        assert_json_eq("scheduled bulk args", json_array_get(sbulk, (size_t)i), jget(rj, "args"));
        double at = jnum(rj, "at");
        assert_true(at >= t0 + 900 - 1e-6 && at <= t1 + 900 + 1e-6);
        if (first_at < 0)
            first_at = at;
        assert_close("scheduled bulk shares one run time", first_at, at, 1e-6);
    }

    json_decref(r);
    json_decref(pargs);
    json_decref(bulk);
    json_decref(sbulk);
    dray_job_free(full);
    dray_job_free(later);
    dray_job_free(atjob);
    dray_client_free(c);
}

/* Parse every payload Ruby wrote, check it against Ruby's own reading, dump
 * it, and have Ruby compare the dump with the original (strict: Integer is
 * not Float, key order kept). `raws` is an array of payload strings. */
static void
parse_check_dump(json_t *raws, json_t *ruby_items)
{
    json_t *pairs = json_array();
    size_t i;
    json_t *rawv;
    json_array_foreach(raws, i, rawv)
    {
        const char *raw = json_string_value(rawv);
        dray_job *job = NULL;
        char err[256] = "";
        int e = dray_job_parse(raw, strlen(raw), 0, &job, err, sizeof err);
        if (e)
            fail_msg("dray_job_parse refused a payload Sidekiq wrote (%s: %s): %s",
                     dray_err_name(e), err, raw);
        json_t *ri = jfind(ruby_items, "jid", dray_job_jid(job));
        if (!ri)
            fail_msg("Sidekiq did not report jid %s", dray_job_jid(job));
        json_t *item = jget(ri, "item");
        /* every field, unknown ones included, equal to what Ruby read */
        assert_json_eq("parsed payload vs Sidekiq's reading", item, dray_job_json(job));
        assert_string_equal(dray_job_class(job), jstr(item, "class"));
        assert_string_equal(dray_job_queue(job), jstr(item, "queue"));
        assert_json_eq("args", jget(item, "args"), dray_job_args(job));
        assert_int_equal(dray_job_retry_count(job), -1);
        assert_string_equal(dray_job_payload(job), raw);
        char *dump;
        size_t dlen;
        assert_int_equal(dray_job_dump(job, &dump, &dlen), 0);
        json_array_append_new(pairs, json_pack("[s, s]", raw, dump));
        free(dump);
        dray_job_free(job);
    }
    json_t *cmp = sk_runf(it_srv.url, "compare", "{s:o}", "pairs", pairs);
    json_t *res = jget(cmp, "results");
    assert_int_equal(json_array_size(res), json_array_size(raws));
    json_array_foreach(res, i, rawv)
    {
        if (!json_is_true(jget(rawv, "equal")))
            fail_msg("dray's dump of %s differs from Sidekiq's payload in value: %s",
                     json_string_value(json_array_get(raws, i)), jstr(rawv, "diff"));
    }
    json_decref(cmp);
}

/* Every member of list key, as a json array of strings. */
static json_t *
lrange_all(const char *key)
{
    redisReply *r = test_redis_cmd(it_rc, "LRANGE %s 0 -1", key);
    json_t *a = json_array();
    for (size_t i = 0; i < r->elements; i++)
        json_array_append_new(a, json_stringn(r->element[i]->str, r->element[i]->len));
    freeReplyObject(r);
    return a;
}

static void
test_sidekiq_pushes_parsed_by_dray(void **state)
{
    (void)state;
    json_t *jobs =
        json_pack("[{s:s, s:o}, {s:s, s:b, s:o, s:[ss], s:{s:i, s:s}, s:s, s:n, s:{s:[f, f]}}, "
                  "{s:s, s:[], s:b, s:b, s:s, s:i}]",
                  "class", "HardJob", "args", it_loads(HARD_ARGS),
                  /* a worker class: its sidekiq_options (queue, retry, backtrace) merge in */
                  "class", "Billing::InvoiceJob", "use_class", 1, "args", it_loads(HARD_ARGS),
                  "tags", "alpha", "beta", "custom_ctx", "tenant", 7, "trace", "abc", "bid",
                  "HxBtApqAroMAzw", "nothing", "middleware_state", "weights", 0.1, 2.0, "class",
                  "HardJob", "args", "retry", 0, "dead", 0, "queue", "low", "backtrace", 10);
    json_t *pr = sk_runf(it_srv.url, "push", "{s:o}", "jobs", jobs);
    assert_int_equal(json_array_size(jget(pr, "jids")), 3);
    json_t *br = sk_runf(it_srv.url, "push_bulk", "{s:{s:s, s:s, s:[[i], [f], [s], [{s:n}]]}}",
                         "item", "class", "HardJob", "queue", "bulk", "args", 1, 2.5, "x", "k");
    assert_int_equal(json_array_size(jget(br, "jids")), 4);
    json_t *ir = sk_runf(it_srv.url, "perform_in", "{s:s, s:f, s:[{s:{s:[[[]]]}}]}", "class",
                         "HardJob", "interval", 600.0, "args", "a", "b");
    const char *sched_jid = jstr(ir, "jid");

    json_t *r = sk_runf(it_srv.url, "inspect", "{s:[ssss]}", "queues", "default", "critical", "low",
                        "bulk");
    json_t *all = json_array();
    json_t *queues = jget(r, "queues");
    const char *qn;
    json_t *qv;
    json_object_foreach(queues, qn, qv)
    {
        json_array_extend(all, qv);
    }
    json_array_extend(all, jget(r, "scheduled"));
    assert_int_equal(json_array_size(all), 8);

    /* the payloads exactly as they sit in Redis */
    json_t *raws = json_array();
    const char *keys[] = {"queue:default", "queue:critical", "queue:low", "queue:bulk"};
    for (size_t k = 0; k < 4; k++) {
        json_t *l = lrange_all(keys[k]);
        json_array_extend(raws, l);
        json_decref(l);
    }
    redisReply *z = test_redis_cmd(it_rc, "ZRANGE schedule 0 -1 WITHSCORES");
    assert_int_equal(z->elements, 2);
    json_array_append_new(raws, json_stringn(z->element[0]->str, z->element[0]->len));
    double score = atof(z->element[1]->str);
    freeReplyObject(z);
    assert_int_equal(json_array_size(raws), 8);

    /* the worker class's options arrived */
    json_t *inv = jfind(jget(queues, "critical"), "klass", "Billing::InvoiceJob");
    assert_non_null(inv);
    assert_int_equal(jint(jget(inv, "item"), "retry"), 3);
    assert_int_equal(jint(jget(inv, "item"), "backtrace"), 10);

    parse_check_dump(raws, all);

    /* the scheduled job: no "at" in the payload, the run time is the score */
    json_t *sj = ruby_job(jget(r, "scheduled"), sched_jid);
    assert_close("perform_in score vs SortedEntry#at", jnum(sj, "at"), score, 1e-6);
    dray_job *job;
    const char *sraw = json_string_value(json_array_get(raws, 7));
    assert_int_equal(dray_job_parse(sraw, strlen(sraw), 0, &job, NULL, 0), 0);
    assert_string_equal(dray_job_jid(job), sched_jid);
    assert_null(dray_job_get(job, "at"));
    assert_null(dray_job_get(job, "enqueued_at"));
    assert_true(json_is_real(dray_job_get(job, "created_at")));
    dray_job_free(job);

    json_decref(raws);
    json_decref(all);
    json_decref(r);
    json_decref(ir);
    json_decref(br);
    json_decref(pr);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_dray_pushes_seen_by_sidekiq, it_each_setup),
        cmocka_unit_test_setup(test_sidekiq_pushes_parsed_by_dray, it_each_setup),
    };
    return test_exit_code(cmocka_run_group_tests(tests, it_setup, it_teardown));
}
