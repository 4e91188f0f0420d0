/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Builds a job with the installed library and prints it. */
#include <stdio.h>
#include <stdlib.h>
#include <dray/dray.h>

int
main(void)
{
    dray_job *job;
    if (dray_job_new("HelloJob", json_pack("[s]", "world"), &job))
        return 1;
    char *s;
    if (dray_job_dump(job, &s, NULL))
        return 1;
    printf("dray %s: %s\n", dray_version(), s);
    free(s);
    dray_job_free(job);
    return 0;
}
