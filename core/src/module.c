/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Hook chains run by the client and the server. The module loader (module.h)
 * fills them; without modules every chain is empty and costs one branch. */
#include "internal.h"

bool
dray__hooks_push_empty(void)
{
    return true;
}

int
dray__hooks_push(dray_job *job, char *errbuf, size_t errlen)
{
    DRAY__UNUSED(job);
    DRAY__UNUSED(errbuf);
    DRAY__UNUSED(errlen);
    return DRAY__PUSH_CONTINUE;
}

int
dray__hooks_before(void *wctx, dray_job *job, double *defer_s, char *errbuf, size_t errlen,
                   int *entered)
{
    DRAY__UNUSED(wctx);
    DRAY__UNUSED(job);
    DRAY__UNUSED(defer_s);
    DRAY__UNUSED(errbuf);
    DRAY__UNUSED(errlen);
    *entered = 0;
    return DRAY__BEFORE_CONTINUE;
}

void
dray__hooks_after(void *wctx, dray_job *job, int outcome, int entered)
{
    DRAY__UNUSED(wctx);
    DRAY__UNUSED(job);
    DRAY__UNUSED(outcome);
    DRAY__UNUSED(entered);
}

void
dray__hooks_retry(void *wctx, const dray_job *job, const char *error_class, const char *message,
                  int attempt, double next_at)
{
    DRAY__UNUSED(wctx);
    DRAY__UNUSED(job);
    DRAY__UNUSED(error_class);
    DRAY__UNUSED(message);
    DRAY__UNUSED(attempt);
    DRAY__UNUSED(next_at);
}

void
dray__hooks_death(void *wctx, const dray_job *job, const char *error_class, const char *message)
{
    DRAY__UNUSED(wctx);
    DRAY__UNUSED(job);
    DRAY__UNUSED(error_class);
    DRAY__UNUSED(message);
}

void
dray__hooks_event(void *sctx, int event)
{
    DRAY__UNUSED(sctx);
    DRAY__UNUSED(event);
}

void
dray__hooks_tick(void *hctx)
{
    DRAY__UNUSED(hctx);
}
