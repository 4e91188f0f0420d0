/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Test module "wants": push hooks with and without a push_wants predicate
 * (module ABI 1.2), each call written to the Redis list wants:calls as
 * "<hook>:<class>", for tests/integration/test_module_wants.c.
 *   picky    (EARLY, push_wants): wants only class Picky or a push
 *            carrying "picky"; notes every call it gets, stamps "picked":
 *            true on those, and fails a push whose "picky" is a string
 *   always   (LATE, no predicate; setting wants.always yes): every push
 *   stray    (setting wants.stray yes): a perform hook with push_wants,
 *            which the core must refuse (the load then fails)
 */
#include <stdio.h>
#include <string.h>

#include "dray/module.h"

static const dray_host *H;
static dray_module *M;

static void
note(dray_ctx *ctx, const char *hook, const dray_job *job)
{
    char line[160];
    snprintf(line, sizeof line, "%s:%s", hook, H->job_class(job));
    const char *argv[3] = {"RPUSH", "wants:calls", line};
    if (H->redis(ctx, NULL, 3, argv, NULL))
        H->log(M, DRAY_LOG_ERROR, "cannot note %s: %s", line, H->redis_errstr(ctx));
}

/* The one rule both picky functions share. */
static int
is_picky(const dray_job *job)
{
    return !strcmp(H->job_class(job), "Picky") || H->job_get(job, "picky") != NULL;
}

static int
picky_wants(dray_ctx *ctx, const dray_job *job, void *ud)
{
    (void)ctx;
    (void)ud;
    return is_picky(job);
}

static int
picky_push(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    note(ctx, "picky", job); /* every call, the skipped ones' absence is the point */
    if (!is_picky(job))
        return DRAY_CONTINUE;
    if (json_is_string(H->job_get(job, "picky")))
        return H->fail(ctx, DRAY_EFIELD, "\"picky\" must not be a string");
    if (H->job_set(job, "picked", json_true()))
        return H->fail(ctx, DRAY_ENOMEM, "out of memory");
    return DRAY_CONTINUE;
}

static int
always_push(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    note(ctx, "always", job);
    return DRAY_CONTINUE;
}

static int
stray_before(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ctx;
    (void)job;
    (void)ud;
    return DRAY_CONTINUE;
}

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    int rc = dray_module_handshake(host, rec, "wants", "1.0.0", "free", NULL);
    if (rc)
        return rc;
    H = host;
    M = mod;
    int always = 0, stray = 0;
    if ((rc = H->config_bool(M, "always", 0, &always)) ||
        (rc = H->config_bool(M, "stray", 0, &stray)))
        return rc;
    if ((rc =
             H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .priority = DRAY_PRIO_EARLY,
                                  .name = "picky", .push = picky_push, .push_wants = picky_wants))))
        return rc;
    if (always && (rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .priority = DRAY_PRIO_LATE,
                                             .name = "always", .push = always_push))))
        return rc;
    if (stray && (rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_PERFORM, .name = "stray",
                                            .before = stray_before, .push_wants = picky_wants))))
        return rc;
    return 0;
}
