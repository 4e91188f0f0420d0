/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The scheduler: moves due jobs from the retry and schedule sets to their
 * queues. Each batch is one Lua script whose ZREM decides ownership, so with
 * many processes every due job moves exactly once and never vanishes in
 * between (Sidekiq OSS has a window there; we do not). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define BATCH 100

/* ARGV[1] = namespace prefix, ARGV[2] = now; then (old member, new payload,
 * queue) triples. An empty queue marks a member that is not a job: it goes
 * to the dead set as it is, so it cannot block the jobs behind it. */
static dray__script move_script = {
    .src = "local moved = 0\n"
           "for i = 3, #ARGV, 3 do\n"
           "  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then\n"
           "    if ARGV[i + 2] == '' then\n"
           "      redis.call('ZADD', ARGV[1] .. 'dead', ARGV[2], ARGV[i])\n"
           "    else\n"
           "      redis.call('SADD', ARGV[1] .. 'queues', ARGV[i + 2])\n"
           "      redis.call('LPUSH', ARGV[1] .. 'queue:' .. ARGV[i + 2], ARGV[i + 1])\n"
           "      moved = moved + 1\n"
           "    end\n"
           "  end\n"
           "end\n"
           "return moved\n",
};

/* Moves every member of zset due by now to its queue (or, if not a job, to the
 * dead set), 100 per Lua call, over c; returns how many moved, or a negative DRAY_E* code. */
long
dray__poller_drain(dray__conn *c, const struct dray_server *s, const char *zset, double now)
{
    long total = 0;
    char nowstr[32];
    snprintf(nowstr, sizeof nowstr, "%.6f", now);
    for (;;) {
        redisReply *r;
        const char *argv[7] = {"ZRANGEBYSCORE", zset, "-inf", nowstr, "LIMIT", "0", "100"};
        int rc = dray__conn_cmd(c, &r, 7, argv, NULL);
        if (rc) {
            if (r)
                freeReplyObject(r);
            return rc;
        }
        size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        if (n == 0) {
            freeReplyObject(r);
            return total;
        }
        const char **av = dray__malloc(sizeof *av * (3 + 3 * n));
        size_t *al = dray__malloc(sizeof *al * (3 + 3 * n));
        char **owned = dray__calloc(n, sizeof *owned);
        if (!av || !al || !owned) {
            dray__free(av);
            dray__free(al);
            dray__free(owned);
            freeReplyObject(r);
            return DRAY_ENOMEM;
        }
        av[0] = zset; /* KEYS[1] */
        al[0] = strlen(zset);
        av[1] = s->cfg.ns; /* ARGV[1] */
        al[1] = s->cfg.nslen;
        av[2] = nowstr; /* ARGV[2] */
        al[2] = strlen(nowstr);
        size_t k = 3;
        for (size_t i = 0; i < n; i++) {
            const redisReply *m = r->element[i];
            json_error_t e;
            json_t *o = dray__json_load(m->str, m->len, &e);
            const char *q = o ? json_string_value(json_object_get(o, "queue")) : NULL;
            if (!o || !json_is_object(o) || (q && dray__queue_check(q, NULL, 0))) {
                dray__log(DRAY_LOG_ERROR,
                          "%s holds a member that is not a valid job; moved to the dead set: %.*s",
                          zset, (int)(m->len > 200 ? 200 : m->len), m->str);
                json_decref(o);
                av[k] = m->str;
                al[k++] = m->len;
                av[k] = m->str;
                al[k++] = m->len;
                av[k] = "";
                al[k++] = 0;
                continue;
            }
            json_object_set_new(o, "enqueued_at", dray__time_json(s->opts.timestamps_ms, now));
            size_t len, qlen = strlen(q ? q : "default");
            char *json = dray__json_dump(o, &len);
            /* one block: payload, NUL, queue name (q dies with o) */
            owned[i] = json ? dray__realloc(json, len + 1 + qlen + 1) : NULL;
            if (!owned[i]) {
                free(json);
                json_decref(o);
                continue;
            }
            memcpy(owned[i] + len + 1, q ? q : "default", qlen + 1);
            json_decref(o);
            av[k] = m->str;
            al[k++] = m->len;
            av[k] = owned[i];
            al[k++] = len;
            av[k] = owned[i] + len + 1;
            al[k++] = qlen;
        }
        redisReply *er = NULL;
        rc = k > 3 ? dray__conn_eval(c, &move_script, &er, 1, (int)k, av, al) : 0;
        if (!rc && er && er->type == REDIS_REPLY_INTEGER)
            total += er->integer;
        if (er)
            freeReplyObject(er);
        for (size_t i = 0; i < n; i++)
            free(owned[i]);
        dray__free(owned);
        dray__free(av);
        dray__free(al);
        freeReplyObject(r);
        if (rc)
            return rc;
        if (n < BATCH)
            return total;
    }
}

/* Sleep up to `s` seconds unless the server leaves RUNNING. */
static void
nap(struct dray_server *s, double secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double whole = floor(secs);
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((secs - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (atomic_load(&s->state) == DRAY__RUNNING) {
        if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Sidekiq's randomized interval: average scaled by live processes. */
static double
interval(struct dray_server *s, dray__conn *c)
{
    double avg = s->opts.poll_interval_s;
    if (avg <= 0) {
        long procs = 1;
        redisReply *r;
        if (!dray__conn_cmdf(c, &r, "SCARD %s", s->k_processes) && r->type == REDIS_REPLY_INTEGER)
            procs = r->integer > 0 ? r->integer : 1;
        if (r)
            freeReplyObject(r);
        avg = 5.0 * (double)procs;
        if (procs >= 10)
            return dray__rand01() * avg;
    }
    return avg * 0.5 + dray__rand01() * avg;
}

/* Scheduler thread body (arg: the server): drain the retry and schedule sets
 * at Sidekiq's randomized interval until the server leaves RUNNING. */
void *
dray__poller_main(void *arg)
{
    struct dray_server *s = arg;
    dray__log_thread_name("scheduler");
    dray__conn c;
    dray__conn_init(&c, &s->cfg);
    if (s->opts.poll_interval_s <= 0)
        nap(s, 10.0 + dray__rand01() * 5.0); /* let the process settle, as Sidekiq */
    else
        nap(s, dray__rand01() * s->opts.poll_interval_s);
    while (atomic_load(&s->state) == DRAY__RUNNING) {
        double now = dray_now();
        long a = dray__poller_drain(&c, s, s->k_retry, now);
        long b = a >= 0 ? dray__poller_drain(&c, s, s->k_schedule, now) : a;
        if (a < 0 || b < 0) {
            if (a == DRAY_ECONN || b == DRAY_ECONN) {
                if (dray__conn_recover(s, &c) == 0)
                    continue;
            } else
                dray__log(DRAY_LOG_ERROR, "scheduler: %s", c.errstr);
            nap(s, 1.0);
            continue;
        }
        if (a + b > 0)
            dray__log(DRAY_LOG_DEBUG, "scheduler moved %ld retries and %ld scheduled jobs", a, b);
        nap(s, interval(s, &c));
    }
    dray__conn_close(&c);
    return NULL;
}
