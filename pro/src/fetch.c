/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Reliable fetch: the exclusive `fetch` provider.
 *
 * Every fetch moves one job atomically (LMOVE / BLMOVE) from its queue into
 * a private work-in-progress list of the fetching worker thread,
 * <ns>pro:fetch:wip:<identity>|<n> (n numbers the threads of a process).
 * If the process dies the lists are orphans: every live process looks for
 * orphans from its tick (not only at start), decides liveness by the
 * Sidekiq heartbeat hash <ns><identity> (gone, or its beat older than
 * pro.orphan_after: silent; then dead when the beat does not move for a
 * further confirmation window, so a Redis stall kills no live process),
 * takes a lease on each list (SET NX PX) so no two
 * processes recover it, and puts the jobs back at the head of their
 * queues. A job recovered pro.poison_after times is a poison pill: it goes
 * to the dead set with that reason instead.
 *
 * Acks are by identity, never by position. A worker thread knows exactly
 * what its list should hold: the job it runs, the jobs a batched fetch took
 * ahead (pro.fetch_batch N > 1, lists named <identity>|<n>|b), and the
 * finished jobs it has not acknowledged yet, whose payloads it keeps. The
 * hot path (one queue, single mode) is one plain LMOVE per job, like
 * BRPOP's one round trip. Every pro.ack_every finished jobs, before blocking on
 * an empty queue, and after any fetch that got no answer, the fetch is a
 * check script instead: it runs when the thread runs nothing and holds
 * nothing ahead, reads the whole list, matches each element against the
 * finished jobs by value, and puts anything else, a stray, back at the
 * head of its queue (its "queue" field): a pop this worker gave up on (the
 * connection timed out or dropped while Redis was stalled) that Redis
 * completed later. Strays are counted (pro:stat:strays) and logged, and
 * run, never dropped. Nothing removes elements it has not identified (no
 * LTRIM, no DEL of an unread list, no RPOP by count). pro.lazy_ack no, a
 * quiet server, and the tick for acks parked over ACK_STALE_S remove
 * finished jobs with LREM. Recovery of a dead process's list puts back
 * every element; finished jobs whose ack had not reached Redis when their
 * process died run again (at-least-once).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pro.h"

#define ACK_STALE_S 1.0     /* an ack not covered by a fetch this long is sent by the tick */
#define RECOVER_BATCH "100" /* jobs moved back per script call (keeps Redis responsive) */
#define FETCH_BACKLOG "16"  /* jobs that must wait per extra job a batched fetch takes */
#define MAX_BATCH 100       /* pro.fetch_batch upper bound */
#define FIN_MAX (PRO_ACK_EVERY_MAX + MAX_BATCH) /* finished jobs a slot may hold unacknowledged */
#define STACK_ARGS 64                           /* fetch script arguments that fit the stack */

/* The fetch with a check, and every fetch but the hot path. KEYS[1] the
 * thread's list, KEYS[2..] queues in order. ARGV[1] nf, ARGV[2..nf+1] the
 * finished jobs to acknowledge, then "1" to check the list, the extra jobs
 * wanted (pro.fetch_batch - 1, or 0), the backlog that makes each extra job
 * worth holding, and the namespace. A check reads the whole list (the
 * thread runs nothing now and holds nothing ahead): each element is one of
 * the finished jobs, matched by value, or a stray, which goes back to the
 * head of its queue (its "queue" field; oldest nearest the head); the
 * list, every element of which is now accounted for, is then deleted.
 * Then takes the first job of the first non-empty queue, and up to `extra`
 * more from that queue while at least `backlog` jobs per extra one still
 * wait (a worker never hoards a short queue that idle workers could
 * share). Returns {index or 0, nstrays, stray..., job, ahead...}. */
static const char fetch_lua[] =
    "local nf = tonumber(ARGV[1])\n"
    "local check, extra = ARGV[nf + 2] == '1', tonumber(ARGV[nf + 3])\n"
    "local backlog, ns = tonumber(ARGV[nf + 4]), ARGV[nf + 5]\n"
    "local out = {0, 0}\n"
    "if check then\n"
    "  local all = redis.call('LRANGE', KEYS[1], 0, -1)\n"
    "  if #all > 0 then\n"
    "    local fin = {}\n"
    "    for i = 2, nf + 1 do fin[ARGV[i]] = (fin[ARGV[i]] or 0) + 1 end\n"
    "    redis.call('DEL', KEYS[1])\n"
    "    for i = 1, #all do\n"
    "      local p = all[i]\n"
    "      local c = fin[p]\n"
    "      if c and c > 0 then\n"
    "        fin[p] = c - 1\n"
    "      else\n"
    "        local q = nil\n"
    "        local ok, job = pcall(cjson.decode, p)\n"
    "        if ok and type(job) == 'table' and type(job.queue) == 'string' and job.queue ~= '' "
    "then\n"
    "          q = job.queue\n"
    "        end\n"
    "        if q then\n"
    "          redis.call('RPUSH', ns .. 'queue:' .. q, p)\n"
    "          redis.call('SADD', ns .. 'queues', q)\n"
    "        else\n"
    "          redis.call('RPUSH', KEYS[2], p)\n"
    "        end\n"
    "        out[#out + 1] = p\n"
    "      end\n"
    "    end\n"
    "    out[2] = #out - 2\n"
    "    if out[2] > 0 then redis.call('INCRBY', ns .. 'pro:stat:strays', out[2]) end\n"
    "  end\n"
    "end\n"
    "for i = 2, #KEYS do\n"
    "  local v = redis.call('LMOVE', KEYS[i], KEYS[1], 'RIGHT', 'LEFT')\n"
    "  if v then\n"
    "    out[1] = i - 1\n"
    "    out[#out + 1] = v\n"
    "    if extra > 0 then\n"
    "      local n = math.min(extra, math.floor(redis.call('LLEN', KEYS[i]) / backlog))\n"
    "      for k = 1, n do\n"
    "        local w = redis.call('LMOVE', KEYS[i], KEYS[1], 'RIGHT', 'LEFT')\n"
    "        if not w then break end\n"
    "        out[#out + 1] = w\n"
    "      end\n"
    "    end\n"
    "    return out\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS[2i-1] the list job i is in, KEYS[2i] its queue; ARGV[i] job i.
 * Back to the head (RPUSH) only what is still in its list: a job recovered
 * by another process meanwhile is not pushed twice. Returns the number
 * pushed back. */
static const char requeue_lua[] = "local n = 0\n"
                                  "for i = 1, #ARGV do\n"
                                  "  if redis.call('LREM', KEYS[2 * i - 1], 1, ARGV[i]) > 0 then\n"
                                  "    redis.call('RPUSH', KEYS[2 * i], ARGV[i])\n"
                                  "    n = n + 1\n"
                                  "  end\n"
                                  "end\n"
                                  "return n\n";

/* KEYS[1] registry zset (member "<identity>|<n>[|b]", score first seen),
 * KEYS[2] the hash of silent members ("<beat>|<since>"), KEYS[3] the time
 * of the last check. ARGV[1] ns,
 * ARGV[2] my identity, ARGV[3] orphan_after s, ARGV[4] lease ms, ARGV[5]
 * the silence that confirms a death, s, ARGV[6] the TTL every beat gives
 * the heartbeat hash, s. A process is alive while its heartbeat hash holds
 * a beat younger than orphan_after: its age is the smaller of Redis TIME -
 * beat (the beat is the writer's clock) and TTL - PTTL (Redis's own clock:
 * no skew). One that looks older is only silent: it is dead when its beat
 * has not moved for ARGV[5] more seconds of this check's watch, so a Redis
 * stall, which ages every beat at once, kills no live process. Silence
 * counts only while somebody watched: when no check ran for ARGV[7] s (Redis
 * stalled, or every checker was stopped), every silent process's window
 * starts again, so it gets a whole window of a working Redis to beat in
 * (KEYS[3] holds the time of the last check). A process whose supervisor
 * saw it die (<ns>dray:gone:<identity>, written by dray run --processes)
 * is dead at once, however young. Empty lists
 * of dead processes leave the registry; for the others we take the lease.
 * Returns {member, beat-or-"", ...} we now hold. */
static const char orphans_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"
    "local after, confirm, ttl0 = tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local watched = tonumber(redis.call('GET', KEYS[3]) or '0')\n"
    "local blind = now - watched > tonumber(ARGV[7])\n"
    "redis.call('SET', KEYS[3], string.format('%.6f', now), 'EX', 86400)\n"
    "local out = {}\n"
    "local ms = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')\n"
    "for i = 1, #ms, 2 do\n"
    "  local m, seen = ms[i], tonumber(ms[i + 1])\n"
    "  local id = string.match(m, '^(.-)|') or m\n"
    "  local gone = redis.call('EXISTS', ARGV[1] .. 'dray:gone:' .. id) == 1\n"
    "  if id ~= ARGV[2] and (gone or now - seen > after) then\n"
    "    local beat = redis.call('HGET', ARGV[1] .. id, 'beat')\n"
    "    local b = beat and tonumber(beat)\n"
    "    local age = b and now - b\n"
    "    if b then\n"
    "      local pttl = redis.call('PTTL', ARGV[1] .. id)\n"
    "      if pttl > 0 and ttl0 - pttl / 1000 < age then age = ttl0 - pttl / 1000 end\n"
    "    end\n"
    "    if b and age <= after and not gone then\n"
    "      redis.call('HDEL', KEYS[2], m)\n"
    "    else\n"
    "      local s = redis.call('HGET', KEYS[2], m)\n"
    "      local sb, since = nil, nil\n"
    "      if s then sb, since = string.match(s, '^(.*)|([^|]*)$') end\n"
    "      if not gone and (not since or (beat and sb ~= beat) or blind) then\n"
    "        redis.call('HSET', KEYS[2], m, (beat or '') .. '|' .. string.format('%.6f', now))\n"
    "        redis.call('EXPIRE', KEYS[2], 86400)\n"
    "      elseif gone or now - tonumber(since) >= confirm then\n"
    "        local wip = ARGV[1] .. 'pro:fetch:wip:' .. m\n"
    "        if redis.call('LLEN', wip) == 0 then\n"
    "          if not beat then\n"
    "            redis.call('ZREM', KEYS[1], m)\n"
    "            redis.call('HDEL', KEYS[2], m)\n"
    "          end\n"
    "        elseif redis.call('SET', ARGV[1] .. 'pro:fetch:lease:' .. m, ARGV[2], 'NX', 'PX',\n"
    "                          ARGV[4]) then\n"
    "          out[#out + 1] = m\n"
    "          out[#out + 1] = beat or ''\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS[1] the orphaned list, KEYS[2] its lease, KEYS[3] the registry.
 * ARGV[1] ns, ARGV[2] my identity, ARGV[3] the list's registry member,
 * ARGV[4] poison_after, ARGV[5] poison window s, ARGV[6] lease ms, ARGV[7]
 * jobs per call, ARGV[8] now, ARGV[9] suspect delay s, ARGV[10] a random
 * seed. Every element goes back (acks are by value, so the list holds
 * only jobs not acknowledged). Oldest first, each job goes back to the head of its queue
 * (its "queue" field) after counting the recovery against its jid. A job
 * recovered before is a suspect: it goes to the schedule set for a random
 * 0.5 s .. suspect delay, so an innocent job that keeps sharing a process
 * with a poison pill gets to run apart from it. A job at poison_after is
 * returned instead, left in the list for the poison script. When the
 * process's supervisor named the job that killed it (<ns>dray:gone:<id>
 * holds its jid) only that job's recovery counts. A job whose jid is in
 * <ns>dray:gone:<id>:accounted (the supervisor already sent it to retry
 * after a timeout, or it was cancelled) is dropped from the list, not
 * requeued. Returns {"more"|"done", moved, dropped}, {"lost", 0} or
 * {"poison", moved, payload, n, dropped}. */
static const char recover_lua[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {'lost', 0} end\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[6])\n"
    "local ns = ARGV[1]\n"
    "local moved = 0\n"
    "local gone = ns .. 'dray:gone:' .. (string.match(ARGV[3], '^(.-)|') or ARGV[3])\n"
    "local culprit = redis.call('GET', gone)\n"
    "local accounted = gone .. ':accounted'\n"
    "local dropped = 0\n"
    "for n = 1, tonumber(ARGV[7]) do\n"
    "  local p = redis.call('LINDEX', KEYS[1], -1)\n"
    "  if not p then\n"
    "    redis.call('DEL', KEYS[2])\n"
    "    local id = string.match(ARGV[3], '^(.-)|') or ARGV[3]\n"
    "    if redis.call('EXISTS', ns .. id) == 0 then\n"
    "      redis.call('ZREM', KEYS[3], ARGV[3])\n"
    "      redis.call('HDEL', ns .. 'pro:fetch:silent', ARGV[3])\n"
    "    end\n"
    "    return {'done', moved, dropped}\n"
    "  end\n"
    "  local q, jid = 'default', nil\n"
    "  local ok, job = pcall(cjson.decode, p)\n"
    "  if ok and type(job) == 'table' then\n"
    "    if type(job.queue) == 'string' and job.queue ~= '' then q = job.queue end\n"
    "    if type(job.jid) == 'string' then jid = job.jid end\n"
    "  end\n"
    "  if jid and redis.call('SISMEMBER', accounted, jid) == 1 then\n"
    "    redis.call('RPOP', KEYS[1])\n"
    "    dropped = dropped + 1\n"
    "  else\n"
    "    local c = 0\n"
    "    if jid and not (culprit and culprit ~= '' and culprit ~= jid) then\n"
    "      local ck = ns .. 'pro:fetch:recovered:' .. jid\n"
    "      c = redis.call('INCR', ck)\n"
    "      redis.call('EXPIRE', ck, ARGV[5])\n"
    "      if c >= tonumber(ARGV[4]) then return {'poison', moved, p, c, dropped} end\n"
    "    end\n"
    "    redis.call('RPOP', KEYS[1])\n"
    "    local delay = tonumber(ARGV[9])\n"
    "    if c >= 2 and delay > 0 then\n"
    "      local f = tonumber(string.sub(redis.sha1hex(ARGV[10] .. jid), 1, 8), 16) / 4294967295\n"
    "      local at = tonumber(ARGV[8]) + 0.5 + f * math.max(delay - 0.5, 0)\n"
    "      redis.call('ZADD', ns .. 'schedule', string.format('%.6f', at), p)\n"
    "    else\n"
    "      redis.call('RPUSH', ns .. 'queue:' .. q, p)\n"
    "      redis.call('SADD', ns .. 'queues', q)\n"
    "    end\n"
    "    moved = moved + 1\n"
    "  end\n"
    "end\n"
    "return {'more', moved, dropped}\n";

/* KEYS[1] the orphaned list, KEYS[2] its lease, KEYS[3] dead zset, KEYS[4]
 * the job's recovery counter. ARGV[1] my identity, ARGV[2] the job as it
 * sits in the list, ARGV[3] the job for the dead set ("" discards it:
 * "dead": false), ARGV[4] now, ARGV[5] oldest score kept, ARGV[6] dead set
 * cap. The dead set is trimmed as Sidekiq trims it. Returns 1, 0 (not in
 * the list any more) or -1 (lease lost). */
static const char poison_lua[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end\n"
    "if redis.call('LREM', KEYS[1], -1, ARGV[2]) == 0 then return 0 end\n"
    "if ARGV[3] ~= '' then\n"
    "  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[5])\n"
    "  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[6]) + 1))\n"
    "end\n"
    "redis.call('DEL', KEYS[4])\n"
    "return 1\n";

static dray_script *s_fetch, *s_requeue, *s_orphans, *s_recover, *s_poison;

/* ---- per-worker state -------------------------------------------------------- */

/* A job this thread holds in its list: taken ahead by a batched fetch and
 * not handed to the core yet, or finished and not acknowledged yet. */
typedef struct held {
    char *queue;   /* queue name (jobs taken ahead; NULL for finished ones) */
    char *payload; /* the job, as in the list */
    size_t len;
} held;

/* One per thread that fetches: its list, the finished jobs its next fetch
 * acknowledges, and the jobs a batched fetch took ahead. The list of slots
 * (g_slots, under g_mu) lets the quiet hook and the tick reach them. The
 * fields after `registered` are under the slot's own mu (taken after g_mu
 * when both are needed), so workers never contend on a global lock. */
typedef struct slot {
    char ident[256];           /* identity of the server this thread works for */
    char member[300];          /* "<identity>|<n>[|b]": registry member, list suffix */
    char wip[PRO_KEY_BYTES];   /* its work-in-progress list */
    char procs[PRO_KEY_BYTES]; /* the registry */
    size_t qprefix;            /* strlen("<ns>queue:") */
    int batched;               /* pro.fetch_batch > 1: the "|b" kind of list */
    int registered;            /* member is in the registry */
    held fin[FIN_MAX];         /* finished jobs not acknowledged yet, oldest first */
    size_t nfin;
    unsigned long fin_gen; /* bumped whenever a fetch takes fin[] (the tick's acks check it) */
    double ack_at;         /* when fin[0] was parked */
    held ahead[MAX_BATCH]; /* batched mode: jobs taken ahead, next first */
    size_t nahead, first;
    int quiet;                /* the server is quiet: acks at once, nothing taken ahead */
    unsigned long flush_pass; /* the last flush_slots pass that handled it */
    int maybe_stray;    /* a fetch got no answer (or a job taken ahead could not be kept): the list
                           may hold jobs we do not know; the next fetch checks. Worker thread only */
    pthread_mutex_t mu; /* guards the fields above, from `fin` */
    struct slot *next;  /* g_slots */
} slot;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static slot *g_slots;      /* live slots and dead threads' leftovers */
static char **g_quiet_ids; /* identities whose servers went quiet */
static size_t g_nquiet;
static unsigned g_nslots; /* numbers the lists of this process */
static pthread_key_t g_key;
static _Thread_local slot *tl_slot;

/* Put a list in the registry that recovery watches (first-seen time as the
 * score, so a process is not judged before it could beat). Before the
 * first job enters the list, and again on every tick. */
static int
register_list(dray_ctx *ctx, const char *procs, const char *member)
{
    char now[32];
    pro__fmt_time(now, sizeof now, H->now());
    redisReply *r = NULL;
    const char *argv[5] = {"ZADD", procs, "NX", now, member};
    int rc = H->redis(ctx, &r, 5, argv, NULL);
    if (r)
        freeReplyObject(r);
    return rc;
}

static int
is_quiet_locked(const char *ident)
{
    for (size_t i = 0; i < g_nquiet; i++)
        if (!strcmp(g_quiet_ids[i], ident))
            return 1;
    return 0;
}

static int
holds_locked(const slot *s)
{
    return s->nfin || s->nahead;
}

/* A thread ended: its slot stays listed only while it holds something the
 * tick must still send; otherwise it goes. */
static void
slot_release(void *p)
{
    slot *s = p;
    pthread_mutex_lock(&g_mu);
    pthread_mutex_lock(&s->mu);
    int holds = holds_locked(s);
    pthread_mutex_unlock(&s->mu);
    if (!holds) {
        for (slot **pp = &g_slots; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        pthread_mutex_destroy(&s->mu);
        free(s);
    } else {
        s->ident[0] = '\0'; /* orphaned: only the tick touches it now */
    }
    pthread_mutex_unlock(&g_mu);
}

/* This thread's slot for ctx's server (made or refreshed on first use). */
static slot *
my_slot(dray_ctx *ctx)
{
    const char *ident = H->identity(ctx);
    slot *s = tl_slot;
    if (s && !strcmp(s->ident, ident))
        return s;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        pthread_mutex_init(&s->mu, NULL);
        pthread_setspecific(g_key, s);
        tl_slot = s;
        pthread_mutex_lock(&g_mu);
        s->next = g_slots;
        g_slots = s;
        pthread_mutex_unlock(&g_mu);
    }
    /* The names change under g_mu: the tick and the quiet hook read them. */
    pthread_mutex_lock(&g_mu);
    unsigned n = g_nslots++;
    snprintf(s->ident, sizeof s->ident, "%s", ident);
    s->batched = pro__cfg.fetch_batch > 1;
    snprintf(s->member, sizeof s->member, "%s|%u%s", ident, n, s->batched ? "|b" : "");
    pro__key(ctx, s->wip, sizeof s->wip, "pro:fetch:wip:%s", s->member);
    pro__key(ctx, s->procs, sizeof s->procs, "pro:fetch:procs");
    s->qprefix = strlen(H->ns(ctx)) + strlen("queue:");
    s->registered = 0;
    pthread_mutex_lock(&s->mu);
    s->quiet = is_quiet_locked(ident);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&g_mu);
    int reg = register_list(ctx, s->procs, s->member) == 0;
    pthread_mutex_lock(&g_mu);
    s->registered = reg;
    pthread_mutex_unlock(&g_mu);
    return s;
}

static int
lrem(dray_ctx *ctx, const char *wip, const char *payload, size_t len)
{
    const char *argv[5] = {"LREM", wip, "1", payload, NULL};
    size_t lens[4] = {4, strlen(wip), 1, len};
    redisReply *r = NULL;
    int rc = H->redis(ctx, &r, 4, argv, lens);
    if (r)
        freeReplyObject(r);
    return rc;
}

/* ---- the provider ------------------------------------------------------------- */

/* Fill a unit; its token is a copy of the list it is in. 1 or DRAY_ENOMEM. */
static int
fill_unit(dray_unit *out, const slot *s, const char *qname, const char *payload, size_t len)
{
    out->queue = H->strdup(qname);
    out->payload = H->alloc(len + 1);
    out->token = strdup(s->wip);
    if (!out->queue || !out->payload || !out->token) {
        H->free(out->queue);
        H->free(out->payload);
        free(out->token);
        out->queue = out->payload = NULL;
        out->token = NULL;
        return DRAY_ENOMEM;
    }
    memcpy(out->payload, payload, len);
    out->payload[len] = '\0';
    out->len = len;
    return 1;
}

static const char *
queue_name(const slot *s, const char *key)
{
    return strlen(key) > s->qprefix ? key + s->qprefix : "default";
}

/* Hand over the next job taken ahead, if any: 1, 0 (none) or DRAY_ENOMEM. */
static int
next_ahead(slot *s, dray_unit *out)
{
    pthread_mutex_lock(&s->mu);
    if (!s->nahead) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    held h = s->ahead[s->first];
    s->first++;
    if (--s->nahead == 0)
        s->first = 0;
    pthread_mutex_unlock(&s->mu);
    int rc = fill_unit(out, s, h.queue, h.payload, h.len);
    free(h.queue);
    free(h.payload);
    return rc;
}

/* Keep the jobs after the first of a batched fetch's reply (from r's
 * element `from` on) for the next fetches; they sit in the list already. */
static void
keep_ahead(slot *s, const redisReply *r, size_t from, const char *qname)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = from; i < r->elements && s->nahead < MAX_BATCH; i++) {
        held *h = &s->ahead[s->first + s->nahead];
        h->queue = strdup(qname);
        h->payload = malloc(r->element[i]->len + 1);
        if (!h->queue || !h->payload) {
            free(h->queue);
            free(h->payload);
            s->maybe_stray = 1; /* stays in the list: the next check puts it back */
            break;
        }
        memcpy(h->payload, r->element[i]->str, r->element[i]->len);
        h->payload[r->element[i]->len] = '\0';
        h->len = r->element[i]->len;
        s->nahead++;
    }
    pthread_mutex_unlock(&s->mu);
}

static void
free_held(held *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].queue);
        free(h[i].payload);
    }
}

/* Strays the fetch script put back: say which, so an operator can match
 * the log with a Redis stall. Worker thread. */
static void
log_strays(const slot *s, const redisReply *r, size_t n)
{
    atomic_fetch_add(&pro__stats.strays, (long long)n);
    for (size_t i = 0; i < n && 2 + i < r->elements; i++) {
        const redisReply *e = r->element[2 + i];
        json_error_t jerr;
        json_t *job = e->type == REDIS_REPLY_STRING ? H->json_load(e->str, e->len, 0, &jerr) : NULL;
        const char *jid = json_string_value(json_object_get(job, "jid"));
        const char *q = json_string_value(json_object_get(job, "queue"));
        H->log(M, DRAY_LOG_WARN,
               "job %s (queue %s) was in %s although this worker was not running it (a fetch "
               "it gave up on, e.g. during a Redis stall, completed later); put back at the head "
               "of its queue",
               jid ? jid : "?", q ? q : "?", s->wip);
        json_decref(job);
    }
}

/* Give the finished jobs taken by a fetch that got no answer back to the
 * slot, ahead of any parked since (none can be: the thread was fetching). */
static void
restore_fin(slot *s, held *fin, size_t nfin)
{
    pthread_mutex_lock(&s->mu);
    size_t room = FIN_MAX - s->nfin < nfin ? FIN_MAX - s->nfin : nfin;
    memmove(s->fin + room, s->fin, s->nfin * sizeof *s->fin);
    memcpy(s->fin, fin, room * sizeof *fin);
    if (!s->nfin)
        s->ack_at = H->now();
    s->nfin += room;
    pthread_mutex_unlock(&s->mu);
    free_held(fin + room, nfin - room); /* cannot happen; their list keeps them (run again) */
}

/* The fetch script; with check, it also acknowledges the finished jobs
 * and puts strays back. Returns 1 with out filled, 0 when every queue was
 * empty, or an error (the finished jobs are then kept, and the next fetch
 * checks: the script may have run without our seeing its answer). */
static int
fetch_script(dray_ctx *ctx, slot *s, const char *const *keys, size_t n, int check, dray_unit *out)
{
    held fin[FIN_MAX];
    size_t nfin = 0;
    pthread_mutex_lock(&s->mu);
    int quiet = s->quiet;
    if (check) {
        nfin = s->nfin;
        memcpy(fin, s->fin, nfin * sizeof *fin);
        s->nfin = 0;
        s->fin_gen++;
    }
    pthread_mutex_unlock(&s->mu);
    size_t argc = 1 + n + 1 + nfin + 4;
    const char *sargv[STACK_ARGS];
    size_t slens[STACK_ARGS];
    const char **argv = argc <= STACK_ARGS ? sargv : malloc(sizeof *argv * argc);
    size_t *lens = argc <= STACK_ARGS ? slens : malloc(sizeof *lens * argc);
    if (!argv || !lens) {
        if (argv != sargv)
            free(argv);
        if (lens != slens)
            free(lens);
        restore_fin(s, fin, nfin);
        return DRAY_ENOMEM;
    }
    char snfin[24], extra[24];
    snprintf(snfin, sizeof snfin, "%zu", nfin);
    snprintf(extra, sizeof extra, "%lld", quiet || !s->batched ? 0 : pro__cfg.fetch_batch - 1);
    const char *tail[4] = {check ? "1" : "0", extra, FETCH_BACKLOG, H->ns(ctx)};
    size_t k = 0;
    argv[k] = s->wip;
    lens[k++] = strlen(s->wip);
    for (size_t i = 0; i < n; i++) {
        argv[k] = keys[i];
        lens[k++] = strlen(keys[i]);
    }
    argv[k] = snfin;
    lens[k++] = strlen(snfin);
    for (size_t i = 0; i < nfin; i++) {
        argv[k] = fin[i].payload;
        lens[k++] = fin[i].len;
    }
    for (size_t i = 0; i < 4; i++) {
        argv[k] = tail[i];
        lens[k++] = strlen(tail[i]);
    }
    redisReply *r = NULL;
    int rc = H->eval(ctx, s_fetch, &r, (int)n + 1, (int)argc, argv, lens);
    if (argv != sargv)
        free(argv);
    if (lens != slens)
        free(lens);
    if (rc || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        restore_fin(s, fin, nfin);
        s->maybe_stray = 1;
        return rc ? rc : DRAY_EREDIS;
    }
    free_held(fin, nfin);
    if (check)
        s->maybe_stray = 0;
    long long idx = r->element[0]->integer;
    size_t nstray = r->element[1]->integer > 0 ? (size_t)r->element[1]->integer : 0;
    if (nstray)
        log_strays(s, r, nstray);
    rc = 0;
    if (idx >= 1 && (size_t)idx <= n && r->elements > 2 + nstray) {
        const char *qname = queue_name(s, keys[idx - 1]);
        const redisReply *job = r->element[2 + nstray];
        rc = fill_unit(out, s, qname, job->str, job->len);
        if (r->elements > 3 + nstray)
            keep_ahead(s, r, 3 + nstray, qname);
    }
    freeReplyObject(r);
    return rc;
}

/* Check now: something may be in the list that we do not know, or enough
 * finished jobs wait for their ack. */
static int
check_due(slot *s)
{
    pthread_mutex_lock(&s->mu);
    int due = s->maybe_stray || s->nfin >= (size_t)pro__cfg.ack_every;
    pthread_mutex_unlock(&s->mu);
    return due;
}

static int
has_fin(slot *s)
{
    pthread_mutex_lock(&s->mu);
    int any = s->nfin > 0;
    pthread_mutex_unlock(&s->mu);
    return any;
}

static int
fetch(dray_ctx *ctx, const char *const *keys, size_t n, double timeout_s, dray_unit *out, void *ud)
{
    (void)ud;
    if (n == 0)
        return 0;
    slot *s = my_slot(ctx);
    if (!s)
        return DRAY_ENOMEM;
    int rc = next_ahead(s, out);
    if (rc)
        return rc;
    if (!s->registered) { /* only this thread sets it to 1 */
        if ((rc = register_list(ctx, s->procs, s->member)))
            return rc; /* no job may enter a list recovery cannot find */
        pthread_mutex_lock(&g_mu);
        s->registered = 1;
        pthread_mutex_unlock(&g_mu);
    }
    int check = check_due(s);
    if (!check && n == 1 && !s->batched) {
        /* The hot path: one plain LMOVE. Finished jobs wait in the list,
         * known by value, for the next check (every pro.ack_every jobs, and
         * before blocking). */
        const char *argv[5] = {"LMOVE", keys[0], s->wip, "RIGHT", "LEFT"};
        redisReply *r = NULL;
        rc = H->redis(ctx, &r, 5, argv, NULL);
        if (rc) {
            if (r)
                freeReplyObject(r);
            s->maybe_stray = 1; /* it may have moved a job we never saw */
            return rc;
        }
        rc = r->type == REDIS_REPLY_STRING
                 ? fill_unit(out, s, queue_name(s, keys[0]), r->str, r->len)
                 : 0;
        freeReplyObject(r);
        if (rc)
            return rc;
        check = 1; /* empty: acknowledge and check before blocking */
    }
    if ((rc = fetch_script(ctx, s, keys, n, check, out)))
        return rc;
    if (!check && has_fin(s) && (rc = fetch_script(ctx, s, keys, n, 1, out)))
        return rc;

    /* Nothing ready: block. The list is empty now (its finished jobs
     * acknowledged, strays put back), so a BLMOVE that completes after we
     * gave up on it leaves a stray the next check finds. BLMOVE takes one
     * source, so with several queues we block briefly on the first of this
     * call's order (weighted orders rotate it) and the core calls again. */
    double wait = n == 1 ? timeout_s
                         : (pro__cfg.fetch_poll_s < timeout_s ? pro__cfg.fetch_poll_s : timeout_s);
    char tmo[32];
    snprintf(tmo, sizeof tmo, "%.3f", wait > 0.01 ? wait : 0.01);
    const char *bargv[6] = {"BLMOVE", keys[0], s->wip, "RIGHT", "LEFT", tmo};
    redisReply *r = NULL;
    rc = H->redis(ctx, &r, 6, bargv, NULL);
    if (rc) {
        if (r)
            freeReplyObject(r);
        s->maybe_stray = 1; /* Redis may complete it after we gave up */
        return rc;
    }
    rc = r->type == REDIS_REPLY_STRING ? fill_unit(out, s, queue_name(s, keys[0]), r->str, r->len)
                                       : 0;
    freeReplyObject(r);
    return rc;
}

/* Keep a finished job for the next check to acknowledge by value.
 * Returns 1 when parked, 0 when the caller must LREM it now. */
static int
park_fin(slot *s, const dray_unit *u, int even_quiet)
{
    char *copy = malloc(u->len + 1);
    pthread_mutex_lock(&s->mu);
    int park = (even_quiet || !s->quiet) && copy && s->nfin < FIN_MAX;
    if (park) {
        memcpy(copy, u->payload, u->len);
        copy[u->len] = '\0';
        if (!s->nfin)
            s->ack_at = H->now();
        s->fin[s->nfin++] = (held){NULL, copy, u->len};
        copy = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    free(copy);
    return park;
}

static int
ack(dray_ctx *ctx, const dray_unit *u, void *ud)
{
    (void)ud;
    const char *wip = u->token;
    slot *s = my_slot(ctx);
    int mine = s && wip && !strcmp(wip, s->wip);
    int rc = 0;
    if (mine && pro__cfg.lazy_ack && park_fin(s, u, 0)) {
        free(u->token); /* the next check (or the tick) acknowledges it */
        return 0;
    }
    if (wip)
        rc = lrem(ctx, wip, u->payload, u->len);
    if (rc && mine && park_fin(s, u, 1))
        rc = 0; /* no answer: the next check acknowledges it, it is not a stray */
    free(u->token);
    return rc;
}

/* Push jobs back to the heads of their queues, in one script: n jobs with
 * their lists, queue names and payloads. Jobs no longer in their list are
 * not pushed. */
static int
put_back_raw(dray_ctx *ctx, const char *const *wips, const char *const *queues,
             const char *const *payloads, const size_t *plens, size_t n)
{
    const char **argv = malloc(sizeof *argv * 3 * n);
    size_t *lens = malloc(sizeof *lens * 3 * n);
    char *qkeys = malloc(n * PRO_KEY_BYTES);
    if (!argv || !lens || !qkeys) {
        free(argv);
        free(lens);
        free(qkeys);
        return DRAY_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        char *qk = qkeys + i * PRO_KEY_BYTES;
        pro__key(ctx, qk, PRO_KEY_BYTES, "queue:%s", queues[i]);
        argv[2 * i] = wips[i];
        lens[2 * i] = strlen(wips[i]);
        argv[2 * i + 1] = qk;
        lens[2 * i + 1] = strlen(qk);
        argv[2 * n + i] = payloads[i];
        lens[2 * n + i] = plens[i];
    }
    redisReply *r = NULL;
    int rc = H->eval(ctx, s_requeue, &r, (int)(2 * n), (int)(3 * n), argv, lens);
    if (!rc && r && r->type == REDIS_REPLY_INTEGER && (size_t)r->integer != n)
        H->log(M, DRAY_LOG_WARN,
               "requeue: %zu of %zu jobs were no longer in their lists (recovered by another "
               "process meanwhile); they were not pushed twice",
               n - (size_t)r->integer, n);
    if (r)
        freeReplyObject(r);
    free(argv);
    free(lens);
    free(qkeys);
    return rc;
}

static int
put_back(dray_ctx *ctx, const dray_unit *const *units, size_t n)
{
    const char **w = malloc(sizeof *w * n), **q = malloc(sizeof *q * n),
               **p = malloc(sizeof *p * n);
    size_t *l = malloc(sizeof *l * n);
    int rc = DRAY_ENOMEM;
    if (w && q && p && l) {
        for (size_t i = 0; i < n; i++) {
            w[i] = units[i]->token ? units[i]->token : "";
            q[i] = units[i]->queue;
            p[i] = units[i]->payload;
            l[i] = units[i]->len;
        }
        rc = put_back_raw(ctx, w, q, p, l, n);
    }
    for (size_t i = 0; i < n; i++)
        free(units[i]->token);
    free(w);
    free(q);
    free(p);
    free(l);
    return rc;
}

static int
requeue(dray_ctx *ctx, const dray_unit *u, void *ud)
{
    (void)ud;
    return put_back(ctx, &u, 1);
}

static int
bulk_requeue(dray_ctx *ctx, const dray_unit *const *units, size_t n, void *ud)
{
    (void)ud;
    return n ? put_back(ctx, units, n) : 0;
}

/* ---- what slots hold back --------------------------------------------------- */

/* What flush_slots took from one slot, to send without the locks held. */
typedef struct taken {
    held fin[FIN_MAX], ahead[MAX_BATCH]; /* owned copies (or moved entries) */
    size_t nfin, nahead;
    unsigned long gen; /* the slot's fin_gen when fin[] was copied */
    slot *live;        /* the slot whose fin[] we copied; NULL: ended, freed */
    char wip[PRO_KEY_BYTES];
} taken;

/* Takes from the first slot not yet seen in pass mypass that has something
 * to flush for ident (see flush_slots) into *t; an ended slot is unlinked
 * and freed. 0 when no slot is left. Takes g_mu and the slot's lock. */
static int
take_slot(const char *ident, unsigned long mypass, double now, taken *t)
{
    int found = 0;
    pthread_mutex_lock(&g_mu);
    for (slot **pp = &g_slots; *pp; pp = &(*pp)->next) {
        slot *s = *pp;
        int ended = s->ident[0] == '\0';
        int mine = ident && !strcmp(s->ident, ident);
        pthread_mutex_lock(&s->mu);
        int stale = !ident && s->nfin && now - s->ack_at > ACK_STALE_S;
        if (s->flush_pass == mypass || !holds_locked(s) || !(mine || stale || (!ident && ended))) {
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        found = 1;
        s->flush_pass = mypass;
        snprintf(t->wip, sizeof t->wip, "%s", s->wip);
        if (ended) {
            t->nfin = s->nfin;
            memcpy(t->fin, s->fin, t->nfin * sizeof *t->fin);
            s->nfin = 0;
        } else {
            for (; t->nfin < s->nfin; t->nfin++) {
                held *h = &t->fin[t->nfin];
                h->queue = NULL;
                h->len = s->fin[t->nfin].len;
                h->payload = malloc(h->len + 1);
                if (!h->payload)
                    break; /* the rest waits for the next fetch or tick */
                memcpy(h->payload, s->fin[t->nfin].payload, h->len + 1);
            }
            t->gen = s->fin_gen;
            t->live = s;
        }
        if (mine || ended) {
            t->nahead = s->nahead;
            memcpy(t->ahead, s->ahead + s->first, t->nahead * sizeof *t->ahead);
            s->nahead = s->first = 0;
        }
        pthread_mutex_unlock(&s->mu);
        if (ended) {
            *pp = s->next;
            pthread_mutex_destroy(&s->mu);
            free(s);
        }
        break;
    }
    pthread_mutex_unlock(&g_mu);
    return found;
}

/* Acknowledges t's finished jobs (LREM from its in-progress list) and frees
 * them; once done, drops them from the live slot too, unless its thread took
 * them for a fetch meanwhile (that fetch acknowledged them as well). */
static void
ack_taken(dray_ctx *ctx, taken *t, double now)
{
    int rc = 0;
    for (size_t i = 0; i < t->nfin && !rc; i++)
        rc = lrem(ctx, t->wip, t->fin[i].payload, t->fin[i].len);
    if (rc)
        H->log(M, DRAY_LOG_ERROR,
               "cannot acknowledge finished jobs in %s (%s); if this process dies they will be "
               "recovered and run again",
               t->wip, H->redis_errstr(ctx));
    free_held(t->fin, t->nfin);
    if (!t->live || rc || !t->nfin)
        return;
    pthread_mutex_lock(&g_mu);
    for (slot *s = g_slots; s; s = s->next) {
        if (s != t->live)
            continue;
        pthread_mutex_lock(&s->mu);
        if (s->fin_gen == t->gen && s->nfin >= t->nfin) {
            free_held(s->fin, t->nfin);
            memmove(s->fin, s->fin + t->nfin, (s->nfin - t->nfin) * sizeof *s->fin);
            s->nfin -= t->nfin;
            s->ack_at = now;
        }
        pthread_mutex_unlock(&s->mu);
        break;
    }
    pthread_mutex_unlock(&g_mu);
}

/* Pushes t's jobs taken ahead back to the heads of their queues, newest
 * first so the oldest ends at the head; frees them. On failure they stay in
 * the in-progress list (logged), recovered when this process is gone. */
static void
put_back_ahead(dray_ctx *ctx, taken *t)
{
    const char *w[MAX_BATCH], *q[MAX_BATCH], *p[MAX_BATCH];
    size_t l[MAX_BATCH];
    size_t nahead = t->nahead;
    for (size_t i = 0; i < nahead; i++) {
        w[i] = t->wip;
        q[i] = t->ahead[nahead - 1 - i].queue;
        p[i] = t->ahead[nahead - 1 - i].payload;
        l[i] = t->ahead[nahead - 1 - i].len;
    }
    if (put_back_raw(ctx, w, q, p, l, nahead))
        H->log(M, DRAY_LOG_ERROR,
               "cannot push %zu jobs taken ahead back to their queues (%s); they stay in "
               "%s and are recovered when this process is gone",
               nahead, H->redis_errstr(ctx), t->wip);
    free_held(t->ahead, nahead);
}

/* Send what slots hold back: for every slot of `ident` (its server went
 * quiet) its acks and the jobs taken ahead (back to the heads of their
 * queues, in their order); with ident NULL (the tick) acks parked longer
 * than ACK_STALE_S, and everything of threads that ended. A live slot's
 * finished jobs are copied, not taken: if its thread fetches meanwhile,
 * both acknowledge them (LREM is idempotent), and the thread's fetch never
 * mistakes one for a stray. */
static void
flush_slots(dray_ctx *ctx, const char *ident)
{
    static unsigned long pass; /* under g_mu */
    double now = H->now();
    pthread_mutex_lock(&g_mu);
    unsigned long mypass = ++pass;
    pthread_mutex_unlock(&g_mu);
    for (;;) {
        taken t;
        t.nfin = t.nahead = 0;
        t.gen = 0;
        t.live = NULL;
        if (!take_slot(ident, mypass, now, &t))
            return;
        ack_taken(ctx, &t, now);
        if (t.nahead)
            put_back_ahead(ctx, &t);
    }
}

static void
on_quiet(dray_ctx *ctx, int point, void *ud)
{
    (void)point;
    (void)ud;
    const char *ident = H->identity(ctx);
    pthread_mutex_lock(&g_mu);
    if (!is_quiet_locked(ident)) {
        char **p = realloc(g_quiet_ids, sizeof *p * (g_nquiet + 1));
        char *c = strdup(ident);
        if (p && c) {
            g_quiet_ids = p;
            g_quiet_ids[g_nquiet++] = c;
        } else {
            if (p)
                g_quiet_ids = p;
            free(c);
        }
    }
    for (slot *s = g_slots; s; s = s->next)
        if (!strcmp(s->ident, ident)) {
            pthread_mutex_lock(&s->mu);
            s->quiet = 1;
            pthread_mutex_unlock(&s->mu);
        }
    pthread_mutex_unlock(&g_mu);
    flush_slots(ctx, ident);
}

/* ---- orphan recovery ------------------------------------------------------------ */

/* A poison pill: rewrite it with the reason, move it from the dead
 * process's list to the dead set (or drop it for "dead": false), and tell
 * its batch and the notifier. */
static int
poison(dray_ctx *ctx, const char *dead_id, const redisReply *payload, long long count,
       const char *wip, const char *lease)
{
    char dead[PRO_KEY_BYTES], counter[PRO_KEY_BYTES];
    pro__key(ctx, dead, sizeof dead, "dead");
    json_error_t jerr;
    /* the core's loader: a payload with an integer beyond 64 bits is still
     * a job (its jid, batch and "dead" count), and is written back exactly */
    json_t *job = H->json_load(payload->str, payload->len, 0, &jerr);
    const char *jid = json_string_value(json_object_get(job, "jid"));
    pro__key(ctx, counter, sizeof counter, "pro:fetch:recovered:%s", jid ? jid : "");
    double now = H->now();
    char msg[512];
    snprintf(msg, sizeof msg,
             "recovered %lld times from processes that died while running it (last: %s); "
             "treated as a poison pill",
             count, dead_id);
    char *dead_json = NULL;
    int discard = json_is_false(json_object_get(job, "dead"));
    if (job && !discard) {
        json_object_set_new(job, "error_class", json_string(PRO_POISON_CLASS));
        json_object_set_new(job, "error_message", json_string(msg));
        if (json_is_integer(json_object_get(job, "retry_count")))
            json_object_set_new(job, "retried_at", json_real(now));
        else
            json_object_set_new(job, "failed_at", json_real(now));
        dead_json = H->json_dump(job, JSON_COMPACT, NULL);
    }
    char snow[32], cutoff[32], cap[32];
    pro__fmt_time(snow, sizeof snow, now);
    pro__fmt_time(cutoff, sizeof cutoff, now - (double)PRO_DEAD_TIMEOUT_S);
    snprintf(cap, sizeof cap, "%d", PRO_DEAD_MAX_JOBS);
    const char *argv[10] = {wip,
                            lease,
                            dead,
                            counter,
                            H->identity(ctx),
                            payload->str,
                            discard     ? ""
                            : dead_json ? dead_json
                                        : payload->str,
                            snow,
                            cutoff,
                            cap};
    size_t lens[10];
    for (int i = 0; i < 10; i++)
        lens[i] = strlen(argv[i]);
    lens[5] = payload->len;
    if (!discard && !dead_json)
        lens[6] = payload->len; /* not JSON: the dead set gets it verbatim, as the core does */
    redisReply *r = NULL;
    int rc = H->eval(ctx, s_poison, &r, 4, 10, argv, lens);
    long long moved = !rc && r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    if (r)
        freeReplyObject(r);
    if (moved == 1) {
        atomic_fetch_add(&pro__stats.poisoned, 1);
        H->log(M, DRAY_LOG_ERROR, "job %s (%s) %s: %s", jid ? jid : "?",
               json_string_value(json_object_get(job, "class"))
                   ? json_string_value(json_object_get(job, "class"))
               : job ? "?"
                     : "malformed",
               discard ? "discarded (\"dead\": false)" : "moved to the dead set", msg);
        const char *bid = json_string_value(json_object_get(job, "bid"));
        if (bid && jid && (pro__cfg.features & DRAY_LICENSE_F_BATCHES))
            pro__batch_outcome(ctx, bid, jid, "death");
        if (pro__cfg.features & DRAY_LICENSE_F_NOTIFICATIONS)
            pro__notify_job_death(ctx, NULL, dead_json ? dead_json : payload->str, PRO_POISON_CLASS,
                                  msg);
    }
    H->free(dead_json);
    json_decref(job);
    return rc ? rc : moved < 0 ? DRAY_ESTATE : 0;
}

/* Drain one dead process's list while we hold its lease. */
static void
recover_list(dray_ctx *ctx, const char *member, const char *beat)
{
    char wip[PRO_KEY_BYTES], lease[PRO_KEY_BYTES], procs[PRO_KEY_BYTES], dead_id[300];
    pro__key(ctx, wip, sizeof wip, "pro:fetch:wip:%s", member);
    pro__key(ctx, lease, sizeof lease, "pro:fetch:lease:%s", member);
    snprintf(dead_id, sizeof dead_id, "%s", member);
    char *bar = strchr(dead_id, '|');
    if (bar)
        *bar = '\0'; /* the process identity, for messages */
    pro__key(ctx, procs, sizeof procs, "pro:fetch:procs");
    char pa[32], pw[32], lms[32];
    snprintf(pa, sizeof pa, "%lld", pro__cfg.poison_after);
    snprintf(pw, sizeof pw, "%lld", pro__cfg.poison_window_s);
    snprintf(lms, sizeof lms, "%lld", (long long)(pro__cfg.lease_s * 1000));
    char sd[32];
    snprintf(sd, sizeof sd, "%.3f", pro__cfg.suspect_delay_s);
    long long moved = 0, poisoned = 0, dropped = 0;
    const char *why = "done";
    for (int guard = 0; guard < 100000; guard++) {
        char now[32], seed[25];
        pro__fmt_time(now, sizeof now, H->now());
        pro__random_hex(seed, 24);
        const char *argv[13] = {wip,    lease, procs, H->ns(ctx), H->identity(ctx),
                                member, pa,    pw,    lms,        RECOVER_BATCH,
                                now,    sd,    seed};
        redisReply *r = NULL;
        int rc = pro__eval(ctx, s_recover, &r, 3, 13, argv);
        if (rc || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
            H->log(M, DRAY_LOG_ERROR, "recovering %s: %s", wip,
                   rc ? H->redis_errstr(ctx) : "unexpected reply");
            if (r)
                freeReplyObject(r);
            why = "error";
            break;
        }
        const char *state = r->element[0]->str;
        moved += r->element[1]->integer;
        size_t di = !strcmp(state, "poison") ? 4 : 2; /* where the count of dropped jobs is */
        if (r->elements > di && r->element[di]->type == REDIS_REPLY_INTEGER)
            dropped += r->element[di]->integer;
        if (!strcmp(state, "poison") && r->elements >= 4) {
            if (poison(ctx, dead_id, r->element[2], r->element[3]->integer, wip, lease) == 0)
                poisoned++;
            freeReplyObject(r);
            continue;
        }
        int more = !strcmp(state, "more");
        if (!more)
            why = !strcmp(state, "lost") ? "lease lost" : "done";
        freeReplyObject(r);
        if (!more)
            break;
    }
    if (dropped)
        H->log(M, DRAY_LOG_WARN,
               "dropped %lld job%s of dead process %s that its supervisor already accounted for "
               "(retried after a timeout, or cancelled)",
               dropped, dropped == 1 ? "" : "s", dead_id);
    if (moved || poisoned) {
        atomic_fetch_add(&pro__stats.recovered, moved);
        redisReply *r = NULL;
        H->redisf(ctx, &r, "INCRBY %spro:stat:recovered %lld", H->ns(ctx), moved);
        if (r)
            freeReplyObject(r);
        double ago = beat && *beat ? H->now() - strtod(beat, NULL) : -1;
        char agos[64] = "no heartbeat left";
        if (ago >= 0)
            snprintf(agos, sizeof agos, "last beat %.0f s ago", ago);
        char pois[64] = "";
        if (poisoned)
            snprintf(pois, sizeof pois, ", %lld poison pill%s to the dead set", poisoned,
                     poisoned == 1 ? "" : "s");
        H->log(M, DRAY_LOG_WARN, "recovered %lld orphaned job%s of dead process %s (%s)%s; %s",
               moved, moved == 1 ? "" : "s", dead_id, agos, pois, why);
    }
}

/* Find dead processes with jobs in their lists and recover each one we
 * get the lease for. Returns 0 or the Redis error. */
static int
recover_all(dray_ctx *ctx)
{
    char procs[PRO_KEY_BYTES], silent[PRO_KEY_BYTES], after[32], lms[32], confirm[32], ttl[32];
    pro__key(ctx, procs, sizeof procs, "pro:fetch:procs");
    pro__key(ctx, silent, sizeof silent, "pro:fetch:silent");
    snprintf(after, sizeof after, "%.3f", pro__cfg.orphan_after_s);
    snprintf(lms, sizeof lms, "%lld", (long long)(pro__cfg.lease_s * 1000));
    snprintf(confirm, sizeof confirm, "%.3f", pro__cfg.orphan_confirm_s);
    snprintf(ttl, sizeof ttl, "%d", PRO_BEAT_TTL_S);
    /* the longest gap between two checks of a healthy fleet: each process
     * checks every orphan_check s, from a heartbeat tick */
    double every = pro__cfg.orphan_check_s > pro__cfg.heartbeat_s ? pro__cfg.orphan_check_s
                                                                  : pro__cfg.heartbeat_s;
    char gap[32];
    snprintf(gap, sizeof gap, "%.3f", 2 * every + 1);
    char watched[PRO_KEY_BYTES];
    pro__key(ctx, watched, sizeof watched, "pro:fetch:watched");
    const char *argv[10] = {procs, silent, watched, H->ns(ctx), H->identity(ctx),
                            after, lms,    confirm, ttl,        gap};
    redisReply *r = NULL;
    int rc = pro__eval(ctx, s_orphans, &r, 3, 10, argv);
    if (rc || !r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return rc ? rc : DRAY_EREDIS;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        recover_list(ctx, r->element[i]->str, r->element[i + 1]->str);
    freeReplyObject(r);
    return 0;
}

static int
recover_at_start(dray_ctx *ctx, void *ud)
{
    (void)ud;
    return recover_all(ctx);
}

/* Every list of a live thread stays in the registry (a recoverer may have
 * dropped one whose heartbeat it missed). */
static void
refresh_registry(dray_ctx *ctx)
{
    char procs[PRO_KEY_BYTES];
    pro__key(ctx, procs, sizeof procs, "pro:fetch:procs");
    size_t cap = 64, n = 0;
    char(*members)[300] = malloc(cap * sizeof *members);
    if (!members)
        return;
    pthread_mutex_lock(&g_mu);
    for (slot *s = g_slots; s && n < cap; s = s->next)
        if (s->ident[0] && s->registered)
            snprintf(members[n++], sizeof members[0], "%s", s->member);
    pthread_mutex_unlock(&g_mu);
    for (size_t i = 0; i < n; i++)
        register_list(ctx, procs, members[i]);
    free(members);
}

static double
fetch_tick(dray_ctx *ctx, void *ud)
{
    (void)ud;
    flush_slots(ctx, NULL);
    refresh_registry(ctx);
    int rc = recover_all(ctx);
    if (rc)
        H->log(M, DRAY_LOG_ERROR, "orphan check failed: %s", H->redis_errstr(ctx));
    return pro__cfg.orphan_check_s;
}

int
pro__fetch_init(void)
{
    int rc;
    char eb[PRO_ERRNO_BYTES];
    if ((rc = pthread_key_create(&g_key, slot_release)))
        return H->set_error(M, "cannot create a thread key: %s", pro__syserr(rc, eb));
    if ((rc = pro__script(fetch_lua, &s_fetch)) || (rc = pro__script(requeue_lua, &s_requeue)) ||
        (rc = pro__script(orphans_lua, &s_orphans)) ||
        (rc = pro__script(recover_lua, &s_recover)) || (rc = pro__script(poison_lua, &s_poison)))
        return rc;
    rc = H->set_fetcher(M, DRAY_FETCHER(.name = "reliable", .fetch = fetch, .ack = ack,
                                        .requeue = requeue, .bulk_requeue = bulk_requeue,
                                        .recover = recover_at_start));
    if (rc)
        return H->set_error(M,
                            "cannot provide reliable fetch: %s (another module provides fetch; "
                            "set pro.reliable_fetch no to keep it)",
                            H->strerror(rc));
    if ((rc = H->hook(M,
                      DRAY_HOOK(.point = DRAY_HOOK_TICK, .name = "orphans", .tick = fetch_tick))) ||
        (rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_QUIET, .name = "acks", .event = on_quiet))))
        return H->set_error(M, "cannot register reliable fetch hooks: %s", H->strerror(rc));
    return 0;
}
