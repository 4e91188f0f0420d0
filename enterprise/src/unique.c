/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Unique jobs. A push takes a lock named by SHA-256(class, queue, args)
 * that records its owner's jid; a second push of the same job while the
 * lock is held is dropped (the pusher gets DRAY_EDROPPED, nothing is
 * written). Unlike Sidekiq Enterprise (#6890), a lock whose owner is gone
 * does not block: on a conflict the acquire script checks, in Redis, that
 * the owner is queued, scheduled, retrying or running, and takes the lock
 * over when it is none of these. Released when the owner succeeds
 * (unique_until success, the default) or starts (start), or dies.
 *
 * Lock: HASH ent:unique:<digest> {jid, t (taken, Redis time), v (owner
 * last found alive), at (scheduled score), rat (retry score), run
 * (identity of the process running it)}, TTL unique_for (+ the delay of a
 * scheduled push). An owner found alive is not looked for again for
 * unique_grace seconds, so a burst of duplicates costs one search. The
 * payload carries unique_for, unique_until and unique_key (the digest), so
 * the worker and later re-pushes need no settings and no args (which may
 * be encrypted by then).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ent.h"

#define H ent__H

#define DEFAULT_GRACE 5.0         /* a lock this young is a push in flight: no owner check */
#define DEFAULT_SCAN_MAX 100000LL /* entries an owner check reads per queue or set at most */

/* KEYS[1] lock, KEYS[2] queue list, KEYS[3] schedule, KEYS[4] retry.
 * ARGV[1] jid, ARGV[2] ttl ms, ARGV[3] grace s, ARGV[4] namespace,
 * ARGV[5] scan max, ARGV[6] scheduled score or "".
 * Returns {1, previous owner or ""} or {0, owner, where it is}. */
static const char acquire_lua[] =
    "local tm = redis.call('TIME')\n"
    "local now = tonumber(tm[1]) + tonumber(tm[2]) / 1000000\n"
    "local function take(prev)\n"
    "  if prev then redis.call('DEL', KEYS[1]) end\n"
    "  redis.call('HSET', KEYS[1], 'jid', ARGV[1], 't', string.format('%.6f', now))\n"
    "  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'at', ARGV[6]) end\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return {1, prev or ''}\n"
    "end\n"
    "local function held(owner, where)\n"
    "  redis.call('HSET', KEYS[1], 'v', string.format('%.6f', now))\n"
    "  return {0, owner, where}\n"
    "end\n"
    "local h = redis.call('HMGET', KEYS[1], 'jid', 't', 'v', 'run', 'at', 'rat')\n"
    "local owner = h[1]\n"
    "if not owner then return take(nil) end\n"
    "if owner == ARGV[1] then return take(owner) end\n"
    "local grace = tonumber(ARGV[3])\n"
    "if now - (tonumber(h[2] or '0') or 0) < grace then return {0, owner, 'being pushed'} end\n"
    "if now - (tonumber(h[3] or '0') or 0) < grace then return {0, owner, 'checked lately'} end\n"
    "local run = h[4]\n"
    "if run and run ~= '' and redis.call('EXISTS', ARGV[4] .. run) == 1 then\n"
    "  return held(owner, 'running on ' .. run)\n"
    "end\n"
    "local pat = '\"jid\":\"' .. owner .. '\"'\n"
    "local max = tonumber(ARGV[5])\n"
    "local sets = {{KEYS[3], h[5], 'scheduled'}, {KEYS[4], h[6], 'retrying'}}\n"
    "for _, z in ipairs(sets) do\n"
    "  if z[2] then\n"
    "    for _, m in ipairs(redis.call('ZRANGEBYSCORE', z[1], z[2], z[2])) do\n"
    "      if string.find(m, pat, 1, true) then return held(owner, z[3]) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local len = redis.call('LLEN', KEYS[2])\n"
    "local i = 0\n"
    "while i < len and i < max do\n"
    "  for _, m in ipairs(redis.call('LRANGE', KEYS[2], -i - 500, -i - 1)) do\n"
    "    if string.find(m, pat, 1, true) then return held(owner, 'queued') end\n"
    "  end\n"
    "  i = i + 500\n"
    "end\n"
    "if len > max then return held(owner, 'not checked (queue too long)') end\n"
    "for _, z in ipairs(sets) do\n"
    "  if redis.call('ZCARD', z[1]) > max then return held(owner, 'not checked (set too big)') "
    "end\n"
    "  local cur = '0'\n"
    "  repeat\n"
    "    local r = redis.call('ZSCAN', z[1], cur, 'MATCH', '*' .. pat .. '*', 'COUNT', 500)\n"
    "    cur = r[1]\n"
    "    if #r[2] > 0 then return held(owner, z[3]) end\n"
    "  until cur == '0'\n"
    "end\n"
    "return take(owner)\n";

/* KEYS[1] lock; ARGV[1] jid, ARGV[2] mode, ARGV[3] value. Changes the lock
 * only while jid owns it: release | run (value: identity) | idle |
 * retry (value: retry score). */
static const char update_lua[] =
    "if redis.call('HGET', KEYS[1], 'jid') ~= ARGV[1] then return 0 end\n"
    "local m = ARGV[2]\n"
    "if m == 'release' then redis.call('DEL', KEYS[1])\n"
    "elseif m == 'run' then\n"
    "  redis.call('HSET', KEYS[1], 'run', ARGV[3])\n"
    "  redis.call('HDEL', KEYS[1], 'at', 'rat')\n"
    "elseif m == 'idle' then redis.call('HDEL', KEYS[1], 'run')\n"
    "elseif m == 'retry' then\n"
    "  redis.call('HSET', KEYS[1], 'rat', ARGV[3])\n"
    "  redis.call('HDEL', KEYS[1], 'run')\n"
    "end\n"
    "return 1\n";

/* ---- settings ------------------------------------------------------------------ */

typedef ent_parse_ctx parse_ctx;

static int
parse_rule(const char *key, const char *line, void *ud)
{
    (void)key;
    parse_ctx *pc = ud;
    ent_state *E = pc->E;
    char **w;
    int n = ent__words(line, NULL, &w);
    char why[300] = "";
    ent_unique_rule r = {NULL, 0, 0};
    int have_for = 0;
    if (n < 0) {
        snprintf(why, sizeof why, "out of memory");
    } else if (n < 1 || !ent__class_ok(w[0])) {
        snprintf(why, sizeof why, "want CLASS for=SECONDS [until=success|start]");
    } else {
        for (int i = 1; i < n && !why[0]; i++) {
            char *eq = strchr(w[i], '=');
            if (!eq) {
                snprintf(why, sizeof why, "option '%s' is not name=value", w[i]);
                break;
            }
            *eq = '\0';
            const char *v = eq + 1;
            if (!strcmp(w[i], "for") || !strcmp(w[i], "unique_for")) {
                if (ent__duration(v, &r.for_s) || r.for_s < 1)
                    snprintf(why, sizeof why, "unique_for '%s' is not a duration of at least 1s",
                             v);
                have_for = 1;
            } else if (!strcmp(w[i], "until") || !strcmp(w[i], "unique_until")) {
                if (!strcmp(v, "start"))
                    r.until_start = 1;
                else if (strcmp(v, "success"))
                    snprintf(why, sizeof why, "unique_until '%s' must be success or start", v);
            } else {
                snprintf(why, sizeof why, "unknown option '%s' (for, until)", w[i]);
            }
        }
        if (!why[0] && !have_for)
            snprintf(why, sizeof why,
                     "unique job class %s has no unique_for: it is required (for=SECONDS), so a "
                     "lock can never outlive its use",
                     w[0]);
        for (size_t i = 0; i < E->nuniq && !why[0]; i++)
            if (!strcmp(E->uniq[i].klass, w[0]))
                snprintf(why, sizeof why, "class %s is listed twice", w[0]);
    }
    if (!why[0]) {
        ent_unique_rule *nr = realloc(E->uniq, (E->nuniq + 1) * sizeof *nr);
        if (nr)
            E->uniq = nr;
        if (!nr || !(r.klass = strdup(w[0])))
            snprintf(why, sizeof why, "out of memory");
        else
            E->uniq[E->nuniq++] = r;
    }
    free(w);
    if (why[0]) {
        return ent__err(pc->err, pc->errlen, DRAY_ECONFIG, "setting %s.unique '%s': %s", ENT_NAME,
                        line, why);
    }
    return 0;
}

int
ent__unique_configure(ent_state *E, char *err, size_t errlen)
{
    parse_ctx pc = {E, err, errlen};
    int rc = H->config_each(ent__M, "unique", parse_rule, &pc);
    if (rc)
        return rc;
    if ((rc = H->config_double(ent__M, "unique_grace", DEFAULT_GRACE, 0, 3600, &E->unique_grace)) ||
        (rc = H->config_int(ent__M, "unique_scan_max", DEFAULT_SCAN_MAX, 100, 100000000LL,
                            &E->unique_scan_max)))
        return rc;
    return 0;
}

void
ent__unique_free(ent_state *E)
{
    for (size_t i = 0; i < E->nuniq; i++)
        free(E->uniq[i].klass);
    free(E->uniq);
    E->uniq = NULL;
    E->nuniq = 0;
}

/* ---- the lock ---------------------------------------------------------------- */

/* Lowercase hex SHA-256 of class NUL queue NUL args (compact, sorted keys;
 * an integer beyond 64 bits as its digits, the same in every process). */
static int
digest(const char *klass, const char *queue, json_t *args, char out[ENT_DIGEST_HEX])
{
    char *a = H->json_dump(args, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY, NULL);
    if (!a)
        return -1;
    crypto_hash_sha256_state st;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)klass, strlen(klass) + 1);
    crypto_hash_sha256_update(&st, (const unsigned char *)queue, strlen(queue) + 1);
    crypto_hash_sha256_update(&st, (const unsigned char *)a, strlen(a));
    crypto_hash_sha256_final(&st, h);
    H->free(a);
    sodium_bin2hex(out, ENT_DIGEST_HEX, h, sizeof h);
    return 0;
}

static int
lock_key(dray_ctx *ctx, const char *dig, char *buf, size_t len)
{
    return ent__key(buf, len, ctx, "ent:unique:", dig);
}

static const ent_unique_rule *
rule_for(const ent_state *E, const char *klass)
{
    for (size_t i = 0; i < E->nuniq; i++)
        if (!strcmp(E->uniq[i].klass, klass))
            return &E->uniq[i];
    return NULL;
}

/* uniq_push acts on a class with a rule or a job with unique fields
 * (unique_until alone is refused there, so it counts too). */
static int
uniq_wants(dray_ctx *ctx, const dray_job *job, void *ud)
{
    (void)ctx;
    const ent_state *E = ud;
    return rule_for(E, H->job_class(job)) || H->job_get(job, "unique_for") ||
           H->job_get(job, "unique_until");
}

static int
uniq_push(dray_ctx *ctx, dray_job *job, void *ud)
{
    ent_state *E = ud;
    const char *klass = H->job_class(job);
    const ent_unique_rule *rule = rule_for(E, klass);
    json_t *jf = H->job_get(job, "unique_for"), *ju = H->job_get(job, "unique_until");
    if (!rule && !jf) {
        if (ju)
            return H->fail(ctx, DRAY_EFIELD,
                           "job %s has unique_until but no unique_for: unique_for (seconds) is "
                           "required for a unique job",
                           klass);
        return DRAY_CONTINUE;
    }
    if (!(E->features & DRAY_LICENSE_F_UNIQUE_JOBS))
        return H->fail(ctx, DRAY_ELICENSE,
                       "unique job %s: the license does not include unique_jobs", klass);
    double for_s = rule ? rule->for_s : 0;
    int start = rule ? rule->until_start : 0;
    if (jf) {
        if (!json_is_number(jf) || !(json_number_value(jf) >= 1) || json_number_value(jf) > 1e9)
            return H->fail(ctx, DRAY_EFIELD, "unique_for must be a number of seconds >= 1");
        for_s = json_number_value(jf);
    }
    if (ju) {
        const char *u = json_string_value(ju);
        if (!u || (strcmp(u, "start") && strcmp(u, "success")))
            return H->fail(ctx, DRAY_EFIELD, "unique_until must be \"success\" or \"start\"");
        start = !strcmp(u, "start");
    }
    char dig[ENT_DIGEST_HEX], lk[ENT_KEY_BYTES], qk[ENT_KEY_BYTES], sk[ENT_KEY_BYTES],
        rk[ENT_KEY_BYTES];
    const char *have = json_string_value(H->job_get(job, "unique_key"));
    if (have && strlen(have) == ENT_DIGEST_HEX - 1 &&
        strspn(have, "0123456789abcdef") == ENT_DIGEST_HEX - 1)
        snprintf(dig, sizeof dig, "%s", have); /* a re-push: args may be sealed by now */
    else if (digest(klass, H->job_queue(job), H->job_args(job), dig))
        return H->fail(ctx, DRAY_ENOMEM, "out of memory");
    if (lock_key(ctx, dig, lk, sizeof lk) ||
        ent__key(qk, sizeof qk, ctx, "queue:", H->job_queue(job)) ||
        ent__key(sk, sizeof sk, ctx, "schedule", NULL) ||
        ent__key(rk, sizeof rk, ctx, "retry", NULL))
        return H->fail(ctx, DRAY_EINVAL, "key too long");
    /* A scheduled job holds its lock until it can have run: TTL + delay. */
    json_t *at = H->job_get(job, "at");
    double now = H->now(), delay = 0;
    char atbuf[32] = "";
    if (json_is_number(at) && json_number_value(at) > now) {
        delay = json_number_value(at) - now;
        snprintf(atbuf, sizeof atbuf, "%.6f", json_number_value(at));
    }
    char ttl[32], grace[32], scan[32];
    snprintf(ttl, sizeof ttl, "%lld", (long long)ceil((for_s + delay) * 1000));
    snprintf(grace, sizeof grace, "%.3f", E->unique_grace);
    snprintf(scan, sizeof scan, "%lld", E->unique_scan_max);
    const char *argv[10] = {lk, qk, sk, rk, H->job_jid(job), ttl, grace, H->ns(ctx), scan, atbuf};
    redisReply *r;
    int rc = H->eval(ctx, E->s_uniq_acquire, &r, 4, 10, argv, NULL);
    if (!rc && (r->type != REDIS_REPLY_ARRAY || r->elements < 2))
        rc = DRAY_EREDIS;
    if (rc) {
        if (r)
            freeReplyObject(r);
        return H->fail(ctx, rc, "unique lock for %s: %s", klass, H->redis_errstr(ctx));
    }
    int got = r->element[0]->integer == 1;
    if (!got) {
        H->log(ent__M, DRAY_LOG_INFO, "%s %s not unique: lock %s held by JID %s (%s); push dropped",
               klass, H->job_jid(job), dig, r->element[1]->str,
               r->elements > 2 ? r->element[2]->str : "?");
        freeReplyObject(r);
        return DRAY_DROP;
    }
    if (r->element[1]->str && r->element[1]->str[0] && strcmp(r->element[1]->str, H->job_jid(job)))
        H->log(ent__M, DRAY_LOG_INFO,
               "%s %s: took over unique lock %s from JID %s, which is no longer queued, scheduled, "
               "retrying or running",
               klass, H->job_jid(job), dig, r->element[1]->str);
    freeReplyObject(r);
    H->job_set(job, "unique_for", json_real(for_s));
    H->job_set(job, "unique_until", json_string(start ? "start" : "success"));
    H->job_set(job, "unique_key", json_string(dig));
    return DRAY_CONTINUE;
}

/* The job's lock key, or -1 when it is not a unique job. */
static int
job_lock(dray_ctx *ctx, const dray_job *job, char *buf, size_t len)
{
    const char *dig = json_string_value(H->job_get(job, "unique_key"));
    if (!dig || strlen(dig) != ENT_DIGEST_HEX - 1 || !json_is_number(H->job_get(job, "unique_for")))
        return -1;
    return lock_key(ctx, dig, buf, len);
}

static void
update(const ent_state *E, dray_ctx *ctx, const dray_job *job, const char *mode, const char *value)
{
    char lk[ENT_KEY_BYTES];
    if (job_lock(ctx, job, lk, sizeof lk))
        return;
    const char *argv[4] = {lk, H->job_jid(job), mode, value ? value : ""};
    if (H->eval(ctx, E->s_uniq_update, NULL, 1, 4, argv, NULL))
        H->log(ent__M, DRAY_LOG_WARN, "unique lock %s (%s of JID %s): %s; it expires with its TTL",
               lk, mode, H->job_jid(job), H->redis_errstr(ctx));
}

static int
until_start(const dray_job *job)
{
    const char *u = json_string_value(H->job_get(job, "unique_until"));
    return u && !strcmp(u, "start");
}

static int
uniq_before(dray_ctx *ctx, dray_job *job, void *ud)
{
    if (until_start(job))
        update(ud, ctx, job, "release", NULL);
    else
        update(ud, ctx, job, "run", H->identity(ctx));
    return DRAY_CONTINUE;
}

static void
uniq_after(dray_ctx *ctx, dray_job *job, int outcome, void *ud)
{
    if (until_start(job))
        return;
    if (outcome == DRAY_OUTCOME_SUCCESS || outcome == DRAY_OUTCOME_SKIPPED)
        update(ud, ctx, job, "release", NULL);
    else
        update(ud, ctx, job, "idle", NULL); /* retrying, deferred or requeued: still its owner */
}

static void
uniq_retry(dray_ctx *ctx, const dray_job *job, const char *ecls, const char *msg, int attempt,
           double next_at, void *ud)
{
    (void)ecls;
    (void)msg;
    (void)attempt;
    char score[32];
    snprintf(score, sizeof score, "%.6f", next_at);
    update(ud, ctx, job, "retry", score);
}

static void
uniq_death(dray_ctx *ctx, const dray_job *job, const char *ecls, const char *msg, void *ud)
{
    (void)ecls;
    (void)msg;
    update(ud, ctx, job, "release", NULL);
}

int
ent__unique_scripts(ent_state *E)
{
    int rc = H->script(ent__M, acquire_lua, &E->s_uniq_acquire);
    if (!rc)
        rc = H->script(ent__M, update_lua, &E->s_uniq_update);
    return rc;
}

int
ent__unique_hooks(ent_state *E)
{
    int rc;
    if ((rc = H->hook(ent__M, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .name = "unique",
                                        .priority = DRAY_PRIO_EARLY, .push = uniq_push,
                                        .push_wants = uniq_wants, .userdata = E))) ||
        (rc = H->hook(ent__M, DRAY_HOOK(.point = DRAY_HOOK_PERFORM, .name = "unique",
                                        .priority = DRAY_PRIO_EARLY, .before = uniq_before,
                                        .after = uniq_after, .userdata = E))) ||
        (rc = H->hook(ent__M, DRAY_HOOK(.point = DRAY_HOOK_RETRY, .name = "unique",
                                        .retry = uniq_retry, .userdata = E))) ||
        (rc = H->hook(ent__M, DRAY_HOOK(.point = DRAY_HOOK_DEATH, .name = "unique",
                                        .death = uniq_death, .userdata = E))))
        return rc;
    return 0;
}
