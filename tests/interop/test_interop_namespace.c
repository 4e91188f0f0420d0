/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Namespaced interop (Sidekiq 6's redis-namespace, `ns:` key prefix) with
 * real Sidekiq 6.4 and Debian's ruby-redis-namespace; skipped, with the
 * reason printed, when that library is missing. dray's `ns` option and
 * Sidekiq's `namespace:` must name the same keys, the process registry
 * included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "interop_support.h"

#define NS "myapp"

/* it_each_setup, then Sidekiq in namespace NS. */
static int
ns_each_setup(void **state)
{
    it_each_setup(state);
    sk_set_namespace(NS);
    return 0;
}

static void
test_namespace_producer(void **state)
{
    (void)state;
    dray_client *c;
    assert_int_equal(it_client_new(NS, &c), 0);
    dray_job *now, *later;
    assert_int_equal(dray_job_new("NsJob", json_pack("[s, f]", "\xc3\xbc", 1.5), &now), 0);
    assert_int_equal(dray_job_new("NsLater", json_pack("[i]", 2), &later), 0);
    dray_push_opts pq = {.queue = "nsq"}, pin = {.in = 300};
    assert_int_equal(dray_client_push_job(c, now, &pq), 0);
    assert_int_equal(dray_client_push_job(c, later, &pin), 0);
    dray_client_free(c);
    /* the keys carry the prefix, and only the prefixed keys exist */
    assert_int_equal(it_rint(it_rc, "LLEN " NS ":queue:nsq"), 1);
    assert_int_equal(it_rint(it_rc, "SISMEMBER " NS ":queues nsq"), 1);
    assert_int_equal(it_rint(it_rc, "ZCARD " NS ":schedule"), 1);
    assert_int_equal(it_rint(it_rc, "EXISTS queue:nsq queues schedule"), 0);

    json_t *r = sk_runf(it_srv.url, "inspect", "{s:[s]}", "queues", "nsq");
    json_t *st = jget(r, "stats");
    assert_int_equal(jint(st, "enqueued"), 1);
    assert_int_equal(jint(st, "scheduled_size"), 1);
    json_t *rj = jfind(jget(jget(r, "queues"), "nsq"), "jid", dray_job_jid(now));
    if (!rj)
        fail_msg("namespaced Sidekiq::Queue does not list dray's job");
    assert_json_eq("whole payload", dray_job_json(now), jget(rj, "item"));
    rj = jfind(jget(r, "scheduled"), "jid", dray_job_jid(later));
    assert_non_null(rj);
    assert_close("ScheduledSet#at", json_number_value(dray_job_get(later, "at")), jnum(rj, "at"),
                 1e-6);
    json_decref(r);

    /* Ruby's namespaced push lands where a namespaced dray reads */
    json_t *pr = sk_runf(it_srv.url, "push", "{s:[{s:s, s:[s], s:s}]}", "jobs", "class", "FromRuby",
                         "args", "ns", "queue", "rq");
    redisReply *l = test_redis_cmd(it_rc, "LINDEX " NS ":queue:rq 0");
    assert_int_equal(l->type, REDIS_REPLY_STRING);
    dray_job *job;
    assert_int_equal(dray_job_parse(l->str, l->len, 0, &job, NULL, 0), 0);
    assert_string_equal(dray_job_jid(job), json_string_value(json_array_get(jget(pr, "jids"), 0)));
    assert_string_equal(dray_job_class(job), "FromRuby");
    dray_job_free(job);
    freeReplyObject(l);
    json_decref(pr);
    dray_job_free(now);
    dray_job_free(later);
}

static void
test_namespace_server_registry(void **state)
{
    (void)state;
    it_server *t;
    dray_options o;
    it_opts(&o, &it_srv, "nsq", 2);
    o.ns = NS;
    t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "Blocker", it_h_block, NULL, NULL), 0);
    it_go(t);
    json_t *pr = sk_runf(it_srv.url, "push", "{s:[{s:s, s:[s], s:s}]}", "jobs", "class", "Blocker",
                         "args", "ns", "queue", "nsq");
    const char *jid = json_string_value(json_array_get(jget(pr, "jids"), 0));
    if (!it_wait_gate(1, 10))
        fail_msg("dray never ran the job Ruby pushed into the namespace");
    assert_int_equal(it_rint(it_rc, "SISMEMBER " NS ":processes %s", t->identity), 1);
    /* Sidekiq (through redis-namespace) reads the process hash at
     * "<ns>:<identity>"; ProcessSet prunes members whose hash is missing */
    if (!it_wait_rint(it_rc, 1, 5, "HGET " NS ":%s busy", t->identity))
        fail_msg("no heartbeat hash at " NS ":%s (the un-namespaced key %s exists: %lld); "
                 "Sidekiq::ProcessSet cannot see a namespaced dray",
                 t->identity, t->identity, it_rint(it_rc, "EXISTS %s", t->identity));
    json_t *r = sk_run(it_srv.url, "processes", NULL);
    json_t *p = jfind(jget(r, "processes"), "identity", t->identity);
    if (!p)
        fail_msg("namespaced Sidekiq::ProcessSet does not list dray");
    assert_int_equal(jint(p, "busy"), 1);
    assert_int_equal(jint(p, "concurrency"), 2);
    json_t *w = json_array_get(jget(r, "workers"), 0);
    assert_non_null(w);
    assert_string_equal(jstr(jget(w, "payload"), "jid"), jid);
    json_decref(r);

    /* remote quiet and stop through the namespaced signals list */
    json_decref(
        sk_runf(it_srv.url, "signal", "{s:s, s:s}", "identity", t->identity, "sig", "quiet"));
    char quiet_key[300];
    snprintf(quiet_key, sizeof quiet_key, NS ":%s", t->identity);
    if (!it_wait_quiet(quiet_key, 10))
        fail_msg("dray did not go quiet on Process#quiet! in the namespace");
    it_gate_release();
    json_decref(
        sk_runf(it_srv.url, "signal", "{s:s, s:s}", "identity", t->identity, "sig", "stop"));
    it_wait_done(t, 15);
    json_t *st = sk_run(it_srv.url, "stats", NULL);
    assert_int_equal(jint(st, "processed"), 1);
    assert_int_equal(jint(st, "processes_size"), 0);
    json_decref(st);
    it_finish(t);
    json_decref(pr);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_namespace_producer, ns_each_setup, it_each_teardown),
        cmocka_unit_test_setup_teardown(test_namespace_server_registry, ns_each_setup,
                                        it_each_teardown),
    };
    return test_exit_code(cmocka_run_group_tests(tests, it_setup, it_teardown));
}
