/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The inspection API's handle (dray_api: options, one lazy connection,
 * error text), the reply helpers its other files share (api_internal.h) and
 * raw commands. By concern: api_stats.c (Sidekiq::Stats), api_queues.c
 * (Sidekiq::Queue), api_procs.c (ProcessSet, remote signals), api_sets.c
 * (retry, schedule and dead sets). Reads are pipelined on Sidekiq 6's keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

/* ---- the handle ------------------------------------------------------------ */

/* A new handle on opts (NULL: defaults); no connection yet. *out is the
 * caller's (dray_api_free); DRAY_ENOMEM, or the URL's error in errbuf. */
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

/* Close the link and free api and what it owns. Accepts NULL. */
void
dray_api_free(dray_api *api)
{
    if (!api)
        return;
    dray__conn_close(&api->conn);
    dray__redis_cfg_close(&api->cfg);
    dray__free(api);
}

/* The handle's last error text (borrowed; "" after a success). */
const char *
dray_api_errstr(const dray_api *api)
{
    return api->errstr;
}

/* ---- helpers shared by api_*.c (contracts in api_internal.h) --------------- */

/* The link's error text (or rc's name) onto a; returns rc. */
int
dray__api_conn_fail(dray_api *a, int rc)
{
    return DRAY__SET_ERR(a, rc, "%s", a->conn.errstr[0] ? a->conn.errstr : dray_strerror(rc));
}

/* Free a failed command's reply r (may be NULL), then dray__api_conn_fail. */
int
dray__api_cmd_fail(dray_api *a, redisReply *r, int rc)
{
    if (r)
        freeReplyObject(r);
    return dray__api_conn_fail(a, rc);
}

/* Run p and hand its n replies to r (api_internal.h); p is closed. */
int
dray__api_run_into(dray_api *a, dray__pipe *p, redisReply **r, size_t n)
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
        rc = DRAY__SET_ERR(a, DRAY_EINVAL, "pipeline: %zu replies for %zu commands", p->n, n);
    dray__pipe_close(p);
    return rc ? dray__api_conn_fail(a, rc) : 0;
}

/* Free the non-NULL replies of r[0..n). Cannot fail. */
void
dray__api_free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i])
            freeReplyObject(r[i]);
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

/* Latency of the job in an LRANGE -1 -1 reply; 0 when there is none. */
double
dray__api_latency_reply(const redisReply *r, double now)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return 0;
    return latency_of(r->element[0]->str, r->element[0]->len, now);
}

/* qsort comparator for an array of C strings. */
static int
str_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* SMEMBERS <ns><suffix> sorted; *names points into *reply (both the
 * caller's on success, NULL on error). */
int
dray__api_members_sorted(dray_api *a, const char *suffix, redisReply **reply, const char ***names,
                         size_t *n)
{
    *reply = NULL;
    *names = NULL;
    *n = 0;
    redisReply *sr;
    int rc = dray__conn_cmdf(&a->conn, &sr, "SMEMBERS %s%s", a->cfg.ns, suffix);
    if (rc)
        return dray__api_cmd_fail(a, sr, rc);
    *reply = sr;
    redisReply *r = *reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return 0;
    const char **v = dray__malloc(sizeof *v * r->elements);
    if (!v) {
        freeReplyObject(r);
        *reply = NULL;
        return DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
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

/* The members of a set and per replies each, in two round trips; f is
 * the caller's (dray__api_fan_close) on success, empty on error. */
int
dray__api_fan_run(dray_api *a, const char *suffix, size_t per, dray__api_fan_fn add,
                  dray__api_fan *f)
{
    memset(f, 0, sizeof *f);
    f->per = per;
    int rc = dray__api_members_sorted(a, suffix, &f->set, &f->names, &f->n);
    if (rc || f->n == 0)
        return rc;
    f->r = dray__calloc(per * f->n, sizeof *f->r);
    if (!f->r) {
        rc = DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    } else {
        dray__pipe p;
        dray__pipe_init(&p, &a->conn);
        for (size_t i = 0; i < f->n; i++)
            add(&p, a->cfg.ns, f->names[i]);
        rc = dray__api_run_into(a, &p, f->r, per * f->n);
    }
    if (rc) {
        dray__free(f->r); /* run_into handed nothing over */
        f->r = NULL;
        dray__api_fan_close(f);
    }
    return rc;
}

/* Free what f holds; f is empty again. Cannot fail. */
void
dray__api_fan_close(dray__api_fan *f)
{
    if (f->r)
        dray__api_free_replies(f->r, f->per * f->n);
    dray__free(f->r);
    dray__free(f->names);
    if (f->set)
        freeReplyObject(f->set);
    memset(f, 0, sizeof *f);
}

/* ---- raw commands ---------------------------------------------------------- */

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

/* One raw command; *out is a new reference (json_decref). The reply's
 * error text, or the link's, goes to a->errstr. */
int
dray_api_command(dray_api *a, int argc, const char **argv, json_t **out)
{
    a->errstr[0] = '\0';
    *out = NULL;
    if (argc < 1 || !argv)
        return DRAY__SET_ERR(a, DRAY_EINVAL, "empty command");
    redisReply *r;
    int rc = dray__conn_cmd(&a->conn, &r, argc, argv, NULL);
    if (rc) {
        /* the connection's text only: "" rather than a generic name */
        DRAY__SET_ERR(a, rc, "%s", a->conn.errstr);
        if (r)
            freeReplyObject(r);
        return rc;
    }
    *out = reply_json(r);
    freeReplyObject(r);
    return *out ? 0 : DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
}

/* The handle's key prefix (borrowed, lives as long as a). */
const char *
dray_api_namespace(const dray_api *a)
{
    return a->cfg.ns;
}

/* a's connection, key settings and error buffer (all borrowed from a), for the other files of
 * the inspection API. Cannot fail. */
void
dray__api_parts(dray_api *a, dray__conn **conn, const dray__redis_cfg **cfg, char **errbuf,
                size_t *errlen)
{
    *conn = &a->conn;
    *cfg = &a->cfg;
    *errbuf = a->errstr;
    *errlen = sizeof a->errstr;
}
