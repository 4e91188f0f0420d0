/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* This process's figures as Prometheus text (dray_server_metrics_text, what
 * `dray run --metrics-listen` serves): counters kept in memory since the
 * process started, so they need no Redis and are rate()-able. Per class,
 * each worker keeps a cumulative table (dray__worker.cum, never flushed)
 * beside the Sidekiq metrics table that the heartbeat empties each minute. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* Sidekiq's bucket bounds (metrics.c) in seconds, as Prometheus "le". */
static const char *const bucket_le[DRAY__METRICS_BUCKETS - 1] = {
    "0.02", "0.03", "0.045", "0.065", "0.1", "0.15", "0.225", "0.335", "0.5",
    "0.75", "1.1",  "1.7",   "2.5",   "3.8", "5.75", "8.5",   "13",    "20",
    "30",   "45",   "65",    "100",   "150", "225",  "335"};

#define OTHER_CLASS "(other)" /* classes beyond DRAY__PROC_CLASSES_MAX */

/* Count a finished job in w->cum under its class, or "(other)" past DRAY__PROC_CLASSES_MAX
 * classes. Worker thread; cannot fail. */
void
dray__procmetrics_record(dray__worker *w, const char *klass, int failed, double ms)
{
    dray__metrics *m = &w->cum;
    int known = 1;
    pthread_mutex_lock(&m->mu);
    if (klass && m->n >= DRAY__PROC_CLASSES_MAX) {
        known = 0;
        for (size_t i = 0; i < m->cap && !known; i++)
            known = m->slot[i].klass && !strcmp(m->slot[i].klass, klass);
    }
    pthread_mutex_unlock(&m->mu);
    dray__metrics_record(m, known ? klass : OTHER_CLASS, failed, ms);
}

/* Append s as a Prometheus label value. */
static void
label(dray__buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            dray__buf_adds(b, "\\\\");
        else if (*s == '"')
            dray__buf_adds(b, "\\\"");
        else if (*s == '\n')
            dray__buf_adds(b, "\\n");
        else
            dray__buf_add(b, s, 1);
    }
}

/* A Prometheus # HELP and # TYPE pair for name. */
static void
head(dray__buf *b, const char *name, const char *type, const char *help)
{
    dray__buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Every worker's cumulative table merged into *into (slots owned by it).
 * Workers' locks are taken one at a time. DRAY_ENOMEM. */
static int
merge(struct dray_server *s, dray__metrics *into)
{
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__metrics *m = &s->workers[i].cum;
        pthread_mutex_lock(&m->mu);
        for (size_t k = 0; k < m->cap; k++) {
            const dray__metric *e = &m->slot[k];
            if (!e->klass)
                continue;
            /* fold e into into's slot for the class: record() per count
             * would lose the ms sum, so add fields directly */
            dray__metric *t = NULL;
            for (size_t j = 0; j < into->n; j++)
                if (!strcmp(into->slot[j].klass, e->klass)) {
                    t = &into->slot[j];
                    break;
                }
            if (!t) {
                if (into->n == into->cap) {
                    size_t cap = into->cap ? into->cap * 2 : 16;
                    void *p = dray__realloc(into->slot, cap * sizeof *into->slot);
                    if (!p) {
                        pthread_mutex_unlock(&m->mu);
                        return DRAY_ENOMEM;
                    }
                    into->slot = p;
                    into->cap = cap;
                }
                t = &into->slot[into->n];
                memset(t, 0, sizeof *t);
                if (!(t->klass = dray__strdup(e->klass))) {
                    pthread_mutex_unlock(&m->mu);
                    return DRAY_ENOMEM;
                }
                into->n++;
            }
            t->p += e->p;
            t->f += e->f;
            t->ms += e->ms;
            t->succeeded += e->succeeded;
            for (int x = 0; x < DRAY__METRICS_BUCKETS; x++)
                t->hist[x] += e->hist[x];
        }
        pthread_mutex_unlock(&m->mu);
    }
    return 0;
}

/* The per-class counters and duration histogram of the merged table all, appended to b. */
static void
per_class(dray__buf *b, const dray__metrics *all)
{
    head(b, "dray_process_jobs_processed_total", "counter",
         "Jobs this process finished, by class (failures included).");
    for (size_t i = 0; i < all->n; i++) {
        dray__buf_adds(b, "dray_process_jobs_processed_total{class=\"");
        label(b, all->slot[i].klass);
        dray__buf_addf(b, "\"} %llu\n", (unsigned long long)all->slot[i].p);
    }
    head(b, "dray_process_jobs_failed_total", "counter", "Jobs of this process that failed.");
    for (size_t i = 0; i < all->n; i++) {
        dray__buf_adds(b, "dray_process_jobs_failed_total{class=\"");
        label(b, all->slot[i].klass);
        dray__buf_addf(b, "\"} %llu\n", (unsigned long long)all->slot[i].f);
    }
    head(b, "dray_process_job_duration_seconds", "histogram",
         "Run time of this process's successful jobs (Sidekiq's buckets).");
    for (size_t i = 0; i < all->n; i++) {
        const dray__metric *e = &all->slot[i];
        unsigned long long cum = 0;
        for (int x = 0; x < DRAY__METRICS_BUCKETS; x++) {
            cum += e->hist[x];
            dray__buf_adds(b, "dray_process_job_duration_seconds_bucket{class=\"");
            label(b, e->klass);
            dray__buf_addf(b, "\",le=\"%s\"} %llu\n",
                           x < DRAY__METRICS_BUCKETS - 1 ? bucket_le[x] : "+Inf", cum);
        }
        dray__buf_adds(b, "dray_process_job_duration_seconds_sum{class=\"");
        label(b, e->klass);
        dray__buf_addf(b, "\"} %.3f\n", (double)e->ms / 1000.0);
        dray__buf_adds(b, "dray_process_job_duration_seconds_count{class=\"");
        label(b, e->klass);
        dray__buf_addf(b, "\"} %llu\n", cum);
    }
}

/* This process's Prometheus text in *out (malloc'ed, the caller frees it). Any thread while
 * the server runs. DRAY_ENOMEM. */
int
dray_server_metrics_text(dray_server *s, char **out, size_t *len)
{
    *out = NULL;
    if (len)
        *len = 0;
    uint64_t processed = 0, failed = 0;
    int busy = 0;
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__worker *w = &s->workers[i];
        processed += atomic_load(&w->processed);
        failed += atomic_load(&w->failed);
        pthread_mutex_lock(&w->mu);
        busy += w->cur.payload != NULL;
        pthread_mutex_unlock(&w->mu);
    }
    dray__metrics all = {.slot = NULL, .cap = 0, .n = 0};
    int rc = merge(s, &all);
    dray__buf b;
    dray__buf_init(&b);
    head(&b, "dray_process_info", "gauge", "This process: identity and version (value 1).");
    dray__buf_adds(&b, "dray_process_info{identity=\"");
    label(&b, s->identity);
    dray__buf_addf(&b, "\",version=\"%s\"} 1\n", DRAY_VERSION_STRING);
    head(&b, "dray_process_start_time_seconds", "gauge", "When this process started (epoch s).");
    dray__buf_addf(&b, "dray_process_start_time_seconds %.3f\n", s->started_at);
    head(&b, "dray_process_processed_total", "counter",
         "Jobs this process finished since it started (failures included).");
    dray__buf_addf(&b, "dray_process_processed_total %llu\n", (unsigned long long)processed);
    head(&b, "dray_process_failed_total", "counter", "Jobs of this process that failed.");
    dray__buf_addf(&b, "dray_process_failed_total %llu\n", (unsigned long long)failed);
    head(&b, "dray_process_concurrency", "gauge", "Worker threads of this process.");
    dray__buf_addf(&b, "dray_process_concurrency %d\n", s->opts.concurrency);
    head(&b, "dray_process_busy_threads", "gauge", "Worker threads running a job now.");
    dray__buf_addf(&b, "dray_process_busy_threads %d\n", busy);
    long rtt = atomic_load(&s->rtt_us);
    head(&b, "dray_process_redis_rtt_seconds", "gauge",
         "PING round trip at this process's last heartbeat (-1: none yet).");
    if (rtt < 0)
        dray__buf_adds(&b, "dray_process_redis_rtt_seconds -1\n");
    else
        dray__buf_addf(&b, "dray_process_redis_rtt_seconds %.6f\n", rtt / 1e6);
    if (!rc)
        per_class(&b, &all);
    for (size_t i = 0; i < all.n; i++)
        dray__free(all.slot[i].klass);
    dray__free(all.slot);
    if (rc || b.oom) {
        dray__buf_close(&b);
        return DRAY_ENOMEM;
    }
    *out = b.p;
    if (len)
        *len = b.len;
    return 0;
}
