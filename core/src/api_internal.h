/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* What the files of the inspection API share (api.c, api_stats.c,
 * api_queues.c, api_procs.c, api_sets.c): the handle and its reply helpers.
 * Never installed. */
#ifndef DRAY_API_INTERNAL_H
#define DRAY_API_INTERNAL_H

#include <stdlib.h>

#include "dray/inspect.h"
#include "internal.h"

struct dray_api {
    dray__redis_cfg cfg;
    dray__conn conn;
    long dead_max_jobs;
    long dead_timeout_s;
    int ts_ms; /* write Sidekiq 8's integer ms timestamps */
    char errstr[DRAY_ERRSTR_BYTES];
};

/* Copy the connection's error text (or rc's name when it has none) to the
 * handle; returns rc. */
int dray__api_conn_fail(dray_api *a, int rc);
/* dray__api_conn_fail after a failed dray__conn_cmd: frees its reply r
 * (may be NULL) first. Returns rc. */
int dray__api_cmd_fail(dray_api *a, redisReply *r, int rc);
/* Run p (which holds n commands) and hand its replies over in r[0..n),
 * freed by the caller with dray__api_free_replies. On failure nothing is
 * handed over, the text is on a, and the link is left as dray__pipe_run
 * left it. p is closed in every case. */
int dray__api_run_into(dray_api *a, dray__pipe *p, redisReply **r, size_t n);
/* Free the non-NULL replies of r[0..n) (not the array). Cannot fail. */
void dray__api_free_replies(redisReply **r, size_t n);
/* SMEMBERS of <ns><suffix>, sorted by name. On success *reply is the reply
 * (freeReplyObject) and *names (dray__free; NULL when empty) points into it;
 * on error both are NULL and the text is on a. */
int dray__api_members_sorted(dray_api *a, const char *suffix, redisReply **reply,
                             const char ***names, size_t *n);
/* The members of a set and `per` replies for each: what the queue and
 * process listings read in two round trips. */
typedef struct dray__api_fan {
    redisReply *set;    /* the SMEMBERS reply (owned) */
    const char **names; /* n names, sorted, pointing into set (owned array) */
    size_t n;           /* members */
    size_t per;         /* replies per member */
    redisReply **r;     /* per * n replies, per-name in order (owned), or NULL */
} dray__api_fan;
/* Appends the `per` commands for one member name to p. */
typedef void (*dray__api_fan_fn)(dray__pipe *p, const char *ns, const char *name);
/* SMEMBERS <ns><suffix> sorted, then one pipeline of add() for every name.
 * On success f holds it all (dray__api_fan_close); on error f is empty and
 * the text is on a. */
int dray__api_fan_run(dray_api *a, const char *suffix, size_t per, dray__api_fan_fn add,
                      dray__api_fan *f);
/* Free what f holds. Cannot fail; f may be empty. */
void dray__api_fan_close(dray__api_fan *f);
/* Seconds since the job at the head of an LRANGE -1 -1 reply was enqueued
 * (0 for an empty queue or a payload without enqueued_at, as Sidekiq). */
double dray__api_latency_reply(const redisReply *r, double now);

/* An integer or numeric-string reply as a number; 0 for anything else. */
static inline long long
dray__api_reply_ll(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

/* A string reply as a double (ZSET scores, beats); 0 for anything else. */
static inline double
dray__api_reply_double(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL) : 0;
}

#endif /* DRAY_API_INTERNAL_H */
