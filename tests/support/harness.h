/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The shared test harness: one private redis-server per test binary (on
 * top of redis_fixture.h), Redis read helpers that assert, a dray server on
 * a thread, the dray binary as a child process with its output captured,
 * log capture, and conditions for test_wait_until. Everything here reports
 * failures through cmocka, so it is for test threads (the log sink and the
 * condition functions may run on any thread). */
#ifndef DRAY_TEST_HARNESS_H
#define DRAY_TEST_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>
#include <jansson.h>

#include <dray/dray.h>

#include "redis_fixture.h"

/* ---- the private redis-server (harness.c) ----------------------------------- */

extern test_redis test_srv;   /* this binary's redis-server, started by test_setup */
extern redisContext *test_rc; /* a connection to it for the test thread */

/* cmocka group setup: start test_srv (test_srv.extra is kept) and connect
 * test_rc; -1 when redis-server cannot start. */
int test_setup(void **state);
/* cmocka group setup for tests that count connections or keep their
 * own: start test_srv only (test_rc stays NULL); -1 when it cannot start. */
int test_start(void **state);
/* cmocka group teardown: close test_rc (if any) and remove test_srv. Returns 0. */
int test_teardown(void **state);
/* cmocka per-test setup: reconnect test_rc if it broke, then FLUSHALL.
 * Returns 0. */
int test_flush(void **state);

/* Run a command on test_rc and discard the reply; fails the test on a
 * missing reply or a Redis error reply. */
void test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A command's integer reply (a string reply is parsed, anything else is
 * -1); fails the test when there is no reply. */
long long test_int(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A command's string reply as a new malloc'ed string (free it), or NULL
 * for nil or another type; fails the test when there is no reply. */
char *test_str(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Poll (test_wait_until) until the integer reply to fmt on c (a number
 * string counts, anything else is -1) equals want, or is at least want
 * when at_least; at most timeout_s. 1 when it did; fails the test when c
 * gives no reply. */
int test_wait_int_on(redisContext *c, long long want, int at_least, double timeout_s,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* test_wait_int_on test_rc until the reply equals want. */
#define test_wait_int(want, timeout_s, ...)                                                        \
    test_wait_int_on(test_rc, want, 0, timeout_s, __VA_ARGS__)
/* test_wait_int_on test_rc until the reply is at least want. */
#define test_wait_int_at_least(want, timeout_s, ...)                                               \
    test_wait_int_on(test_rc, want, 1, timeout_s, __VA_ARGS__)
/* Push a raw JSON payload onto queue:<queue> and register the queue, as
 * a Sidekiq client does. */
void test_push_raw(const char *queue, const char *json);

/* ---- conditions for test_wait_until (harness.c) ----------------------------- */

typedef struct test_at_least {
    atomic_int *v; /* the counter to watch */
    int want;      /* true once *v >= want */
} test_at_least;

/* Non-zero once the atomic_int at arg is non-zero. */
int test_flag_set(void *arg);
/* Non-zero once a test_at_least's counter reaches its target. */
int test_reached(void *arg);

/* ---- log capture (harness.c) ------------------------------------------------ */

/* A dray log sink (for dray_log_set_sink) that appends every line at or
 * above the level given to test_log_reset to one process-wide buffer, each
 * line ended by '\n'. Thread-safe; a line that cannot be stored is dropped. */
void test_log_capture(dray_log_level level, const char *line, void *ud);
/* Empty the capture buffer and capture lines of level min and above. */
void test_log_reset(dray_log_level min);
/* A copy of the first captured line containing needle, or NULL (free it). */
char *test_log_line(const char *needle);
/* Non-zero when a captured line contains needle. */
int test_log_contains(const char *needle);
/* test_log_contains as a condition for test_wait_until (needle: a string). */
int test_log_has(void *needle);
/* Copy the captured lines to stderr (for failure messages). */
void test_log_print(void);

/* ---- a dray server on a thread (harness_server.c) --------------------------- */

typedef struct test_running {
    dray_server *s;  /* the server (owned; freed by test_server_finish) */
    pthread_t th;    /* the thread running dray_server_run */
    int rc;          /* what dray_server_run returned */
    atomic_int done; /* set once dray_server_run has returned */
} test_running;

/* Defaults for a test server on test_srv: the given queues (as for
 * dray_options.queues) and concurrency, a 1 s heartbeat, 0.2 s polls, a 5 s
 * shutdown timeout, errors only unless TEST_LOG is set. */
void test_options(dray_options *o, const char *queues, int concurrency);
/* Create the server from o into r (zeroed first); fails the test with the
 * server's message when dray_server_new refuses. */
void test_server_new(test_running *r, const dray_options *o);
/* Run r's server on a new thread. */
void test_server_go(test_running *r);
/* Stop r's server and join its thread; the server is kept (free it). */
void test_server_stop(test_running *r);
/* Stop r's server, join its thread, require that run returned 0, free it. */
void test_server_finish(test_running *r);
/* Non-zero once r's dray_server_run has returned (a condition). */
int test_server_done(void *r);
/* A handler that adds 1 to the atomic_int at ud (register it with the
 * counter as ud) and succeeds. Thread-safe. */
int test_h_count(dray_job *job, dray_result *res, void *ud);
/* Runs per job, by the job's first argument (an integer index). */
typedef struct test_seen {
    atomic_int *runs;  /* runs[i]: runs of the job with args [i, ...] */
    int n;             /* the length of runs */
    atomic_int *total; /* every run, an index out of range too */
} test_seen;
/* Count job's run in t (runs[args[0]] when in range, and total).
 * Thread-safe. */
void test_seen_add(const test_seen *t, const dray_job *job);
/* A handler that counts each run in the test_seen at ud and succeeds. */
int test_h_seen(dray_job *job, dray_result *res, void *ud);
/* A handler that fails with error class ud (a string the caller keeps;
 * NULL: RuntimeError) and the message "always fails". */
int test_h_fail(dray_job *job, dray_result *res, void *ud);
/* A handler that fails as ParseError "bad row" with three backtrace lines
 * of its own (parse.c:12, import.c:40, main.c:7), adding 1 to the
 * atomic_int at ud when ud is not NULL. */
int test_h_fail_lines(dray_job *job, dray_result *res, void *ud);
/* A backoff that sends every failure straight to the dead set. */
double test_backoff_kill(const dray_job *job, int count, void *ud);
/* A new client on test_srv in namespace ns (or none); fails the test when
 * it cannot be made. dray_client_free it. */
dray_client *test_client(const char *ns);
/* A new inspection API on test_srv in namespace ns (or none); fails the
 * test when it cannot be made. dray_api_free it. */
dray_api *test_api(const char *ns);
/* Push klass with args [i] through c; dray_client_push's return code (the
 * message is in dray_client_errstr). */
int test_push_arg(dray_client *c, const char *klass, int i);
/* Push one job through a fresh client: class, queue (NULL: default), args
 * (a reference the call steals), and extra payload fields as JSON or NULL. */
void test_push_job(const char *klass, const char *queue, json_t *args_steal,
                   const char *extra_json);

/* ---- the dray binary as a child (harness_proc.c) ---------------------------- */

typedef struct test_output {
    int code;  /* exit status, or 128 + signal */
    char *out; /* stdout (malloc'ed, NUL-terminated) */
    char *err; /* stderr (malloc'ed, NUL-terminated) */
} test_output;

/* Run prog with a NULL-terminated argument list (not counting argv[0]),
 * wait for it and capture both streams. */
test_output test_exec(const char *prog, const char *const *args);
/* Free the captured streams and zero r. */
void test_output_free(test_output *r);
/* Fail the test, printing both streams, unless r exited with code. */
void test_expect_code(const test_output *r, int code, const char *what);
/* Start argv[0] with argv, stdout and stderr appended to logpath, and
 * env ("NAME=value" or NULL) set in the child; returns its pid. */
pid_t test_spawn_logged(const char *logpath, const char *env, char *const *argv);
/* Wait up to timeout_s for pid to exit: its exit code, 128 + signal, or
 * -1 after killing it when it did not exit in time. */
int test_wait_exit(pid_t pid, double timeout_s);
/* Wait up to timeout_s for cond(arg); when it does not come, copy logpath
 * to stderr, kill pid (SIGKILL, reaped) and fail the test with what. */
void test_child_wait(pid_t pid, const char *logpath, int (*cond)(void *), void *arg,
                     double timeout_s, const char *what);
/* Copy a file to stderr, each line indented (for failure messages). */
void test_print_file(const char *path);

#endif
