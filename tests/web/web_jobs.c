/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Handler library for test_web: loaded by `dray run --require`. WebSleep
 * runs for args[0] milliseconds (so the Busy page has a running job to
 * show); WebOk returns at once; WebFail fails with a backtrace. */
#include <time.h>
#include <dray/dray.h>

static int
web_ok(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    return 0;
}

static int
web_sleep(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    json_int_t ms = json_integer_value(json_array_get(dray_job_args(job), 0));
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 0;
}

/* Fails with two backtrace lines, one of them hostile markup. */
static int
web_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    if (dray_result_backtrace_add(res, "web_jobs.c:30:in `web_fail'") ||
        dray_result_backtrace_add(res, "<script>window.__bt=1</script>"))
        return dray_result_fail(res, "NoMemory", "backtrace lines not kept");
    return dray_result_fail(res, "WebError", "<i>failed</i> %s", dray_job_jid(job));
}

__attribute__((visibility("default"))) int dray_register_handlers(dray_server *s);

int
dray_register_handlers(dray_server *s)
{
    int rc = dray_server_register(s, "WebOk", web_ok, NULL, NULL);
    rc = rc ? rc : dray_server_register(s, "WebFail", web_fail, NULL, NULL);
    return rc ? rc : dray_server_register(s, "WebSleep", web_sleep, NULL, NULL);
}
