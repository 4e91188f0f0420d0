/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The harness's dray server on a thread, and its producer side (harness.h). */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

void
test_options(dray_options *o, const char *queues, int concurrency)
{
    dray_options_init(o);
    o->redis_url = test_srv.url;
    o->queues = queues;
    o->concurrency = concurrency;
    o->heartbeat_s = 1;
    o->poll_interval_s = 0.2;
    o->shutdown_timeout_s = 5;
    o->log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_ERROR;
}

void
test_server_new(test_running *r, const dray_options *o)
{
    char err[256];
    memset(r, 0, sizeof *r);
    if (dray_server_new(o, &r->s, err, sizeof err))
        fail_msg("server_new: %s", err);
}

/* Thread body: run the server, keep its return code, then say it is done. */
static void *
run_main(void *arg)
{
    test_running *r = arg;
    r->rc = dray_server_run(r->s);
    atomic_store(&r->done, 1);
    return NULL;
}

void
test_server_go(test_running *r)
{
    assert_int_equal(pthread_create(&r->th, NULL, run_main, r), 0);
}

void
test_server_stop(test_running *r)
{
    dray_server_stop(r->s);
    pthread_join(r->th, NULL);
}

void
test_server_finish(test_running *r)
{
    test_server_stop(r);
    assert_int_equal(r->rc, 0);
    dray_server_free(r->s);
    r->s = NULL;
}

int
test_server_done(void *r)
{
    return atomic_load(&((test_running *)r)->done);
}

int
test_h_count(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    atomic_fetch_add((atomic_int *)ud, 1);
    return 0;
}

void
test_seen_add(const test_seen *t, const dray_job *job)
{
    json_int_t i = json_integer_value(json_array_get(dray_job_args(job), 0));
    if (i >= 0 && i < t->n)
        atomic_fetch_add(&t->runs[i], 1);
    atomic_fetch_add(t->total, 1);
}

int
test_h_seen(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    test_seen_add(ud, job);
    return 0;
}

int
test_h_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    return dray_result_fail(res, ud ? (const char *)ud : "RuntimeError", "always fails");
}

int
test_h_fail_lines(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    if (dray_result_backtrace_add(res, "parse.c:12:in `parse_row'") ||
        dray_result_backtrace_add(res, "import.c:40:in `import'") ||
        dray_result_backtrace_add(res, "main.c:7:in `main'"))
        return dray_result_fail(res, "NoMemory", "backtrace lines not kept");
    if (ud)
        atomic_fetch_add((atomic_int *)ud, 1);
    return dray_result_fail(res, "ParseError", "bad row");
}

double
test_backoff_kill(const dray_job *job, int count, void *ud)
{
    (void)job;
    (void)count;
    (void)ud;
    return DRAY_BACKOFF_KILL;
}

dray_client *
test_client(const char *ns)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    o.ns = ns;
    dray_client *c;
    char err[256];
    if (dray_client_new(&o, &c, err, sizeof err))
        fail_msg("client_new: %s", err);
    return c;
}

dray_api *
test_api(const char *ns)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    o.ns = ns;
    dray_api *api;
    char err[256];
    if (dray_api_new(&o, &api, err, sizeof err))
        fail_msg("api: %s", err);
    return api;
}

void
test_push_job(const char *klass, const char *queue, json_t *args_steal, const char *extra_json)
{
    dray_client *c = test_client(NULL);
    dray_push_opts po = {.queue = queue};
    if (extra_json)
        po.extra = json_loads(extra_json, 0, NULL);
    int e = dray_client_push(c, klass, args_steal, &po, NULL);
    if (e)
        fail_msg("push: %s", dray_client_errstr(c));
    json_decref(po.extra);
    json_decref(args_steal);
    dray_client_free(c);
}

int
test_push_arg(dray_client *c, const char *klass, int i)
{
    json_t *args = json_pack("[i]", i);
    int e = dray_client_push(c, klass, args, NULL, NULL);
    json_decref(args);
    return e;
}
