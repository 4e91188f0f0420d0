/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Job cancellation (dray cancel, dray_api_cancel). The request is recorded
 * first in <ns>dray:cancel:<jid> (a hash, 24 h), with the jid added to the
 * index <ns>dray:cancels (a sorted set by time, pruned after 24 h) and the
 * cancel epoch <ns>dray:cancels:epoch bumped, in one script. Each process
 * keeps a local copy of the index, synced when the epoch moves (read along
 * with the paused set, at most once a second, and at every heartbeat), and
 * acknowledges each epoch it installed in <ns>dray:cancels:seen. The
 * canceller waits for every live dray process to acknowledge, then removes
 * the job from wherever it waits; a removal by value (ZREM, LREM) succeeds
 * only while nobody else holds the job, so a job is never both removed and
 * run or moved by the poller. A job a worker took meanwhile is skipped by
 * its local lookup before it starts (no round trip per job); one that had
 * already started is caught by the heartbeat's check of the running jobs
 * (one pipelined round trip per beat). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define CANCEL_TTL "86400"    /* a cancellation is honoured for a day */
#define PAGE 100              /* LRANGE page: a long queue is never loaded whole */
#define SCAN_COUNT "1000"     /* ZSCAN batch */
#define ACK_WAIT_S 6.0        /* longest wait for the processes' acknowledgements */
#define ACK_LIVE_S 60.0       /* a process beat this recently is waited for */
#define ACK_POLL_NS 10000000L /* 10 ms between looks at the acknowledgements */

static void jids_free(char **jids, size_t n);

/* KEYS: record, index, epoch; ARGV: requested (epoch s), ttl, jid. The
 * record, the jid in the index (older entries pruned) and a new epoch, in
 * one step: a process that reads the epoch then the index sees the jid.
 * Returns the new epoch; writes nothing when the epoch is not a count. */
static dray__script record_script = {
    .src = "local e = redis.call('GET', KEYS[3])\n"
           "if e and not tonumber(e) then\n"
           "  return redis.error_reply(KEYS[3] .. ' is not a count: nothing recorded')\n"
           "end\n"
           "redis.call('HSET', KEYS[1], 'requested', ARGV[1])\n"
           "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
           "redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])\n"
           "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[1]) - "
           "tonumber(ARGV[2])))\n"
           "redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
           "return redis.call('INCR', KEYS[3])\n",
};

/* KEYS: record; ARGV: what the worker did, when, by whom. Only while the
 * record lives (a worker must not make one without a TTL). */
static dray__script note_script = {
    .src = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
           "redis.call('HSET', KEYS[1], 'worker', ARGV[1], 'worker_at', ARGV[2], 'by', ARGV[3])\n"
           "return 1\n",
};

/* "<ns>dray:cancel:<jid>", malloc'ed (dray__free it), or NULL on out of memory. */
char *
dray__cancel_key(const dray__redis_cfg *cfg, const char *jid)
{
    dray__buf b;
    dray__buf_init(&b);
    dray__key_buf(&b, cfg, "dray:cancel:");
    dray__buf_adds(&b, jid);
    if (b.oom) {
        dray__buf_close(&b);
        return NULL;
    }
    return b.p;
}

/* ---- the API's side ---------------------------------------------------------- */

typedef struct canceller {
    dray_api *api;
    dray__conn *c;
    const dray__redis_cfg *cfg;
    char *err;
    size_t errlen;
    const char *jid;
    dray_cancel_result *out;
} canceller;

/* Writes "what: reason" (the connection's error, else code's text) to k's error buffer; returns
 * code. */
static int
cerr_set(canceller *k, int code, const char *what)
{
    snprintf(k->err, k->errlen, "%s: %s", what,
             k->c->errstr[0] ? k->c->errstr : dray_strerror(code));
    return code;
}

/* Remove the member with this jid from a sorted set. 1 removed, 0 none, < 0. */
static int
from_set(canceller *k, const char *set)
{
    char *key = dray__key(k->cfg, set);
    char *pat = dray__jid_glob(k->jid);
    int rc = key && pat ? 0 : DRAY_ENOMEM;
    char cursor[32] = "0";
    int done = 0;
    do {
        redisReply *r = NULL;
        const char *argv[7] = {"ZSCAN", key, cursor, "MATCH", pat, "COUNT", SCAN_COUNT};
        if (!rc && (rc = dray__conn_cmd(k->c, &r, 7, argv, NULL)))
            cerr_set(k, rc, "ZSCAN");
        if (!rc && (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                    r->element[1]->type != REDIS_REPLY_ARRAY)) {
            snprintf(k->err, k->errlen, "unexpected ZSCAN reply");
            rc = DRAY_EREDIS;
        }
        if (!rc) {
            snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
            const redisReply *items = r->element[1];
            for (size_t i = 0; !rc && !done && i + 1 < items->elements; i += 2) {
                const redisReply *m = items->element[i];
                if (m->type != REDIS_REPLY_STRING || !dray__member_has_jid(m->str, m->len, k->jid))
                    continue;
                /* The ZREM decides: the poller moves a member with ZREM too. */
                redisReply *z = NULL;
                const char *zv[3] = {"ZREM", key, m->str};
                size_t zl[3] = {4, strlen(key), m->len};
                if ((rc = dray__conn_cmd(k->c, &z, 3, zv, zl)))
                    cerr_set(k, rc, "ZREM");
                else if (z->type == REDIS_REPLY_INTEGER && z->integer == 1)
                    done = 1;
                if (z)
                    freeReplyObject(z);
            }
        }
        if (r)
            freeReplyObject(r);
    } while (!rc && !done && strcmp(cursor, "0"));
    if (done) {
        k->out->outcome = DRAY_CANCEL_REMOVED;
        snprintf(k->out->where, sizeof k->out->where, "%s", set);
    }
    dray__free(key);
    dray__free(pat);
    return rc ? rc : done;
}

/* Remove the job from one queue, a page at a time from the pushing end
 * (pushes there only shift what is left to see; pops take from the far
 * end): 1 removed, 0 not there, < 0. *taken: seen, but a worker popped it
 * before the LREM. */
static int
from_queue(canceller *k, const char *name, int *taken)
{
    dray__buf b;
    dray__buf_init(&b);
    dray__key_buf(&b, k->cfg, "queue:");
    dray__buf_adds(&b, name);
    if (b.oom)
        return DRAY_ENOMEM;
    int rc = 0, done = 0;
    for (long start = 0; !rc && !done; start += PAGE) {
        redisReply *r = NULL;
        if ((rc = dray__conn_cmdf(k->c, &r, "LRANGE %s %ld %ld", b.p, start, start + PAGE - 1))) {
            cerr_set(k, rc, "LRANGE");
        } else if (r->type != REDIS_REPLY_ARRAY) {
            snprintf(k->err, k->errlen, "unexpected LRANGE reply");
            rc = DRAY_EREDIS;
        }
        size_t n = !rc ? r->elements : 0;
        for (size_t i = 0; !rc && i < n && !done; i++) {
            const redisReply *m = r->element[i];
            if (m->type != REDIS_REPLY_STRING || !dray__member_has_jid(m->str, m->len, k->jid))
                continue;
            redisReply *z = NULL;
            if ((rc = dray__conn_cmdf(k->c, &z, "LREM %s 1 %b", b.p, m->str, m->len)))
                cerr_set(k, rc, "LREM");
            else if (z->type == REDIS_REPLY_INTEGER && z->integer == 1)
                done = 1;
            else
                *taken = 1;
            if (z)
                freeReplyObject(z);
        }
        if (r)
            freeReplyObject(r);
        if (n < PAGE)
            break;
    }
    if (done) {
        k->out->outcome = DRAY_CANCEL_REMOVED;
        snprintf(k->out->where, sizeof k->out->where, "queue:%s", name);
    }
    dray__buf_close(&b);
    return rc ? rc : done;
}

/* Removes the job from whichever queue holds it, a page of LRANGE at a time; *taken is 1
 * when an LREM of its exact payload removed it. 0 or a DRAY_E* code. */
static int
from_queues(canceller *k, int *taken)
{
    char *qs = dray__key(k->cfg, "queues");
    redisReply *r = NULL;
    int rc = qs ? dray__conn_cmdf(k->c, &r, "SMEMBERS %s", qs) : DRAY_ENOMEM;
    if (rc)
        cerr_set(k, rc, "SMEMBERS");
    int done = 0;
    for (size_t i = 0; !rc && !done && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING) {
            int got = from_queue(k, r->element[i]->str, taken);
            if (got < 0)
                rc = got;
            done = got == 1;
        }
    if (r)
        freeReplyObject(r);
    dray__free(qs);
    return rc ? rc : done;
}

/* True when a running-work value ({"payload": "<job>" or {job}}) is the job. */
static bool
work_has_jid(const redisReply *v, const char *jid)
{
    if (v->type != REDIS_REPLY_STRING || !memmem(v->str, v->len, jid, strlen(jid)))
        return false;
    json_t *o = dray__json_load(v->str, v->len, NULL);
    json_t *p = json_object_get(o, "payload");
    bool same = false;
    if (json_is_string(p)) {
        same = dray__member_has_jid(json_string_value(p), json_string_length(p), jid);
    } else if (json_is_object(p)) {
        const char *j = json_string_value(json_object_get(p, "jid"));
        same = j && !strcmp(j, jid);
    }
    json_decref(o);
    return same;
}

/* Find a live process whose running-work record (<identity>:work, as the
 * Busy page reads it, refreshed every heartbeat) has the job. 1, 0, < 0. */
static int
find_running(canceller *k)
{
    char *procs = dray__key(k->cfg, "processes");
    redisReply *r = NULL;
    int rc = procs ? dray__conn_cmdf(k->c, &r, "SMEMBERS %s", procs) : DRAY_ENOMEM;
    if (rc)
        cerr_set(k, rc, "SMEMBERS");
    int found = 0;
    for (size_t i = 0; !rc && !found && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *id = r->element[i];
        if (id->type != REDIS_REPLY_STRING)
            continue;
        dray__buf b;
        dray__buf_init(&b);
        dray__key_buf(&b, k->cfg, id->str);
        dray__buf_adds(&b, ":work");
        redisReply *h = NULL;
        if (b.oom)
            rc = DRAY_ENOMEM;
        else if ((rc = dray__conn_cmdf(k->c, &h, "HVALS %s", b.p)))
            cerr_set(k, rc, "HVALS");
        for (size_t j = 0; !rc && h->type == REDIS_REPLY_ARRAY && j < h->elements && !found; j++)
            found = work_has_jid(h->element[j], k->jid);
        if (found)
            snprintf(k->out->where, sizeof k->out->where, "%s", id->str);
        if (h)
            freeReplyObject(h);
        dray__buf_close(&b);
    }
    if (r)
        freeReplyObject(r);
    dray__free(procs);
    return rc ? rc : found;
}

/* A process to wait for: a dray process (its info says "version": "dray
 * ...", Sidekiq's never acknowledge) with a beat in the last minute. */
static bool
live_dray(const redisReply *info, const redisReply *beat, double now)
{
    if (info->type != REDIS_REPLY_STRING || beat->type != REDIS_REPLY_STRING ||
        now - atof(beat->str) > ACK_LIVE_S)
        return false;
    json_t *o = dray__json_load(info->str, info->len, NULL);
    const char *v = json_string_value(json_object_get(o, "version"));
    bool dray = v && !strncmp(v, "dray ", 5);
    json_decref(o);
    return dray;
}

/* The live dray processes (identities, new strings, *n of them). */
static int
waited_for(canceller *k, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *procs = dray__key(k->cfg, "processes");
    redisReply *r = NULL;
    int rc = procs ? dray__conn_cmdf(k->c, &r, "SMEMBERS %s", procs) : DRAY_ENOMEM;
    dray__free(procs);
    if (rc)
        cerr_set(k, rc, "SMEMBERS");
    size_t m = !rc && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    dray__pipe p;
    dray__pipe_init(&p, k->c);
    for (size_t i = 0; i < m; i++)
        dray__pipe_addf(&p, "HMGET %s%b info beat", k->cfg->ns ? k->cfg->ns : "",
                        r->element[i]->str, r->element[i]->len);
    if (m && (rc = dray__pipe_run(&p)) && rc != DRAY_EREDIS)
        cerr_set(k, rc, "HMGET");
    char **ids = m ? dray__calloc(m, sizeof *ids) : NULL;
    if (m && !ids && !rc)
        rc = DRAY_ENOMEM;
    double now = dray_now();
    for (size_t i = 0; (!rc || rc == DRAY_EREDIS) && ids && i < m; i++) {
        const redisReply *h = dray__pipe_reply(&p, i);
        if (h && h->type == REDIS_REPLY_ARRAY && h->elements == 2 &&
            live_dray(h->element[0], h->element[1], now) &&
            !(ids[(*n)++] = dray__strdup(r->element[i]->str)))
            rc = DRAY_ENOMEM;
    }
    dray__pipe_close(&p);
    if (r)
        freeReplyObject(r);
    if (rc == DRAY_EREDIS)
        rc = 0; /* a key of another type is no live process */
    if (rc) {
        jids_free(ids, *n);
        *n = 0;
        return rc;
    }
    *out = ids;
    return 0;
}

/* Wait until every live dray process acknowledged epoch e (or the bound
 * passed). *late: how many did not; their identities are logged. */
static int
wait_acks(canceller *k, long long e, size_t *late)
{
    char **ids;
    size_t n;
    *late = 0;
    int rc = waited_for(k, &ids, &n);
    if (rc || !n)
        return rc;
    char *seen = dray__key(k->cfg, "dray:cancels:seen");
    double end = dray__mono() + ACK_WAIT_S;
    size_t left = n;
    while (!rc && left) {
        dray__pipe p;
        dray__pipe_init(&p, k->c);
        if (!seen)
            rc = DRAY_ENOMEM;
        for (size_t i = 0; !rc && i < n; i++)
            if (ids[i])
                dray__pipe_addf(&p, "HGET %s %s", seen, ids[i]);
        if (!rc && (rc = dray__pipe_run(&p)))
            cerr_set(k, rc, "reading the acknowledgements");
        for (size_t i = 0, j = 0; !rc && i < n; i++) {
            if (!ids[i])
                continue;
            const redisReply *v = dray__pipe_reply(&p, j++);
            if (v && v->type == REDIS_REPLY_STRING && atoll(v->str) >= e) {
                dray__free(ids[i]);
                ids[i] = NULL;
                left--;
            }
        }
        dray__pipe_close(&p);
        if (rc || !left || dray__mono() >= end)
            break;
        struct timespec ts = {0, ACK_POLL_NS};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; !rc && i < n; i++)
        if (ids[i])
            dray__log(DRAY_LOG_WARN,
                      "cancel %s: process %s did not acknowledge within %.0f s; a job it "
                      "takes now is stopped at its next heartbeat",
                      k->jid, ids[i], ACK_WAIT_S);
    *late = rc ? 0 : left;
    jids_free(ids, n);
    dray__free(seen);
    return rc;
}

/* During the handshake a worker may already have acted on the record (a
 * running job flagged or its child killed at a heartbeat, a fetched job
 * skipped): then the job was running or taken, not missing. 1, 0, < 0. */
static int
acted_already(canceller *k, const char *rec)
{
    redisReply *r = NULL;
    int rc = dray__conn_cmdf(k->c, &r, "HMGET %s worker by", rec);
    if (rc)
        cerr_set(k, rc, "HMGET");
    int acted = !rc && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING &&
                r->element[1]->type == REDIS_REPLY_STRING;
    if (acted && !strcmp(r->element[0]->str, "skipped"))
        snprintf(k->out->where, sizeof k->out->where, "a worker (%s skipped it before it started)",
                 r->element[1]->str);
    else if (acted)
        snprintf(k->out->where, sizeof k->out->where, "%s", r->element[1]->str);
    if (r)
        freeReplyObject(r);
    return rc ? rc : acted;
}

/* The word stored in the cancel record for o ("removed", "running", "not_found"). */
static const char *
outcome_name(dray_cancel_outcome o)
{
    return o == DRAY_CANCEL_REMOVED   ? "removed"
           : o == DRAY_CANCEL_RUNNING ? "running"
                                      : "not_found";
}

/* Records the cancellation, waits for every live dray process to acknowledge it, then
 * removes the job from the sets or queues or finds it running (inspect.h has the contract). */
int
dray_api_cancel(dray_api *api, const char *jid, dray_cancel_result *out)
{
    canceller k = {.api = api, .jid = jid, .out = out};
    dray__api_parts(api, &k.c, &k.cfg, &k.err, &k.errlen);
    memset(out, 0, sizeof *out);
    k.err[0] = '\0';
    if (!jid || !*jid) {
        snprintf(k.err, k.errlen, "jid is empty");
        return DRAY_EINVAL;
    }
    char *rec = dray__cancel_key(k.cfg, jid);
    if (!rec) {
        snprintf(k.err, k.errlen, "out of memory");
        return DRAY_ENOMEM;
    }
    char now[32];
    snprintf(now, sizeof now, "%.6f", dray_now());
    /* Recorded before any search: a worker that takes the job from here on
     * sees the record and does not run it. */
    char *idx = dray__key(k.cfg, "dray:cancels");
    char *ep = dray__key(k.cfg, "dray:cancels:epoch");
    const char *av[6] = {rec, idx, ep, now, CANCEL_TTL, jid};
    redisReply *r = NULL;
    int rc = idx && ep ? dray__conn_eval(k.c, &record_script, &r, 3, 6, av, NULL) : DRAY_ENOMEM;
    long long e = !rc && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    if (r)
        freeReplyObject(r);
    dray__free(idx);
    dray__free(ep);
    if (rc)
        cerr_set(&k, rc, "recording the cancellation");
    /* Every live process acknowledges the new epoch first: from then on its
     * workers skip the job locally, so a job the search below misses
     * because a worker took it is never started. */
    size_t late = 0;
    if (!rc)
        rc = wait_acks(&k, e, &late);
    if (!rc) {
        snprintf(now, sizeof now, "%.6f", dray_now());
        rc = dray__conn_cmdf(k.c, NULL, "HSET %s acked %s late %lld", rec, now, (long long)late);
        if (rc)
            cerr_set(&k, rc, "recording the acknowledgements");
    }
    int got = rc ? rc : from_set(&k, "schedule");
    if (got == 0)
        got = from_set(&k, "retry");
    int taken = 0;
    if (got == 0)
        got = from_queues(&k, &taken);
    if (got == 0 && taken) {
        out->outcome = DRAY_CANCEL_RUNNING; /* popped under our eyes: the record stops it */
        snprintf(out->where, sizeof out->where, "a worker (taken from its queue just now)");
        got = 1;
    }
    if (got == 0 && (got = find_running(&k)) == 1)
        out->outcome = DRAY_CANCEL_RUNNING;
    if (got == 0 && (got = acted_already(&k, rec)) == 1)
        out->outcome = DRAY_CANCEL_RUNNING;
    if (got >= 0) {
        snprintf(now, sizeof now, "%.6f", dray_now());
        rc = dray__conn_cmdf(k.c, NULL, "HSET %s outcome %s where %s at %s", rec,
                             outcome_name(out->outcome), out->where, now);
        if (rc)
            got = cerr_set(&k, rc, "recording the outcome");
    }
    dray__free(rec);
    if (got < 0)
        return got;
    if (out->outcome == DRAY_CANCEL_NOT_FOUND) {
        snprintf(k.err, k.errlen,
                 "no job with jid %s is queued, scheduled, in the retry set or running", jid);
        return DRAY_ENOTFOUND;
    }
    return 0;
}

/* ---- the worker's side ------------------------------------------------------- */

/* Add what a worker did to the record. Any thread with its own connection. */
static void
note(dray__conn *c, const struct dray_server *s, const char *jid, const char *what, const char *by)
{
    char *rec = dray__cancel_key(&s->cfg, jid);
    char now[32];
    snprintf(now, sizeof now, "%.6f", dray_now());
    const char *av[4] = {rec, what, now, by};
    redisReply *r = NULL;
    if (rec && dray__conn_eval(c, &note_script, &r, 1, 4, av, NULL))
        dray__logj(DRAY_LOG_WARN, jid, NULL, -1, "cannot record that the job was %s: %s", what,
                   c->errstr);
    if (r)
        freeReplyObject(r);
    dray__free(rec);
}

/* Writes what a worker or supervisor did to jid ("skipped", "flagged", "killed") and by
 * whom into its cancel record; logs instead when Redis cannot take it. */
void
dray__cancel_note(dray__conn *c, const struct dray_server *s, const char *jid, const char *what,
                  const char *by)
{
    note(c, s, jid, what, by);
}

/* The local copy of the outstanding cancellations. Installed whole by one
 * thread at a time (mu) under the write lock; workers look a jid up under
 * the read lock, or not at all while none is outstanding. */
struct dray__cancels {
    pthread_mutex_t mu;  /* one installer at a time (it talks to Redis) */
    pthread_rwlock_t rw; /* guards jids and n */
    char **jids;         /* sorted (strcmp); rw */
    size_t n;            /* entries in jids; rw */
    atomic_int any;      /* 1 while n > 0 */
    atomic_int exists;   /* 1: more than DRAY__CANCEL_LOCAL_MAX outstanding, or the
                            index is unreadable: ask Redis per job */
    atomic_llong epoch;  /* epoch installed and acknowledged; -1 before the first */
    atomic_int warned;   /* a bad epoch or index was logged */
};

/* An empty local copy of the outstanding cancellations, never synced yet; NULL on out of
 * memory. The caller owns it (dray__cancels_free). */
dray__cancels *
dray__cancels_new(void)
{
    dray__cancels *cs = dray__calloc(1, sizeof *cs);
    if (!cs)
        return NULL;
    pthread_mutex_init(&cs->mu, NULL);
    pthread_rwlock_init(&cs->rw, NULL);
    atomic_store(&cs->epoch, -1);
    return cs;
}

/* Frees the n strings of jids and the array. */
static void
jids_free(char **jids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dray__free(jids[i]);
    dray__free(jids);
}

/* Frees the local copy; NULL is accepted. */
void
dray__cancels_free(dray__cancels *cs)
{
    if (!cs)
        return;
    jids_free(cs->jids, cs->n);
    pthread_rwlock_destroy(&cs->rw);
    pthread_mutex_destroy(&cs->mu);
    dray__free(cs);
}

/* qsort/bsearch order of the local copy: strcmp of two jid pointers. */
static int
cmp_jid(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Swap in a new sorted list (taken over) and the mode. Cannot fail. */
static void
install(dray__cancels *cs, char **jids, size_t n, int exists)
{
    pthread_rwlock_wrlock(&cs->rw);
    char **old = cs->jids;
    size_t oldn = cs->n;
    cs->jids = jids;
    cs->n = n;
    atomic_store(&cs->exists, exists);
    atomic_store(&cs->any, n > 0);
    pthread_rwlock_unlock(&cs->rw);
    jids_free(old, oldn);
}

/* Parse an epoch reply: nil is 0. -1 when it is not a count. */
static long long
epoch_of(const redisReply *r)
{
    if (r->type == REDIS_REPLY_NIL)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type != REDIS_REPLY_STRING || !r->len || r->len > 18)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return -1;
        v = v * 10 + (r->str[i] - '0');
    }
    return v;
}

/* Read the index (entries of the last CANCEL_TTL) into a sorted list.
 * *exists is 1 when there are more than DRAY__CANCEL_LOCAL_MAX or the index
 * is not a sorted set (then the list is empty). */
static int
read_index(struct dray_server *s, dray__conn *c, char ***out, size_t *n, int *exists)
{
    *out = NULL;
    *n = 0;
    *exists = 0;
    char *key = dray__key(&s->cfg, "dray:cancels");
    if (!key)
        return DRAY_ENOMEM;
    char since[32], limit[16];
    snprintf(since, sizeof since, "%.6f", dray_now() - atof(CANCEL_TTL));
    snprintf(limit, sizeof limit, "%d", DRAY__CANCEL_LOCAL_MAX + 1);
    const char *argv[7] = {"ZRANGEBYSCORE", key, since, "+inf", "LIMIT", "0", limit};
    redisReply *r = NULL;
    int rc = dray__conn_cmd(c, &r, 7, argv, NULL);
    dray__free(key);
    if (rc == DRAY_EREDIS || (!rc && r->type != REDIS_REPLY_ARRAY)) {
        /* WRONGTYPE: a bad index must not hide a cancellation */
        if (!atomic_exchange(&s->cancels->warned, 1))
            dray__log(DRAY_LOG_ERROR,
                      "%sdray:cancels is not a sorted set (%s): checking every job in Redis",
                      s->cfg.ns ? s->cfg.ns : "", c->errstr);
        *exists = 1;
        rc = 0;
    } else if (!rc && r->elements > DRAY__CANCEL_LOCAL_MAX) {
        *exists = 1;
    } else if (!rc && r->elements) {
        char **jids = dray__calloc(r->elements, sizeof *jids);
        size_t k = 0;
        for (size_t i = 0; jids && i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING &&
                !(jids[k++] = dray__strndup(r->element[i]->str, r->element[i]->len))) {
                jids_free(jids, k);
                jids = NULL;
            }
        if (!jids) {
            rc = DRAY_ENOMEM;
        } else {
            qsort(jids, k, sizeof *jids, cmp_jid);
            *out = jids;
            *n = k;
        }
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Tell the cancellers this process has installed epoch e. */
static int
acknowledge(struct dray_server *s, dray__conn *c, long long e)
{
    char *seen = dray__key(&s->cfg, "dray:cancels:seen");
    if (!seen)
        return DRAY_ENOMEM;
    dray__pipe p;
    dray__pipe_init(&p, c);
    dray__pipe_addf(&p, "HSET %s %s %lld", seen, s->identity, e);
    dray__pipe_addf(&p, "EXPIRE %s %s", seen, CANCEL_TTL);
    int rc = dray__pipe_run(&p);
    dray__pipe_close(&p);
    dray__free(seen);
    return rc;
}

/* Installs the outstanding cancellations when epoch moved, then acknowledges the epoch
 * (server.h has the contract). 0 or a DRAY_E* code; the old copy stays on failure. */
int
dray__cancel_sync(struct dray_server *s, dray__conn *c, const redisReply *epoch)
{
    dray__cancels *cs = s->cancels;
    redisReply *own = NULL;
    int rc = 0;
    if (!epoch) {
        char *k = dray__key(&s->cfg, "dray:cancels:epoch");
        rc = k ? dray__conn_cmdf(c, &own, "GET %s", k) : DRAY_ENOMEM;
        dray__free(k);
        if (rc == DRAY_EREDIS) /* WRONGTYPE: handled as a bad epoch below */
            rc = 0;
        epoch = own;
    }
    long long e = !rc && epoch ? epoch_of(epoch) : -1;
    if (!rc && e < 0) {
        /* not a count: this process cannot follow the epoch, so it asks
         * Redis for every job (exact, one EXISTS each) and never acknowledges */
        if (!atomic_exchange(&cs->warned, 1))
            dray__log(DRAY_LOG_ERROR,
                      "%sdray:cancels:epoch is not a count: checking every job in Redis",
                      s->cfg.ns ? s->cfg.ns : "");
        pthread_mutex_lock(&cs->mu);
        atomic_store(&cs->exists, 1);
        atomic_store(&cs->epoch, -1); /* the next good epoch is installed, whatever it is */
        pthread_mutex_unlock(&cs->mu);
    }
    if (own)
        freeReplyObject(own);
    if (rc || e < 0 || e == atomic_load(&cs->epoch))
        return rc;
    pthread_mutex_lock(&cs->mu);
    if (e != atomic_load(&cs->epoch)) {
        char **jids = NULL;
        size_t n = 0;
        int exists = 0;
        rc = read_index(s, c, &jids, &n, &exists);
        if (!rc)
            install(cs, jids, n, exists);
        /* Acknowledged only once installed: a job any worker of this process
         * pops after the canceller saw this is looked up in the new copy. */
        if (!rc && !(rc = acknowledge(s, c, e)))
            atomic_store(&cs->epoch, e);
    }
    pthread_mutex_unlock(&cs->mu);
    return rc;
}

/* 1 when jid is in the local copy. Any thread. */
static int
known(dray__cancels *cs, const char *jid)
{
    if (!atomic_load(&cs->any))
        return 0;
    pthread_rwlock_rdlock(&cs->rw);
    int hit = cs->n && bsearch(&jid, cs->jids, cs->n, sizeof *cs->jids, cmp_jid) != NULL;
    pthread_rwlock_unlock(&cs->rw);
    return hit;
}

/* 1 when the record of jid exists in Redis; 0 also when Redis cannot say. */
static int
recorded(dray__worker *w, const char *jid)
{
    char *rec = dray__cancel_key(&w->srv->cfg, jid);
    redisReply *r = NULL;
    /* If the check fails the job runs: a cancel must never lose a job. */
    int hit = rec && !dray__conn_cmdf(&w->conn, &r, "EXISTS %s", rec) &&
              r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r)
        freeReplyObject(r);
    dray__free(rec);
    return hit;
}

/* 1 when jid was cancelled before it started (logged, noted "skipped"), else 0: a local
 * lookup, no Redis unless the local copy overflowed. Worker thread. */
int
dray__cancel_before_run(dray__worker *w, const char *jid, const char *klass)
{
    struct dray_server *s = w->srv;
    if (!jid)
        return 0;
    int hit = atomic_load(&s->cancels->exists) ? recorded(w, jid) : known(s->cancels, jid);
    if (hit) {
        dray__logj(DRAY_LOG_WARN, jid, klass, -1,
                   "cancelled (dray cancel) before it started: not run");
        note(&w->conn, s, jid, "skipped", s->identity);
    }
    return hit;
}

/* True when the heartbeat flagged or reported w's running job as cancelled. */
bool
dray__cancel_acted(dray__worker *w)
{
    pthread_mutex_lock(&w->mu);
    bool acted = w->cur_cancel != 0;
    pthread_mutex_unlock(&w->mu);
    return acted;
}

/* Heartbeat: syncs the local copy and checks every running job in one pipelined round
 * trip; flags a cancelled one, or reports it to the supervisor to be killed. */
void
dray__cancel_beat(struct dray_server *s, dray__conn *c)
{
    /* Also here: a process whose workers are all busy or quiet still
     * acknowledges within a beat. */
    if (dray__cancel_sync(s, c, NULL))
        dray__log(DRAY_LOG_WARN, "heartbeat: cannot read the cancellations: %s", c->errstr);
    int n = s->opts.concurrency;
    char **jids = dray__calloc((size_t)n, sizeof *jids);
    if (!jids)
        return;
    dray__pipe p;
    dray__pipe_init(&p, c);
    size_t *cmd = dray__calloc((size_t)n, sizeof *cmd);
    int any = 0;
    for (int i = 0; cmd && i < n; i++) {
        dray__worker *w = &s->workers[i];
        pthread_mutex_lock(&w->mu);
        if (w->cur.payload && w->cur_jid && !w->cur_cancel)
            jids[i] = dray__strdup(w->cur_jid);
        pthread_mutex_unlock(&w->mu);
        char *rec = jids[i] ? dray__cancel_key(&s->cfg, jids[i]) : NULL;
        if (rec) {
            cmd[i] = p.n;
            if (!dray__pipe_addf(&p, "EXISTS %s", rec))
                any = 1;
            else
                cmd[i] = (size_t)-1;
        } else {
            cmd[i] = (size_t)-1;
        }
        dray__free(rec);
    }
    /* One round trip for every running job. */
    if (any && !dray__pipe_run(&p)) {
        for (int i = 0; i < n; i++) {
            const redisReply *r = cmd[i] != (size_t)-1 ? dray__pipe_reply(&p, cmd[i]) : NULL;
            if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != 1)
                continue;
            dray__worker *w = &s->workers[i];
            pthread_mutex_lock(&w->mu);
            int act =
                w->cur.payload && w->cur_jid && !strcmp(w->cur_jid, jids[i]) && !w->cur_cancel;
            if (act)
                w->cur_cancel = 1;
            pthread_mutex_unlock(&w->mu);
            if (!act)
                continue;
            if (dray__sup_cancel(w, jids[i])) {
                dray__logj(
                    DRAY_LOG_WARN, jids[i], NULL, -1,
                    "cancelled (dray cancel) while running: the supervisor kills this child");
            } else {
                atomic_store(&w->cur_over, 1);
                dray__logj(DRAY_LOG_WARN, jids[i], NULL, -1,
                           "cancelled (dray cancel) while running: flagged "
                           "(dray_job_cancelled returns 1), not stopped");
                note(c, s, jids[i], "flagged", s->identity);
            }
        }
    }
    dray__pipe_close(&p);
    for (int i = 0; i < n; i++)
        dray__free(jids[i]);
    dray__free(jids);
    dray__free(cmd);
}
