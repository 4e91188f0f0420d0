/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Server lifecycle: configure, start threads, quiet, stop with timeout and
 * requeue, leave the process registry. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

#define STRAGGLER_GRACE_S 3.0 /* after requeueing, how long finishing threads get */

static int serr(dray_server *s, int code, const char *fmt, ...) DRAY_PRINTF(3, 4);
static bool all_exited(dray_server *s);
static bool any_writing(dray_server *s);
static void wait_workers(dray_server *s, double deadline, bool honour_stop_now,
                         bool (*done)(dray_server *));
static void join_exited(dray_server *s);

/* Record code and a formatted message in s->errstr (truncated safely). Returns code. */
static int
serr(dray_server *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dray__verr(s->errstr, sizeof s->errstr, code, fmt, ap);
    va_end(ap);
    return code;
}

/* The text of s's last error (borrowed, "" when none); valid until the next call on s. */
const char *
dray_server_errstr(const dray_server *s)
{
    return s->errstr;
}

/* s's Sidekiq process identity (borrowed from s). */
const char *
dray_server_identity(const dray_server *s)
{
    return s->identity;
}

/* Build the cached heartbeat "info" JSON: Sidekiq 6's fields, 7.x's
 * version, embedded and weights, and 8.x's capsules (launcher.rb#to_data;
 * one capsule, "default", with Capsule#to_h's concurrency, mode, weights). */
static int
build_info(dray_server *s)
{
    json_t *queues = json_array();
    json_t *weights = json_object();
    int all0 = 1, all1 = 1;
    for (size_t i = 0; i < s->nqueues; i++) {
        json_array_append_new(queues, json_string(s->queues[i].name));
        json_object_set_new(weights, s->queues[i].name, json_integer(s->queues[i].weight));
        all0 &= s->queues[i].weight == 0;
        all1 &= s->queues[i].weight == 1;
    }
    json_t *labels = json_array();
    if (s->labels) {
        char *copy = dray__strdup(s->labels), *save = NULL;
        for (char *t = copy ? strtok_r(copy, ", ", &save) : NULL; t;
             t = strtok_r(NULL, ", ", &save))
            json_array_append_new(labels, json_string(t));
        dray__free(copy);
    }
    char version[64];
    snprintf(version, sizeof version, "dray %s", DRAY_VERSION_STRING);
    /* Capsule#queues=: all weights 0 is strict, all 1 random, else weighted */
    const char *mode = all0 ? "strict" : all1 ? "random" : "weighted";
    json_t *capsules = json_pack("{s:{s:i, s:s, s:O}}", "default", "concurrency",
                                 s->opts.concurrency, "mode", mode, "weights", weights);
    json_t *info = json_pack(
        "{s:s, s:f, s:i, s:s, s:i, s:o, s:[o], s:o, s:s, s:s, s:b, s:o}", "hostname", s->hostname,
        "started_at", s->started_at, "pid", (int)getpid(), "tag", s->tag ? s->tag : "",
        "concurrency", s->opts.concurrency, "queues", queues, "weights", weights, "labels", labels,
        "identity", s->identity, "version", version, "embedded", 0, "capsules", capsules);
    if (!info)
        return DRAY_ENOMEM;
    s->info_json = dray__json_dump(info, NULL);
    json_decref(info);
    return s->info_json ? 0 : DRAY_ENOMEM;
}

/* A fresh identity (this pid, a new nonce) and the keys named after it. On
 * out of memory a key is NULL: the callers check. */
static void
identity_keys(dray_server *s)
{
    char nonce[DRAY_JID_BYTES];
    dray_jid_new(nonce);
    nonce[12] = '\0'; /* 6 random bytes, as Sidekiq */
    snprintf(s->identity, sizeof s->identity, "%s:%d:%s", s->hostname, (int)getpid(), nonce);
    s->started_at = dray_now();
    dray__buf b;
    dray__buf_init(&b);
    dray__key_buf(&b, &s->cfg, s->identity);
    dray__buf_adds(&b, ":workers");
    s->k_work = b.p;
    dray__buf_init(&b);
    dray__key_buf(&b, &s->cfg, s->identity);
    dray__buf_adds(&b, ":work");
    s->k_work7 = b.p;
    dray__buf_init(&b);
    dray__key_buf(&b, &s->cfg, s->identity);
    dray__buf_adds(&b, "-signals");
    s->k_signals = b.p;
    s->k_identity = dray__key(&s->cfg, s->identity);
}

/* Makes both ends of s->wake_pipe non-blocking and close-on-exec. */
static void
wake_pipe_flags(dray_server *s)
{
    for (int i = 0; i < 2; i++) {
        fcntl(s->wake_pipe[i], F_SETFL, fcntl(s->wake_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(s->wake_pipe[i], F_SETFD, FD_CLOEXEC);
    }
}

/* In a fresh child of the supervisor: a new identity, its keys and info, a
 * new wake pipe and cleared signal flags, so the child is its own process. 0 or DRAY_ENOMEM. */
int
dray__server_child_init(dray_server *s)
{
    dray__free(s->k_work);
    dray__free(s->k_work7);
    dray__free(s->k_signals);
    dray__free(s->k_identity);
    free(s->info_json);
    s->info_json = NULL;
    identity_keys(s);
    for (int i = 0; i < 2; i++) {
        if (s->wake_pipe[i] >= 0)
            close(s->wake_pipe[i]);
        s->wake_pipe[i] = -1;
    }
    if (!s->k_identity || !s->k_work || !s->k_work7 || !s->k_signals || build_info(s) ||
        pipe(s->wake_pipe))
        return DRAY_ENOMEM;
    wake_pipe_flags(s);
    atomic_store(&s->stop_flag, 0);
    atomic_store(&s->stop_now_flag, 0);
    atomic_store(&s->quiet_flag, 0);
    atomic_store(&s->dump_flag, 0);
    return 0;
}

/* Checks s->opts (copied from opts, which may be NULL) and fills in the
 * defaults; s keeps its own copies of the strings. 0, DRAY_ECONFIG with the
 * reason in errbuf, or DRAY_ENOMEM (reported by the caller). */
static int
options_apply(dray_server *s, const dray_options *opts, char *errbuf, size_t errlen)
{
    dray_options *o = &s->opts;
    if (o->concurrency <= 0 || o->concurrency > 1000)
        return dray__err(errbuf, errlen, DRAY_ECONFIG, "concurrency must be 1-1000, not %d",
                         opts ? opts->concurrency : 0);
    if (o->fetch_batch < 1)
        o->fetch_batch = 1;
    if (o->fetch_batch > 1000)
        return dray__err(errbuf, errlen, DRAY_ECONFIG, "fetch_batch must be 1-1000, not %d",
                         opts->fetch_batch);
    if (o->shutdown_timeout_s < 0)
        o->shutdown_timeout_s = 25;
    if (o->heartbeat_s <= 0)
        o->heartbeat_s = 5;
    if (o->max_retries < 0)
        o->max_retries = DRAY_DEFAULT_MAX_RETRIES;
    if (o->dead_max_jobs <= 0)
        o->dead_max_jobs = 10000;
    if (o->dead_timeout_s <= 0)
        o->dead_timeout_s = 180L * 24 * 3600;
    if (!o->max_payload)
        o->max_payload = DRAY_DEFAULT_MAX_PAYLOAD;
    s->queues_spec = dray__strdup(o->queues ? o->queues : "default");
    s->tag = o->tag ? dray__strdup(o->tag) : NULL;
    s->labels = o->labels ? dray__strdup(o->labels) : NULL;
    o->queues = s->queues_spec;
    o->tag = s->tag;
    o->labels = s->labels;
    o->redis_url = NULL; /* resolved into cfg by the caller; not kept */
    o->ns = NULL;
    return 0;
}

/* Hostname ($DYNO first, as Sidekiq), identity and the fixed Redis keys of
 * s, plus its info JSON (all owned by s). 0 or DRAY_ENOMEM. */
static int
server_keys(dray_server *s)
{
    const char *dyno = getenv("DYNO");
    if (dyno && *dyno)
        snprintf(s->hostname, sizeof s->hostname, "%s", dyno);
    else if (gethostname(s->hostname, sizeof s->hostname - 1))
        snprintf(s->hostname, sizeof s->hostname, "localhost");
    identity_keys(s);
    s->k_queues = dray__key(&s->cfg, "queues");
    s->k_schedule = dray__key(&s->cfg, "schedule");
    s->k_retry = dray__key(&s->cfg, "retry");
    s->k_dead = dray__key(&s->cfg, "dead");
    s->k_processes = dray__key(&s->cfg, "processes");
    if (!s->k_identity || !s->k_work || !s->k_work7 || !s->k_signals || !s->k_queues ||
        !s->k_schedule || !s->k_retry || !s->k_dead || !s->k_processes || !s->queues_spec ||
        build_info(s))
        return DRAY_ENOMEM;
    return 0;
}

/* A short thread id for worker i, unique per process, base 36 like
 * Sidekiq's, into tid (16 bytes). Cannot fail. */
static void
worker_tid(char tid[16], int i)
{
    unsigned long v = ((unsigned long)getpid() << 12) ^ (unsigned long)(i + 1) * 2654435761UL;
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
        v /= 36;
    } while (v && n < 15);
    for (int k = 0; k < n; k++)
        tid[k] = tmp[n - 1 - k];
    tid[n] = '\0';
}

/* Readies s->workers[0..concurrency) (allocated by the caller): lock,
 * metrics, an unconnected Redis link each. Cannot fail. */
static void
workers_init(dray_server *s)
{
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__worker *w = &s->workers[i];
        w->srv = s;
        w->index = i;
        pthread_mutex_init(&w->mu, NULL);
        dray__metrics_init(&w->metrics);
        dray__metrics_init(&w->cum);
        dray__conn_init(&w->conn, &s->cfg);
        w->conn.extra_timeout_ms = dray__fetch_extra_timeout_ms(&s->cfg); /* BRPOP blocks 2 s */
        w->conn.want_client_id = 1; /* so a stop can end that wait at once */
        worker_tid(w->tid, i);
    }
}

/* A new server from opts (NULL: defaults) in *out (dray_server_free it); 0,
 * or DRAY_ECONFIG/DRAY_ENOMEM/a Redis URL error with the reason in errbuf. */
int
dray_server_new(const dray_options *opts, dray_server **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    dray_server *s = dray__calloc(1, sizeof *s);
    if (!s)
        return dray__err(errbuf, errlen, DRAY_ENOMEM, "out of memory");
    dray__metrics_init(&s->metrics_pending);
    atomic_store(&s->rtt_us, -1);
    if (opts)
        s->opts = *opts;
    else
        dray_options_init(&s->opts);
    s->wake_pipe[0] = s->wake_pipe[1] = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (!(s->cancels = dray__cancels_new())) {
        dray_server_free(s);
        return dray__err(errbuf, errlen, DRAY_ENOMEM, "out of memory");
    }
    int rc = options_apply(s, opts, errbuf, errlen);
    if (!rc)
        rc = dray__redis_cfg_init(&s->cfg, opts, errbuf, errlen);
    if (!rc)
        rc = dray__queues_parse(s, s->queues_spec, errbuf, errlen);
    if (rc) {
        dray_server_free(s);
        return rc;
    }
    if (server_keys(s)) {
        dray_server_free(s);
        return dray__err(errbuf, errlen, DRAY_ENOMEM, "out of memory");
    }
    s->workers = dray__calloc((size_t)s->opts.concurrency, sizeof *s->workers);
    if (!s->workers || pipe(s->wake_pipe)) {
        dray_server_free(s);
        return dray__err(errbuf, errlen, DRAY_ENOMEM, "cannot allocate workers");
    }
    wake_pipe_flags(s);
    workers_init(s);
    dray_log_set_level(s->opts.log_level);
    *out = s;
    return 0;
}

/* Frees s and everything it owns, after dray_server_run returned; waits for
 * a handler that outlived the shutdown first. Accepts NULL. */
void
dray_server_free(dray_server *s)
{
    if (!s)
        return;
    if (s->leaked) {
        /* Handlers that outlived the shutdown still use the server: wait. */
        if (dray_server_wait(s, 1.0))
            dray__log(DRAY_LOG_WARN, "dray_server_free: waiting for handlers still running");
        for (int i = 0; i < s->opts.concurrency; i++)
            if (s->workers[i].started && !s->workers[i].joined) {
                pthread_join(s->workers[i].thread, NULL);
                s->workers[i].joined = 1;
            }
        s->leaked = 0;
    }
    if (s->workers) {
        for (int i = 0; i < s->opts.concurrency; i++) {
            dray__conn_close(&s->workers[i].conn);
            dray__unit_clear(&s->workers[i].cur);
            for (size_t k = 0; s->workers[i].pre && k < (size_t)s->opts.fetch_batch; k++)
                dray__unit_clear(&s->workers[i].pre[k]);
            dray__free(s->workers[i].pre);
            dray__free(s->workers[i].brpop_argv);
            dray__free(s->workers[i].brpop_lens);
            pthread_mutex_destroy(&s->workers[i].mu);
            dray__metrics_close(&s->workers[i].metrics);
            dray__metrics_close(&s->workers[i].cum);
        }
        dray__free(s->workers);
    }
    for (size_t i = 0; i < s->nhandlers; i++) {
        dray__free(s->handlers[i].klass);
        dray__free(s->handlers[i].retry_queue);
    }
    dray__free(s->handlers);
    dray__free(s->on_error);
    dray__free(s->on_death);
    for (size_t i = 0; i < s->nqueues; i++) {
        dray__free(s->queues[i].name);
        dray__free(s->queues[i].key);
    }
    dray__free(s->queues);
    dray__free(s->weighted);
    dray__free(s->dl_handles); /* libraries stay loaded: handlers may still run */
    dray__statsd_free(s->statsd);
    dray__free(s->queues_spec);
    dray__free(s->tag);
    dray__free(s->labels);
    free(s->info_json);
    dray__free(s->k_identity);
    dray__free(s->k_queues);
    dray__free(s->k_schedule);
    dray__free(s->k_retry);
    dray__free(s->k_dead);
    dray__free(s->k_processes);
    dray__free(s->k_work);
    dray__free(s->k_work7);
    dray__free(s->k_signals);
    dray__redis_cfg_close(&s->cfg);
    dray__modcfg_free(s);
    dray__metrics_close(&s->metrics_pending);
    dray__cancels_free(s->cancels);
    for (int i = 0; i < 2; i++)
        if (s->wake_pipe[i] >= 0)
            close(s->wake_pipe[i]);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    dray__free(s);
}

/* Waits up to timeout_s for leaked handlers to finish and joins their threads;
 * 0, or DRAY_ESTATE when some still run. */
int
dray_server_wait(dray_server *s, double timeout_s)
{
    if (!s->workers)
        return 0;
    wait_workers(s, dray__mono() + (timeout_s > 0 ? timeout_s : 0), false, all_exited);
    pthread_mutex_lock(&s->mu);
    bool done = all_exited(s);
    pthread_mutex_unlock(&s->mu);
    if (!done)
        return serr(s, DRAY_ESTATE, "handlers are still running");
    join_exited(s);
    return 0;
}

/* Registers fn (with userdata, borrowed) as the handler of klass; before run.
 * 0, DRAY_ECLASS, DRAY_EINVAL, DRAY_ESTATE, DRAY_EEXIST, DRAY_EQUEUE, DRAY_ENOMEM. */
int
dray_server_register(dray_server *s, const char *klass, dray_handler_fn fn, void *userdata,
                     const dray_class_opts *copts)
{
    if (!klass || !*klass)
        return serr(s, DRAY_ECLASS, "handler class name is empty");
    if (!fn)
        return serr(s, DRAY_EINVAL, "handler for %s is NULL", klass);
    if (s->workers && s->workers[0].started)
        return serr(s, DRAY_ESTATE, "handlers must be registered before dray_server_run");
    for (size_t i = 0; i < s->nhandlers; i++)
        if (!strcmp(s->handlers[i].klass, klass))
            return serr(s, DRAY_EEXIST, "a handler for %s is already registered", klass);
    if (copts && copts->retry_queue &&
        dray__queue_check(copts->retry_queue, s->errstr, sizeof s->errstr))
        return DRAY_EQUEUE;
    if (s->nhandlers == s->caphandlers) {
        size_t cap = s->caphandlers ? s->caphandlers * 2 : 16;
        void *p = dray__realloc(s->handlers, cap * sizeof *s->handlers);
        if (!p)
            return serr(s, DRAY_ENOMEM, "out of memory");
        s->handlers = p;
        s->caphandlers = cap;
    }
    dray__handler *h = &s->handlers[s->nhandlers];
    memset(h, 0, sizeof *h);
    h->klass = dray__strdup(klass);
    h->fn = fn;
    h->ud = userdata;
    if (copts)
        h->opts = *copts;
    h->retry_queue = copts && copts->retry_queue ? dray__strdup(copts->retry_queue) : NULL;
    h->opts.retry_queue = NULL;
    if (!h->klass)
        return serr(s, DRAY_ENOMEM, "out of memory");
    s->nhandlers++;
    return 0;
}

/* Appends fn/ud to the callback array *arr of *n entries; 0, DRAY_EINVAL, DRAY_ENOMEM. */
static int
add_callback(dray_server *s, dray__callback **arr, size_t *n, dray_error_fn fn, void *ud)
{
    if (!fn)
        return serr(s, DRAY_EINVAL, "callback is NULL");
    void *p = dray__realloc(*arr, (*n + 1) * sizeof **arr);
    if (!p)
        return serr(s, DRAY_ENOMEM, "out of memory");
    *arr = p;
    (*arr)[*n].fn = fn;
    (*arr)[*n].ud = ud;
    (*n)++;
    return 0;
}

/* Adds fn to the callbacks called for every failed job; 0, DRAY_EINVAL, DRAY_ENOMEM. */
int
dray_server_on_error(dray_server *s, dray_error_fn fn, void *userdata)
{
    return add_callback(s, &s->on_error, &s->non_error, fn, userdata);
}

/* Adds fn to the callbacks called for every job moved to the dead set. */
int
dray_server_on_death(dray_server *s, dray_error_fn fn, void *userdata)
{
    return add_callback(s, &s->on_death, &s->non_death, fn, userdata);
}

/* dlopens the handler library at path and calls its dray_register_handlers;
 * the handle stays open until s is freed. 0 or DRAY_EMODULE/the library's code. */
int
dray_server_require(dray_server *s, const char *path)
{
    char pbuf[PATH_MAX];
    const char *open_path = dray__dl_path(path, pbuf, sizeof pbuf);
    void *h = open_path ? dlopen(open_path, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!h)
        return serr(s, DRAY_EMODULE, "cannot load handler library %s: %s%s", path,
                    open_path ? dlerror() : "path too long",
                    strchr(path, '/') ? ""
                                      : " (a name without '/' is a file in the current directory)");
    int (*reg)(dray_server *);
    *(void **)&reg = dlsym(h, "dray_register_handlers");
    if (!reg) {
        dlclose(h);
        return serr(s, DRAY_EMODULE, "%s does not export dray_register_handlers", path);
    }
    int rc = reg(s);
    if (rc) {
        if (!s->errstr[0])
            serr(s, rc, "%s: dray_register_handlers failed: %s", path, dray_strerror(rc));
        return rc;
    }
    void *p = dray__realloc(s->dl_handles, (s->ndl + 1) * sizeof *s->dl_handles);
    if (p) {
        s->dl_handles = p;
        s->dl_handles[s->ndl++] = h;
    }
    return 0;
}

/* Wakes the thread in dray_server_run. Async-signal-safe. */
void
dray__server_wake(dray_server *s)
{
    char c = 1;
    ssize_t n = write(s->wake_pipe[1], &c, 1);
    (void)n;
}

/* Asks s to stop (as TERM). Async-signal-safe; returns at once. */
void
dray_server_stop(dray_server *s)
{
    atomic_store(&s->stop_flag, 1);
    dray__server_wake(s);
}

/* Asks s to stop and requeue running jobs now (a second INT). Async-signal-safe. */
void
dray_server_stop_now(dray_server *s)
{
    atomic_store(&s->stop_now_flag, 1);
    atomic_store(&s->stop_flag, 1);
    dray__server_wake(s);
}

/* Asks s to fetch no more jobs (TSTP). Async-signal-safe. */
void
dray_server_quiet(dray_server *s)
{
    atomic_store(&s->quiet_flag, 1);
    dray__server_wake(s);
}

/* Asks s to log every worker's state (TTIN). Async-signal-safe. */
void
dray_server_dump(dray_server *s)
{
    atomic_store(&s->dump_flag, 1);
    dray__server_wake(s);
}

/* Jobs running now: no shared counter on the hot path, so count them. */
static int
busy_count(dray_server *s)
{
    int n = 0;
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__worker *w = &s->workers[i];
        pthread_mutex_lock(&w->mu);
        n += w->cur.payload != NULL;
        pthread_mutex_unlock(&w->mu);
    }
    return n;
}

/* Fills *out with s's counters summed over workers and the jobs running now. */
void
dray_server_counts_get(const dray_server *s, dray_server_counts *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < s->opts.concurrency; i++) {
        out->processed += atomic_load(&s->workers[i].processed);
        out->failed += atomic_load(&s->workers[i].failed);
        out->fetch_lost += atomic_load(&s->workers[i].fetch_lost);
    }
    out->busy = (uint64_t)busy_count((dray_server *)s);
}

/* Marks Redis unavailable (once, logging c's error) until dray__outage_end. */
void
dray__outage_begin(dray_server *s, const dray__conn *c)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&s->outage, &expected, 1)) {
        atomic_store(&s->outage_since_ms, (long long)(dray__mono() * 1000));
        dray__log(DRAY_LOG_ERROR, "redis unavailable (%s); every thread retries with backoff",
                  c->errstr);
    }
}

/* After a connection error on c: 0 if a fresh connect works at once, else the
 * outage begins and c's error code is returned. */
int
dray__conn_recover(dray_server *s, dray__conn *c)
{
    /* A link that died while idle (Redis restarted, a proxy timed out) is
     * not an outage if a fresh connect works at once. */
    if (dray__conn_ensure(c) == 0)
        return 0;
    dray__outage_begin(s, c);
    return c->err ? c->err : DRAY_ECONN;
}

/* Ends a Redis outage (once, logging how long it lasted). */
void
dray__outage_end(dray_server *s)
{
    int expected = 1;
    if (atomic_compare_exchange_strong(&s->outage, &expected, 0)) {
        double down = dray__mono() - (double)atomic_load(&s->outage_since_ms) / 1000.0;
        dray__log(DRAY_LOG_INFO, "redis at %s is back after %.1f s", s->cfg.where, down);
    }
}

/* Wake workers blocked in a fetch (CLIENT UNBLOCK: the BRPOP returns nil
 * at once) so quiet and stop take effect now, not after the 2 s timeout. */
static void
unblock_workers(dray_server *s, dray__conn *c)
{
    dray__pipe p;
    dray__pipe_init(&p, c);
    for (int i = 0; i < s->opts.concurrency; i++) {
        long long id = atomic_load(&s->workers[i].conn.client_id);
        if (id > 0)
            dray__pipe_addf(&p, "CLIENT UNBLOCK %lld", id);
    }
    (void)dray__pipe_run(&p); /* best effort: a worker wakes by its timeout anyway */
    dray__pipe_close(&p);
}

/* Raises s->state to st (never lowers it) and wakes waiters on s->cond. */
static void
set_state(dray_server *s, int st)
{
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->state) < st)
        atomic_store(&s->state, st);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* Logs each worker: its running job and for how long, or idle. */
static void
dump_workers(dray_server *s)
{
    double now = dray_now();
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__worker *w = &s->workers[i];
        pthread_mutex_lock(&w->mu);
        if (w->cur.payload)
            dray__logj(DRAY_LOG_INFO, w->cur_jid, w->cur_class, (now - w->cur_started) * 1000.0,
                       "worker-%d (tid %s) running, queue %s", i, w->tid, w->cur.queue);
        else
            dray__log(DRAY_LOG_INFO, "worker-%d (tid %s) idle", i, w->tid);
        pthread_mutex_unlock(&w->mu);
    }
}

/* True when every started worker has exited; caller holds s->mu. */
static bool
all_exited(dray_server *s)
{
    for (int i = 0; i < s->opts.concurrency; i++)
        if (s->workers[i].started && !atomic_load(&s->workers[i].exited))
            return false;
    return true;
}

/* No live worker is in the middle of recording an outcome. */
static bool
none_writing(dray_server *s)
{
    return !any_writing(s);
}

/* True when a live worker is recording an outcome or requeueing. */
static bool
any_writing(dray_server *s)
{
    for (int i = 0; i < s->opts.concurrency; i++)
        if (s->workers[i].started && !atomic_load(&s->workers[i].exited) &&
            atomic_load(&s->workers[i].writing))
            return true;
    return false;
}

/* Join the workers that exited and are not joined yet. Thread of run or free. */
static void
join_exited(dray_server *s)
{
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__worker *w = &s->workers[i];
        if (w->started && !w->joined && atomic_load(&w->exited)) {
            pthread_join(w->thread, NULL);
            w->joined = 1;
        }
    }
}

/* Wait until done(s) (checked under s->mu) or the deadline (monotonic). */
static void
wait_workers(dray_server *s, double deadline, bool honour_stop_now, bool (*done)(dray_server *))
{
    pthread_mutex_lock(&s->mu);
    while (!done(s) && dray__mono() < deadline) {
        if (honour_stop_now && atomic_load(&s->stop_now_flag))
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L; /* re-check stop_now at 10 Hz */
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cond, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Monotonic time until which a write of a job is retried through an outage:
 * DRAY__WRITE_RETRY_S from now, capped by the shutdown's write_until_ms. */
double
dray__write_deadline(const struct dray_server *s)
{
    double d = dray__mono() + DRAY__WRITE_RETRY_S;
    long long until = atomic_load(&s->write_until_ms);
    return until && (double)until / 1000.0 < d ? (double)until / 1000.0 : d;
}

/* True when a write that failed with rc on c should be tried again: the error
 * is transient and (after a backoff) the deadline has not passed. */
bool
dray__write_again(dray__conn *c, int rc, double deadline)
{
    /* Redis errors that pass: a lost link (EUNSURE too: every write retried
     * here is a ZADD or a push whose repeat is at worst a duplicate, never a
     * loss), a restart loading its data, a busy script, a replica promoted.
     * Any other error would fail again. */
    bool transient =
        rc == DRAY_ECONN || rc == DRAY_EUNSURE ||
        (rc == DRAY_EREDIS && (strstr(c->errstr, "LOADING") || strstr(c->errstr, "BUSY") ||
                               strstr(c->errstr, "TRYAGAIN") || strstr(c->errstr, "READONLY") ||
                               strstr(c->errstr, "MASTERDOWN")));
    if (!transient || dray__mono() >= deadline)
        return false;
    if (dray__conn_backoff(c, NULL) == 0)
        return true; /* reconnected: one more try even past the deadline */
    return dray__mono() < deadline;
}

/* dray__requeue through an outage until the write deadline; 0 or the last error. */
int
dray__requeue_retry(dray__conn *c, const struct dray_server *s, const dray__unit *u)
{
    double until = dray__write_deadline(s);
    int rc, tries = 1;
    while ((rc = dray__requeue(c, s, u))) {
        char why[sizeof c->errstr];
        snprintf(why, sizeof why, "%s", c->errstr);
        if (!dray__write_again(c, rc, until))
            break;
        if (tries++ == 1)
            dray__log(DRAY_LOG_WARN,
                      "cannot requeue a job to queue %s yet (%s); retrying for up to %.0f s",
                      u->queue, why, until - dray__mono());
    }
    if (!rc && tries > 1)
        dray__log(DRAY_LOG_WARN,
                  "requeued a job to queue %s after %d attempts (redis was unavailable)", u->queue,
                  tries);
    return rc;
}

/* After w's job finished although the stopper requeued it: removes that copy
 * (exact bytes, one, from the head) from its queue, logging what happened. */
void
dray__requeued_copy_remove(dray__worker *w, const char *jid, const char *klass)
{
    struct dray_server *s = w->srv;
    dray__buf key;
    dray__buf_init(&key);
    dray__key_buf(&key, &s->cfg, "queue:");
    dray__buf_adds(&key, w->cur.queue);
    if (key.oom) {
        dray__logj(DRAY_LOG_ERROR, jid, klass, -1,
                   "out of memory: its requeued copy stays in queue %s and will run again",
                   w->cur.queue);
        return;
    }
    /* Exact bytes, one copy, searched from the head (the BRPOP end) where
     * the stopper pushed it: this copy only, never another job's. */
    const char *argv[4] = {"LREM", key.p, "-1", w->cur.payload};
    size_t lens[4] = {4, key.len, 2, w->cur.len};
    double until = dray__write_deadline(s);
    redisReply *r = NULL;
    int rc;
    while ((rc = dray__conn_cmd(&w->conn, &r, 4, argv, lens)) &&
           dray__write_again(&w->conn, rc, until))
        if (r) {
            freeReplyObject(r);
            r = NULL;
        }
    if (rc)
        dray__logj(DRAY_LOG_ERROR, jid, klass, -1,
                   "cannot remove its requeued copy from queue %s (%s): it will run again",
                   w->cur.queue, w->conn.errstr);
    else if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
        dray__logj(DRAY_LOG_WARN, jid, klass, -1,
                   "finished after shutdown requeued it: outcome recorded, requeued copy removed");
    else
        dray__logj(DRAY_LOG_WARN, jid, klass, -1,
                   "finished after shutdown requeued it: outcome recorded, but its requeued copy "
                   "was already taken from queue %s and may run again",
                   w->cur.queue);
    if (r)
        freeReplyObject(r);
    dray__buf_close(&key);
}

/* Put every job still running back at the head of its queue, retrying
 * through an outage until write_until_ms. Each worker's lock is held over
 * its push, so a handler finishing meanwhile waits and then sees the copy
 * (requeued 1) to remove; a job that could not be pushed stays requeued 0:
 * if its handler finishes, its outcome is recorded as usual. */
static int
requeue_running(dray_server *s, dray__conn *c)
{
    int n = 0;
    if (dray__fetcher_requeue_running(s, c, &n)) /* a module's fetch provider */
        return n;
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__worker *w = &s->workers[i];
        pthread_mutex_lock(&w->mu);
        n += dray__prefetch_requeue(w, c); /* fetched with the running one, not started */
        if (w->cur.payload && w->requeued == 0) {
            int rc = dray__requeue_retry(c, s, &w->cur);
            if (rc) {
                dray__log_payload(DRAY_LOG_ERROR, w->cur_jid, w->cur_class, w->cur.payload,
                                  w->cur.len,
                                  "cannot requeue unfinished job (%s): lost unless its handler "
                                  "still finishes",
                                  c->errstr);
            } else {
                n++;
                w->requeued = 1;
            }
        }
        pthread_mutex_unlock(&w->mu);
    }
    return n;
}

/* Runs s until stopped: workers, poller, heartbeat, modules; on stop waits up
 * to shutdown_timeout_s then requeues unfinished jobs. 0, DRAY_ESTATE, a module or start error. */
int
dray_server_run(dray_server *s)
{
    if (s->workers[0].started)
        return serr(s, DRAY_ESTATE, "dray_server_run called twice");
    dray__handlers_sort(s);
    dray__crash_install();            /* a crashing handler leaves its jid, class and a backtrace */
    int mrc = dray__modules_start(s); /* $DRAY_MODULES, before any thread starts */
    if (mrc)
        return mrc;
    if (s->nhandlers == 0) /* `dray run` without --require: a likely mistake */
        dray__log(DRAY_LOG_WARN,
                  "no job handlers registered: every job fetched will fail with NameError "
                  "and go to the retry set (load a handler library with --require LIB)");
    dray__conn mc;
    dray__conn_init(&mc, &s->cfg);
    if (dray__conn_ensure(&mc))
        dray__log(DRAY_LOG_WARN, "%s; starting anyway, retrying in the background", mc.errstr);
    dray__log(DRAY_LOG_INFO, "dray %s starting: identity %s, concurrency %d, queues %s%s, redis %s",
              DRAY_VERSION_STRING, s->identity, s->opts.concurrency, s->queues_spec,
              s->strict ? " (strict)" : " (weighted)", s->cfg.where);
    dray__hooks_event(s, DRAY__EV_STARTUP);
    if (mc.ctx)
        dray__heartbeat_beat(s, &mc, 0); /* visible in the Web UI at once */
    int rc = 0;
    for (int i = 0; i < s->opts.concurrency && !rc; i++) {
        rc = pthread_create(&s->workers[i].thread, NULL, dray__worker_main, &s->workers[i]);
        if (!rc)
            s->workers[i].started = 1;
    }
    if (!rc && !(rc = pthread_create(&s->heart, NULL, dray__heartbeat_main, s)))
        s->heart_started = 1;
    if (!rc && !(rc = pthread_create(&s->poller, NULL, dray__poller_main, s)))
        s->poller_started = 1;
    if (rc) {
        char why[DRAY__STRERROR_BYTES];
        serr(s, DRAY_ENOMEM, "cannot start threads: %s", dray__strerror(rc, why, sizeof why));
        atomic_store(&s->stop_flag, 1);
        atomic_store(&s->stop_now_flag, 1);
    }

    /* The main thread waits for signals delivered through the wake pipe. */
    while (!atomic_load(&s->stop_flag)) {
        struct pollfd pfd = {s->wake_pipe[0], POLLIN, 0};
        poll(&pfd, 1, 1000);
        char buf[64];
        while (read(s->wake_pipe[0], buf, sizeof buf) > 0) {
        }
        if (atomic_exchange(&s->dump_flag, 0))
            dump_workers(s);
        if (atomic_exchange(&s->quiet_flag, 0) && atomic_load(&s->state) == DRAY__RUNNING) {
            dray__log(DRAY_LOG_INFO, "quiet: no new jobs will be fetched");
            set_state(s, DRAY__QUIET);
            unblock_workers(s, &mc);
            dray__hooks_event(s, DRAY__EV_QUIET);
        }
    }

    double t0 = dray__mono();
    dray__log(DRAY_LOG_INFO, "stopping: waiting up to %d s for %d running jobs",
              s->opts.shutdown_timeout_s, busy_count(s));
    if (atomic_load(&s->state) == DRAY__RUNNING)
        dray__hooks_event(s, DRAY__EV_QUIET);
    set_state(s, DRAY__STOPPING);
    unblock_workers(s, &mc);
    dray__hooks_event(s, DRAY__EV_SHUTDOWN);
    wait_workers(s, t0 + s->opts.shutdown_timeout_s, true, all_exited);
    /* From here every write that must not be lost (requeues, outcomes of
     * jobs finishing now) shares one retry window. */
    atomic_store(&s->write_until_ms, (long long)((dray__mono() + DRAY__WRITE_RETRY_S) * 1000));
    set_state(s, DRAY__DONE);
    int requeued = requeue_running(s, &mc);
    if (requeued)
        dray__log(DRAY_LOG_WARN, "pushed %d unfinished jobs back to the head of their queues",
                  requeued);
    /* Workers blocked in BRPOP or finishing a dropped job get a short grace;
     * one still writing an outcome through an outage gets the write window. */
    wait_workers(s, dray__mono() + STRAGGLER_GRACE_S, false, all_exited);
    wait_workers(s, (double)atomic_load(&s->write_until_ms) / 1000.0 + 3.0, false, none_writing);
    join_exited(s);
    int running = 0;
    for (int i = 0; i < s->opts.concurrency; i++)
        running += s->workers[i].started && !s->workers[i].joined;
    s->leaked = running > 0;
    if (s->leaked)
        dray__log(DRAY_LOG_WARN,
                  "%d handlers are still running; their jobs were requeued (dray_server_free "
                  "waits for them)",
                  running);
    if (s->poller_started)
        pthread_join(s->poller, NULL);
    if (s->heart_started)
        pthread_join(s->heart, NULL);
    if (dray__heartbeat_clear(s, &mc))
        dray__log(DRAY_LOG_ERROR, "cannot leave the process registry: %s", mc.errstr);
    dray_server_counts c;
    dray_server_counts_get(s, &c);
    dray__log(DRAY_LOG_INFO, "stopped after %.1f s of shutdown; processed %llu, failed %llu",
              dray__mono() - t0, (unsigned long long)c.processed, (unsigned long long)c.failed);
    dray__conn_close(&mc);
    return rc ? DRAY_ENOMEM : 0;
}
