/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Test module gated by a license key, as dray-pro.so and
 * dray-enterprise.so will be: built as "lic_pro" (LICENSED_TIER
 * DRAY_LICENSE_TIER_PRO) and "lic_ent" (ENTERPRISE) with the throwaway
 * test key table (dray_add_module ... TEST_KEYS). It verifies the key the
 * operator configured at "now" = the later of the local clock and Redis
 * TIME, refuses with the licensing library's message, and logs expiring
 * (warning) and grace (error) states.
 */
#include <stdint.h>
#include <string.h>

#include "dray/license.h"
#include "dray/module.h"

static const dray_host *H;
static dray_module *M;

/* Licensing.md: the state is logged again once a day from a tick. */
static double
relog(dray_ctx *ctx, void *ud)
{
    (void)ctx;
    (void)ud;
    H->log(M, DRAY_LOG_DEBUG, "license still loaded (a running process is never stopped)");
    return 86400;
}

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    int rc = dray_module_handshake(host, rec, LICENSED_NAME, "1.0.0",
                                   dray_license_tier_name(LICENSED_TIER), NULL);
    if (rc)
        return rc;
    H = host;
    M = mod;
    const char *key, *origin;
    if ((rc = H->license_key(M, &key, &origin)))
        return rc; /* the host set the message (none configured, unreadable file) */
    double now = H->now(), rt;
    dray_ctx *lc = H->load_ctx(M);
    if (lc && H->redis_time(lc, &rt) == 0 && rt > now)
        now = rt;
    dray_license_info info;
    int lrc = dray_license_verify(key, strlen(key), (int64_t)now, &info);
    if (lrc == 0)
        lrc = dray_license_check(&info, LICENSED_TIER, 0);
    char msg[DRAY_LICENSE_MSG_BYTES];
    dray_license_describe(lrc, &info, msg, sizeof msg);
    if (lrc) {
        H->set_error(M, "%s (key from %s)", msg, origin ? origin : "?");
        return lrc;
    }
    H->set_status(M, "%s", msg);
    if (info.state == DRAY_LICENSE_EXPIRING)
        H->log(M, DRAY_LOG_WARN, "%s", msg);
    else if (info.state == DRAY_LICENSE_GRACE)
        H->log(M, DRAY_LOG_ERROR, "%s", msg);
    if (H->check_only(M))
        return 0; /* `dray license check`: verdict only, start nothing */
    return H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_TICK, .name = "license", .tick = relog));
}
