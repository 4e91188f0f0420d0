/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Leader election on Sidekiq Enterprise's `dear-leader` key (namespaced),
 * so Sidekiq's Web UI shows the leader badge: the key holds the leader's
 * identity with a lease (PX). Every tick (the heartbeat) a server renews
 * its lease if it leads, or takes the key if nobody does (SET NX), in one
 * script. A leader that cannot renew stops acting as leader a quarter of
 * the lease before the lease can end, so two processes never both believe
 * they lead because of a Redis outage; periodic enqueues are idempotent per
 * tick anyway.
 */
#include <stdio.h>
#include <string.h>

#include "ent.h"

#define H ent__H

/* KEYS[1] dear-leader; ARGV[1] identity, ARGV[2] lease ms.
 * {1, me}: renewed; {2, me}: elected; {0, holder}: someone else leads. */
static const char elect_lua[] = "local cur = redis.call('GET', KEYS[1])\n"
                                "if cur == ARGV[1] then\n"
                                "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                "  return {1, cur}\n"
                                "end\n"
                                "if not cur then\n"
                                "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
                                "  return {2, ARGV[1]}\n"
                                "end\n"
                                "return {0, cur}\n";

/* KEYS[1] dear-leader; ARGV[1] identity: step down if we lead. */
static const char release_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 0\n";

int
ent__leader_scripts(ent_state *E)
{
    int rc = H->script(ent__M, elect_lua, &E->s_leader);
    if (!rc)
        rc = H->script(ent__M, release_lua, &E->s_leader_release);
    return rc;
}

/* The slot for identity (a free one is claimed). Called with E->mu held. */
static ent_leader_slot *
slot_for(ent_state *E, const char *identity)
{
    ent_leader_slot *free_slot = NULL;
    for (int i = 0; i < ENT_LEADER_SLOTS; i++) {
        if (!strcmp(E->slots[i].identity, identity))
            return &E->slots[i];
        if (!free_slot && !E->slots[i].identity[0])
            free_slot = &E->slots[i];
    }
    if (free_slot)
        snprintf(free_slot->identity, sizeof free_slot->identity, "%s", identity);
    return free_slot;
}

int
ent__leader_tick(ent_state *E, dray_ctx *ctx)
{
    const char *me = H->identity(ctx);
    char key[ENT_KEY_BYTES], lease[32];
    if (ent__key(key, sizeof key, ctx, "dear-leader", NULL))
        return 0;
    snprintf(lease, sizeof lease, "%lld", (long long)(E->lease * 1000));
    pthread_mutex_lock(&E->mu);
    ent_leader_slot *rs = slot_for(E, me);
    int retired = rs && rs->retired;
    pthread_mutex_unlock(&E->mu);
    if (retired)
        return 0; /* shutting down: leadership was handed back */
    double t0 = H->now();
    redisReply *r;
    const char *argv[3] = {key, me, lease};
    int rc = H->eval(ctx, E->s_leader, &r, 1, 3, argv, NULL);
    if (!rc && (r->type != REDIS_REPLY_ARRAY || r->elements != 2))
        rc = DRAY_EREDIS;
    long long verdict = rc ? -1 : r->element[0]->integer;
    char holder[192] = "";
    if (!rc && r->element[1]->str)
        snprintf(holder, sizeof holder, "%s", r->element[1]->str);
    if (r)
        freeReplyObject(r);

    pthread_mutex_lock(&E->mu);
    ent_leader_slot *s = slot_for(E, me);
    int lead = 0;
    if (s) {
        int was = s->leader;
        double now = H->now();
        if (verdict >= 1) {
            s->leader = 1;
            s->valid_until = t0 + E->lease * 0.75;
        } else if (verdict == 0) {
            s->leader = 0;
        } else if (s->leader && now >= s->valid_until) {
            s->leader = 0; /* could not renew: out before the lease can end */
        }
        lead = s->leader && now < s->valid_until;
        if (lead && !was)
            H->log(ent__M, DRAY_LOG_INFO, "%s is now the leader (%s, lease %.0fs)", me, key,
                   E->lease);
        else if (!s->leader && was)
            H->log(ent__M, verdict < 0 ? DRAY_LOG_WARN : DRAY_LOG_INFO,
                   "%s stepped down as leader%s%s%s", me,
                   verdict < 0 ? ": cannot renew the lease: " : "; the leader is now ",
                   verdict < 0 ? H->redis_errstr(ctx) : holder, "");
    }
    pthread_mutex_unlock(&E->mu);
    return lead;
}

void
ent__leader_release(ent_state *E, dray_ctx *ctx)
{
    const char *me = H->identity(ctx);
    char key[ENT_KEY_BYTES];
    if (ent__key(key, sizeof key, ctx, "dear-leader", NULL))
        return;
    pthread_mutex_lock(&E->mu);
    ent_leader_slot *s = slot_for(E, me);
    int was = s && s->leader;
    if (s) {
        s->leader = 0;
        s->retired = 1;
    }
    pthread_mutex_unlock(&E->mu);
    const char *argv[2] = {key, me};
    redisReply *r;
    if (H->eval(ctx, E->s_leader_release, &r, 1, 2, argv, NULL) == 0 && was)
        H->log(ent__M, DRAY_LOG_INFO, "%s handed back leadership at shutdown", me);
    if (r)
        freeReplyObject(r);
}
