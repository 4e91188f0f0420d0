/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/* Rate limits: what limiter.c shares with the fetch-time limits of
 * limit_fetch.c. */
#ifndef DRAY_ENT_LIMIT_H
#define DRAY_ENT_LIMIT_H

#include "ent.h"

/* Lua defining lim_now() and lim(base, typ, limit, ival, token, lockto,
 * ttl, name, index, take, now) -> ok, used, wait; prepended to scripts. */
extern const char ent__lim_lua[];

/* The six per-limiter script arguments (type, limit, interval,
 * lock_timeout, ttl, name) as strings. 0, or -1 when name is too long. */
int ent__lim_args(const ent_limiter *L, const char *name, char argv[6][64]);
/* One check that consumes on success: 1 taken, 0 over the limit (*wait:
 * seconds until there may be room), or a negative DRAY_E* code. */
int ent__lim_take(const ent_state *E, dray_ctx *ctx, const ent_limiter *L, const char *name,
                  const char *token, double *wait);
/* Give back a concurrent slot (base: the limiter's key). */
int ent__lim_release(const ent_state *E, dray_ctx *ctx, const char *base, const char *token);

/* limit_fetch.c */
int ent__fetch_scripts(ent_state *E);
int ent__fetch_register(ent_state *E);

#endif /* DRAY_ENT_LIMIT_H */
