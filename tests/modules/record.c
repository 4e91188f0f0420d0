/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Test module "record": registers every hook point and writes each call to
 * a Redis list (setting record.list, default "rec:calls") as
 * "<what>@<thread>", so tests/integration/test_module.c can assert order
 * and threads against real Redis. Behaviour by job class:
 *   push     rewrite (EARLY) stamps "stamped":"record"; class Refuse fails
 *            the push; dedup (MIDDLE) drops a second "Dup" with the same
 *            args[0] (SET NX) and checks that rewrite ran first
 *   perform  outer (EARLY) skips class Skip; inner (LATE) defers class
 *            Defer once and fails class HookFail; after hooks note the outcome;
 *            after a successful Spawn the module enqueues a Child job
 *   retry, death, startup, quiet, shutdown, tick: noted
 * Uses only dray/module.h (and hiredis/jansson), as a real module must.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dray/module.h"

static const dray_host *H;
static dray_module *M;
static const char *list_key;
static long long limit;
static dray_script *incr_script;

static const char *const thread_names[] = {"client", "worker", "heartbeat", "main", "module"};

static void note(dray_ctx *ctx, const char *fmt, ...) DRAY_PRINTF(2, 3);

static void
note(dray_ctx *ctx, const char *fmt, ...)
{
    char what[256], line[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int kind = H->ctx_thread(ctx);
    snprintf(line, sizeof line, "%s@%s", what, kind >= 0 && kind <= 4 ? thread_names[kind] : "?");
    const char *argv[3] = {"RPUSH", list_key, line};
    if (H->redis(ctx, NULL, 3, argv, NULL))
        H->log(M, DRAY_LOG_ERROR, "cannot note %s: %s", line, H->redis_errstr(ctx));
}

static int
is_class(const dray_job *job, const char *klass)
{
    return !strcmp(H->job_class(job), klass);
}

/* ---- push ------------------------------------------------------------------ */

static int
push_rewrite(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    if (is_class(job, "Refuse"))
        return H->fail(ctx, DRAY_EINVAL, "class Refuse is not welcome");
    H->job_set(job, "stamped", json_string("record"));
    note(ctx, "push:%s", H->job_class(job));
    return DRAY_CONTINUE;
}

static int
push_dedup(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    if (!json_is_string(H->job_get(job, "stamped")))
        return H->fail(ctx, DRAY_EINVAL, "dedup ran before rewrite");
    if (!is_class(job, "Dup"))
        return DRAY_CONTINUE;
    const char *arg = json_string_value(json_array_get(H->job_args(job), 0));
    char key[128];
    snprintf(key, sizeof key, "%srec:dup:%s", H->ns(ctx), arg ? arg : "");
    redisReply *r;
    int rc = H->redisf(ctx, &r, "SET %s 1 NX EX 60", key);
    if (rc) {
        if (r)
            freeReplyObject(r);
        return H->fail(ctx, rc, "dedup: %s", H->redis_errstr(ctx));
    }
    int dup = r->type == REDIS_REPLY_NIL;
    freeReplyObject(r);
    if (dup) {
        note(ctx, "drop:%s", arg ? arg : "");
        return DRAY_DROP;
    }
    return DRAY_CONTINUE;
}

/* ---- perform ----------------------------------------------------------------- */

static int
before_outer(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    note(ctx, "before-outer:%s", H->job_class(job));
    if (is_class(job, "Skip"))
        return DRAY_SKIP;
    return DRAY_CONTINUE;
}

static void
after_outer(dray_ctx *ctx, dray_job *job, int outcome, void *ud)
{
    (void)ud;
    note(ctx, "after-outer:%s:%d", H->job_class(job), outcome);
    if (is_class(job, "Spawn") && outcome == DRAY_OUTCOME_SUCCESS) {
        json_t *child =
            json_pack("{s:s, s:[i], s:s}", "class", "Child", "args", 1, "queue", "default");
        char jid[DRAY_JID_BYTES];
        int rc = H->enqueue(ctx, child, jid);
        json_decref(child);
        note(ctx, "spawned:%d:%zu", rc, rc ? (size_t)0 : strlen(jid));
        json_t *later = json_pack("{s:s, s:[]}", "class", "Later", "args");
        rc = H->schedule(ctx, later, H->now() + 3600, NULL);
        json_decref(later);
        note(ctx, "scheduled:%d", rc);
    }
}

static int
before_inner(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    if (is_class(job, "Defer") && !H->job_get(job, "deferred"))
        return H->defer(ctx, 0.3, "not yet (retry_count %d)", H->job_retry_count(job));
    note(ctx, "before-inner:%s", H->job_class(job));
    if (is_class(job, "HookFail"))
        return H->fail(ctx, 0, "inner hook refuses %s", H->job_jid(job));
    return DRAY_CONTINUE;
}

static void
after_inner(dray_ctx *ctx, dray_job *job, int outcome, void *ud)
{
    (void)ud;
    note(ctx, "after-inner:%s:%d", H->job_class(job), outcome);
}

/* ---- observers ----------------------------------------------------------------- */

static void
on_retry(dray_ctx *ctx, const dray_job *job, const char *ecls, const char *msg, int attempt,
         double next_at, void *ud)
{
    (void)ud;
    (void)msg;
    note(ctx, "retry:%s:%s:%d:%s", H->job_class(job), ecls, attempt,
         next_at > H->now() ? "future" : "past");
}

static void
on_death(dray_ctx *ctx, const dray_job *job, const char *ecls, const char *msg, void *ud)
{
    (void)ud;
    (void)msg;
    note(ctx, "death:%s:%s", H->job_class(job), ecls);
}

static double
on_tick(dray_ctx *ctx, void *ud)
{
    (void)ud;
    redisReply *r;
    char key[128];
    snprintf(key, sizeof key, "%srec:ticks", H->ns(ctx));
    const char *argv[1] = {key};
    int rc = H->eval(ctx, incr_script, &r, 1, 1, argv, NULL);
    note(ctx, "tick:%s", rc == 0 && r->type == REDIS_REPLY_INTEGER ? "ok" : H->redis_errstr(ctx));
    if (r)
        freeReplyObject(r);
    return 0;
}

static void
on_event(dray_ctx *ctx, int point, void *ud)
{
    (void)ud;
    const char *what = point == DRAY_HOOK_STARTUP ? "startup"
                       : point == DRAY_HOOK_QUIET ? "quiet"
                                                  : "shutdown";
    note(ctx, "%s", what);
    if (point != DRAY_HOOK_STARTUP)
        return;
    /* Registration is over once init returned. */
    int rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_TICK, .tick = on_tick));
    note(ctx, "late-register:%s", rc == DRAY_ESTATE ? "ESTATE" : "accepted");
    double t;
    rc = H->redis_time(ctx, &t);
    double skew = t - H->now();
    note(ctx, "redis-time:%s", rc == 0 && skew > -5 && skew < 5 ? "ok" : "bad");
    note(ctx, "identity:%s", strchr(H->identity(ctx), ':') ? "ok" : "bad");
}

/* ---- userdata ------------------------------------------------------------------ */

typedef struct state {
    char tag[16];
} state;

static void
state_free(void *p)
{
    H->free(p);
}

static state *
state_new(const char *tag)
{
    state *s = H->calloc(1, sizeof *s);
    if (s)
        snprintf(s->tag, sizeof s->tag, "%s", tag);
    return s;
}

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    int rc = dray_module_handshake(host, rec, "record", "1.0.0", "free", NULL);
    if (rc)
        return rc;
    H = host;
    M = mod;
    if ((rc = H->config_str(M, "list", "rec:calls", &list_key)) ||
        (rc = H->config_int(M, "limit", 5, 1, 100, &limit)))
        return rc;
    if ((rc = H->script(M, "return redis.call('INCR', KEYS[1])", &incr_script)))
        return H->set_error(M, "cannot register script: %s", H->strerror(rc));
    /* A Redis call during init, on the loading thread. */
    dray_ctx *lc = H->load_ctx(M);
    if (lc)
        note(lc, "init");
    /* Registered out of priority order on purpose: the core sorts. */
    const dray_hook regs[] = {
        {.point = DRAY_HOOK_PUSH,
         .priority = DRAY_PRIO_MIDDLE,
         .name = "dedup",
         .push = push_dedup},
        {.point = DRAY_HOOK_PUSH,
         .priority = DRAY_PRIO_EARLY,
         .name = "rewrite",
         .push = push_rewrite},
        {.point = DRAY_HOOK_PERFORM,
         .priority = DRAY_PRIO_LATE,
         .name = "inner",
         .before = before_inner,
         .after = after_inner},
        {.point = DRAY_HOOK_PERFORM,
         .priority = DRAY_PRIO_EARLY,
         .name = "outer",
         .before = before_outer,
         .after = after_outer},
        {.point = DRAY_HOOK_RETRY, .retry = on_retry},
        {.point = DRAY_HOOK_DEATH, .death = on_death},
        {.point = DRAY_HOOK_STARTUP, .event = on_event},
        {.point = DRAY_HOOK_QUIET, .event = on_event},
        {.point = DRAY_HOOK_SHUTDOWN, .event = on_event},
        {.point = DRAY_HOOK_TICK, .tick = on_tick},
    };
    for (size_t i = 0; i < sizeof regs / sizeof *regs; i++) {
        dray_hook h = regs[i];
        h.struct_size = sizeof h;
        h.userdata = state_new(h.name ? h.name : "hook");
        h.userdata_free = state_free;
        if (!h.userdata)
            return H->set_error(M, "out of memory");
        if ((rc = H->hook(M, &h))) {
            state_free(h.userdata);
            return rc;
        }
    }
    H->set_status(M, "recording to %s (limit %lld)", list_key, limit);
    H->log(M, DRAY_LOG_INFO, "ready");
    return 0;
}
