/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Expiring jobs. A job pushed with "expires_in" (seconds, relative) gets
 * "expires_at" (epoch seconds) = the time it is due to run (now, or its
 * schedule time) + expires_in; "expires_at" may also be given directly.
 * A job must START before its deadline: a worker that fetches it later
 * drops it (before_perform SKIP: acked, counted as processed, never run),
 * logs one line, counts it in pro:stat:expired, and records it as a
 * success for its batch. A running job is never interrupted.
 */
#include <stdio.h>
#include <string.h>

#include "pro.h"

#define MAX_EXPIRES_IN (10.0 * 365 * 86400) /* ten years: anything longer is a unit mistake */
#define MIN_EPOCH 1e9                       /* an expires_at below this is not a date (2001) */

static int
on_push(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    json_t *in = H->job_get(job, "expires_in");
    json_t *at = H->job_get(job, "expires_at");
    if (at) {
        if (!json_is_number(at) || json_number_value(at) < MIN_EPOCH)
            return H->fail(ctx, DRAY_EFIELD,
                           "expires_at must be epoch seconds (a number after 2001-09-09)");
    }
    if (!in)
        return DRAY_CONTINUE;
    double secs = json_number_value(in);
    if (!json_is_number(in) || !(secs > 0) || secs > MAX_EXPIRES_IN)
        return H->fail(ctx, DRAY_EFIELD,
                       "expires_in must be a positive number of seconds (at most ten years)");
    if (at)
        return DRAY_CONTINUE; /* an explicit deadline wins */
    /* Sidekiq Pro: the deadline counts from when the job is due, so a
     * scheduled job gets its delay on top. */
    double base = H->now();
    json_t *sched = H->job_get(job, "at");
    if (json_is_number(sched) && json_number_value(sched) > base)
        base = json_number_value(sched);
    if (H->job_set(job, "expires_at", json_real(base + secs)))
        return H->fail(ctx, DRAY_ENOMEM, "out of memory");
    return DRAY_CONTINUE;
}

/* on_push does something only for a job with a deadline field. */
static int
wants_push(dray_ctx *ctx, const dray_job *job, void *ud)
{
    (void)ctx;
    (void)ud;
    return H->job_get(job, "expires_in") || H->job_get(job, "expires_at");
}

/* The job's deadline, or 0 when it has none. A job pushed without the
 * module in the producer carries only expires_in: count from created_at. */
static double
deadline_of(const dray_job *job)
{
    json_t *at = H->job_get(job, "expires_at");
    if (json_is_number(at))
        return json_number_value(at);
    json_t *in = H->job_get(job, "expires_in");
    json_t *created = H->job_get(job, "created_at");
    if (json_is_number(in) && json_number_value(in) > 0 && json_is_number(created)) {
        double c = json_number_value(created);
        if (c > 1e12)
            c /= 1000.0; /* Sidekiq 8 writes integer milliseconds */
        return c + json_number_value(in);
    }
    return 0;
}

static int
before(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ud;
    double deadline = deadline_of(job);
    if (deadline <= 0)
        return DRAY_CONTINUE;
    double now = H->now();
    if (now <= deadline)
        return DRAY_CONTINUE;
    atomic_fetch_add(&pro__stats.expired, 1);
    char dl[32];
    pro__fmt_time(dl, sizeof dl, deadline);
    H->log(M, DRAY_LOG_INFO,
           "job %s (%s, queue %s) expired %.1f s before it could start "
           "(expires_at %s); dropped",
           H->job_jid(job), H->job_class(job), H->job_queue(job), now - deadline, dl);
    redisReply *r = NULL;
    if (H->redisf(ctx, &r, "INCR %spro:stat:expired", H->ns(ctx)))
        H->log(M, DRAY_LOG_WARN, "cannot count an expired job: %s", H->redis_errstr(ctx));
    if (r)
        freeReplyObject(r);
    /* Expired counts as a success for its batch (Sidekiq Pro). The batch's
     * own after hook may not be reached from here, so record it now; the
     * record is idempotent. */
    const char *bid = json_string_value(H->job_get(job, "bid"));
    if (bid && *bid && (pro__cfg.features & DRAY_LICENSE_F_BATCHES))
        pro__batch_outcome(ctx, bid, H->job_jid(job), "success");
    return DRAY_SKIP;
}

int
pro__expiry_init(void)
{
    int rc;
    if ((rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .priority = DRAY_PRIO_MIDDLE,
                                   .name = "expiry", .push = on_push, .push_wants = wants_push))) ||
        (rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_PERFORM, .priority = DRAY_PRIO_EARLY,
                                   .name = "expiry", .before = before))))
        return H->set_error(M, "cannot register expiry hooks: %s", H->strerror(rc));
    return 0;
}
