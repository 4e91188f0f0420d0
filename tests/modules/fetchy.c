/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Test module "fetchy" (built twice: FETCHY_NAME "fetchy" and "fetchy2", so
 * two providers can collide): a small reliable fetch. fetch moves a job into
 * the per-process list "fetchy:working:<identity>" (RPOPLPUSH, then a
 * blocking BRPOPLPUSH on the first queue); ack removes it; requeue and
 * bulk_requeue move it back to its queue's head in one script; recover
 * returns the jobs in other processes' working lists. Counters
 * fetchy:fetched/acked/requeued/bulk/recovered and the set fetchy:threads
 * ("<call>@<thread>") are for the tests. Setting <name>.bulk=no leaves
 * bulk_requeue out, so the core requeues one by one.
 */
#include <stdio.h>
#include <string.h>

#include "dray/module.h"

#ifndef FETCHY_NAME
#define FETCHY_NAME "fetchy"
#endif

static const dray_host *H;
static dray_module *M;
static dray_script *back_script;

static const char *const thread_names[] = {"client", "worker", "heartbeat", "main", "module"};

/* KEYS[1] working list, KEYS[2] queue; ARGV[1] payload. */
static const char back_lua[] = "redis.call('LREM', KEYS[1], 1, ARGV[1])\n"
                               "return redis.call('RPUSH', KEYS[2], ARGV[1])\n";

static void
count(dray_ctx *ctx, const char *what, long n)
{
    redisReply *r = NULL;
    H->redisf(ctx, &r, "INCRBY %sfetchy:%s %ld", H->ns(ctx), what, n);
    if (r)
        freeReplyObject(r);
    int k = H->ctx_thread(ctx);
    H->redisf(ctx, &r, "SADD %sfetchy:threads %s@%s", H->ns(ctx), what,
              k >= 0 && k <= 4 ? thread_names[k] : "?");
    if (r)
        freeReplyObject(r);
}

static void
working_key(dray_ctx *ctx, char *buf, size_t n)
{
    snprintf(buf, n, "%sfetchy:working:%s", H->ns(ctx), H->identity(ctx));
}

static int
take(dray_ctx *ctx, redisReply *r, const char *key, const char *wk, dray_unit *out)
{
    size_t pre = strlen(H->ns(ctx)) + strlen("queue:");
    out->queue = H->strdup(strlen(key) > pre ? key + pre : "default");
    out->payload = H->alloc(r->len + 1);
    out->token = H->strdup(wk);
    if (!out->queue || !out->payload || !out->token) {
        H->free(out->queue);
        H->free(out->payload);
        H->free(out->token);
        return DRAY_ENOMEM;
    }
    memcpy(out->payload, r->str, r->len);
    out->payload[r->len] = '\0';
    out->len = r->len;
    count(ctx, "fetched", 1);
    return 1;
}

static int
fetch(dray_ctx *ctx, const char *const *keys, size_t n, double timeout_s, dray_unit *out, void *ud)
{
    (void)ud;
    char wk[256];
    working_key(ctx, wk, sizeof wk);
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        int rc = H->redisf(ctx, &r, "RPOPLPUSH %s %s", keys[i], wk);
        if (rc) {
            if (r)
                freeReplyObject(r);
            return rc;
        }
        if (r->type == REDIS_REPLY_STRING) {
            rc = take(ctx, r, keys[i], wk, out);
            freeReplyObject(r);
            return rc;
        }
        freeReplyObject(r);
    }
    if (n == 0)
        return 0;
    redisReply *r;
    /* Block at most 1 s (< timeout_s): a quieting worker notices soon. */
    int rc = H->redisf(ctx, &r, "BRPOPLPUSH %s %s %d", keys[0], wk, timeout_s < 1 ? 0 : 1);
    if (rc) {
        if (r)
            freeReplyObject(r);
        return rc;
    }
    rc = r->type == REDIS_REPLY_STRING ? take(ctx, r, keys[0], wk, out) : 0;
    freeReplyObject(r);
    return rc;
}

static int
ack(dray_ctx *ctx, const dray_unit *u, void *ud)
{
    (void)ud;
    redisReply *r;
    int rc = H->redisf(ctx, &r, "LREM %s 1 %b", (const char *)u->token, u->payload, u->len);
    if (r)
        freeReplyObject(r);
    H->free(u->token);
    if (!rc)
        count(ctx, "acked", 1);
    return rc;
}

static int
put_back(dray_ctx *ctx, const dray_unit *u)
{
    char qk[256];
    snprintf(qk, sizeof qk, "%squeue:%s", H->ns(ctx), u->queue);
    const char *argv[3] = {u->token, qk, u->payload};
    size_t lens[3] = {strlen(u->token), strlen(qk), u->len};
    redisReply *r;
    int rc = H->eval(ctx, back_script, &r, 2, 3, argv, lens);
    if (r)
        freeReplyObject(r);
    H->free(u->token);
    return rc;
}

static int
requeue(dray_ctx *ctx, const dray_unit *u, void *ud)
{
    (void)ud;
    int rc = put_back(ctx, u);
    if (!rc)
        count(ctx, "requeued", 1);
    return rc;
}

static int
bulk_requeue(dray_ctx *ctx, const dray_unit *const *units, size_t n, void *ud)
{
    (void)ud;
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = put_back(ctx, units[i]);
        if (rc && !first)
            first = rc;
    }
    if (!first)
        count(ctx, "bulk", (long)n);
    return first;
}

/* Jobs in the working lists of other processes go back to their queues
 * (the payload's "queue" field). A real provider checks liveness first. */
static int
recover(dray_ctx *ctx, void *ud)
{
    (void)ud;
    char mine[256], pattern[128];
    working_key(ctx, mine, sizeof mine);
    snprintf(pattern, sizeof pattern, "%sfetchy:working:*", H->ns(ctx));
    redisReply *keys;
    int rc = H->redisf(ctx, &keys, "KEYS %s", pattern);
    if (rc) {
        if (keys)
            freeReplyObject(keys);
        return rc;
    }
    long moved = 0;
    for (size_t i = 0; i < keys->elements && !rc; i++) {
        const char *k = keys->element[i]->str;
        if (!strcmp(k, mine))
            continue;
        for (;;) {
            redisReply *r;
            if ((rc = H->redisf(ctx, &r, "LPOP %s", k)) || r->type != REDIS_REPLY_STRING) {
                if (r)
                    freeReplyObject(r);
                break;
            }
            json_t *job = json_loadb(r->str, r->len, 0, NULL);
            const char *q = json_string_value(json_object_get(job, "queue"));
            redisReply *p;
            rc = H->redisf(ctx, &p, "RPUSH %squeue:%s %b", H->ns(ctx), q ? q : "default", r->str,
                           r->len);
            if (p)
                freeReplyObject(p);
            json_decref(job);
            freeReplyObject(r);
            moved += !rc;
        }
    }
    freeReplyObject(keys);
    count(ctx, "recovered", moved);
    return rc;
}

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    int rc = dray_module_handshake(host, rec, FETCHY_NAME, "1.0.0", "free", NULL);
    if (rc)
        return rc;
    H = host;
    M = mod;
    int bulk;
    if ((rc = H->config_bool(M, "bulk", 1, &bulk)))
        return rc;
    if ((rc = H->script(M, back_lua, &back_script)))
        return rc;
    rc = H->set_fetcher(
        M, DRAY_FETCHER(.name = "working-list", .fetch = fetch, .ack = ack, .requeue = requeue,
                        .bulk_requeue = bulk ? bulk_requeue : NULL, .recover = recover));
    if (rc)
        return H->set_error(M, "cannot provide fetch: %s", H->strerror(rc));
    H->set_status(M, "reliable fetch through fetchy:working:<identity>%s",
                  bulk ? "" : " (no bulk)");
    return 0;
}
