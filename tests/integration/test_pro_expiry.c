/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Expiring jobs: a job fetched after its deadline is dropped (its handler
 * never runs), logged, counted in pro:stat:expired, and counts as a
 * success for its batch. expires_in counts from when the job is due (a
 * scheduled job gets its delay on top); bad values are refused at push; a
 * job pushed without the module (expires_in only) expires from created_at.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dray/pro_batch.h"
#include "pro_test.h"

static void
push_with(const char *bid, json_t *extra_fields, double in, char *jid)
{
    json_t *extra = extra_fields ? json_deep_copy(extra_fields) : json_object();
    if (bid)
        json_object_set_new(extra, "bid", json_string(bid));
    dray_push_opts po = {.extra = extra, .in = in};
    json_t *args = json_pack("[s, i]", "x", 0);
    if (dray_client_push(pro_cli, "Work", args, &po, jid))
        fail_msg("push: %s", dray_client_errstr(pro_cli));
    json_decref(args);
    json_decref(extra);
}

static void
test_dropped_counted_batch_success(void **state)
{
    (void)state;
    dray_pro *p;
    assert_int_equal(dray_pro_new(pro_rc, NULL, &p), 0);
    dray_pro_batch_opts o = {.description = "expiring",
                             .callback_queue = "cb",
                             .on_complete = {"Cb", NULL},
                             .on_success = {"Cb", NULL}};
    char bid[DRAY_PRO_BID_BYTES];
    assert_int_equal(dray_pro_batch_new(p, &o, bid), 0);
    json_t *past = json_pack("{s:f}", "expires_at", dray_now() - 1); /* already late */
    json_t *tiny = json_pack("{s:f}", "expires_in", 0.001); /* late by the time a worker starts */
    json_t *plenty = json_pack("{s:i}", "expires_in", 3600);
    char kept[2][DRAY_JID_BYTES], gone[6][DRAY_JID_BYTES];
    for (int i = 0; i < 3; i++)
        push_with(bid, past, 0, gone[i]);
    for (int i = 3; i < 6; i++)
        push_with(bid, tiny, 0, gone[i]);
    push_with(bid, plenty, 0, kept[0]);
    push_with(bid, NULL, 0, kept[1]);
    assert_int_equal(dray_pro_batch_commit(p, bid, 0), 0);
    /* the producer stamped the deadline */
    char *first = pro_str(pro_rc, "LINDEX queue:default -1");
    json_t *fj = json_loads(first, 0, NULL);
    assert_true(json_is_number(json_object_get(fj, "expires_at")));
    json_decref(fj);
    free(first);

    pro_worker w;
    const char *args[] = {"concurrency=2", NULL};
    assert_int_equal(pro_worker_start(&w, pro_srv.url, pro_license_default(), args), 0);
    if (!pro_wait_int(pro_rc, 1, 30, "HGET t:cb %s:success", bid)) {
        pro_worker_dump(&w, 30);
        fail_msg("no batch success");
    }
    assert_int_equal(pro_int(pro_rc, "GET pro:stat:expired"), 6);
    assert_int_equal(pro_int(pro_rc, "HLEN t:runs"), 2); /* only the two that were in time ran */
    for (int i = 0; i < 2; i++)
        assert_int_equal(pro_int(pro_rc, "HGET t:runs %s", kept[i]), 1);
    for (int i = 0; i < 6; i++)
        assert_int_equal(pro_int(pro_rc, "HEXISTS t:runs %s", gone[i]), 0);
    dray_pro_batch_status *st;
    assert_int_equal(dray_pro_batch_status_get(p, bid, &st), 0);
    assert_int_equal(st->total, 8);
    assert_int_equal(st->pending, 0);
    assert_int_equal(st->failures, 0);
    dray_pro_batch_status_free(st);
    assert_int_equal(pro_int(pro_rc, "HGET t:cb %s:complete", bid), 1);
    assert_int_equal(pro_int(pro_rc, "ZCARD dead"), 0);
    assert_int_equal(pro_int(pro_rc, "ZCARD retry"), 0);
    assert_int_equal(pro_worker_stop(&w, SIGTERM, 20), 0);
    /* one log line per dropped job */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "grep -c 'expired .* before it could start' '%s'", w.log);
    FILE *f = popen(cmd, "r");
    int lines = 0;
    assert_int_equal(fscanf(f, "%d", &lines), 1);
    pclose(f);
    assert_int_equal(lines, 6);
    json_decref(past);
    json_decref(tiny);
    json_decref(plenty);
    dray_pro_free(p);
}

/* expires_in of a scheduled job counts from its run time. */
static void
test_scheduled(void **state)
{
    (void)state;
    json_t *in5 = json_pack("{s:i}", "expires_in", 5);
    char jid[DRAY_JID_BYTES];
    push_with(NULL, in5, 1.0, jid);
    json_decref(in5);
    redisReply *z = test_redis_cmd(pro_rc, "ZRANGE schedule 0 -1 WITHSCORES");
    assert_int_equal(z->elements, 2);
    json_t *j = json_loads(z->element[0]->str, 0, NULL);
    double at = strtod(z->element[1]->str, NULL);
    double exp = json_number_value(json_object_get(j, "expires_at"));
    assert_true(exp > at + 4.99 && exp < at + 5.01);
    json_decref(j);
    freeReplyObject(z);
    pro_worker w;
    const char *args[] = {"concurrency=1", NULL};
    assert_int_equal(pro_worker_start(&w, pro_srv.url, pro_license_default(), args), 0);
    assert_true(pro_wait_int(pro_rc, 1, 20, "HGET t:runs %s", jid));
    assert_int_equal(pro_int(pro_rc, "GET pro:stat:expired"), 0);
    assert_int_equal(pro_worker_stop(&w, SIGTERM, 20), 0);
}

static void
test_bad_values(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"expires_in\": -1}", "{\"expires_in\": \"soon\"}",     "{\"expires_in\": 0}",
        "{\"expires_at\": 5}",  "{\"expires_at\": \"tomorrow\"}", NULL};
    for (int i = 0; bad[i]; i++) {
        json_t *extra = json_loads(bad[i], 0, NULL);
        dray_push_opts po = {.extra = extra};
        json_t *args = json_array();
        assert_int_equal(dray_client_push(pro_cli, "Work", args, &po, NULL), DRAY_EFIELD);
        assert_non_null(strstr(dray_client_errstr(pro_cli), "expires_"));
        json_decref(args);
        json_decref(extra);
    }
    assert_int_equal(pro_int(pro_rc, "LLEN queue:default"), 0);
}

/* Pushed by a producer without the module (a Ruby app, say): only
 * expires_in, counted from created_at. */
static void
test_foreign_producer(void **state)
{
    (void)state;
    char job[512];
    snprintf(job, sizeof job,
             "{\"class\":\"Work\",\"args\":[\"old\",0],\"jid\":\"0123456789abcdef01234567\","
             "\"queue\":\"default\",\"retry\":true,\"created_at\":%.6f,\"enqueued_at\":%.6f,"
             "\"expires_in\":10}",
             dray_now() - 100, dray_now() - 100);
    freeReplyObject(test_redis_cmd(pro_rc, "LPUSH queue:default %s", job));
    pro_worker w;
    const char *args[] = {"concurrency=1", NULL};
    assert_int_equal(pro_worker_start(&w, pro_srv.url, pro_license_default(), args), 0);
    assert_true(pro_wait_int(pro_rc, 1, 20, "GET pro:stat:expired"));
    assert_int_equal(pro_int(pro_rc, "HLEN t:runs"), 0);
    assert_int_equal(pro_worker_stop(&w, SIGTERM, 20), 0);
}

/* A failed assertion leaves its workers running: none may outlive its test. */
int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dropped_counted_batch_success, pro_flush,
                                        pro_leftovers),
        cmocka_unit_test_setup_teardown(test_scheduled, pro_flush, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_bad_values, pro_flush, pro_leftovers),
        cmocka_unit_test_setup_teardown(test_foreign_producer, pro_flush, pro_leftovers),
    };
    return cmocka_run_group_tests(tests, pro_setup, pro_teardown);
}
