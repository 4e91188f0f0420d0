/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray Enterprise (dray-enterprise.so): internals shared by its files.
 * Users' documentation is docs/enterprise.md; the Redis keys are listed in
 * docs/redis-keys.md (Enterprise section).
 *
 * The module reaches the core only through dray/module.h's host table
 * (ent__H, set once in dray_module_init before any hook can run). Its own
 * memory is libc's (the core never frees it); anything handed to the core
 * comes from ent__H->alloc. Cross-file helpers are ent__<name>, types
 * ent_<noun> (see cron.h).
 *
 * Files, one concern each: module.c (entry, license, settings, hook
 * registration), config.c (line parsing helpers), limiter.c (rate limits in
 * before_perform), limit_fetch.c (fetch-time queue limits), unique.c,
 * leader.c, periodic.c, crypto.c, cron.c + tz.c (pure C).
 *
 * Threads: settings are parsed once during init and read-only afterwards;
 * the only mutable shared state is the leader table (leader.c, own mutex).
 * Per-job state between before_perform and after_perform lives in
 * thread-locals: a worker runs one job at a time, and both hooks run on it.
 */
#ifndef DRAY_ENT_H
#define DRAY_ENT_H

#include <pthread.h>
#include <stdint.h>

#include "dray/license.h"
#include "dray/module.h"

#include "cron.h"

#define ENT_VERSION "1.0.0"
#define ENT_NAME "enterprise"    /* module name: settings are enterprise.<key> */
#define ENT_KEY_BYTES 512        /* a Redis key we build (namespace + prefix + name) */
#define ENT_LIM_NAME_MAX 100     /* limiter names: short keys, readable in `dray limits` */
#define ENT_LOOP_NAME_MAX 100    /* periodic loop names */
#define ENT_CLASS_MAX 200        /* a job class name in our settings */
#define ENT_DIGEST_HEX 65        /* SHA-256 in hex + NUL: a unique lock's name */
#define ENT_TOKEN_BYTES 48       /* a concurrency slot's owner: jid + ':' + 16 hex */
#define ENT_MAX_LIMITS_PER_JOB 8 /* limiters applied to one class: bounds thread-local state */
#define ENT_ERR_BYTES 512        /* settings errors quote the setting */
#define ENT_CRYPTO_KEY_BYTES 32  /* XChaCha20-Poly1305 key */
#define ENT_CRYPTO_MAX_KEYS 64   /* key versions in one key file */
#define ENT_SEAL_PREFIX                                                                            \
    "$dray-enc1$"          /* a sealed secret bag starts with this (format version 1)              \
                            */
#define ENT_LEADER_SLOTS 8 /* servers in one process that elect on their own */

/* Set in dray_module_init before anything else runs. */
extern const dray_host *ent__H;
extern dray_module *ent__M;

/* ---- rate limits -------------------------------------------------------- */

typedef enum ent_lim_type {
    ENT_LIM_CONCURRENT = 'c', /* N holders; crashed holders reclaimed after lock_timeout */
    ENT_LIM_BUCKET = 'b',     /* N per wall-clock second/minute/hour/day (UTC) */
    ENT_LIM_WINDOW = 'w',     /* N per sliding interval */
    ENT_LIM_LEAKY = 'l'       /* burst N, drains at N per interval */
} ent_lim_type;

typedef struct ent_limiter {
    char *name;          /* may hold {argN} placeholders (per-tenant limiters) */
    int dynamic;         /* name has placeholders */
    int type;            /* ent_lim_type */
    long limit;          /* N */
    double interval;     /* seconds (bucket, window, leaky) */
    double lock_timeout; /* seconds a concurrent slot is held at most */
    double wait;         /* seconds a worker waits for room before deferring; 0: never */
    long reschedule;     /* deferrals before an over-limit job fails normally; 0: never defer */
    double backoff;      /* defer delay = backoff * overrated + jitter in [0, backoff) */
    double backoff_max;  /* cap on that delay; 0: none */
    long ttl;            /* seconds the limiter's metadata outlives its last use */
    char **classes;      /* classes checked in before_perform */
    size_t nclasses;
    char **queues; /* queues limited at fetch time */
    size_t nqueues;
} ent_limiter;

/* ---- unique jobs -------------------------------------------------------- */

typedef struct ent_unique_rule {
    char *klass;
    double for_s;    /* unique_for, > 0 */
    int until_start; /* 1: released when the job starts; 0: when it succeeds */
} ent_unique_rule;

/* ---- periodic jobs ------------------------------------------------------ */

typedef struct ent_loop {
    char *name; /* loop id: Redis keys and the idempotency key per tick */
    char *spec; /* the cron text as written */
    ent_cron cron;
    ent_tz *tz;
    char *klass;
    char *queue;
    json_t *args;  /* array (owned) */
    json_t *retry; /* true, false or an integer (owned) */
    int encrypt;   /* seal the last argument */
} ent_loop;

/* ---- encryption --------------------------------------------------------- */

typedef struct ent_crypto_key {
    uint32_t version;
    unsigned char k[ENT_CRYPTO_KEY_BYTES];
} ent_crypto_key;

/* ---- leader election ---------------------------------------------------- */

typedef struct ent_leader_slot {
    char identity[192]; /* the server this slot is for ("" = free) */
    int leader;         /* we hold dear-leader */
    double valid_until; /* local clock: step down at this time unless renewed */
    int retired;        /* its server is shutting down: never elect it again */
} ent_leader_slot;

/* ---- the module's state --------------------------------------------------- */

typedef struct ent_state {
    uint32_t features; /* licensed DRAY_LICENSE_F_* bits */

    ent_limiter *lim;
    size_t nlim;
    int fetch_limits; /* some limiter applies to queues at fetch time */

    ent_unique_rule *uniq;
    size_t nuniq;
    double unique_grace;       /* seconds a new lock blocks without an owner check */
    long long unique_scan_max; /* bound on an owner search in a queue or set */

    ent_loop *loops;
    size_t nloops;
    double backfill; /* seconds; 0: no backfill */

    int leader_on;      /* take part in elections */
    double lease;       /* dear-leader's TTL, seconds */
    pthread_mutex_t mu; /* guards slots */
    ent_leader_slot slots[ENT_LEADER_SLOTS];

    ent_crypto_key *keys;
    size_t nkeys;
    uint32_t active; /* version new pushes use */
    char **enc_classes;
    size_t nenc;

    const char *test_clock; /* ENT_TESTING builds: Redis key holding a fake clock */

    dray_script *s_lim_acquire, *s_lim_release, *s_lim_trim, *s_fetch_try, *s_fetch_claim,
        *s_fetch_back;
    dray_script *s_uniq_acquire, *s_uniq_update;
    dray_script *s_leader, *s_leader_release;
    dray_script *s_periodic_enqueue, *s_periodic_mark;
    dray_script *s_reseal;
} ent_state;

/* What a settings-line parser (an H->config_each callback) is given: the
 * module state and where its refusal goes (err, errlen bytes). */
typedef struct ent_parse_ctx {
    ent_state *E;
    char *err;
    size_t errlen;
} ent_parse_ctx;

/* ---- config.c: settings lines ------------------------------------------ */

/* Split a settings line into words (blank-separated); a word starting with
 * `rest_key=` takes the rest of the line. *words is one malloc'ed block
 * (free it once). Returns the count, or -1 when out of memory. */
int ent__words(const char *line, const char *rest_key, char ***words);
/* Seconds from "90", "1.5", "90s", "5m", "2h", "1d", "second", "minute",
 * "hour", "day". 0 or -1. */
int ent__duration(const char *s, double *out);
/* Whole non-negative number. 0 or -1. */
int ent__long(const char *s, long lo, long hi, long *out);
/* Limiter name: [A-Za-z0-9_-]+, with {argN} placeholders when allowed. */
int ent__lim_name_ok(const char *name, int placeholders);
/* A job class as Sidekiq writes it: [A-Za-z_][A-Za-z0-9_:]*. */
int ent__class_ok(const char *klass);
/* "<ns><prefix><name>" into buf; 0 or -1 when it does not fit. */
int ent__key(char *buf, size_t len, dray_ctx *ctx, const char *prefix, const char *name);
/* Lowercase hex of n random bytes into out (2n + 1 bytes). Cannot fail. */
void ent__rand_hex(char *out, size_t nbytes);
/* Free a NULL-terminated or counted string list. */
void ent__strv_free(char **v, size_t n);
/* Append a copy of s to *v (n entries). 0 or -1. */
int ent__strv_add(char ***v, size_t *n, const char *s);
/* Does v (n entries) contain s? */
int ent__strv_has(char *const *v, size_t n, const char *s);
/* Current time for periodic jobs: the test clock when configured, else
 * Redis TIME. 0 or a DRAY_E* code. */
int ent__clock(const ent_state *E, dray_ctx *ctx, double *out);

/* ---- settings parsers (one per feature file) ----------------------------- */

int ent__limits_configure(ent_state *E, char *err, size_t errlen);
int ent__unique_configure(ent_state *E, char *err, size_t errlen);
int ent__periodic_configure(ent_state *E, char *err, size_t errlen);
int ent__crypto_configure(ent_state *E, char *err, size_t errlen);
void ent__limits_free(ent_state *E);
void ent__unique_free(ent_state *E);
void ent__periodic_free(ent_state *E);
void ent__crypto_free(ent_state *E);

/* ---- scripts and hooks (registered by module.c) -------------------------- */

int ent__limits_scripts(ent_state *E);
int
ent__limits_hooks(ent_state *E); /* before/after_perform + the fetcher when queues are limited */
int ent__unique_scripts(ent_state *E);
int ent__unique_hooks(ent_state *E); /* push, perform, retry, death */
int ent__leader_scripts(ent_state *E);
int ent__periodic_scripts(ent_state *E);
int ent__crypto_scripts(ent_state *E);
int ent__crypto_hooks(ent_state *E); /* push (LAST), perform (LAST) */

/* Housekeeping of the limiter index, from the tick hook. */
void ent__limits_tick(ent_state *E, dray_ctx *ctx);
/* Leader election from the tick hook: 1 when ctx's server leads now. */
int ent__leader_tick(ent_state *E, dray_ctx *ctx);
/* Step down (shutdown): delete dear-leader if it names ctx's server. */
void ent__leader_release(ent_state *E, dray_ctx *ctx);
/* The leader's periodic work: enqueue due and missed ticks. */
void ent__periodic_tick(ent_state *E, dray_ctx *ctx);

/* Seal json value `plain` for class klass with the active key into a new
 * string reference (*out). 0, or -1 with err. Used by push and periodic. */
int ent__seal(const ent_state *E, const char *klass, const json_t *plain, json_t **out, char *err,
              size_t errlen);
/* Does class klass (or the job's "encrypt": true) ask for encryption? */
int ent__crypto_wanted(const ent_state *E, const char *klass);
/* Is v a sealed secret bag? */
int ent__sealed(const json_t *v);

#endif /* DRAY_ENT_H */
