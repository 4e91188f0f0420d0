/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Periodic jobs: 5-field cron loops with a time zone each, enqueued by the
 * leader only. Each tick is enqueued exactly once, whoever leads and
 * however often a tick is looked at: one script sets the tick's marker
 * (SET NX) and pushes the job, or does nothing. The loop's hash records
 * the last minute examined ("checked") and the last tick enqueued
 * ("last"), so a new leader backfills the ticks missed while nobody led,
 * back to `backfill` seconds (default 1 h; 0 turns backfill off) - the
 * top complaint about Sidekiq Enterprise's periodic jobs (#6180, #6758).
 *
 * The job is written by the script itself, as the client would write it
 * (SADD queues, LPUSH queue:Q), so the push hooks of other modules do not
 * run on periodic jobs; this module's own encryption does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ent.h"

#define H ent__H

#define DEFAULT_BACKFILL 3600.0
#define LOOP_TTL (7L * 86400)     /* a loop's state outlives its last leader tick by a week */
#define MARKER_SLACK 86400        /* markers outlive the backfill window by a day */
#define SKIP_COUNT_S (7L * 86400) /* skipped ticks are counted over the last week at most */

/* KEYS[1] tick marker, KEYS[2] loop hash, KEYS[3] queue list, KEYS[4]
 * queues set; ARGV[1] payload, ARGV[2] tick, ARGV[3] queue, ARGV[4]
 * marker TTL s, ARGV[5] jid. 1: enqueued; 0: this tick was enqueued before. */
static const char enqueue_lua[] =
    "if not redis.call('SET', KEYS[1], ARGV[5], 'NX', 'EX', ARGV[4]) then return 0 end\n"
    "redis.call('SADD', KEYS[4], ARGV[3])\n"
    "redis.call('LPUSH', KEYS[3], ARGV[1])\n"
    "local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0') or 0\n"
    "if tonumber(ARGV[2]) > last then\n"
    "  redis.call('HSET', KEYS[2], 'last', ARGV[2], 'last_jid', ARGV[5])\n"
    "end\n"
    "return 1\n";

/* KEYS[1] loop hash, KEYS[2] loops index; ARGV: checked, next, cron,
 * class, queue, tz, ttl, name. "checked" only moves forward. */
static const char mark_lua[] =
    "local c = tonumber(redis.call('HGET', KEYS[1], 'checked') or '0') or 0\n"
    "if tonumber(ARGV[1]) > c then redis.call('HSET', KEYS[1], 'checked', ARGV[1]) end\n"
    "redis.call('HSET', KEYS[1], 'next', ARGV[2], 'cron', ARGV[3], 'class', ARGV[4],\n"
    "           'queue', ARGV[5], 'tz', ARGV[6])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[7])\n"
    "redis.call('ZADD', KEYS[2], ARGV[1], ARGV[8])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[7])\n"
    "return 1\n";

/* ---- settings ------------------------------------------------------------------- */

static int
loop_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ENT_LOOP_NAME_MAX)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_-.:", *p)))
            return 0;
    return 1;
}

static int
queue_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    return 1;
}

static void
loop_free(ent_loop *l)
{
    free(l->name);
    free(l->spec);
    ent__tz_free(l->tz);
    free(l->klass);
    free(l->queue);
    json_decref(l->args);
    json_decref(l->retry);
}

typedef struct parse_ctx {
    ent_state *E;
    const char *dflt_tz;
    char *err;
    size_t errlen;
} parse_ctx;

#define PERR(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, sizeof why, __VA_ARGS__);                                                    \
        goto fail;                                                                                 \
    } while (0)

#define WHY_BYTES 400  /* a periodic line's reason, quoted with the line */
#define CRON_BYTES 256 /* the cron expression of a line */
/* Writes a reason into why (WHY_BYTES) and is -1: a step's refusal. */
#define WHY(...) (snprintf(why, WHY_BYTES, __VA_ARGS__), -1)

/* Splits a periodic line into its cron expression (into cron, CRON_BYTES)
 * and the words after it (*w: ent__words's block, the caller frees it; *n
 * of them, the class at *first). 0, or -1 with the reason in why. */
static int
split_line(const char *line, char *cron, char ***w, int *n, int *first, char *why)
{
    const char *bar = strchr(line, '|');
    if (bar) {
        size_t cl = (size_t)(bar - line);
        if (cl >= CRON_BYTES)
            return WHY("cron expression too long");
        memcpy(cron, line, cl);
        cron[cl] = '\0';
        *n = ent__words(bar + 1, "args", w);
        *first = 0;
    } else {
        *n = ent__words(line, "args", w);
        if (*n < 0)
            return WHY("out of memory");
        *first = *n > 0 && (*w)[0][0] == '@' ? 1 : 5;
        if (*n <= *first)
            return WHY("want CRON CLASS [name=N] [queue=Q] [tz=ZONE] [retry=N] [encrypt=yes] "
                       "[args=JSON], e.g. '*/5 * * * * Cleanup queue=low' or '@hourly | Report'");
        for (int i = 0; i < *first; i++) {
            size_t cl = strlen(cron);
            snprintf(cron + cl, CRON_BYTES - cl, "%s%s", i ? " " : "", (*w)[i]);
        }
        if (!ent__class_ok((*w)[*first]) &&
            strspn((*w)[*first], "0123456789*/,-") == strlen((*w)[*first]))
            return WHY(
                "cron '%s %s' has 6 fields, but seconds are not supported: use 5 fields (minute "
                "hour day-of-month month day-of-week)",
                cron, (*w)[*first]);
    }
    return 0;
}

/* One name=value option word (cut at its '=') into *L; tz= sets *tzname
 * (borrowed from word). 0, or -1 with the reason in why. */
static int
loop_option(ent_loop *L, char *word, const char **tzname, char *why)
{
    char *eq = strchr(word, '=');
    if (!eq || eq == word)
        return WHY("option '%s' is not name=value", word);
    *eq = '\0';
    const char *o = word, *v = eq + 1;
    if (!strcmp(o, "name")) {
        if (!loop_name_ok(v))
            return WHY("loop name '%s' must be 1-%d letters, digits, '_', '-', '.' or ':'", v,
                       ENT_LOOP_NAME_MAX);
        free(L->name);
        if (!(L->name = strdup(v)))
            return WHY("out of memory");
    } else if (!strcmp(o, "queue")) {
        if (!queue_ok(v))
            return WHY("queue '%s' is not a queue name", v);
        free(L->queue);
        if (!(L->queue = strdup(v)))
            return WHY("out of memory");
    } else if (!strcmp(o, "tz")) {
        *tzname = v;
    } else if (!strcmp(o, "retry")) {
        long r;
        json_decref(L->retry);
        if (!strcmp(v, "true"))
            L->retry = json_true();
        else if (!strcmp(v, "false"))
            L->retry = json_false();
        else if (!ent__long(v, 0, 1000000, &r))
            L->retry = json_integer(r);
        else {
            L->retry = NULL;
            return WHY("retry '%s' must be true, false or a whole number", v);
        }
    } else if (!strcmp(o, "encrypt")) {
        if (!strcmp(v, "yes") || !strcmp(v, "true"))
            L->encrypt = 1;
        else if (strcmp(v, "no") && strcmp(v, "false"))
            return WHY("encrypt '%s' must be yes or no", v);
    } else if (!strcmp(o, "args")) {
        json_error_t je;
        json_decref(L->args);
        L->args = json_loads(v, 0, &je);
        if (!json_is_array(L->args))
            return WHY("args '%s' is not a JSON array%s%s", v, L->args ? "" : ": ",
                       L->args ? "" : je.text);
    } else {
        return WHY("unknown option '%s' (name, queue, tz, retry, encrypt, args)", o);
    }
    return 0;
}

/* A loop name stable across restarts and processes, from what the line
 * says (spec, class, queue, zone, args), into L->name. 0 or -1 (memory). */
static int
loop_default_name(ent_loop *L)
{
    /* Stable across restarts and processes: from what the line says. */
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[2 * sizeof h + 1], name[ENT_LOOP_NAME_MAX + 1];
    char *a = json_dumps(L->args, JSON_COMPACT);
    char basis[1024];
    snprintf(basis, sizeof basis, "%s|%s|%s|%s|%s", L->spec, L->klass, L->queue,
             ent__tz_name(L->tz), a ? a : "");
    free(a);
    crypto_hash_sha256(h, (const unsigned char *)basis, strlen(basis));
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(name, sizeof name, "%.80s-%.8s", L->klass, hex);
    for (char *p = name; *p; p++)
        if (*p == ':')
            *p = '.';
    return (L->name = strdup(name)) ? 0 : -1;
}

static int
parse_loop(const char *key, const char *line, void *ud)
{
    (void)key;
    parse_ctx *pc = ud;
    ent_state *E = pc->E;
    char why[WHY_BYTES] = "", cron[CRON_BYTES] = "", **w = NULL;
    const char *tzname = pc->dflt_tz;
    ent_loop L;
    memset(&L, 0, sizeof L);
    int n = 0, first = 0; /* words of the class-and-options part; index of the class */
    if (split_line(line, cron, &w, &n, &first, why))
        goto fail;
    if (n < 0)
        PERR("out of memory");
    if (n <= first)
        PERR("no job class after the cron expression");
    char cerr[ENT_CRON_ERR_BYTES];
    if (ent__cron_parse(cron, &L.cron, cerr, sizeof cerr))
        PERR("%s", cerr);
    if (!ent__class_ok(w[first]))
        PERR("'%s' is not a job class name", w[first]);
    if (!(L.klass = strdup(w[first])) || !(L.spec = strdup(cron)))
        PERR("out of memory");
    L.retry = json_true();
    for (int i = first + 1; i < n; i++)
        if (loop_option(&L, w[i], &tzname, why))
            goto fail;
    char tzerr[256];
    if (ent__tz_load(tzname, &L.tz, tzerr, sizeof tzerr))
        PERR("tz: %s", tzerr);
    {
        int64_t from = (int64_t)H->now();
        if (ent__cron_next(&L.cron, L.tz, from, from + ENT_CRON_SEARCH_S) < 0)
            PERR("cron '%s' never fires (no matching date in the next 5 years)", L.spec);
    }
    if (!L.args && !(L.args = json_array()))
        PERR("out of memory");
    if (!L.queue && !(L.queue = strdup("default")))
        PERR("out of memory");
    if (L.encrypt || ent__crypto_wanted(E, L.klass)) {
        L.encrypt = 1;
        if (!E->nkeys)
            PERR("encrypted periodic job, but %s.encrypt_keys (the key file) is not set", ENT_NAME);
        if (json_array_size(L.args) == 0)
            PERR("encrypted periodic job needs args: the last one is the secret bag");
    }
    if (!L.name && loop_default_name(&L))
        PERR("out of memory");
    for (size_t i = 0; i < E->nloops; i++)
        if (!strcmp(E->loops[i].name, L.name))
            PERR("loop name '%s' is used twice (give each loop its own name=)", L.name);
    ent_loop *nl = realloc(E->loops, (E->nloops + 1) * sizeof *nl);
    if (!nl)
        PERR("out of memory");
    E->loops = nl;
    E->loops[E->nloops++] = L;
    free(w);
    return 0;
fail:
    snprintf(pc->err, pc->errlen, "setting %s.periodic '%s': %s", ENT_NAME, line, why);
    loop_free(&L);
    free(w);
    return DRAY_ECONFIG;
}

int
ent__periodic_configure(ent_state *E, char *err, size_t errlen)
{
    const char *tz, *bf;
    int rc;
    if ((rc = H->config_str(ent__M, "tz", "UTC", &tz)) ||
        (rc = H->config_str(ent__M, "backfill", NULL, &bf)))
        return rc;
    E->backfill = DEFAULT_BACKFILL;
    if (bf && (ent__duration(bf, &E->backfill) || E->backfill > 30.0 * 86400)) {
        return ent__err(err, errlen, DRAY_ECONFIG,
                        "setting %s.backfill '%s': not a duration up to 30 days (0: off)", ENT_NAME,
                        bf);
    }
    ent_tz *probe;
    char tzerr[256];
    if (ent__tz_load(tz, &probe, tzerr, sizeof tzerr)) {
        return ent__err(err, errlen, DRAY_ECONFIG, "setting %s.tz: %s", ENT_NAME, tzerr);
    }
    ent__tz_free(probe);
    parse_ctx pc = {E, tz, err, errlen};
    return H->config_each(ent__M, "periodic", parse_loop, &pc);
}

void
ent__periodic_free(ent_state *E)
{
    for (size_t i = 0; i < E->nloops; i++)
        loop_free(&E->loops[i]);
    free(E->loops);
    E->loops = NULL;
    E->nloops = 0;
}

/* ---- the leader's work ------------------------------------------------------------ */

/* Enqueue tick t of loop L: 1 enqueued, 0 already was, < 0 error. */
static int
enqueue(const ent_state *E, dray_ctx *ctx, const ent_loop *L, int64_t t, char *jid)
{
    char marker[ENT_KEY_BYTES], hk[ENT_KEY_BYTES], qk[ENT_KEY_BYTES], sk[ENT_KEY_BYTES], tick[32],
        ttl[32];
    snprintf(tick, sizeof tick, "%lld", (long long)t);
    char mname[ENT_LOOP_NAME_MAX + 40];
    snprintf(mname, sizeof mname, "%s:t:%s", L->name, tick);
    if (ent__key(marker, sizeof marker, ctx, "ent:periodic:", mname) ||
        ent__key(hk, sizeof hk, ctx, "ent:periodic:", L->name) ||
        ent__key(qk, sizeof qk, ctx, "queue:", L->queue) ||
        ent__key(sk, sizeof sk, ctx, "queues", NULL))
        return DRAY_EINVAL;
    snprintf(ttl, sizeof ttl, "%lld", (long long)(E->backfill + MARKER_SLACK));
    ent__rand_hex(jid, 12);
    json_t *args = json_deep_copy(L->args);
    double now = H->now();
    json_t *job =
        json_pack("{s:s, s:o, s:s, s:O, s:s, s:f, s:f, s:s, s:I}", "class", L->klass, "args", args,
                  "queue", L->queue, "retry", L->retry, "jid", jid, "created_at", now,
                  "enqueued_at", now, "periodic", L->name, "periodic_at", (json_int_t)t);
    if (!job)
        return DRAY_ENOMEM;
    if (L->encrypt) {
        size_t n = json_array_size(args);
        json_t *sealed;
        char err[256];
        if (ent__seal(E, L->klass, json_array_get(args, n - 1), &sealed, err, sizeof err)) {
            H->log(ent__M, DRAY_LOG_ERROR, "loop %s: cannot encrypt: %s", L->name, err);
            json_decref(job);
            return DRAY_ENOMEM;
        }
        json_array_set_new(args, n - 1, sealed);
        json_object_set_new(job, "encrypt", json_true());
    }
    char *payload = json_dumps(job, JSON_COMPACT);
    json_decref(job);
    if (!payload)
        return DRAY_ENOMEM;
    const char *argv[9] = {marker, hk, qk, sk, payload, tick, L->queue, ttl, jid};
    redisReply *r;
    int rc = H->eval(ctx, E->s_periodic_enqueue, &r, 4, 9, argv, NULL);
    free(payload);
    int done = !rc && r->type == REDIS_REPLY_INTEGER ? (int)r->integer : 0;
    if (r)
        freeReplyObject(r);
    return rc ? rc : done;
}

static void
tick_loop(const ent_state *E, dray_ctx *ctx, const ent_loop *L, double now)
{
    int64_t cur = (int64_t)floor(now / 60) * 60;
    char hk[ENT_KEY_BYTES], ik[ENT_KEY_BYTES];
    if (ent__key(hk, sizeof hk, ctx, "ent:periodic:", L->name) ||
        ent__key(ik, sizeof ik, ctx, "ent:periodic:loops", NULL))
        return;
    redisReply *r;
    const char *hget[3] = {"HGET", hk, "checked"};
    if (H->redis(ctx, &r, 3, hget, NULL)) {
        if (r)
            freeReplyObject(r);
        H->log(ent__M, DRAY_LOG_WARN, "loop %s: cannot read its state: %s", L->name,
               H->redis_errstr(ctx));
        return;
    }
    int64_t from = r->type == REDIS_REPLY_STRING ? atoll(r->str) + 60 : cur;
    freeReplyObject(r);
    int64_t lo = from;
    if (E->backfill > 0) {
        int64_t oldest = (int64_t)ceil((now - E->backfill) / 60) * 60;
        if (lo < oldest)
            lo = oldest;
    } else if (lo < cur) {
        lo = cur;
    }
    if (lo > from) {
        /* Counted for the log only, and only so far: the state may be very old. */
        long skipped = 0;
        int64_t scan_from = lo - from > SKIP_COUNT_S ? lo - SKIP_COUNT_S : from;
        for (int64_t t = ent__cron_next(&L->cron, L->tz, scan_from, lo); t >= 0;
             t = ent__cron_next(&L->cron, L->tz, t + 60, lo))
            skipped++;
        if (skipped || scan_from > from)
            H->log(ent__M, DRAY_LOG_WARN,
                   "loop %s: %s%ld tick%s missed while no process led %s older than the backfill "
                   "window (%.0fs) and %s skipped",
                   L->name, scan_from > from ? "more than " : "", skipped, skipped == 1 ? "" : "s",
                   skipped == 1 && scan_from == from ? "is" : "are", E->backfill,
                   skipped == 1 && scan_from == from ? "is" : "are");
    }
    int64_t checked = cur;
    for (int64_t t = ent__cron_next(&L->cron, L->tz, lo, cur + 1); t >= 0;
         t = ent__cron_next(&L->cron, L->tz, t + 60, cur + 1)) {
        char jid[DRAY_JID_BYTES];
        int rc = enqueue(E, ctx, L, t, jid);
        if (rc < 0) {
            H->log(ent__M, DRAY_LOG_ERROR, "loop %s: cannot enqueue tick %lld: %s", L->name,
                   (long long)t, H->redis_errstr(ctx));
            checked = t - 60; /* the next tick starts again here */
            break;
        }
        if (rc == 1)
            H->log(ent__M, t < cur ? DRAY_LOG_INFO : DRAY_LOG_DEBUG, "loop %s: %s %s %s for %lld",
                   L->name, t < cur ? "backfilled" : "enqueued", L->klass, jid, (long long)t);
    }
    int64_t next = ent__cron_next(&L->cron, L->tz, cur + 60, cur + ENT_CRON_SEARCH_S);
    char cb[32], nb[32], ttl[32];
    snprintf(cb, sizeof cb, "%lld", (long long)checked);
    snprintf(nb, sizeof nb, "%lld", (long long)next);
    snprintf(ttl, sizeof ttl, "%ld", LOOP_TTL);
    const char *argv[10] = {hk,  ik,     cb, nb, L->spec, L->klass, L->queue, ent__tz_name(L->tz),
                            ttl, L->name};
    if (H->eval(ctx, E->s_periodic_mark, NULL, 2, 10, argv, NULL))
        H->log(ent__M, DRAY_LOG_WARN, "loop %s: cannot record its state: %s", L->name,
               H->redis_errstr(ctx));
}

void
ent__periodic_tick(ent_state *E, dray_ctx *ctx)
{
    if (!E->nloops)
        return;
    double now;
    if (ent__clock(E, ctx, &now)) {
        H->log(ent__M, DRAY_LOG_WARN, "periodic jobs: cannot read the clock: %s",
               H->redis_errstr(ctx));
        return;
    }
    for (size_t i = 0; i < E->nloops; i++)
        tick_loop(E, ctx, &E->loops[i], now);
}

int
ent__periodic_scripts(ent_state *E)
{
    int rc = H->script(ent__M, enqueue_lua, &E->s_periodic_enqueue);
    if (!rc)
        rc = H->script(ent__M, mark_lua, &E->s_periodic_mark);
    return rc;
}
