/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Sidekiq::Queue: every queue of the "queues" set with its size and
 * latency, in one pipeline. */
#include <string.h>

#include "api_internal.h"

/* Free n queue records and the array. Accepts NULL. */
void
dray_api_queues_free(dray_queue_info *q, size_t n)
{
    if (!q)
        return;
    for (size_t i = 0; i < n; i++)
        dray__free(q[i].name);
    dray__free(q);
}

/* LLEN and the oldest job of one queue. */
static void
queue_cmds(dray__pipe *p, const char *ns, const char *name)
{
    dray__pipe_addf(p, "LLEN %squeue:%s", ns, name);
    dray__pipe_addf(p, "LRANGE %squeue:%s -1 -1", ns, name);
}

/* Every queue of the "queues" set with size and latency, sorted by
 * name; *out is the caller's (dray_api_queues_free). Two round trips. */
int
dray_api_queues_list(dray_api *a, dray_queue_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    a->errstr[0] = '\0';
    dray__api_fan f;
    int rc = dray__api_fan_run(a, "queues", 2, queue_cmds, &f);
    if (rc || f.n == 0) {
        dray__api_fan_close(&f);
        return rc;
    }
    dray_queue_info *q = dray__calloc(f.n, sizeof *q);
    if (!q)
        rc = DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    double now = dray_now();
    for (size_t i = 0; q && i < f.n; i++) {
        q[i].name = dray__strdup(f.names[i]);
        q[i].size = dray__api_reply_ll(f.r[2 * i]);
        q[i].latency = dray__api_latency_reply(f.r[2 * i + 1], now);
        if (!q[i].name)
            rc = DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    }
    if (rc) {
        dray_api_queues_free(q, f.n);
    } else {
        *out = q;
        *n = f.n;
    }
    dray__api_fan_close(&f);
    return rc;
}
