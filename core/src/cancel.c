/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Job cancellation (dray cancel, dray_api_cancel). The request is recorded
 * first in <ns>dray:cancel:<jid> (a hash, 24 h), then the job is removed
 * from wherever it waits; a removal by value (ZREM, LREM) succeeds only while
 * nobody else holds the job, so a job is never both removed and run or moved
 * by the poller. A job a worker already took is caught by the record: the
 * worker checks it before running a job (one EXISTS), and the heartbeat
 * checks the running jobs (one pipelined round trip per beat). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define CANCEL_TTL "86400" /* a cancellation is honoured for a day */
#define PAGE 100           /* LRANGE page: a long queue is never loaded whole */
#define SCAN_COUNT "1000"  /* ZSCAN batch */

/* KEYS: record; ARGV: requested (epoch s), ttl. */
static dray__script record_script = {
    .src = "redis.call('HSET', KEYS[1], 'requested', ARGV[1])\n"
           "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
           "return 1\n",
};

/* KEYS: record; ARGV: what the worker did, when, by whom. Only while the
 * record lives (a worker must not make one without a TTL). */
static dray__script note_script = {
    .src = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
           "redis.call('HSET', KEYS[1], 'worker', ARGV[1], 'worker_at', ARGV[2], 'by', ARGV[3])\n"
           "return 1\n",
};

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

static int
cerr_set(canceller *k, int code, const char *what)
{
    snprintf(k->err, k->errlen, "%s: %s", what,
             k->c->errstr[0] ? k->c->errstr : dray_strerror(code));
    return code;
}

/* True when the JSON job m has "jid" equal to jid. */
static bool
has_jid(const char *m, size_t len, const char *jid)
{
    if (!memmem(m, len, jid, strlen(jid)))
        return false; /* cheap filter before parsing */
    json_t *o = dray__json_load(m, len, NULL);
    const char *j = json_string_value(json_object_get(o, "jid"));
    bool same = j && !strcmp(j, jid);
    json_decref(o);
    return same;
}

/* "*<jid>*" with glob characters escaped; NULL on OOM. */
static char *
glob_of(const char *jid)
{
    dray__buf b;
    dray__buf_init(&b);
    dray__buf_adds(&b, "*");
    for (const char *p = jid; *p; p++) {
        if (strchr("*?[]\\", *p))
            dray__buf_add(&b, "\\", 1);
        dray__buf_add(&b, p, 1);
    }
    dray__buf_adds(&b, "*");
    if (b.oom) {
        dray__buf_close(&b);
        return NULL;
    }
    return b.p;
}

/* Remove the member with this jid from a sorted set. 1 removed, 0 none, < 0. */
static int
from_set(canceller *k, const char *set)
{
    char *key = dray__key(k->cfg, set);
    char *pat = glob_of(k->jid);
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
                if (m->type != REDIS_REPLY_STRING || !has_jid(m->str, m->len, k->jid))
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
            if (m->type != REDIS_REPLY_STRING || !has_jid(m->str, m->len, k->jid))
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
        same = has_jid(json_string_value(p), json_string_length(p), jid);
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

static const char *
outcome_name(dray_cancel_outcome o)
{
    return o == DRAY_CANCEL_REMOVED   ? "removed"
           : o == DRAY_CANCEL_RUNNING ? "running"
                                      : "not_found";
}

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
    const char *av[3] = {rec, now, CANCEL_TTL};
    redisReply *r = NULL;
    int rc = dray__conn_eval(k.c, &record_script, &r, 1, 3, av, NULL);
    if (r)
        freeReplyObject(r);
    if (rc)
        cerr_set(&k, rc, "recording the cancellation");
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

void
dray__cancel_note(dray__conn *c, const struct dray_server *s, const char *jid, const char *what,
                  const char *by)
{
    note(c, s, jid, what, by);
}

int
dray__cancel_before_run(dray__worker *w, const char *jid, const char *klass)
{
    struct dray_server *s = w->srv;
    char *rec = jid ? dray__cancel_key(&s->cfg, jid) : NULL;
    redisReply *r = NULL;
    /* If the check fails the job runs: a cancel must never lose a job. */
    int hit = rec && !dray__conn_cmdf(&w->conn, &r, "EXISTS %s", rec) &&
              r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r)
        freeReplyObject(r);
    dray__free(rec);
    if (hit) {
        dray__logj(DRAY_LOG_WARN, jid, klass, -1,
                   "cancelled (dray cancel) before it started: not run");
        note(&w->conn, s, jid, "skipped", s->identity);
    }
    return hit;
}

bool
dray__cancel_acted(dray__worker *w)
{
    pthread_mutex_lock(&w->mu);
    bool acted = w->cur_cancel != 0;
    pthread_mutex_unlock(&w->mu);
    return acted;
}

void
dray__cancel_beat(struct dray_server *s, dray__conn *c)
{
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
