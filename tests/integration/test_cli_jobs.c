/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Handler library for test_cli: loaded by `dray run --require`. */
#include <dray/dray.h>

static int
ok(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    return 0;
}

static int
fail(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    return dray_result_fail(res, "CliError", "boom %s", dray_job_jid(job));
}

__attribute__((visibility("default"))) int dray_register_handlers(dray_server *s);

int
dray_register_handlers(dray_server *s)
{
    int rc = dray_server_register(s, "CliOk", ok, NULL, NULL);
    return rc ? rc : dray_server_register(s, "CliFail", fail, NULL, NULL);
}
