/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * The module ABI and loader against a real redis-server, with the fixture
 * modules of tests/modules (paths come in as MOD_<NAME>): every hook point
 * of "record", the "fetchy" fetch provider, and each refusal with its
 * message. Modules are process-wide and never unloaded in production; each
 * test here ends with dray__modules_reset() so the next starts clean.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "module_internal.h"
#include "harness.h"

/* ---- handlers --------------------------------------------------------------- */

typedef struct seen {
    atomic_int ok, defer, skip, hookfail, spawn, child, fail, block_running, block_done;
    atomic_int defer_deferred; /* the "deferred" field the Defer handler saw */
    atomic_int defer_retry;    /* its retry_count */
    atomic_int child_stamped;  /* Child passed through the push hooks */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int release;
} seen;

static seen S;

static int
h_count(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    atomic_int *c = ud;
    if (c == &S.defer) {
        atomic_store(&S.defer_deferred, (int)json_integer_value(dray_job_get(job, "deferred")));
        atomic_store(&S.defer_retry, dray_job_retry_count(job));
    }
    if (c == &S.child && json_is_string(dray_job_get(job, "stamped")))
        atomic_store(&S.child_stamped, 1);
    atomic_fetch_add(c, 1);
    return 0;
}

static int
h_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)ud;
    atomic_fetch_add(&S.fail, 1);
    return dray_result_fail(res, "ArgumentError", "always fails");
}

static int
h_block(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    pthread_mutex_lock(&S.mu);
    atomic_fetch_add(&S.block_running, 1);
    while (!S.release)
        pthread_cond_wait(&S.cond, &S.mu);
    pthread_mutex_unlock(&S.mu);
    atomic_fetch_add(&S.block_done, 1);
    return 0;
}

static void
release_blocked(void)
{
    pthread_mutex_lock(&S.mu);
    S.release = 1;
    pthread_cond_broadcast(&S.cond);
    pthread_mutex_unlock(&S.mu);
}

/* ---- servers ---------------------------------------------------------------- */

static dray_server *
server(int conc)
{
    dray_options o;
    test_options(&o, "default", conc);
    char err[256];
    dray_server *s;
    if (dray_server_new(&o, &s, err, sizeof err))
        fail_msg("server_new: %s", err);
    static const struct {
        const char *klass;
        atomic_int *counter;
    } counted[] = {{"Ok", &S.ok},       {"Defer", &S.defer},
                   {"Skip", &S.skip},   {"HookFail", &S.hookfail},
                   {"Spawn", &S.spawn}, {"Child", &S.child}};
    for (size_t i = 0; i < sizeof counted / sizeof *counted; i++)
        assert_int_equal(
            dray_server_register(s, counted[i].klass, h_count, counted[i].counter, NULL), 0);
    assert_int_equal(dray_server_register(s, "Fail", h_fail, NULL, NULL), 0);
    assert_int_equal(dray_server_register(s, "Block", h_block, NULL, NULL), 0);
    return s;
}

static test_running *live; /* a server still running when an assertion failed */

static void
go(test_running *r)
{
    test_server_go(r);
    live = r;
}

static void
stop(test_running *r)
{
    test_server_stop(r);
    live = NULL;
}

static void
load_ok(dray_server *s, const char *path)
{
    char err[512];
    int e = dray_server_load_module(s, path, err, sizeof err);
    if (e)
        fail_msg("load %s: %s (%s)", path, err, dray_err_name(e));
}

/* Load and expect a refusal whose message contains every fragment. */
static void
load_refused(dray_server *s, const char *path, int want_rc, ...)
{
    char err[512];
    int e = dray_server_load_module(s, path, err, sizeof err);
    if (e != want_rc)
        fail_msg("load %s: test_rc %s, want %s (%s)", path, dray_err_name(e),
                 dray_err_name(want_rc), err);
    assert_string_equal(err, dray_server_errstr(s));
    va_list ap;
    va_start(ap, want_rc);
    for (const char *frag; (frag = va_arg(ap, const char *));)
        if (!strstr(err, frag))
            fail_msg("refusal of %s lacks \"%s\": %s", path, frag, err);
    va_end(ap);
}

/* ---- Redis helpers ------------------------------------------------------------ */

/* Index of the first call equal to `what` in rec:calls at or after `from`, or -1. */
static long
call_at(const char *what, long from)
{
    redisReply *r = test_redis_cmd(test_rc, "LRANGE rec:calls 0 -1");
    long found = -1;
    for (size_t i = (size_t)from; i < r->elements && found < 0; i++)
        if (!strcmp(r->element[i]->str, what))
            found = (long)i;
    freeReplyObject(r);
    return found;
}

static int
has_call(void *what)
{
    return call_at(what, 0) >= 0;
}

static void
dump_calls(void)
{
    redisReply *r = test_redis_cmd(test_rc, "LRANGE rec:calls 0 -1");
    for (size_t i = 0; i < r->elements; i++)
        fprintf(stderr, "  %zu %s\n", i, r->element[i]->str);
    freeReplyObject(r);
}

/* Calls a, b, c... appear in this order (not necessarily adjacent). */
static void
assert_order(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    long at = call_at(first, 0);
    const char *prev = first;
    if (at < 0) {
        dump_calls();
        fail_msg("call %s missing", first);
    }
    for (const char *next; (next = va_arg(ap, const char *));) {
        long n = call_at(next, at + 1);
        if (n < 0) {
            dump_calls();
            fail_msg("call %s missing after %s", next, prev);
        }
        at = n;
        prev = next;
    }
    va_end(ap);
}

static int
workers_exited(void *p)
{
    dray_server *s = p;
    for (int i = 0; i < s->opts.concurrency; i++)
        if (s->workers[i].started && !atomic_load(&s->workers[i].exited))
            return 0;
    return 1;
}

static void
push_job(dray_client *c, const char *klass, const char *arg, int retry)
{
    dray_push_opts po = {.retry = retry};
    json_t *args = json_pack("[s]", arg);
    int e = dray_client_push(c, klass, args, &po, NULL);
    json_decref(args);
    if (e)
        fail_msg("push %s: %s", klass, dray_client_errstr(c));
}

/* ---- fixtures --------------------------------------------------------------------- */

static int
setup(void **state)
{
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.cond, NULL);
    return test_setup(state);
}

static int
each_setup(void **state)
{
    test_flush(state);
    pthread_mutex_destroy(&S.mu);
    pthread_cond_destroy(&S.cond);
    memset(&S, 0, sizeof S);
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.cond, NULL);
    unsetenv("DRAY_MODULES");
    unsetenv("DRAY_TEST_MISFIT_FREED");
    return 0;
}

static void dump_calls(void);

static int
each_teardown(void **state)
{
    (void)state;
    if (live) { /* the test failed mid-run: stop it before dropping the modules */
        dump_calls();
        test_log_print();
        release_blocked();
        stop(live);
    }
    dray__modules_reset();
    dray_log_set_sink(NULL, NULL);
    assert_true(dray__hooks_push_empty());
    return 0;
}

/* ---- push hooks ------------------------------------------------------------------- */

static void
test_push_hooks(void **state)
{
    (void)state;
    dray_server *s = server(1);
    assert_int_equal(dray_server_set_config(s, "record.list", "rec:calls"), 0);
    load_ok(s, MOD_RECORD);
    assert_true(has_call("init@main")); /* a Redis call from init, on the loading thread */

    dray_client *c = test_client(NULL);
    push_job(c, "Ok", "x", 0);
    /* rewrite stamped the job that was written */
    redisReply *r = test_redis_cmd(test_rc, "LINDEX queue:default 0");
    json_t *o = json_loads(r->str, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "stamped")), "record");
    json_decref(o);
    freeReplyObject(r);

    /* dedup drops the second push of the same argument: nothing written */
    push_job(c, "Dup", "a", 0);
    json_t *args = json_pack("[s]", "a");
    char jid[DRAY_JID_BYTES];
    assert_int_equal(dray_client_push(c, "Dup", args, NULL, jid), DRAY_EDROPPED);
    json_decref(args);
    assert_non_null(strstr(dray_client_errstr(c), "dropped"));
    assert_int_equal(test_int("LLEN queue:default"), 2);
    assert_true(has_call("drop:a@client"));

    /* a push hook can fail the push with its message and code */
    args = json_pack("[]");
    assert_int_equal(dray_client_push(c, "Refuse", args, NULL, NULL), DRAY_EINVAL);
    json_decref(args);
    assert_string_equal(dray_client_errstr(c),
                        "module record.rewrite: class Refuse is not welcome");
    assert_int_equal(test_int("LLEN queue:default"), 2);

    /* bulk: hooks run per job, with the connection idle between chunks */
    json_t *list = json_pack("[[s],[s],[s],[s]]", "b", "b", "c", "a");
    size_t pushed = 0;
    assert_int_equal(dray_client_push_bulk(c, "Dup", list, NULL, NULL, &pushed), 0);
    json_decref(list);
    assert_int_equal(pushed, 2);
    assert_int_equal(test_int("LLEN queue:default"), 4);

    /* scheduled pushes pass through the hooks too */
    dray_push_opts po = {.in = 3600};
    args = json_pack("[]");
    assert_int_equal(dray_client_push(c, "Ok", args, &po, NULL), 0);
    json_decref(args);
    r = test_redis_cmd(test_rc, "ZRANGE schedule 0 0");
    assert_int_equal(r->elements, 1);
    assert_non_null(strstr(r->element[0]->str, "\"stamped\":\"record\""));
    freeReplyObject(r);
    dray_client_free(c);
    dray_server_free(s);
}

/* ---- perform, retry, death, tick, lifecycle, enqueue --------------------------- */

static void
test_server_hooks(void **state)
{
    (void)state;
    test_log_reset(DRAY_LOG_DEBUG);
    dray_log_set_sink(test_log_capture, NULL);
    static test_running r; /* static: the teardown may stop it after a failed assertion */
    memset(&r, 0, sizeof r);
    r.s = server(1); /* one worker: hook order within and across jobs is deterministic */
    dray_log_set_level(DRAY_LOG_INFO);
    load_ok(r.s, MOD_RECORD);
    dray_client *c = test_client(NULL);
    push_job(c, "Ok", "o", 0);
    push_job(c, "Skip", "s", 0);
    push_job(c, "Defer", "d", 0);
    push_job(c, "HookFail", "h", 0);
    push_job(c, "Spawn", "p", 0);
    push_job(c, "Fail", "f", DRAY_RETRY_ZERO); /* no retry: straight to the dead set */
    dray_client_free(c);
    go(&r);
    assert_true(test_wait_until(test_flag_set, &S.child, 20));
    assert_true(test_wait_until(test_flag_set, &S.defer, 20));
    assert_true(test_wait_int_at_least(1, 20, "ZCARD retry"));
    assert_true(test_wait_int_at_least(1, 20, "ZCARD dead"));
    assert_true(test_wait_until(has_call, "after-outer:Child:0@worker", 20));
    /* ticks: EVALSHA through the module's script; survives SCRIPT FLUSH */
    assert_true(test_wait_int_at_least(1, 10, "GET rec:ticks"));
    freeReplyObject(test_redis_cmd(test_rc, "SCRIPT FLUSH"));
    long long ticks = test_int("GET rec:ticks") + 1;
    assert_true(test_wait_int_at_least(ticks, 10, "GET rec:ticks"));
    stop(&r);
    assert_int_equal(r.rc, 0);

    /* before in chain order, after in reverse */
    assert_order("before-outer:Ok@worker", "before-inner:Ok@worker", "after-inner:Ok:0@worker",
                 "after-outer:Ok:0@worker", NULL);
    /* SKIP from the first hook: handler not called, no after hook entered */
    assert_int_equal(atomic_load(&S.skip), 0);
    assert_true(call_at("before-outer:Skip@worker", 0) >= 0);
    assert_true(call_at("before-inner:Skip@worker", 0) < 0);
    assert_true(call_at("after-outer:Skip:2@worker", 0) < 0);
    /* DEFER from the inner hook: only outer unwinds (DEFERRED = 3); the job
     * ran later, once, with its retry count unspent and "deferred" 1 */
    assert_order("before-outer:Defer@worker", "after-outer:Defer:3@worker",
                 "before-outer:Defer@worker", "before-inner:Defer@worker",
                 "after-inner:Defer:0@worker", "after-outer:Defer:0@worker", NULL);
    assert_int_equal(atomic_load(&S.defer), 1);
    assert_int_equal(atomic_load(&S.defer_deferred), 1);
    assert_int_equal(atomic_load(&S.defer_retry), -1);
    /* FAIL from the inner hook: the job fails into the retry set; outer sees FAILURE */
    assert_int_equal(atomic_load(&S.hookfail), 0);
    assert_order("before-inner:HookFail@worker", "retry:HookFail:DrayHookError:0:future@worker",
                 "after-outer:HookFail:1@worker", NULL);
    assert_true(call_at("after-inner:HookFail:1@worker", 0) < 0);
    redisReply *rr = test_redis_cmd(test_rc, "ZRANGE retry 0 0");
    json_t *o = json_loads(rr->element[0]->str, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "error_class")), "DrayHookError");
    assert_non_null(strstr(json_string_value(json_object_get(o, "error_message")),
                           "module record.inner: inner hook refuses"));
    json_decref(o);
    freeReplyObject(rr);
    /* death, and a job enqueued by a hook through the client path */
    assert_true(has_call("death:Fail:ArgumentError@worker"));
    assert_true(has_call("spawned:0:24@worker"));
    assert_int_equal(atomic_load(&S.child), 1);
    assert_int_equal(atomic_load(&S.child_stamped), 1);
    assert_true(has_call("push:Child@client"));
    assert_true(has_call("scheduled:0@worker"));
    rr = test_redis_cmd(test_rc, "ZRANGEBYSCORE schedule %f +inf", dray_now() + 3000);
    assert_int_equal(rr->elements, 1);
    assert_non_null(strstr(rr->element[0]->str, "\"class\":\"Later\""));
    assert_non_null(strstr(rr->element[0]->str, "\"stamped\":\"record\""));
    freeReplyObject(rr);
    /* lifecycle: startup (main) before the first tick (heartbeat); quiet then
     * shutdown; nothing registers after init */
    assert_order("startup@main", "tick:ok@heartbeat", NULL);
    assert_order("startup@main", "late-register:ESTATE@main", "redis-time:ok@main",
                 "identity:ok@main", NULL);
    assert_order("quiet@main", "shutdown@main", NULL);
    assert_true(call_at("shutdown@main", call_at("startup@main", 0)) >
                call_at("tick:ok@heartbeat", 0));
    /* the resolved hook order is logged at start */
    dray_log_set_sink(NULL, NULL);
    assert_true(test_log_has("module record 1.0.0 (free) loaded from " MOD_RECORD
                             ": recording to rec:calls (limit 5)"));
    assert_true(test_log_has("module hooks, push: record.rewrite(10) > record.dedup(20)"));
    assert_true(test_log_has("module hooks, perform: record.outer(10) > record.inner(30)"));
    assert_true(test_log_has("module hooks, tick: record(0)"));
    assert_true(test_log_has("[record] ready"));
    dray_server_free(r.s);
}

/* ---- fetch provider ----------------------------------------------------------------- */

static void
test_fetch_provider(void **state)
{
    (void)state;
    static test_running r; /* static: the teardown may stop it after a failed assertion */
    memset(&r, 0, sizeof r);
    r.s = server(2);
    load_ok(r.s, MOD_FETCHY);
    dray_client *c = test_client(NULL);
    for (int i = 0; i < 20; i++)
        push_job(c, "Ok", "f", 0);
    dray_client_free(c);
    /* a dead process left one job in its working list: recover at startup */
    freeReplyObject(test_redis_cmd(test_rc, "RPUSH fetchy:working:gone:1:abcdef %s",
                                   "{\"class\":\"Ok\",\"args\":[\"orphan\"],\"queue\":\"default\","
                                   "\"jid\":\"0123456789abcdef01234567\"}"));
    go(&r);
    assert_true(test_wait_int_at_least(21, 20, "GET fetchy:acked"));
    stop(&r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(atomic_load(&S.ok), 21);
    assert_int_equal(test_int("GET fetchy:fetched"), 21);
    assert_int_equal(test_int("GET fetchy:acked"), 21);
    assert_int_equal(test_int("GET fetchy:recovered"), 1);
    assert_int_equal(test_int("EXISTS fetchy:working:gone:1:abcdef"), 0);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    redisReply *k = test_redis_cmd(test_rc, "KEYS fetchy:working:*");
    assert_int_equal(k->elements, 0);
    freeReplyObject(k);
    assert_int_equal(test_int("SISMEMBER fetchy:threads fetched@worker"), 1);
    assert_int_equal(test_int("SISMEMBER fetchy:threads acked@worker"), 1);
    assert_int_equal(test_int("SISMEMBER fetchy:threads recovered@main"), 1);
    dray_server_free(r.s);
}

/* A job running at shutdown goes back through the provider: bulk_requeue,
 * or requeue one by one when the provider has no bulk call. */
static void
shutdown_requeue(int bulk)
{
    static test_running r; /* static: the teardown may stop it after a failed assertion */
    memset(&r, 0, sizeof r);
    r.s = server(1);
    if (!bulk)
        assert_int_equal(dray_server_set_config(r.s, "fetchy.bulk", "no"), 0);
    assert_int_equal(dray_server_set_config(r.s, "fetchy.unused", "1"), 0);
    load_ok(r.s, MOD_FETCHY);
    dray_client *c = test_client(NULL);
    push_job(c, "Block", "b", 0);
    dray_client_free(c);
    redisReply *before = test_redis_cmd(test_rc, "LINDEX queue:default 0");
    dray_options *o = &r.s->opts;
    o->shutdown_timeout_s = 1;
    go(&r);
    assert_true(test_wait_until(test_flag_set, &S.block_running, 10));
    assert_int_equal(test_int("LLEN queue:default"), 0);
    stop(&r);
    assert_int_equal(r.rc, 0);
    /* back at the head unchanged, out of the working list, not acked */
    redisReply *after = test_redis_cmd(test_rc, "LINDEX queue:default 0");
    assert_string_equal(after->str, before->str);
    freeReplyObject(after);
    freeReplyObject(before);
    assert_int_equal(test_int("LLEN queue:default"), 1);
    assert_int_equal(test_int(bulk ? "GET fetchy:bulk" : "GET fetchy:requeued"), 1);
    assert_int_equal(test_int(bulk ? "SISMEMBER fetchy:threads bulk@main"
                                   : "SISMEMBER fetchy:threads requeued@main"),
                     1);
    redisReply *k = test_redis_cmd(test_rc, "KEYS fetchy:working:*");
    assert_int_equal(k->elements, 0);
    freeReplyObject(k);
    /* the handler finishes later: its outcome is dropped, the unit not acked */
    release_blocked();
    assert_true(test_wait_until(workers_exited, r.s, 10));
    assert_int_equal(atomic_load(&S.block_done), 1);
    assert_int_equal(test_int("GET fetchy:acked"), -1);
    dray_server_free(r.s);
}

static void
test_fetch_requeue_bulk(void **state)
{
    (void)state;
    shutdown_requeue(1);
}

static void
test_fetch_requeue_each(void **state)
{
    (void)state;
    shutdown_requeue(0);
}

/* ---- loading: environment, state ------------------------------------------------ */

static void
test_env_modules(void **state)
{
    (void)state;
    static test_running r; /* static: the teardown may stop it after a failed assertion */
    memset(&r, 0, sizeof r);
    r.s = server(1);
    /* already loaded explicitly: $DRAY_MODULES skips it, loads the other */
    load_ok(r.s, MOD_RECORD);
    setenv("DRAY_MODULES", MOD_RECORD ":" MOD_FETCHY, 1);
    go(&r);
    assert_true(test_wait_until(has_call, "startup@main", 10));
    stop(&r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(test_int("SISMEMBER fetchy:threads recovered@main"), 1);
    /* loading after run started */
    load_refused(r.s, MOD_FETCHY2, DRAY_ESTATE, "before dray_server_run", NULL);
    dray_server_free(r.s);
    dray__modules_reset();

    /* a refusal from $DRAY_MODULES stops dray_server_run with the message */
    setenv("DRAY_MODULES", MOD_MISFIT_NEWER_MINOR, 1);
    r.s = server(1);
    assert_int_equal(dray_server_run(r.s), DRAY_EMODULE);
    char newer[64];
    snprintf(newer, sizeof newer, "newer than this dray's 1.%d", DRAY_ABI_MINOR);
    assert_non_null(strstr(dray_server_errstr(r.s), newer));
    assert_non_null(strstr(dray_server_errstr(r.s), MOD_MISFIT_NEWER_MINOR));
    dray_server_free(r.s);
    unsetenv("DRAY_MODULES");
}

/* ---- refusals ------------------------------------------------------------------ */

static void
test_refuse_not_a_module(void **state)
{
    (void)state;
    dray_server *s = server(1);
    char path[400];
    snprintf(path, sizeof path, "%s/garbage.so", test_srv.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    load_refused(s, path, DRAY_EMODULE, "module ", path, ": not a loadable shared object: ", NULL);
    snprintf(path, sizeof path, "%s/missing.so", test_srv.dir);
    load_refused(s, path, DRAY_EMODULE, path, "cannot open: No such file or directory", NULL);
    load_refused(s, MOD_NOENTRY, DRAY_EMODULE, MOD_NOENTRY,
                 "not a dray module: it does not export dray_module_init", NULL);
    load_refused(s, MOD_MISFIT_NOFILL, DRAY_EMODULE, MOD_MISFIT_NOFILL,
                 "returned without filling its record", NULL);
    dray_server_free(s);
}

static void
test_refuse_versions(void **state)
{
    (void)state;
    dray_server *s = server(1);
    char minor[128], major[128]; /* the ABI versions as this build has them */
    snprintf(minor, sizeof minor,
             "(misfit_newer_minor): built for module ABI 1.%d, newer than this dray's 1.%d",
             DRAY_ABI_MINOR + 1, DRAY_ABI_MINOR);
    snprintf(major, sizeof major,
             "built for module ABI 2.0, but this dray speaks 1.%d; upgrade dray", DRAY_ABI_MINOR);
    load_refused(s, MOD_MISFIT_NEWER_MINOR, DRAY_EMODULE, MOD_MISFIT_NEWER_MINOR, minor, NULL);
    load_refused(s, MOD_MISFIT_NEWER_MAJOR, DRAY_EMODULE, MOD_MISFIT_NEWER_MAJOR, major, NULL);
    char want[128];
    snprintf(want, sizeof want,
             "build signature mismatch: hiredis 99.1 in the module, %d.%d in dray", HIREDIS_MAJOR,
             HIREDIS_MINOR);
    load_refused(s, MOD_MISFIT_BADSIG, DRAY_EMODULE, MOD_MISFIT_BADSIG, "(misfit_badsig)", want,
                 NULL);
    assert_true(dray__hooks_push_empty());
    dray_server_free(s);
}

static void
test_refuse_init_failure(void **state)
{
    (void)state;
    dray_server *s = server(1);
    load_refused(s, MOD_MISFIT_INITFAIL, DRAY_EMODULE, MOD_MISFIT_INITFAIL,
                 "(misfit_initfail) refused to load: setting misfit_initfail.token is not set; ask "
                 "your administrator",
                 NULL);
    /* its staged push hook was dropped, and its userdata freed */
    assert_true(dray__hooks_push_empty());
    assert_non_null(getenv("DRAY_TEST_MISFIT_FREED"));
    load_refused(s, MOD_MISFIT_BADHOOK, DRAY_EMODULE,
                 "(misfit_badhook): invalid registration: hook 'empty' (perform)", NULL);
    load_refused(s, MOD_MISFIT_REQUIRES, DRAY_EMODULE,
                 "(misfit_requires) requires module absent, which is not loaded", NULL);
    /* a setting the module cannot parse: its own code and message */
    assert_int_equal(dray_server_set_config(s, "record.limit", "lots"), 0);
    load_refused(s, MOD_RECORD, DRAY_ECONFIG,
                 "(record) refused to load: setting record.limit: 'lots' is not an integer", NULL);
    assert_int_equal(dray_server_set_config(s, "concurrency", "3"), DRAY_ECONFIG);
    assert_int_equal(dray_server_set_config(s, "Bad.key", "3"), DRAY_ECONFIG);
    assert_int_equal(dray_server_set_config(s, "record.", "3"), DRAY_ECONFIG);
    dray_server_free(s);
}

static void
test_refuse_twice(void **state)
{
    (void)state;
    dray_server *s = server(1);
    load_ok(s, MOD_RECORD);
    load_refused(s, MOD_RECORD, DRAY_EMODULE, "already loaded (module record from " MOD_RECORD ")",
                 NULL);
    /* the same file under another name (by inode) */
    char link[400];
    snprintf(link, sizeof link, "%s/alias.so", test_srv.dir);
    unlink(link);
    assert_int_equal(symlink(MOD_RECORD, link), 0);
    load_refused(s, link, DRAY_EMODULE, link, "already loaded (module record from " MOD_RECORD ")",
                 NULL);
    /* a copy of the file: another inode, but the name is taken */
    char copy[400], cmd[1000];
    snprintf(copy, sizeof copy, "%s/copy.so", test_srv.dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", MOD_RECORD, copy);
    assert_int_equal(system(cmd), 0);
    load_refused(s, copy, DRAY_EMODULE, "a module named record is already loaded from " MOD_RECORD,
                 NULL);
    dray_server_free(s);
}

static void
test_refuse_two_fetchers(void **state)
{
    (void)state;
    dray_server *s = server(1);
    load_ok(s, MOD_FETCHY);
    load_refused(s, MOD_FETCHY2, DRAY_EMODULE, MOD_FETCHY2,
                 "(fetchy2) provides fetch, but module fetchy (" MOD_FETCHY ") already does",
                 "only one fetch provider", NULL);
    /* the first provider is still the one in use */
    assert_true(dray__fetcher_active());
    dray_server_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_hooks, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_server_hooks, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_provider, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_requeue_bulk, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_requeue_each, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_env_modules, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_refuse_not_a_module, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_refuse_versions, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_refuse_init_failure, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_refuse_twice, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_refuse_two_fetchers, each_setup, each_teardown),
    };
    return cmocka_run_group_tests(tests, setup, test_teardown);
}
