/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Negative fixtures for the nm check, built WITHOUT dray_add_module:
 * LEAKY_EXPORT exports a second symbol; LEAKY_UNDEFINED calls libdray's
 * dray_job_class directly (an undefined dray_* symbol). nm_check.sh must
 * fail on both (tests marked WILL_FAIL).
 */
#include "dray/module.h"

#ifdef LEAKY_EXPORT
DRAY_MODULE_EXPORT int leaky_extra_symbol(void);
DRAY_MODULE_EXPORT int
leaky_extra_symbol(void)
{
    return 42;
}
#endif

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    (void)mod;
#ifdef LEAKY_UNDEFINED
    /* a reference to a core symbol (never called: the load must fail) */
    const char *(*volatile core_fn)(const dray_job *) = dray_job_class;
    if (core_fn == NULL)
        return -1;
#endif
    return dray_module_handshake(host, rec, "leaky", "0", "free", NULL);
}
