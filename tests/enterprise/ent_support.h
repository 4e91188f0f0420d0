/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Helpers for the dray Enterprise integration tests: license keys signed
 * with the build-time throwaway key, worker processes (ent_worker), and
 * small Redis readers. Tests wait on conditions (test_wait_until), never
 * on sleeps.
 */
#ifndef DRAY_ENT_SUPPORT_H
#define DRAY_ENT_SUPPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

#include "redis_fixture.h"
#include "shared_jobs.h"

#define ENT_KEYBUF 2049 /* DRAY_LICENSE_MAX_BYTES + 1 */

/* Read the throwaway signing key (once). 0 or -1. */
int ent_test_init(void);
/* A license key of tier ("pro" | "enterprise") valid for a year, with
 * `features` (a JSON array text like "[\"periodic\"]") or NULL for all. */
void ent_test_license(const char *tier, const char *features, char out[ENT_KEYBUF]);
/* Write the test keyring (key id 1: the bytes 0..31) to dir/ent.keys with
 * mode 0600 and put its path in out (n bytes). 0, or -1 when it cannot. */
int ent_test_keyfile(const char *dir, char *out, size_t n);
/* cmocka group setup for tests that load the modules into their own
 * process: the signing key, test_setup, an enterprise key for every
 * feature in key, and the test keyring (its path in keyfile, n bytes)
 * beside test_srv. 0 or -1. (No core call: this library links before it.) */
int ent_inproc_setup(void **state, char key[ENT_KEYBUF], char *keyfile, size_t n);

/* A worker process: tests/enterprise/ent_worker run with the module. */
typedef struct ent_proc {
    pid_t pid;
    int status; /* after stop/kill */
} ent_proc;

/* Start `ent_worker run` with url, queues, concurrency and settings
 * ("key=value", NULL-terminated). The license comes from $DRAY_LICENSE
 * (set it first). Returns 0. */
int ent_proc_start(ent_proc *p, const char *url, const char *queues, int concurrency,
                   const char *const *settings);
/* Start any ent_worker command line (argv NULL-terminated, without argv[0]). */
int ent_proc_spawn(ent_proc *p, const char *const *argv);
/* SIGTERM and wait (graceful stop); returns the exit status. */
int ent_proc_stop(ent_proc *p);
/* SIGKILL and wait: a crash. */
void ent_proc_kill(ent_proc *p);
/* Wait for the process to exit by itself (up to timeout_s); its exit
 * status, or -1 if it did not. */
int ent_proc_wait(ent_proc *p, double timeout_s);

/* ent_rint(c, fmt, ...): integer value of a command's reply (integer, or
 * string parsed; -1 for nil). */
#define ent_rint(...) tj_rint(-1, __VA_ARGS__)
/* ent_rstr(c, fmt, ...): string reply (malloc'ed) or NULL for nil. */
#define ent_rstr(...) tj_rstr(0, __VA_ARGS__)

/* ---- the fixture most Enterprise tests share ---- */
extern test_redis ent_srv;            /* this program's redis-server */
extern redisContext *ent_rc;          /* a connection to it */
extern char ent_test_key[ENT_KEYBUF]; /* ent_setup's enterprise key (also in $DRAY_LICENSE) */
/* cmocka group setup: read the signing key, sign ent_test_key and export it as
 * $DRAY_LICENSE, start ent_srv and connect ent_rc; -1 on failure. */
int ent_setup(void **state);
/* cmocka group teardown: close ent_rc, stop ent_srv. Always 0. */
int ent_teardown(void **state);
/* Poll until the integer reply of cmd (a literal command, split at spaces)
 * on ent_rc is at least want; fail the test, naming both, after timeout_s. */
void ent_wait_for(const char *cmd, long long want, double timeout_s);
/* cmocka per-test setup: FLUSHALL. */
int ent_flush(void **state);

#endif
