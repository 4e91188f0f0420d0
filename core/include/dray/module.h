/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * dray module ABI: the only header a dray module includes (docs/modules.md).
 *
 * A module is a shared object that exports exactly one symbol,
 * dray_module_init. The core dlopen()s it (RTLD_NOW | RTLD_LOCAL) on the
 * thread that builds the server, before any worker, heartbeat or scheduler
 * thread starts, calls dray_module_init once with the host table, and never
 * unloads it. The module reaches the core ONLY through the host table: it
 * links hiredis, jansson and libsodium itself and never links libdray (the
 * functions declared by dray/dray.h are not available to a module; the
 * build refuses such a module with --no-undefined, and the nm test checks).
 *
 * Compatibility rules (SQLite's append-only rule, sized like Redis's
 * RMAPI_FUNC_SUPPORTED):
 *   - DRAY_ABI_MAJOR changes only when something is removed or reordered;
 *     every module must then be rebuilt. The core refuses a module whose
 *     major differs, or whose minor is newer than its own.
 *   - DRAY_ABI_MINOR grows when fields are appended. Nothing is ever
 *     inserted or reordered: every later field is marked "since 1.N".
 *   - Every struct that crosses the boundary starts with uint32_t
 *     struct_size. The core reads only the fields a module's struct_size
 *     covers (the rest count as zero); a module checks a host function with
 *     DRAY_HOST_HAS before calling anything newer than its minimum.
 *   - hiredis and jansson types cross only as pointers, and the build
 *     signature pins the versions whose layouts matter (redisReply changed
 *     between hiredis 0.14 and 1.0).
 *
 * Threads. Each hook runs on the thread named in its comment below; hooks of
 * the same point run concurrently on different worker threads, so every hook
 * must be thread-safe and should not block for long (queue slow work to a
 * thread of your own, opened with ctx_open). Hooks must not unwind
 * (longjmp) through the core.
 *
 * Ownership, in one place:
 *   - Strings the module hands the core (names, labels, Lua text, record
 *     strings) are copied before the call returns.
 *   - `const char *` results of host functions are borrowed: valid for the
 *     life of the process for module-level values (license key, config),
 *     for the call for ctx- and job-level values.
 *   - redisReply results belong to the caller: freeReplyObject() them.
 *   - json_t results are borrowed unless the comment says "new reference";
 *     json_t arguments are borrowed unless the comment says "stolen".
 *   - Memory the core will free (dray_unit fields) must come from
 *     host->alloc / host->strdup; memory the core returns for the module to
 *     free is released with host->free.
 */
#ifndef DRAY_MODULE_H
#define DRAY_MODULE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "dray/dray.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions and limits -------------------------------------------------- */

#define DRAY_ABI_MAJOR 1 /* bumped only when something is removed or reordered */
/* 1.1 appended the host's heartbeat_interval and dray_hook.record;
 * 1.2 appended dray_hook.push_wants;
 * 1.3 appended the host's json_load and json_dump (integers beyond 64 bits) */
#define DRAY_ABI_MINOR 3 /* bumped when something is appended */

#define DRAY_MODULE_MAGIC 0x79617264u             /* "dray": the record was really filled in */
#define DRAY_MODULE_ENTRY_NAME "dray_module_init" /* the one exported symbol */
#define DRAY_MODULE_NAME_MAX 32                   /* [a-z][a-z0-9_]*: also the config section */
#define DRAY_MODULE_ERR_BYTES 512 /* a module's error text: room for a license message */

#if defined(__GNUC__)
#define DRAY_MODULE_EXPORT __attribute__((visibility("default")))
#else
#define DRAY_MODULE_EXPORT
#endif

/* Does the host table have function `fn`? Use before calling anything newer
 * than the minor your module requires. */
#define DRAY_HOST_HAS(host, fn)                                                                    \
    ((host)->struct_size >= offsetof(dray_host, fn) + sizeof((host)->fn) && (host)->fn != NULL)

/* Hook priorities: APR-style bands. Lower runs first (push, before_perform,
 * retry, death, events, tick); after_perform unwinds in reverse. Any value
 * in [FIRST, LAST] is allowed; ties run in module load order, then
 * registration order. */
#define DRAY_PRIO_FIRST 0   /* must see the job first: decrypt in before_perform */
#define DRAY_PRIO_EARLY 10  /* admission: unique locks, expiry checks, rate limits */
#define DRAY_PRIO_MIDDLE 20 /* most hooks: batches, metrics */
#define DRAY_PRIO_LATE 30   /* needs the others' changes: notifications */
#define DRAY_PRIO_LAST 40   /* must see the final job: encrypt in push */

/* A tick hook's return value that means "never call me again". */
#define DRAY_TICK_STOP (-1.0)

/* ---- enums ------------------------------------------------------------------ */

/* Where a hook attaches. */
typedef enum dray_hook_point {
    DRAY_HOOK_PUSH = 1,     /* client: may rewrite, drop or fail a push */
    DRAY_HOOK_PERFORM = 2,  /* worker: before_perform / after_perform pair */
    DRAY_HOOK_RETRY = 3,    /* worker: a failed job was scheduled for retry */
    DRAY_HOOK_DEATH = 4,    /* worker: a job exhausted its retries (or had none) */
    DRAY_HOOK_STARTUP = 5,  /* main thread: before workers start */
    DRAY_HOOK_QUIET = 6,    /* main thread: fetching stopped */
    DRAY_HOOK_SHUTDOWN = 7, /* main thread: stopping, before running jobs are drained */
    DRAY_HOOK_TICK = 8      /* heartbeat thread: periodic work */
} dray_hook_point;

/* What a push or before_perform hook decides. */
typedef enum dray_verdict {
    DRAY_CONTINUE = 0, /* push, before_perform: go on to the next hook */
    DRAY_DROP = 1,     /* push: not written, not an error; the pusher gets DRAY_EDROPPED */
    DRAY_SKIP = 2,     /* before_perform: done without calling the handler (counted processed) */
    DRAY_DEFER = 3,    /* before_perform: back to the schedule after host->defer's seconds;
                          retry_count untouched, payload field "deferred" incremented */
    DRAY_FAIL = 4      /* push: the push fails; before_perform: the job fails and follows
                          the retry path. Set the message with host->fail */
} dray_verdict;

/* The outcome an after_perform hook sees. */
typedef enum dray_outcome {
    DRAY_OUTCOME_SUCCESS = 0,  /* the handler succeeded */
    DRAY_OUTCOME_FAILURE = 1,  /* the handler (or a later before hook) failed */
    DRAY_OUTCOME_SKIPPED = 2,  /* a later before hook returned DRAY_SKIP */
    DRAY_OUTCOME_DEFERRED = 3, /* deferred by a later before hook or by the handler */
    DRAY_OUTCOME_REQUEUED = 4  /* kept for the ABI, no longer reported: a job the shutdown
                                  pushed back that still finishes reports its own outcome
                                  (and its pushed-back copy is removed) */
} dray_outcome;

/* Which thread a context belongs to (host->ctx_thread). */
typedef enum dray_thread_kind {
    DRAY_THREAD_CLIENT = 0,    /* whatever thread called dray_client_push* */
    DRAY_THREAD_WORKER = 1,    /* a server worker */
    DRAY_THREAD_HEARTBEAT = 2, /* the server's heartbeat */
    DRAY_THREAD_MAIN = 3,      /* the thread in dray_server_run, or loading modules */
    DRAY_THREAD_MODULE = 4     /* a context the module opened with ctx_open */
} dray_thread_kind;

/* ---- opaque handles ------------------------------------------------------- */

typedef struct dray_module dray_module; /* the core's handle for one loaded module */
typedef struct dray_ctx dray_ctx;       /* one call's context: thread, Redis link, verdict */
typedef struct dray_script dray_script; /* a Lua script registered with host->script */
/* dray_job (from dray.h) is a job being pushed or performed; use the job_*
 * host functions on it, never the dray_job_* functions of libdray. */

/* ---- hooks ---------------------------------------------------------------- */

/* push: on the pushing thread (DRAY_THREAD_CLIENT; a worker when a handler
 * pushes; any thread that calls host->enqueue). ctx has the pusher's Redis
 * link. May change `job` with job_set. Returns a dray_verdict. */
typedef int (*dray_push_fn)(dray_ctx *ctx, dray_job *job, void *userdata);
/* before_perform: on a worker thread, after the payload parsed and before
 * the handler. Returns a dray_verdict; DRAY_DEFER and DRAY_FAIL are made
 * with host->defer / host->fail. */
typedef int (*dray_before_fn)(dray_ctx *ctx, dray_job *job, void *userdata);
/* after_perform: on the same worker thread, in reverse chain order, only for
 * registrations whose before hook returned DRAY_CONTINUE (or had none and
 * were reached). `outcome` is a dray_outcome. */
typedef void (*dray_after_fn)(dray_ctx *ctx, dray_job *job, int outcome, void *userdata);
/* retry: on a worker thread, after the job was written to the retry set.
 * `attempt` is the new retry_count; `next_at` the epoch time it runs again. */
typedef void (*dray_retry_fn)(dray_ctx *ctx, const dray_job *job, const char *error_class,
                              const char *message, int attempt, double next_at, void *userdata);
/* death: on a worker thread, after the job went to the dead set (or was
 * discarded because it has "retry": false). */
typedef void (*dray_death_fn)(dray_ctx *ctx, const dray_job *job, const char *error_class,
                              const char *message, void *userdata);
/* startup / quiet / shutdown: on the main thread (dray_server_run's).
 * startup runs before any worker or heartbeat thread exists and before the
 * first tick; quiet when fetching stops (signal, remote signal, or as the
 * first step of a stop); shutdown once stopping begins, while running jobs
 * may still finish. `point` is the DRAY_HOOK_* value. */
typedef void (*dray_event_fn)(dray_ctx *ctx, int point, void *userdata);
/* tick: on the heartbeat thread, at most once per heartbeat (5 s by
 * default). Returns the seconds until it is next due (0: next heartbeat;
 * rounded up to the heartbeat), or DRAY_TICK_STOP. */
typedef double (*dray_tick_fn)(dray_ctx *ctx, void *userdata);
/* record (since 1.1, DRAY_HOOK_PERFORM): on the same worker thread, after a
 * run failed or was deferred and before that outcome is written to Redis
 * (retry, dead or schedule set) or logged, only for registrations whose
 * before hook returned DRAY_CONTINUE. May change `job` with job_set (e.g.
 * put sealed args back) and rewrite `message` (NUL-terminated, `size`
 * bytes), which becomes the error_message. */
typedef void (*dray_record_fn)(dray_ctx *ctx, dray_job *job, int outcome, char *message,
                               size_t size, void *userdata);
/* push_wants (since 1.2, DRAY_HOOK_PUSH, optional): on the pushing thread,
 * before the push hooks. Returns 1 when the registration's push hook must
 * see this push, 0 when it would return DRAY_CONTINUE and leave the job
 * unchanged (then, if no hook of the chain wants the push, the core skips
 * the whole chain and writes the job on its fast path). `job` is the job as
 * the caller built it (class, queue, options and custom fields, "at" when
 * scheduled); a bulk push asks once for all its jobs, with empty args and
 * no jid, so the answer must not depend on args or jid. Must be cheap and
 * must not use Redis. NULL: the push hook sees every push. */
typedef int (*dray_push_wants_fn)(dray_ctx *ctx, const dray_job *job, void *userdata);
/* Frees a registration's userdata; see dray_hook.userdata_free. */
typedef void (*dray_free_fn)(void *userdata);

/* One hook registration. Build it with DRAY_HOOK(...) so struct_size is set:
 *   host->hook(mod, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .push = my_push,
 *                             .priority = DRAY_PRIO_EARLY, .name = "unique"));
 * Exactly the function field(s) of `point` must be set: push, before and/or
 * after, retry, death, event (STARTUP, QUIET, SHUTDOWN) or tick. */
typedef struct dray_hook {
    uint32_t struct_size;       /* sizeof(dray_hook) as the module was built */
    int point;                  /* a dray_hook_point */
    int priority;               /* DRAY_PRIO_FIRST..DRAY_PRIO_LAST (0 = FIRST) */
    const char *name;           /* label in the hook-order log; copied; NULL: module name */
    dray_push_fn push;          /* DRAY_HOOK_PUSH */
    dray_before_fn before;      /* DRAY_HOOK_PERFORM (optional if after is set) */
    dray_after_fn after;        /* DRAY_HOOK_PERFORM (optional if before is set) */
    dray_retry_fn retry;        /* DRAY_HOOK_RETRY */
    dray_death_fn death;        /* DRAY_HOOK_DEATH */
    dray_event_fn event;        /* DRAY_HOOK_STARTUP, _QUIET, _SHUTDOWN */
    dray_tick_fn tick;          /* DRAY_HOOK_TICK */
    void *userdata;             /* passed to every call; owned by the module */
    dray_free_fn userdata_free; /* called once when the registration is dropped: the module's
                                   load failed, or test teardown. Modules are never unloaded,
                                   so production never calls it after a successful load. Set
                                   it on one registration only when several share userdata */
    /* -- since 1.1 -- */
    dray_record_fn record; /* DRAY_HOOK_PERFORM, optional: see dray_record_fn */
    /* -- since 1.2 -- */
    dray_push_wants_fn push_wants; /* DRAY_HOOK_PUSH, optional: see dray_push_wants_fn */
} dray_hook;

#define DRAY_HOOK(...) (&(const dray_hook){.struct_size = sizeof(dray_hook), __VA_ARGS__})

/* ---- fetch provider ------------------------------------------------------- */

/* A fetched job as the provider hands it over. */
typedef struct dray_unit {
    uint32_t struct_size; /* set by the core before fetch */
    char *queue;          /* queue name without namespace or "queue:"; host->alloc'ed, core frees */
    char *payload;        /* the raw job JSON; host->alloc'ed, core frees */
    size_t len;           /* payload bytes */
    void *token;          /* the provider's own data (e.g. its working-list entry); the
                             provider frees it in the ONE of ack / requeue / bulk_requeue
                             that the core calls for this unit */
} dray_unit;

/* Replaces basic fetch (BRPOP) for every worker. One provider per process;
 * a second is refused with both module names. Every fetched unit gets
 * exactly one of ack (its outcome was recorded: success, retry, dead,
 * deferred, skipped) or requeue / bulk_requeue (it goes back unrun). */
typedef struct dray_fetcher {
    uint32_t struct_size; /* sizeof(dray_fetcher): use DRAY_FETCHER(...) */
    const char *name;     /* for logs; copied; NULL: module name */
    /* Worker thread. Wait up to timeout_s for one job from the queues whose
     * namespaced keys ("ns:queue:default") are given in the order to try
     * (strict or weighted, as configured). Returns 1 with *out filled, 0 on
     * timeout, or a negative DRAY_E* code (DRAY_ECONN makes the worker back
     * off and reconnect). Required. */
    int (*fetch)(dray_ctx *ctx, const char *const *queue_keys, size_t nkeys, double timeout_s,
                 dray_unit *out, void *userdata);
    /* Worker thread, after the outcome was recorded. Required. */
    int (*ack)(dray_ctx *ctx, const dray_unit *unit, void *userdata);
    /* Worker thread (fetched while going quiet) or main thread (shutdown):
     * put the unit back at the head of its queue. Required. */
    int (*requeue)(dray_ctx *ctx, const dray_unit *unit, void *userdata);
    /* Main thread at shutdown: put back every unit still running, in one go.
     * NULL: requeue is called for each. */
    int (*bulk_requeue)(dray_ctx *ctx, const dray_unit *const *units, size_t n, void *userdata);
    /* Main thread at startup, before startup hooks: take back the jobs of
     * dead processes. Continuous recovery belongs in a tick hook. May be NULL. */
    int (*recover)(dray_ctx *ctx, void *userdata);
    void *userdata;             /* passed to every call */
    dray_free_fn userdata_free; /* as in dray_hook */
} dray_fetcher;

#define DRAY_FETCHER(...) (&(const dray_fetcher){.struct_size = sizeof(dray_fetcher), __VA_ARGS__})

/* ---- build signature and module record ------------------------------------ */

/* Things that must match for the module and the core to share pointers to
 * hiredis and jansson values. Filled by DRAY_BUILD_SIG_INIT; the core
 * names the first item that differs. Frozen for ABI major 1: later items
 * are appended to dray_module_record instead. */
typedef struct dray_build_sig {
    uint16_t ptr_bytes;      /* sizeof(void *) */
    uint16_t long_bytes;     /* sizeof(long) */
    uint16_t size_bytes;     /* sizeof(size_t) */
    uint16_t time_bytes;     /* sizeof(time_t): 32-bit glibc has two */
    uint16_t hiredis_major;  /* HIREDIS_MAJOR: redisReply's layout changed in 1.0 */
    uint16_t hiredis_minor;  /* HIREDIS_MINOR: 0.x sonames carry the minor (libhiredis.so.0.14) */
    uint16_t jansson_major;  /* JANSSON_MAJOR_VERSION: json_t is stable within a major (soname 4) */
    uint16_t json_int_bytes; /* sizeof(json_int_t) */
} dray_build_sig;

#define DRAY_BUILD_SIG_INIT                                                                        \
    {                                                                                              \
        (uint16_t)sizeof(void *), (uint16_t)sizeof(long), (uint16_t)sizeof(size_t),                \
            (uint16_t)sizeof(time_t), (uint16_t)HIREDIS_MAJOR, (uint16_t)HIREDIS_MINOR,            \
            (uint16_t)JANSSON_MAJOR_VERSION, (uint16_t)sizeof(json_int_t)                          \
    }

/* Filled by the module in dray_module_init, before it calls any host
 * function (dray_module_handshake does it). The core copies the strings. */
typedef struct dray_module_record {
    uint32_t struct_size; /* sizeof(dray_module_record) as the module was built */
    uint32_t magic;       /* DRAY_MODULE_MAGIC */
    uint16_t abi_major;   /* DRAY_ABI_MAJOR the module was built with */
    uint16_t abi_minor;   /* DRAY_ABI_MINOR the module was built with */
    const char *name;     /* "pro": [a-z][a-z0-9_]*, < DRAY_MODULE_NAME_MAX; its config section */
    const char *version;  /* the module's own version, "1.0.0" */
    const char *tier;     /* "pro", "enterprise", or "free": shown by `dray license check` */
    const char *required; /* name of a module that must be loaded before this one, or NULL
                             (not `requires`: a C++20 keyword) */
    dray_build_sig sig;   /* DRAY_BUILD_SIG_INIT */
} dray_module_record;

/* ---- the host table ------------------------------------------------------- */

/* Given to dray_module_init; valid for the life of the process. Functions
 * taking `dray_module *` may be called from any thread unless they say
 * "init only"; functions taking `dray_ctx *` only on the ctx's own thread
 * and during the call that received it (or until ctx_close for ctx_open). */
typedef struct dray_host {
    uint32_t struct_size; /* sizeof(dray_host) of the core: see DRAY_HOST_HAS */
    uint16_t abi_major;   /* DRAY_ABI_MAJOR of the core */
    uint16_t abi_minor;   /* DRAY_ABI_MINOR of the core */

    /* -- since 1.0: core and errors -- */
    const char *(*core_version)(void); /* "0.1.0" */
    const char *(*strerror)(int code); /* text of a DRAY_E* code; never NULL */
    /* Set the module's error text (init refusals: the core prints it with
     * the module's path). Returns DRAY_EMODULE, so `return host->set_error(...)`. */
    int (*set_error)(dray_module *mod, const char *fmt, ...) DRAY_PRINTF(2, 3);
    /* One line describing the module's state ("Licensed to ACME Corp (pro,
     * expires 2026-12-31)"), logged after a successful load and printed by
     * `dray license check`. Init only. */
    void (*set_status)(dray_module *mod, const char *fmt, ...) DRAY_PRINTF(2, 3);
    /* 1 when the module is loaded only to be checked (`dray license check`):
     * verify, set status or error, register nothing that starts work. */
    int (*check_only)(dray_module *mod);
    /* Log a line prefixed with the module's name. Any thread. */
    void (*log)(dray_module *mod, dray_log_level level, const char *fmt, ...) DRAY_PRINTF(3, 4);
    int (*log_enabled)(dray_log_level level);

    /* -- since 1.0: memory (for anything the other side frees) -- */
    void *(*alloc)(size_t n);
    void *(*calloc)(size_t n, size_t size);
    void *(*realloc)(void *p, size_t n);
    char *(*strdup)(const char *s);
    void (*free)(void *p);

    /* -- since 1.0: registration; init only, afterwards DRAY_ESTATE -- */
    /* Stage a hook; committed only if init returns 0 and every load check
     * passes. DRAY_EINVAL (bad point, priority or functions), DRAY_ESTATE. */
    int (*hook)(dray_module *mod, const dray_hook *hook);
    /* Stage the fetch provider. DRAY_EEXIST when another module provides
     * one (the load then fails naming both). */
    int (*set_fetcher)(dray_module *mod, const dray_fetcher *fetcher);
    /* Register a Lua script (text copied) for host->eval; *out is valid for
     * the life of the process. Any time. DRAY_ENOMEM. */
    int (*script)(dray_module *mod, const char *lua, dray_script **out);

    /* -- since 1.0: license and configuration -- */
    /* The license key the operator configured: config `license`, else the
     * file named by config `license_file`, else $DRAY_LICENSE, else the file
     * named by $DRAY_LICENSE_FILE. *key (borrowed, process lifetime) is the
     * text; *origin (may be NULL) says where it came from, for messages
     * ("DRAY_LICENSE_FILE /etc/dray/license"). DRAY_ENOTFOUND when none is
     * configured; DRAY_EIO when the file cannot be read (error text set).
     * The core only transports the key: the module verifies it. */
    int (*license_key)(dray_module *mod, const char **key, const char **origin);
    /* Typed lookup of the module's own `<name>.<key>` settings (config file,
     * `--set name.key=value`, dray_server_set_config), else the environment
     * variable DRAY_<NAME>_<KEY> (upper case), else dflt. A value that does
     * not parse, or is outside [lo, hi], gives DRAY_ECONFIG with the error
     * text set (so init can return it). Strings are borrowed (process
     * lifetime). Booleans accept yes/no/true/false/on/off/1/0. */
    int (*config_str)(dray_module *mod, const char *key, const char *dflt, const char **out);
    int (*config_int)(dray_module *mod, const char *key, long long dflt, long long lo, long long hi,
                      long long *out);
    int (*config_double)(dray_module *mod, const char *key, double dflt, double lo, double hi,
                         double *out);
    int (*config_bool)(dray_module *mod, const char *key, int dflt, int *out);
    /* Call fn for every value of `<name>.<key>` in the order given (key NULL:
     * every key of the section, with the section prefix removed). Returns 0
     * or fn's first non-zero return. */
    int (*config_each)(dray_module *mod, const char *key,
                       int (*fn)(const char *key, const char *value, void *ud), void *ud);

    /* -- since 1.0: contexts, process identity and time -- */
    /* A context for Redis calls during init, on the loading thread; it
     * connects on first use to the server's Redis. NULL outside init. */
    dray_ctx *(*load_ctx)(dray_module *mod);
    /* A new context with its own Redis connection to the same server as
     * `from`, for a thread the module owns (DRAY_THREAD_MODULE). Close it
     * with ctx_close. DRAY_ENOMEM. */
    int (*ctx_open)(dray_ctx *from, dray_ctx **out);
    void (*ctx_close)(dray_ctx *ctx);       /* accepts NULL */
    int (*ctx_thread)(const dray_ctx *ctx); /* a dray_thread_kind */
    /* "host:pid:nonce" of the server on whose thread ctx runs (Sidekiq's
     * process identity), or "host:pid" on a client thread. Borrowed. */
    const char *(*identity)(const dray_ctx *ctx);
    /* The key namespace prefix with its colon ("myapp:") or "". Borrowed. */
    const char *(*ns)(const dray_ctx *ctx);
    double (*now)(void); /* the local clock, epoch seconds */
    /* The Redis server's clock (TIME), epoch seconds: licenses use the later
     * of this and the local clock. */
    int (*redis_time)(dray_ctx *ctx, double *out);

    /* -- since 1.0: Redis on the ctx's connection (the calling thread's) -- */
    /* Run one command. *out (may be NULL) receives the reply (caller frees).
     * An error reply gives DRAY_EREDIS (reply still returned); a lost link
     * DRAY_ECONN (the next call reconnects). lens NULL: strlen of each. */
    int (*redis)(dray_ctx *ctx, redisReply **out, int argc, const char **argv, const size_t *lens);
    /* The same with a hiredis format string ("SET %s %b"). */
    int (*redisf)(dray_ctx *ctx, redisReply **out, const char *fmt, ...);
    /* EVALSHA a registered script (SCRIPT LOAD on first use and after
     * NOSCRIPT: Redis restarts and SCRIPT FLUSH are invisible). argv holds
     * the nkeys keys, then the arguments. */
    int (*eval)(dray_ctx *ctx, dray_script *script, redisReply **out, int nkeys, int argc,
                const char **argv, const size_t *lens);
    /* Text of the last error on ctx's connection. Borrowed; never NULL. */
    const char *(*redis_errstr)(const dray_ctx *ctx);

    /* -- since 1.0: enqueue and schedule, through the client path -- */
    /* Push a job object (borrowed: class, args, and optionally queue, jid,
     * retry, custom fields) on ctx's connection. Push hooks run, so a module
     * pushing from its own push hook must guard against recursion. jid_out
     * (may be NULL) gets DRAY_JID_BYTES. DRAY_EDROPPED when a push hook
     * dropped it; validation errors as dray_client_push_job. */
    int (*enqueue)(dray_ctx *ctx, json_t *job, char *jid_out);
    /* The same, to run at epoch time `at` (the schedule set). */
    int (*schedule)(dray_ctx *ctx, json_t *job, double at, char *jid_out);

    /* -- since 1.0: verdict details (push and before_perform hooks) -- */
    /* Record why: the message (truncated at DRAY_ERRSTR_BYTES for a push,
     * 2 KiB for a job) and, for a push, the DRAY_E* code the pusher gets
     * (0: DRAY_EINVAL). Returns DRAY_FAIL: `return host->fail(ctx, 0, ...)`. */
    int (*fail)(dray_ctx *ctx, int code, const char *fmt, ...) DRAY_PRINTF(3, 4);
    /* Reschedule after `seconds` (> 0; minimum 0.001) with a reason for the
     * log. Returns DRAY_DEFER. before_perform only. */
    int (*defer)(dray_ctx *ctx, double seconds, const char *fmt, ...) DRAY_PRINTF(3, 4);

    /* -- since 1.0: the job (valid during the hook call) -- */
    const char *(*job_class)(const dray_job *job);              /* borrowed */
    const char *(*job_jid)(const dray_job *job);                /* borrowed */
    const char *(*job_queue)(const dray_job *job);              /* borrowed; "default" when unset */
    json_t *(*job_args)(const dray_job *job);                   /* borrowed array */
    int (*job_retry_count)(const dray_job *job);                /* -1 when it never failed */
    json_t *(*job_get)(const dray_job *job, const char *field); /* borrowed, NULL when absent */
    /* Set a top-level field (value stolen; NULL deletes). push and
     * before_perform hooks only: later hooks, the handler and the written
     * payload see the change. DRAY_ENOMEM, DRAY_ENOTFOUND (delete). */
    int (*job_set)(dray_job *job, const char *field, json_t *value);
    /* The raw payload as fetched (NUL-terminated), or NULL for a job being
     * pushed. Borrowed. */
    const char *(*job_payload)(const dray_job *job);
    /* Serialize the job as it is now; *out is freed with host->free. */
    int (*job_dump)(const dray_job *job, char **out, size_t *len);

    /* -- since 1.1: the server -- */
    /* Seconds between the heartbeats of the server loading the module
     * (config `heartbeat`, dray_options.heartbeat_s), so settings that judge
     * a process by its heartbeat can be checked against it. Init only; 0
     * outside init or without a server. */
    double (*heartbeat_interval)(dray_module *mod);

    /* -- since 1.3: JSON as the core reads and writes it -- */
    /* json_loadb with `flags`, except that an integer beyond 64 bits (a Ruby
     * bignum) loads as the core's marker string (dray_json_bigint) instead
     * of failing. New reference, or NULL with *err (may be NULL) set. */
    json_t *(*json_load)(const char *buf, size_t len, size_t flags, json_error_t *err);
    /* json_dumps with `flags`, writing every such marker back as its exact
     * digits: use it for anything the core loaded (job args) that is
     * written, hashed or sealed, since markers differ per process. Free
     * with host->free; NULL on OOM. *len (may be NULL) gets the length. */
    char *(*json_dump)(const json_t *v, size_t flags, size_t *len);
} dray_host;

/* ---- the entry point ------------------------------------------------------ */

/*
 * The module's one exported function. Fill *rec first (dray_module_handshake
 * does it and checks the host), then read configuration and the license,
 * then register hooks. Return 0 to load, or a negative DRAY_E* code after
 * host->set_error (the core stops with "module NAME (PATH) refused to
 * load: <text>"). `mod` is the module's handle for host calls: keep it.
 * Runs on the loading thread (DRAY_THREAD_MAIN) before server threads exist.
 */
DRAY_MODULE_EXPORT int dray_module_init(const dray_host *host, dray_module *mod,
                                        dray_module_record *rec);
typedef int (*dray_module_init_fn)(const dray_host *host, dray_module *mod,
                                   dray_module_record *rec);

/*
 * Fill rec for this build (struct_size, magic, ABI, build signature, the
 * given strings) and check that the host speaks our ABI major and has every
 * function of our minor. Returns 0, or DRAY_EMODULE when the host is older
 * (the core then reports the version mismatch from the record). Cannot call
 * into the host, so it is safe against any host.
 */
static inline int
dray_module_handshake(const dray_host *host, dray_module_record *rec, const char *name,
                      const char *version, const char *tier, const char *required)
{
    static const dray_build_sig sig = DRAY_BUILD_SIG_INIT;
    rec->struct_size = (uint32_t)sizeof *rec;
    rec->magic = DRAY_MODULE_MAGIC;
    rec->abi_major = DRAY_ABI_MAJOR;
    rec->abi_minor = DRAY_ABI_MINOR;
    rec->name = name;
    rec->version = version;
    rec->tier = tier;
    rec->required = required;
    rec->sig = sig;
    if (!host || host->abi_major != DRAY_ABI_MAJOR || host->struct_size < sizeof(dray_host))
        return DRAY_EMODULE;
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* DRAY_MODULE_H */
