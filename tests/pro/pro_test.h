/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Support for the Pro tests (tests/integration/test_pro_*.c): license keys
 * signed at test time with the build-time throwaway key, worker processes
 * (tests/pro/worker.c) started, killed and restarted, a producer that has
 * dray-pro-test.so loaded (its push hook registers batch jobs), and small
 * Redis helpers. Paths come in as PRO_MODULE, PRO_WORKER, PRO_LOG_DIR.
 */
#ifndef DRAY_PRO_TEST_H
#define DRAY_PRO_TEST_H

#include <stddef.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

#include "dray/dray.h"
#include "redis_fixture.h"

#define PRO_KEY_BUF 4096 /* holds any license key */

/* Sign a key: tier "pro"/"enterprise", expiring in exp_days (negative:
 * in the past), features a JSON array text ("[\"batches\"]") or NULL for
 * the tier's set. Aborts on failure. */
void pro_license(const char *tier, long exp_days, const char *features, char out[PRO_KEY_BUF]);
/* A valid pro key, made once. */
const char *pro_license_default(void);

typedef struct pro_worker {
    pid_t pid;     /* 0 when not running */
    char log[512]; /* its stderr */
    int status;    /* wait status after it ended */
} pro_worker;

/* Start tests/pro/worker.c against url with the module and license (NULL:
 * none), plus NULL-terminated key=value args. Returns 0 or -1. */
int pro_worker_start(pro_worker *w, const char *url, const char *license, const char *const *args);
/* Send sig and (for SIGKILL/SIGTERM) wait up to timeout_s for the exit.
 * Returns 0 when it ended. */
int pro_worker_stop(pro_worker *w, int sig, double timeout_s);
/* Wait for it to end by itself (e.g. a poison pill killed it): 1 if it did. */
int pro_worker_reap(pro_worker *w);
/* SIGKILL every worker this process started that still runs (a failed
 * assertion leaves them behind; call it from each test's teardown). */
void pro_worker_kill_all(void);
/* Print the last lines of its log to stderr (for failures). */
void pro_worker_dump(const pro_worker *w, int lines);

/* A producer in this process: a server (never run) that has the module
 * loaded with the license, plus a client. */
void pro_producer_open(const char *url, const char *license, dray_server **srv, dray_client **cli);

/* Redis helpers on a test connection. */
long long pro_int(redisContext *c, const char *fmt, ...); /* integer (or number string) reply */
char *pro_str(redisContext *c, const char *fmt, ...);     /* string reply, malloc'ed, or NULL */
/* Poll (every 5 ms, via test_wait_until) until the integer reply of the
 * command equals want, or timeout_s passes. Returns 1 when it did. */
int pro_wait_int(redisContext *c, long long want, double timeout_s, const char *fmt, ...);
/* Seconds since an arbitrary point (monotonic). */
double pro_now(void);
/* Wait until fn(arg) != 0 or timeout_s: test_wait_until. */
#define pro_wait test_wait_until

#endif /* DRAY_PRO_TEST_H */
