/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Basic fetch: BRPOP over the queue list in Sidekiq's strict or weighted
 * order, 2 s timeout so workers notice shutdown.
 *
 * What basic fetch can lose: a popped job lives only in this process. A
 * crash loses the running job (and, with fetch_batch > 1, the ones fetched
 * with it). A blocking fetch whose reply does not arrive within the client's
 * read timeout (block time + max(command timeout, FETCH_MARGIN_MIN_MS)) may
 * have popped a job that then goes nowhere: that is logged at ERROR with the
 * queues and counted in stat:fetch_lost. Reliable fetch (Pro) closes both. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define FETCH_TIMEOUT "2"        /* seconds, as Sidekiq */
#define FETCH_BLOCK_MS 2000      /* FETCH_TIMEOUT in ms */
#define FETCH_MARGIN_MIN_MS 5000 /* a Redis stalled this long after a pop can lose the reply */

/* Read-timeout extra (ms) a worker connection needs beyond the command
 * timeout, so a blocking fetch's reply is awaited for block time + margin. */
int
dray__fetch_extra_timeout_ms(const dray__redis_cfg *cfg)
{
    int margin = cfg->command_timeout_ms > FETCH_MARGIN_MIN_MS ? cfg->command_timeout_ms
                                                               : FETCH_MARGIN_MIN_MS;
    return FETCH_BLOCK_MS + margin - cfg->command_timeout_ms;
}

/* A blocking fetch was sent and its reply never came (read timeout, reset,
 * eof): Redis may have popped a job for us. Say so with the queues, count it
 * (flushed to stat:fetch_lost by flush_lost once Redis answers again). */
static void
note_lost_reply(dray__worker *w, const char *cmd, size_t nkeys)
{
    struct dray_server *s = w->srv;
    atomic_fetch_add(&w->fetch_lost, 1);
    char qs[512];
    size_t n = 0, pre = s->cfg.nslen + 6; /* "<ns>queue:" */
    qs[0] = '\0';
    for (size_t i = 0; i < nkeys && n < sizeof qs - 1; i++) {
        const char *k = w->brpop_argv[1 + i];
        int m =
            snprintf(qs + n, sizeof qs - n, "%s%s", i ? "," : "", strlen(k) > pre ? k + pre : k);
        if (m < 0)
            break;
        n += (size_t)m;
    }
    dray__log(DRAY_LOG_ERROR,
              "fetch (%s) from queue(s) %s may have popped a job whose reply was lost (%s); "
              "that job is gone unless it shows up elsewhere (basic fetch cannot recover it; "
              "Pro reliable fetch can)",
              cmd, qs, w->conn.errstr);
}

/* Add lost-reply events not yet counted in Redis to stat:fetch_lost. */
static void
flush_lost(dray__worker *w)
{
    uint_least64_t n = atomic_load(&w->fetch_lost), done = w->fetch_lost_flushed;
    if (n == done || !w->conn.ctx)
        return;
    dray__buf k;
    dray__buf_init(&k);
    dray__key_buf(&k, &w->srv->cfg, "stat:fetch_lost");
    char by[24];
    snprintf(by, sizeof by, "%llu", (unsigned long long)(n - done));
    const char *argv[3] = {"INCRBY", k.p, by};
    size_t lens[3] = {6, k.len, strlen(by)};
    if (!k.oom && dray__conn_cmd(&w->conn, NULL, 3, argv, lens) == 0)
        w->fetch_lost_flushed = n;
    dray__buf_close(&k);
}

/* Fills s->queues, s->strict and s->weighted (owned by s) from a spec like
 * "critical,3 default"; DRAY_ECONFIG with the reason in errbuf, DRAY_ENOMEM. */
int
dray__queues_parse(struct dray_server *s, const char *spec, char *errbuf, size_t errlen)
{
    if (!spec || !*spec)
        spec = "default";
    char *copy = dray__strdup(spec);
    if (!copy)
        return DRAY_ENOMEM;
    size_t cap = 8;
    s->queues = dray__calloc(cap, sizeof *s->queues);
    if (!s->queues) {
        dray__free(copy);
        return DRAY_ENOMEM;
    }
    s->strict = 1;
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, " \t\n", &save); tok && !rc;
         tok = strtok_r(NULL, " \t\n", &save)) {
        char *comma = strchr(tok, ',');
        long weight = 0;
        if (comma) {
            *comma = '\0';
            char *end;
            weight = strtol(comma + 1, &end, 10);
            if (*end || end == comma + 1 || weight < 0 || weight > 1000) {
                rc = dray__err(errbuf, errlen, DRAY_ECONFIG,
                               "queue '%s': weight must be an integer 0-1000", tok);
                break;
            }
            if (weight > 0)
                s->strict = 0;
        }
        if ((rc = dray__queue_check(tok, errbuf, errlen)))
            break;
        size_t i;
        for (i = 0; i < s->nqueues; i++)
            if (!strcmp(s->queues[i].name, tok))
                break;
        if (i == s->nqueues) {
            if (s->nqueues == cap) {
                void *p = dray__realloc(s->queues, sizeof *s->queues * cap * 2);
                if (!p) {
                    rc = DRAY_ENOMEM;
                    break;
                }
                s->queues = p;
                cap *= 2;
            }
            dray__queue *q = &s->queues[s->nqueues++];
            memset(q, 0, sizeof *q);
            q->name = dray__strdup(tok);
            dray__buf k;
            dray__buf_init(&k);
            dray__key_buf(&k, &s->cfg, "queue:");
            dray__buf_adds(&k, tok);
            q->key = k.p;
            if (!q->name || !q->key)
                rc = DRAY_ENOMEM;
        }
        s->queues[i].weight += weight > 1 ? (int)weight : 1;
    }
    dray__free(copy);
    if (rc)
        return rc;
    if (s->nqueues == 0)
        return dray__err(errbuf, errlen, DRAY_ECONFIG, "no queues given");
    for (size_t i = 0; i < s->nqueues; i++)
        s->nweighted += (size_t)s->queues[i].weight;
    s->weighted = dray__malloc(sizeof *s->weighted * s->nweighted);
    if (!s->weighted)
        return DRAY_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < s->nqueues; i++)
        for (int j = 0; j < s->queues[i].weight; j++)
            s->weighted[k++] = (int)i;
    return 0;
}

/* Frees u's queue and payload and zeroes it; u itself stays the caller's. */
void
dray__unit_clear(dray__unit *u)
{
    dray__free(u->queue);
    dray__free(u->payload);
    memset(u, 0, sizeof *u);
}

/* Fill argv[1..] with queue keys: configured order (strict) or a weighted
 * shuffle with duplicates removed (a queue of weight 3 comes first three
 * times as often as one of weight 1). Returns the number of keys. */
static size_t
order_keys(dray__worker *w)
{
    struct dray_server *s = w->srv;
    if (s->strict) {
        for (size_t i = 0; i < s->nqueues; i++) {
            w->brpop_argv[1 + i] = s->queues[i].key;
            w->brpop_lens[1 + i] = strlen(s->queues[i].key);
        }
        return s->nqueues;
    }
    int stackbuf[64];
    int *idx = s->nweighted <= 64 ? stackbuf : dray__malloc(sizeof *idx * s->nweighted);
    if (!idx)
        idx = s->weighted; /* OOM: fall back to unshuffled order */
    else
        memcpy(idx, s->weighted, sizeof *idx * s->nweighted);
    for (size_t i = s->nweighted; i > 1 && idx != s->weighted; i--) {
        size_t j = dray__rand32() % i;
        int t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
    size_t n = 0;
    unsigned char seenbuf[64];
    unsigned char *seen = s->nqueues <= 64 ? seenbuf : dray__calloc(s->nqueues, 1);
    if (seen == seenbuf)
        memset(seenbuf, 0, sizeof seenbuf);
    for (size_t i = 0; i < s->nweighted && seen; i++) {
        if (seen[idx[i]])
            continue;
        seen[idx[i]] = 1;
        w->brpop_argv[1 + n] = s->queues[idx[i]].key;
        w->brpop_lens[1 + n] = strlen(s->queues[idx[i]].key);
        n++;
    }
    if (!seen) /* OOM: configured order */
        for (n = 0; n < s->nqueues; n++) {
            w->brpop_argv[1 + n] = s->queues[n].key;
            w->brpop_lens[1 + n] = strlen(s->queues[n].key);
        }
    if (seen != seenbuf)
        dray__free(seen);
    if (idx != stackbuf && idx != s->weighted)
        dray__free(idx);
    return n;
}

/* Take up to ARGV[1] jobs from the first non-empty queue, in fetch order. */
static dray__script batch_script = {
    .src = "for i = 1, #KEYS do\n"
           "  local r = redis.call('RPOP', KEYS[i], ARGV[1])\n"
           "  if r then return {KEYS[i], r} end\n"
           "end\n"
           "return false\n",
};

/* Put one job of a fetch reply back at the head of the queue Redis took it
 * from (key as Redis named it); if that fails, log it whole. 0 when back. */
static int
give_back(dray__worker *w, const redisReply *key, const redisReply *job, const char *why)
{
    const char *argv[3] = {"RPUSH", key->str, job->str};
    size_t lens[3] = {5, key->len, job->len};
    int rc = dray__conn_cmd(&w->conn, NULL, 3, argv, lens);
    if (rc)
        dray__log_payload(DRAY_LOG_ERROR, NULL, NULL, job->str, job->len,
                          "%s; cannot push it back to %.*s (%s): job lost unless replayed from "
                          "this line",
                          why, (int)key->len, key->str, w->conn.errstr);
    else
        dray__log(DRAY_LOG_WARN, "%s; pushed it back to %.*s", why, (int)key->len, key->str);
    return rc;
}

/* A reply element that should be a job but is not a string: nothing to
 * keep, but a Redis that sends it is broken; say so. */
static void
not_a_job(const redisReply *e, size_t i)
{
    dray__log(DRAY_LOG_ERROR, "fetch reply element %zu is not a job (reply type %d); ignored", i,
              e->type);
}

#define FETCH_TIMED_OUT 2         /* fetch_batched blocked its 2 s and got nothing */
static atomic_int blmpop_support; /* 0 unknown, 1 yes, -1 no (Redis < 7) */

/* Serves *u from the worker's prefetch buffer: 1 with *u filled (ownership
 * moves to the caller), 0 when the buffer is empty. */
static int
prefetch_take(dray__worker *w, dray__unit *u)
{
    pthread_mutex_lock(&w->mu);
    if (w->ipre < w->npre) {
        *u = w->pre[w->ipre];
        memset(&w->pre[w->ipre], 0, sizeof *w->pre);
        w->ipre++;
        pthread_mutex_unlock(&w->mu);
        return 1;
    }
    pthread_mutex_unlock(&w->mu);
    return 0;
}

#define BLMPOP_MISSING 3 /* blmpop_send: this Redis has no BLMPOP, nothing popped */

/* Redis >= 7: BLMPOP 2 numkeys keys... RIGHT COUNT n blocks and batches in
 * one round trip. *sent is 1 once the command went out; then returns its
 * status with *r set (caller frees, may be set on error too). BLMPOP_MISSING
 * (remembered in blmpop_support) tells the caller to use the script; any
 * other error with *sent 0 means nothing was sent. */
static int
blmpop_send(dray__worker *w, size_t nkeys, const char *count, redisReply **r, int *sent)
{
    int rc;
    *sent = 0;
    /* Connect first: a failure after this point means the command may
     * have been sent. */
    if ((rc = dray__conn_ensure(&w->conn)))
        return rc;
    const char **av = dray__malloc(sizeof *av * (nkeys + 6));
    size_t *al = dray__malloc(sizeof *al * (nkeys + 6));
    if (!av || !al) {
        dray__free(av);
        dray__free(al);
        return DRAY_ENOMEM;
    }
    char nk[24];
    snprintf(nk, sizeof nk, "%zu", nkeys);
    size_t k = 0;
    av[k] = "BLMPOP", al[k++] = 6;
    av[k] = FETCH_TIMEOUT, al[k++] = 1;
    av[k] = nk, al[k++] = strlen(nk);
    for (size_t i = 0; i < nkeys; i++, k++)
        av[k] = w->brpop_argv[1 + i], al[k] = w->brpop_lens[1 + i];
    av[k] = "RIGHT", al[k++] = 5;
    av[k] = "COUNT", al[k++] = 5;
    av[k] = count, al[k++] = strlen(count);
    rc = dray__conn_cmd(&w->conn, r, (int)k, av, al);
    dray__free(av);
    dray__free(al);
    if (rc == DRAY_EREDIS && *r && strstr((*r)->str, "unknown command")) {
        atomic_store(&blmpop_support, -1);
        dray__log(DRAY_LOG_INFO, "redis has no BLMPOP (< 7.0): batched fetch uses a script");
        freeReplyObject(*r);
        *r = NULL;
        return BLMPOP_MISSING;
    }
    *sent = 1;
    return rc;
}

/* Jobs were popped but Redis did not say from where (k is not a string):
 * keep them in the log, the only place left. */
static void
log_unnamed_jobs(const redisReply *k, const redisReply *jobs)
{
    for (size_t i = 0; i < jobs->elements; i++)
        if (jobs->element[i]->type == REDIS_REPLY_STRING)
            dray__log_payload(DRAY_LOG_ERROR, NULL, NULL, jobs->element[i]->str,
                              jobs->element[i]->len,
                              "fetch reply names no queue (reply type %d); job lost unless "
                              "replayed from this line",
                              k->type);
}

/* Copies up to fetch_batch jobs of queue key k into *u (the first) and
 * w->pre (the rest, owned by w); returns how many, and in *first_over the
 * index of the first job beyond fetch_batch (jobs->elements: none). A job
 * that cannot be held goes back to its queue. */
static size_t
prefetch_fill(dray__worker *w, const redisReply *k, const redisReply *jobs, dray__unit *u,
              size_t *first_over)
{
    struct dray_server *s = w->srv;
    size_t pre = s->cfg.nslen + 6; /* "<ns>queue:" */
    size_t got = 0, cap = (size_t)s->opts.fetch_batch;
    *first_over = jobs->elements;
    pthread_mutex_lock(&w->mu);
    w->ipre = w->npre = 0;
    for (size_t i = 0; i < jobs->elements; i++) {
        const redisReply *e = jobs->element[i];
        if (e->type != REDIS_REPLY_STRING) {
            not_a_job(e, i);
            continue;
        }
        if (got == cap) {
            /* More jobs than asked for (a buggy or hostile Redis): *u and
             * w->pre keep fetch_batch; the rest go back below, never dropped. */
            *first_over = i;
            break;
        }
        dray__unit v;
        v.queue =
            k->len > pre ? dray__strndup(k->str + pre, k->len - pre) : dray__strdup("default");
        v.payload = dray__strndup(e->str, e->len);
        v.len = e->len;
        v.token = NULL;
        if (!v.queue || !v.payload) {
            dray__unit_clear(&v);
            pthread_mutex_unlock(&w->mu);
            give_back(w, k, e, "out of memory holding a fetched job");
            pthread_mutex_lock(&w->mu);
            continue;
        }
        if (got++ == 0)
            *u = v;
        else
            w->pre[w->npre++] = v;
    }
    pthread_mutex_unlock(&w->mu);
    return got;
}

/* Pushes jobs from index first_over on back to queue k, last first so the
 * first extra ends at the head; logs any it cannot. */
static void
give_back_extra(dray__worker *w, const redisReply *k, const redisReply *jobs, size_t first_over)
{
    dray__log(DRAY_LOG_ERROR,
              "fetch reply has %zu jobs, more than fetch_batch %d asked for; "
              "pushing the %zu extra back",
              jobs->elements, w->srv->opts.fetch_batch, jobs->elements - first_over);
    /* RPUSH the last first, so the first extra ends at the head. */
    for (size_t i = jobs->elements; i-- > first_over;)
        if (jobs->element[i]->type == REDIS_REPLY_STRING)
            give_back(w, k, jobs->element[i], "job beyond fetch_batch");
        else
            not_a_job(jobs->element[i], i);
}

/* Batched basic fetch: serve from the worker's buffer, else refill it in
 * one round trip. 1 with *u filled, 0 when every queue is empty (no wait),
 * FETCH_TIMED_OUT after a blocking wait that found nothing. */
static int
fetch_batched(dray__worker *w, size_t nkeys, dray__unit *u)
{
    struct dray_server *s = w->srv;
    if (prefetch_take(w, u))
        return 1;
    if (!w->pre) {
        w->pre = dray__calloc((size_t)s->opts.fetch_batch, sizeof *w->pre);
        if (!w->pre)
            return DRAY_ENOMEM;
    }
    char count[16];
    snprintf(count, sizeof count, "%d", s->opts.fetch_batch);
    redisReply *r = NULL;
    int rc = 0, blocked = 0;
    if (atomic_load(&blmpop_support) >= 0) {
        rc = blmpop_send(w, nkeys, count, &r, &blocked);
        if (rc == BLMPOP_MISSING)
            rc = 0;
        else if (!blocked)
            return rc; /* not connected, or out of memory: nothing sent */
    }
    if (!blocked) {
        w->brpop_argv[1 + nkeys] = count;
        w->brpop_lens[1 + nkeys] = strlen(count);
        rc = dray__conn_eval(&w->conn, &batch_script, &r, (int)nkeys, (int)nkeys + 1,
                             w->brpop_argv + 1, w->brpop_lens + 1);
    }
    if (rc) {
        if (blocked && rc == DRAY_ECONN)
            note_lost_reply(w, "BLMPOP", nkeys);
        if (r)
            freeReplyObject(r);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements == 0) {
        freeReplyObject(r);
        return blocked ? FETCH_TIMED_OUT : 0;
    }
    const redisReply *k = r->element[0], *jobs = r->element[1];
    if (k->type != REDIS_REPLY_STRING) {
        log_unnamed_jobs(k, jobs);
        freeReplyObject(r);
        return 0;
    }
    size_t first_over;
    size_t got = prefetch_fill(w, k, jobs, u, &first_over);
    if (first_over < jobs->elements)
        give_back_extra(w, k, jobs, first_over);
    freeReplyObject(r);
    return got ? 1 : 0;
}

/* Pushes w's fetched, unstarted jobs back to the heads of their queues over c
 * (caller holds w->mu); returns how many went back, logging whole any that could not. */
int
dray__prefetch_requeue(dray__worker *w, dray__conn *c)
{
    int n = 0;
    /* RPUSH puts its value at the head (the BRPOP end): push the last
     * waiting job first so the next one ends up first. */
    while (w->npre > w->ipre) {
        dray__unit *v = &w->pre[--w->npre];
        if (dray__requeue_retry(c, w->srv, v))
            dray__log_payload(DRAY_LOG_ERROR, NULL, NULL, v->payload, v->len,
                              "job lost: cannot requeue a fetched job of queue %s (%s)", v->queue,
                              c->errstr);
        else
            n++;
        dray__unit_clear(v);
    }
    w->ipre = w->npre = 0;
    return n;
}

/* Fetches one job for w: 1 with *u filled (caller owns it, dray__unit_clear),
 * 0 when nothing came within the block time, or a negative DRAY_E* code. */
int
dray__fetch(dray__worker *w, dray__unit *u)
{
    struct dray_server *s = w->srv;
    memset(u, 0, sizeof *u);
    if (!w->brpop_argv) {
        const char **av = dray__malloc(sizeof *w->brpop_argv * (s->nqueues + 2));
        size_t *al = dray__malloc(sizeof *w->brpop_lens * (s->nqueues + 2));
        if (!av || !al) {
            dray__free(av);
            dray__free(al);
            return DRAY_ENOMEM;
        }
        w->brpop_argv = av;
        w->brpop_lens = al;
        w->brpop_argv[0] = "BRPOP";
        w->brpop_lens[0] = 5;
    }
    if (s->opts.fetch_batch > 1 && !dray__fetcher_active()) {
        /* Jobs already fetched go first, before any (weighted) reordering. */
        pthread_mutex_lock(&w->mu);
        int have = w->ipre < w->npre;
        if (have) {
            *u = w->pre[w->ipre];
            memset(&w->pre[w->ipre], 0, sizeof *w->pre);
            w->ipre++;
        }
        pthread_mutex_unlock(&w->mu);
        if (have)
            return 1;
    }
    flush_lost(w);
    int prc = dray__pause_refresh(w);
    if (prc)
        return prc;
    /* Rebuilt every time (strict order too): the paused queues come out. */
    size_t n = dray__pause_filter(s, w->brpop_argv + 1, w->brpop_lens + 1, order_keys(w));
    if (n == 0) {
        dray__pause_wait(s); /* every queue paused */
        return 0;
    }
    if (dray__fetcher_active()) /* a module replaces BRPOP, same queue order */
        return dray__fetcher_fetch(w, w->brpop_argv + 1, n, u);
    if (dray__sup_active()) /* a supervised child: into its in-flight list */
        return dray__sup_fetch(w, w->brpop_argv + 1, n, u);
    if (s->opts.fetch_batch > 1) {
        int b = fetch_batched(w, n, u);
        if (b == FETCH_TIMED_OUT)
            return 0;
        if (b != 0)
            return b;
        /* every queue empty: block for the next job as usual */
    }
    w->brpop_argv[1 + n] = FETCH_TIMEOUT;
    w->brpop_lens[1 + n] = 1;
    redisReply *r;
    int rc = dray__conn_ensure(&w->conn); /* a failure after this may follow a pop */
    if (rc)
        return rc;
    rc = dray__conn_cmd(&w->conn, &r, (int)n + 2, w->brpop_argv, w->brpop_lens);
    if (rc) {
        if (rc == DRAY_ECONN)
            note_lost_reply(w, "BRPOP", n);
        if (r)
            freeReplyObject(r);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        return 0; /* timeout: nil */
    }
    const redisReply *k = r->element[0], *v = r->element[1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
        if (v->type == REDIS_REPLY_STRING)
            dray__log_payload(
                DRAY_LOG_ERROR, NULL, NULL, v->str, v->len,
                "BRPOP reply names no queue; job lost unless replayed from this line");
        else
            not_a_job(v, 1);
        freeReplyObject(r);
        return 0;
    }
    size_t pre = s->cfg.nslen + 6; /* "<ns>queue:" */
    u->queue = k->len > pre ? dray__strndup(k->str + pre, k->len - pre) : dray__strdup("default");
    u->payload = dray__strndup(v->str, v->len);
    u->len = v->len;
    if (!u->queue || !u->payload) {
        /* The job is out of Redis and we cannot hold it: put it back. */
        dray__unit_clear(u);
        give_back(w, k, v, "out of memory holding a fetched job");
        freeReplyObject(r);
        return DRAY_ENOMEM;
    }
    freeReplyObject(r);
    return 1;
}

/* Pushes u's payload back to the head of its queue (or hands it to the fetch
 * module); 0 or the connection's error. u stays the caller's. */
int
dray__requeue(dray__conn *c, const struct dray_server *s, const dray__unit *u)
{
    if (dray__fetcher_active())
        return dray__fetcher_requeue(c, s, u);
    dray__buf key;
    dray__buf_init(&key);
    dray__key_buf(&key, &s->cfg, "queue:");
    dray__buf_adds(&key, u->queue);
    if (key.oom)
        return DRAY_ENOMEM;
    const char *argv[3] = {"RPUSH", key.p, u->payload};
    size_t lens[3] = {5, key.len, u->len};
    int rc = dray__conn_cmd(c, NULL, 3, argv, lens);
    dray__buf_close(&key);
    return rc;
}
