/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Internals of dray-pro.so shared by its files (never installed). The
 * module is a process-wide singleton: the host table, the module handle
 * and the settings below are written once by dray_module_init, on the
 * loading thread before any server thread exists, and only read afterwards.
 *
 * Every key the module uses is "<namespace>pro:..." (docs/redis-keys.md);
 * every change to more than one key is one Lua script.
 */
#ifndef DRAY_PRO_INTERNAL_H
#define DRAY_PRO_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dray/license.h"
#include "dray/module.h"

#define PRO_NAME "pro"
#define PRO_VERSION "0.1.0"
#define PRO_KEY_BYTES 512 /* a key: namespace + "pro:..." + an identity or bid */
#define PRO_POISON_CLASS                                                                           \
    "Dray::Pro::PoisonPill"                /* error_class of a poison pill in the dead set         \
                                            */
#define PRO_DEAD_MAX_JOBS 10000            /* Sidekiq's dead-set trims (the host does */
#define PRO_DEAD_TIMEOUT_S (180L * 86400L) /* not tell a module the server's own) */
#define PRO_ACK_EVERY_MAX 256 /* pro.ack_every upper bound (finished jobs a worker keeps) */
#define PRO_BEAT_TTL_S 60     /* EXPIRE a heartbeat gives its hash (core and Sidekiq) */
#define PRO_ORPHAN_BEATS 3    /* pro.orphan_after must cover this many heartbeats */
#define PRO_RECONNECT_S                                                                            \
    5.0 /* a live process's first beat after a Redis stall may take a                              \
           command timeout (the core's default) beyond its period */

/* The host table and our handle: set once at load. */
extern const dray_host *pro__host;
extern dray_module *pro__mod;
#define H pro__host
#define M pro__mod

/* Settings (docs/pro.md lists them), read once at load. */
typedef struct pro__settings {
    uint32_t features; /* DRAY_LICENSE_F_* licensed and switched on */
    /* reliable fetch */
    double fetch_poll_s;       /* block on the first queue this long when several are empty */
    long long fetch_batch;     /* jobs one fetch may take while a backlog waits (1: one) */
    double orphan_after_s;     /* a process whose beat is older (or whose hash is gone) is dead */
    double orphan_check_s;     /* how often each process looks for dead processes' lists */
    double heartbeat_s;        /* this server's heartbeat period (0: unknown) */
    double orphan_confirm_s;   /* a silent process is dead after this much more silence */
    long long poison_after;    /* recoveries that make a job a poison pill */
    long long poison_window_s; /* how long a job's recovery count is remembered */
    double suspect_delay_s;    /* a job recovered twice or more runs again after up to this */
    double lease_s;            /* a recoverer's lease on one dead process's list */
    int lazy_ack;        /* the next fetch acknowledges a finished job (no round trip of its own) */
    long long ack_every; /* lazy acks: finished jobs acknowledged together, by one check */
    /* notifications */
    int webhooks;               /* at least one URL configured */
    double webhook_timeout_s;   /* per request */
    long long webhook_attempts; /* deliveries tried before the event is parked as failed */
    double webhook_poll_s;      /* how often the notifier looks for new or due events */
    double webhook_backoff_s;   /* first retry delay; doubles per attempt, at most an hour */
    long long webhook_keep_s;   /* TTL of undelivered and failed events */
    int require_noeviction;     /* refuse to start unless maxmemory-policy is noeviction */
} pro__settings;

extern pro__settings pro__cfg;

/* Counters of this process (also flushed to Redis where noted). */
typedef struct pro__counters {
    atomic_llong expired;         /* jobs dropped at fetch after their deadline */
    atomic_llong recovered;       /* orphaned jobs this process put back */
    atomic_llong strays;          /* jobs found in a worker's own list that it was not running */
    atomic_llong poisoned;        /* orphaned jobs this process sent to the dead set */
    atomic_llong callbacks;       /* batch callbacks this process enqueued */
    atomic_llong webhooks_sent;   /* deliveries answered 2xx */
    atomic_llong webhooks_failed; /* delivery attempts that failed (retried later) */
} pro__counters;

extern pro__counters pro__stats;

/* ---- helpers (pro.c) ----------------------------------------------------- */

/* "<ns><fmt...>" into buf; returns buf. Truncation is a bug the caller
 * sizes away (PRO_KEY_BYTES holds every key we build). Cannot fail. */
char *pro__key(dray_ctx *ctx, char *buf, size_t n, const char *fmt, ...) DRAY_PRINTF(4, 5);
/* Register a Lua script at init, or log and return the error. */
int pro__script(const char *lua, dray_script **out);
/* Run a script with NUL-terminated argv (the first nkeys are keys). The
 * reply is returned in *out (free it) even on DRAY_EREDIS. */
int pro__eval(dray_ctx *ctx, dray_script *s, redisReply **out, int nkeys, int argc,
              const char **argv);
/* Float epoch seconds as JSON-compatible text with a decimal point. */
void pro__fmt_time(char *buf, size_t n, double t);
/* 24 lowercase hex characters of fresh randomness (+ NUL). Cannot fail. */
void pro__random_hex(char *out, size_t hexlen);
#define PRO_ERRNO_BYTES 128 /* strerror_r text: glibc's longest is under 60 */
/* Text for errno value e in buf (strerror_r, GNU or XSI flavour), for
 * H->set_error messages (the module's one error setter); returns buf.
 * Thread-safe, cannot fail. */
const char *pro__syserr(int e, char buf[PRO_ERRNO_BYTES]);

/* ---- features: init registers hooks; the rest is each file's API --------- */

/* fetch.c: the reliable fetch provider, its tick and its quiet hook. */
int pro__fetch_init(void);

/* batch.c */
int pro__batch_init(void);
/* The job jid of batch bid finished this way (idempotent, any thread with a
 * ctx). kind: "success" (also skipped/expired), "failure", "death". */
void pro__batch_outcome(dray_ctx *ctx, const char *bid, const char *jid, const char *kind);

/* expiry.c */
int pro__expiry_init(void);

/* notify.c */
int pro__notify_init(void);
/* Record a job.death event for the notifiers of the cluster (no-op when no
 * process has webhooks configured). job may be NULL when only the payload
 * is known (a poison pill). Worker or heartbeat thread. */
void pro__notify_job_death(dray_ctx *ctx, const dray_job *job, const char *payload,
                           const char *error_class, const char *message);

#endif /* DRAY_PRO_INTERNAL_H */
