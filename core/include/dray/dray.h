/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * dray: background jobs for C, Sidekiq-compatible on Redis.
 *
 * Thread safety: a dray_client is used by one thread at a time (give each
 * thread its own, or lock around it). A dray_server is driven from one thread
 * (dray_server_run) and may be stopped or quieted from any thread or a signal
 * handler's helper thread. dray_job values handed to handlers belong to the
 * worker thread for the duration of the call.
 *
 * Signals: a write to a Redis that went away must fail, not kill the
 * process, so the first client or server sets SIGPIPE to SIG_IGN when the
 * application left it at SIG_DFL. A handler installed by the application is
 * left alone.
 */
#ifndef DRAY_DRAY_H
#define DRAY_DRAY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DRAY_VERSION_MAJOR 0
#define DRAY_VERSION_MINOR 1
#define DRAY_VERSION_PATCH 0
#define DRAY_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define DRAY_API __attribute__((visibility("default")))
#define DRAY_HANDLERS_EXPORT __attribute__((visibility("default"))) /* handler libraries */
#define DRAY_WUR __attribute__((warn_unused_result))
#define DRAY_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* Pointer arguments (1-based positions) that must never be NULL: a NULL
 * there is a compile-time warning where the compiler can see it. Only on
 * arguments the function uses without a check (the compiler may drop a
 * NULL check on them). */
#define DRAY_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#else
#define DRAY_API
#define DRAY_HANDLERS_EXPORT
#define DRAY_WUR
#define DRAY_PRINTF(f, a)
#define DRAY_NONNULL(...)
#endif

/* Sizes of caller-owned buffers. */
#define DRAY_JID_LEN 24                   /* 12 random bytes, lowercase hex, as Sidekiq */
#define DRAY_JID_BYTES (DRAY_JID_LEN + 1) /* with the terminating NUL */
#define DRAY_JID_MAX 128                  /* longest jid accepted from other clients (UUIDs, ...) */
#define DRAY_ERRSTR_BYTES 128             /* per-object error text, hiredis-sized */
#define DRAY_QUEUE_MAX 200                /* longest queue name: keeps keys short and greppable */
#define DRAY_DEFAULT_MAX_PAYLOAD (1024 * 1024) /* 1 MiB: a bigger job is almost always a bug */
#define DRAY_DEFAULT_MAX_RETRIES 25            /* Sidekiq's default */
#define DRAY_RETRY_DEFAULT 0                   /* retry option: Sidekiq's default ("retry": true) */
#define DRAY_RETRY_NONE (-1) /* retry option: "retry": false (no retry, no dead set) */
#define DRAY_RETRY_ZERO (-2) /* retry option: "retry": 0 (no retry, then the dead set) */
#define DRAY_BACKOFF_MAX_S (180.0 * 24 * 3600) /* longest retry wait: as long as dead jobs stay */
#define DRAY_BACKTRACE_MAX 200 /* most backtrace lines kept per failure: bounds the payload */

/* Error codes: every fallible function returns 0 or one of these. */
#define DRAY_ERRNO_MAP(X)                                                                          \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EREDIS, -3, "redis command failed")                                                          \
    X(ECONN, -4, "cannot connect to redis")                                                        \
    X(EAUTH, -5, "redis authentication failed")                                                    \
    X(EURL, -6, "invalid redis url")                                                               \
    X(ETLS, -7, "bad TLS settings (CA, certificate or key)")                                       \
    X(EJSON, -8, "malformed job json")                                                             \
    X(ECLASS, -9, "job class missing or empty")                                                    \
    X(EARGS, -10, "job args must be a json array")                                                 \
    X(EQUEUE, -11, "invalid queue name")                                                           \
    X(EJID, -12, "jid must be 1-128 printable characters, no spaces")                              \
    X(EUTF8, -13, "string is not valid utf-8")                                                     \
    X(ETOOBIG, -14, "job payload exceeds the size limit")                                          \
    X(ERETRY, -15, "retry must be true, false or a non-negative integer")                          \
    X(EFIELD, -16, "invalid job field")                                                            \
    X(EDROPPED, -17, "push dropped by a client hook")                                              \
    X(ESTATE, -18, "operation not valid in this state")                                            \
    X(EEXIST, -19, "already exists")                                                               \
    X(ENOTFOUND, -20, "not found")                                                                 \
    X(EMODULE, -21, "module refused to load")                                                      \
    X(ELICENSE, -22, "license key refused")                                                        \
    X(ECONFIG, -23, "invalid configuration")                                                       \
    X(EIO, -24, "i/o error")                                                                       \
    X(ETIMEOUT, -25, "timed out")                                                                  \
    X(EUNSURE, -31, "redis link lost after sending: it may have run")

enum {
    DRAY_OK = 0,
#define DRAY__ERRNO_ENUM(name, val, text) DRAY_##name = (val),
    DRAY_ERRNO_MAP(DRAY__ERRNO_ENUM)
#undef DRAY__ERRNO_ENUM
};

/* Static text for an error code; never NULL. */
DRAY_API const char *dray_strerror(int code);
/* Symbolic name ("EINVAL") of an error code; never NULL. */
DRAY_API const char *dray_err_name(int code);
/* Library version string, e.g. "0.1.0". */
DRAY_API const char *dray_version(void);

/* ---- options ------------------------------------------------------------ */

typedef enum dray_log_level {
    DRAY_LOG_DEBUG = 0,
    DRAY_LOG_INFO = 1,
    DRAY_LOG_WARN = 2,
    DRAY_LOG_ERROR = 3,
    DRAY_LOG_OFF = 4
} dray_log_level;

/* Connection and server settings. Initialise with dray_options_init, then
 * override fields; strings are borrowed and must outlive the object built from
 * them (clients and servers copy what they keep). */
typedef struct dray_options {
    const char *redis_url;  /* NULL: $DRAY_REDIS_URL, $REDIS_URL, redis://127.0.0.1:6379/0 */
    const char *ns;         /* key namespace (Sidekiq 6 "ns:" prefix); NULL or "" for none */
    int connect_timeout_ms; /* default 2000 */
    int command_timeout_ms; /* default 5000; a worker's link waits 2 s (the fetch's block)
                               + max(this, 5000) for a reply, so only a longer Redis stall
                               can lose a popped job (docs/cli.md) */
    size_t max_payload;     /* largest job JSON in bytes; default 1 MiB */
    /* server only */
    int concurrency;          /* worker threads; default 10 */
    const char *queues;       /* "critical,3 default,1" or "a b c"; NULL: "default" */
    int shutdown_timeout_s;   /* wait for running jobs on stop; default 25 */
    int max_retries;          /* for "retry": true; default 25 */
    long dead_max_jobs;       /* dead set size cap; default 10000 */
    long dead_timeout_s;      /* dead set age cap; default 180 days */
    double poll_interval_s;   /* scheduler average; 0: 5 s x live processes, as Sidekiq */
    int heartbeat_s;          /* default 5 (Sidekiq 6) */
    const char *tag;          /* process tag shown in the Web UI; default "" */
    const char *labels;       /* comma-separated labels; default none */
    dray_log_level log_level; /* default INFO */
    int log_jobs;             /* 1: log one line per job start/finish; default 0 */
    int fetch_batch;          /* jobs taken per fetch round trip when queues are busy;
                                 default 1 (Sidekiq's BRPOP). With N > 1, each worker keeps
                                 up to N-1 fetched jobs that a graceful stop pushes back to
                                 the head of their queue; a crash (SIGKILL) loses them. */
    int timestamps_ms;        /* 0: write created_at, enqueued_at, failed_at, retried_at as
                                 float epoch seconds (read by Sidekiq 6, 7 and 8); 1: as
                                 integer epoch milliseconds, Sidekiq 8's form, which Sidekiq 6
                                 misreads (docs/sidekiq-compat.md). Readers take both. */
    int no_metrics;           /* 1: write no Sidekiq 7 execution metrics (j|date|h:m and
                                 the histograms of the Metrics page); default 0: written,
                                 as a Sidekiq 7 server does */
    /* rediss:// only (NULL: $DRAY_REDIS_TLS_*; docs/cli.md "TLS") */
    const char *redis_tls_ca_file;       /* PEM CA bundle; default: the system store */
    const char *redis_tls_ca_dir;        /* hashed CA directory; default: the system store */
    const char *redis_tls_server_name;   /* SNI and verified name; default: the URL's host */
    const char *redis_tls_cert;          /* client certificate (mutual TLS) */
    const char *redis_tls_key;           /* its key; default: inside redis_tls_cert */
    int redis_tls_insecure_skip_verify;  /* 1: accept any certificate (insecure) */
    const char *redis_sentinel_password; /* redis-sentinel://: AUTH for the sentinels
                                            (NULL: $DRAY_REDIS_SENTINEL_PASSWORD) */
} dray_options;

/* Fill *o with defaults. Cannot fail. */
DRAY_API void dray_options_init(dray_options *o) DRAY_NONNULL(1);

/* ---- jobs --------------------------------------------------------------- */

typedef struct dray_job dray_job;

/* Build a new job of class klass with args (a JSON array, reference stolen;
 * NULL means []). A fresh jid and created_at are set. Free with dray_job_free.
 * Returns DRAY_ECLASS, DRAY_EARGS, DRAY_ENOMEM. */
DRAY_API DRAY_WUR int dray_job_new(const char *klass, json_t *args, dray_job **out) DRAY_NONNULL(3);
/* Parse and validate a Sidekiq job payload (len bytes; NUL not needed). Every
 * field, known or not, is kept. On failure *out is NULL and errbuf (may be
 * NULL) names the field or cause. */
DRAY_API DRAY_WUR int dray_job_parse(const char *buf, size_t len, size_t max_payload,
                                     dray_job **out, char *errbuf, size_t errlen) DRAY_NONNULL(4);
/* Serialize to compact JSON; *out is malloc'ed, free with free(). */
DRAY_API DRAY_WUR int dray_job_dump(const dray_job *job, char **out, size_t *outlen)
    DRAY_NONNULL(1, 2);
/* Validate a job in memory (the same checks as parse). */
DRAY_API DRAY_WUR int dray_job_validate(const dray_job *job, size_t max_payload, char *errbuf,
                                        size_t errlen) DRAY_NONNULL(1);
DRAY_API void dray_job_free(dray_job *job);

DRAY_API const char *dray_job_class(const dray_job *job) DRAY_NONNULL(1); /* borrowed */
DRAY_API const char *dray_job_jid(const dray_job *job) DRAY_NONNULL(1);   /* borrowed */
DRAY_API const char *dray_job_queue(const dray_job *job)
    DRAY_NONNULL(1); /* borrowed; "default" if unset */
DRAY_API json_t *dray_job_args(const dray_job *job) DRAY_NONNULL(1); /* borrowed array */
/* retry_count field, or -1 when the job has never failed. */
DRAY_API int dray_job_retry_count(const dray_job *job) DRAY_NONNULL(1);
/* An integer beyond 64 bits in a payload (any Ruby bignum, e.g. 2**64)
 * arrives as a json string marker; this returns its exact decimal digits
 * ("-" first when negative; borrowed, lives as long as v), or NULL when v is
 * not such a marker. Retry, dead and scheduler writes keep the digits. */
DRAY_API const char *dray_json_bigint(const json_t *v);
/* The raw payload the worker fetched, or NULL for a job built in memory. */
DRAY_API const char *dray_job_payload(const dray_job *job) DRAY_NONNULL(1);
/* Any top-level field (custom ones included); borrowed, NULL when absent. */
DRAY_API json_t *dray_job_get(const dray_job *job, const char *field) DRAY_NONNULL(1);
/* Set a top-level field; the reference to value is stolen. NULL deletes. */
DRAY_API DRAY_WUR int dray_job_set(dray_job *job, const char *field, json_t *value) DRAY_NONNULL(1);
/* The whole payload object (borrowed); changes are visible to dray_job_dump. */
DRAY_API json_t *dray_job_json(const dray_job *job) DRAY_NONNULL(1);

/* Write a new random jid (24 lowercase hex + NUL) into out. Cannot fail. */
DRAY_API void dray_jid_new(char out[DRAY_JID_BYTES]) DRAY_NONNULL(1);
/* Current time as float epoch seconds (Sidekiq's timestamp format). */
DRAY_API double dray_now(void);
/* A job timestamp as epoch seconds, in either form Sidekiq writes: float
 * seconds (6.x, 7.x) or integer milliseconds (8.x). Any number above 1e11
 * (the year 5138 in seconds) is taken as milliseconds. 0 when v is NULL or
 * not a number. Cannot fail. */
DRAY_API double dray_time_from_json(const json_t *v);

/* ---- producer ----------------------------------------------------------- */

typedef struct dray_client dray_client;

/* Per-push options; zero-initialise then set what you need. */
typedef struct dray_push_opts {
    const char *queue; /* NULL: "default" (or the job's own queue for dray_client_push_job) */
    int retry;         /* DRAY_RETRY_DEFAULT (0), _NONE, _ZERO, or max retries > 0 */
    double at;         /* run at this epoch time (seconds); 0: now */
    double in;         /* run after this many seconds; 0: now */
    json_t *extra;     /* object of custom top-level fields (borrowed), or NULL */
} dray_push_opts;

/* Connect (lazily: the first command connects). The options are copied.
 * Returns DRAY_EURL/DRAY_ETLS for a bad URL, with the reason in errbuf. */
DRAY_API DRAY_WUR int dray_client_new(const dray_options *opts, dray_client **out, char *errbuf,
                                      size_t errlen) DRAY_NONNULL(2);
DRAY_API void dray_client_free(dray_client *c);
/* Text of the last error on c (never NULL). */
DRAY_API const char *dray_client_errstr(const dray_client *c) DRAY_NONNULL(1);

/* Push one job of class klass with args (borrowed JSON array). With at/in in
 * the future it goes to the schedule set instead. jid_out (may be NULL)
 * receives the jid. One round trip, all or nothing, and never written twice:
 * on any failure but DRAY_EUNSURE nothing is written. DRAY_EUNSURE: the link
 * failed after the whole push was sent (a timeout, a Redis that stalled or
 * closed the link); the job is in Redis once or not at all (look for its jid
 * before pushing it again). A push is retried only when it cannot have run. */
DRAY_API DRAY_WUR int dray_client_push(dray_client *c, const char *klass, json_t *args,
                                       const dray_push_opts *opts, char *jid_out) DRAY_NONNULL(1);
/* Push a job built with dray_job_new/parse. The job gains jid, queue,
 * enqueued_at as needed; the caller still owns it. */
DRAY_API DRAY_WUR int dray_client_push_job(dray_client *c, dray_job *job,
                                           const dray_push_opts *opts) DRAY_NONNULL(1, 2);
/* Push n jobs of one class: args_list is a JSON array of args arrays
 * (borrowed). jids_out (may be NULL) receives n jids, DRAY_JID_BYTES apart
 * (all zero for a job a hook dropped). Jobs are sent in chunks of up to 1000,
 * each chunk atomic, 8 chunks per round trip. *pushed counts exactly the jobs
 * Redis took, on success and on every error but DRAY_EUNSURE. A refused job
 * (bad args, too big, a hook's error) stops the call: the round trips already
 * done stay written, nothing buffered with it is sent (a refusal among the
 * first 8000 jobs writes nothing). A chunk Redis refused is not written and
 * stops the call after its round trip. DRAY_EUNSURE: the link failed after
 * chunks were sent; those not counted may each be in Redis once, not twice. */
DRAY_API DRAY_WUR int dray_client_push_bulk(dray_client *c, const char *klass, json_t *args_list,
                                            const dray_push_opts *opts, char *jids_out,
                                            size_t *pushed) DRAY_NONNULL(1);

/* ---- server (worker process) -------------------------------------------- */

typedef struct dray_server dray_server;
typedef struct dray_result dray_result;

/* A handler runs one job on a worker thread. Return 0 on success. To fail,
 * call dray_result_fail (or just return non-zero: the error is then
 * "RuntimeError"). Handlers may be called concurrently. */
typedef int (*dray_handler_fn)(dray_job *job, dray_result *res, void *userdata);

/* Record a failure: error class (e.g. "ArgumentError") and message. Returns
 * -1 so a handler can write `return dray_result_fail(...)`. */
DRAY_API int dray_result_fail(dray_result *res, const char *error_class, const char *fmt, ...)
    DRAY_PRINTF(3, 4);
/* Ask for this job to be retried after `seconds` without spending a retry;
 * returns -1. */
DRAY_API int dray_result_defer(dray_result *res, double seconds, const char *reason);
/* Add one line (e.g. "parse.c:12:in `parse_row'") to the backtrace stored
 * with a failure of a job whose payload asks for one ("backtrace": true or
 * N). Lines added replace the stack that dray_result_fail captures; at most
 * DRAY_BACKTRACE_MAX are kept. DRAY_EINVAL for NULL; DRAY_ENOMEM. */
DRAY_API DRAY_WUR int dray_result_backtrace_add(dray_result *res, const char *line);

/* Backoff: seconds until the next retry for a job that has failed count+1
 * times. Return DRAY_BACKOFF_DISCARD to drop the job (no retry, no dead set;
 * death handlers run; Sidekiq's :discard) or DRAY_BACKOFF_KILL to send it
 * to the dead set now (Sidekiq's :kill). Any other value < 0 (or NaN) means
 * the default (count^4 + 15 + jitter). Any
 * delay, the default's too, is capped at DRAY_BACKOFF_MAX_S. A payload's
 * negative retry_count makes the next count 0; one near INT_MAX saturates. */
typedef double (*dray_backoff_fn)(const dray_job *job, int count, void *userdata);
#define DRAY_BACKOFF_DISCARD (-1e300) /* backoff answer: drop the job (Sidekiq :discard) */
#define DRAY_BACKOFF_KILL (-2e300)    /* backoff answer: to the dead set now (Sidekiq :kill) */

/* Per-class options; zero-initialise. */
typedef struct dray_class_opts {
    int retry;               /* 0: job's own "retry"; DRAY_RETRY_NONE/_ZERO; > 0: max retries */
    int dead;                /* 0: default (to the dead set); -1: "dead": false */
    const char *retry_queue; /* retries go to this queue; NULL: job's queue */
    dray_backoff_fn backoff; /* NULL: Sidekiq's formula */
    void *backoff_userdata;
    double retry_for; /* > 0: retry for this many seconds after the first failure,
                         whatever the count (Sidekiq 7.1 retry_for); 0: the job's own
                         "retry_for", if any */
} dray_class_opts;

/* Called for every failure (error handlers) or exhausted job (death
 * handlers), on a worker thread. */
typedef void (*dray_error_fn)(const dray_job *job, const char *error_class, const char *message,
                              void *userdata);

DRAY_API DRAY_WUR int dray_server_new(const dray_options *opts, dray_server **out, char *errbuf,
                                      size_t errlen) DRAY_NONNULL(2);
/* Free the server. Never while dray_server_run runs (call it after run
 * returns). A handler still running then (it outlived the shutdown timeout or
 * stop_now; its job was requeued) uses the server: free waits for it to
 * return, however long that takes. dray_server_wait says whether it would. */
DRAY_API void dray_server_free(dray_server *s);
/* After dray_server_run returned: wait up to timeout_s (0: just look) for
 * handlers still running. 0 when none runs (dray_server_free will not block);
 * DRAY_ESTATE when some still do. Same thread as dray_server_run. */
DRAY_API DRAY_WUR int dray_server_wait(dray_server *s, double timeout_s) DRAY_NONNULL(1);
DRAY_API const char *dray_server_errstr(const dray_server *s) DRAY_NONNULL(1);
/* Register a handler before dray_server_run. copts may be NULL. */
DRAY_API DRAY_WUR int dray_server_register(dray_server *s, const char *klass, dray_handler_fn fn,
                                           void *userdata, const dray_class_opts *copts)
    DRAY_NONNULL(1);
DRAY_API DRAY_WUR int dray_server_on_error(dray_server *s, dray_error_fn fn, void *userdata)
    DRAY_NONNULL(1);
DRAY_API DRAY_WUR int dray_server_on_death(dray_server *s, dray_error_fn fn, void *userdata)
    DRAY_NONNULL(1);
/* Send every finished job to statsd at addr ("host:port", UDP) as Sidekiq
 * Pro's metrics: jobs.count, jobs.success / jobs.failure, jobs.perform (ms);
 * dogstatsd 1 tags them "#worker:<class>,queue:<q>", 0 adds per-class names
 * (jobs.<Class>.success, jobs.<Class>.perform). prefix ("myapp.") may be
 * NULL. Never delays a job: datagrams a full or absent listener refuses are
 * dropped. Before dray_server_run. DRAY_ECONFIG (reason in
 * dray_server_errstr) when addr cannot be resolved. */
DRAY_API DRAY_WUR int dray_server_statsd(dray_server *s, const char *addr, int dogstatsd,
                                         const char *prefix);
/* This process's figures as Prometheus text (version 0.0.4), from counters
 * kept in memory since start: processed/failed, busy threads, the Redis
 * round trip of the last heartbeat, per-class counts and a histogram of
 * successful run times. What `dray run --metrics-listen` serves. *out is
 * malloc'ed (free with free()), *len its length (len may be NULL). While
 * the server runs, from any thread. DRAY_ENOMEM. */
DRAY_API DRAY_WUR int dray_server_metrics_text(dray_server *s, char **out, size_t *len);
/* Load handlers from a shared library exporting
 * `int dray_register_handlers(dray_server *s)`. */
DRAY_API DRAY_WUR int dray_server_require(dray_server *s, const char *path) DRAY_NONNULL(1);
/* Implemented by a handler library, not by libdray: the one function
 * dray_server_require (and `dray run --require`) calls, after dlopen. It
 * registers the library's classes and returns 0, or a DRAY_E* code that
 * stops the load. Declared here with DRAY_HANDLERS_EXPORT (default
 * visibility), so a library built with -fvisibility=hidden and
 * -Wmissing-prototypes exports it with a plain definition. */
DRAY_HANDLERS_EXPORT int dray_register_handlers(dray_server *s);
/* Run until stopped: starts the workers, scheduler and heartbeat, blocks.
 * Returns 0 after a clean stop. */
DRAY_API DRAY_WUR int dray_server_run(dray_server *s) DRAY_NONNULL(1);
/* Process isolation (dray run --processes N, --isolate; docs/cli.md). */
typedef struct dray_process_opts {
    int processes;   /* worker children kept running, 1-1024 */
    int isolate;     /* 1: each child runs one job, then exits and is replaced */
    int crash_limit; /* a job that killed its child this many times goes to the dead set
                        (error_class Dray::ChildCrashed); <= 0: 3 */
} dray_process_opts;
/* Instead of dray_server_run, after handlers and modules are loaded: fork
 * po->processes children that each run the server (own identity and process
 * record) and supervise them until dray_server_stop: a child that dies is
 * restarted (with backoff when it keeps dying) and the jobs it was running
 * are requeued (at-least-once) or sent to the dead set at crash_limit; a job
 * past its timeout has its child killed and goes through the retry path as
 * Dray::JobTimeout. Stop/quiet/dump are forwarded to every child. Call from
 * a process with no other threads. 0 after a clean stop; DRAY_EINVAL,
 * DRAY_ENOMEM. */
DRAY_API DRAY_WUR int dray_server_run_processes(dray_server *s, const dray_process_opts *po)
    DRAY_NONNULL(1);
/* A timeout in seconds (0: none) for jobs of a registered class; a job's own
 * "timeout" field wins. Before run. DRAY_ENOTFOUND for an unknown class. */
DRAY_API DRAY_WUR int dray_server_set_timeout(dray_server *s, const char *klass, double seconds)
    DRAY_NONNULL(1);
/* In a handler: the epoch seconds at which the running job's timeout ends
 * (its "timeout" field, else its class's), or 0 when it has none. */
DRAY_API double dray_job_deadline(const dray_job *job);
/* In a handler: 1 once the job is flagged to stop (in thread mode, the
 * heartbeat saw it past its deadline, or cancelled by dray_api_cancel, and
 * logged it), else 0. A handler that polls it can give up cleanly (a failure
 * of a cancelled job is not retried); nothing stops one that does not. */
DRAY_API int dray_job_cancelled(const dray_job *job);
/* Quiet: stop fetching new jobs; running jobs finish. Any thread. */
DRAY_API void dray_server_quiet(dray_server *s) DRAY_NONNULL(1);
/* Stop: quiet, wait up to the shutdown timeout, requeue what is left, exit
 * dray_server_run. A requeued job whose handler still finishes has its
 * outcome recorded and its requeued copy removed, so it does not run again.
 * Through a Redis outage the requeues and outcomes retry for up to 15 s
 * before each payload is logged whole as lost. Any thread; async-signal-safe. */
DRAY_API void dray_server_stop(dray_server *s) DRAY_NONNULL(1);
/* Stop at once (requeueing running jobs without waiting). Async-signal-safe. */
DRAY_API void dray_server_stop_now(dray_server *s) DRAY_NONNULL(1);
/* Log each worker's current job (SIGTTIN). Async-signal-safe. */
DRAY_API void dray_server_dump(dray_server *s) DRAY_NONNULL(1);
/* This process's identity ("host:pid:nonce"). */
DRAY_API const char *dray_server_identity(const dray_server *s) DRAY_NONNULL(1);

/* Counters since start (for demos and tests). */
typedef struct dray_server_counts {
    uint64_t processed; /* every attempt, as Sidekiq counts */
    uint64_t failed;
    uint64_t busy;       /* jobs running now */
    uint64_t fetch_lost; /* blocking fetches whose reply was lost: each may have popped a job
                            (logged at ERROR; also summed in Redis key stat:fetch_lost) */
} dray_server_counts;
DRAY_API void dray_server_counts_get(const dray_server *s, dray_server_counts *out)
    DRAY_NONNULL(1, 2);

/* ---- modules (the ABI they are built against is dray/module.h) ---------- */

struct dray_config; /* inspect.h: configuration files */

/* Give modules a setting: `license` (a key), `license_file` (a path), or a
 * module's own `<name>.<key>` (repeatable; values are appended). Set them
 * before loading the module that reads them. DRAY_ECONFIG for any other
 * key; DRAY_ENOMEM. */
DRAY_API DRAY_WUR int dray_server_set_config(dray_server *s, const char *key, const char *value)
    DRAY_NONNULL(1);
/* Load a module into this process: its hooks apply to every client and
 * server of the process, and it is never unloaded. Call before
 * dray_server_run (DRAY_ESTATE after); dray_server_run itself also loads the
 * colon-separated paths of $DRAY_MODULES that are not loaded yet. A refusal
 * returns DRAY_EMODULE (or the module's own code: DRAY_ELICENSE,
 * DRAY_ECONFIG, ...) with a message naming the file and the reason in
 * errbuf (may be NULL) and dray_server_errstr. */
DRAY_API DRAY_WUR int dray_server_load_module(dray_server *s, const char *path, char *errbuf,
                                              size_t errlen) DRAY_NONNULL(1);
/* For `dray run`: pass every `license`, `license_file` and `<section>.<key>`
 * entry of cfg to dray_server_set_config, then load each `module` of cfg in
 * order, stopping at the first refusal. */
DRAY_API DRAY_WUR int dray_server_load_modules(dray_server *s, const struct dray_config *cfg,
                                               char *errbuf, size_t errlen) DRAY_NONNULL(1, 2);

/* What a module says about itself when checked (`dray license check`). */
typedef struct dray_module_verdict {
    int rc;            /* 0: it would load; else the refusal's DRAY_E* code */
    int warnings;      /* warnings it logged while loading (license expiring, in grace) */
    char name[32];     /* the module's name, or "" when it never gave one */
    char version[32];  /* its version, or "" */
    char tier[16];     /* "pro", "enterprise", ... or "" */
    char message[512]; /* rc 0: its status line ("Licensed to ..."); else the refusal */
    char warning[512]; /* the last warning it logged, or "" */
} dray_module_verdict;
typedef void (*dray_module_verdict_fn)(const char *path, const dray_module_verdict *v,
                                       void *userdata);
/* Load the module at path in check mode, with the settings given so far: it
 * verifies its license and registers nothing that runs, and is unloaded
 * again. Fills *out; returns out->rc. */
DRAY_API DRAY_WUR int dray_server_check_module(dray_server *s, const char *path,
                                               dray_module_verdict *out) DRAY_NONNULL(1, 3);
/* For `dray license check`: the settings of cfg as dray_server_load_modules,
 * then dray_server_check_module on each `module` of cfg, calling fn (may be
 * NULL) with each verdict. Returns how many would be refused, or a
 * negative DRAY_E* code when the settings are bad. */
DRAY_API DRAY_WUR int dray_server_check_modules(dray_server *s, const struct dray_config *cfg,
                                                dray_module_verdict_fn fn, void *userdata)
    DRAY_NONNULL(1, 2);

/* ---- logging ------------------------------------------------------------ */

typedef void (*dray_log_fn)(dray_log_level level, const char *line, void *userdata);
/* Replace the log sink (default: stderr). Process-wide; call before starting. */
DRAY_API void dray_log_set_sink(dray_log_fn fn, void *userdata);
DRAY_API void dray_log_set_level(dray_log_level level);
/* Line format of the default and user sinks: 0 text ("<time> <LEVEL>
 * <thread> jid=.. class=.. elapsed=..ms message"), 1 JSON (one object a
 * line with the same fields: ts, level, thread, jid, class, elapsed_ms,
 * msg, and payload_bytes/payload for lost-job dumps). Process-wide. */
#define DRAY_LOG_FORMAT_TEXT 0
#define DRAY_LOG_FORMAT_JSON 1
DRAY_API void dray_log_set_format(int format);

#ifdef __cplusplus
}
#endif

#include "dray/inspect.h" /* inspection API (queues, sets, processes, stats) and config files */

#endif /* DRAY_DRAY_H */
