/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray-pro.so: the entry point. Verifies the license (tier pro or higher)
 * before anything else, reads the `pro.*` settings, warns when Redis may
 * evict our keys, and registers each licensed feature: reliable fetch
 * (fetch.c), batches (batch.c), expiring jobs (expiry.c) and webhook
 * notifications (notify.c). docs/pro.md is the user's manual.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "dray/license.h"
#include "dray/license_gate.h"
#include "pro.h"

const dray_host *pro__host;
dray_module *pro__mod;
pro__settings pro__cfg;
pro__counters pro__stats;

/* ---- helpers ----------------------------------------------------------------- */

char *
pro__key(dray_ctx *ctx, char *buf, size_t n, const char *fmt, ...)
{
    int k = snprintf(buf, n, "%s", H->ns(ctx));
    if (k < 0 || (size_t)k >= n)
        k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return buf;
}

const char *
pro__syserr(int e, char buf[PRO_ERRNO_BYTES])
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    /* GNU strerror_r may return a static string instead of filling buf */
    const char *s = strerror_r(e, buf, PRO_ERRNO_BYTES);
    if (s != buf)
        snprintf(buf, PRO_ERRNO_BYTES, "%s", s);
#else
    if (strerror_r(e, buf, PRO_ERRNO_BYTES))
        snprintf(buf, PRO_ERRNO_BYTES, "error %d", e);
#endif
    return buf;
}

int
pro__script(const char *lua, dray_script **out)
{
    int rc = H->script(M, lua, out);
    if (rc)
        return H->set_error(M, "cannot register a Lua script: %s", H->strerror(rc));
    return 0;
}

int
pro__eval(dray_ctx *ctx, dray_script *s, redisReply **out, int nkeys, int argc, const char **argv)
{
    *out = NULL;
    return H->eval(ctx, s, out, nkeys, argc, argv, NULL);
}

void
pro__fmt_time(char *buf, size_t n, double t)
{
    snprintf(buf, n, "%.6f", t);
}

void
pro__random_hex(char *out, size_t hexlen)
{
    unsigned char raw[64];
    size_t nb = (hexlen + 1) / 2;
    if (nb > sizeof raw)
        nb = sizeof raw;
    randombytes_buf(raw, nb);
    static const char hex[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < hexlen && i / 2 < nb; i++)
        out[i] = hex[(raw[i / 2] >> ((i % 2) ? 0 : 4)) & 0xf];
    out[i] = '\0';
}

/* ---- license ----------------------------------------------------------------- */

/* The license gate (dray/license_gate.h): Redis's clock, fleet continuity,
 * process records, and the tick that warns while running. */
static dray_license_gate G;
#define g_license (G.info)

/* ---- settings ------------------------------------------------------------------ */

static const struct {
    uint32_t bit;
    const char *setting; /* pro.<setting> switches the feature off */
} g_feature_switch[] = {
    {DRAY_LICENSE_F_BATCHES, "batches"},
    {DRAY_LICENSE_F_NOTIFICATIONS, "notifications"},
    {DRAY_LICENSE_F_RELIABLE_FETCH, "reliable_fetch"},
    {DRAY_LICENSE_F_EXPIRING_JOBS, "expiring_jobs"},
};

static int
read_settings(void)
{
    pro__settings *c = &pro__cfg;
    int rc, on;
    c->features = 0;
    for (size_t i = 0; i < sizeof g_feature_switch / sizeof *g_feature_switch; i++) {
        if ((rc = H->config_bool(M, g_feature_switch[i].setting, 1, &on)))
            return rc;
        uint32_t bit = g_feature_switch[i].bit;
        if (!on)
            continue;
        if (!(g_license.features & bit)) {
            H->log(M, DRAY_LOG_WARN, "%s: not included in this license; switched off",
                   dray_license_feature_name(bit));
            continue;
        }
        c->features |= bit;
    }
    if ((rc = H->config_double(M, "fetch_poll", 0.5, 0.05, 2.0, &c->fetch_poll_s)) ||
        (rc = H->config_int(M, "fetch_batch", 1, 1, 100, &c->fetch_batch)) ||
        (rc = H->config_double(M, "orphan_after", 60, 2, 86400, &c->orphan_after_s)) ||
        (rc = H->config_double(M, "orphan_check", 5, 0.1, 3600, &c->orphan_check_s)) ||
        (rc = H->config_int(M, "poison_after", 3, 1, 1000, &c->poison_after)) ||
        (rc = H->config_int(M, "poison_window", 86400, 60, 365LL * 86400, &c->poison_window_s)) ||
        (rc = H->config_double(M, "suspect_delay", 10, 0, 3600, &c->suspect_delay_s)) ||
        (rc = H->config_double(M, "recovery_lease", 60, 1, 3600, &c->lease_s)) ||
        (rc = H->config_bool(M, "lazy_ack", 1, &c->lazy_ack)) ||
        (rc = H->config_int(M, "ack_every", 32, 1, PRO_ACK_EVERY_MAX, &c->ack_every)) ||
        (rc = H->config_double(M, "webhook_timeout", 10, 0.1, 300, &c->webhook_timeout_s)) ||
        (rc = H->config_int(M, "webhook_attempts", 20, 1, 1000, &c->webhook_attempts)) ||
        (rc = H->config_double(M, "webhook_poll", 1, 0.05, 60, &c->webhook_poll_s)) ||
        (rc = H->config_double(M, "webhook_backoff", 5, 0.1, 3600, &c->webhook_backoff_s)) ||
        (rc = H->config_int(M, "webhook_keep", 30LL * 86400, 3600, 365LL * 86400,
                            &c->webhook_keep_s)) ||
        (rc = H->config_bool(M, "require_noeviction", 0, &c->require_noeviction)))
        return rc;
    /* Liveness is judged by heartbeats: orphan_after must span several, or
     * healthy processes are taken for dead and their jobs run twice. */
    c->heartbeat_s = DRAY_HOST_HAS(H, heartbeat_interval) ? H->heartbeat_interval(M) : 0;
    if ((c->features & DRAY_LICENSE_F_RELIABLE_FETCH) && c->heartbeat_s > 0 &&
        c->orphan_after_s < PRO_ORPHAN_BEATS * c->heartbeat_s)
        return H->set_error(M,
                            "setting pro.orphan_after %g s is below %d heartbeats (heartbeat %g "
                            "s): live processes would be taken for dead and their jobs run "
                            "twice; set pro.orphan_after to %g or more, or heartbeat to %g or less",
                            c->orphan_after_s, PRO_ORPHAN_BEATS, c->heartbeat_s,
                            PRO_ORPHAN_BEATS * c->heartbeat_s,
                            c->orphan_after_s / PRO_ORPHAN_BEATS);
    c->orphan_confirm_s = 2 * (c->heartbeat_s > 0 ? c->heartbeat_s : 5) + PRO_RECONNECT_S;
    return 0;
}

/* Batches and reliable fetch keep their state in keys that must never be
 * evicted: an evicted pending set fires callbacks early or never, an
 * evicted working list loses jobs (Sidekiq #4818). */
static int
check_eviction(void)
{
    dray_ctx *lc = H->load_ctx(M);
    redisReply *r = NULL;
    int rc = lc ? H->redisf(lc, &r, "CONFIG GET maxmemory-policy") : DRAY_ECONN;
    const char *policy = NULL;
    if (!rc && r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING)
        policy = r->element[1]->str;
    int out = 0;
    if (!policy) {
        H->log(M, DRAY_LOG_WARN,
               "cannot read Redis maxmemory-policy (%s); make sure it is noeviction, or batch and "
               "reliable-fetch keys may be evicted",
               rc ? H->strerror(rc) : "CONFIG GET not allowed");
    } else if (strcmp(policy, "noeviction") != 0) {
        if (pro__cfg.require_noeviction)
            out = H->set_error(M,
                               "Redis maxmemory-policy is %s; pro.require_noeviction asks for "
                               "noeviction (CONFIG SET maxmemory-policy noeviction)",
                               policy);
        else
            H->log(M, DRAY_LOG_WARN,
                   "Redis maxmemory-policy is %s: under memory pressure Redis may evict batch "
                   "and reliable-fetch keys (callbacks fire early or never, in-progress jobs are "
                   "lost); set maxmemory-policy noeviction",
                   policy);
    }
    if (r)
        freeReplyObject(r);
    return out;
}

/* ---- entry point ----------------------------------------------------------------- */

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    int rc = dray_module_handshake(host, rec, PRO_NAME, PRO_VERSION, "pro", NULL);
    if (rc)
        return rc;
    H = host;
    M = mod;
    if (sodium_init() < 0)
        return H->set_error(M, "libsodium failed to initialise");
    if ((rc = dray_license_gate_open(&G, host, mod, PRO_NAME, DRAY_LICENSE_TIER_PRO)))
        return rc;
    if ((rc = read_settings()))
        return rc;
    if (H->check_only(M))
        return 0; /* `dray license check`: the verdict only, start nothing */
    if ((rc = check_eviction()))
        return rc;
    if ((rc = dray_license_gate_hook(&G)))
        return H->set_error(M, "cannot register the license tick: %s", H->strerror(rc));
    /* Notifications first: batches and fetch emit events through it. */
    if ((pro__cfg.features & DRAY_LICENSE_F_NOTIFICATIONS) && (rc = pro__notify_init()))
        return rc;
    if ((pro__cfg.features & DRAY_LICENSE_F_EXPIRING_JOBS) && (rc = pro__expiry_init()))
        return rc;
    if ((pro__cfg.features & DRAY_LICENSE_F_BATCHES) && (rc = pro__batch_init()))
        return rc;
    if ((pro__cfg.features & DRAY_LICENSE_F_RELIABLE_FETCH) && (rc = pro__fetch_init()))
        return rc;
    char feats[128] = "";
    for (size_t i = 0; i < sizeof g_feature_switch / sizeof *g_feature_switch; i++)
        if (pro__cfg.features & g_feature_switch[i].bit) {
            size_t n = strlen(feats);
            snprintf(feats + n, sizeof feats - n, "%s%s", n ? ", " : "",
                     dray_license_feature_name(g_feature_switch[i].bit));
        }
    H->log(M, DRAY_LOG_INFO, "features on: %s", feats[0] ? feats : "none");
    return 0;
}
