/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * The license gate every paid module runs in dray_module_init, and its
 * running-time tick (docs/licensing.md, "When the time is decided",
 * "Fleet continuity", "Processes"). Static, hidden: linked into modules
 * only, next to dray_licensing and one key table.
 *
 * Thread safety: open runs on the loading thread (module init); the tick
 * then runs on the heartbeat thread only. One gate per module.
 */
#ifndef DRAY_LICENSE_GATE_H
#define DRAY_LICENSE_GATE_H

#include "dray/license.h"
#include "dray/module.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRAY_LICENSE_REDIS_WAIT 60                /* default seconds init waits for Redis's clock */
#define DRAY_LICENSE_CLOCK_SKEW 60                /* Redis this far ahead "decided" a verdict */
#define DRAY_LICENSE_FLEET_SEEN_HOURS 24          /* a fleet counts if seen this recently */
#define DRAY_LICENSE_FLEET_DAYS 14                /* continuity lasts this long after grace */
#define DRAY_LICENSE_LIVE_S 180                   /* a process record this fresh is live */
#define DRAY_LICENSE_RECORD_S 60                  /* the tick's period: records and warnings */
#define DRAY_LICENSE_MIN_TIME INT64_C(1577836800) /* 2020-01-01: an earlier clock is wrong */

/* Caller-embedded (static storage in a module); no heap. */
typedef struct dray_license_gate {
    const dray_host *host;            /* from init */
    dray_module *mod;                 /* from init */
    const char *name;                 /* the module's name, for setting names in messages */
    dray_license_tier need;           /* tier the module needs */
    const char *key;                  /* borrowed from host->license_key (process lifetime) */
    const char *origin;               /* "setting license", "DRAY_LICENSE", ... */
    dray_license_info info;           /* the last verdict: init's, then the tick's */
    int continuity;                   /* 1: lapsed, running under fleet continuity */
    dray_license_state logged;        /* state of the last warning the tick logged */
    int64_t next_warn;                /* tick: when the current state warns again */
    int64_t next_procs_warn;          /* tick: when an over-count warns again */
    char msg[DRAY_LICENSE_MSG_BYTES]; /* the verdict line (status) */
} dray_license_gate;

/*
 * Decide the license in module init: the key the operator configured, at
 * the later of the local clock and Redis TIME. Waits up to
 * `<module>.license_wait` seconds (default 60) for Redis's clock before
 * judging; a lapsed key loads only under fleet continuity. Returns 0 with
 * g->info filled, the status set and warnings logged, or a refusal code with
 * the error text set (DRAY_ELICENSE, or the host's code for key sources).
 */
DRAY_LICENSE_WUR DRAY_LICENSE_NONNULL(1, 2, 3, 4) int dray_license_gate_open(
    dray_license_gate *g, const dray_host *host, dray_module *mod, const char *name,
    dray_license_tier need);

/*
 * Register the gate's tick (not in check mode): it re-judges the key at the
 * later clock every minute, warns daily when expiring and hourly in grace or
 * after, records this process under the license id in Redis and warns when
 * more processes use the license than it allows. Never stops anything.
 * Returns host->hook's code.
 */
DRAY_LICENSE_WUR DRAY_LICENSE_NONNULL(1) int dray_license_gate_hook(dray_license_gate *g);

#ifdef __cplusplus
}
#endif

#endif /* DRAY_LICENSE_GATE_H */
