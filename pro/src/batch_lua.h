/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * The batch scripts, shared by the module (batch.c: registration at push,
 * outcomes, callbacks) and the application helper (batch_api.c: create,
 * commit, reopen, rollback). docs/redis-keys.md documents every key.
 *
 * State of batch B, all under <ns>pro:batch:B (each key has a TTL: the
 * batch's `ttl` until it succeeds, then its `linger`):
 *   B                       hash: description, callback_queue, cb_<event>
 *                           (callback job templates), parent, created_at,
 *                           committed_at, <event>_at flags, total,
 *                           kids_total, ttl, linger, cb_<event>_done
 *   B:pending               jids not yet succeeded           (success)
 *   B:incomplete            jids that have not run once yet  (complete)
 *   B:failed                jids whose last run failed (failed_jids)
 *   B:dead                  jids that died
 *   B:open                  markers that hold callbacks back: "new" until
 *                           commit, "job:<jid>" while a member job reopens
 *   B:kids                  child bids
 *   B:kids:incomplete       children not complete yet
 *   B:kids:unsuccessful     children not successful yet
 *   B:jobkids:<jid>         children created by member job jid (committed
 *                           for it when its run ends)
 *   B:reg:<token>           jids a bulk push of the helper had counted (an
 *                           hour; deleted when the push returns)
 *
 * Exactly once: every change is a set operation (a job that runs twice
 * changes nothing the second time) and each callback is guarded by HSETNX
 * of <event>_at in the same script that enqueues its job. Nothing counts
 * down a bare integer.
 *
 * Every script starts with ARGV[1] = namespace; related batches (parent,
 * children) are found at run time, so batches need a single Redis (not
 * Cluster), as Sidekiq's do.
 */
#ifndef DRAY_PRO_BATCH_LUA_H
#define DRAY_PRO_BATCH_LUA_H

#include <stddef.h>
#include <stdio.h>

#include <sodium.h>

#define PRO_BATCH_LUA_LIB                                                                          \
    "local ns = ARGV[1]\n"                                                                         \
    "local function bk(bid, sfx) return ns .. 'pro:batch:' .. bid .. (sfx or '') end\n"            \
    "local SETS = {':pending', ':incomplete', ':failed', ':dead', ':open', ':kids',\n"             \
    "              ':kids:incomplete', ':kids:unsuccessful'}\n"                                    \
    "local function ttl_of(bid)\n"                                                                 \
    "  local t = redis.call('TTL', bk(bid))\n"                                                     \
    "  if t > 0 then return t end\n"                                                               \
    "  return 86400\n"                                                                             \
    "end\n"                                                                                        \
    "local function sadd(bid, sfx, m)\n"                                                           \
    "  local k = bk(bid, sfx)\n"                                                                   \
    "  local n = redis.call('SADD', k, m)\n"                                                       \
    "  if n == 1 and redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ttl_of(bid)) end\n"     \
    "  return n\n"                                                                                 \
    "end\n"                                                                                        \
    "local function expire_all(bid, ttl)\n"                                                        \
    "  redis.call('EXPIRE', bk(bid), ttl)\n"                                                       \
    "  for _, s in ipairs(SETS) do redis.call('EXPIRE', bk(bid, s), ttl) end\n"                    \
    "end\n"                                                                                        \
    "local function emit(bid, ev, now)\n"                                                          \
    "  local keep = redis.call('GET', ns .. 'pro:notify:on')\n"                                    \
    "  if not keep then return end\n"                                                              \
    "  local d = redis.call('HMGET', bk(bid), 'description', 'parent', 'total')\n"                 \
    "  local e = cjson.encode({event = 'batch.' .. ev, bid = bid, description = d[1] or '',\n"     \
    "    parent = d[2] or '', total = tonumber(d[3]) or 0,\n"                                      \
    "    pending = redis.call('SCARD', bk(bid, ':pending')),\n"                                    \
    "    failures = redis.call('SCARD', bk(bid, ':failed')), at = tonumber(now)})\n"               \
    "  local k = ns .. 'pro:notify:events'\n"                                                      \
    "  redis.call('LPUSH', k, e)\n"                                                                \
    "  redis.call('EXPIRE', k, keep)\n"                                                            \
    "end\n"                                                                                        \
    "local function fire(bid, ev, now, seed)\n"                                                    \
    "  local h = bk(bid)\n"                                                                        \
    "  if redis.call('HSETNX', h, ev .. '_at', now) == 0 then return 0 end\n"                      \
    "  local tmpl = redis.call('HGET', h, 'cb_' .. ev)\n"                                          \
    "  if tmpl and tmpl ~= '' then\n"                                                              \
    "    local q = redis.call('HGET', h, 'callback_queue')\n"                                      \
    "    if not q or q == '' then q = 'default' end\n"                                             \
    "    local jid = string.sub(redis.sha1hex(seed .. ':' .. bid .. ':' .. ev), 1, 24)\n"          \
    "    local job = '{\"jid\":\"' .. jid .. '\",\"created_at\":' .. now ..\n"                     \
    "      ',\"enqueued_at\":' .. now .. ',' .. string.sub(tmpl, 2)\n"                             \
    "    redis.call('SADD', ns .. 'queues', q)\n"                                                  \
    "    redis.call('LPUSH', ns .. 'queue:' .. q, job)\n"                                          \
    "  end\n"                                                                                      \
    "  redis.call('INCR', ns .. 'pro:stat:batch:' .. ev)\n"                                        \
    "  emit(bid, ev, now)\n"                                                                       \
    "  return 1\n"                                                                                 \
    "end\n"                                                                                        \
    "local function check(bid, now, seed)\n"                                                       \
    "  for depth = 1, 64 do\n"                                                                     \
    "    if not bid or bid == '' then return end\n"                                                \
    "    local h = bk(bid)\n"                                                                      \
    "    if redis.call('EXISTS', h) == 0 then return end\n"                                        \
    "    if redis.call('SCARD', bk(bid, ':open')) > 0 then return end\n"                           \
    "    local parent = redis.call('HGET', h, 'parent')\n"                                         \
    "    local moved = false\n"                                                                    \
    "    if redis.call('SCARD', bk(bid, ':incomplete')) == 0 and\n"                                \
    "       redis.call('SCARD', bk(bid, ':kids:incomplete')) == 0 then\n"                          \
    "      if fire(bid, 'complete', now, seed) == 1 then\n"                                        \
    "        moved = true\n"                                                                       \
    "        if parent and parent ~= '' then\n"                                                    \
    "          redis.call('SREM', bk(parent, ':kids:incomplete'), bid)\n"                          \
    "        end\n"                                                                                \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "    if redis.call('SCARD', bk(bid, ':pending')) == 0 and\n"                                   \
    "       redis.call('SCARD', bk(bid, ':kids:unsuccessful')) == 0 then\n"                        \
    "      if fire(bid, 'success', now, seed) == 1 then\n"                                         \
    "        moved = true\n"                                                                       \
    "        expire_all(bid, tonumber(redis.call('HGET', h, 'linger')) or 86400)\n"                \
    "        if parent and parent ~= '' then\n"                                                    \
    "          redis.call('SREM', bk(parent, ':kids:unsuccessful'), bid)\n"                        \
    "        end\n"                                                                                \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "    if not moved then return end\n"                                                           \
    "    bid = parent\n"                                                                           \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local function die(bid, now, seed)\n"                                                         \
    "  for depth = 1, 64 do\n"                                                                     \
    "    if not bid or bid == '' then return end\n"                                                \
    "    if redis.call('EXISTS', bk(bid)) == 0 then return end\n"                                  \
    "    if fire(bid, 'death', now, seed) == 0 then return end\n"                                  \
    "    bid = redis.call('HGET', bk(bid), 'parent')\n"                                            \
    "  end\n"                                                                                      \
    "end\n"

/* ARGV: ns, bid, now, ttl, linger, description, callback_queue,
 * cb_complete, cb_success, cb_death (templates or ""), parent bid or "",
 * creator jid or "". Returns "ok", "exists", "noparent", "parentdone". */
static const char pro_batch_create_lua[] = PRO_BATCH_LUA_LIB
    "local bid, now, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])\n"
    "local h = bk(bid)\n"
    "if redis.call('EXISTS', h) == 1 then return 'exists' end\n"
    "local parent, creator = ARGV[11], ARGV[12]\n"
    "if parent ~= '' then\n"
    "  local ph = bk(parent)\n"
    "  if redis.call('EXISTS', ph) == 0 then return 'noparent' end\n"
    "  if redis.call('HEXISTS', ph, 'success_at') == 1 then return 'parentdone' end\n"
    "  local pt = redis.call('TTL', ph)\n"
    "  if pt > ttl then ttl = pt end\n"
    "  sadd(parent, ':kids', bid)\n"
    "  sadd(parent, ':kids:incomplete', bid)\n"
    "  sadd(parent, ':kids:unsuccessful', bid)\n"
    "  redis.call('HINCRBY', ph, 'kids_total', 1)\n"
    "  if creator ~= '' then sadd(parent, ':jobkids:' .. creator, bid) end\n"
    "end\n"
    "redis.call('HSET', h, 'bid', bid, 'created_at', now, 'description', ARGV[6],\n"
    "  'callback_queue', ARGV[7], 'cb_complete', ARGV[8], 'cb_success', ARGV[9],\n"
    "  'cb_death', ARGV[10], 'parent', parent, 'total', 0, 'kids_total', 0,\n"
    "  'linger', ARGV[5], 'ttl', ttl, 'version', 1)\n"
    "redis.call('EXPIRE', h, ttl)\n"
    "sadd(bid, ':open', 'new')\n"
    "local idx = ns .. 'pro:batches'\n"
    "redis.call('ZADD', idx, now, bid)\n"
    "redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. (tonumber(now) - ttl))\n"
    "if redis.call('TTL', idx) < ttl then redis.call('EXPIRE', idx, ttl) end\n"
    "return 'ok'\n";

/* The push hook. ARGV: ns, bid, jid, token ("" or the helper's bulk-push
 * token: the jid is also noted in B:reg:<token>, one hour, so the helper
 * can take out exactly the jobs that were counted but not written).
 * Returns "ok", "nobatch", "succeeded", "closed" (no open marker: not
 * between create/reopen and commit). */
static const char pro_batch_register_lua[] =
    PRO_BATCH_LUA_LIB "local bid, jid = ARGV[2], ARGV[3]\n"
                      "local h = bk(bid)\n"
                      "if redis.call('EXISTS', h) == 0 then return 'nobatch' end\n"
                      "if redis.call('HEXISTS', h, 'success_at') == 1 then return 'succeeded' end\n"
                      "if redis.call('SCARD', bk(bid, ':open')) == 0 then return 'closed' end\n"
                      "if sadd(bid, ':pending', jid) == 1 then\n"
                      "  sadd(bid, ':incomplete', jid)\n"
                      "  redis.call('HINCRBY', h, 'total', 1)\n"
                      "  if ARGV[4] and ARGV[4] ~= '' then\n"
                      "    local rk = bk(bid, ':reg:' .. ARGV[4])\n"
                      "    redis.call('SADD', rk, jid)\n"
                      "    redis.call('EXPIRE', rk, 3600)\n"
                      "  end\n"
                      "end\n"
                      "return 'ok'\n";

/* Register many jids at once, before the helper's bulk push writes them
 * (the push hook then skips its per-job script). ARGV: ns, bid, jid...
 * The jids are fresh (pro__prereg_jid of a new random token), so none is a
 * member already and all of them are incomplete. Returns "ok", "nobatch",
 * "succeeded" or "closed" (nothing registered). */
static const char pro_batch_register_many_lua[] = PRO_BATCH_LUA_LIB
    "local bid = ARGV[2]\n"
    "local h = bk(bid)\n"
    "if redis.call('EXISTS', h) == 0 then return 'nobatch' end\n"
    "if redis.call('HEXISTS', h, 'success_at') == 1 then return 'succeeded' end\n"
    "if redis.call('SCARD', bk(bid, ':open')) == 0 then return 'closed' end\n"
    "local p, inc = bk(bid, ':pending'), bk(bid, ':incomplete')\n"
    "local n = redis.call('SADD', p, unpack(ARGV, 3))\n"
    "redis.call('SADD', inc, unpack(ARGV, 3))\n"
    "for _, k in ipairs({p, inc}) do\n"
    "  if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ttl_of(bid)) end\n"
    "end\n"
    "redis.call('HINCRBY', h, 'total', n)\n"
    "return 'ok'\n";

/* The jid of the i-th job of a pre-registered bulk push with `token`: the
 * helper registers exactly these, and the module's first push hook gives
 * them to the jobs in order (job field "pro_prereg" = token). 24 hex
 * characters, like any jid. */
static inline void
pro__prereg_jid(const char *token, size_t i, char out[25])
{
    char in[64];
    unsigned char h[12];
    int n = snprintf(in, sizeof in, "%s:%zu", token, i);
    crypto_generichash(h, sizeof h, (const unsigned char *)in, (size_t)n, NULL, 0);
    sodium_bin2hex(out, 25, h, sizeof h);
}

/* Undo registrations whose push failed. ARGV: ns, bid, jid... Returns how
 * many were taken out. */
static const char pro_batch_unregister_lua[] =
    PRO_BATCH_LUA_LIB "local bid, n = ARGV[2], 0\n"
                      "for i = 3, #ARGV do\n"
                      "  if redis.call('SREM', bk(bid, ':pending'), ARGV[i]) == 1 then\n"
                      "    redis.call('SREM', bk(bid, ':incomplete'), ARGV[i])\n"
                      "    redis.call('HINCRBY', bk(bid), 'total', -1)\n"
                      "    n = n + 1\n"
                      "  end\n"
                      "end\n"
                      "return n\n";

/* ARGV: ns, bid, marker ("new" or "job:<jid>"), now, seed, allow_empty
 * ("1"). Returns "ok", "nobatch", "notopen", "empty". Callbacks that are
 * due fire here (an empty batch completes and succeeds at once). */
static const char pro_batch_commit_lua[] = PRO_BATCH_LUA_LIB
    "local bid, marker, now, seed = ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
    "local h = bk(bid)\n"
    "if redis.call('EXISTS', h) == 0 then return 'nobatch' end\n"
    "if redis.call('SISMEMBER', bk(bid, ':open'), marker) == 0 then return 'notopen' end\n"
    "if ARGV[6] ~= '1' and marker == 'new' and tonumber(redis.call('HGET', h, 'total')) == 0\n"
    "   and tonumber(redis.call('HGET', h, 'kids_total')) == 0 then return 'empty' end\n"
    "redis.call('SREM', bk(bid, ':open'), marker)\n"
    "redis.call('HSETNX', h, 'committed_at', now)\n"
    "check(bid, now, seed)\n"
    "return 'ok'\n";

/* A member job adds to its own batch. ARGV: ns, bid, jid. Returns "ok",
 * "nobatch", "succeeded", "notmember" (jid is not a pending member). */
static const char pro_batch_reopen_lua[] = PRO_BATCH_LUA_LIB
    "local bid, jid = ARGV[2], ARGV[3]\n"
    "local h = bk(bid)\n"
    "if redis.call('EXISTS', h) == 0 then return 'nobatch' end\n"
    "if redis.call('HEXISTS', h, 'success_at') == 1 then return 'succeeded' end\n"
    "if redis.call('SISMEMBER', bk(bid, ':pending'), jid) == 0 then return 'notmember' end\n"
    "sadd(bid, ':open', 'job:' .. jid)\n"
    "return 'ok'\n";

/* A member's run ended. ARGV: ns, bid, jid, kind ("success", "failure",
 * "death"), now, seed. Also commits what the run left open: its reopen
 * marker and the child batches it created. Returns "ok", "ignored" (not a
 * pending member: ran before, or never registered), "nobatch". */
static const char pro_batch_outcome_lua[] = PRO_BATCH_LUA_LIB
    "local bid, jid, kind, now, seed = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]\n"
    "local h = bk(bid)\n"
    "if redis.call('EXISTS', h) == 0 then return 'nobatch' end\n"
    "local changed = redis.call('SREM', bk(bid, ':open'), 'job:' .. jid) == 1\n"
    "local jk = bk(bid, ':jobkids:' .. jid)\n"
    "for _, kid in ipairs(redis.call('SMEMBERS', jk)) do\n"
    "  if redis.call('SREM', bk(kid, ':open'), 'new') == 1 then check(kid, now, seed) end\n"
    "end\n"
    "redis.call('DEL', jk)\n"
    "local member = redis.call('SISMEMBER', bk(bid, ':pending'), jid) == 1\n"
    "if member then\n"
    "  if kind == 'success' then\n"
    "    redis.call('SREM', bk(bid, ':pending'), jid)\n"
    "    redis.call('SREM', bk(bid, ':incomplete'), jid)\n"
    "    redis.call('SREM', bk(bid, ':failed'), jid)\n"
    "    changed = true\n"
    "  else\n"
    "    if redis.call('SREM', bk(bid, ':incomplete'), jid) == 1 then changed = true end\n"
    "    sadd(bid, ':failed', jid)\n"
    "    if kind == 'death' and sadd(bid, ':dead', jid) == 1 then\n"
    "      die(bid, now, seed)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if changed then check(bid, now, seed) end\n"
    "if member then return 'ok' end\n"
    "return 'ignored'\n";

#endif /* DRAY_PRO_BATCH_LUA_H */
