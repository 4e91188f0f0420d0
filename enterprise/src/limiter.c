/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Rate limits: named limiters (concurrent, bucket, window, leaky) shared by
 * every process on the Redis, each check one Lua script on Redis's clock.
 * A limiter applies to job classes in before_perform (over the limit: the
 * job is deferred without spending a retry, up to `reschedule` times, then
 * fails normally) and to queues at fetch time (limit_fetch.c).
 *
 * The handler only has dray.h, so "within limit" is declarative: the
 * setting names the classes; the check runs before the handler and a
 * concurrent slot is held until the handler returns.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "ent.h"
#include "limit.h"

#define H ent__H

#define DEFAULT_LOCK_TIMEOUT 30.0 /* Sidekiq's: operations must finish inside it */
#define DEFAULT_RESCHEDULE 20     /* Sidekiq's default reschedule count */
#define DEFAULT_BACKOFF 300.0     /* Sidekiq's linear step: ~5 min per overrated */
#define DEFAULT_TTL (90L * 86400) /* limiter metadata lives 90 days after last use */
#define WAIT_STEP_MAX 0.25        /* a waiting worker re-checks at least this often */

/* The limiter logic, shared by the acquire and fetch scripts. */
const char ent__lim_lua[] =
    "local function lim_now()\n"
    "  local t = redis.call('TIME')\n"
    "  return tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
    "end\n"
    "local function lim(base, typ, limit, ival, token, lockto, ttl, name, index, take, now)\n"
    "  local ok, used, wait = false, 0, 0\n"
    "  if typ == 'c' then\n"
    "    local k = base .. ':c'\n"
    "    redis.call('ZREMRANGEBYSCORE', k, '-inf', string.format('%.6f', now))\n"
    "    used = redis.call('ZCARD', k)\n"
    "    if used < limit then\n"
    "      ok = true\n"
    "      if take then\n"
    "        redis.call('ZADD', k, string.format('%.6f', now + lockto), token)\n"
    "        redis.call('PEXPIRE', k, math.ceil((lockto + 60) * 1000))\n"
    "        used = used + 1\n"
    "      end\n"
    "    else\n"
    "      local f = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')\n"
    "      wait = f[2] and (tonumber(f[2]) - now) or lockto\n"
    "    end\n"
    "  elseif typ == 'b' then\n"
    "    local slot = math.floor(now / ival)\n"
    "    local k = base .. ':b:' .. string.format('%d', slot)\n"
    "    used = tonumber(redis.call('GET', k) or '0')\n"
    "    if used < limit then\n"
    "      ok = true\n"
    "      if take then\n"
    "        used = redis.call('INCR', k)\n"
    "        redis.call('PEXPIRE', k, math.ceil(ival * 1000) + 1000)\n"
    "      end\n"
    "    else\n"
    "      wait = (slot + 1) * ival - now\n"
    "    end\n"
    "  elseif typ == 'w' then\n"
    "    local k = base .. ':w'\n"
    "    redis.call('ZREMRANGEBYSCORE', k, '-inf', string.format('%.6f', now - ival))\n"
    "    used = redis.call('ZCARD', k)\n"
    "    if used < limit then\n"
    "      ok = true\n"
    "      if take then\n"
    "        redis.call('ZADD', k, string.format('%.6f', now), token)\n"
    "        redis.call('PEXPIRE', k, math.ceil(ival * 1000) + 1000)\n"
    "        used = used + 1\n"
    "      end\n"
    "    else\n"
    "      local f = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')\n"
    "      wait = tonumber(f[2]) + ival - now\n"
    "    end\n"
    "  else\n"
    "    local k = base .. ':l'\n"
    "    local v = redis.call('HMGET', k, 'level', 'ts')\n"
    "    local level = tonumber(v[1] or '0') or 0\n"
    "    local ts = tonumber(v[2] or '') or now\n"
    "    level = level - (now - ts) * limit / ival\n"
    "    if level < 0 then level = 0 end\n"
    "    used = level\n"
    "    if level + 1 <= limit + 1e-9 then\n"
    "      ok = true\n"
    "      if take then\n"
    "        used = level + 1\n"
    "        redis.call('HSET', k, 'level', string.format('%.9f', used), 'ts', "
    "string.format('%.6f', now))\n"
    "        redis.call('PEXPIRE', k, math.ceil(ival * 1000) + 1000)\n"
    "      end\n"
    "    else\n"
    "      wait = (level + 1 - limit) * ival / limit\n"
    "    end\n"
    "  end\n"
    "  if take then\n"
    "    if redis.call('EXISTS', base) == 0 then\n"
    "      redis.call('HSET', base, 'type', typ, 'limit', limit, 'interval', tostring(ival),\n"
    "                 'lock_timeout', tostring(lockto))\n"
    "    end\n"
    "    redis.call('HINCRBY', base, ok and 'taken' or 'overages', 1)\n"
    "    redis.call('EXPIRE', base, ttl)\n"
    "    redis.call('ZADD', index, string.format('%.3f', now), name)\n"
    "  end\n"
    "  return ok, used, wait\n"
    "end\n";

/* KEYS[1] limiter, KEYS[2] index; ARGV: type, limit, interval, token,
 * lock_timeout, ttl, name. Returns {1|0, used, wait-hint}. */
static const char acquire_body[] =
    "local ok, used, wait = lim(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4],\n"
    "  tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], KEYS[2], true, lim_now())\n"
    "return {ok and 1 or 0, tostring(used), tostring(wait)}\n";

/* KEYS[1] limiter; ARGV[1] token. */
static const char release_lua[] = "return redis.call('ZREM', KEYS[1] .. ':c', ARGV[1])\n";

/* Per-job state between before and after: the concurrent slots held. */
typedef struct held {
    char base[ENT_KEY_BYTES];
    char token[ENT_TOKEN_BYTES];
} held;
static __thread held tl_held[ENT_MAX_LIMITS_PER_JOB];
static __thread int tl_nheld;

/* ---- settings -------------------------------------------------------------- */

static const char *
type_name(int t)
{
    switch (t) {
    case ENT_LIM_CONCURRENT:
        return "concurrent";
    case ENT_LIM_BUCKET:
        return "bucket";
    case ENT_LIM_WINDOW:
        return "window";
    default:
        return "leaky";
    }
}

typedef ent_parse_ctx parse_ctx;

#define LERR(...)                                                                                  \
    do {                                                                                           \
        char why_[300];                                                                            \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
        snprintf(pc->err, pc->errlen, "setting %s.limiter '%s': %s", ENT_NAME, line, why_);        \
        goto fail;                                                                                 \
    } while (0)

static int
add_list(char ***v, size_t *n, const char *csv)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", csv);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (!ent__strv_has(*v, *n, t) && ent__strv_add(v, n, t))
            return -1;
    return 0;
}

#define WHY_BYTES 300 /* a limiter line's reason, quoted with the line by LERR */
/* Writes a reason into why (WHY_BYTES) and is -1: a step's refusal. */
#define WHY(...) (snprintf(why, WHY_BYTES, __VA_ARGS__), -1)

/* The TYPE and LIMIT words (w[1], w[2]; w[2] is cut at its '/') into *L.
 * 0, or -1 with the reason in why. */
static int
lim_kind(ent_limiter *L, char **w, char *why)
{
    if (!strcmp(w[1], "concurrent"))
        L->type = ENT_LIM_CONCURRENT;
    else if (!strcmp(w[1], "bucket"))
        L->type = ENT_LIM_BUCKET;
    else if (!strcmp(w[1], "window"))
        L->type = ENT_LIM_WINDOW;
    else if (!strcmp(w[1], "leaky"))
        L->type = ENT_LIM_LEAKY;
    else
        return WHY("unknown type '%s' (concurrent, bucket, window or leaky)", w[1]);
    char *slash = strchr(w[2], '/');
    if (L->type == ENT_LIM_CONCURRENT) {
        if (slash || ent__long(w[2], 1, 1000000, &L->limit))
            return WHY("concurrent limit '%s' must be a whole number 1-1000000", w[2]);
    } else {
        if (!slash)
            return WHY("%s limit '%s' must be COUNT/INTERVAL (e.g. 10/minute, 100/90s)", w[1],
                       w[2]);
        *slash = '\0';
        if (ent__long(w[2], 1, 1000000, &L->limit))
            return WHY("%s count '%s' must be a whole number 1-1000000", w[1], w[2]);
        if (L->type == ENT_LIM_BUCKET) {
            if (strcmp(slash + 1, "second") && strcmp(slash + 1, "minute") &&
                strcmp(slash + 1, "hour") && strcmp(slash + 1, "day"))
                return WHY(
                    "bucket interval '%s' must be second, minute, hour or day (wall-clock, UTC)",
                    slash + 1);
        }
        if (ent__duration(slash + 1, &L->interval) || L->interval < 0.001)
            return WHY("interval '%s' is not a duration (90, 90s, 5m, 1h, 1d, minute...)",
                       slash + 1);
    }
    return 0;
}

/* One option=value word (cut at its '=') into *L. 0, or -1 with the reason
 * in why. */
static int
lim_option(ent_limiter *L, char *word, char *why)
{
    char *eq = strchr(word, '=');
    if (!eq || eq == word || !eq[1])
        return WHY("option '%s' is not name=value", word);
    *eq = '\0';
    const char *o = word, *v = eq + 1;
    double d;
    if (!strcmp(o, "class")) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", v);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (!ent__class_ok(t))
                return WHY("class '%s' is not a job class name", t);
        if (add_list(&L->classes, &L->nclasses, v))
            return WHY("out of memory");
    } else if (!strcmp(o, "queue")) {
        if (L->dynamic)
            return WHY("a per-job limiter ({argN}) cannot limit a queue: queues are limited before "
                       "any "
                       "job is read");
        if (add_list(&L->queues, &L->nqueues, v))
            return WHY("out of memory");
    } else if (!strcmp(o, "wait") || !strcmp(o, "wait_timeout")) {
        if (ent__duration(v, &d) || d > 3600)
            return WHY("wait '%s' is not a duration up to 1h", v);
        L->wait = d;
    } else if (!strcmp(o, "lock_timeout")) {
        if (L->type != ENT_LIM_CONCURRENT)
            return WHY("lock_timeout applies to concurrent limiters only");
        if (ent__duration(v, &d) || d < 0.01)
            return WHY("lock_timeout '%s' is not a positive duration", v);
        L->lock_timeout = d;
    } else if (!strcmp(o, "reschedule")) {
        if (ent__long(v, 0, 1000000, &L->reschedule))
            return WHY("reschedule '%s' must be a whole number (0: fail at once)", v);
    } else if (!strcmp(o, "backoff")) {
        if (ent__duration(v, &d))
            return WHY("backoff '%s' is not a duration", v);
        L->backoff = d;
    } else if (!strcmp(o, "backoff_max")) {
        if (ent__duration(v, &d))
            return WHY("backoff_max '%s' is not a duration", v);
        L->backoff_max = d;
    } else if (!strcmp(o, "ttl")) {
        if (ent__duration(v, &d) || d < 60)
            return WHY("ttl '%s' is not a duration of at least 60s", v);
        L->ttl = (long)d;
    } else {
        return WHY("unknown option '%s' (class, queue, wait, lock_timeout, reschedule, backoff, "
                   "backoff_max, ttl)",
                   o);
    }
    return 0;
}

static int
parse_limiter(const char *key, const char *line, void *ud)
{
    (void)key;
    parse_ctx *pc = ud;
    ent_state *E = pc->E;
    char **w = NULL;
    int n = ent__words(line, NULL, &w);
    ent_limiter L;
    memset(&L, 0, sizeof L);
    if (n < 0)
        LERR("out of memory");
    if (n < 3)
        LERR("want NAME TYPE LIMIT [option=value...], e.g. 'stripe concurrent 5 class=ChargeCard'");
    if (!ent__lim_name_ok(w[0], 1))
        LERR("limiter name '%s' has illegal characters or is longer than %d: use letters, digits, "
             "'-' and '_' (a per-job part is written {arg0})",
             w[0], ENT_LIM_NAME_MAX);
    for (size_t i = 0; i < E->nlim; i++)
        if (!strcmp(E->lim[i].name, w[0]))
            LERR("limiter '%s' is defined twice", w[0]);
    L.dynamic = strchr(w[0], '{') != NULL;
    char why[WHY_BYTES];
    if (lim_kind(&L, w, why))
        LERR("%s", why);
    L.lock_timeout = DEFAULT_LOCK_TIMEOUT;
    L.reschedule = DEFAULT_RESCHEDULE;
    L.backoff = DEFAULT_BACKOFF;
    L.ttl = DEFAULT_TTL;
    for (int i = 3; i < n; i++)
        if (lim_option(&L, w[i], why))
            LERR("%s", why);
    if (!L.nclasses && !L.nqueues)
        LERR("the limiter applies to nothing: add class=NAME (checked before the handler) or "
             "queue=NAME (checked at fetch time)");
    for (size_t i = 0; i < L.nqueues; i++)
        for (size_t j = 0; j < E->nlim; j++)
            if (ent__strv_has(E->lim[j].queues, E->lim[j].nqueues, L.queues[i]))
                LERR("queue '%s' is already limited by '%s' (one limiter per queue)", L.queues[i],
                     E->lim[j].name);
    if (!(L.name = strdup(w[0])))
        LERR("out of memory");
    ent_limiter *nl = realloc(E->lim, (E->nlim + 1) * sizeof *nl);
    if (!nl)
        LERR("out of memory");
    E->lim = nl;
    E->lim[E->nlim++] = L;
    if (L.nqueues)
        E->fetch_limits = 1;
    free(w);
    return 0;
fail:
    free(L.name);
    ent__strv_free(L.classes, L.nclasses);
    ent__strv_free(L.queues, L.nqueues);
    free(w);
    return DRAY_ECONFIG;
}

int
ent__limits_configure(ent_state *E, char *err, size_t errlen)
{
    parse_ctx pc = {E, err, errlen};
    int rc = H->config_each(ent__M, "limiter", parse_limiter, &pc);
    if (rc)
        return rc;
    /* Bounded per-job state: at most ENT_MAX_LIMITS_PER_JOB limiters per class. */
    for (size_t i = 0; i < E->nlim; i++)
        for (size_t c = 0; c < E->lim[i].nclasses; c++) {
            const char *k = E->lim[i].classes[c];
            size_t count = 0;
            for (size_t j = 0; j < E->nlim; j++)
                count += ent__strv_has(E->lim[j].classes, E->lim[j].nclasses, k);
            if (count > ENT_MAX_LIMITS_PER_JOB) {
                return ent__err(err, errlen, DRAY_ECONFIG,
                                "setting %s.limiter: class %s has %zu limiters (at most %d)",
                                ENT_NAME, k, count, ENT_MAX_LIMITS_PER_JOB);
            }
        }
    return 0;
}

void
ent__limits_free(ent_state *E)
{
    for (size_t i = 0; i < E->nlim; i++) {
        free(E->lim[i].name);
        ent__strv_free(E->lim[i].classes, E->lim[i].nclasses);
        ent__strv_free(E->lim[i].queues, E->lim[i].nqueues);
    }
    free(E->lim);
    E->lim = NULL;
    E->nlim = 0;
}

/* ---- checks ------------------------------------------------------------------ */

int
ent__lim_args(const ent_limiter *L, const char *name, char argv[6][64])
{
    snprintf(argv[0], 64, "%c", L->type);
    snprintf(argv[1], 64, "%ld", L->limit);
    snprintf(argv[2], 64, "%.6f", L->interval > 0 ? L->interval : 1.0);
    snprintf(argv[3], 64, "%.3f", L->lock_timeout);
    snprintf(argv[4], 64, "%ld", L->ttl);
    int n = snprintf(argv[5], 64, "%s", name);
    return n < 0 || n >= 64 ? -1 : 0;
}

int
ent__lim_take(const ent_state *E, dray_ctx *ctx, const ent_limiter *L, const char *name,
              const char *token, double *wait)
{
    char base[ENT_KEY_BYTES], index[ENT_KEY_BYTES], a[6][64];
    *wait = 0;
    if (ent__key(base, sizeof base, ctx, "ent:lmtr:", name) ||
        ent__key(index, sizeof index, ctx, "ent:limiters", NULL) || ent__lim_args(L, name, a))
        return DRAY_EINVAL;
    const char *argv[9] = {base, index, a[0], a[1], a[2], token, a[3], a[4], a[5]};
    redisReply *r;
    int rc = H->eval(ctx, E->s_lim_acquire, &r, 2, 9, argv, NULL);
    if (!rc && (r->type != REDIS_REPLY_ARRAY || r->elements != 3))
        rc = DRAY_EREDIS;
    int ok = 0;
    if (!rc) {
        ok = r->element[0]->integer == 1;
        *wait = r->element[2]->str ? atof(r->element[2]->str) : 0;
    }
    if (r)
        freeReplyObject(r);
    return rc ? rc : ok;
}

int
ent__lim_release(const ent_state *E, dray_ctx *ctx, const char *base, const char *token)
{
    const char *argv[2] = {base, token};
    return H->eval(ctx, E->s_lim_release, NULL, 1, 2, argv, NULL);
}

/* The limiter name for this job: {argN} replaced by that argument.
 * 0, or -1 with why. */
static int
resolve(const ent_limiter *L, const dray_job *job, char *out, size_t outlen, char *why,
        size_t whylen)
{
    if (!L->dynamic) {
        snprintf(out, outlen, "%s", L->name);
        return 0;
    }
    json_t *args = H->job_args(job);
    size_t o = 0;
    for (const char *p = L->name; *p;) {
        if (*p == '{') {
            int idx = atoi(p + 4);
            p = strchr(p, '}') + 1;
            json_t *a = json_array_get(args, (size_t)idx);
            char v[128];
            if (json_is_string(a))
                snprintf(v, sizeof v, "%s", json_string_value(a));
            else if (json_is_integer(a))
                snprintf(v, sizeof v, "%" JSON_INTEGER_FORMAT, json_integer_value(a));
            else {
                return ent__err(why, whylen, -1,
                                "limiter %s: argument %d is %s (want a string or an integer)",
                                L->name, idx, a ? "not a string or integer" : "missing");
            }
            size_t vl = strlen(v);
            if (o + vl >= outlen) {
                return ent__err(why, whylen, -1, "limiter %s: name too long", L->name);
            }
            memcpy(out + o, v, vl);
            o += vl;
        } else {
            if (o + 1 >= outlen) {
                return ent__err(why, whylen, -1, "limiter %s: name too long", L->name);
            }
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    if (!ent__lim_name_ok(out, 0)) {
        snprintf(why, whylen,
                 "limiter %s: name '%s' has illegal characters (letters, digits, '-', '_' only)",
                 L->name, out);
        return -1;
    }
    return 0;
}

static void
release_held(ent_state *E, dray_ctx *ctx)
{
    for (int i = 0; i < tl_nheld; i++)
        if (ent__lim_release(E, ctx, tl_held[i].base, tl_held[i].token))
            H->log(ent__M, DRAY_LOG_WARN,
                   "cannot release concurrency slot %s of %s (reclaimed after "
                   "its lock timeout): %s",
                   tl_held[i].token, tl_held[i].base, H->redis_errstr(ctx));
    tl_nheld = 0;
}

static void
sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) == -1)
        ;
}

/* Take every limiter of the job's class, in setting order. */
static int
lim_before(dray_ctx *ctx, dray_job *job, void *ud)
{
    ent_state *E = ud;
    const char *klass = H->job_class(job);
    tl_nheld = 0;
    int applied = 0;
    for (size_t i = 0; i < E->nlim; i++) {
        const ent_limiter *L = &E->lim[i];
        if (!ent__strv_has(L->classes, L->nclasses, klass))
            continue;
        char name[ENT_LIM_NAME_MAX + 1], why[256];
        if (resolve(L, job, name, sizeof name, why, sizeof why)) {
            release_held(E, ctx);
            return H->fail(ctx, 0, "%s", why);
        }
        char token[ENT_TOKEN_BYTES], rnd[17];
        ent__rand_hex(rnd, 8);
        snprintf(token, sizeof token, "%.24s:%s", H->job_jid(job), rnd);
        double wait, deadline = H->now() + L->wait;
        int rc;
        for (;;) {
            rc = ent__lim_take(E, ctx, L, name, token, &wait);
            if (rc != 0)
                break;
            double left = deadline - H->now();
            if (left <= 0)
                break;
            double step = wait > 0 ? wait : 0.01;
            if (step > left)
                step = left;
            if (step > WAIT_STEP_MAX)
                step = WAIT_STEP_MAX;
            sleep_s(step < 0.005 ? 0.005 : step);
        }
        if (rc < 0) {
            release_held(E, ctx);
            return H->fail(ctx, 0, "limiter %s unavailable: %s", name, H->redis_errstr(ctx));
        }
        if (rc == 0) {
            release_held(E, ctx);
            json_t *o = H->job_get(job, "overrated");
            long over = json_is_integer(o) ? (long)json_integer_value(o) : 0;
            if (over >= L->reschedule) {
                /* Sidekiq keeps "overrated" here (#6010): reset it, so the
                 * retry gets a full reschedule budget again. */
                H->job_set(job, "overrated", NULL);
                return H->fail(ctx, 0,
                               "OverLimit: limiter %s (%s, limit %ld) still over its limit after "
                               "%ld reschedule%s",
                               name, type_name(L->type), L->limit, over, over == 1 ? "" : "s");
            }
            over++;
            H->job_set(job, "overrated", json_integer(over));
            double d = L->backoff * (double)over +
                       (L->backoff > 0 ? L->backoff * randombytes_uniform(1000000) / 1e6 : 0);
            if (L->backoff_max > 0 && d > L->backoff_max)
                d = L->backoff_max;
            if (d < 0.001)
                d = 0.001;
            return H->defer(ctx, d,
                            "limiter %s (%s, limit %ld) over its limit; reschedule %ld of %ld",
                            name, type_name(L->type), L->limit, over, L->reschedule);
        }
        applied++;
        if (L->type == ENT_LIM_CONCURRENT && tl_nheld < ENT_MAX_LIMITS_PER_JOB) {
            held *h = &tl_held[tl_nheld++];
            ent__key(h->base, sizeof h->base, ctx, "ent:lmtr:", name);
            snprintf(h->token, sizeof h->token, "%s", token);
        }
    }
    if (applied && H->job_get(job, "overrated"))
        H->job_set(job, "overrated", NULL); /* admitted: a later retry starts afresh */
    return DRAY_CONTINUE;
}

static void
lim_after(dray_ctx *ctx, dray_job *job, int outcome, void *ud)
{
    (void)job;
    (void)outcome;
    release_held(ud, ctx);
}

/* KEYS[1] index; ARGV[1] ttl. Forget limiters unused for ttl; the index
 * itself lives ttl past the last trim. */
static const char trim_lua[] =
    "local t = redis.call('TIME')\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]) - tonumber(ARGV[1]))\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
    "return 1\n";

void
ent__limits_tick(ent_state *E, dray_ctx *ctx)
{
    long ttl = 0;
    for (size_t i = 0; i < E->nlim; i++)
        if (E->lim[i].ttl > ttl)
            ttl = E->lim[i].ttl;
    char index[ENT_KEY_BYTES], t[32];
    if (!ttl || ent__key(index, sizeof index, ctx, "ent:limiters", NULL))
        return;
    snprintf(t, sizeof t, "%ld", ttl);
    const char *argv[2] = {index, t};
    if (H->eval(ctx, E->s_lim_trim, NULL, 1, 2, argv, NULL))
        H->log(ent__M, DRAY_LOG_DEBUG, "cannot trim %s: %s", index, H->redis_errstr(ctx));
}

/* ---- registration ---------------------------------------------------------------- */

int
ent__limits_scripts(ent_state *E)
{
    size_t n = strlen(ent__lim_lua) + strlen(acquire_body) + 1;
    char *src = malloc(n);
    if (!src)
        return DRAY_ENOMEM;
    snprintf(src, n, "%s%s", ent__lim_lua, acquire_body);
    int rc = H->script(ent__M, src, &E->s_lim_acquire);
    free(src);
    if (!rc)
        rc = H->script(ent__M, release_lua, &E->s_lim_release);
    if (!rc)
        rc = H->script(ent__M, trim_lua, &E->s_lim_trim);
    if (!rc)
        rc = ent__fetch_scripts(E);
    return rc;
}

int
ent__limits_hooks(ent_state *E)
{
    int classes = 0;
    for (size_t i = 0; i < E->nlim; i++)
        classes += E->lim[i].nclasses > 0;
    int rc = 0;
    if (classes)
        rc = H->hook(ent__M, DRAY_HOOK(.point = DRAY_HOOK_PERFORM, .name = "limit",
                                       .priority = DRAY_PRIO_EARLY, .before = lim_before,
                                       .after = lim_after, .userdata = E));
    if (!rc && E->fetch_limits)
        rc = ent__fetch_register(E);
    return rc;
}
