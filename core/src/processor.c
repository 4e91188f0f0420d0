/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Worker threads: fetch, parse, run the server hooks and the handler, record
 * the outcome. Besides the fetch, the success path costs no Redis round
 * trip: the cancel check is a local lookup (cancel.c) and counters are
 * per-worker, flushed by the heartbeat. */
#include <execinfo.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define MESSAGE_BYTES 2048
#define FRAMES_MAX 64 /* stack frames captured for error_backtrace */

struct dray_result {
    int failed;
    int deferred;
    double defer_s;
    char error_class[128];
    char message[MESSAGE_BYTES];
    int bt_want;              /* lines the job's "backtrace" asks for; 0: none */
    int bt_base;              /* stack depth where the handler is called: frames below are dray's */
    int nframes;              /* frames captured by dray_result_fail */
    void *frames[FRAMES_MAX]; /* the failing call's stack, dray_result_fail's own frame skipped */
    char **lines;             /* dray_result_backtrace_add's lines (dray__malloc'ed) */
    size_t nlines;
};

/* Marks res failed with error_class ("RuntimeError" when empty) and a printf
 * message, capturing the handler's stack when the job wants a backtrace; returns -1. */
int
dray_result_fail(dray_result *res, const char *error_class, const char *fmt, ...)
{
    res->failed = 1;
    snprintf(res->error_class, sizeof res->error_class, "%s",
             error_class && *error_class ? error_class : "RuntimeError");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof res->message, fmt ? fmt : "", ap);
    va_end(ap);
    if (res->bt_want > 0 && !res->nframes) {
        /* the handler's stack is live here: the failing call is frame 1 */
        void *f[FRAMES_MAX + 1];
        int n = backtrace(f, FRAMES_MAX + 1);
        /* keep the handler's frames, not the worker loop's below them (as
         * Sidekiq's backtrace cleaner drops the framework's lines) */
        int keep = n - 1 - res->bt_base > 0 ? n - 1 - res->bt_base : n - 1;
        if (keep > 0) {
            memcpy(res->frames, f + 1, (size_t)keep * sizeof *f);
            res->nframes = keep;
        }
    }
    return -1;
}

/* Appends a copy of line to res's error_backtrace (beyond DRAY_BACKTRACE_MAX
 * it is dropped, returning 0); DRAY_EINVAL, DRAY_ENOMEM. */
int
dray_result_backtrace_add(dray_result *res, const char *line)
{
    if (!res || !line)
        return DRAY_EINVAL;
    if (res->nlines >= DRAY_BACKTRACE_MAX)
        return 0; /* the rest would be cut when stored */
    char **l = dray__realloc(res->lines, (res->nlines + 1) * sizeof *l);
    if (!l)
        return DRAY_ENOMEM;
    res->lines = l;
    if (!(l[res->nlines] = dray__strdup(line)))
        return DRAY_ENOMEM;
    res->nlines++;
    return 0;
}

/* Frees the backtrace lines res holds; res itself is the caller's. */
static void
result_close(dray_result *res)
{
    for (size_t i = 0; i < res->nlines; i++)
        dray__free(res->lines[i]);
    dray__free(res->lines);
}

/* Marks res deferred for seconds (at least 1) with reason; returns -1. */
int
dray_result_defer(dray_result *res, double seconds, const char *reason)
{
    res->deferred = 1;
    res->defer_s = seconds > 0 ? seconds : 1;
    snprintf(res->message, sizeof res->message, "%s", reason ? reason : "deferred");
    return -1;
}

/* Orders handlers by class name, for qsort and bsearch. */
static int
handler_cmp(const void *a, const void *b)
{
    return strcmp(((const dray__handler *)a)->klass, ((const dray__handler *)b)->klass);
}

/* Sorts s's handler table by class so dray__handler_find can bsearch it. */
void
dray__handlers_sort(struct dray_server *s)
{
    if (s->nhandlers)
        qsort(s->handlers, s->nhandlers, sizeof *s->handlers, handler_cmp);
}

/* The handler registered for klass in s (borrowed), or NULL; needs a sorted table. */
const dray__handler *
dray__handler_find(const struct dray_server *s, const char *klass)
{
    dray__handler key = {.klass = (char *)klass};
    return bsearch(&key, s->handlers, s->nhandlers, sizeof *s->handlers, handler_cmp);
}

/* Back to the schedule set after `seconds`, same jid, retry_count untouched;
 * "deferred" counts how often. */
static int
defer_job(dray__worker *w, dray_job *job, double seconds)
{
    struct dray_server *s = w->srv;
    json_t *d = json_object_get(job->obj, "deferred");
    json_int_t n = json_is_integer(d) ? json_integer_value(d) : 0;
    /* a payload's count may already be the largest integer: it stays there */
    json_object_set_new(job->obj, "deferred", json_integer(n < LLONG_MAX ? n + 1 : n));
    json_object_del(job->obj, "enqueued_at");
    size_t len;
    char *json = dray__json_dump(job->obj, &len);
    if (!json)
        return DRAY_ENOMEM;
    char score[32];
    snprintf(score, sizeof score, "%.6f", dray_now() + seconds);
    const char *argv[4] = {"ZADD", s->k_schedule, score, json};
    size_t lens[4] = {4, strlen(s->k_schedule), strlen(score), len};
    double until = dray__write_deadline(s);
    int rc, tries = 0;
    while ((rc = dray__conn_cmd(&w->conn, NULL, 4, argv, lens)) &&
           dray__write_again(&w->conn, rc, until))
        if (tries++ == 0)
            dray__logj(DRAY_LOG_WARN, dray_job_jid(job), dray_job_class(job), -1,
                       "cannot defer job yet (%s); retrying for up to %.0f s", w->conn.errstr,
                       until - dray__mono());
    if (rc)
        dray__logj(DRAY_LOG_ERROR, dray_job_jid(job), dray_job_class(job), -1,
                   "deferred job lost: cannot write it to the schedule set (%s); payload: %s",
                   w->conn.errstr, json);
    free(json);
    return rc;
}

/* Moves *u into w->cur (under w->mu, so the stopper sees it) and clears *u;
 * w owns the unit from here until unit_finish. */
static void
unit_begin(dray__worker *w, dray__unit *u)
{
    pthread_mutex_lock(&w->mu);
    w->cur = *u;
    w->cur_started = dray_now();
    w->requeued = 0;
    pthread_mutex_unlock(&w->mu);
    memset(u, 0, sizeof *u);
}

/* Publishes the parsed job to the stopper, crash report and supervisor and
 * arms its deadline; *hp gets its handler (NULL: none registered). Returns 1,
 * having published nothing, when `dray cancel` recorded the job before it
 * started (it is not run); else 0. job's class
 * and jid strings stay owned by job. */
static int
job_begin(dray__worker *w, dray_job *job, const dray__handler **hp)
{
    struct dray_server *s = w->srv;
    json_t *q = json_object_get(job->obj, "queue");
    if (!q)
        json_object_set_new(job->obj, "queue", json_string(w->cur.queue));
    const char *klass = dray_job_class(job);
    const char *jid = dray_job_jid(job);
    *hp = NULL;
    /* Before the heartbeat can see the jid: a skipped job is never flagged. */
    if (dray__cancel_before_run(w, jid, klass))
        return 1; /* dray cancel recorded before it started: not run */
    pthread_mutex_lock(&w->mu);
    w->cur_class = klass;
    w->cur_jid = jid;
    w->cur_cancel = 0;
    atomic_store(&w->cur_over, 0); /* before the heartbeat can see this jid */
    pthread_mutex_unlock(&w->mu);
    dray__crash_job_start(w->crash_slot, jid, klass, w->cur.queue, w->cur.payload, w->cur.len);
    if (s->opts.log_jobs)
        dray__logj(DRAY_LOG_INFO, jid, klass, -1, "start");

    const dray__handler *h = dray__handler_find(s, klass);
    double timeout_s = dray__job_timeout(job, h);
    dray__sup_job_start(w, jid, klass, w->cur.queue, w->cur.payload, w->cur.len, timeout_s);
    pthread_mutex_lock(&w->mu);
    w->cur_deadline = timeout_s > 0 ? w->cur_started + timeout_s : 0;
    pthread_mutex_unlock(&w->mu);
    job->deadline = w->cur_deadline;
    job->over = &w->cur_over;
    *hp = h;
    return 0;
}

/* Runs the before hooks and then the handler (or the failure that stands in
 * for a missing one); fills *res (caller closes it with result_close) and
 * *entered, returns a DRAY__OUT_* outcome. The stack depth for
 * error_backtrace is measured here, in the frame that calls the handler. */
static int
perform_job(dray__worker *w, dray_job *job, const dray__handler *h, dray_result *res, int *entered)
{
    const char *klass = dray_job_class(job);
    res->failed = res->deferred = 0;
    res->error_class[0] = res->message[0] = '\0';
    res->bt_want = dray__backtrace_want(job);
    res->bt_base = 0;
    if (res->bt_want > 0) {
        void *f[FRAMES_MAX + 1];
        res->bt_base = backtrace(f, FRAMES_MAX + 1);
    }
    res->nframes = 0;
    res->lines = NULL;
    res->nlines = 0;
    *entered = 0;
    double defer_s = 0;
    int before = dray__hooks_before(w, job, &defer_s, res->message, sizeof res->message, entered);
    if (before == DRAY__BEFORE_SKIP)
        return DRAY__OUT_SKIPPED;
    if (before == DRAY__BEFORE_DEFER) {
        res->deferred = 1;
        res->defer_s = defer_s;
        return DRAY__OUT_DEFERRED;
    }
    if (before == DRAY__BEFORE_FAIL) {
        char why[sizeof res->message]; /* the hook's message is in res->message: no overlap */
        memcpy(why, res->message, sizeof why);
        dray_result_fail(res, "DrayHookError", "%s", why);
        return DRAY__OUT_FAILURE;
    }
    if (!h && !strcmp(klass, DRAY__MALFORMED_CLASS)) {
        /* A wrapped malformed payload retried from the dead set: it dies
         * again with its own reason ("retry": 0), not as an unknown class. */
        const char *ec = json_string_value(json_object_get(job->obj, "error_class"));
        const char *em = json_string_value(json_object_get(job->obj, "error_message"));
        dray_result_fail(res, ec ? ec : DRAY__MALFORMED_ERROR, "%s", em ? em : "malformed payload");
        return DRAY__OUT_FAILURE;
    }
    if (!h) {
        dray_result_fail(res, "NameError",
                         "uninitialized constant %s (no handler registered in this dray process)",
                         klass);
        return DRAY__OUT_FAILURE;
    }
    int hr = h->fn(job, res, h->ud);
    if (res->deferred)
        return DRAY__OUT_DEFERRED;
    if (hr != 0 || res->failed) {
        if (!res->failed)
            dray_result_fail(res, "RuntimeError", "handler for %s returned %d", klass, hr);
        return DRAY__OUT_FAILURE;
    }
    return DRAY__OUT_SUCCESS;
}

/* Marks w as finishing so the stopper leaves its job alone; returns 1 when
 * the stopper had already pushed a copy back (the caller removes it). */
static int
job_finishing(dray__worker *w)
{
    atomic_store(&w->writing, 1);
    pthread_mutex_lock(&w->mu);
    int requeued = w->requeued == 1;
    if (!requeued)
        w->requeued = -1; /* finishing: the stopper must leave it alone */
    pthread_mutex_unlock(&w->mu);
    return requeued;
}

/* Records outcome for job (metrics, statsd, counters, log) and writes what it
 * implies to Redis: the schedule set for a deferral, retry or dead set for a
 * failure. job stays owned by the caller; ms is the run time. */
static void
outcome_record(dray__worker *w, dray_job *job, const dray__handler *h, int outcome,
               dray_result *res, double ms)
{
    struct dray_server *s = w->srv;
    const char *klass = dray_job_class(job);
    const char *jid = dray_job_jid(job);
    if (outcome != DRAY__OUT_DEFERRED) {
        const char *wrapped = json_string_value(json_object_get(job->obj, "wrapped"));
        const char *as = wrapped ? wrapped : klass;
        dray__procmetrics_record(w, as, outcome == DRAY__OUT_FAILURE, ms); /* in memory only */
        if (!s->opts.no_metrics)
            dray__metrics_record(&w->metrics, as, outcome == DRAY__OUT_FAILURE, ms);
    }
    if (outcome != DRAY__OUT_DEFERRED && s->statsd)
        dray__statsd_job(s->statsd, klass, w->cur.queue, outcome == DRAY__OUT_FAILURE, ms);
    switch (outcome) {
    case DRAY__OUT_SUCCESS:
    case DRAY__OUT_SKIPPED:
        atomic_fetch_add_explicit(&w->processed, 1, memory_order_relaxed);
        if (s->opts.log_jobs)
            dray__logj(DRAY_LOG_INFO, jid, klass, ms,
                       outcome == DRAY__OUT_SKIPPED ? "skipped" : "done");
        break;
    case DRAY__OUT_DEFERRED:
        if (s->opts.log_jobs)
            dray__logj(DRAY_LOG_INFO, jid, klass, ms, "deferred %.1fs: %s", res->defer_s,
                       res->message);
        defer_job(w, job, res->defer_s);
        break;
    default:
        atomic_fetch_add_explicit(&w->processed, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
        dray__logj(DRAY_LOG_WARN, jid, klass, ms, "fail: %s: %s", res->error_class, res->message);
        for (size_t i = 0; i < s->non_error; i++)
            s->on_error[i].fn(job, res->error_class, res->message, s->on_error[i].ud);
        if (dray__backtrace_store(job, res->bt_want, (const char *const *)res->lines, res->nlines,
                                  res->frames, res->nframes))
            dray__logj(DRAY_LOG_WARN, jid, klass, -1, "out of memory storing error_backtrace");
        if (dray__cancel_acted(w)) /* cancelled: its failure is not retried */
            dray__logj(DRAY_LOG_WARN, jid, klass, -1, "cancelled (dray cancel): not retried");
        else
            dray__retry_or_die(w, job, h, res->error_class, res->message);
        break;
    }
}

/* Takes w->cur out of the stopper's sight and acks it unless the stopper
 * already requeued it (a fetch provider sees exactly one of ack or requeue);
 * frees the unit and job (may be NULL) and wakes a waiting stopper. */
static void
unit_finish(dray__worker *w, dray_job *job)
{
    struct dray_server *s = w->srv;
    dray__crash_job_end(w->crash_slot);
    dray__sup_job_end(w);
    pthread_mutex_lock(&w->mu);
    dray__unit fin = w->cur;
    int ack = w->requeued != 1;
    memset(&w->cur, 0, sizeof w->cur);
    w->cur_class = w->cur_jid = NULL;
    w->requeued = 0;
    w->cur_deadline = 0;
    pthread_mutex_unlock(&w->mu);
    if (ack)
        dray__fetch_ack(w, &fin);
    dray__unit_clear(&fin);
    dray_job_free(job);
    atomic_store(&w->writing, 0);
    if (atomic_load(&s->state) >= DRAY__STOPPING) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Run one fetched unit to its outcome. Takes ownership of *u. */
static void
process(dray__worker *w, dray__unit *u)
{
    struct dray_server *s = w->srv;
    double t0 = dray__mono();
    unit_begin(w, u);

    char err[256];
    dray_job *job = NULL;
    int rc = dray_job_parse(w->cur.payload, w->cur.len, s->opts.max_payload, &job, err, sizeof err);
    if (rc) {
        dray__crash_job_start(w->crash_slot, "(malformed payload)", NULL, w->cur.queue,
                              w->cur.payload, w->cur.len);
        atomic_store(&w->writing, 1);
        dray__dead_raw(w, &w->cur, err);
        unit_finish(w, job);
        return;
    }
    const dray__handler *h;
    if (job_begin(w, job, &h)) {
        unit_finish(w, job);
        return;
    }
    dray_result res;
    int entered;
    int outcome = perform_job(w, job, h, &res, &entered);

    if (outcome == DRAY__OUT_FAILURE || outcome == DRAY__OUT_DEFERRED)
        dray__hooks_record(w, job, outcome, res.message, sizeof res.message, entered);
    /* The stopper may have pushed a copy of this job back while it ran:
     * the outcome is recorded all the same and the copy removed below. */
    int requeued = job_finishing(w);
    double ms = (dray__mono() - t0) * 1000.0;
    outcome_record(w, job, h, outcome, &res, ms);
    result_close(&res);
    dray__hooks_after(w, job, outcome, entered);
    if (requeued)
        dray__requeued_copy_remove(w, dray_job_jid(job), dray_job_class(job));
    unit_finish(w, job);
}

/* Worker thread body (arg: its dray__worker): fetch and process until the
 * server leaves RUNNING, then requeue any prefetched jobs and mark w exited. */
void *
dray__worker_main(void *arg)
{
    dray__worker *w = arg;
    struct dray_server *s = w->srv;
    char name[24];
    snprintf(name, sizeof name, "worker-%d", w->index);
    dray__log_thread_name(name);
    void *altstack;
    w->crash_slot = dray__crash_thread_start(w->index, &altstack);
    while (atomic_load(&s->state) == DRAY__RUNNING) {
        dray__unit u;
        int rc = dray__fetch(w, &u);
        if (rc < 0) {
            if (rc == DRAY_ECONN || rc == DRAY_EAUTH) {
                if (dray__conn_recover(s, &w->conn) && dray__conn_backoff(&w->conn, &s->state) == 0)
                    dray__outage_end(s);
            } else {
                dray__log(DRAY_LOG_ERROR, "fetch failed: %s", w->conn.errstr);
                dray__conn_backoff(&w->conn, &s->state);
            }
            continue;
        }
        if (atomic_load_explicit(&s->outage, memory_order_relaxed))
            dray__outage_end(s);
        if (rc == 0)
            continue;
        /* Supervised: the supervisor holds a copy from here (a neighbour's
         * crash must not lose it), refined with jid and class at start. */
        dray__sup_job_start(w, "?", "?", u.queue, u.payload, u.len, 0);
        if (atomic_load(&s->state) != DRAY__RUNNING) {
            /* Fetched while going quiet: straight back to the head, after
             * the ones fetched with it, so it stays first. */
            atomic_store(&w->writing, 1);
            pthread_mutex_lock(&w->mu);
            dray__prefetch_requeue(w, &w->conn);
            pthread_mutex_unlock(&w->mu);
            if (dray__requeue_retry(&w->conn, s, &u))
                dray__log_payload(DRAY_LOG_ERROR, NULL, NULL, u.payload, u.len,
                                  "job lost: cannot requeue it after fetching it during shutdown "
                                  "(%s)",
                                  w->conn.errstr);
            dray__unit_clear(&u);
            break;
        }
        process(w, &u);
        if (dray__sup_isolate()) {
            dray_server_stop(s); /* --isolate: this child's one job is done */
            break;
        }
    }
    atomic_store(&w->writing, 1); /* the stopper waits for these requeues */
    pthread_mutex_lock(&w->mu);
    int back = dray__prefetch_requeue(w, &w->conn);
    pthread_mutex_unlock(&w->mu);
    if (back)
        dray__log(DRAY_LOG_INFO, "pushed %d fetched, unstarted jobs back to their queues", back);
    dray__crash_thread_end(w->crash_slot, altstack);
    /* Last touch of the server: exited is set under s->mu, so once
     * dray_server_free sees it (under the same lock) nothing here runs. */
    pthread_mutex_lock(&s->mu);
    atomic_store(&w->exited, 1);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}
