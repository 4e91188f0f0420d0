/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Sidekiq::ProcessSet and Process#signal: live processes from their
 * heartbeat hashes, and remote TSTP/TERM/TTIN through <identity>-signals. */
#include <string.h>

#include "api_internal.h"

#define SIGNAL_TTL "60" /* Sidekiq's Process#signal */

/* KEYS: processes, <identity>-signals; ARGV: identity, signal, ttl. */
static dray__script signal_script = {
    .src = "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
           "redis.call('LPUSH', KEYS[2], ARGV[2])\n"
           "redis.call('EXPIRE', KEYS[2], ARGV[3])\n"
           "return 1\n",
};

/* Free n process records and the array. Accepts NULL. */
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

/* A copy of s, or of "" when s is NULL (dray__free); NULL on OOM. */
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
    p->busy = (int)dray__api_reply_ll(r->element[1]);
    p->beat = dray__api_reply_double(r->element[2]);
    p->quiet = r->element[3]->type == REDIS_REPLY_STRING && !strcmp(r->element[3]->str, "true");
    p->rss_kb = (long)dray__api_reply_ll(r->element[4]);
    p->rtt_us = (long)dray__api_reply_ll(r->element[5]);
    if (!p->identity || !p->info || !p->hostname || !p->tag || !p->queues || !p->labels ||
        !p->version)
        return DRAY_ENOMEM;
    return 1;
}

/* The heartbeat fields of one process. */
static void
process_cmds(dray__pipe *p, const char *ns, const char *identity)
{
    dray__pipe_addf(p, "HMGET %s%s info busy beat quiet rss rtt_us", ns, identity);
}

/* Live processes sorted by identity; *out (dray_api_processes_free)
 * skips members whose hash is gone. Two round trips. */
int
dray_api_processes_list(dray_api *a, dray_process_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    a->errstr[0] = '\0';
    dray__api_fan f;
    int rc = dray__api_fan_run(a, "processes", 1, process_cmds, &f);
    if (rc || f.n == 0) {
        dray__api_fan_close(&f);
        return rc;
    }
    dray_process_info *p = dray__calloc(f.n, sizeof *p);
    size_t k = 0;
    if (!p)
        rc = DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    for (size_t i = 0; p && i < f.n && !rc; i++) {
        int filled = process_fill(&p[k], f.names[i], f.r[i]);
        if (filled != 0)
            k++; /* filled, or partly filled and freed with the rest */
        if (filled < 0)
            rc = DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    }
    if (rc) {
        dray_api_processes_free(p, k);
    } else if (k == 0) {
        dray__free(p);
    } else {
        *out = p;
        *n = k;
    }
    dray__api_fan_close(&f);
    return rc;
}

/* Queue a remote signal for a live process (one script: no signal for a
 * process that is gone). DRAY_EINVAL, DRAY_ENOTFOUND, or the link's error. */
int
dray_api_signal(dray_api *a, const char *identity, const char *signal)
{
    a->errstr[0] = '\0';
    if (!identity || !*identity)
        return DRAY__SET_ERR(a, DRAY_EINVAL, "process identity is empty");
    if (!signal || (strcmp(signal, "TSTP") && strcmp(signal, "TERM") && strcmp(signal, "TTIN")))
        return DRAY__SET_ERR(a, DRAY_EINVAL, "signal must be TSTP, TERM or TTIN, not '%s'",
                             signal ? signal : "(null)");
    char *procs = dray__key(&a->cfg, "processes");
    dray__buf sk;
    dray__buf_init(&sk);
    dray__key_buf(&sk, &a->cfg, identity);
    dray__buf_adds(&sk, "-signals");
    int rc;
    redisReply *r = NULL;
    if (!procs || sk.oom) {
        rc = DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    } else {
        const char *argv[5] = {procs, sk.p, identity, signal, SIGNAL_TTL};
        rc = dray__conn_eval(&a->conn, &signal_script, &r, 2, 5, argv, NULL);
        if (rc)
            dray__api_conn_fail(a, rc);
        else if (r->type != REDIS_REPLY_INTEGER || r->integer != 1)
            rc = DRAY__SET_ERR(a, DRAY_ENOTFOUND, "no process %s in the processes set", identity);
    }
    if (r)
        freeReplyObject(r);
    dray__free(procs);
    dray__buf_close(&sk);
    return rc;
}
