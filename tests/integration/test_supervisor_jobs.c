/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Handler library for test_supervisor, loaded by `dray run --require`. Every
 * run appends "<class> <jid> <pid>\n" to $SUP_RUNLOG (O_APPEND: one write per
 * line, atomic across processes) before doing what its class says. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dray/dray.h>

static void
note(dray_job *job)
{
    const char *path = getenv("SUP_RUNLOG");
    if (!path)
        return;
    char line[256];
    int n = snprintf(line, sizeof line, "%s %s %d\n", dray_job_class(job), dray_job_jid(job),
                     (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) < 0)
            perror("runlog");
        close(fd);
    }
}

static int
ok(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    return 0;
}

static int
segv(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    raise(SIGSEGV);
    return 0;
}

static int
aborts(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    abort();
}

static int
spin(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    for (volatile unsigned long i = 0;; i++)
        ;
    return 0;
}

static int
oversleep(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    for (int i = 0; i < 600; i++)
        usleep(100000);
    return 0;
}

/* Thread mode: works until flagged past its deadline (at most 30 s), then
 * fails naming what it saw. */
static int
patient(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    note(job);
    double deadline = dray_job_deadline(job);
    for (int i = 0; i < 3000 && !dray_job_cancelled(job); i++)
        usleep(10000);
    return dray_result_fail(res, "PatientStop", "cancelled %d deadline %s", dray_job_cancelled(job),
                            deadline > 0 ? "set" : "none");
}

__attribute__((visibility("default"))) int dray_register_handlers(dray_server *s);

int
dray_register_handlers(dray_server *s)
{
    int rc = dray_server_register(s, "SupOk", ok, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "SupSegv", segv, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "SupAbort", aborts, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "SupSpin", spin, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "SupSleep", oversleep, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "SupPatient", patient, NULL, NULL);
    if (!rc) /* a per-class timeout; jobs may carry their own */
        rc = dray_server_set_timeout(s, "SupSleep", 1.0);
    return rc;
}
