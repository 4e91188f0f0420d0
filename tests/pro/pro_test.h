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
#include "harness.h"
#include "shared_jobs.h"

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

/* ---- the fixture most Pro tests share ---- */
extern test_redis pro_srv;        /* this program's redis-server */
extern redisContext *pro_rc;      /* a connection to it */
extern dray_server *pro_producer; /* pro_setup's producer (never run) */
extern dray_client *pro_cli;      /* ... and its client */
extern int pro_srv_stopped;       /* a test SIGSTOPped pro_srv: pro_teardown SIGCONTs it */
/* cmocka group setup: start pro_srv and connect pro_rc; -1 on failure. */
int pro_setup_redis(void **state);
/* The same, then the producer with the default license. */
int pro_setup(void **state);
/* cmocka group teardown: wake pro_srv if stopped, kill leftover workers, free pro_cli, close
 * pro_rc, stop pro_srv. Always 0. */
int pro_teardown(void **state);
/* cmocka per-test setup: FLUSHALL. */
int pro_flush(void **state);
/* cmocka per-test teardown: no worker outlives its test (a failed assertion
 * leaves them running). */
int pro_leftovers(void **state);
/* Redis helpers on a test connection. */
/* pro_int(c, fmt, ...): integer (or number string) reply, 0 for others. */
#define pro_int(...) tj_rint(0, __VA_ARGS__)
/* pro_str(c, fmt, ...): string or status reply, malloc'ed, or NULL. */
#define pro_str(...) tj_rstr(1, __VA_ARGS__)
/* Poll (test_wait_int_on) until the integer reply of the command (a number
 * string counts) equals want, or timeout_s passes. Returns 1 when it did. */
#define pro_wait_int(c, want, timeout_s, ...) test_wait_int_on(c, want, 0, timeout_s, __VA_ARGS__)
/* The same until the integer reply is at least want. */
#define pro_wait_at_least(c, want, timeout_s, ...)                                                 \
    test_wait_int_on(c, want, 1, timeout_s, __VA_ARGS__)
/* Total length of the work-in-progress lists pro:fetch:wip:<pattern> (a
 * KEYS pattern; "*" for all) on pro_rc. */
long long pro_wip_len(const char *pattern);
/* The same for the lists of process pid. */
long long pro_wip_of(pid_t pid);
/* Jobs (HVALS t:runs) that ran more than once; the most runs of one job in
 * *maxruns when it is not NULL. */
long long pro_run_dups(long long *maxruns);
/* A client on pro_srv without the module (a plain producer); returns
 * dray_client_new's code. The caller frees *c. */
int pro_plain_client(dray_client **c);
/* $name as a number, or dflt when it is unset or empty. */
long pro_env_long(const char *name, long dflt);
/* Seconds since an arbitrary point (monotonic). */
double pro_now(void);
/* Wait until fn(arg) != 0 or timeout_s: test_wait_until. */
#define pro_wait test_wait_until

#endif /* DRAY_PRO_TEST_H */
