/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Handler library for test_cancel, loaded by `dray run --require`. Every run
 * appends "<class> <jid> <pid> <epoch-seconds>\n" to $CANCEL_RUNLOG (O_APPEND:
 * one write per line, atomic across processes) before doing what its class
 * says. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dray/dray.h>

/* Appends "<class> <prefix><jid> <pid> <now>" to $CANCEL_RUNLOG. */
static void
note_as(dray_job *job, const char *prefix)
{
    const char *path = getenv("CANCEL_RUNLOG");
    if (!path)
        return;
    char line[256];
    int n = snprintf(line, sizeof line, "%s %s%s %d %.6f\n", dray_job_class(job), prefix,
                     dray_job_jid(job), (int)getpid(), dray_now());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) < 0)
            perror("runlog");
        close(fd);
    }
}

static void
note(dray_job *job)
{
    note_as(job, "");
}

static int
ok(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    return 0;
}

/* Thread mode: works until cancelled (at most 60 s), then fails saying so
 * (a cancelled job's failure must not be retried). */
static int
patient(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    note(job);
    for (int i = 0; i < 6000 && !dray_job_cancelled(job); i++)
        usleep(10000);
    return dray_result_fail(res, "CxStopped", "cancelled %d", dray_job_cancelled(job));
}

/* Busy for 300 ms. */
static int
slow(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    usleep(300000);
    return 0;
}

/* Busy for 300 ms, then logs "end:<jid>": a run that finished. */
static int
slow_end(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    usleep(300000);
    note_as(job, "end:");
    return 0;
}

/* Kills its process. */
static int
segv(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    raise(SIGSEGV);
    return 0;
}

/* Never returns: only a kill stops it. */
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

/* Spins (only a kill stops it) on its first run per jid, marked by creating
 * $CANCEL_RUNLOG.<jid>.once; every later run of that jid succeeds at once. */
static int
late_once(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    const char *path = getenv("CANCEL_RUNLOG");
    char mark[512];
    snprintf(mark, sizeof mark, "%s.%s.once", path ? path : "runs", dray_job_jid(job));
    int fd = open(mark, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return 0;
    close(fd);
    for (volatile unsigned long i = 0;; i++)
        ;
    return 0;
}

__attribute__((visibility("default"))) int dray_register_handlers(dray_server *s);

/* Busy for 2 ms: a queue that drains over seconds, not at once. */
static int
ms2(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    note(job);
    usleep(2000);
    return 0;
}

int
dray_register_handlers(dray_server *s)
{
    int rc = dray_server_register(s, "CxOk", ok, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "CxPatient", patient, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "CxSpin", spin, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "CxSlow", slow, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "CxSegv", segv, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "CxMs", ms2, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "CxLateOnce", late_once, NULL, NULL);
    if (!rc)
        rc = dray_server_register(s, "CxSlowEnd", slow_end, NULL, NULL);
    return rc;
}
