/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Test modules the loader must refuse, one per MISFIT_* value (each built as
 * its own .so from this file by tests/module.cmake):
 *   MISFIT_NEWER_MINOR  record says ABI 1.(minor+1)
 *   MISFIT_NEWER_MAJOR  record says ABI (major+1).0
 *   MISFIT_BADSIG       build signature claims hiredis 99.1
 *   MISFIT_INITFAIL     stages a hook, then refuses with its own message;
 *                       the hook's userdata_free sets DRAY_TEST_MISFIT_FREED
 *   MISFIT_NOFILL       returns 0 without filling its record
 *   MISFIT_BADHOOK      ignores a refused registration (a hook without function)
 *   MISFIT_REQUIRES     requires module "absent"
 */
#include <stdlib.h>
#include <string.h>

#include "dray/module.h"

static const dray_host *H;

__attribute__((unused)) static int
push_noop(dray_ctx *ctx, dray_job *job, void *ud)
{
    (void)ctx;
    (void)job;
    (void)ud;
    return DRAY_CONTINUE;
}

__attribute__((unused)) static void
mark_freed(void *ud)
{
    H->free(ud);
    setenv("DRAY_TEST_MISFIT_FREED", "1", 1);
}

DRAY_MODULE_EXPORT int
dray_module_init(const dray_host *host, dray_module *mod, dray_module_record *rec)
{
    H = host;
#ifdef MISFIT_NOFILL
    (void)mod;
    (void)rec;
    return 0;
#else
    int rc = dray_module_handshake(host, rec, MISFIT_NAME, "0.0.1", "free", NULL);
    if (rc)
        return rc;
#if defined(MISFIT_NEWER_MINOR)
    rec->abi_minor = DRAY_ABI_MINOR + 1;
#elif defined(MISFIT_NEWER_MAJOR)
    rec->abi_major = DRAY_ABI_MAJOR + 1;
    rec->abi_minor = 0;
#elif defined(MISFIT_BADSIG)
    rec->sig.hiredis_major = 99;
    rec->sig.hiredis_minor = 1;
#elif defined(MISFIT_INITFAIL)
    rc = H->hook(mod, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .push = push_noop,
                                .userdata = H->strdup("staged"), .userdata_free = mark_freed));
    if (rc)
        return rc;
    return H->set_error(mod, "setting %s.token is not set; ask your administrator", MISFIT_NAME);
#elif defined(MISFIT_BADHOOK)
    (void)H->hook(mod, DRAY_HOOK(.point = DRAY_HOOK_PERFORM, .name = "empty"));
#elif defined(MISFIT_REQUIRES)
    rec->required = "absent";
#endif
    (void)mod;
    return 0;
#endif
}
