/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The heartbeat: Sidekiq 6's process registry (processes set, identity
 * hash, <identity>:workers), stats flush, remote signals, module ticks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define STATS_TTL "157680000" /* 5 years, as Sidekiq */

/* This process's resident set size in KiB from /proc, or 0 when unknown. */
static long
rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    long kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Flush counter deltas; the flushed marks move only when Redis took them. */
static int
flush_stats(struct dray_server *s, dray__conn *c)
{
    uint64_t p = 0, f = 0;
    for (int i = 0; i < s->opts.concurrency; i++) {
        p += atomic_load_explicit(&s->workers[i].processed, memory_order_relaxed);
        f += atomic_load_explicit(&s->workers[i].failed, memory_order_relaxed);
    }
    uint64_t dp = p - atomic_load(&s->flushed_processed);
    uint64_t df = f - atomic_load(&s->flushed_failed);
    if (!dp && !df)
        return 0;
    char date[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%d", &tm);
    const char *ns = s->cfg.ns;
    dray__pipe pl;
    dray__pipe_init(&pl, c);
    dray__pipe_begin(&pl);
    dray__pipe_addf(&pl, "INCRBY %sstat:processed %llu", ns, (unsigned long long)dp);
    dray__pipe_addf(&pl, "INCRBY %sstat:processed:%s %llu", ns, date, (unsigned long long)dp);
    dray__pipe_addf(&pl, "EXPIRE %sstat:processed:%s " STATS_TTL, ns, date);
    dray__pipe_addf(&pl, "INCRBY %sstat:failed %llu", ns, (unsigned long long)df);
    dray__pipe_addf(&pl, "INCRBY %sstat:failed:%s %llu", ns, date, (unsigned long long)df);
    dray__pipe_addf(&pl, "EXPIRE %sstat:failed:%s " STATS_TTL, ns, date);
    dray__pipe_commit(&pl);
    int rc = dray__pipe_run(&pl);
    /* the flushed marks move only when the whole block ran */
    if (!rc) {
        atomic_fetch_add(&s->flushed_processed, dp);
        atomic_fetch_add(&s->flushed_failed, df);
    }
    dray__pipe_close(&pl);
    return rc == DRAY_EUNSURE ? DRAY_ECONN : rc;
}

/* Add "UNLINK work; HSET work tid json...; EXPIRE work 60" in a MULTI to p,
 * for 6.x's "<identity>:workers" and 7.x's "<identity>:work";
 * *busy counts the busy workers. */
static void
add_work(struct dray_server *s, dray__pipe *p, int *busy)
{
    *busy = 0;
    dray__pipe_begin(p);
    dray__pipe_addf(p, "UNLINK %s %s", s->k_work, s->k_work7);
    for (int i = 0; i < s->opts.concurrency; i++) {
        dray__worker *w = &s->workers[i];
        pthread_mutex_lock(&w->mu);
        if (w->cur.payload && w->cur_deadline > 0 && dray_now() > w->cur_deadline &&
            !atomic_exchange(&w->cur_over, 1))
            dray__logj(DRAY_LOG_WARN, w->cur_jid, w->cur_class, -1,
                       "running past its timeout (%.1fs ago); in thread mode it is flagged "
                       "(dray_job_cancelled), not stopped",
                       dray_now() - w->cur_deadline);
        if (w->cur.payload) {
            json_t *o = json_pack("{s:s, s:s%, s:I}", "queue", w->cur.queue, "payload",
                                  w->cur.payload, w->cur.len, "run_at", (json_int_t)w->cur_started);
            char *v = o ? dray__json_dump(o, NULL) : NULL;
            json_decref(o);
            if (v) {
                if (!dray__pipe_addf(p, "HSET %s %s %s", s->k_work, w->tid, v) &&
                    !dray__pipe_addf(p, "HSET %s %s %s", s->k_work7, w->tid, v))
                    (*busy)++;
                free(v);
            }
        }
        pthread_mutex_unlock(&w->mu);
    }
    dray__pipe_addf(p, "EXPIRE %s 60", s->k_work);
    dray__pipe_addf(p, "EXPIRE %s 60", s->k_work7);
    dray__pipe_commit(p);
}

/* Acts on a remote signal popped from the process's signals list (TSTP/USR1
 * quiet, TERM/INT stop, TTIN dump); logs an unknown one. */
static void
handle_signal(struct dray_server *s, const char *sig)
{
    dray__log(DRAY_LOG_INFO, "remote signal %s", sig);
    if (!strcmp(sig, "TSTP") || !strcmp(sig, "USR1"))
        dray_server_quiet(s);
    else if (!strcmp(sig, "TERM") || !strcmp(sig, "INT"))
        dray_server_stop(s);
    else if (!strcmp(sig, "TTIN"))
        dray_server_dump(s);
    else
        dray__log(DRAY_LOG_WARN, "ignoring unknown remote signal %s", sig);
}

/* One heartbeat over c: flush counters and metrics, then (unless final) the
 * work hash, the process record and one remote signal. 0, DRAY_ECONN, or another DRAY_E* code. */
int
dray__heartbeat_beat(struct dray_server *s, dray__conn *c, int final)
{
    int rc = flush_stats(s, c);
    if (!rc)
        rc = dray__metrics_flush(s, c, final);
    if (rc || final)
        return rc;
    int busy;
    dray__pipe p;
    dray__pipe_init(&p, c);
    add_work(s, &p, &busy);
    rc = dray__pipe_run(&p);
    dray__pipe_close(&p);
    if (rc == DRAY_ECONN || rc == DRAY_EUNSURE)
        return DRAY_ECONN;
    double t0 = dray__mono();
    if ((rc = dray__conn_cmdf(c, NULL, "PING")))
        return rc;
    long rtt_us = (long)((dray__mono() - t0) * 1e6);
    atomic_store(&s->rtt_us, rtt_us); /* dray_server_metrics_text */
    char beat[32], busys[16], rtts[24], rss[24];
    snprintf(beat, sizeof beat, "%.6f", dray_now());
    snprintf(busys, sizeof busys, "%d", busy);
    snprintf(rtts, sizeof rtts, "%ld", rtt_us);
    snprintf(rss, sizeof rss, "%ld", rss_kb());
    const char *quiet = atomic_load(&s->state) >= DRAY__QUIET ? "true" : "false";
    const char *hset[14] = {"HSET", s->k_identity, "info", s->info_json, "busy", busys, "beat",
                            beat,   "rtt_us",      rtts,   "quiet",      quiet,  "rss", rss};
    dray__pipe_init(&p, c);
    dray__pipe_begin(&p);
    dray__pipe_addf(&p, "SADD %s %s", s->k_processes, s->identity);
    dray__pipe_addf(&p, "EXISTS %s", s->k_identity);
    dray__pipe_add(&p, 14, hset, NULL);
    dray__pipe_addf(&p, "EXPIRE %s 60", s->k_identity);
    dray__pipe_addf(&p, "RPOP %s", s->k_signals);
    dray__pipe_commit(&p);
    rc = dray__pipe_run(&p);
    const redisReply *exec = dray__pipe_reply(&p, p.n ? p.n - 1 : 0);
    if (!rc && exec && exec->type == REDIS_REPLY_ARRAY && exec->elements == 5) {
        if (exec->element[1]->type == REDIS_REPLY_INTEGER && exec->element[1]->integer == 0)
            dray__log(DRAY_LOG_DEBUG, "heartbeat: registered %s", s->identity);
        const redisReply *sig = exec->element[4];
        if (sig->type == REDIS_REPLY_STRING)
            handle_signal(s, sig->str);
    }
    dray__pipe_close(&p);
    if (!rc && s->statsd)
        dray__statsd_gauges(s, c, busy); /* queue sizes and busy, once a beat */
    return rc == DRAY_EUNSURE ? DRAY_ECONN : rc;
}

/* At stop: flushes the last counters and metrics and removes this process's
 * record and work hashes; 0 or the first error. */
int
dray__heartbeat_clear(struct dray_server *s, dray__conn *c)
{
    int rc = flush_stats(s, c);
    if (!rc)
        rc = dray__metrics_flush(s, c, 1);
    int rc2 = dray__conn_cmdf(c, NULL, "SREM %s %s", s->k_processes, s->identity);
    int rc3 = dray__conn_cmdf(c, NULL, "UNLINK %s %s", s->k_work, s->k_work7);
    return rc ? rc : rc2 ? rc2 : rc3;
}

/* Heartbeat thread body (arg: the server): beat and run module ticks every
 * heartbeat_s until the server is DONE. */
void *
dray__heartbeat_main(void *arg)
{
    struct dray_server *s = arg;
    dray__log_thread_name("heartbeat");
    dray__conn c;
    dray__conn_init(&c, &s->cfg);
    while (atomic_load(&s->state) < DRAY__DONE) {
        int rc = dray__heartbeat_beat(s, &c, 0);
        if (rc == DRAY_ECONN && dray__conn_recover(s, &c) == 0)
            rc = dray__heartbeat_beat(s, &c, 0);
        if (rc == DRAY_ECONN)
            ; /* noted by dray__conn_recover; try again next beat */
        else if (rc)
            dray__log(DRAY_LOG_ERROR, "heartbeat: %s", c.errstr);
        if (!rc)
            dray__cancel_beat(s, &c);
        dray__hooks_tick(s, &c);
        /* wait one period, or until the state moves to DONE */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += s->opts.heartbeat_s;
        pthread_mutex_lock(&s->mu);
        while (atomic_load(&s->state) < DRAY__DONE)
            if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) != 0)
                break;
        pthread_mutex_unlock(&s->mu);
    }
    dray__conn_close(&c);
    return NULL;
}
