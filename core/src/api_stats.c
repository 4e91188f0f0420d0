/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Sidekiq::Stats (dray_api_stats_get): the counters and set sizes in one
 * pipeline, then Sidekiq's fetch_stats_slow! (busy of every process, size of
 * every queue) in a second. */
#include <string.h>

#include "api_internal.h"

/* Sidekiq::Stats into *out (zeroed first) in two round trips; the
 * text of a failure on a. */
int
dray_api_stats_get(dray_api *a, dray_stats *out)
{
    memset(out, 0, sizeof *out);
    a->errstr[0] = '\0';
    const char *ns = a->cfg.ns;
    int rc;
    dray__pipe p;
    dray__pipe_init(&p, &a->conn);
    dray__pipe_addf(&p, "GET %sstat:processed", ns);
    dray__pipe_addf(&p, "GET %sstat:failed", ns);
    dray__pipe_addf(&p, "ZCARD %sschedule", ns);
    dray__pipe_addf(&p, "ZCARD %sretry", ns);
    dray__pipe_addf(&p, "ZCARD %sdead", ns);
    dray__pipe_addf(&p, "SCARD %sprocesses", ns);
    dray__pipe_addf(&p, "LRANGE %squeue:default -1 -1", ns);
    redisReply *r1[7];
    if ((rc = dray__api_run_into(a, &p, r1, 7)))
        return rc;
    double now = dray_now();
    out->processed = dray__api_reply_ll(r1[0]);
    out->failed = dray__api_reply_ll(r1[1]);
    out->scheduled_size = dray__api_reply_ll(r1[2]);
    out->retry_size = dray__api_reply_ll(r1[3]);
    out->dead_size = dray__api_reply_ll(r1[4]);
    out->processes_size = dray__api_reply_ll(r1[5]);
    out->default_queue_latency = dray__api_latency_reply(r1[6], now);
    dray__api_free_replies(r1, 7);

    /* Sidekiq's fetch_stats_slow!: busy of every process, size of every queue. */
    redisReply *pr, *qr;
    const char **procs, **queues;
    size_t np, nq;
    if ((rc = dray__api_members_sorted(a, "processes", &pr, &procs, &np)))
        return rc;
    if ((rc = dray__api_members_sorted(a, "queues", &qr, &queues, &nq))) {
        dray__free(procs);
        freeReplyObject(pr);
        return rc;
    }
    redisReply **r2 = np + nq ? dray__calloc(np + nq, sizeof *r2) : NULL;
    if (np + nq && !r2) {
        rc = DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
        goto out;
    }
    dray__pipe_init(&p, &a->conn);
    for (size_t i = 0; i < np; i++)
        dray__pipe_addf(&p, "HGET %s%s busy", ns, procs[i]);
    for (size_t i = 0; i < nq; i++)
        dray__pipe_addf(&p, "LLEN %squeue:%s", ns, queues[i]);
    if ((rc = dray__api_run_into(a, &p, r2, np + nq)))
        goto out;
    for (size_t i = 0; i < np; i++)
        out->workers_size += dray__api_reply_ll(r2[i]);
    for (size_t i = 0; i < nq; i++)
        out->enqueued += dray__api_reply_ll(r2[np + i]);
    dray__api_free_replies(r2, np + nq);
out:
    dray__free(r2);
    dray__free(procs);
    dray__free(queues);
    freeReplyObject(pr);
    freeReplyObject(qr);
    return rc;
}
