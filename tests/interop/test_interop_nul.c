/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Ruby strings may hold NUL bytes; JSON carries them as \u0000 and Sidekiq
 * 6.4 pushes, moves and runs such jobs like any other. dray must too: parse
 * the payload (jansson needs JSON_ALLOW_NUL), run it from a queue, and let
 * its scheduler move it, instead of calling a valid job malformed and
 * sending it to the dead set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "interop_support.h"

/* The first arg of the job dray ran for jid is exactly "a\0b". */
static void
assert_ran_with_nul(const char *jid)
{
    json_t *seen = it_rec_first(jid);
    assert_non_null(seen);
    json_t *a0 = json_array_get(jget(seen, "args"), 0);
    assert_int_equal(json_string_length(a0), 3);
    assert_memory_equal(json_string_value(a0), "a\0b", 3);
    json_decref(seen);
}

static void
test_sidekiq_nul_in_string_parses(void **state)
{
    (void)state;
    json_t *pr = sk_runf(it_srv.url, "push", "{s:[{s:s, s:[s%, s]}]}", "jobs", "class", "HardJob",
                         "args", "a\0b", (size_t)3, "plain");
    const char *jid = json_string_value(json_array_get(jget(pr, "jids"), 0));
    redisReply *l = test_redis_cmd(it_rc, "LINDEX queue:default 0");
    assert_int_equal(l->type, REDIS_REPLY_STRING);
    assert_non_null(strstr(l->str, "\\u0000"));
    dray_job *job = NULL;
    char err[256] = "";
    int e = dray_job_parse(l->str, l->len, 0, &job, err, sizeof err);
    if (e)
        fail_msg("dray_job_parse refused Sidekiq's payload with \\u0000 in an arg (%s: %s): %s",
                 dray_err_name(e), err, l->str);
    assert_string_equal(dray_job_jid(job), jid);
    json_t *a0 = json_array_get(dray_job_args(job), 0);
    assert_int_equal(json_string_length(a0), 3);
    assert_memory_equal(json_string_value(a0), "a\0b", 3);
    char *dump;
    size_t dlen;
    assert_int_equal(dray_job_dump(job, &dump, &dlen), 0);
    json_t *cmp = sk_runf(it_srv.url, "compare", "{s:[[s,s]]}", "pairs", l->str, dump);
    json_t *res0 = json_array_get(jget(cmp, "results"), 0);
    if (!json_is_true(jget(res0, "equal")))
        fail_msg("dump differs from Sidekiq's payload: %s", jstr(res0, "diff"));
    free(dump);
    dray_job_free(job);
    freeReplyObject(l);
    json_decref(cmp);
    json_decref(pr);
}

/* Run jid on a fresh server (queue "default"); fail with where it went. */
static void
run_and_check(const char *jid)
{
    dray_options o;
    it_opts(&o, &it_srv, "default", 1);
    it_server *t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "HardJob", it_h_record, NULL, NULL), 0);
    it_go(t);
    int ran = it_wait_jid_runs(jid, 1, 5);
    long long sched = it_rint(it_rc, "ZCARD schedule"), dead = it_rint(it_rc, "ZCARD dead");
    long long queued = it_rint(it_rc, "LLEN queue:default");
    it_finish(t);
    if (!ran)
        fail_msg("dray never ran Sidekiq's job with \\u0000 in an arg (schedule %lld, queue %lld, "
                 "dead %lld)",
                 sched, queued, dead);
    assert_ran_with_nul(jid);
    assert_int_equal(dead, 0);
}

static void
test_sidekiq_nul_in_string_runs(void **state)
{
    (void)state;
    json_t *pr = sk_runf(it_srv.url, "push", "{s:[{s:s, s:[s%]}]}", "jobs", "class", "HardJob",
                         "args", "a\0b", (size_t)3);
    run_and_check(json_string_value(json_array_get(jget(pr, "jids"), 0)));
    json_decref(pr);
}

static void
test_scheduled_nul_in_string_runs(void **state)
{
    (void)state;
    json_t *a = sk_runf(it_srv.url, "perform_in", "{s:s, s:f, s:[s%]}", "class", "HardJob",
                        "interval", 0.2, "args", "a\0b", (size_t)3);
    run_and_check(jstr(a, "jid"));
    json_decref(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sidekiq_nul_in_string_parses, it_each_setup,
                                        it_each_teardown),
        cmocka_unit_test_setup_teardown(test_sidekiq_nul_in_string_runs, it_each_setup,
                                        it_each_teardown),
        cmocka_unit_test_setup_teardown(test_scheduled_nul_in_string_runs, it_each_setup,
                                        it_each_teardown),
    };
    return test_exit_code(cmocka_run_group_tests(tests, it_setup, it_teardown));
}
