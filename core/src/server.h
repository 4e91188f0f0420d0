/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The server's internal structures, shared by server.c, processor.c,
 * fetch.c, retry.c, poller.c and heartbeat.c. */
#ifndef DRAY_SERVER_H
#define DRAY_SERVER_H

#include <pthread.h>

#include "internal.h"

/* Server states, in order: each only moves forward. */
enum {
    DRAY__RUNNING = 0,
    DRAY__QUIET = 1,    /* no new fetches; running jobs finish */
    DRAY__STOPPING = 2, /* quiet, and waiting out the shutdown timeout */
    DRAY__DONE = 3      /* workers must exit; unfinished jobs were requeued */
};

/* A fetched job, before parsing: what fetch hands the processor. */
typedef struct dray__unit {
    char *queue;   /* queue name without prefix (owned) */
    char *payload; /* raw job JSON (owned) */
    size_t len;
    void *token; /* fetch provider's own data */
} dray__unit;

typedef struct dray__handler {
    char *klass;
    dray_handler_fn fn;
    void *ud;
    dray_class_opts opts;
    char *retry_queue;
    double timeout_s; /* dray_server_set_timeout; 0: none */
} dray__handler;

typedef struct dray__queue {
    char *name;
    char *key; /* "<ns>queue:<name>" */
    int weight;
    atomic_int paused; /* 1: in <ns>paused at the last read (pause.c) */
} dray__queue;

typedef struct dray__callback {
    dray_error_fn fn;
    void *ud;
} dray__callback;

struct dray_server;

/* metrics.c: Sidekiq 7 execution metrics, one table per worker */
#define DRAY__METRICS_BUCKETS 26   /* Sidekiq's Histogram::BUCKET_INTERVALS */
#define DRAY__METRICS_FLUSH_S 60.0 /* heartbeat flushes at most this often (and at stop) */
typedef struct dray__metric {
    char *klass;        /* "wrapped" or "class" (owned); NULL: empty slot */
    uint64_t p, f, ms;  /* processed, failed, ms of successful runs */
    uint64_t succeeded; /* successful runs (those in hist) */
    uint32_t hist[DRAY__METRICS_BUCKETS];
} dray__metric;
typedef struct dray__metrics {
    pthread_mutex_t mu; /* the owning worker and a flush; never shared between workers */
    dray__metric *slot; /* open addressing by class, cap a power of two */
    size_t cap, n;
} dray__metrics;
void dray__metrics_init(dray__metrics *m);
void dray__metrics_close(dray__metrics *m);
/* The histogram bucket of a run of ms milliseconds (0..25). Cannot fail. */
int dray__metrics_bucket(double ms);
/* Count one finished job in the worker's table (failed: no time counted).
 * Worker thread; no Redis. Out of memory drops the sample. */
void dray__metrics_record(dray__metrics *m, const char *klass, int failed, double ms);
/* Heartbeat thread: merge every worker's table and write them to Redis,
 * unless force is 0 and the last flush was under DRAY__METRICS_FLUSH_S ago.
 * Counts that surely did not reach Redis are kept for the next flush.
 * 0 or a DRAY_E* code. */
int dray__metrics_flush(struct dray_server *s, dray__conn *c, int force);

/* One worker thread and its state. `mu` guards the current-job fields that
 * the heartbeat and the stopper read. */
typedef struct dray__worker {
    struct dray_server *srv;
    int index;
    pthread_t thread;
    int started;
    dray__conn conn;
    char tid[16]; /* key in <identity>:work */
    pthread_mutex_t mu;
    dray__unit cur;        /* the job running now (payload NULL when idle) */
    double cur_started;    /* epoch seconds */
    const char *cur_class; /* borrowed from the parsed job while running */
    const char *cur_jid;
    int requeued;       /* 1: the stopper pushed a copy back (remove it when this one
                           finishes); -1: finishing, the stopper leaves it alone */
    atomic_int writing; /* 1 while recording an outcome: the stopper waits for it */
    int joined;         /* pthread_join done (the thread running run or free) */
    atomic_int exited;
    atomic_uint_least64_t processed; /* flushed by the heartbeat */
    atomic_uint_least64_t failed;
    dray__unit *pre;         /* fetched, not started (fetch_batch > 1); guarded by mu */
    size_t npre, ipre;       /* pre[ipre..npre) are waiting */
    const char **brpop_argv; /* reused BRPOP argument vector */
    size_t *brpop_lens;
    int crash_slot;                    /* crash.c slot of this thread, -1 if none */
    atomic_uint_least64_t fetch_lost;  /* blocking fetches whose reply was lost (may have popped) */
    uint_least64_t fetch_lost_flushed; /* of those, added to stat:fetch_lost; worker thread only */
    dray__metrics metrics;             /* this worker's execution metrics since the last flush */
    dray__metrics cum;   /* the same since start, never flushed (dray_server_metrics_text) */
    double cur_deadline; /* epoch seconds the running job's timeout ends, 0 none; mu */
    atomic_int cur_over; /* 1 once the heartbeat saw the running job past it */
    int cur_cancel;      /* 1 once the heartbeat acted on a recorded cancel of it; mu */
} dray__worker;

struct dray_server {
    dray_options opts; /* copy; strings below are owned copies */
    char *queues_spec;
    char *tag;
    char *labels;
    dray__redis_cfg cfg;
    char errstr[512]; /* module refusals name a path and the module's own message */

    dray__handler *handlers; /* sorted by class after run starts */
    size_t nhandlers, caphandlers;
    dray__callback *on_error, *on_death;
    size_t non_error, non_death;
    void **dl_handles; /* --require'd libraries */
    size_t ndl;

    dray__queue *queues; /* unique queues in configured order */
    size_t nqueues;
    int *weighted; /* queue index repeated by weight (weighted mode) */
    size_t nweighted;
    int strict;

    char identity[256];
    char hostname[128];
    double started_at;
    char *info_json;  /* cached heartbeat "info" */
    char *k_identity; /* "<ns><identity>": the heartbeat hash */
    char *k_queues, *k_schedule, *k_retry, *k_dead, *k_processes, *k_work, *k_signals;
    char *k_work7; /* "<ns><identity>:work": Sidekiq 7+ reads the running jobs
                      there, 6.x in k_work ("<identity>:workers"); both written */

    dray__worker *workers;
    atomic_int state;
    atomic_int stop_flag; /* set by stop (any thread, signals) */
    atomic_int stop_now_flag;
    atomic_int dump_flag;
    atomic_int quiet_flag;
    atomic_int outage; /* 1 while Redis is unreachable (logged once) */
    atomic_llong outage_since_ms;
    int wake_pipe[2]; /* signal-safe wakeup of the main thread */

    pthread_t poller, heart;
    int poller_started, heart_started;
    pthread_mutex_t mu;  /* guards cond waits below */
    pthread_cond_t cond; /* broadcast on state changes and job completion */
    atomic_uint_least64_t flushed_processed, flushed_failed;
    atomic_int live_processes;   /* from the last heartbeat, for the poller */
    int leaked;                  /* workers still running when run returned: free joins them */
    atomic_llong write_until_ms; /* monotonic ms: shutdown's last moment to retry writes; 0 none */
    struct dray__modcfg *modcfg; /* settings for modules (dray_server_set_config), or NULL */
    dray__metrics metrics_pending; /* merged, not yet in Redis; heartbeat thread only */
    double metrics_flushed_at;     /* monotonic seconds of the last metrics flush */
    struct dray__statsd *statsd;   /* dray_server_statsd's socket, or NULL */
    atomic_llong pause_read_ms;    /* monotonic ms of the last read of <ns>paused (pause.c) */
    atomic_int pause_known;        /* 1 once <ns>paused was read successfully */
    atomic_int pause_any;          /* 1: some configured queue is paused */
    atomic_long rtt_us;            /* PING at the last heartbeat, -1 before the first */
    struct dray__cancels *cancels; /* local copy of the outstanding cancels (cancel.c) */
};

/* procmetrics.c: this process's figures (dray_server_metrics_text) */
#define DRAY__PROC_CLASSES_MAX 1000 /* per worker; more classes count as "(other)" */
/* Count a finished job in w->cum. Class names come from payloads, so past
 * DRAY__PROC_CLASSES_MAX a new class is counted as "(other)": memory stays
 * bounded. Worker thread; no Redis; cannot fail (OOM drops the sample). */
void dray__procmetrics_record(dray__worker *w, const char *klass, int failed, double ms);

/* statsd.c: job outcomes as statsd/DogStatsD datagrams (dray_server_statsd) */
typedef struct dray__statsd dray__statsd;
/* One datagram for a finished job; never blocks, never fails (a refused
 * datagram is counted and dropped). Any worker thread. */
void dray__statsd_job(dray__statsd *st, const char *klass, const char *queue, int failed,
                      double ms);
void dray__statsd_free(dray__statsd *st); /* accepts NULL */
/* Heartbeat thread, after each beat that reached Redis: gauges of this
 * process's busy threads and the sizes of its queues (one LLEN script on
 * c; if that fails, busy alone). Never fails. */
void dray__statsd_gauges(struct dray_server *s, dray__conn *c, int busy);

/* crash.c: a report of running jobs on fatal signals */
/* Install the fatal-signal handlers (once per process; the previous
 * handlers run after ours). Any thread. */
void dray__crash_install(void);
/* On a worker thread: take a report slot (returned, or -1 when all are
 * taken) and an alternate signal stack (*altstack, or NULL). */
int dray__crash_thread_start(int worker, void **altstack);
void dray__crash_thread_end(int slot, void *altstack);
/* The slot's thread starts / ends a job (strings copied; payload borrowed
 * until dray__crash_job_end). */
void dray__crash_job_start(int slot, const char *jid, const char *klass, const char *queue,
                           const char *payload, size_t len);
void dray__crash_job_end(int slot);
/* In a child of dray_server_run_processes: shared memory where the fatal
 * signal handler stores the index of the worker whose job crashed; NULL
 * elsewhere. */
extern atomic_int *dray__crash_culprit;

/* processor.c */
void *dray__worker_main(void *arg);
void dray__handlers_sort(struct dray_server *s);
const dray__handler *dray__handler_find(const struct dray_server *s, const char *klass);

/* fetch.c */
int dray__queues_parse(struct dray_server *s, const char *spec, char *errbuf, size_t errlen);
/* Block up to 2 s for one job. 1 with *u filled, 0 on timeout, < 0 on error. */
/* What a worker link adds to command_timeout_ms for its read timeout: the
 * block time plus a margin of at least 5 s (so only a longer Redis stall
 * can lose a popped job's reply). */
int dray__fetch_extra_timeout_ms(const dray__redis_cfg *cfg);
int dray__fetch(dray__worker *w, dray__unit *u);
/* Put a fetched job back at the head of its queue (RPUSH). */
int dray__requeue(dray__conn *c, const struct dray_server *s, const dray__unit *u);
/* Push a worker's fetched-but-unstarted jobs back, the next one ending at the
 * head. Caller holds w->mu. Returns how many went back. */
int dray__prefetch_requeue(dray__worker *w, dray__conn *c);
void dray__unit_clear(dray__unit *u);

/* pause.c: paused queues (<ns>paused, as Sidekiq Pro) */
#define DRAY__PAUSE_REFRESH_MS 1000 /* a process re-reads the paused set this often */
/* Re-read the paused set when the copy is stale (one worker at a time;
 * every worker until the first read succeeds). 0 or a DRAY_E* code with
 * the reason in w->conn.errstr. Worker thread. */
int dray__pause_refresh(dray__worker *w);
/* Drop paused queues' keys from keys/lens[0..n), keeping the order;
 * returns how many remain. Cannot fail. Any thread. */
size_t dray__pause_filter(const struct dray_server *s, const char **keys, size_t *lens, size_t n);
/* Every queue is paused: wait one refresh period, or less when the server
 * state changes. Worker thread. */
void dray__pause_wait(struct dray_server *s);

/* retry.c */
/* A handler failure: to the retry set or the dead set, with hooks and
 * handlers called. Never loses the job: if Redis refuses, it is logged whole. */
void dray__retry_or_die(dray__worker *w, dray_job *job, const dray__handler *h,
                        const char *error_class, const char *message);
/* Lines of backtrace a job asks for ("backtrace": true or N), at most
 * DRAY_BACKTRACE_MAX; 0 for none. Cannot fail. */
int dray__backtrace_want(const dray_job *job);
/* Set the job's error_backtrace (Sidekiq's compressed form) to the first
 * `want` of the handler's lines, or when it gave none, of the captured
 * frames. Nothing when want <= 0. DRAY_ENOMEM (the field is then unset). */
int dray__backtrace_store(dray_job *job, int want, const char *const *lines, size_t nlines,
                          void *const *frames, int nframes);
/* A payload that is not a job goes to the dead set as a job of this reserved
 * class (args: the payload text) with this error_class and the reason as
 * error_message. Retried from the dead set it dies again with the same
 * reason, unless the application registers a handler for the class. */
#define DRAY__MALFORMED_CLASS "Dray::MalformedJob"
#define DRAY__MALFORMED_ERROR "Dray::MalformedPayload"
/* A payload that is not a job: to the dead set, wrapped, with the reason. */
void dray__dead_raw(dray__worker *w, const dray__unit *u, const char *reason);
/* ZADD dead + trims in one MULTI; 0 or a DRAY_E* code. */
int dray__dead_add(dray__conn *c, const struct dray_server *s, const char *json, size_t len,
                   double now);
/* Default backoff in seconds: count^4 + 15 + rand(10) * (count + 1), count < 0
 * as 0, at most DRAY_BACKOFF_MAX_S. */
double dray__backoff_default(int count);

/* poller.c / heartbeat.c */
void *dray__poller_main(void *arg);
void *dray__heartbeat_main(void *arg);
/* Move due members of one zset to their queues; returns jobs moved or < 0. */
long dray__poller_drain(dray__conn *c, const struct dray_server *s, const char *zset, double now);
int dray__heartbeat_beat(struct dray_server *s, dray__conn *c, int final);
int dray__heartbeat_clear(struct dray_server *s, dray__conn *c);

/* server.c */
void dray__server_wake(struct dray_server *s);
/* In a child forked by the supervisor, before dray_server_run: its own
 * identity (pid, nonce), keys, heartbeat info and wake pipe; signal flags
 * cleared. 0 or DRAY_ENOMEM. */
int dray__server_child_init(struct dray_server *s);

/* supervisor.c: process isolation (dray_server_run_processes) */
/* A worker of a supervised child starts / ends a job: reported to the
 * supervisor (nothing outside a child). timeout_s: the job's effective
 * timeout, 0 for none. Worker thread. */
void dray__sup_job_start(const dray__worker *w, const char *jid, const char *klass,
                         const char *queue, const char *payload, size_t len, double timeout_s);
void dray__sup_job_end(dray__worker *w);
/* True in a supervised child (basic fetch): jobs are fetched with LMOVE into
 * the worker's in-flight list <ns>dray:inflight:<identity>:<worker>, which
 * the supervisor empties back into the queues if the child dies, and which
 * the worker deletes when the job's outcome is recorded. */
bool dray__sup_active(void);
/* dray__fetch for a supervised child: keys in order; 1 with *u, 0 none. */
int dray__sup_fetch(dray__worker *w, const char **keys, size_t n, dray__unit *u);
/* The heartbeat of a supervised child found the running job of w cancelled:
 * ask the supervisor to kill this child for it. False outside a child. */
bool dray__sup_cancel(const dray__worker *w, const char *jid);
/* True in an --isolate child: one job, then the child stops. */
bool dray__sup_isolate(void);
/* The job's effective timeout: its own "timeout" (seconds, > 0), else its
 * class's (dray_server_set_timeout), else 0. */
double dray__job_timeout(const dray_job *job, const dray__handler *h);
/* How long a write that must not be lost (an outcome, a requeue, removing a
 * requeued copy) retries through a Redis outage before the payload is logged
 * whole as lost. At shutdown all of them share one window from the requeue. */
#define DRAY__WRITE_RETRY_S 15.0
/* The monotonic deadline for such a write starting now. */
double dray__write_deadline(const struct dray_server *s);
/* After a failed write rc on c: true when it may succeed if tried again (no
 * connection, Redis loading or busy) and the deadline allows; then it has
 * backed off and reconnected if it could. Worker or main thread. */
bool dray__write_again(dray__conn *c, int rc, double deadline);
/* dray__requeue, retried through an outage until dray__write_deadline. */
int dray__requeue_retry(dray__conn *c, const struct dray_server *s, const dray__unit *u);
/* A job whose copy the stopper pushed back has finished here and its outcome
 * is recorded: remove that copy (LREM, exact bytes) so it does not run
 * again. Worker thread, w->cur still set. */
void dray__requeued_copy_remove(dray__worker *w, const char *jid, const char *klass);
/* Note an outage (first caller logs) or its end. */
void dray__outage_begin(struct dray_server *s, const dray__conn *c);
void dray__outage_end(struct dray_server *s);

/* cancel.c: dray cancel on the worker's side */
/* Outstanding cancels kept locally; past it, one EXISTS per job. */
#define DRAY__CANCEL_LOCAL_MAX 4096
typedef struct dray__cancels dray__cancels;
/* The local copy, empty and never read (NULL on out of memory); free
 * accepts NULL. */
dray__cancels *dray__cancels_new(void);
void dray__cancels_free(dray__cancels *cs);
/* Bring the local copy up to the cancel epoch: epoch is the reply of GET
 * <ns>dray:cancels:epoch when the caller pipelined it (pause.c), or NULL to
 * read it here. When it moved, re-read the index, install it, then
 * acknowledge the epoch (HSET <ns>dray:cancels:seen <identity> <epoch>).
 * 0 or a DRAY_E* code (reason in c->errstr; the old copy stays). Any
 * thread with its own connection. */
int dray__cancel_sync(struct dray_server *s, dray__conn *c, const redisReply *epoch);
/* Before running a job: 1 when its cancellation is known (logged and noted
 * "skipped"; the caller does not run it), else 0. A lookup in the local
 * copy, no Redis, unless more than DRAY__CANCEL_LOCAL_MAX are outstanding
 * (then one EXISTS; if Redis cannot say, the job runs rather than being
 * lost). Worker thread. */
int dray__cancel_before_run(dray__worker *w, const char *jid, const char *klass);
/* True when the heartbeat acted on a cancel of w's running job. */
bool dray__cancel_acted(dray__worker *w);
/* Heartbeat: sync the local copy, then one pipelined EXISTS for every
 * running job; a cancelled one is flagged (cur_over, noted "flagged") or, in
 * a supervised child, reported to the supervisor to be killed. Heartbeat
 * thread, its own connection. */
void dray__cancel_beat(struct dray_server *s, dray__conn *c);
/* Note in the job's cancel record what a worker or supervisor did ("killed")
 * and by which process identity. Logged when Redis cannot take it. */
void dray__cancel_note(dray__conn *c, const struct dray_server *s, const char *jid,
                       const char *what, const char *by);

/* module.c, module_fetch.c: modules and the fetch provider */
/* At run start: load $DRAY_MODULES (skipping loaded ones), log the hook
 * order. 0, or a DRAY_E* code with the refusal in s->errstr. */
int dray__modules_start(struct dray_server *s);
void dray__modcfg_free(struct dray_server *s);
/* True when a module provides fetch; then the calls below replace BRPOP,
 * ack (nothing in basic fetch) and RPUSH. */
bool dray__fetcher_active(void);
int dray__fetcher_fetch(dray__worker *w, const char **keys, size_t n, dray__unit *u);
void dray__fetch_ack(dray__worker *w, const dray__unit *u);
int dray__fetcher_requeue(dray__conn *c, const struct dray_server *s, const dray__unit *u);
/* Shutdown: hand every running job to the provider's bulk_requeue. False
 * without a provider; else *n counts the jobs put back. */
bool dray__fetcher_requeue_running(struct dray_server *s, dray__conn *c, int *n);
/* After an I/O error: reconnect at once if possible (0), else note the
 * outage and return the error; the caller backs off. */
int dray__conn_recover(struct dray_server *s, dray__conn *c);

#endif /* DRAY_SERVER_H */
