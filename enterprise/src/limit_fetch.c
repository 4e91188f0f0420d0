/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Fetch-time queue limits: a fetch provider (module.h's exclusive fetch
 * slot) that never pops a queue whose limiter is over its limit, so an
 * over-limit queue is left untouched instead of being fetched and
 * rescheduled. Registered only when some limiter names a queue; it is
 * basic fetch otherwise (BRPOP semantics, no working list), so it cannot
 * be combined with another module's fetch provider (Pro's reliable fetch):
 * the core then refuses to load the second module, naming both.
 *
 * One fetch: a script pops the first queue, in the order the core gives,
 * whose limiter has room, taking the limiter in the same script. When every
 * queue with room is empty, the worker blocks (BRPOP) on those queues only;
 * a job it gets from a limited queue is claimed by a second script, which
 * pushes it back to the head in the rare race where the limit filled up in
 * between. When no queue has room, the worker sleeps until the earliest
 * limiter may have some (at most 0.5 s), without touching Redis.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limit.h"

#define H ent__H

#define BLOCK_MAX_S 1.0 /* BRPOP at most this long: quiet and stop are noticed soon */
#define IDLE_MAX_S 0.5  /* every queue over its limit: look again after at most this */
#define MAX_FETCH_KEYS                                                                             \
    64 /* queues one fetch looks at (the core's list; far more than anyone uses) */

/* KEYS: n queues, n limiter keys (the queue's own key when unlimited), the
 * index. ARGV[1] n, ARGV[2] token, then per queue: type ('-' unlimited),
 * limit, interval, lock_timeout, ttl, name. Returns {i, job}, or
 * {0, wait-hint, eligible queue indexes...}. */
static const char try_body[] =
    "local n = tonumber(ARGV[1])\n"
    "local now = lim_now()\n"
    "local eligible, minwait = {}, -1\n"
    "for i = 1, n do\n"
    "  local a = 2 + (i - 1) * 6\n"
    "  local typ = ARGV[a + 1]\n"
    "  local room = true\n"
    "  if typ ~= '-' then\n"
    "    local ok, used, wait = lim(KEYS[n + i], typ, tonumber(ARGV[a + 2]), tonumber(ARGV[a + "
    "3]),\n"
    "      ARGV[2], tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6], KEYS[2 * n + 1],\n"
    "      false, now)\n"
    "    room = ok\n"
    "    if not ok and (minwait < 0 or wait < minwait) then minwait = wait end\n"
    "  end\n"
    "  if room then\n"
    "    local job = redis.call('RPOP', KEYS[i])\n"
    "    if job then\n"
    "      if typ ~= '-' then\n"
    "        lim(KEYS[n + i], typ, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[2],\n"
    "          tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6], KEYS[2 * n + 1], true, "
    "now)\n"
    "      end\n"
    "      return {i, job}\n"
    "    end\n"
    "    eligible[#eligible + 1] = i\n"
    "  end\n"
    "end\n"
    "return {0, tostring(minwait), unpack(eligible)}\n";

/* KEYS[1] queue, KEYS[2] limiter, KEYS[3] index; ARGV: job, type, limit,
 * interval, lock_timeout, ttl, name, token. 1: taken; 0: pushed back. */
static const char claim_body[] =
    "local ok = lim(KEYS[2], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[8],\n"
    "  tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], KEYS[3], true, lim_now())\n"
    "if ok then return 1 end\n"
    "redis.call('RPUSH', KEYS[1], ARGV[1])\n"
    "return 0\n";

/* KEYS[1] queue, KEYS[2] limiter; ARGV[1] job, ARGV[2] token or "". */
static const char back_lua[] =
    "redis.call('RPUSH', KEYS[1], ARGV[1])\n"
    "if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2] .. ':c', ARGV[2]) end\n"
    "return 1\n";

/* A fetched unit's slot, released on ack or requeue. */
typedef struct slot {
    char base[ENT_KEY_BYTES];
    char token[ENT_TOKEN_BYTES];
} slot;

static const ent_limiter *
queue_limiter(const ent_state *E, const char *queue)
{
    for (size_t i = 0; i < E->nlim; i++)
        if (ent__strv_has(E->lim[i].queues, E->lim[i].nqueues, queue))
            return &E->lim[i];
    return NULL;
}

static const char *
queue_name(dray_ctx *ctx, const char *key)
{
    size_t pre = strlen(H->ns(ctx)) + strlen("queue:");
    return strlen(key) > pre ? key + pre : key;
}

static void
nap(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) == -1)
        ;
}

/* Fill *out with job r (a string reply) from queue key; 1, or DRAY_ENOMEM. */
static int
take(dray_ctx *ctx, const char *key, const redisReply *r, const ent_limiter *L, const char *token,
     dray_unit *out)
{
    out->queue = H->strdup(queue_name(ctx, key));
    out->payload = H->alloc(r->len + 1);
    slot *s = NULL;
    if (L && L->type == ENT_LIM_CONCURRENT) {
        s = H->calloc(1, sizeof *s);
        if (s) {
            ent__key(s->base, sizeof s->base, ctx, "ent:lmtr:", L->name);
            snprintf(s->token, sizeof s->token, "%s", token);
        }
    }
    if (!out->queue || !out->payload || (L && L->type == ENT_LIM_CONCURRENT && !s)) {
        H->free(out->queue);
        H->free(out->payload);
        H->free(s);
        out->queue = out->payload = NULL;
        return DRAY_ENOMEM;
    }
    memcpy(out->payload, r->str, r->len);
    out->payload[r->len] = '\0';
    out->len = r->len;
    out->token = s;
    return 1;
}

/* Per-call working memory (too big for a worker's stack). */
typedef struct scratch {
    const ent_limiter *lims[MAX_FETCH_KEYS];
    char bases[MAX_FETCH_KEYS][ENT_KEY_BYTES];
    char args[MAX_FETCH_KEYS][6][64];
} scratch;

static int fetch_with(ent_state *E, dray_ctx *ctx, const char *const *keys, size_t n,
                      double timeout_s, dray_unit *out, scratch *sc);

/* Does any of the n queue keys have a limiter? */
static int
any_limited(const ent_state *E, dray_ctx *ctx, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (queue_limiter(E, queue_name(ctx, keys[i])))
            return 1;
    return 0;
}

/* Basic fetch of n unlimited queues: one BRPOP, as the core does it (no
 * script, no limiter state). 1 with *out filled, 0 when nothing came, or a
 * negative DRAY_E* code. */
static int
fetch_unlimited(dray_ctx *ctx, const char *const *keys, size_t n, double timeout_s, dray_unit *out)
{
    const char *argv[MAX_FETCH_KEYS + 2];
    char tbuf[32];
    double block = timeout_s < BLOCK_MAX_S ? timeout_s : BLOCK_MAX_S;
    size_t argc = 0;
    argv[argc++] = "BRPOP";
    for (size_t i = 0; i < n; i++)
        argv[argc++] = keys[i];
    /* whole milliseconds: a float conversion per job costs more than the rest */
    long ms = block > 0.01 ? (long)(block * 1000.0 + 0.5) : 10;
    snprintf(tbuf, sizeof tbuf, "%ld.%03ld", ms / 1000, ms % 1000);
    argv[argc++] = tbuf;
    redisReply *r;
    int rc = H->redis(ctx, &r, (int)argc, argv, NULL);
    if (rc) {
        if (r)
            freeReplyObject(r);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        return 0; /* timed out */
    }
    rc = take(ctx, r->element[0]->str, r->element[1], NULL, NULL, out);
    freeReplyObject(r);
    return rc;
}

static int
fetch(dray_ctx *ctx, const char *const *keys, size_t n, double timeout_s, dray_unit *out, void *ud)
{
    ent_state *E = ud;
    if (n == 0) {
        nap(timeout_s > IDLE_MAX_S ? IDLE_MAX_S : timeout_s);
        return 0;
    }
    if (n > MAX_FETCH_KEYS)
        n = MAX_FETCH_KEYS;
    /* Queues without a limit cost what the core's fetch costs: no script
     * per job (docs/enterprise.md, fetch-time limits). */
    if (!any_limited(E, ctx, keys, n))
        return fetch_unlimited(ctx, keys, n, timeout_s, out);
    scratch *sc = malloc(sizeof *sc);
    if (!sc)
        return DRAY_ENOMEM;
    int rc = fetch_with(E, ctx, keys, n, timeout_s, out, sc);
    free(sc);
    return rc;
}

/* The try script's arguments for keys (n): the queues, each queue's limiter
 * base key, the limiter index, n, token, then six limiter arguments per
 * queue; fills sc (lims, bases, args) that they point into. A calloc'ed
 * array of *argc entries (the caller frees it), or NULL when out of memory. */
static const char **
try_argv(ent_state *E, dray_ctx *ctx, const char *const *keys, size_t n, scratch *sc,
         const char *index, const char *nbuf, const char *token, size_t *argc)
{
    *argc = 2 * n + 1 + 2 + 6 * n;
    const char **argv = calloc(*argc, sizeof *argv);
    if (!argv)
        return NULL;
    size_t a = 0;
    for (size_t i = 0; i < n; i++)
        argv[a++] = keys[i];
    for (size_t i = 0; i < n; i++) {
        sc->lims[i] = queue_limiter(E, queue_name(ctx, keys[i]));
        if (sc->lims[i]) {
            ent__key(sc->bases[i], sizeof sc->bases[i], ctx, "ent:lmtr:", sc->lims[i]->name);
            ent__lim_args(sc->lims[i], sc->lims[i]->name, sc->args[i]);
        } else {
            snprintf(sc->bases[i], sizeof sc->bases[i], "%s", keys[i]);
            for (int k = 0; k < 6; k++)
                snprintf(sc->args[i][k], sizeof sc->args[i][k], "%s", k == 0 ? "-" : "0");
        }
        argv[a + i] = sc->bases[i];
    }
    a += n;
    argv[a++] = index;
    argv[a++] = nbuf;
    argv[a++] = token;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 6; k++)
            argv[a++] = sc->args[i][k];
    return argv;
}

/* Claims a slot of queue j's limiter (sc) for job, popped from key by a
 * blocking fetch: 1 claimed, 0 when the limit filled up meanwhile (the
 * script put the job back at the head), or an error (logged with the job). */
static int
claim(ent_state *E, dray_ctx *ctx, const char *key, const redisReply *job, const scratch *sc,
      size_t j, const char *index, const char *token)
{
    const char *cargv[11] = {key,
                             sc->bases[j],
                             index,
                             job->str,
                             sc->args[j][0],
                             sc->args[j][1],
                             sc->args[j][2],
                             sc->args[j][3],
                             sc->args[j][4],
                             sc->args[j][5],
                             token};
    size_t clens[11];
    for (int k = 0; k < 11; k++)
        clens[k] = k == 3 ? job->len : strlen(cargv[k]);
    redisReply *c;
    int rc = H->eval(ctx, E->s_fetch_claim, &c, 3, 11, cargv, clens);
    int claimed = !rc && c->type == REDIS_REPLY_INTEGER && c->integer == 1;
    if (c)
        freeReplyObject(c);
    if (rc) {
        H->log(ent__M, DRAY_LOG_ERROR, "cannot claim a job of queue %s (%s); payload: %.*s",
               queue_name(ctx, key), H->redis_errstr(ctx), (int)job->len, job->str);
        return rc;
    }
    return claimed;
}

/* Blocks up to block seconds on the queues with room (bkeys: "BRPOP" and
 * nb - 1 keys, one slot spare), then claims the job popped from a limited
 * queue. 1 with *out filled, 0 for none, or an error. */
static int
block_fetch(ent_state *E, dray_ctx *ctx, const char *const *keys, size_t n, const scratch *sc,
            const char *index, const char *token, const char **bkeys, size_t nb, double block,
            dray_unit *out)
{
    char tbuf[32];
    snprintf(tbuf, sizeof tbuf, "%.3f", block > 0.01 ? block : 0.01);
    bkeys[nb++] = tbuf;
    redisReply *r;
    int rc = H->redis(ctx, &r, (int)nb, bkeys, NULL);
    if (rc) {
        if (r)
            freeReplyObject(r);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        return 0; /* timed out */
    }
    const char *key = r->element[0]->str;
    size_t j;
    for (j = 0; j < n && strcmp(keys[j], key); j++)
        ;
    const ent_limiter *L = j < n ? sc->lims[j] : NULL;
    if (L) {
        int c = claim(E, ctx, key, r->element[1], sc, j, index, token);
        if (c <= 0) {
            freeReplyObject(r);
            return c;
        }
    }
    rc = take(ctx, key, r->element[1], L, token, out);
    freeReplyObject(r);
    return rc;
}

static int
fetch_with(ent_state *E, dray_ctx *ctx, const char *const *keys, size_t n, double timeout_s,
           dray_unit *out, scratch *sc)
{
    char index[ENT_KEY_BYTES], token[ENT_TOKEN_BYTES], nbuf[16];
    ent__rand_hex(token, 12);
    snprintf(nbuf, sizeof nbuf, "%zu", n);
    if (ent__key(index, sizeof index, ctx, "ent:limiters", NULL))
        return DRAY_EINVAL;
    size_t argc;
    const char **argv = try_argv(E, ctx, keys, n, sc, index, nbuf, token, &argc);
    if (!argv)
        return DRAY_ENOMEM;
    redisReply *r;
    int rc = H->eval(ctx, E->s_fetch_try, &r, (int)(2 * n + 1), (int)argc, argv, NULL);
    free(argv);
    if (rc) {
        if (r)
            freeReplyObject(r);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return DRAY_EREDIS;
    }
    long long got = r->element[0]->integer;
    if (got > 0 && (size_t)got <= n && r->element[1]->type == REDIS_REPLY_STRING) {
        rc = take(ctx, keys[got - 1], r->element[1], sc->lims[got - 1], token, out);
        freeReplyObject(r);
        return rc;
    }
    double minwait = r->element[1]->str ? atof(r->element[1]->str) : -1;
    const char *bkeys[MAX_FETCH_KEYS + 2];
    size_t nb = 0;
    bkeys[nb++] = "BRPOP";
    for (size_t i = 2; i < r->elements; i++) {
        long long idx = r->element[i]->integer;
        if (idx >= 1 && (size_t)idx <= n)
            bkeys[nb++] = keys[idx - 1];
    }
    freeReplyObject(r);
    double block = timeout_s < BLOCK_MAX_S ? timeout_s : BLOCK_MAX_S;
    if (nb == 1) {
        /* Every queue is over its limit: wait for the earliest to have room. */
        double s = minwait > 0 ? minwait : IDLE_MAX_S;
        if (s > IDLE_MAX_S)
            s = IDLE_MAX_S;
        if (s > block)
            s = block;
        nap(s < 0.005 ? 0.005 : s);
        return 0;
    }
    return block_fetch(E, ctx, keys, n, sc, index, token, bkeys, nb, block, out);
}

static int
ack(dray_ctx *ctx, const dray_unit *unit, void *ud)
{
    slot *s = unit->token;
    int rc = 0;
    if (s) {
        rc = ent__lim_release(ud, ctx, s->base, s->token);
        H->free(s);
    }
    return rc;
}

static int
requeue(dray_ctx *ctx, const dray_unit *unit, void *ud)
{
    ent_state *E = ud;
    slot *s = unit->token;
    char qk[ENT_KEY_BYTES];
    int rc = ent__key(qk, sizeof qk, ctx, "queue:", unit->queue) ? DRAY_EINVAL : 0;
    if (!rc) {
        const char *argv[4] = {qk, s ? s->base : qk, unit->payload, s ? s->token : ""};
        size_t lens[4] = {strlen(argv[0]), strlen(argv[1]), unit->len, strlen(argv[3])};
        rc = H->eval(ctx, E->s_fetch_back, NULL, 2, 4, argv, lens);
    }
    H->free(s);
    return rc;
}

int
ent__fetch_scripts(ent_state *E)
{
    size_t n = strlen(ent__lim_lua) + strlen(try_body) + strlen(claim_body) + 1;
    char *src = malloc(n);
    if (!src)
        return DRAY_ENOMEM;
    snprintf(src, n, "%s%s", ent__lim_lua, try_body);
    int rc = H->script(ent__M, src, &E->s_fetch_try);
    snprintf(src, n, "%s%s", ent__lim_lua, claim_body);
    if (!rc)
        rc = H->script(ent__M, src, &E->s_fetch_claim);
    free(src);
    if (!rc)
        rc = H->script(ent__M, back_lua, &E->s_fetch_back);
    return rc;
}

int
ent__fetch_register(ent_state *E)
{
    int rc = H->set_fetcher(ent__M, DRAY_FETCHER(.name = "queue-limits", .fetch = fetch, .ack = ack,
                                                 .requeue = requeue, .userdata = E));
    if (rc == DRAY_EEXIST)
        return H->set_error(ent__M,
                            "fetch-time queue limits (limiter ... queue=NAME) need the fetch slot, "
                            "which another module already provides; limit those queues per class "
                            "(class=NAME) instead");
    return rc;
}
