/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Batches, the worker and producer side (batch_lua.h has the data model;
 * the application creates, commits and reads batches with the helper in
 * pro/include/dray/pro_batch.h).
 *
 *   push hook        a job carrying "bid" joins that batch (one script:
 *                    the batch must exist, be open and not have succeeded)
 *   after_perform    success (or skipped, e.g. expired) / failure of a
 *                    member is recorded; due callbacks fire in the same script
 *   death            a member died: `death` fires (once), up the parents
 *   before_perform   a callback job whose callback already ran to success
 *                    is skipped (a duplicate delivery after a crash); one
 *                    whose callback runs right now in a live process waits
 */
#include <stdio.h>
#include <string.h>

#include "batch_lua.h"
#include "pro.h"

#define CB_BUSY_DEFER_S 5.0 /* a callback copy waits this long while another copy runs */

/* A callback job is about to run. KEYS[1] the batch hash. ARGV[1] ns,
 * ARGV[2] event, ARGV[3] my identity. Returns "done" (it already ran to
 * success: skip this copy), "busy" (a live process runs it now: wait) or
 * "run" (claimed for this process; a claim of a dead process is taken
 * over). */
static const char cb_claim_lua[] =
    "local h, ev = KEYS[1], ARGV[2]\n"
    "if redis.call('EXISTS', h) == 0 then return 'run' end\n"
    "if redis.call('HEXISTS', h, 'cb_' .. ev .. '_done') == 1 then return 'done' end\n"
    "local owner = redis.call('HGET', h, 'cb_' .. ev .. '_run')\n"
    "if owner and redis.call('EXISTS', ARGV[1] .. owner) == 1 then return 'busy' end\n"
    "redis.call('HSET', h, 'cb_' .. ev .. '_run', ARGV[3])\n"
    "return 'run'\n";

/* A callback job's run ended. KEYS[1] the batch hash. ARGV[1] event,
 * ARGV[2] my identity, ARGV[3] "1" when it succeeded, ARGV[4] now. */
static const char cb_release_lua[] =
    "local h, ev = KEYS[1], ARGV[1]\n"
    "if redis.call('EXISTS', h) == 0 then return 0 end\n"
    "if ARGV[3] == '1' then redis.call('HSETNX', h, 'cb_' .. ev .. '_done', ARGV[4]) end\n"
    "if redis.call('HGET', h, 'cb_' .. ev .. '_run') == ARGV[2] then\n"
    "  redis.call('HDEL', h, 'cb_' .. ev .. '_run')\n"
    "end\n"
    "return 1\n";

static dray_script *s_register, *s_outcome, *s_cb_claim, *s_cb_release;

/* ---- push ------------------------------------------------------------------- */

/* The helper's pre-registered bulk push (batch_api.c): the i-th job seen
 * with token T on this thread gets jid pro__prereg_jid(T, i), which the
 * helper registered before pushing. First in the chain, so every other
 * hook (unique locks record their owner jid) sees the final jid. */
static __thread char tl_prereg_token[25];
static __thread size_t tl_prereg_next;

static int
on_push_jid(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ctx;
    (void)ud;
    const char *t = json_string_value(H->job_get(job, "pro_prereg"));
    if (!t || strlen(t) != 24 || !json_is_string(H->job_get(job, "bid")))
        return DRAY_CONTINUE;
    if (strcmp(t, tl_prereg_token)) {
        memcpy(tl_prereg_token, t, 25);
        tl_prereg_next = 0;
    }
    char jid[25];
    pro__prereg_jid(t, tl_prereg_next++, jid);
    if (H->job_set(job, "jid", json_string(jid)))
        return H->fail(ctx, DRAY_ENOMEM, "out of memory");
    return DRAY_CONTINUE;
}

/* on_push_jid and on_push act only on a job that names a batch (the
 * helper's marks travel with "bid"). */
static int
wants_push(dray_ctx *ctx, const dray_job *job, void *ud)
{
    (void)ctx;
    (void)ud;
    return H->job_get(job, "bid") != NULL;
}

static int
on_push(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    json_t *b = H->job_get(job, "bid");
    if (!b)
        return DRAY_CONTINUE;
    const char *bid = json_string_value(b);
    if (!bid || !*bid || strlen(bid) > 64)
        return H->fail(ctx, DRAY_EINVAL,
                       "\"bid\" must be a batch id string (from dray_pro_batch_new), not %s",
                       json_is_string(b) ? "an empty or overlong string" : "another JSON type");
    if (H->job_get(job, "pro_prereg")) {
        /* registered by the helper before the push: the mark is not stored */
        H->job_set(job, "pro_prereg", NULL);
        return DRAY_CONTINUE;
    }
    const char *jid = H->job_jid(job);
    /* The helper's bulk push marks its jobs so that it can take out
     * exactly those counted but not written; the mark is not stored. */
    char token[40] = "";
    const char *t = json_string_value(H->job_get(job, "pro_reg"));
    if (t && strlen(t) < sizeof token)
        snprintf(token, sizeof token, "%s", t);
    if (H->job_get(job, "pro_reg"))
        H->job_set(job, "pro_reg", NULL);
    const char *argv[4] = {H->ns(ctx), bid, jid, token};
    redisReply *r = NULL;
    int rc = pro__eval(ctx, s_register, &r, 0, 4, argv);
    const char *st = !rc && r && r->type == REDIS_REPLY_STATUS   ? r->str
                     : !rc && r && r->type == REDIS_REPLY_STRING ? r->str
                                                                 : NULL;
    int v = DRAY_CONTINUE;
    if (rc || !st)
        v = H->fail(ctx, rc ? rc : DRAY_EREDIS, "cannot add job %s to batch %s: %s", jid, bid,
                    rc ? H->redis_errstr(ctx) : "unexpected reply");
    else if (!strcmp(st, "nobatch"))
        v = H->fail(ctx, DRAY_ENOTFOUND, "batch %s does not exist (never created, or expired)",
                    bid);
    else if (!strcmp(st, "succeeded"))
        v = H->fail(ctx, DRAY_ESTATE, "batch %s already succeeded and takes no more jobs", bid);
    else if (!strcmp(st, "closed"))
        v = H->fail(ctx, DRAY_ESTATE,
                    "batch %s is not open: push its jobs between dray_pro_batch_new and "
                    "dray_pro_batch_commit, or reopen it from one of its running jobs",
                    bid);
    if (r)
        freeReplyObject(r);
    return v;
}

/* ---- outcomes ------------------------------------------------------------------ */

void
pro__batch_outcome(dray_ctx *ctx, const char *bid, const char *jid, const char *kind)
{
    char now[32], seed[25];
    pro__fmt_time(now, sizeof now, H->now());
    pro__random_hex(seed, 24);
    const char *argv[6] = {H->ns(ctx), bid, jid, kind, now, seed};
    redisReply *r = NULL;
    int rc = pro__eval(ctx, s_outcome, &r, 0, 6, argv);
    if (rc)
        H->log(M, DRAY_LOG_ERROR,
               "batch %s: cannot record %s of job %s (%s); the batch will not finish until the "
               "job runs again",
               bid, kind, jid, H->redis_errstr(ctx));
    else if (r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
             !strcmp(r->str, "nobatch"))
        H->log(M, DRAY_LOG_WARN, "batch %s of job %s no longer exists (expired?); %s not recorded",
               bid, jid, kind);
    if (r)
        freeReplyObject(r);
}

/* "cb_bid" / "cb_event" of a callback job, or 0. */
static int
callback_of(const dray_job *job, const char **bid, const char **event)
{
    *bid = json_string_value(H->job_get(job, "cb_bid"));
    *event = json_string_value(H->job_get(job, "cb_event"));
    return *bid && *event && strlen(*bid) <= 64 && strlen(*event) <= 16;
}

/* Callbacks run at least once like any job, but a copy delivered twice
 * (after a crash between the callback's success and its ack) is skipped,
 * and two copies never run at the same time. */
static int
before(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    const char *bid, *event;
    if (!callback_of(job, &bid, &event))
        return DRAY_CONTINUE;
    char key[PRO_KEY_BYTES];
    pro__key(ctx, key, sizeof key, "pro:batch:%s", bid);
    const char *argv[4] = {key, H->ns(ctx), event, H->identity(ctx)};
    redisReply *r = NULL;
    int rc = pro__eval(ctx, s_cb_claim, &r, 1, 4, argv);
    char st[16] = "run";
    if (!rc && r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
        snprintf(st, sizeof st, "%s", r->str);
    else
        H->log(M, DRAY_LOG_WARN, "batch %s: cannot check the %s callback (%s); running it", bid,
               event, rc ? H->redis_errstr(ctx) : "unexpected reply");
    if (r)
        freeReplyObject(r);
    if (!strcmp(st, "done")) {
        H->log(M, DRAY_LOG_INFO,
               "batch %s: %s callback %s already ran to success (duplicate delivery); skipped", bid,
               event, H->job_jid(job));
        return DRAY_SKIP;
    }
    if (!strcmp(st, "busy"))
        return H->defer(ctx, CB_BUSY_DEFER_S,
                        "batch %s: the %s callback is running in another worker", bid, event);
    return DRAY_CONTINUE;
}

static void
after(dray_ctx *ctx, dray_job *job, int outcome, void *ud)
{
    (void)ud;
    const char *kind = outcome == DRAY_OUTCOME_SUCCESS || outcome == DRAY_OUTCOME_SKIPPED
                           ? "success"
                       : outcome == DRAY_OUTCOME_FAILURE ? "failure"
                                                         : NULL;
    const char *bid = json_string_value(H->job_get(job, "bid"));
    if (kind && bid && *bid)
        pro__batch_outcome(ctx, bid, H->job_jid(job), kind);
    /* deferred or requeued: it runs again, nothing happened yet */
    const char *cbid, *event;
    if (outcome != DRAY_OUTCOME_SKIPPED && callback_of(job, &cbid, &event)) {
        char key[PRO_KEY_BYTES], now[32];
        pro__key(ctx, key, sizeof key, "pro:batch:%s", cbid);
        pro__fmt_time(now, sizeof now, H->now());
        const char *argv[5] = {key, event, H->identity(ctx),
                               outcome == DRAY_OUTCOME_SUCCESS ? "1" : "0", now};
        redisReply *r = NULL;
        if (pro__eval(ctx, s_cb_release, &r, 1, 5, argv))
            H->log(M, DRAY_LOG_WARN, "batch %s: cannot record the end of the %s callback (%s)",
                   cbid, event, H->redis_errstr(ctx));
        if (r)
            freeReplyObject(r);
    }
}

static void
on_death(dray_ctx *ctx, const dray_job *job, const char *error_class, const char *message, void *ud)
{
    (void)error_class;
    (void)message;
    (void)ud;
    const char *bid = json_string_value(H->job_get(job, "bid"));
    if (bid && *bid)
        pro__batch_outcome(ctx, bid, H->job_jid(job), "death");
}

int
pro__batch_init(void)
{
    int rc;
    if ((rc = pro__script(pro_batch_register_lua, &s_register)) ||
        (rc = pro__script(pro_batch_outcome_lua, &s_outcome)) ||
        (rc = pro__script(cb_claim_lua, &s_cb_claim)) ||
        (rc = pro__script(cb_release_lua, &s_cb_release)))
        return rc;
    if ((rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .priority = DRAY_PRIO_FIRST,
                                   .name = "batch-jid", .push = on_push_jid,
                                   .push_wants = wants_push))) ||
        (rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .priority = DRAY_PRIO_MIDDLE,
                                   .name = "batch", .push = on_push, .push_wants = wants_push))) ||
        (rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_PERFORM, .priority = DRAY_PRIO_MIDDLE,
                                   .name = "batch", .before = before, .after = after))) ||
        (rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_DEATH, .priority = DRAY_PRIO_MIDDLE,
                                   .name = "batch", .death = on_death))))
        return H->set_error(M, "cannot register batch hooks: %s", H->strerror(rc));
    return 0;
}
