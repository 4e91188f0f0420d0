/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Test module gated by a license key, as dray-pro.so and
 * dray-enterprise.so will be: built as "lic_pro" (LICENSED_TIER
 * DRAY_LICENSE_TIER_PRO) and "lic_ent" (ENTERPRISE) with the throwaway
 * test key table (dray_add_module ... TEST_KEYS). It verifies the key the
 * operator configured through the license gate (dray/license_gate.h), as
 * the paid modules do.
 */
#include <stdint.h>
#include <string.h>

#include "dray/license.h"
#include "dray/license_gate.h"
#include "dray/module.h"

static dray_license_gate G;

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    int rc = dray_module_handshake(host, rec, LICENSED_NAME, "1.0.0",
                                   dray_license_tier_name(LICENSED_TIER), NULL);
    if (rc)
        return rc;
    if ((rc = dray_license_gate_open(&G, host, mod, LICENSED_NAME, LICENSED_TIER)))
        return rc;
    if (host->check_only(mod))
        return 0; /* `dray license check`: verdict only, start nothing */
    return dray_license_gate_hook(&G);
}
