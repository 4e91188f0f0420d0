/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray-enterprise.so: the entry symbol. Checks the host, verifies the
 * license (tier enterprise; the features a configuration uses must be
 * licensed), parses every setting - a bad cron expression, time zone,
 * limiter name, unique rule or key file stops the load with a message
 * naming the setting, not a job at 3 a.m. - and registers the hooks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dray/license.h"
#include "dray/license_gate.h"

#include "ent.h"

const dray_host *ent__H;
dray_module *ent__M;

#define H ent__H

#define DEFAULT_LEASE 60.0 /* Sidekiq Enterprise's dear-leader TTL */

static void
state_free(void *ud)
{
    ent_state *E = ud;
    if (!E)
        return;
    ent__limits_free(E);
    ent__unique_free(E);
    ent__periodic_free(E);
    ent__crypto_free(E);
    pthread_mutex_destroy(&E->mu);
    free(E);
}

static double
on_tick(dray_ctx *ctx, void *ud)
{
    ent_state *E = ud;
    if (!E->leader_on && !E->nlim)
        return DRAY_TICK_STOP;
    if (E->leader_on && ent__leader_tick(E, ctx))
        ent__periodic_tick(E, ctx);
    if (E->nlim)
        ent__limits_tick(E, ctx);
    return 0;
}

static void
on_shutdown(dray_ctx *ctx, int point, void *ud)
{
    (void)point;
    ent_state *E = ud;
    if (E->leader_on)
        ent__leader_release(E, ctx);
}

/* Refuse with the licensing library's message when a feature in use is not
 * licensed. */
static int
need_feature(dray_license_info *info, int used, uint32_t feature)
{
    if (!used || (info->features & feature) == feature)
        return 0; /* the gate judged tier and dates (a lapsed key may run under continuity) */
    int lrc = DRAY_ELIC_MISSING_FEATURE;
    info->need_tier = DRAY_LICENSE_TIER_ENTERPRISE;
    info->need_feature = feature;
    char msg[DRAY_LICENSE_MSG_BYTES];
    dray_license_describe(lrc, info, msg, sizeof msg);
    H->set_error(ent__M, "%s (the configuration uses %s)", msg, dray_license_feature_name(feature));
    return DRAY_ELICENSE;
}

/* Every setting of the enterprise section this module reads: anything else
 * is a typo that would silently drop a limit, a lock or a loop. */
static const char *const g_settings[] = {
    "limiter",        "unique",       "unique_grace", "unique_scan_max", "encrypt", "encrypt_keys",
    "encrypt_active", "periodic",     "tz",           "backfill",        "leader",  "leader_lease",
    "test_clock",     "license_wait",
};

/* Levenshtein distance of a and b, capped at 3 (enough for "did you mean"). */
static int
distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 3;
    int row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb] < 3 ? row[lb] : 3;
}

static int
known_setting(const char *key, const char *value, void *ud)
{
    (void)value;
    (void)ud;
    const char *best = NULL;
    int bestd = 3;
    for (size_t i = 0; i < sizeof g_settings / sizeof *g_settings; i++) {
        if (!strcmp(key, g_settings[i]))
            return 0;
        int d = distance(key, g_settings[i]);
        if (d < bestd) {
            bestd = d;
            best = g_settings[i];
        }
    }
    if (best)
        H->set_error(ent__M, "unknown setting %s.%s (did you mean %s.%s?)", ENT_NAME, key, ENT_NAME,
                     best);
    else
        H->set_error(ent__M, "unknown setting %s.%s (docs/enterprise.md lists the settings)",
                     ENT_NAME, key);
    return DRAY_ECONFIG;
}

static int
configure(ent_state *E)
{
    char err[ENT_ERR_BYTES] = "";
    int rc;
    const char *clock;
    if ((rc = H->config_each(ent__M, NULL, known_setting, NULL)))
        return rc;
    if ((rc = ent__limits_configure(E, err, sizeof err)) ||
        (rc = ent__unique_configure(E, err, sizeof err)) ||
        (rc = ent__crypto_configure(E, err, sizeof err)) ||
        (rc = ent__periodic_configure(E, err, sizeof err)) ||
        (rc = H->config_bool(ent__M, "leader", 1, &E->leader_on)) ||
        (rc = H->config_double(ent__M, "leader_lease", DEFAULT_LEASE, 2, 3600, &E->lease)) ||
        (rc = H->config_str(ent__M, "test_clock", NULL, &clock))) {
        if (err[0]) /* else the host's typed getter set the message */
            H->set_error(ent__M, "%s", err);
        return rc == DRAY_ENOMEM ? rc : DRAY_ECONFIG;
    }
    if (E->nloops && !E->leader_on) {
        H->set_error(ent__M,
                     "setting %s.leader is off, but periodic jobs are enqueued by the "
                     "leader: turn it on or remove the %s.periodic loops",
                     ENT_NAME, ENT_NAME);
        return DRAY_ECONFIG;
    }
#ifdef ENT_TESTING
    E->test_clock = clock && *clock ? clock : NULL;
#else
    if (clock && *clock) {
        H->set_error(ent__M, "setting %s.test_clock exists in test builds only", ENT_NAME);
        return DRAY_ECONFIG;
    }
#endif
    return 0;
}

/* *owned is set once a staged hook owns E (its userdata_free then runs if
 * the load fails). */
static int
register_all(ent_state *E, int *owned)
{
    int rc;
    *owned = 0;
    if ((rc = ent__limits_scripts(E)) || (rc = ent__unique_scripts(E)) ||
        (rc = ent__leader_scripts(E)) || (rc = ent__periodic_scripts(E)) ||
        (rc = ent__crypto_scripts(E))) {
        H->set_error(ent__M, "cannot register Lua scripts: %s", H->strerror(rc));
        return rc;
    }
    if ((rc = H->hook(ent__M, DRAY_HOOK(.point = DRAY_HOOK_TICK, .name = "leader", .tick = on_tick,
                                        .userdata = E, .userdata_free = state_free))))
        return rc;
    *owned = 1;
    /* PERFORM order (ties break by registration): limits first, so a job
     * deferred by a limit never touches its unique lock or its secret;
     * decryption last, so nothing is deferred in plaintext. */
    if ((rc = H->hook(ent__M, DRAY_HOOK(.point = DRAY_HOOK_SHUTDOWN, .name = "leader",
                                        .event = on_shutdown, .userdata = E))) ||
        (rc = ent__limits_hooks(E)) || (rc = ent__unique_hooks(E)) || (rc = ent__crypto_hooks(E)))
        return rc;
    return 0;
}

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    int rc = dray_module_handshake(host, rec, ENT_NAME, ENT_VERSION,
                                   dray_license_tier_name(DRAY_LICENSE_TIER_ENTERPRISE), NULL);
    if (rc)
        return rc;
    ent__H = host;
    ent__M = mod;
    if (sodium_init() < 0)
        return H->set_error(mod, "libsodium failed to initialise");

    /* License: the gate (dray/license_gate.h) judges it by Redis's clock,
     * with fleet continuity, and its tick warns while running. */
    static dray_license_gate G;
    if ((rc = dray_license_gate_open(&G, host, mod, ENT_NAME, DRAY_LICENSE_TIER_ENTERPRISE)))
        return rc;
    dray_license_info info = G.info;
    const char *msg = G.msg;

    ent_state *E = calloc(1, sizeof *E);
    if (!E) {
        H->set_error(mod, "out of memory");
        return DRAY_ENOMEM;
    }
    pthread_mutex_init(&E->mu, NULL);
    E->features = info.features;
    if ((rc = configure(E)) || (rc = need_feature(&info, E->nlim > 0, DRAY_LICENSE_F_RATE_LIMIT)) ||
        (rc = need_feature(&info, E->nuniq > 0, DRAY_LICENSE_F_UNIQUE_JOBS)) ||
        (rc = need_feature(&info, E->nloops > 0, DRAY_LICENSE_F_PERIODIC)) ||
        (rc = need_feature(&info, E->nkeys > 0 || E->nenc > 0, DRAY_LICENSE_F_ENCRYPTION))) {
        state_free(E);
        return rc;
    }
    char enc[64] = "off";
    if (E->nkeys)
        snprintf(enc, sizeof enc, "key v%u of %zu", E->active, E->nkeys);
    H->set_status(mod, "%s; %zu limiter%s, %zu unique class%s, %zu periodic loop%s, encryption %s",
                  msg, E->nlim, E->nlim == 1 ? "" : "s", E->nuniq, E->nuniq == 1 ? "" : "es",
                  E->nloops, E->nloops == 1 ? "" : "s", enc);
    if (H->check_only(mod)) {
        state_free(E); /* `dray license check`: the verdict, and no work */
        return 0;
    }
    if ((rc = dray_license_gate_hook(&G))) {
        state_free(E);
        return H->set_error(mod, "cannot register the license tick: %s", H->strerror(rc));
    }
    int owned;
    if ((rc = register_all(E, &owned)) && !owned)
        state_free(E);
    return rc;
}
