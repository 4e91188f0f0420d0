/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Sidekiq 7's execution metrics (lib/sidekiq/metrics/tracking.rb, shared.rb):
 * per class, jobs processed ("Class|p"), failed ("Class|f") and the
 * milliseconds of successful runs ("Class|ms") in the per-minute hash
 * "j|%Y%m%d|%-H:%-M", and a histogram of successful run times in the
 * BITFIELD "Class-%d-%H:%-M" (26 saturating u16 counters), both kept 8 hours.
 * Each worker counts into its own table (its mutex is only ever contended by
 * a flush); the heartbeat merges the tables and writes them in one MULTI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define METRICS_TTL "28800" /* SHORT_TERM and HISTOGRAM_TTL: 8 hours */

/* Upper bounds in ms, exclusive (shared.rb BUCKET_INTERVALS); the last
 * bucket takes everything longer. */
static const double bucket_ms[DRAY__METRICS_BUCKETS] = {
    20,   30,   45,   65,    100,   150,   225,   335,   500,    750,    1100,   1700,   2500,
    3800, 5750, 8500, 13000, 20000, 30000, 45000, 65000, 100000, 150000, 225000, 335000, 1e20};

/* The histogram bucket (0..DRAY__METRICS_BUCKETS-1) of a run of ms milliseconds. */
int
dray__metrics_bucket(double ms)
{
    for (int i = 0; i < DRAY__METRICS_BUCKETS - 1; i++)
        if (ms < bucket_ms[i])
            return i;
    return DRAY__METRICS_BUCKETS - 1;
}

/* An empty per-worker metrics table in *m (close with dray__metrics_close). */
void
dray__metrics_init(dray__metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

/* Frees a slot array of cap entries and the class names in it. Accepts NULL. */
static void
slots_free(dray__metric *slot, size_t cap)
{
    for (size_t i = 0; slot && i < cap; i++)
        dray__free(slot[i].klass);
    dray__free(slot);
}

/* Frees m's slots and its mutex; m may be initialised again. */
void
dray__metrics_close(dray__metrics *m)
{
    slots_free(m->slot, m->cap);
    m->slot = NULL;
    m->cap = m->n = 0;
    pthread_mutex_destroy(&m->mu);
}

/* FNV-1a hash of the string k, for the open-addressing slot table. */
static size_t
hash(const char *k)
{
    size_t h = 1469598103934665603ULL;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

/* The slot of klass in m, created if missing (the class copied); NULL on
 * OOM. Caller holds m->mu (or owns m alone). */
static dray__metric *
slot_get(dray__metrics *m, const char *klass)
{
    if (m->n * 2 >= m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        dray__metric *ns = dray__calloc(cap, sizeof *ns);
        if (!ns)
            return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slot[i].klass)
                continue;
            size_t j = hash(m->slot[i].klass) & (cap - 1);
            while (ns[j].klass)
                j = (j + 1) & (cap - 1);
            ns[j] = m->slot[i];
        }
        dray__free(m->slot);
        m->slot = ns;
        m->cap = cap;
    }
    size_t j = hash(klass) & (m->cap - 1);
    while (m->slot[j].klass) {
        if (!strcmp(m->slot[j].klass, klass))
            return &m->slot[j];
        j = (j + 1) & (m->cap - 1);
    }
    if (!(m->slot[j].klass = dray__strdup(klass)))
        return NULL;
    m->n++;
    return &m->slot[j];
}

/* Counts one run of klass in m (processed, failed, or ms and histogram for a
 * success); drops it on out of memory. Thread-safe (m->mu). */
void
dray__metrics_record(dray__metrics *m, const char *klass, int failed, double ms)
{
    if (!klass)
        return;
    pthread_mutex_lock(&m->mu);
    dray__metric *e = slot_get(m, klass);
    if (e) {
        e->p++;
        if (failed) {
            e->f++;
        } else {
            /* Sidekiq: whole ms from a ms clock; failures add no time */
            e->ms += ms > 0 ? (uint64_t)ms : 0;
            e->succeeded++;
            e->hist[dray__metrics_bucket(ms)]++;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

/* Add every class of src into dst (dst owned by the caller alone). A class
 * that cannot be added for lack of memory is dropped: metrics only. */
static void
merge(dray__metrics *dst, const dray__metric *src, size_t cap)
{
    for (size_t i = 0; i < cap; i++) {
        if (!src[i].klass)
            continue;
        dray__metric *e = slot_get(dst, src[i].klass);
        if (!e)
            continue;
        e->p += src[i].p;
        e->f += src[i].f;
        e->ms += src[i].ms;
        e->succeeded += src[i].succeeded;
        for (int b = 0; b < DRAY__METRICS_BUCKETS; b++)
            e->hist[b] += src[i].hist[b];
    }
}

/* Append one class's commands to p. */
static void
add_class(dray__pipe *p, const char *ns, const char *jkey, const struct tm *tm,
          const dray__metric *e)
{
    size_t klen = strlen(e->klass);
    size_t flen = klen + 4, hlen = strlen(ns) + klen + 16;
    char *field = dray__malloc(flen), *hkey = dray__malloc(hlen);
    if (!field || !hkey) {
        dray__free(field);
        dray__free(hkey);
        return; /* metrics only */
    }
    char num[32];
    const char *argv[4 + 4 * DRAY__METRICS_BUCKETS];
    size_t lens[4 + 4 * DRAY__METRICS_BUCKETS];
    const char *kinds[3] = {"ms", "p", "f"};
    uint64_t vals[3] = {e->ms, e->p, e->f};
    for (int k = 0; k < 3; k++) {
        /* tracking.rb writes "|ms" once a run succeeded, "|f" once one failed */
        if ((k == 0 && !e->succeeded) || (k == 2 && !e->f))
            continue;
        snprintf(field, flen, "%s|%s", e->klass, kinds[k]);
        snprintf(num, sizeof num, "%llu", (unsigned long long)vals[k]);
        argv[0] = "HINCRBY";
        argv[1] = jkey;
        argv[2] = field;
        argv[3] = num;
        dray__pipe_add(p, 4, argv, NULL);
    }
    if (!e->succeeded) {
        dray__free(field);
        dray__free(hkey);
        return;
    }
    snprintf(hkey, hlen, "%s%s-%02d-%02d:%d", ns, e->klass, tm->tm_mday, tm->tm_hour, tm->tm_min);
    char idx[DRAY__METRICS_BUCKETS][8], val[DRAY__METRICS_BUCKETS][16];
    int n = 0;
    argv[n++] = "BITFIELD";
    argv[n++] = hkey;
    argv[n++] = "OVERFLOW";
    argv[n++] = "SAT";
    for (int b = 0; b < DRAY__METRICS_BUCKETS; b++) {
        if (!e->hist[b])
            continue;
        snprintf(idx[b], sizeof idx[b], "#%d", b);
        snprintf(val[b], sizeof val[b], "%u", e->hist[b] > 65535 ? 65535u : e->hist[b]);
        argv[n++] = "INCRBY";
        argv[n++] = "u16";
        argv[n++] = idx[b];
        argv[n++] = val[b];
    }
    for (int i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    dray__pipe_add(p, n, argv, lens);
    dray__pipe_addf(p, "EXPIRE %s " METRICS_TTL, hkey);
    dray__free(field);
    dray__free(hkey);
}

/* Heartbeat: takes every worker's table, merges them and writes them in one
 * MULTI (at most every DRAY__METRICS_FLUSH_S unless force). What Redis surely
 * did not take (lost link, out of memory) is kept for the next flush; an
 * unsure MULTI is not, as counting twice is worse. 0, DRAY_ECONN or another
 * DRAY_E* code; Redis refusing the write is logged, not returned. */
int
dray__metrics_flush(struct dray_server *s, dray__conn *c, int force)
{
    if (s->opts.no_metrics)
        return 0;
    double now_m = dray__mono();
    if (!force && now_m - s->metrics_flushed_at < DRAY__METRICS_FLUSH_S)
        return 0;
    s->metrics_flushed_at = now_m;
    dray__metrics *pend = &s->metrics_pending;
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__metrics *m = &s->workers[i].metrics;
        pthread_mutex_lock(&m->mu);
        dray__metric *slot = m->slot;
        size_t cap = m->cap;
        m->slot = NULL;
        m->cap = m->n = 0;
        pthread_mutex_unlock(&m->mu);
        merge(pend, slot, cap);
        slots_free(slot, cap);
    }
    if (!pend->n)
        return 0;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char jkey[256];
    snprintf(jkey, sizeof jkey, "%sj|%04d%02d%02d|%d:%d", s->cfg.ns, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
    dray__pipe p;
    dray__pipe_init(&p, c);
    dray__pipe_begin(&p);
    for (size_t i = 0; i < pend->cap; i++)
        if (pend->slot[i].klass)
            add_class(&p, s->cfg.ns, jkey, &tm, &pend->slot[i]);
    dray__pipe_addf(&p, "EXPIRE %s " METRICS_TTL, jkey);
    dray__pipe_commit(&p);
    int rc = dray__pipe_run(&p);
    dray__pipe_close(&p);
    /* Kept for the next flush only when Redis surely did not take them
     * (an unsure block may have run: counting it twice would be worse). */
    if (rc != DRAY_ECONN && rc != DRAY_ENOMEM) {
        slots_free(pend->slot, pend->cap);
        pend->slot = NULL;
        pend->cap = pend->n = 0;
    }
    if (rc == DRAY_EREDIS)
        dray__log(DRAY_LOG_WARN, "metrics: Redis refused the write: %s", c->errstr);
    return rc == DRAY_EUNSURE ? DRAY_ECONN : rc == DRAY_EREDIS ? 0 : rc;
}
