/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Server interop with real Sidekiq 6.4 (issue 3): jobs pushed by Ruby run in
 * an embedded dray server with their args intact; Sidekiq::ProcessSet,
 * Workers and Stats see the dray process as a Sidekiq process; remote
 * quiet!/stop! through <identity>-signals quiet and stop it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "interop_support.h"

static const char *HARD_ARGS =
    "[1, \"two\", 3.5, null, true, {\"k\": [1, {\"z\": \"\xc3\xbc\"}]},"
    " \"na\xc3\xafve caf\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
    "\xf0\x9f\x9a\x80\","
    " -42, 1.0e-7, 12345678901234, -0.0, 0.30000000000000004, 1e300, [[[]]], {}]";

static void
test_sidekiq_jobs_run_in_dray(void **state)
{
    (void)state;
    /* Ruby pushes first (dray finds them waiting), then more while it runs */
    json_t *p1 = sk_runf(it_srv.url, "push", "{s:[{s:s, s:o, s:s, s:{s:i}}, {s:s, s:b, s:o}]}",
                         "jobs", "class", "HardJob", "args", it_loads(HARD_ARGS), "queue",
                         "critical", "ctx", "tenant", 7, "class", "Billing::InvoiceJob",
                         "use_class", 1, "args", it_loads("[\"inv\", 42, 2.5]"));
    json_t *b1 = sk_runf(it_srv.url, "push_bulk", "{s:{s:s, s:[[i], [f], [s], [{s:[n]}]]}}", "item",
                         "class", "HardJob", "args", 1, 0.5, "x", "k");

    it_server *t;
    dray_options o;
    it_opts(&o, &it_srv, "critical,2 default", 4);
    t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "HardJob", it_h_record, NULL, NULL), 0);
    assert_int_equal(dray_server_register(t->s, "Billing::InvoiceJob", it_h_record, NULL, NULL), 0);
    it_go(t);
    json_t *p2 = sk_runf(it_srv.url, "push", "{s:[{s:s, s:o}]}", "jobs", "class", "HardJob", "args",
                         it_loads("[\"while running\", {\"n\": [1, 2, 3]}]"));
    if (!it_wait_runs(7, 15))
        fail_msg("dray ran %d of the 7 jobs Sidekiq pushed", it_rec_total());

    /* args (and every other field) intact: compare with Ruby's own reading
     * of what it pushed, by jid */
    json_t *expect = json_array();
    json_array_extend(expect, jget(p1, "jids"));
    json_array_extend(expect, jget(b1, "jids"));
    json_array_extend(expect, jget(p2, "jids"));
    assert_int_equal(json_array_size(expect), 7);
    size_t i;
    json_t *jv;
    json_array_foreach(expect, i, jv)
    {
        const char *jid = json_string_value(jv);
        if (it_rec_runs(jid) != 1)
            fail_msg("job %s ran %d times in dray (want 1)", jid, it_rec_runs(jid));
    }
    json_t *seen = it_rec_first(json_string_value(json_array_get(jget(p1, "jids"), 0)));
    json_t *want_args = it_loads(HARD_ARGS);
    assert_json_eq("args of a Ruby job as the dray handler saw them", want_args,
                   jget(seen, "args"));
    assert_string_equal(jstr(seen, "queue"), "critical");
    assert_string_equal(jstr(seen, "class"), "HardJob");
    assert_json_eqn("custom field", json_pack("{s:i}", "tenant", 7), jget(seen, "ctx"));
    json_decref(want_args);
    json_decref(seen);
    seen = it_rec_first(json_string_value(json_array_get(jget(p1, "jids"), 1)));
    assert_string_equal(jstr(seen, "queue"), "critical"); /* from sidekiq_options */
    assert_int_equal(jint(seen, "retry"), 3);
    assert_json_eqn("worker class args", json_pack("[s, i, f]", "inv", 42, 2.5),
                    jget(seen, "args"));
    json_decref(seen);
    static const char *bulk_args[] = {"[1]", "[0.5]", "[\"x\"]", "[{\"k\": [null]}]"};
    for (int k = 0; k < 4; k++) {
        seen = it_rec_first(json_string_value(json_array_get(jget(b1, "jids"), (size_t)k)));
        json_t *w = it_loads(bulk_args[k]);
        assert_json_eq("push_bulk args", w, jget(seen, "args"));
        assert_string_equal(jstr(seen, "queue"), "default");
        json_decref(w);
        json_decref(seen);
    }

    /* Sidekiq::Stats after dray's heartbeat flushed the counters */
    if (!it_wait_rint(it_rc, 7, 10, "GET stat:processed"))
        fail_msg("stat:processed never reached 7 (now %lld)", it_rint(it_rc, "GET stat:processed"));
    json_t *st = sk_run(it_srv.url, "stats", NULL);
    assert_int_equal(jint(st, "processed"), 7);
    assert_int_equal(jint(st, "failed"), 0);
    assert_int_equal(jint(st, "enqueued"), 0);
    /* the daily keys too (Stats::History, the Web UI's graph) */
    assert_int_equal(jint(st, "history_processed_today"), 7);
    assert_int_equal(jint(st, "history_failed_today"), 0);
    dray_server_counts cnt;
    dray_server_counts_get(t->s, &cnt);
    assert_int_equal(cnt.processed, 7);
    assert_int_equal(cnt.failed, 0);
    json_decref(st);
    it_finish(t);
    json_decref(expect);
    json_decref(p1);
    json_decref(p2);
    json_decref(b1);
}

static void
test_process_set_workers_quiet_stop(void **state)
{
    (void)state;
    it_server *t;
    dray_options o;
    it_opts(&o, &it_srv, "critical,2 default,1 low", 3);
    o.tag = "interop-app";
    o.labels = "blue,canary";
    t = it_new(&o);
    assert_int_equal(dray_server_register(t->s, "Blocker", it_h_block, NULL, NULL), 0);
    double t0 = dray_now();
    it_go(t);
    json_t *pr = sk_runf(it_srv.url, "push", "{s:[{s:s, s:[s, i], s:s}]}", "jobs", "class",
                         "Blocker", "args", "hold", 1, "queue", "default");
    const char *jid = json_string_value(json_array_get(jget(pr, "jids"), 0));
    if (!it_wait_gate(1, 10))
        fail_msg("dray never started the Blocker job");
    /* the heartbeat after the job started publishes busy 1 */
    if (!it_wait_rint(it_rc, 1, 10, "HGET %s busy", t->identity))
        fail_msg("heartbeat never published busy 1");

    json_t *r = sk_run(it_srv.url, "processes", NULL);
    json_t *procs = jget(r, "processes");
    assert_int_equal(json_array_size(procs), 1);
    json_t *p = jfind(procs, "identity", t->identity);
    if (!p)
        fail_msg("Sidekiq::ProcessSet does not list dray's identity %s", t->identity);
    char host[256];
    assert_int_equal(gethostname(host, sizeof host), 0);
    const char *dyno = getenv("DYNO");
    assert_string_equal(jstr(p, "hostname"), dyno && *dyno ? dyno : host);
    assert_int_equal(jint(p, "pid"), (long long)getpid());
    assert_int_equal(jint(p, "concurrency"), 3);
    assert_json_eqn("queues", json_pack("[sss]", "critical", "default", "low"), jget(p, "queues"));
    assert_string_equal(jstr(p, "tag"), "interop-app");
    assert_json_eqn("labels", json_pack("[ss]", "blue", "canary"), jget(p, "labels"));
    assert_int_equal(jint(p, "busy"), 1);
    assert_string_equal(jstr(p, "quiet"), "false");
    assert_false(json_is_true(jget(p, "stopping")));
    assert_string_equal(jstr(p, "started_at_class"), "Float");
    assert_close("started_at", t0, jnum(p, "started_at"), 2.0);
    double beat = jnum(p, "beat");
    if (beat < t0 - 1 || beat > dray_now() + 1)
        fail_msg("beat %.3f is not a recent epoch time", beat);
    assert_true(jint(p, "rss") > 0);
    assert_int_equal(jint(r, "processes_size"), 1);
    assert_int_equal(jint(r, "total_concurrency"), 3);
    assert_int_equal(jint(r, "workers_size"), 1);
    assert_int_equal(jint(r, "stats_workers_size"), 1);
    assert_int_equal(jint(r, "stats_processes_size"), 1);

    /* Sidekiq::Workers: the running job */
    json_t *ws = jget(r, "workers");
    assert_int_equal(json_array_size(ws), 1);
    json_t *w = json_array_get(ws, 0);
    assert_string_equal(jstr(w, "process"), t->identity);
    assert_true(strlen(jstr(w, "tid")) > 0);
    assert_string_equal(jstr(w, "queue"), "default");
    assert_string_equal(jstr(w, "run_at_class"), "Integer");
    long long run_at = jint(w, "run_at");
    assert_true(run_at >= (long long)t0 - 1 && run_at <= (long long)dray_now() + 1);
    json_t *payload = jget(w, "payload");
    assert_string_equal(jstr(payload, "class"), "Blocker");
    assert_string_equal(jstr(payload, "jid"), jid);
    assert_string_equal(jstr(payload, "queue"), "default");
    assert_json_eqn("payload args", json_pack("[s, i]", "hold", 1), jget(payload, "args"));
    json_decref(r);

    /* Process#quiet!: TSTP through <identity>-signals */
    json_t *q =
        sk_runf(it_srv.url, "signal", "{s:s, s:s}", "identity", t->identity, "sig", "quiet");
    json_decref(q);
    if (!it_wait_quiet(t->identity, 10))
        fail_msg("dray did not go quiet after Process#quiet!");
    r = sk_run(it_srv.url, "processes", NULL);
    p = jfind(jget(r, "processes"), "identity", t->identity);
    assert_non_null(p);
    assert_string_equal(jstr(p, "quiet"), "true");
    assert_true(json_is_true(jget(p, "stopping")));
    assert_int_equal(jint(p, "busy"), 1); /* the running job keeps running */
    json_decref(r);
    /* quiet: a new job is not taken */
    json_t *pr2 =
        sk_runf(it_srv.url, "push", "{s:[{s:s, s:[]}]}", "jobs", "class", "Blocker", "args");
    json_decref(pr2);

    /* Process#stop!: TERM; let the held job finish so the stop is clean */
    it_gate_release();
    json_t *s2 =
        sk_runf(it_srv.url, "signal", "{s:s, s:s}", "identity", t->identity, "sig", "stop");
    json_decref(s2);
    it_wait_done(t, 15);
    assert_int_equal(it_rec_total(), 1);
    assert_int_equal(it_rint(it_rc, "LLEN queue:default"), 1);
    r = sk_run(it_srv.url, "processes", NULL);
    assert_int_equal(json_array_size(jget(r, "processes")), 0);
    assert_int_equal(jint(r, "processes_size"), 0);
    assert_int_equal(json_array_size(jget(r, "workers")), 0);
    json_decref(r);
    json_t *st = sk_run(it_srv.url, "stats", NULL);
    assert_int_equal(jint(st, "processed"), 1);
    assert_int_equal(jint(st, "enqueued"), 1);
    json_decref(st);
    it_finish(t);
    json_decref(pr);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sidekiq_jobs_run_in_dray, it_each_setup,
                                        it_each_teardown),
        cmocka_unit_test_setup_teardown(test_process_set_workers_quiet_stop, it_each_setup,
                                        it_each_teardown),
    };
    return test_exit_code(cmocka_run_group_tests(tests, it_setup, it_teardown));
}
