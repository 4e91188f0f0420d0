/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * The batch helper for applications (pro/include/dray/pro_batch.h): create,
 * push into, commit, reopen and read batches. It shares its scripts with
 * the module (batch_lua.h) and runs them with EVAL on the caller's hiredis
 * connection; pushes go through the caller's dray_client.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "batch_lua.h"
#include "dray/pro_batch.h"

#define NS_MAX 128

struct dray_pro {
    redisContext *redis; /* borrowed */
    char ns[NS_MAX + 2]; /* "" or "name:" */
    char errstr[DRAY_ERRSTR_BYTES];
};

static int perr(dray_pro *p, int code, const char *fmt, ...) DRAY_PRINTF(3, 4);

static int
perr(dray_pro *p, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errstr, sizeof p->errstr, fmt, ap);
    va_end(ap);
    return code;
}

int
dray_pro_new(redisContext *redis, const char *ns, dray_pro **out)
{
    *out = NULL;
    if (!redis)
        return DRAY_EINVAL;
    size_t n = ns ? strlen(ns) : 0;
    if (n > NS_MAX)
        return DRAY_EINVAL;
    dray_pro *p = calloc(1, sizeof *p);
    if (!p)
        return DRAY_ENOMEM;
    p->redis = redis;
    if (n)
        snprintf(p->ns, sizeof p->ns, "%s%s", ns, ns[n - 1] == ':' ? "" : ":");
    *out = p;
    return 0;
}

void
dray_pro_free(dray_pro *p)
{
    free(p);
}

const char *
dray_pro_errstr(const dray_pro *p)
{
    return p ? p->errstr : "no handle";
}

/* EVAL lua with 0 keys and NUL-terminated args (ARGV[1] = ns). The reply's
 * string (for status-style results) is copied into st. */
static int
eval(dray_pro *p, const char *lua, int nargs, const char **args, char *st, size_t stlen,
     redisReply **keep)
{
    const char *argv[24];
    size_t lens[24];
    if (nargs + 4 > 24)
        return perr(p, DRAY_EINVAL, "too many script arguments");
    argv[0] = "EVAL";
    argv[1] = lua;
    argv[2] = "0";
    argv[3] = p->ns;
    for (int i = 0; i < nargs; i++)
        argv[4 + i] = args[i];
    for (int i = 0; i < nargs + 4; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(p->redis, nargs + 4, argv, lens);
    if (!r)
        return perr(p, DRAY_ECONN, "redis: %s",
                    p->redis->errstr[0] ? p->redis->errstr : "no reply");
    if (r->type == REDIS_REPLY_ERROR) {
        perr(p, DRAY_EREDIS, "redis: %s", r->str);
        freeReplyObject(r);
        return DRAY_EREDIS;
    }
    if (st && stlen)
        snprintf(st, stlen, "%s",
                 r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ? r->str : "");
    if (keep)
        *keep = r;
    else
        freeReplyObject(r);
    return 0;
}

static void
fmt_now(char *buf, size_t n)
{
    snprintf(buf, n, "%.6f", dray_now());
}

static void
seed_hex(char out[25])
{
    unsigned char raw[12];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, 25, raw, sizeof raw);
}

/* The callback job template for one event, or "" (no class). *out is
 * malloc'ed. */
static int
template_for(dray_pro *p, const char *event, const dray_pro_callback *cb, const char *queue,
             const char *bid, char **out)
{
    *out = NULL;
    if (!cb->klass || !*cb->klass) {
        if (cb->options)
            return perr(p, DRAY_EINVAL, "the %s callback has options but no job class", event);
        *out = strdup("");
        return *out ? 0 : perr(p, DRAY_ENOMEM, "out of memory");
    }
    if (cb->options && !json_is_object(cb->options))
        return perr(p, DRAY_EINVAL, "options of the %s callback (%s) must be a JSON object", event,
                    cb->klass);
    json_t *opts = cb->options ? json_incref(cb->options) : json_object();
    json_t *t =
        json_pack("{s:s, s:[s, s, o], s:s, s:b, s:s, s:s}", "class", cb->klass, "args", bid, event,
                  opts, "queue", queue, "retry", 1, "cb_bid", bid, "cb_event", event);
    *out = t ? json_dumps(t, JSON_COMPACT) : NULL;
    json_decref(t);
    return *out ? 0
                : perr(p, DRAY_EINVAL, "the %s callback class or options are not valid UTF-8",
                       event);
}

int
dray_pro_batch_new(dray_pro *p, const dray_pro_batch_opts *o, char bid[DRAY_PRO_BID_BYTES])
{
    static const dray_pro_batch_opts none;
    if (!o)
        o = &none;
    bid[0] = '\0';
    p->errstr[0] = '\0';
    long linger = o->linger_s ? o->linger_s : DRAY_PRO_LINGER_DEFAULT;
    long ttl = o->ttl_s ? o->ttl_s : DRAY_PRO_TTL_DEFAULT;
    if (linger < DRAY_PRO_LINGER_MIN)
        return perr(p, DRAY_EINVAL, "linger must be at least %ld s (nested callbacks need it)",
                    DRAY_PRO_LINGER_MIN);
    if (ttl < linger)
        return perr(p, DRAY_EINVAL, "ttl (%ld s) must be at least the linger (%ld s)", ttl, linger);
    const char *parent = o->parent_bid;
    const char *creator = "";
    if (o->parent_job) {
        const char *pb = json_string_value(dray_job_get(o->parent_job, "bid"));
        if (!pb)
            return perr(p, DRAY_EINVAL, "parent_job %s is not in a batch",
                        dray_job_jid(o->parent_job));
        if (parent && strcmp(parent, pb))
            return perr(p, DRAY_EINVAL, "parent_bid %s is not the batch of parent_job (%s)", parent,
                        pb);
        parent = pb;
        creator = dray_job_jid(o->parent_job);
    }
    unsigned char raw[12];
    randombytes_buf(raw, sizeof raw);
    char id[DRAY_PRO_BID_BYTES];
    sodium_bin2base64(id, sizeof id, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    const char *queue = o->callback_queue && *o->callback_queue ? o->callback_queue : "default";
    char *cb[3] = {NULL, NULL, NULL};
    static const char *const events[3] = {"complete", "success", "death"};
    const dray_pro_callback *cbs[3] = {&o->on_complete, &o->on_success, &o->on_death};
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++)
        rc = template_for(p, events[i], cbs[i], queue, id, &cb[i]);
    if (!rc) {
        char now[32], sttl[24], slinger[24];
        fmt_now(now, sizeof now);
        snprintf(sttl, sizeof sttl, "%ld", ttl);
        snprintf(slinger, sizeof slinger, "%ld", linger);
        const char *args[11] = {id,
                                now,
                                sttl,
                                slinger,
                                o->description ? o->description : "",
                                o->callback_queue ? o->callback_queue : "",
                                cb[0],
                                cb[1],
                                cb[2],
                                parent ? parent : "",
                                creator};
        char st[32];
        rc = eval(p, pro_batch_create_lua, 11, args, st, sizeof st, NULL);
        if (!rc && !strcmp(st, "noparent"))
            rc = perr(p, DRAY_ENOTFOUND,
                      "parent batch %s does not exist (never created, or expired)", parent);
        else if (!rc && !strcmp(st, "parentdone"))
            rc = perr(p, DRAY_ESTATE, "parent batch %s already succeeded", parent);
        else if (!rc && !strcmp(st, "exists"))
            rc = perr(p, DRAY_EEXIST, "batch id %s collided (retry)", id);
        else if (!rc && strcmp(st, "ok"))
            rc = perr(p, DRAY_EREDIS, "unexpected reply from the create script: %s", st);
    }
    for (int i = 0; i < 3; i++)
        free(cb[i]);
    if (!rc)
        memcpy(bid, id, DRAY_PRO_BID_BYTES);
    return rc;
}

/* Take jids[0..n) (DRAY_JID_BYTES apart; empty ones skipped) out of bid
 * again after their push failed. Returns 0 or the Redis error (text set). */
static int
unregister(dray_pro *p, const char *bid, const char *jids, size_t n)
{
    enum { CHUNK = 500 };
    const char *argv[CHUNK + 5];
    size_t lens[CHUNK + 5];
    size_t i = 0;
    while (i < n) {
        int argc = 0;
        argv[argc++] = "EVAL";
        argv[argc++] = pro_batch_unregister_lua;
        argv[argc++] = "0";
        argv[argc++] = p->ns;
        argv[argc++] = bid;
        for (; i < n && argc < CHUNK + 5; i++)
            if (jids[i * DRAY_JID_BYTES])
                argv[argc++] = jids + i * DRAY_JID_BYTES;
        if (argc == 5)
            continue;
        for (int k = 0; k < argc; k++)
            lens[k] = strlen(argv[k]);
        redisReply *r = redisCommandArgv(p->redis, argc, argv, lens);
        if (!r)
            return perr(p, DRAY_ECONN, "redis: %s", p->redis->errstr);
        int bad = r->type == REDIS_REPLY_ERROR;
        if (bad)
            perr(p, DRAY_EREDIS, "redis: %s", r->str);
        freeReplyObject(r);
        if (bad)
            return DRAY_EREDIS;
    }
    return 0;
}

int
dray_pro_batch_push(dray_pro *p, dray_client *c, const char *bid, const char *klass, json_t *args,
                    const dray_push_opts *opts, char *jid_out)
{
    p->errstr[0] = '\0';
    if (!bid || !*bid)
        return perr(p, DRAY_EINVAL, "no batch id");
    if (!klass || !*klass)
        return perr(p, DRAY_ECLASS, "job class is missing or empty");
    if (!json_is_array(args))
        return perr(p, DRAY_EARGS, "job args must be a json array");
    dray_job *job;
    int rc = dray_job_new(klass, json_incref(args), &job);
    if (rc)
        return perr(p, rc, "cannot build job of class %s: %s", klass, dray_strerror(rc));
    if (dray_job_set(job, "bid", json_string(bid))) {
        dray_job_free(job);
        return perr(p, DRAY_ENOMEM, "out of memory");
    }
    rc = dray_client_push_job(c, job, opts);
    if (rc) {
        perr(p, rc, "%s", dray_client_errstr(c));
        if (rc != DRAY_EDROPPED) {
            /* The hook may have counted it before the write failed. */
            char keep[DRAY_ERRSTR_BYTES];
            snprintf(keep, sizeof keep, "%s", p->errstr);
            if (unregister(p, bid, dray_job_jid(job), 1))
                perr(p, rc,
                     "%s; and cannot take job %s out of batch %s again (%s): the batch "
                     "will not succeed",
                     keep, dray_job_jid(job), bid, p->errstr);
            else
                perr(p, rc, "%s", keep);
        }
    } else if (jid_out) {
        memcpy(jid_out, dray_job_jid(job), DRAY_JID_BYTES);
    }
    dray_job_free(job);
    return rc;
}

/* Send the scripts that register jids[0..n) (DRAY_JID_BYTES apart) in bid,
 * 1000 per script, without reading the replies; *nsent counts them.
 * Returns 0 or DRAY_ENOMEM / DRAY_ECONN (text set). */
static int
register_send(dray_pro *p, const char *bid, const char *jids, size_t n, size_t *nsent)
{
    enum { CHUNK = 1000 };
    const char *argv[CHUNK + 5];
    size_t lens[CHUNK + 5];
    *nsent = 0;
    for (size_t i = 0; i < n;) {
        int argc = 0;
        argv[argc++] = "EVAL";
        argv[argc++] = pro_batch_register_many_lua;
        argv[argc++] = "0";
        argv[argc++] = p->ns;
        argv[argc++] = bid;
        for (; i < n && argc < CHUNK + 5; i++)
            argv[argc++] = jids + i * DRAY_JID_BYTES;
        for (int k = 0; k < argc; k++)
            lens[k] = k >= 5 ? DRAY_JID_BYTES - 1 : strlen(argv[k]);
        if (redisAppendCommandArgv(p->redis, argc, argv, lens) != REDIS_OK)
            return perr(p, DRAY_ENOMEM, "out of memory");
        (*nsent)++;
    }
    int done = 0;
    while (!done)
        if (redisBufferWrite(p->redis, &done) != REDIS_OK)
            return perr(p, DRAY_ECONN, "redis: %s", p->redis->errstr);
    return 0;
}

/* Read the replies of nsent registration scripts (all of them, whatever
 * they say). Returns 0, or the first refusal (DRAY_ENOTFOUND, DRAY_ESTATE,
 * Redis errors) with the text set. */
static int
register_read(dray_pro *p, const char *bid, size_t nsent)
{
    int rc = 0;
    for (size_t k = 0; k < nsent; k++) {
        redisReply *r = NULL;
        if (redisGetReply(p->redis, (void **)&r) != REDIS_OK || !r)
            return perr(p, DRAY_ECONN, "redis: %s", p->redis->errstr);
        const char *st =
            r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING ? r->str : NULL;
        if (rc) {
            /* already refused: read the other replies */
        } else if (r->type == REDIS_REPLY_ERROR) {
            rc = perr(p, DRAY_EREDIS, "redis: %s", r->str);
        } else if (!st) {
            rc = perr(p, DRAY_EREDIS, "cannot add jobs to batch %s: unexpected reply", bid);
        } else if (!strcmp(st, "nobatch")) {
            rc =
                perr(p, DRAY_ENOTFOUND, "batch %s does not exist (never created, or expired)", bid);
        } else if (!strcmp(st, "succeeded")) {
            rc = perr(p, DRAY_ESTATE, "batch %s already succeeded and takes no more jobs", bid);
        } else if (!strcmp(st, "closed")) {
            rc = perr(p, DRAY_ESTATE,
                      "batch %s is not open: push its jobs between dray_pro_batch_new and "
                      "dray_pro_batch_commit, or reopen it from one of its running jobs",
                      bid);
        }
        freeReplyObject(r);
    }
    return rc;
}

static int
jid_cmp(const void *a, const void *b)
{
    return memcmp(a, b, DRAY_JID_BYTES - 1);
}

/* Registers reg's n jids in batch bid and pushes args_list with po in
 * slices: the next slice's registration runs in Redis while this slice's
 * jobs are built and pushed; each slice is pushed only once its own
 * registration answered. jids gets the written jobs' jids (empty for a job
 * not written); *pushed counts them. 0 or the first error (in p->errstr). */
static int
push_slices(dray_pro *p, dray_client *c, const char *bid, const char *klass, json_t *args_list,
            const dray_push_opts *po, char *jids, const char *reg, size_t n, size_t *pushed)
{
    enum { SLICE = 10000 };
    size_t sent = 0;
    int rc = register_send(p, bid, reg, n < SLICE ? n : SLICE, &sent);
    if (!rc)
        rc = register_read(p, bid, sent);
    for (size_t at = 0; !rc && at < n; at += SLICE) {
        size_t len = n - at < SLICE ? n - at : SLICE, next = at + len;
        size_t nlen = n - next < SLICE ? n - next : SLICE, nsent = 0;
        int src = nlen ? register_send(p, bid, reg + next * DRAY_JID_BYTES, nlen, &nsent) : 0;
        json_t *slice = json_array();
        for (size_t k = 0; slice && k < len; k++)
            json_array_append(slice, json_array_get(args_list, at + k));
        size_t got = 0;
        rc = slice ? dray_client_push_bulk(c, klass, slice, po, jids + at * DRAY_JID_BYTES, &got)
                   : DRAY_ENOMEM;
        json_decref(slice);
        *pushed += got;
        if (rc) {
            perr(p, rc, "%s", rc == DRAY_ENOMEM ? "out of memory" : dray_client_errstr(c));
            for (size_t k = at + got; k < n; k++)
                jids[k * DRAY_JID_BYTES] = '\0'; /* a job not written keeps no jid */
        }
        if (nsent) {
            char keep[DRAY_ERRSTR_BYTES];
            snprintf(keep, sizeof keep, "%s", p->errstr);
            int rrc = register_read(p, bid, nsent);
            if (rc)
                perr(p, rc, "%s", keep);
            else
                rc = rrc;
        } else if (src && !rc) {
            rc = src;
        }
        if (rc)
            for (size_t k = next; k < n; k++)
                jids[k * DRAY_JID_BYTES] = '\0';
    }
    return rc;
}

/* Takes every jid of reg (n, registered in bid) that jids does not hold
 * (not written, or dropped by a hook) out of the batch again; reg is
 * reordered. Returns rc (the push's outcome) with its message kept, or the
 * unregistration's error when the push succeeded. */
static int
unregister_unwritten(dray_pro *p, const char *bid, const char *jids, char *reg, size_t n, int rc)
{
    char keep[DRAY_ERRSTR_BYTES];
    snprintf(keep, sizeof keep, "%s", p->errstr);
    char *written = malloc(n ? n * DRAY_JID_BYTES : 1);
    size_t nw = 0, ng = 0;
    int urc = written ? 0 : DRAY_ENOMEM;
    for (size_t k = 0; written && k < n; k++)
        if (jids[k * DRAY_JID_BYTES])
            memcpy(written + nw++ * DRAY_JID_BYTES, jids + k * DRAY_JID_BYTES, DRAY_JID_BYTES);
    if (written) {
        qsort(written, nw, DRAY_JID_BYTES, jid_cmp);
        for (size_t k = 0; k < n; k++)
            if (!bsearch(reg + k * DRAY_JID_BYTES, written, nw, DRAY_JID_BYTES, jid_cmp))
                memmove(reg + ng++ * DRAY_JID_BYTES, reg + k * DRAY_JID_BYTES, DRAY_JID_BYTES);
        urc = unregister(p, bid, reg, ng);
    }
    free(written);
    if (urc && rc)
        perr(p, rc,
             "%s; and cannot take the unwritten jobs out of batch %s again: the "
             "batch will not succeed",
             keep, bid);
    else if (urc)
        rc = perr(p, urc,
                  "cannot take %zu dropped jobs out of batch %s again: the batch will not "
                  "succeed",
                  ng, bid);
    else
        perr(p, rc, "%s", keep);
    return rc;
}

/*
 * The bulk push of a batch: the jids are derived from a random token
 * (pro__prereg_jid) and registered in the batch first, 1000 per script, all
 * in one round trip; then one dray_client_push_bulk whose jobs carry
 * "pro_prereg", so the module's push hooks give them those jids and skip
 * the per-job registration (which cost one round trip per job). Afterwards
 * every registered jid that was not written (a failed or partial push, a
 * job a hook dropped) is taken out again.
 */
int
dray_pro_batch_push_bulk(dray_pro *p, dray_client *c, const char *bid, const char *klass,
                         json_t *args_list, const dray_push_opts *opts, char *jids_out,
                         size_t *pushed)
{
    p->errstr[0] = '\0';
    *pushed = 0;
    if (!bid || !*bid)
        return perr(p, DRAY_EINVAL, "no batch id");
    if (!json_is_array(args_list))
        return perr(p, DRAY_EARGS, "args_list must be a JSON array of args arrays");
    size_t n = json_array_size(args_list);
    char *jids = jids_out ? jids_out : calloc(n ? n : 1, DRAY_JID_BYTES);
    char *reg = calloc(n ? n : 1, DRAY_JID_BYTES);
    char token[25];
    seed_hex(token);
    json_t *extra = opts && opts->extra ? json_deep_copy(opts->extra) : json_object();
    if (!jids || !reg || !extra || json_object_set_new(extra, "bid", json_string(bid)) ||
        json_object_set_new(extra, "pro_prereg", json_string(token))) {
        if (jids != jids_out)
            free(jids);
        free(reg);
        json_decref(extra);
        return perr(p, DRAY_ENOMEM, "out of memory");
    }
    if (jids_out)
        memset(jids_out, 0, n * DRAY_JID_BYTES);
    for (size_t i = 0; i < n; i++)
        pro__prereg_jid(token, i, reg + i * DRAY_JID_BYTES);
    dray_push_opts po = opts ? *opts : (dray_push_opts){0};
    po.extra = extra;
    int rc = push_slices(p, c, bid, klass, args_list, &po, jids, reg, n, pushed);
    json_decref(extra);
    /* Registered but not written: when every job was written with its
     * pre-registered jid, nothing. */
    int all = !rc && *pushed == n;
    for (size_t k = 0; all && k < n; k++)
        all = !memcmp(jids + k * DRAY_JID_BYTES, reg + k * DRAY_JID_BYTES, DRAY_JID_BYTES);
    if (!all)
        rc = unregister_unwritten(p, bid, jids, reg, n, rc);
    if (jids != jids_out)
        free(jids);
    free(reg);
    return rc;
}

/* Run the commit script for marker. */
static int
commit(dray_pro *p, const char *bid, const char *marker, int flags)
{
    char now[32], seed[25], st[32];
    fmt_now(now, sizeof now);
    seed_hex(seed);
    const char *args[5] = {bid, marker, now, seed, (flags & DRAY_PRO_COMMIT_EMPTY) ? "1" : "0"};
    int rc = eval(p, pro_batch_commit_lua, 5, args, st, sizeof st, NULL);
    if (rc)
        return rc;
    if (!strcmp(st, "nobatch"))
        return perr(p, DRAY_ENOTFOUND, "batch %s does not exist (never created, or expired)", bid);
    if (!strcmp(st, "notopen"))
        return perr(p, DRAY_ESTATE, "batch %s is not open (%s)", bid,
                    strcmp(marker, "new") ? "this job did not reopen it" : "already committed");
    if (!strcmp(st, "empty"))
        return perr(p, DRAY_EINVAL,
                    "batch %s has no jobs: is dray-pro.so loaded in the pushing process (its push "
                    "hook adds jobs to batches)? Commit with DRAY_PRO_COMMIT_EMPTY for an intended "
                    "empty batch",
                    bid);
    return strcmp(st, "ok")
               ? perr(p, DRAY_EREDIS, "unexpected reply from the commit script: %s", st)
               : 0;
}

int
dray_pro_batch_commit(dray_pro *p, const char *bid, int flags)
{
    p->errstr[0] = '\0';
    if (!bid || !*bid)
        return perr(p, DRAY_EINVAL, "no batch id");
    return commit(p, bid, "new", flags);
}

static int
job_batch(dray_pro *p, const dray_job *job, const char **bid)
{
    *bid = job ? json_string_value(dray_job_get(job, "bid")) : NULL;
    if (!*bid || !**bid)
        return perr(p, DRAY_EINVAL, "job %s is not in a batch (no \"bid\")",
                    job ? dray_job_jid(job) : "?");
    return 0;
}

int
dray_pro_batch_reopen(dray_pro *p, const dray_job *job)
{
    p->errstr[0] = '\0';
    const char *bid;
    int rc = job_batch(p, job, &bid);
    if (rc)
        return rc;
    const char *args[2] = {bid, dray_job_jid(job)};
    char st[32];
    if ((rc = eval(p, pro_batch_reopen_lua, 2, args, st, sizeof st, NULL)))
        return rc;
    if (!strcmp(st, "nobatch"))
        return perr(p, DRAY_ENOTFOUND, "batch %s does not exist (expired?)", bid);
    if (!strcmp(st, "succeeded"))
        return perr(p, DRAY_ESTATE, "batch %s already succeeded", bid);
    if (!strcmp(st, "notmember"))
        return perr(p, DRAY_ESTATE, "job %s is not a pending member of batch %s", dray_job_jid(job),
                    bid);
    return strcmp(st, "ok")
               ? perr(p, DRAY_EREDIS, "unexpected reply from the reopen script: %s", st)
               : 0;
}

int
dray_pro_batch_close(dray_pro *p, const dray_job *job)
{
    p->errstr[0] = '\0';
    const char *bid;
    int rc = job_batch(p, job, &bid);
    if (rc)
        return rc;
    char marker[DRAY_JID_BYTES + 8];
    snprintf(marker, sizeof marker, "job:%s", dray_job_jid(job));
    return commit(p, bid, marker, 0);
}

/* ---- status -------------------------------------------------------------------- */

static char *
dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char **
strings_of(const redisReply *r, size_t *n)
{
    *n = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY || !r->elements)
        return NULL;
    char **v = calloc(r->elements, sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            (v[*n] = dupn(r->element[i]->str, r->element[i]->len)))
            (*n)++;
    return v;
}

static long long
int_of(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
}

int
dray_pro_batch_status_get(dray_pro *p, const char *bid, dray_pro_batch_status **out)
{
    *out = NULL;
    p->errstr[0] = '\0';
    if (!bid || !*bid || strlen(bid) > 64)
        return perr(p, DRAY_EINVAL, "not a batch id");
    char k[9][256];
    static const char *const sfx[9] = {"",      ":pending",           ":failed", ":dead", ":open",
                                       ":kids", ":kids:unsuccessful", ":failed", ""};
    for (int i = 0; i < 9; i++)
        snprintf(k[i], sizeof k[i], "%spro:batch:%s%s", p->ns, bid, sfx[i]);
    /* One MULTI: a consistent snapshot. */
    redisAppendCommand(p->redis, "MULTI");
    redisAppendCommand(p->redis, "HGETALL %s", k[0]);
    redisAppendCommand(p->redis, "SCARD %s", k[1]);
    redisAppendCommand(p->redis, "SCARD %s", k[2]);
    redisAppendCommand(p->redis, "SCARD %s", k[3]);
    redisAppendCommand(p->redis, "SCARD %s", k[4]);
    redisAppendCommand(p->redis, "SMEMBERS %s", k[5]);
    redisAppendCommand(p->redis, "SCARD %s", k[6]);
    redisAppendCommand(p->redis, "SMEMBERS %s", k[7]);
    redisAppendCommand(p->redis, "TTL %s", k[8]);
    redisAppendCommand(p->redis, "EXEC");
    redisReply *exec = NULL;
    int rc = 0;
    for (int i = 0; i < 11; i++) {
        redisReply *r = NULL;
        if (redisGetReply(p->redis, (void **)&r) != REDIS_OK) {
            rc = perr(p, DRAY_ECONN, "redis: %s", p->redis->errstr);
            break;
        }
        if (i == 10)
            exec = r;
        else
            freeReplyObject(r);
    }
    if (rc)
        return rc;
    if (!exec || exec->type != REDIS_REPLY_ARRAY || exec->elements != 9) {
        rc = perr(p, DRAY_EREDIS, "redis: %s",
                  exec && exec->type == REDIS_REPLY_ERROR ? exec->str : "transaction failed");
        if (exec)
            freeReplyObject(exec);
        return rc;
    }
    redisReply **e = exec->element;
    if (e[0]->type != REDIS_REPLY_ARRAY || e[0]->elements == 0) {
        freeReplyObject(exec);
        return perr(p, DRAY_ENOTFOUND, "batch %s does not exist (never created, or expired)", bid);
    }
    dray_pro_batch_status *st = calloc(1, sizeof *st);
    if (!st) {
        freeReplyObject(exec);
        return perr(p, DRAY_ENOMEM, "out of memory");
    }
    snprintf(st->bid, sizeof st->bid, "%s", bid);
    const char *desc = "", *cq = "", *parent = "";
    for (size_t i = 0; i + 1 < e[0]->elements; i += 2) {
        const char *f = e[0]->element[i]->str, *v = e[0]->element[i + 1]->str;
        if (!strcmp(f, "description"))
            desc = v;
        else if (!strcmp(f, "callback_queue"))
            cq = v;
        else if (!strcmp(f, "parent"))
            parent = v;
        else if (!strcmp(f, "total"))
            st->total = strtoll(v, NULL, 10);
        else if (!strcmp(f, "kids_total"))
            st->children = strtoll(v, NULL, 10);
        else if (!strcmp(f, "created_at"))
            st->created_at = strtod(v, NULL);
        else if (!strcmp(f, "complete_at"))
            st->complete_at = strtod(v, NULL);
        else if (!strcmp(f, "success_at"))
            st->success_at = strtod(v, NULL);
        else if (!strcmp(f, "death_at"))
            st->death_at = strtod(v, NULL);
    }
    st->description = strdup(desc);
    st->callback_queue = strdup(cq);
    st->parent_bid = strdup(parent);
    st->pending = int_of(e[1]);
    st->failures = int_of(e[2]);
    st->dead = int_of(e[3]);
    st->open = int_of(e[4]) > 0;
    st->child_bids = strings_of(e[5], &st->nchild_bids);
    st->children_pending = int_of(e[6]);
    st->failed_jids = strings_of(e[7], &st->nfailed);
    st->expires_in = e[8]->type == REDIS_REPLY_INTEGER && e[8]->integer >= 0 ? e[8]->integer : -1;
    freeReplyObject(exec);
    if (!st->description || !st->callback_queue || !st->parent_bid) {
        dray_pro_batch_status_free(st);
        return perr(p, DRAY_ENOMEM, "out of memory");
    }
    *out = st;
    return 0;
}

void
dray_pro_batch_status_free(dray_pro_batch_status *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nfailed; i++)
        free(st->failed_jids[i]);
    for (size_t i = 0; i < st->nchild_bids; i++)
        free(st->child_bids[i]);
    free(st->failed_jids);
    free(st->child_bids);
    free(st->description);
    free(st->callback_queue);
    free(st->parent_bid);
    free(st);
}

static json_t *
time_or_null(double t)
{
    return t > 0 ? json_real(t) : json_null();
}

json_t *
dray_pro_batch_status_json(const dray_pro_batch_status *st)
{
    json_t *failed = json_array(), *kids = json_array();
    for (size_t i = 0; failed && i < st->nfailed; i++)
        json_array_append_new(failed, json_string(st->failed_jids[i]));
    for (size_t i = 0; kids && i < st->nchild_bids; i++)
        json_array_append_new(kids, json_string(st->child_bids[i]));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, s:o, s:o, "
        "s:o, s:I, s:o, s:o}",
        "bid", st->bid, "description", st->description, "callback_queue", st->callback_queue,
        "parent_bid", st->parent_bid[0] ? st->parent_bid : NULL, "total", (json_int_t)st->total,
        "pending", (json_int_t)st->pending, "failures", (json_int_t)st->failures, "dead",
        (json_int_t)st->dead, "children", (json_int_t)st->children, "children_pending",
        (json_int_t)st->children_pending, "open", st->open, "created_at",
        time_or_null(st->created_at), "complete_at", time_or_null(st->complete_at), "success_at",
        time_or_null(st->success_at), "death_at", time_or_null(st->death_at), "expires_in",
        (json_int_t)st->expires_in, "failed_jids", failed, "child_bids", kids);
    return o;
}
