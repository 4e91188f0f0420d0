/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray Pro batches, the application side (docs/pro.md).
 *
 * This helper is a small static library (dray_pro_batch) that an
 * application, a tool or `dray batch status` links; it is NOT part of
 * dray-pro.so and never reaches into it. It talks to Redis through the
 * caller's hiredis connection, using the keys of docs/redis-keys.md, and
 * pushes jobs through the caller's dray_client, whose push hook (from
 * dray-pro.so, which must be loaded in the pushing process) adds each job
 * carrying "bid" to its batch.
 *
 *   dray_pro *p;  dray_pro_new(redis, "", &p);
 *   dray_pro_batch_opts o = {.description = "import 42",
 *                            .on_success = {"ImportDone", opts_json}};
 *   char bid[DRAY_PRO_BID_BYTES];
 *   dray_pro_batch_new(p, &o, bid);              // open: callbacks wait
 *   dray_pro_batch_push(p, client, bid, "Row", args, NULL, NULL);  // ...n times
 *   dray_pro_batch_commit(p, bid, 0);            // closed: callbacks may fire
 *
 * Callbacks are ordinary jobs of the given class, pushed to callback_queue
 * exactly once per batch and event, with args [bid, event, options]:
 *   complete  every job has run at least once (failures included)
 *   success   every job has succeeded (never, if one dies)
 *   death     the first time a job of the batch (or of a child) dies
 * A parent batch is complete/successful only when its children are.
 *
 * Thread safety: a dray_pro is used by one thread at a time, like the
 * hiredis context it borrows.
 */
#ifndef DRAY_PRO_BATCH_H
#define DRAY_PRO_BATCH_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "dray/dray.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRAY_PRO_BID_LEN 16 /* 12 random bytes, base64url: unguessable, short in logs */
#define DRAY_PRO_BID_BYTES (DRAY_PRO_BID_LEN + 1)
#define DRAY_PRO_LINGER_DEFAULT 86400L /* data of a successful batch stays a day (Sidekiq Pro) */
#define DRAY_PRO_LINGER_MIN 30L        /* nested callbacks need a little time (Sidekiq Pro 8.1.4) */
#define DRAY_PRO_TTL_DEFAULT (30L * 86400L) /* an unfinished batch expires after 30 days */
#define DRAY_PRO_COMMIT_EMPTY 1 /* dray_pro_batch_commit flag: an empty batch is intended */

typedef struct dray_pro dray_pro;

/* One callback: a job class and its options (an object, borrowed; NULL
 * means {}). klass NULL: no job for this event (the event is still
 * recorded in the status and sent to webhooks). */
typedef struct dray_pro_callback {
    const char *klass; /* job class of the callback */
    json_t *options;   /* JSON object given to it as args[2], or NULL */
} dray_pro_callback;

/* Batch settings; zero-initialise, then set what you need. */
typedef struct dray_pro_batch_opts {
    const char *description;       /* shown in the status; NULL: "" */
    const char *callback_queue;    /* queue of the callback jobs; NULL: "default" */
    dray_pro_callback on_complete; /* see above */
    dray_pro_callback on_success;
    dray_pro_callback on_death;
    const char *parent_bid;     /* make this a child of that batch, or NULL */
    const dray_job *parent_job; /* or: a running member job makes a child of its own batch
                                   (committed for it when its run ends, even if it crashed) */
    long linger_s;              /* seconds the data stays after success; 0: a day; >= 30 */
    long ttl_s;                 /* seconds an unfinished batch stays; 0: 30 days */
} dray_pro_batch_opts;

/* What dray_pro_batch_status_get reads. */
typedef struct dray_pro_batch_status {
    char bid[DRAY_PRO_BID_BYTES]; /* the batch */
    char *description;            /* "" when none */
    char *callback_queue;         /* "" when the default */
    char *parent_bid;             /* "" when top level */
    long long total;              /* jobs ever added */
    long long pending;            /* jobs not yet succeeded */
    long long failures;           /* jobs whose last run failed (and not succeeded since) */
    long long dead;               /* jobs that died */
    long long children;           /* child batches */
    long long children_pending;   /* children not yet successful */
    int open;                     /* 1: not committed yet, or reopened by a running job */
    double created_at;            /* epoch seconds */
    double complete_at;           /* 0: not complete yet */
    double success_at;            /* 0: not successful yet */
    double death_at;              /* 0: no job died */
    long long expires_in;         /* seconds until its data expires (-1: unknown) */
    char **failed_jids;           /* the jobs counted in failures */
    size_t nfailed;
    char **child_bids; /* the children */
    size_t nchild_bids;
} dray_pro_batch_status;

/* ---- handle ------------------------------------------------------------- */

/* A handle on redis (borrowed: it must outlive the handle) with key
 * namespace ns (NULL or "" for none; "myapp" and "myapp:" are the same).
 * DRAY_EINVAL, DRAY_ENOMEM. Free with dray_pro_free. */
int dray_pro_new(redisContext *redis, const char *ns, dray_pro **out) DRAY_WUR;
void dray_pro_free(dray_pro *p); /* accepts NULL */
/* Text of the last error on p; never NULL, "" after success. */
const char *dray_pro_errstr(const dray_pro *p);

/* ---- batches ------------------------------------------------------------ */

/* Create an open batch and write its id to bid. Callbacks cannot fire
 * until dray_pro_batch_commit. DRAY_EINVAL (a callback with options but
 * no class, options that are not an object, linger below 30 s),
 * DRAY_ENOTFOUND (parent does not exist), DRAY_ESTATE (parent already
 * succeeded), DRAY_EREDIS / DRAY_ECONN. */
int dray_pro_batch_new(dray_pro *p, const dray_pro_batch_opts *opts,
                       char bid[DRAY_PRO_BID_BYTES]) DRAY_WUR;
/* Push a job of class klass (args borrowed) into batch bid through c
 * (dray_client_push with "bid" set). If the push fails after the batch
 * counted the job, the job is taken out again. jid_out may be NULL. The
 * error text is in dray_pro_errstr. */
int dray_pro_batch_push(dray_pro *p, dray_client *c, const char *bid, const char *klass,
                        json_t *args, const dray_push_opts *opts, char *jid_out) DRAY_WUR;
/* dray_client_push_bulk into batch bid: n jobs of class klass, args_list a
 * JSON array of args arrays (borrowed). *pushed counts the jobs written;
 * jids_out (may be NULL) gets n jids, DRAY_JID_BYTES apart ("" for a job
 * not written). On failure, the jobs the batch counted but that were not
 * written are taken out again. The push hook adds each job with one Redis
 * round trip. */
int dray_pro_batch_push_bulk(dray_pro *p, dray_client *c, const char *bid, const char *klass,
                             json_t *args_list, const dray_push_opts *opts, char *jids_out,
                             size_t *pushed) DRAY_WUR;
/* Close a batch opened by dray_pro_batch_new: callbacks that are due fire
 * now. DRAY_EINVAL for a batch with no jobs and no children unless flags
 * has DRAY_PRO_COMMIT_EMPTY (then it completes and succeeds at once: no
 * Sidekiq-style silent empty batch); DRAY_ENOTFOUND; DRAY_ESTATE when it
 * is already committed. */
int dray_pro_batch_commit(dray_pro *p, const char *bid, int flags) DRAY_WUR;
/* From inside a running member job: reopen its batch to add jobs (push
 * them with dray_pro_batch_push) or child batches. Callbacks are held
 * until dray_pro_batch_close or the end of this run of job.
 * DRAY_EINVAL (job has no bid), DRAY_ENOTFOUND, DRAY_ESTATE (succeeded,
 * or job is not a pending member). */
int dray_pro_batch_reopen(dray_pro *p, const dray_job *job) DRAY_WUR;
int dray_pro_batch_close(dray_pro *p, const dray_job *job) DRAY_WUR;

/* Read the status of bid. *out is freed with dray_pro_batch_status_free.
 * DRAY_ENOTFOUND when there is no such batch (never created, or expired:
 * a successful batch lingers `linger_s`). */
int dray_pro_batch_status_get(dray_pro *p, const char *bid, dray_pro_batch_status **out) DRAY_WUR;
void dray_pro_batch_status_free(dray_pro_batch_status *st); /* accepts NULL */
/* The status as a JSON object (new reference), for `dray batch status`
 * and tools; NULL when out of memory. */
json_t *dray_pro_batch_status_json(const dray_pro_batch_status *st);

#ifdef __cplusplus
}
#endif

#endif /* DRAY_PRO_BATCH_H */
