/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* An example handler library: `dray run --require ./libdemo_jobs.so`.
 * It exports one symbol, dray_register_handlers (declared in dray.h), which
 * registers the job classes this library can run. */
#include <string.h>
#include <dray/dray.h>

/* ImageResize: args [width, height]; "resizes" by computing a checksum. */
static int
image_resize(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    json_t *args = dray_job_args(job);
    json_int_t w = json_integer_value(json_array_get(args, 0));
    json_int_t h = json_integer_value(json_array_get(args, 1));
    if (w <= 0 || h <= 0)
        return dray_result_fail(res, "ArgumentError",
                                "width and height must be positive, got %lld x %lld", (long long)w,
                                (long long)h);
    volatile unsigned sum = 0;
    for (json_int_t i = 0; i < (w + h) % 64; i++)
        sum += (unsigned)i * 2654435761u;
    return 0;
}

/* Flaky: fails for one item in five, to show the retry path. */
static int
flaky(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    json_int_t n = json_integer_value(json_array_get(dray_job_args(job), 0));
    if (n % 500 == 99)
        return dray_result_fail(res, "Timeout::Error", "upstream timed out for item %lld",
                                (long long)n);
    return 0;
}

int
dray_register_handlers(dray_server *s)
{
    int rc = dray_server_register(s, "ImageResize", image_resize, NULL, NULL);
    if (rc)
        return rc;
    dray_class_opts flaky_opts;
    memset(&flaky_opts, 0, sizeof flaky_opts);
    flaky_opts.retry = 5;
    return dray_server_register(s, "Flaky", flaky, NULL, &flaky_opts);
}
