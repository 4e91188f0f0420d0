/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Paused queues. The state is the Redis set <ns>paused of queue names
 * (Sidekiq Pro keeps a set too; its name "paused" is inferred, docs/web.md).
 * No fetch of any dray worker (basic, batched, supervised or a module's
 * reliable fetch) names a paused queue.
 *
 * Workers do not ask Redis per job: one worker of a process re-reads the set
 * (SMEMBERS) when the copy is older than DRAY__PAUSE_REFRESH_MS, and no
 * fetch starts before the first read succeeded. A blocking fetch already
 * waiting keeps its queues for up to its 2 s, so a pause or a resume takes
 * effect within 3 s. A paused queue's jobs stay in its list: pausing never
 * moves, drops or copies a job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define PAUSED_KEY "paused" /* under the namespace, as Sidekiq Pro */

/* Monotonic milliseconds, never 0 (0 means "never read"). */
static long long
now_ms(void)
{
    long long ms = (long long)(dray__mono() * 1000.0);
    return ms > 0 ? ms : 1;
}

/* Read <ns>paused into the queues' flags. 0 or a DRAY_E* code (the flags
 * keep their last values). Worker thread, on its own connection. */
static int
pause_read(dray__worker *w)
{
    struct dray_server *s = w->srv;
    dray__buf k;
    dray__buf_init(&k);
    dray__key_buf(&k, &s->cfg, PAUSED_KEY);
    if (k.oom)
        return DRAY_ENOMEM;
    char *ek = dray__key(&s->cfg, "dray:cancels:epoch");
    int rc = ek ? dray__conn_ensure(&w->conn) : DRAY_ENOMEM;
    /* The cancel epoch rides along (cancel.c): one round trip for both. */
    dray__pipe p;
    dray__pipe_init(&p, &w->conn);
    if (!rc) {
        dray__pipe_addf(&p, "SMEMBERS %b", k.p, k.len);
        dray__pipe_addf(&p, "GET %s", ek);
        rc = dray__pipe_run(&p);
    }
    dray__buf_close(&k);
    dray__free(ek);
    if (rc == DRAY_EREDIS && p.n == 2 && !p.cmd[0].st)
        rc = 0; /* only the epoch is bad: dray__cancel_sync copes */
    redisReply *r = rc ? NULL : dray__pipe_reply(&p, 0);
    if (!rc)
        rc = dray__cancel_sync(s, &w->conn, dray__pipe_reply(&p, 1));
    if (rc) {
        dray__pipe_close(&p);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        /* WRONGTYPE is an error reply; anything else is not a set either */
        snprintf(w->conn.errstr, sizeof w->conn.errstr, "%spaused is not a set (reply type %d)",
                 s->cfg.ns ? s->cfg.ns : "", r->type);
        dray__pipe_close(&p);
        return DRAY_EREDIS;
    }
    int any = 0;
    for (size_t q = 0; q < s->nqueues; q++) {
        const char *name = s->queues[q].name;
        size_t len = strlen(name);
        int hit = 0;
        for (size_t i = 0; i < r->elements && !hit; i++) {
            const redisReply *e = r->element[i];
            hit = e->type == REDIS_REPLY_STRING && e->len == len && !memcmp(e->str, name, len);
        }
        int was = atomic_exchange(&s->queues[q].paused, hit);
        if (was != hit)
            dray__log(DRAY_LOG_INFO, "queue %s %s", name, hit ? "paused" : "resumed");
        any |= hit;
    }
    atomic_store(&s->pause_any, any);
    dray__pipe_close(&p);
    return 0;
}

/* Re-reads the paused set when this process's copy is older than DRAY__PAUSE_REFRESH_MS
 * (one worker at a time), with the cancel epoch in the same round trip. 0 or a DRAY_E* code. */
int
dray__pause_refresh(dray__worker *w)
{
    struct dray_server *s = w->srv;
    long long now = now_ms(), at = atomic_load(&s->pause_read_ms);
    if (!atomic_load(&s->pause_known)) {
        /* Until one read succeeded every worker reads for itself: none may
         * fetch a queue that was paused before this process started. */
        int rc = pause_read(w);
        if (rc)
            return rc;
        atomic_store(&s->pause_read_ms, now);
        atomic_store(&s->pause_known, 1);
        return 0;
    }
    if (now - at < DRAY__PAUSE_REFRESH_MS)
        return 0;
    /* One worker reads; the others go on with the copy they have. */
    if (!atomic_compare_exchange_strong(&s->pause_read_ms, &at, now))
        return 0;
    return pause_read(w);
}

/* Drops the keys of paused queues from keys/lens[0..n) in place, order kept; returns how
 * many remain. Cannot fail. */
size_t
dray__pause_filter(const struct dray_server *s, const char **keys, size_t *lens, size_t n)
{
    if (!atomic_load(&s->pause_any))
        return n;
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        int paused = 0;
        for (size_t q = 0; q < s->nqueues; q++)
            if (keys[i] == s->queues[q].key) {
                paused = atomic_load(&s->queues[q].paused);
                break;
            }
        if (paused)
            continue;
        keys[out] = keys[i];
        lens[out] = lens[i];
        out++;
    }
    return out;
}

/* Every queue is paused: waits one refresh period, or less when the server state changes. */
void
dray__pause_wait(struct dray_server *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = ts.tv_nsec + (long long)DRAY__PAUSE_REFRESH_MS * 1000000LL;
    ts.tv_sec += (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&s->mu);
    while (atomic_load(&s->state) == DRAY__RUNNING)
        if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) != 0)
            break;
    pthread_mutex_unlock(&s->mu);
}

/* ---- inspection API ------------------------------------------------------ */

/* One command on <ns>paused with an optional queue name; *out the reply
 * (new reference) or NULL. */
static int
paused_cmd(dray_api *api, const char *cmd, const char *queue, json_t **out)
{
    *out = NULL;
    if (queue && dray__queue_check(queue, NULL, 0))
        return DRAY_EQUEUE;
    const char *ns = dray_api_namespace(api);
    size_t len = strlen(ns) + sizeof PAUSED_KEY;
    char *key = dray__malloc(len);
    if (!key)
        return DRAY_ENOMEM;
    snprintf(key, len, "%s%s", ns, PAUSED_KEY);
    const char *argv[3] = {cmd, key, queue};
    int rc = dray_api_command(api, queue ? 3 : 2, argv, out);
    dray__free(key);
    return rc;
}

/* Adds queue to the paused set (SADD); DRAY_EQUEUE for an invalid name. */
int
dray_api_queue_pause(dray_api *api, const char *queue)
{
    json_t *r;
    int rc = paused_cmd(api, "SADD", queue, &r);
    json_decref(r);
    return rc;
}

/* Removes queue from the paused set (SREM); DRAY_EQUEUE for an invalid name. */
int
dray_api_queue_resume(dray_api *api, const char *queue)
{
    json_t *r;
    int rc = paused_cmd(api, "SREM", queue, &r);
    json_decref(r);
    return rc;
}

/* *out = 1 when queue is in the paused set, else 0. */
int
dray_api_queue_paused(dray_api *api, const char *queue, int *out)
{
    json_t *r;
    *out = 0;
    int rc = paused_cmd(api, "SISMEMBER", queue, &r);
    if (!rc)
        *out = json_is_integer(r) && json_integer_value(r) == 1;
    json_decref(r);
    return rc;
}

/* qsort order of the paused list: strcmp of two string pointers. */
static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The paused queues, sorted, in a new array the caller frees with dray_api_paused_free. */
int
dray_api_paused_list(dray_api *api, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    json_t *r;
    int rc = paused_cmd(api, "SMEMBERS", NULL, &r);
    if (rc)
        return rc;
    size_t cnt = json_is_array(r) ? json_array_size(r) : 0;
    char **names = cnt ? dray__calloc(cnt, sizeof *names) : NULL;
    if (cnt && !names) {
        json_decref(r);
        return DRAY_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < cnt; i++) {
        const char *v = json_string_value(json_array_get(r, i));
        if (!v)
            continue;
        if (!(names[k] = dray__strdup(v))) {
            dray_api_paused_free(names, k);
            json_decref(r);
            return DRAY_ENOMEM;
        }
        k++;
    }
    json_decref(r);
    if (k > 1)
        qsort(names, k, sizeof *names, cmp_str);
    *out = names;
    *n = k;
    return 0;
}

/* Frees a list from dray_api_paused_list; NULL is accepted. */
void
dray_api_paused_free(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        dray__free(names[i]);
    dray__free(names);
}
