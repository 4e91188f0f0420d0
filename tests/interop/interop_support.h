/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Interop test support: run real Sidekiq 6.4 (Ruby) against the test's own
 * redis-server, an embedded dray server in a thread, and a recorder of what
 * handlers saw. Include after <cmocka.h>. */
#ifndef DRAY_TEST_INTEROP_SUPPORT_H
#define DRAY_TEST_INTEROP_SUPPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <jansson.h>

#include "dray/dray.h"
#include "harness.h"
#include "test_skip.h"

#define SK_SKIP 77 /* agent exit code: a Ruby library the test needs is missing */

/* ---- the Ruby agent (tests/interop/sidekiq_agent.rb) --------------------- */

/* Redis-namespace for the agent's Sidekiq (NULL or "" for none). */
void sk_set_namespace(const char *ns);
/* Run `ruby sidekiq_agent.rb url cmd params` (params: a JSON object, or NULL
 * for none; large ones go through a temporary file). Returns the agent's
 * result (new reference). Fails the test, with the agent's stderr, when it
 * exits non-zero or prints no result; skips the test on exit SK_SKIP.
 * Bounded at 60 s. */
json_t *sk_run(const char *url, const char *cmd, json_t *params);
/* The same, built from a jansson pack format (json_pack). */
json_t *sk_runf(const char *url, const char *cmd, const char *fmt, ...);
/* Fail unless ruby can load the Sidekiq this run is for; prints the version
 * it found. $DRAY_INTEROP_SIDEKIQ=7 (the *_sk7 tests) means 7.x through
 * $DRAY_SIDEKIQ7_ENV; when that is unset the process exits TEST_SKIP_CODE. */
void sk_require_sidekiq(void);
/* 7 when this run is against Sidekiq 7 ($DRAY_INTEROP_SIDEKIQ=7), else 6. */
int sk_major(void);

/* ---- assertions ---------------------------------------------------------- */

/* Fail, printing both sides, unless json_equal(a, b). `what` names it. */
void assert_json_eq(const char *what, const json_t *want, const json_t *got);
/* The same, then json_decref(want): for a want built inline. */
void assert_json_eqn(const char *what, json_t *want, const json_t *got);
/* Parse a JSON literal written in the test (new reference); fails the test
 * when it is not JSON. */
json_t *it_loads(const char *s);
/* Fail unless |a - b| <= tol, printing both with 6 decimals. */
void assert_close(const char *what, double want, double got, double tol);
/* Borrowed member lookups that fail the test when the member is missing. */
json_t *jget(const json_t *obj, const char *key);
const char *jstr(const json_t *obj, const char *key);
long long jint(const json_t *obj, const char *key);
double jnum(const json_t *obj, const char *key);
/* The element of array `arr` whose member `key` is the string `val`, or NULL. */
json_t *jfind(const json_t *arr, const char *key, const char *val);

/* ---- an embedded dray server --------------------------------------------- */

typedef struct it_server {
    dray_server *s;
    pthread_t th;
    atomic_int done; /* dray_server_run returned */
    int rc;          /* its return value */
    int started;     /* it_go ran */
    int joined;
    char identity[256];
} it_server;

/* Options for a test server on r: short heartbeat (1 s) and poll (0.2 s). */
void it_opts(dray_options *o, const test_redis *r, const char *queues, int concurrency);
/* dray_server_new into a static slot (a failing test longjmps out of its
 * frame while the server thread still runs); fails the test on error.
 * Register handlers on t->s, then it_go. */
it_server *it_new(const dray_options *o);
void it_go(it_server *t);
/* Wait (bounded) for dray_server_run to return, join, check rc == 0. */
void it_wait_done(it_server *t, double timeout_s);
/* dray_server_stop, then it_wait_done, then free the slot. */
void it_finish(it_server *t);
/* For a per-test teardown: open the gate, stop and free every server a
 * (failed) test left running. */
void it_cleanup(void);

/* ---- what handlers saw --------------------------------------------------- */

/* One entry per jid: how often it ran and the last job's payload. */
typedef struct it_seen {
    char jid[DRAY_JID_BYTES];
    int runs;
    json_t *first; /* the job object at its first run (a copy) */
    json_t *last;  /* ... and at its last run */
} it_seen;

void it_rec_reset(void);
/* Record a run of job (any thread); returns the run number (1 = first). */
int it_rec_add(const dray_job *job);
/* Runs of jid so far (0 if never). */
int it_rec_runs(const char *jid);
/* Copy of the last (or first) job object seen for jid (new reference), or NULL. */
json_t *it_rec_last(const char *jid);
json_t *it_rec_first(const char *jid);
/* Total runs of all jobs. */
int it_rec_total(void);

/* ---- blocking handler gate ------------------------------------------------ */

void it_gate_reset(void);
/* Called by a handler: count itself in, then wait until released. */
void it_gate_enter_and_wait(void);
int it_gate_inside(void);
void it_gate_release(void);

/* ---- the fixture every interop test shares -------------------------------- */

/* This program's redis-server and a connection to it (it_setup starts and
 * opens them): the harness's test_srv and test_rc under their interop names. */
#define it_srv test_srv
#define it_rc test_rc

/* dray_client_new on it_srv with namespace ns (NULL for none); returns its
 * code and prints its message on failure. The caller frees *c. */
int it_client_new(const char *ns, dray_client **c);
/* Push n jobs of klass with args [0] .. [n-1] in one dray_client_push_bulk
 * to queue (NULL: default) with retry and extra (borrowed, or NULL); returns
 * its code, the count in *pushed and, when jids is not NULL, n jids of
 * DRAY_JID_BYTES each. */
int it_push_n(dray_client *c, const char *klass, const char *queue, int retry, json_t *extra, int n,
              char *jids, size_t *pushed);
/* cmocka group setup: require Sidekiq, start it_srv, connect it_rc; -1 when
 * redis-server will not start. */
int it_setup(void **state);
/* cmocka group teardown: stop every embedded server left, close it_rc, stop
 * it_srv. Always 0. */
int it_teardown(void **state);
/* cmocka per-test setup: FLUSHALL, no namespace, recorder and gate reset. */
int it_each_setup(void **state);
/* cmocka per-test teardown: it_cleanup. Always 0. */
int it_each_teardown(void **state);

/* ---- handlers and waits most tests use ------------------------------------ */

/* Records the run and succeeds. */
int it_h_record(dray_job *job, dray_result *res, void *ud);
/* Records the run, then waits in the gate until it is released. */
int it_h_block(dray_job *job, dray_result *res, void *ud);
/* Records the run and fails it with class ArgumentError and message ud
 * (a string the caller keeps alive). */
int it_h_fail(dray_job *job, dray_result *res, void *ud);
/* Backoff: the first retry after 0.3 s (dray's scheduler moves it during
 * the test), later ones after an hour. */
double it_quick_then_slow(const dray_job *job, int count, void *ud);
/* Poll until the recorder holds at least `want` runs, at most timeout_s;
 * returns the truth. */
int it_wait_runs(int want, double timeout_s);
/* Poll until jid has run at least `want` times, at most timeout_s. */
int it_wait_jid_runs(const char *jid, int want, double timeout_s);
/* Poll until the heartbeat hash `key` has quiet "true", at most timeout_s. */
int it_wait_quiet(const char *key, double timeout_s);
/* Poll until exactly `want` handlers wait in the gate, at most timeout_s. */
int it_wait_gate(int want, double timeout_s);

/* ---- redis helpers -------------------------------------------------------- */

/* Integer value of a command (INTEGER reply, or a numeric string; -1 for
 * nil). */
long long it_rint(redisContext *c, const char *fmt, ...);
/* Poll until it_rint(fmt...) == want, at most timeout_s; returns the truth. */
#define it_wait_rint(c, want, timeout_s, ...) test_wait_int_on(c, want, 0, timeout_s, __VA_ARGS__)

#endif
