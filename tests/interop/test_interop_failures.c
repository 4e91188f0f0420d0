/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Failure-path and scheduler interop with real Sidekiq 6.4 (issue 3):
 * Sidekiq::RetrySet and DeadSet list dray's failures with Sidekiq's fields;
 * Ruby's retry and kill work while dray runs; perform_in jobs are moved and
 * run by dray's scheduler; a retry that dray itself moved back and failed
 * again looks to Ruby exactly like one of Sidekiq's. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "interop_support.h"

/* Fails on its first run, succeeds after. */
static int
h_flaky(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    if (it_rec_add(job) == 1)
        return dray_result_fail(res, "ArgumentError", "flaky %s: first run", dray_job_jid(job));
    return 0;
}

/* Always fails, with a unicode message. */
static int
h_doomed(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    it_rec_add(job);
    return dray_result_fail(res, "IOError", "disk on fire \xc3\xbc (%s)",
                            json_string_value(json_array_get(dray_job_args(job), 0)));
}

static int
h_keyerror(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    it_rec_add(job);
    return dray_result_fail(res, "KeyError", "key not found: :x");
}

/* Retries an hour out: nothing comes back on its own during the test. */
static double
hour(const dray_job *job, int count, void *ud)
{
    (void)job;
    (void)count;
    (void)ud;
    return 3600.0;
}

static const char *
jid_at(const json_t *push_result, size_t i)
{
    return json_string_value(json_array_get(jget(push_result, "jids"), i));
}

/* What Ruby lists for jid in a set; fails when absent. */
static json_t *
entry(const json_t *set, const char *jid, const char *setname)
{
    json_t *e = jfind(set, "jid", jid);
    if (!e)
        fail_msg("Sidekiq::%s does not list jid %s", setname, jid);
    return e;
}

/* The fields Sidekiq's retry handler writes on a first failure. */
static void
assert_first_failure(const json_t *e, const char *klass, const char *eclass, const char *emsg,
                     const char *queue)
{
    assert_string_equal(jstr(e, "klass"), klass);
    assert_string_equal(jstr(e, "queue"), queue);
    assert_string_equal(jstr(e, "error_class"), eclass);
    if (emsg && strcmp(jstr(e, "error_message"), emsg))
        fail_msg("error_message: want '%s', got '%s'", emsg, jstr(e, "error_message"));
    assert_int_equal(jint(e, "retry_count"), 0);
    assert_string_equal(jstr(e, "failed_at_class"), "Float");
    assert_string_equal(jstr(e, "retried_at_class"), "NilClass");
    assert_true(json_is_true(jget(e, "error")));
    assert_true(json_is_null(jget(e, "error_backtrace")));
}

static void
test_retry_dead_sets_and_ruby_actions(void **state)
{
    (void)state;
    json_t *pr = sk_runf(
        it_srv.url, "push",
        "{s:[{s:s, s:[s]}, {s:s, s:[s, {s:i}]}, {s:s, s:[s]}, {s:s, s:[s], s:i}, {s:s, s:[s], s:b},"
        " {s:s, s:[i], s:s}]}",
        "jobs", "class", "Doomed", "args", "a",     /* A: retried, then killed by Ruby */
        "class", "Flaky", "args", "b", "n", 1,      /* B: retried by Ruby, then succeeds */
        "class", "Flaky", "args", "c",              /* C: likewise */
        "class", "Doomed", "args", "d", "retry", 0, /* D: straight to the dead set */
        "class", "Doomed", "args", "e", "retry", 0, /* E: retry false: dropped */
        "class", "NoSuchJob", "args", 6, "queue", "orphans"); /* F: no handler: NameError */
    const char *A = jid_at(pr, 0), *B = jid_at(pr, 1), *C = jid_at(pr, 2), *D = jid_at(pr, 3),
               *E = jid_at(pr, 4), *F = jid_at(pr, 5);

    it_server *t;
    dray_options o;
    it_opts(&o, &it_srv, "default orphans", 3);
    t = it_new(&o);
    /* F has no handler, so Sidekiq's default backoff (>= 15 s) applies to it */
    dray_class_opts slow = {.backoff = hour};
    assert_int_equal(dray_server_register(t->s, "Doomed", h_doomed, NULL, &slow), 0);
    assert_int_equal(dray_server_register(t->s, "Flaky", h_flaky, NULL, &slow), 0);
    it_go(t);
    if (!it_wait_runs(5, 30))
        fail_msg("dray ran %d of 5 handler jobs", it_rec_total());
    if (!it_wait_rint(it_rc, 4, 10, "ZCARD retry") || !it_wait_rint(it_rc, 1, 10, "ZCARD dead"))
        fail_msg("retry/dead hold %lld/%lld (want 4/1)", it_rint(it_rc, "ZCARD retry"),
                 it_rint(it_rc, "ZCARD dead"));
    /* six attempts, six failures (F counts too, as Sidekiq's NameError) */
    if (!it_wait_rint(it_rc, 6, 10, "GET stat:failed") ||
        !it_wait_rint(it_rc, 6, 10, "GET stat:processed"))
        fail_msg("stats never flushed to 6/6 (now %lld/%lld)", it_rint(it_rc, "GET stat:processed"),
                 it_rint(it_rc, "GET stat:failed"));

    json_t *r = sk_run(it_srv.url, "inspect", NULL);
    json_t *st = jget(r, "stats");
    assert_int_equal(jint(st, "processed"), 6);
    assert_int_equal(jint(st, "failed"), 6);
    assert_int_equal(jint(st, "retry_size"), 4);
    assert_int_equal(jint(st, "dead_size"), 1);
    json_t *retries = jget(r, "retries");
    assert_int_equal(json_array_size(retries), 4);
    json_t *e = entry(retries, A, "RetrySet");
    assert_first_failure(e, "Doomed", "IOError", "disk on fire \xc3\xbc (a)", "default");
    assert_close("RetrySet#at = failed_at + backoff", jnum(e, "failed_at") + 3600.0, jnum(e, "at"),
                 1e-3);
    assert_json_eqn("args", json_pack("[s]", "a"), jget(e, "args"));
    e = entry(retries, B, "RetrySet");
    assert_first_failure(e, "Flaky", "ArgumentError", NULL, "default");
    assert_json_eqn("args", json_pack("[s, {s:i}]", "b", "n", 1), jget(e, "args"));
    entry(retries, C, "RetrySet");
    e = entry(retries, F, "RetrySet");
    assert_first_failure(e, "NoSuchJob", "NameError", NULL, "orphans");
    assert_non_null(strstr(jstr(e, "error_message"), "NoSuchJob"));
    /* Sidekiq's backoff for count 0: 0^4 + 15 + rand(10) * 1 seconds */
    double fa = jnum(e, "failed_at"), at = jnum(e, "at");
    if (at < fa + 15 - 1e-3 || at > fa + 24 + 1e-3)
        fail_msg("RetrySet#at %.3f not in failed_at + [15, 24] (failed_at %.3f)", at, fa);
    json_t *dead = jget(r, "dead");
    assert_int_equal(json_array_size(dead), 1);
    e = entry(dead, D, "DeadSet");
    assert_first_failure(e, "Doomed", "IOError", "disk on fire \xc3\xbc (d)", "default");
    assert_null(jfind(retries, "jid", E));
    assert_null(jfind(dead, "jid", E));
    json_decref(r);

    /* Ruby acts while dray runs: kill two, retry the rest */
    json_decref(sk_runf(it_srv.url, "kill_jid", "{s:s}", "jid", A));
    json_decref(sk_runf(it_srv.url, "kill_jid", "{s:s}", "jid", F));
    json_t *ra = sk_run(it_srv.url, "retry_all", NULL);
    assert_int_equal(jint(ra, "retried"), 2);
    json_decref(ra);
    if (!it_wait_jid_runs(B, 2, 10) || !it_wait_jid_runs(C, 2, 10))
        fail_msg("dray did not run the retried jobs again (runs: B %d, C %d)", it_rec_runs(B),
                 it_rec_runs(C));
    if (!it_wait_rint(it_rc, 8, 10, "GET stat:processed"))
        fail_msg("stat:processed never reached 8 (now %lld)", it_rint(it_rc, "GET stat:processed"));
    /* what dray got back from Ruby's retry: Sidekiq decremented retry_count
     * and kept the error fields; args intact */
    json_t *seen = it_rec_last(B);
    assert_int_equal(jint(seen, "retry_count"), -1);
    assert_string_equal(jstr(seen, "error_class"), "ArgumentError");
    assert_json_eqn("args after Ruby's retry", json_pack("[s, {s:i}]", "b", "n", 1),
                    jget(seen, "args"));
    assert_string_equal(jstr(seen, "queue"), "default");
    json_decref(seen);
    assert_int_equal(it_rec_runs(A), 1);

    r = sk_run(it_srv.url, "inspect", NULL);
    st = jget(r, "stats");
    assert_int_equal(jint(st, "processed"), 8);
    assert_int_equal(jint(st, "failed"), 6);
    assert_int_equal(jint(st, "retry_size"), 0);
    assert_int_equal(jint(st, "dead_size"), 3);
    dead = jget(r, "dead");
    e = entry(dead, A, "DeadSet");
    assert_first_failure(e, "Doomed", "IOError", "disk on fire \xc3\xbc (a)", "default");
    e = entry(dead, F, "DeadSet");
    assert_first_failure(e, "NoSuchJob", "NameError", NULL, "orphans");
    entry(dead, D, "DeadSet");
    json_decref(r);
    dray_server_counts cnt;
    dray_server_counts_get(t->s, &cnt);
    assert_int_equal(cnt.processed, 8);
    assert_int_equal(cnt.failed, 6);
    it_finish(t);
    json_decref(pr);
}

static void
test_perform_in_run_by_dray_scheduler(void **state)
{
    (void)state;
    json_t *a =
        sk_runf(it_srv.url, "perform_in", "{s:s, s:f, s:s, s:[s, {s:[f, s]}]}", "class", "HardJob",
                "interval", 2.0, "queue", "sched", "args", "soon", "x", 1.5, "\xc3\xbc");
    json_t *b = sk_runf(it_srv.url, "perform_at", "{s:s, s:f, s:[i]}", "class", "HardJob", "at",
                        dray_now() + 6.0, "args",
                        2); /* Ruby may take seconds to start on a loaded CI machine */
    json_t *c = sk_runf(it_srv.url, "perform_in", "{s:s, s:f, s:[s]}", "class", "HardJob",
                        "interval", 3600.0, "args", "later");
    const char *ja = jstr(a, "jid"), *jb = jstr(b, "jid"), *jc = jstr(c, "jid");
    /* Ruby's view before dray starts: the payloads and run times */
    json_t *before = sk_run(it_srv.url, "inspect", NULL);
    json_t *sched = jget(before, "scheduled");
    assert_int_equal(json_array_size(sched), 3);

    it_server *t;
    dray_options o;
    it_opts(&o, &it_srv, "sched default", 2);
    t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "HardJob", it_h_record, NULL, NULL), 0);
    it_go(t);
    if (!it_wait_runs(2, 30))
        fail_msg("dray's scheduler ran %d of the 2 due jobs", it_rec_total());
    const char *jids[2] = {ja, jb};
    for (int i = 0; i < 2; i++) {
        json_t *ruby = entry(sched, jids[i], "ScheduledSet");
        json_t *seen = it_rec_first(jids[i]);
        assert_int_equal(it_rec_runs(jids[i]), 1);
        /* dray refreshed enqueued_at at the move, after the run time */
        double enq = jnum(seen, "enqueued_at");
        if (enq < jnum(ruby, "at") - 1e-6)
            fail_msg("enqueued_at %.6f is before the run time %.6f", enq, jnum(ruby, "at"));
        assert_true(json_is_real(jget(seen, "enqueued_at")));
        /* and changed nothing else */
        json_object_del(seen, "enqueued_at");
        assert_json_eq("scheduled job as run vs as Ruby wrote it", jget(ruby, "item"), seen);
        json_decref(seen);
    }
    assert_int_equal(it_rec_runs(jc), 0);
    json_t *after = sk_run(it_srv.url, "inspect", NULL);
    assert_int_equal(json_array_size(jget(after, "scheduled")), 1);
    assert_string_equal(jstr(json_array_get(jget(after, "scheduled"), 0), "jid"), jc);
    assert_int_equal(jint(jget(after, "stats"), "enqueued"), 0);
    json_decref(after);
    it_finish(t);
    json_decref(before);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static int
retry_count_is_one(void *arg)
{
    (void)arg;
    redisReply *r = test_redis_cmd(it_rc, "ZRANGE retry 0 0");
    int ok = 0;
    if (r->elements == 1) {
        json_t *o = json_loads(r->element[0]->str, 0, NULL);
        ok = json_integer_value(json_object_get(o, "retry_count")) == 1;
        json_decref(o);
    }
    freeReplyObject(r);
    return ok;
}

static void
test_dray_moved_retry_seen_by_ruby(void **state)
{
    (void)state;
    it_server *t;
    dray_options o;
    it_opts(&o, &it_srv, "default", 2);
    t = it_new(&o);
    dray_class_opts co = {.backoff = it_quick_then_slow};
    assert_int_equal(dray_server_register(t->s, "Twice", h_keyerror, NULL, &co), 0);
    it_go(t);
    json_t *pr = sk_runf(it_srv.url, "push", "{s:[{s:s, s:[s, f], s:{s:s}}]}", "jobs", "class",
                         "Twice", "args", "k", 0.25, "trace", "id", "t-1");
    const char *jid = jid_at(pr, 0);
    /* fail, retry after 0.3 s (moved by dray's scheduler), fail again */
    if (!test_wait_until(retry_count_is_one, NULL, 10))
        fail_msg("the retry never came back with retry_count 1 (runs: %d)", it_rec_runs(jid));
    assert_int_equal(it_rec_runs(jid), 2);
    json_t *first = it_rec_first(jid), *second = it_rec_last(jid);
    assert_true(jnum(second, "enqueued_at") > jnum(first, "enqueued_at"));
    assert_int_equal(jint(second, "retry_count"), 0);
    assert_string_equal(jstr(second, "error_class"), "KeyError");

    json_t *r = sk_run(it_srv.url, "inspect", NULL);
    json_t *retries = jget(r, "retries");
    assert_int_equal(json_array_size(retries), 1);
    json_t *e = entry(retries, jid, "RetrySet");
    assert_string_equal(jstr(e, "klass"), "Twice");
    assert_string_equal(jstr(e, "queue"), "default");
    assert_string_equal(jstr(e, "error_class"), "KeyError");
    assert_string_equal(jstr(e, "error_message"), "key not found: :x");
    assert_int_equal(jint(e, "retry_count"), 1);
    assert_string_equal(jstr(e, "failed_at_class"), "Float");
    assert_string_equal(jstr(e, "retried_at_class"), "Float");
    double fa = jnum(e, "failed_at"), ra = jnum(e, "retried_at");
    assert_close("failed_at kept from the first failure", jnum(second, "failed_at"), fa, 0);
    assert_true(ra > fa);
    assert_close("RetrySet#at = retried_at + backoff", ra + 3600.0, jnum(e, "at"), 0.01);
    assert_true(json_is_true(jget(e, "error")));
    assert_json_eqn("args", json_pack("[s, f]", "k", 0.25), jget(e, "args"));
    assert_json_eqn("custom field", json_pack("{s:s}", "id", "t-1"),
                    jget(jget(e, "item"), "trace"));
    assert_json_eq("created_at", jget(first, "created_at"), jget(jget(e, "item"), "created_at"));
    json_decref(r);

    /* SortedEntry#retry on it: back to the queue with retry_count 0, dray
     * runs it, it fails again and returns with retry_count 1 and a newer
     * retried_at */
    json_decref(sk_runf(it_srv.url, "retry_jid", "{s:s}", "jid", jid));
    if (!it_wait_jid_runs(jid, 3, 10))
        fail_msg("dray did not run the job Ruby retried");
    json_t *third = it_rec_last(jid);
    assert_int_equal(jint(third, "retry_count"), 0);
    json_decref(third);
    if (!test_wait_until(retry_count_is_one, NULL, 10))
        fail_msg("the job did not come back to the retry set");
    r = sk_run(it_srv.url, "inspect", NULL);
    e = entry(jget(r, "retries"), jid, "RetrySet");
    assert_int_equal(jint(e, "retry_count"), 1);
    assert_true(jnum(e, "retried_at") > ra);
    assert_close("failed_at unchanged", fa, jnum(e, "failed_at"), 0);
    json_decref(r);
    it_finish(t);
    json_decref(first);
    json_decref(second);
    json_decref(pr);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retry_dead_sets_and_ruby_actions, it_each_setup,
                                        it_each_teardown),
        cmocka_unit_test_setup_teardown(test_perform_in_run_by_dray_scheduler, it_each_setup,
                                        it_each_teardown),
        cmocka_unit_test_setup_teardown(test_dray_moved_retry_seen_by_ruby, it_each_setup,
                                        it_each_teardown),
    };
    return test_exit_code(cmocka_run_group_tests(tests, it_setup, it_teardown));
}
