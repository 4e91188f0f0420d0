/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Inspection API (queues, retry/scheduled/dead sets, processes, stats) and
 * configuration files. Included by dray.h.
 *
 * Thread safety: a dray_api owns one Redis connection and is used by one
 * thread at a time. A dray_config has no lock: fill it from one thread, then
 * read it from any.
 *
 * Everything here reads and writes Sidekiq 6's keys (with the optional
 * namespace of dray_options.ns), so it works on queues and processes of Ruby
 * Sidekiq as well as dray's. */
#ifndef DRAY_INSPECT_H
#define DRAY_INSPECT_H

#include "dray/dray.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- inspection --------------------------------------------------------- */

typedef struct dray_api dray_api;

/* The three sorted sets of jobs. */
typedef enum dray_set {
    DRAY_SET_RETRY = 0,    /* "retry": failed jobs waiting for their next attempt */
    DRAY_SET_SCHEDULE = 1, /* "schedule": jobs pushed to run later */
    DRAY_SET_DEAD = 2      /* "dead": the morgue */
} dray_set;

/* Sidekiq::Stats. */
typedef struct dray_stats {
    long long processed;          /* stat:processed */
    long long failed;             /* stat:failed */
    long long scheduled_size;     /* jobs in the schedule set */
    long long retry_size;         /* jobs in the retry set */
    long long dead_size;          /* jobs in the dead set */
    long long processes_size;     /* members of the processes set (live or recently live) */
    long long enqueued;           /* jobs waiting in all known queues */
    long long workers_size;       /* jobs running now, summed over the process heartbeats */
    double default_queue_latency; /* seconds the oldest job of "default" has waited; 0 if empty */
} dray_stats;

/* One queue (Sidekiq::Queue). */
typedef struct dray_queue_info {
    char *name;     /* queue name without the "queue:" prefix */
    long long size; /* LLEN */
    double latency; /* seconds since the oldest job was enqueued; 0 if empty */
} dray_queue_info;

/* One live process (Sidekiq::Process), from its heartbeat. */
typedef struct dray_process_info {
    char *identity;    /* "host:pid:nonce", the member of the processes set */
    char *hostname;    /* "" when the heartbeat does not say */
    char *tag;         /* "" when none */
    char *queues;      /* comma-separated, in the process's order */
    char *labels;      /* comma-separated; "" when none */
    char *info;        /* the raw "info" JSON, for fields not listed here */
    long pid;          /* 0 when unknown */
    int concurrency;   /* worker threads */
    int busy;          /* jobs running at the last beat */
    int quiet;         /* 1: quiet or stopping (fetches no new jobs) */
    double beat;       /* last heartbeat, epoch seconds */
    double started_at; /* epoch seconds; 0 when unknown */
    long rss_kb;       /* resident memory at the last beat */
    long rtt_us;       /* Redis round trip at the last beat */
    char *version;     /* "version" ("dray 0.1.0", "7.3.9"); "" when the process does not say */
} dray_process_info;

/* One member of a job set. The parsed fields are NULL (or -1) when the
 * member lacks them or is not JSON; member is always the exact bytes. */
typedef struct dray_set_entry {
    double score;        /* retry/schedule: when it runs; dead: when it died (epoch s) */
    char *member;        /* the raw JSON member, NUL-terminated */
    size_t member_len;   /* bytes in member, without the NUL */
    char *jid;           /* "jid" */
    char *klass;         /* "class" */
    char *queue;         /* "queue" */
    char *error_class;   /* "error_class" */
    char *error_message; /* "error_message" */
    int retry_count;     /* "retry_count", or -1 when absent */
    double created_at;   /* job timestamps as epoch seconds (float seconds and Sidekiq 8's */
    double enqueued_at;  /*   integer ms both read, dray_time_from_json); 0 when absent */
    double failed_at;
    double retried_at;
} dray_set_entry;

/* Connect lazily (the first call connects). Options are copied; only the
 * connection fields, ns, dead_max_jobs and dead_timeout_s are used (0 means
 * Sidekiq's defaults: 10000 jobs, 180 days). DRAY_EURL/DRAY_ETLS/
 * DRAY_ECONFIG with the reason in errbuf. Free with dray_api_free. */
DRAY_API DRAY_WUR int dray_api_new(const dray_options *opts, dray_api **out, char *errbuf,
                                   size_t errlen) DRAY_NONNULL(2);
/* Close the connection and free api. Accepts NULL. */
DRAY_API void dray_api_free(dray_api *api);
/* Text of the last error on api (never NULL; "" after success). */
DRAY_API const char *dray_api_errstr(const dray_api *api) DRAY_NONNULL(1);

/* Sidekiq::Stats in two round trips. DRAY_ECONN/DRAY_EREDIS on failure. */
DRAY_API DRAY_WUR int dray_api_stats_get(dray_api *api, dray_stats *out) DRAY_NONNULL(1, 2);

/* Every queue of the "queues" set, sorted by name, with size and latency.
 * *out is an array of *n entries (NULL when 0); free with dray_api_queues_free. */
DRAY_API DRAY_WUR int dray_api_queues_list(dray_api *api, dray_queue_info **out, size_t *n)
    DRAY_NONNULL(1, 2, 3);
DRAY_API void dray_api_queues_free(dray_queue_info *q, size_t n);

/* Live processes, sorted by identity: members of "processes" whose
 * <identity> hash still has "info" (others are skipped, not pruned).
 * Free with dray_api_processes_free. */
DRAY_API DRAY_WUR int dray_api_processes_list(dray_api *api, dray_process_info **out, size_t *n)
    DRAY_NONNULL(1, 2, 3);
DRAY_API void dray_api_processes_free(dray_process_info *p, size_t n);

/* Name of a set's key without namespace ("retry", "schedule", "dead"), or
 * NULL for a bad value. */
DRAY_API const char *dray_set_name(dray_set set);
/* Parse "retry"/"retries", "schedule"/"scheduled", "dead"/"morgue";
 * DRAY_EINVAL for anything else. */
DRAY_API DRAY_WUR int dray_set_parse(const char *name, dray_set *out) DRAY_NONNULL(2);
/* Members of a set (ZCARD). */
DRAY_API DRAY_WUR int dray_api_set_size(dray_api *api, dray_set set, long long *out)
    DRAY_NONNULL(1, 3);
/* One page of a set: `limit` entries (0: all) from `offset`, in the Web
 * UI's order: retry and schedule soonest first, dead newest first.
 * Free with dray_api_entries_free. */
DRAY_API DRAY_WUR int dray_api_set_list(dray_api *api, dray_set set, size_t offset, size_t limit,
                                        dray_set_entry **out, size_t *n) DRAY_NONNULL(1, 5, 6);
/* The entry whose parsed "jid" equals jid (ZSCAN, O(set size)).
 * DRAY_ENOTFOUND when there is none. Free with dray_api_entries_free(*out, 1). */
DRAY_API DRAY_WUR int dray_api_set_find(dray_api *api, dray_set set, const char *jid,
                                        dray_set_entry **out) DRAY_NONNULL(1, 4);
/* Free n entries and the array. Accepts NULL. */
DRAY_API void dray_api_entries_free(dray_set_entry *e, size_t n);

/* "Retry now", as Sidekiq's API: the member leaves the set and its job is
 * pushed to its queue (SADD queues, LPUSH queue:<q>) with a fresh
 * enqueued_at. From the retry and dead sets retry_count is decremented
 * first (SortedEntry#retry); from the schedule set the job goes unchanged
 * (#add_to_queue). One Lua script: the ZREM decides, so a job is moved
 * once even against the scheduler or another operator. DRAY_ENOTFOUND when
 * no member has this jid; DRAY_EQUEUE when its queue name is invalid (the
 * job stays). */
DRAY_API DRAY_WUR int dray_api_set_retry(dray_api *api, dray_set set, const char *jid)
    DRAY_NONNULL(1);
/* Remove the member with this jid (ZREM). DRAY_ENOTFOUND when none. */
DRAY_API DRAY_WUR int dray_api_set_delete(dray_api *api, dray_set set, const char *jid)
    DRAY_NONNULL(1);
/* Move the member with this jid to the dead set unchanged, scored now, and
 * trim the dead set as Sidekiq does (older than dead_timeout_s, beyond
 * dead_max_jobs), in one Lua script. Death handlers are not called (they
 * live in worker processes). DRAY_EINVAL for the dead set itself;
 * DRAY_ENOTFOUND when no member has this jid. */
DRAY_API DRAY_WUR int dray_api_set_kill(dray_api *api, dray_set set, const char *jid)
    DRAY_NONNULL(1);

/* Send a remote signal to a process, as Sidekiq's Process#quiet! ("TSTP"),
 * #stop! ("TERM") and #dump_threads ("TTIN"): LPUSH <identity>-signals and
 * EXPIRE it 60 s; the process reads it at its next heartbeat. DRAY_EINVAL
 * for another signal; DRAY_ENOTFOUND when identity is not in the processes
 * set (the check and the push are one script). */
DRAY_API DRAY_WUR int dray_api_signal(dray_api *api, const char *identity, const char *signal)
    DRAY_NONNULL(1);

/* What dray_api_cancel found. */
typedef enum dray_cancel_outcome {
    DRAY_CANCEL_NOT_FOUND = 0, /* in no queue, set or running record: done, or never pushed */
    DRAY_CANCEL_REMOVED = 1,   /* taken out of a queue or the schedule/retry set: never runs */
    DRAY_CANCEL_RUNNING = 2    /* a worker has it: flagged (thread mode) or its child killed */
} dray_cancel_outcome;

/* The result of dray_api_cancel. */
typedef struct dray_cancel_result {
    dray_cancel_outcome outcome; /* see above */
    char where[300]; /* "queue:<q>", "schedule", "retry", the running process's identity, or "" */
} dray_cancel_result;

/* Cancel the job with this jid. First records the cancellation in
 * <ns>dray:cancel:<jid> (a hash kept 24 h) and the index <ns>dray:cancels,
 * bumps the cancel epoch and waits (up to 6 s; about one second usually)
 * until every live dray process acknowledged it, so a worker that starts
 * the job from then on does not run it; then removes it from the schedule
 * and retry sets (ZSCAN, ZREM of the exact member) or a queue (LRANGE a
 * page at a time, LREM of the exact payload): a removal that succeeds means
 * no worker or poller has it. Otherwise a running job is flagged at its
 * worker's next heartbeat (dray_job_cancelled returns 1) or, under
 * --processes, its child is killed and the job is not retried. The outcome
 * is written to the record ("acked", "late", "outcome", "where", "at";
 * workers add "worker", "worker_at", "by"). 0 with *out filled;
 * DRAY_ENOTFOUND (out->outcome NOT_FOUND) when no queue, set or process has
 * it; DRAY_EINVAL for an empty jid; DRAY_ECONN/EREDIS. */
DRAY_API DRAY_WUR int dray_api_cancel(dray_api *api, const char *jid, dray_cancel_result *out);

/* Pause a queue (as Sidekiq Pro's Queue#pause!): SADD it to the set "paused".
 * No dray worker fetches from a paused queue; its jobs stay in it, and
 * pushes to it go on. Workers notice within 3 s. Pausing a paused queue or
 * a queue with no jobs is fine. DRAY_EQUEUE for an invalid name. */
DRAY_API DRAY_WUR int dray_api_queue_pause(dray_api *api, const char *queue);
/* Resume a queue (Queue#unpause!): SREM it from "paused". */
DRAY_API DRAY_WUR int dray_api_queue_resume(dray_api *api, const char *queue);
/* *out 1 when the queue is paused, else 0 (SISMEMBER). */
DRAY_API DRAY_WUR int dray_api_queue_paused(dray_api *api, const char *queue, int *out);
/* Every paused queue name, sorted: *out an array of *n strings (NULL when
 * 0); free with dray_api_paused_free. */
DRAY_API DRAY_WUR int dray_api_paused_list(dray_api *api, char ***out, size_t *n);
/* Free a dray_api_paused_list result. Accepts NULL. */
DRAY_API void dray_api_paused_free(char **names, size_t n);

/* Run one Redis command on the API's connection (keys are given whole: add
 * dray_api_namespace yourself). *out is the reply as JSON, a new reference:
 * strings, integers, arrays, null. An error reply is DRAY_EREDIS with its
 * text in dray_api_errstr. For tools that read module keys (docs/redis-keys.md). */
DRAY_API DRAY_WUR int dray_api_command(dray_api *api, int argc, const char **argv, json_t **out)
    DRAY_NONNULL(1, 4);
/* The key prefix of api: "" or "ns:". */
DRAY_API const char *dray_api_namespace(const dray_api *api) DRAY_NONNULL(1);

/* ---- configuration files ------------------------------------------------ */

/* A set of configuration entries: `key value` lines read from a file (like
 * redis.conf), from DRAY_* environment variables, or set by a program (CLI
 * flags). It owns every string. Known keys (docs/cli.md lists them) are
 * validated when they are added; keys with a dot ("pro.webhook_url") are
 * kept unchecked for modules; any other key is an error. */
typedef struct dray_config dray_config;

/* Called for each value of a key, in the order they were added. A non-zero
 * return stops the walk and is returned by dray_config_get_all. */
typedef int (*dray_config_fn)(const char *key, const char *value, void *userdata);

/* A new empty configuration. DRAY_ENOMEM. Free with dray_config_free. */
DRAY_API DRAY_WUR int dray_config_new(dray_config **out) DRAY_NONNULL(1);
/* Free cfg and every string it owns. Accepts NULL. */
DRAY_API void dray_config_free(dray_config *cfg);
/* Text of the last error (never NULL): "file:line: key 'x': reason". */
DRAY_API const char *dray_config_errstr(const dray_config *cfg) DRAY_NONNULL(1);

/* Read a file of `key value` lines. `#` starts a comment (at the start of a
 * line or after whitespace); values may be "double-quoted" (with \" \\ \n
 * \t escapes) or 'single-quoted' (literal). Every line is added as by
 * dray_config_add. On the first bad line, stops with DRAY_ECONFIG (DRAY_EIO
 * when the file cannot be read) and an error naming file:line and the key;
 * lines before it stay added. */
DRAY_API DRAY_WUR int dray_config_load_file(dray_config *cfg, const char *path) DRAY_NONNULL(1, 2);
/* Apply DRAY_<KEY> variables (DRAY_REDIS_URL, DRAY_CONCURRENCY, ...) with
 * dray_config_set; the repeatable keys read DRAY_QUEUES and DRAY_LABELS
 * (space-separated; they replace earlier values), DRAY_REQUIRES and
 * DRAY_MODULES (colon-separated; they are added). DRAY_ECONFIG naming the
 * variable. */
DRAY_API DRAY_WUR int dray_config_load_env(dray_config *cfg) DRAY_NONNULL(1);
/* Replace every value of key with value (a later layer overrides an earlier
 * one: file < environment < flags). DRAY_ECONFIG for an unknown key or a
 * bad value, with the reason in dray_config_errstr. */
DRAY_API DRAY_WUR int dray_config_set(dray_config *cfg, const char *key, const char *value)
    DRAY_NONNULL(1);
/* Add a value. For the repeatable keys (queue, label, require, module) and
 * section keys it is appended (module and require skip exact duplicates);
 * any other known key is replaced, as by dray_config_set. */
DRAY_API DRAY_WUR int dray_config_add(dray_config *cfg, const char *key, const char *value)
    DRAY_NONNULL(1);
/* The last value of key (borrowed, valid until cfg changes), or NULL. */
DRAY_API const char *dray_config_get(const dray_config *cfg, const char *key) DRAY_NONNULL(1, 2);
/* How many values key has. */
DRAY_API size_t dray_config_count(const dray_config *cfg, const char *key) DRAY_NONNULL(1, 2);
/* Call fn for every value of key, in order. key NULL walks every entry; a
 * key ending in '.' ("pro.") walks every key of that section. Returns 0 or
 * the first non-zero return of fn. */
DRAY_API int dray_config_get_all(const dray_config *cfg, const char *key, dray_config_fn fn,
                                 void *userdata) DRAY_NONNULL(1);
/* Fill *out: dray_options_init, then every known key that is set. String
 * fields are borrowed from cfg and valid until cfg changes or is freed.
 * DRAY_ECONFIG with the reason in errbuf (and dray_config_errstr). */
DRAY_API DRAY_WUR int dray_config_to_options(dray_config *cfg, dray_options *out, char *errbuf,
                                             size_t errlen) DRAY_NONNULL(1, 2);

#ifdef __cplusplus
}
#endif
#endif /* DRAY_INSPECT_H */
