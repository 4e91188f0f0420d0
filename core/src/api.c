/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The inspection API: Sidekiq::Stats, Queue, ProcessSet and the sorted job
 * sets, on Sidekiq 6's keys. Reads are pipelined; every move between keys
 * is one Lua script whose ZREM decides ownership, and a member is never
 * rewritten while it stays in a set (deletes by value must keep working). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SCAN_COUNT "1000" /* ZSCAN batch: few round trips, short Redis pauses */
#define MOVE_ATTEMPTS 3   /* a member that vanished between find and move */
#define SIGNAL_TTL "60"   /* Sidekiq's Process#signal */

struct dray_api {
    dray__redis_cfg cfg;
    dray__conn conn;
    long dead_max_jobs;
    long dead_timeout_s;
    int ts_ms; /* write Sidekiq 8's integer ms timestamps */
    char errstr[DRAY_ERRSTR_BYTES];
};

/* KEYS: set, queues, queue:<q>; ARGV: member, new payload, queue name. */
static dray__script retry_script = {
    .src = "if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
           "redis.call('SADD', KEYS[2], ARGV[3])\n"
           "redis.call('LPUSH', KEYS[3], ARGV[2])\n"
           "return 1\n",
};

/* KEYS: set, dead; ARGV: member, score, cutoff (exclusive), rank. */
static dray__script kill_script = {
    .src = "if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
           "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
           "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])\n"
           "redis.call('ZREMRANGEBYRANK', KEYS[2], 0, ARGV[4])\n"
           "return 1\n",
};

/* KEYS: processes, <identity>-signals; ARGV: identity, signal, ttl. */
static dray__script signal_script = {
    .src = "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
           "redis.call('LPUSH', KEYS[2], ARGV[2])\n"
           "redis.call('EXPIRE', KEYS[2], ARGV[3])\n"
           "return 1\n",
};

static const char *const set_names[] = {"retry", "schedule", "dead"};

static int aerr(dray_api *a, int code, const char *fmt, ...) DRAY_PRINTF(3, 4);

static int
aerr(dray_api *a, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->errstr, sizeof a->errstr, fmt, ap);
    va_end(ap);
    return code;
}

/* Copy the connection's error text to the handle. */
static int
conn_fail(dray_api *a, int rc)
{
    snprintf(a->errstr, sizeof a->errstr, "%s",
             a->conn.errstr[0] ? a->conn.errstr : dray_strerror(rc));
    return rc;
}

int
dray_api_new(const dray_options *opts, dray_api **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    dray_options dflt;
    if (!opts) {
        dray_options_init(&dflt);
        opts = &dflt;
    }
    dray_api *a = dray__calloc(1, sizeof *a);
    if (!a)
        return dray__err(errbuf, errlen, DRAY_ENOMEM, "out of memory");
    int rc = dray__redis_cfg_init(&a->cfg, opts, errbuf, errlen);
    if (rc) {
        dray__free(a);
        return rc;
    }
    a->dead_max_jobs = opts->dead_max_jobs > 0 ? opts->dead_max_jobs : 10000;
    a->dead_timeout_s = opts->dead_timeout_s > 0 ? opts->dead_timeout_s : 180L * 24 * 3600;
    a->ts_ms = opts->timestamps_ms ? 1 : 0;
    dray__conn_init(&a->conn, &a->cfg);
    *out = a;
    return 0;
}

void
dray_api_free(dray_api *api)
{
    if (!api)
        return;
    dray__conn_close(&api->conn);
    dray__redis_cfg_close(&api->cfg);
    dray__free(api);
}

const char *
dray_api_errstr(const dray_api *api)
{
    return api->errstr;
}

const char *
dray_set_name(dray_set set)
{
    return (unsigned)set < 3 ? set_names[set] : NULL;
}

int
dray_set_parse(const char *name, dray_set *out)
{
    if (!name)
        return DRAY_EINVAL;
    if (!strcmp(name, "retry") || !strcmp(name, "retries"))
        *out = DRAY_SET_RETRY;
    else if (!strcmp(name, "schedule") || !strcmp(name, "scheduled"))
        *out = DRAY_SET_SCHEDULE;
    else if (!strcmp(name, "dead") || !strcmp(name, "morgue"))
        *out = DRAY_SET_DEAD;
    else
        return DRAY_EINVAL;
    return 0;
}

/* Run p (which holds n commands) and hand its replies over in r[0..n),
 * freed by the caller with free_replies. On failure nothing is handed over
 * and the link is left as dray__pipe_run left it. */
static int
run_into(dray_api *a, dray__pipe *p, redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        r[i] = NULL;
    int rc = dray__pipe_run(p);
    if (!rc && p->n == n)
        for (size_t i = 0; i < n; i++) {
            r[i] = p->cmd[i].r;
            p->cmd[i].r = NULL;
        }
    else if (!rc)
        rc = aerr(a, DRAY_EINVAL, "pipeline: %zu replies for %zu commands", p->n, n);
    dray__pipe_close(p);
    return rc ? conn_fail(a, rc) : 0;
}

static void
free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i])
            freeReplyObject(r[i]);
}

static long long
reply_ll(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static double
reply_double(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL) : 0;
}

/* Seconds since the job (JSON of len bytes) was enqueued; Sidekiq falls back
 * to "now" (0) for a job without enqueued_at or that is not JSON. */
static double
latency_of(const char *json, size_t len, double now)
{
    json_t *o = dray__json_load(json, len, NULL);
    json_t *t = json_object_get(o, "enqueued_at");
    double lat = json_is_number(t) ? now - dray_time_from_json(t) : 0;
    json_decref(o);
    return lat;
}

static double
latency_reply(const redisReply *r, double now)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return 0;
    return latency_of(r->element[0]->str, r->element[0]->len, now);
}

static int
str_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* SMEMBERS of <ns><suffix>, sorted; *names points into *reply (free it). */
static int
members_sorted(dray_api *a, const char *suffix, redisReply **reply, const char ***names, size_t *n)
{
    *reply = NULL;
    *names = NULL;
    *n = 0;
    int rc = dray__conn_cmdf(&a->conn, reply, "SMEMBERS %s%s", a->cfg.ns, suffix);
    if (rc) {
        if (*reply)
            freeReplyObject(*reply);
        *reply = NULL;
        return conn_fail(a, rc);
    }
    redisReply *r = *reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return 0;
    const char **v = dray__malloc(sizeof *v * r->elements);
    if (!v) {
        freeReplyObject(r);
        *reply = NULL;
        return aerr(a, DRAY_ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            v[k++] = r->element[i]->str;
    qsort(v, k, sizeof *v, str_cmp);
    *names = v;
    *n = k;
    return 0;
}

int
dray_api_stats_get(dray_api *a, dray_stats *out)
{
    memset(out, 0, sizeof *out);
    a->errstr[0] = '\0';
    const char *ns = a->cfg.ns;
    int rc;
    dray__pipe p;
    dray__pipe_init(&p, &a->conn);
    dray__pipe_addf(&p, "GET %sstat:processed", ns);
    dray__pipe_addf(&p, "GET %sstat:failed", ns);
    dray__pipe_addf(&p, "ZCARD %sschedule", ns);
    dray__pipe_addf(&p, "ZCARD %sretry", ns);
    dray__pipe_addf(&p, "ZCARD %sdead", ns);
    dray__pipe_addf(&p, "SCARD %sprocesses", ns);
    dray__pipe_addf(&p, "LRANGE %squeue:default -1 -1", ns);
    redisReply *r1[7];
    if ((rc = run_into(a, &p, r1, 7)))
        return rc;
    double now = dray_now();
    out->processed = reply_ll(r1[0]);
    out->failed = reply_ll(r1[1]);
    out->scheduled_size = reply_ll(r1[2]);
    out->retry_size = reply_ll(r1[3]);
    out->dead_size = reply_ll(r1[4]);
    out->processes_size = reply_ll(r1[5]);
    out->default_queue_latency = latency_reply(r1[6], now);
    free_replies(r1, 7);

    /* Sidekiq's fetch_stats_slow!: busy of every process, size of every queue. */
    redisReply *pr, *qr;
    const char **procs, **queues;
    size_t np, nq;
    if ((rc = members_sorted(a, "processes", &pr, &procs, &np)))
        return rc;
    if ((rc = members_sorted(a, "queues", &qr, &queues, &nq))) {
        dray__free(procs);
        freeReplyObject(pr);
        return rc;
    }
    redisReply **r2 = np + nq ? dray__calloc(np + nq, sizeof *r2) : NULL;
    if (np + nq && !r2) {
        rc = aerr(a, DRAY_ENOMEM, "out of memory");
        goto out;
    }
    dray__pipe_init(&p, &a->conn);
    for (size_t i = 0; i < np; i++)
        dray__pipe_addf(&p, "HGET %s%s busy", ns, procs[i]);
    for (size_t i = 0; i < nq; i++)
        dray__pipe_addf(&p, "LLEN %squeue:%s", ns, queues[i]);
    if ((rc = run_into(a, &p, r2, np + nq)))
        goto out;
    for (size_t i = 0; i < np; i++)
        out->workers_size += reply_ll(r2[i]);
    for (size_t i = 0; i < nq; i++)
        out->enqueued += reply_ll(r2[np + i]);
    free_replies(r2, np + nq);
out:
    dray__free(r2);
    dray__free(procs);
    dray__free(queues);
    freeReplyObject(pr);
    freeReplyObject(qr);
    return rc;
}

void
dray_api_queues_free(dray_queue_info *q, size_t n)
{
    if (!q)
        return;
    for (size_t i = 0; i < n; i++)
        dray__free(q[i].name);
    dray__free(q);
}

int
dray_api_queues_list(dray_api *a, dray_queue_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    a->errstr[0] = '\0';
    redisReply *qr;
    const char **names;
    size_t nq;
    int rc = members_sorted(a, "queues", &qr, &names, &nq);
    if (rc)
        return rc;
    dray_queue_info *q = NULL;
    redisReply **r = NULL;
    if (nq == 0)
        goto out;
    q = dray__calloc(nq, sizeof *q);
    r = dray__calloc(2 * nq, sizeof *r);
    if (!q || !r) {
        rc = aerr(a, DRAY_ENOMEM, "out of memory");
        goto out;
    }
    dray__pipe p;
    dray__pipe_init(&p, &a->conn);
    for (size_t i = 0; i < nq; i++) {
        dray__pipe_addf(&p, "LLEN %squeue:%s", a->cfg.ns, names[i]);
        dray__pipe_addf(&p, "LRANGE %squeue:%s -1 -1", a->cfg.ns, names[i]);
    }
    if ((rc = run_into(a, &p, r, 2 * nq)))
        goto out;
    double now = dray_now();
    for (size_t i = 0; i < nq; i++) {
        q[i].name = dray__strdup(names[i]);
        q[i].size = reply_ll(r[2 * i]);
        q[i].latency = latency_reply(r[2 * i + 1], now);
        if (!q[i].name)
            rc = aerr(a, DRAY_ENOMEM, "out of memory");
    }
    free_replies(r, 2 * nq);
out:
    if (rc) {
        dray_api_queues_free(q, nq);
    } else {
        *out = q;
        *n = nq;
    }
    dray__free(r);
    dray__free(names);
    freeReplyObject(qr);
    return rc;
}

void
dray_api_processes_free(dray_process_info *p, size_t n)
{
    if (!p)
        return;
    for (size_t i = 0; i < n; i++) {
        dray__free(p[i].identity);
        dray__free(p[i].hostname);
        dray__free(p[i].tag);
        dray__free(p[i].queues);
        dray__free(p[i].labels);
        dray__free(p[i].info);
        dray__free(p[i].version);
    }
    dray__free(p);
}

/* Join the strings of a JSON array with commas into a new string. */
static char *
join_array(const json_t *arr)
{
    dray__buf b;
    dray__buf_init(&b);
    dray__buf_adds(&b, "");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        if (!s)
            continue;
        if (b.len)
            dray__buf_adds(&b, ",");
        dray__buf_adds(&b, s);
    }
    if (b.oom) {
        dray__buf_close(&b);
        return NULL;
    }
    return b.p;
}

static char *
strdup_or_empty(const char *s)
{
    return dray__strdup(s ? s : "");
}

/* Fill p from one HMGET reply (info busy beat quiet rss rtt_us).
 * 1 when filled, 0 when the process has no info (gone), < 0 on OOM. */
static int
process_fill(dray_process_info *p, const char *identity, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return 0;
    const redisReply *info = r->element[0];
    json_t *o = json_loadb(info->str, info->len, JSON_ALLOW_NUL, NULL);
    p->identity = dray__strdup(identity);
    p->info = dray__strndup(info->str, info->len);
    p->hostname = strdup_or_empty(json_string_value(json_object_get(o, "hostname")));
    p->tag = strdup_or_empty(json_string_value(json_object_get(o, "tag")));
    p->version = strdup_or_empty(json_string_value(json_object_get(o, "version")));
    json_t *qs = json_object_get(o, "queues");
    p->queues = json_is_array(qs) ? join_array(qs) : dray__strdup("");
    json_t *ls = json_object_get(o, "labels");
    p->labels = json_is_array(ls) ? join_array(ls) : dray__strdup("");
    json_t *pid = json_object_get(o, "pid");
    p->pid = json_is_integer(pid) ? (long)json_integer_value(pid) : 0;
    json_t *conc = json_object_get(o, "concurrency");
    p->concurrency = json_is_integer(conc) ? (int)json_integer_value(conc) : 0;
    json_t *st = json_object_get(o, "started_at");
    p->started_at = dray_time_from_json(st);
    json_decref(o);
    p->busy = (int)reply_ll(r->element[1]);
    p->beat = reply_double(r->element[2]);
    p->quiet = r->element[3]->type == REDIS_REPLY_STRING && !strcmp(r->element[3]->str, "true");
    p->rss_kb = (long)reply_ll(r->element[4]);
    p->rtt_us = (long)reply_ll(r->element[5]);
    if (!p->identity || !p->info || !p->hostname || !p->tag || !p->queues || !p->labels ||
        !p->version)
        return DRAY_ENOMEM;
    return 1;
}

int
dray_api_processes_list(dray_api *a, dray_process_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    a->errstr[0] = '\0';
    redisReply *pr;
    const char **ids;
    size_t np;
    int rc = members_sorted(a, "processes", &pr, &ids, &np);
    if (rc)
        return rc;
    dray_process_info *p = NULL;
    redisReply **r = NULL;
    size_t k = 0;
    if (np == 0)
        goto out;
    p = dray__calloc(np, sizeof *p);
    r = dray__calloc(np, sizeof *r);
    if (!p || !r) {
        rc = aerr(a, DRAY_ENOMEM, "out of memory");
        goto out;
    }
    dray__pipe pl;
    dray__pipe_init(&pl, &a->conn);
    for (size_t i = 0; i < np; i++)
        dray__pipe_addf(&pl, "HMGET %s%s info busy beat quiet rss rtt_us", a->cfg.ns, ids[i]);
    if ((rc = run_into(a, &pl, r, np)))
        goto out;
    for (size_t i = 0; i < np && !rc; i++) {
        int f = process_fill(&p[k], ids[i], r[i]);
        if (f != 0)
            k++; /* filled, or partly filled and freed with the rest */
        if (f < 0)
            rc = aerr(a, DRAY_ENOMEM, "out of memory");
    }
    free_replies(r, np);
out:
    if (rc) {
        dray_api_processes_free(p, k);
    } else if (k == 0) {
        dray__free(p);
    } else {
        *out = p;
        *n = k;
    }
    dray__free(r);
    dray__free(ids);
    freeReplyObject(pr);
    return rc;
}

/* ---- job sets --------------------------------------------------------------- */

static int
check_set(dray_api *a, dray_set set)
{
    return dray_set_name(set) ? 0 : aerr(a, DRAY_EINVAL, "no such job set (%d)", (int)set);
}

static char *
set_key(dray_api *a, dray_set set)
{
    return dray__key(&a->cfg, set_names[set]);
}

void
dray_api_entries_free(dray_set_entry *e, size_t n)
{
    if (!e)
        return;
    for (size_t i = 0; i < n; i++) {
        dray__free(e[i].member);
        dray__free(e[i].jid);
        dray__free(e[i].klass);
        dray__free(e[i].queue);
        dray__free(e[i].error_class);
        dray__free(e[i].error_message);
    }
    dray__free(e);
}

/* Copy a string field of o, or NULL when absent; *oom set on failure. */
static char *
field(const json_t *o, const char *name, int *oom)
{
    const char *s = json_string_value(json_object_get(o, name));
    if (!s)
        return NULL;
    char *d = dray__strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

static int
entry_fill(dray_set_entry *e, const char *m, size_t len, double score)
{
    memset(e, 0, sizeof *e);
    e->score = score;
    e->retry_count = -1;
    e->member = dray__strndup(m, len);
    if (!e->member)
        return DRAY_ENOMEM;
    e->member_len = len;
    json_t *o = dray__json_load(m, len, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    int oom = 0;
    e->jid = field(o, "jid", &oom);
    e->klass = field(o, "class", &oom);
    e->queue = field(o, "queue", &oom);
    e->error_class = field(o, "error_class", &oom);
    e->error_message = field(o, "error_message", &oom);
    json_t *rc = json_object_get(o, "retry_count");
    if (json_is_integer(rc))
        e->retry_count = (int)json_integer_value(rc);
    e->created_at = dray_time_from_json(json_object_get(o, "created_at"));
    e->enqueued_at = dray_time_from_json(json_object_get(o, "enqueued_at"));
    e->failed_at = dray_time_from_json(json_object_get(o, "failed_at"));
    e->retried_at = dray_time_from_json(json_object_get(o, "retried_at"));
    json_decref(o);
    return oom ? DRAY_ENOMEM : 0;
}

int
dray_api_set_size(dray_api *a, dray_set set, long long *out)
{
    *out = 0;
    a->errstr[0] = '\0';
    int rc = check_set(a, set);
    if (rc)
        return rc;
    redisReply *r;
    rc = dray__conn_cmdf(&a->conn, &r, "ZCARD %s%s", a->cfg.ns, set_names[set]);
    if (!rc)
        *out = reply_ll(r);
    if (r)
        freeReplyObject(r);
    return rc ? conn_fail(a, rc) : 0;
}

int
dray_api_set_list(dray_api *a, dray_set set, size_t offset, size_t limit, dray_set_entry **out,
                  size_t *n)
{
    *out = NULL;
    *n = 0;
    a->errstr[0] = '\0';
    int rc = check_set(a, set);
    if (rc)
        return rc;
    char start[24], stop[24];
    snprintf(start, sizeof start, "%zu", offset);
    if (limit)
        snprintf(stop, sizeof stop, "%zu", offset + limit - 1);
    else
        snprintf(stop, sizeof stop, "-1");
    redisReply *r;
    rc = dray__conn_cmdf(&a->conn, &r, "%s %s%s %s %s WITHSCORES",
                         set == DRAY_SET_DEAD ? "ZREVRANGE" : "ZRANGE", a->cfg.ns, set_names[set],
                         start, stop);
    if (rc) {
        if (r)
            freeReplyObject(r);
        return conn_fail(a, rc);
    }
    size_t count = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    if (count == 0) {
        freeReplyObject(r);
        return 0;
    }
    dray_set_entry *e = dray__calloc(count, sizeof *e);
    if (!e) {
        freeReplyObject(r);
        return aerr(a, DRAY_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < count && !rc; i++) {
        const redisReply *m = r->element[2 * i], *s = r->element[2 * i + 1];
        rc = entry_fill(&e[i], m->str ? m->str : "", m->str ? m->len : 0, reply_double(s));
    }
    freeReplyObject(r);
    if (rc) {
        dray_api_entries_free(e, count);
        return aerr(a, rc, "out of memory");
    }
    *out = e;
    *n = count;
    return 0;
}

static void
entry_clear(dray_set_entry *e)
{
    dray__free(e->member);
    dray__free(e->jid);
    dray__free(e->klass);
    dray__free(e->queue);
    dray__free(e->error_class);
    dray__free(e->error_message);
    memset(e, 0, sizeof *e);
}

/* "*<jid>*" with the glob characters of jid escaped. */
static char *
jid_pattern(const char *jid)
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

/* True when member (JSON) has "jid" equal to jid. */
static bool
member_has_jid(const char *m, size_t len, const char *jid)
{
    json_t *o = dray__json_load(m, len, NULL);
    const char *j = json_string_value(json_object_get(o, "jid"));
    bool same = j && !strcmp(j, jid);
    json_decref(o);
    return same;
}

/* Find the first member of key whose jid is jid, as Sidekiq's find_job:
 * ZSCAN MATCH *jid*, then compare the parsed jid. 0 with *e filled,
 * DRAY_ENOTFOUND, or another error. */
static int
find_member(dray_api *a, const char *key, const char *jid, dray_set_entry *e)
{
    char *pat = jid_pattern(jid);
    if (!pat)
        return aerr(a, DRAY_ENOMEM, "out of memory");
    char cursor[32] = "0";
    int rc = DRAY_ENOTFOUND;
    do {
        redisReply *r;
        const char *argv[7] = {"ZSCAN", key, cursor, "MATCH", pat, "COUNT", SCAN_COUNT};
        int e2 = dray__conn_cmd(&a->conn, &r, 7, argv, NULL);
        if (e2) {
            if (r)
                freeReplyObject(r);
            rc = conn_fail(a, e2);
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            rc = aerr(a, DRAY_EREDIS, "unexpected ZSCAN reply");
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *items = r->element[1];
        for (size_t i = 0; i + 1 < items->elements; i += 2) {
            const redisReply *m = items->element[i];
            if (m->type != REDIS_REPLY_STRING || !member_has_jid(m->str, m->len, jid))
                continue;
            rc = entry_fill(e, m->str, m->len, reply_double(items->element[i + 1]));
            if (rc) {
                entry_clear(e);
                rc = aerr(a, rc, "out of memory");
            }
            break;
        }
        freeReplyObject(r);
    } while (rc == DRAY_ENOTFOUND && strcmp(cursor, "0"));
    dray__free(pat);
    if (rc == DRAY_ENOTFOUND)
        aerr(a, rc, "no job with jid %s in the %s set", jid, key + a->cfg.nslen);
    return rc;
}

int
dray_api_set_find(dray_api *a, dray_set set, const char *jid, dray_set_entry **out)
{
    *out = NULL;
    a->errstr[0] = '\0';
    int rc = check_set(a, set);
    if (rc)
        return rc;
    if (!jid || !*jid)
        return aerr(a, DRAY_EINVAL, "jid is empty");
    char *key = set_key(a, set);
    dray_set_entry *e = dray__calloc(1, sizeof *e);
    if (!key || !e) {
        dray__free(key);
        dray__free(e);
        return aerr(a, DRAY_ENOMEM, "out of memory");
    }
    rc = find_member(a, key, jid, e);
    dray__free(key);
    if (rc) {
        dray__free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* The payload pushed by "retry now": enqueued_at = now, and retry_count
 * decremented unless the job comes from the schedule set. *queue is
 * borrowed from *obj (json_decref it after use). */
static int
retry_payload(dray_api *a, dray_set set, const dray_set_entry *e, char **json, size_t *len,
              json_t **obj, const char **queue)
{
    *json = NULL;
    *obj = NULL;
    json_error_t jerr;
    json_t *o = dray__json_load(e->member, e->member_len, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        return aerr(a, DRAY_EJSON, "job %s is not a json object", e->jid ? e->jid : "?");
    }
    json_t *rc = json_object_get(o, "retry_count");
    if (set != DRAY_SET_SCHEDULE && json_is_integer(rc))
        json_object_set_new(o, "retry_count",
                            json_integer(json_integer_value(rc) > LLONG_MIN
                                             ? json_integer_value(rc) - 1
                                             : LLONG_MIN));
    const char *q = json_string_value(json_object_get(o, "queue"));
    if (!q)
        q = "default";
    int e2 = dray__queue_check(q, a->errstr, sizeof a->errstr);
    if (e2) {
        json_decref(o);
        return e2;
    }
    if (json_object_set_new(o, "enqueued_at", dray__time_json(a->ts_ms, dray_now()))) {
        json_decref(o);
        return aerr(a, DRAY_ENOMEM, "out of memory");
    }
    *json = dray__json_dump(o, len);
    if (!*json) {
        json_decref(o);
        return aerr(a, DRAY_ENOMEM, "out of memory");
    }
    *obj = o;
    *queue = q;
    return 0;
}

enum move { MOVE_RETRY, MOVE_KILL, MOVE_DELETE };

/* Run one move of member e out of key. 1 moved, 0 the member was gone,
 * < 0 error. */
static int
move_once(dray_api *a, dray_set set, const char *key, const dray_set_entry *e, enum move how)
{
    redisReply *r = NULL;
    int rc;
    if (how == MOVE_DELETE) {
        const char *argv[3] = {"ZREM", key, e->member};
        size_t lens[3] = {4, strlen(key), e->member_len};
        rc = dray__conn_cmd(&a->conn, &r, 3, argv, lens);
    } else if (how == MOVE_KILL) {
        char *dead = dray__key(&a->cfg, "dead");
        if (!dead)
            return aerr(a, DRAY_ENOMEM, "out of memory");
        double now = dray_now();
        char score[32], cutoff[40], rank[32];
        snprintf(score, sizeof score, "%.6f", now);
        snprintf(cutoff, sizeof cutoff, "(%.6f", now - (double)a->dead_timeout_s);
        snprintf(rank, sizeof rank, "%ld", -(a->dead_max_jobs + 1)); /* keep dead_max_jobs */
        const char *argv[6] = {key, dead, e->member, score, cutoff, rank};
        size_t lens[6] = {strlen(key),   strlen(dead),   e->member_len,
                          strlen(score), strlen(cutoff), strlen(rank)};
        rc = dray__conn_eval(&a->conn, &kill_script, &r, 2, 6, argv, lens);
        dray__free(dead);
    } else {
        char *json;
        size_t len;
        json_t *o;
        const char *q = NULL;
        if ((rc = retry_payload(a, set, e, &json, &len, &o, &q)))
            return rc;
        dray__buf qk;
        dray__buf_init(&qk);
        dray__key_buf(&qk, &a->cfg, "queue:");
        dray__buf_adds(&qk, q);
        char *queues = dray__key(&a->cfg, "queues");
        if (qk.oom || !queues) {
            rc = aerr(a, DRAY_ENOMEM, "out of memory");
        } else {
            const char *argv[6] = {key, queues, qk.p, e->member, json, q};
            size_t lens[6] = {strlen(key), strlen(queues), qk.len, e->member_len, len, strlen(q)};
            rc = dray__conn_eval(&a->conn, &retry_script, &r, 3, 6, argv, lens);
        }
        dray__free(queues);
        dray__buf_close(&qk);
        free(json);
        json_decref(o);
        if (rc == DRAY_ENOMEM && !r)
            return rc;
    }
    if (rc) {
        if (r)
            freeReplyObject(r);
        return conn_fail(a, rc);
    }
    int moved = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return moved;
}

/* Find the member with jid in set and move it. A member that vanished
 * between the find and the script (the scheduler moved it, another operator
 * acted) is looked up again. */
static int
move_by_jid(dray_api *a, dray_set set, const char *jid, enum move how)
{
    a->errstr[0] = '\0';
    int rc = check_set(a, set);
    if (rc)
        return rc;
    if (!jid || !*jid)
        return aerr(a, DRAY_EINVAL, "jid is empty");
    if (how == MOVE_KILL && set == DRAY_SET_DEAD)
        return aerr(a, DRAY_EINVAL, "job %s is already in the dead set", jid);
    char *key = set_key(a, set);
    if (!key)
        return aerr(a, DRAY_ENOMEM, "out of memory");
    rc = DRAY_ENOTFOUND;
    for (int attempt = 0; attempt < MOVE_ATTEMPTS && rc == DRAY_ENOTFOUND; attempt++) {
        dray_set_entry e;
        memset(&e, 0, sizeof e);
        if ((rc = find_member(a, key, jid, &e)))
            break;
        int m = move_once(a, set, key, &e, how);
        entry_clear(&e);
        if (m < 0)
            rc = m;
        else if (m == 0)
            rc = aerr(a, DRAY_ENOTFOUND, "job %s left the %s set before it could be moved", jid,
                      set_names[set]);
        else
            rc = 0;
    }
    dray__free(key);
    return rc;
}

int
dray_api_set_retry(dray_api *a, dray_set set, const char *jid)
{
    return move_by_jid(a, set, jid, MOVE_RETRY);
}

int
dray_api_set_delete(dray_api *a, dray_set set, const char *jid)
{
    return move_by_jid(a, set, jid, MOVE_DELETE);
}

int
dray_api_set_kill(dray_api *a, dray_set set, const char *jid)
{
    return move_by_jid(a, set, jid, MOVE_KILL);
}

int
dray_api_signal(dray_api *a, const char *identity, const char *signal)
{
    a->errstr[0] = '\0';
    if (!identity || !*identity)
        return aerr(a, DRAY_EINVAL, "process identity is empty");
    if (!signal || (strcmp(signal, "TSTP") && strcmp(signal, "TERM") && strcmp(signal, "TTIN")))
        return aerr(a, DRAY_EINVAL, "signal must be TSTP, TERM or TTIN, not '%s'",
                    signal ? signal : "(null)");
    char *procs = dray__key(&a->cfg, "processes");
    dray__buf sk;
    dray__buf_init(&sk);
    dray__key_buf(&sk, &a->cfg, identity);
    dray__buf_adds(&sk, "-signals");
    int rc;
    redisReply *r = NULL;
    if (!procs || sk.oom) {
        rc = aerr(a, DRAY_ENOMEM, "out of memory");
    } else {
        const char *argv[5] = {procs, sk.p, identity, signal, SIGNAL_TTL};
        rc = dray__conn_eval(&a->conn, &signal_script, &r, 2, 5, argv, NULL);
        if (rc)
            conn_fail(a, rc);
        else if (r->type != REDIS_REPLY_INTEGER || r->integer != 1)
            rc = aerr(a, DRAY_ENOTFOUND, "no process %s in the processes set", identity);
    }
    if (r)
        freeReplyObject(r);
    dray__free(procs);
    dray__buf_close(&sk);
    return rc;
}

/* A reply as a jansson value (new reference); NULL on OOM. */
static json_t *
reply_json(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: {
        json_t *v = json_stringn(r->str, r->len);
        return v ? v : json_stringn_nocheck(r->str, r->len); /* binary: keep the bytes */
    }
    case REDIS_REPLY_INTEGER:
        return json_integer(r->integer);
    case REDIS_REPLY_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; a && i < r->elements; i++)
            if (json_array_append_new(a, reply_json(r->element[i]))) {
                json_decref(a);
                return NULL;
            }
        return a;
    }
    default:
        return json_null();
    }
}

int
dray_api_command(dray_api *a, int argc, const char **argv, json_t **out)
{
    a->errstr[0] = '\0';
    *out = NULL;
    if (argc < 1 || !argv)
        return aerr(a, DRAY_EINVAL, "empty command");
    redisReply *r;
    int rc = dray__conn_cmd(&a->conn, &r, argc, argv, NULL);
    if (rc) {
        snprintf(a->errstr, sizeof a->errstr, "%s", a->conn.errstr);
        if (r)
            freeReplyObject(r);
        return rc;
    }
    *out = reply_json(r);
    freeReplyObject(r);
    return *out ? 0 : aerr(a, DRAY_ENOMEM, "out of memory");
}

const char *
dray_api_namespace(const dray_api *a)
{
    return a->cfg.ns;
}

void
dray__api_parts(dray_api *a, dray__conn **conn, const dray__redis_cfg **cfg, char **errbuf,
                size_t *errlen)
{
    *conn = &a->conn;
    *cfg = &a->cfg;
    *errbuf = a->errstr;
    *errlen = sizeof a->errstr;
}
