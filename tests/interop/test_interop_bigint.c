/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Ruby bignums with real Sidekiq 6.4 (issue 10): a job whose args are
 * Integers beyond 64 bits, pushed by Sidekiq::Client, runs in dray, the
 * handler reads the digits, and after dray's retry write, dray's scheduler
 * and dray's death write, Sidekiq::RetrySet and DeadSet see the very same
 * Integers. Before the fix dray sent such a job to the dead set unrun. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "interop_support.h"

static const char *const digits[3] = {"18446744073709551616", "-1180591620717411303424",
                                      "123456789012345678901234567890"};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int bad_digits; /* runs whose args did not read back as the digits */

/* Checks the digits, then fails. */
static int
h_big(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    json_t *a = dray_job_args(job);
    int ok = json_array_size(a) == 3;
    for (size_t i = 0; ok && i < 3; i++) {
        const char *d = dray_json_bigint(json_array_get(a, i));
        ok = d && !strcmp(d, digits[i]);
    }
    if (!ok) {
        pthread_mutex_lock(&mu);
        bad_digits++;
        pthread_mutex_unlock(&mu);
    }
    it_rec_add(job);
    return dray_result_fail(res, "RangeError", "bignum job fails on purpose");
}

static json_t *
push_big(int retry)
{
    return sk_runf(it_srv.url, "push_bigints", "{s:s, s:s, s:i, s:[s,s,s]}", "class", "BigJob",
                   "queue", "default", "retry", retry, "digits", digits[0], digits[1], digits[2]);
}

/* Ruby's view of the only entry of a set: its Integers are the digits. */
static void
assert_ruby_sees_digits(const char *set, const char *jid, long long retry_count)
{
    json_t *r = sk_runf(it_srv.url, "set_args", "{s:s}", "set", set);
    json_t *entries = jget(r, "entries");
    assert_int_equal(json_array_size(entries), 1);
    json_t *e = json_array_get(entries, 0);
    assert_string_equal(jstr(e, "jid"), jid);
    assert_int_equal(jint(e, "retry_count"), retry_count);
    json_t *args = jget(e, "args");
    assert_int_equal(json_array_size(args), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *pair = json_array_get(args, i);
        assert_string_equal(json_string_value(json_array_get(pair, 0)), "Integer");
        assert_string_equal(json_string_value(json_array_get(pair, 1)), digits[i]);
    }
    json_decref(r);
}

static void
test_ruby_bignums(void **state)
{
    (void)state;
    freeReplyObject(test_redis_cmd(it_rc, "FLUSHALL"));
    it_rec_reset();
    json_t *pa = push_big(5); /* retried: fails twice, second retry an hour out */
    json_t *pb = push_big(0); /* "retry": 0: straight to the dead set */
    const char *ja = jstr(pa, "jid"), *jb = jstr(pb, "jid");

    dray_options o;
    it_opts(&o, &it_srv, "default", 2);
    it_server *t = it_new(&o);
    dray_class_opts co;
    memset(&co, 0, sizeof co);
    co.backoff = it_quick_then_slow;
    assert_int_equal(dray_server_register(t->s, "BigJob", h_big, NULL, &co), 0);
    it_go(t);
    int ok = it_wait_rint(it_rc, 1, 20, "ZCARD dead");
    it_wait_jid_runs(ja, 2, 20);
    it_finish(t); /* a graceful stop writes the outcome of the run in flight */
    print_message("runs: A %d, B %d; dead %d; handler saw other digits %d times\n", it_rec_runs(ja),
                  it_rec_runs(jb), ok, bad_digits);
    assert_true(ok);
    assert_int_equal(it_rec_runs(ja), 2);
    assert_int_equal(it_rec_runs(jb), 1);
    assert_int_equal(bad_digits, 0);
    assert_ruby_sees_digits("retry", ja, 1);
    assert_ruby_sees_digits("dead", jb, 0);
    json_decref(pa);
    json_decref(pb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ruby_bignums),
    };
    return cmocka_run_group_tests(tests, it_setup, it_teardown);
}
