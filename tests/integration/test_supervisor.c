/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray run --processes / --isolate against a real redis-server: handlers that
 * segfault, abort, spin forever and sleep past their timeout. The other jobs
 * complete, nothing is lost, and runs are counted from the handlers' own log. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include <dray/dray.h>

#include "harness.h"

static char runlog[400], logpath[400];
static char runlog_env[420]; /* SUP_RUNLOG=<runlog>, for the dray children */

static pid_t
spawn_run(const char *const *extra)
{
    char *argv[40];
    int n = 0;
    argv[n++] = DRAY_CLI_PATH;
    argv[n++] = "run";
    argv[n++] = "--redis-url";
    argv[n++] = test_srv.url;
    argv[n++] = "-r";
    argv[n++] = DRAY_SUP_JOBS;
    argv[n++] = "--set";
    argv[n++] = "heartbeat=1";
    argv[n++] = "--set";
    argv[n++] = "poll_interval=0.2";
    for (int i = 0; extra[i] && n < 39; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return test_spawn_logged(logpath, runlog_env, argv);
}

/* Push a job as raw JSON (so it can carry "timeout"); jid is "<prefix><i>". */
static void
push(const char *klass, const char *jid, const char *extra)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"class\":\"%s\",\"args\":[],\"jid\":\"%s\",\"queue\":\"default\","
             "\"retry\":true,\"created_at\":1,\"enqueued_at\":1%s}",
             klass, jid, extra ? extra : "");
    test_push_raw("default", json);
}

/* Runs of jid in the handlers' log; *pids (if given) gets distinct pids seen. */
static int
runs_of(const char *jid)
{
    FILE *f = fopen(runlog, "r");
    char line[256], k[64], j[64];
    int pid, n = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %63s %d", k, j, &pid) == 3 && !strcmp(j, jid))
            n++;
    if (f)
        fclose(f);
    return n;
}

static int
count_pids(void)
{
    FILE *f = fopen(runlog, "r");
    char line[256], k[64], j[64];
    int pid, pids[4096], np = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%63s %63s %d", k, j, &pid) != 3)
            continue;
        int seen = 0;
        for (int i = 0; i < np; i++)
            seen |= pids[i] == pid;
        if (!seen && np < 4096)
            pids[np++] = pid;
    }
    if (f)
        fclose(f);
    return np;
}

typedef struct want {
    int ok_n;  /* SupOk jobs ok0..ok<n-1> */
    int dead;  /* jobs expected in the dead set */
    int retry; /* jobs expected in the retry set */
} want;

static int
all_ok_ran(void *arg)
{
    want *w = arg;
    for (int i = 0; i < w->ok_n; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ok%d", i);
        if (runs_of(jid) < 1)
            return 0;
    }
    return test_int("ZCARD dead") >= w->dead && test_int("ZCARD retry") >= w->retry;
}

static int
nprocs(void *arg)
{
    return test_int("SCARD processes") == *(int *)arg;
}

static long long crashes_seen; /* dray_crashes of the last error_class_of match */

/* The error_class of the only member of zset key with this jid, or "". */
static void
error_class_of(const char *key, const char *jid, char *out, size_t n)
{
    out[0] = '\0';
    crashes_seen = -1;
    redisReply *r = redisCommand(test_rc, "ZRANGE %s 0 -1", key);
    for (size_t i = 0; r && i < r->elements; i++) {
        json_t *o = json_loads(r->element[i]->str, 0, NULL);
        const char *j = json_string_value(json_object_get(o, "jid"));
        if (j && !strcmp(j, jid)) {
            snprintf(out, n, "%s", json_string_value(json_object_get(o, "error_class")));
            crashes_seen = json_integer_value(json_object_get(o, "dray_crashes"));
        }
        json_decref(o);
    }
    freeReplyObject(r);
}

static int
setup(void **state)
{
    if (test_setup(state))
        return -1;
    snprintf(runlog, sizeof runlog, "%s/runs.log", test_srv.dir);
    snprintf(logpath, sizeof logpath, "%s/dray.log", test_srv.dir);
    snprintf(runlog_env, sizeof runlog_env, "SUP_RUNLOG=%s", runlog);
    return 0;
}

static int
flush(void **state)
{
    test_flush(state);
    unlink(runlog);
    unlink(logpath);
    return 0;
}

static void
stop_clean(pid_t pid)
{
    kill(pid, SIGTERM);
    int code = test_wait_exit(pid, 30);
    if (code != 0) {
        test_print_file(logpath);
        fail_msg("dray run --processes exited %d after TERM", code);
    }
    int zero = 0;
    assert_true(test_wait_until(nprocs, &zero, 5));
}

/* --processes 2 -c 2: a segfault and an abort beside 200 good jobs. Each bad
 * job kills its child crash_limit (3) times, then is dead as
 * Dray::ChildCrashed; every good job runs (at least once), nothing is left in
 * the queue, the children come back, TSTP quiets both and TERM stops all. */
static void
test_crashes(void **state)
{
    (void)state;
    pid_t pid = spawn_run((const char *const[]){"--processes", "2", "-c", "2", "-t", "3", NULL});
    int two = 2;
    test_child_wait(pid, logpath, nprocs, &two, 15, "two children did not register");
    push("SupSegv", "segv1", NULL);
    push("SupAbort", "abort1", NULL);
    for (int i = 0; i < 200; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ok%d", i);
        push("SupOk", jid, NULL);
    }
    want w = {200, 2, 0};
    if (!test_wait_until(all_ok_ran, &w, 60)) {
        test_print_file(logpath);
        fail_msg("jobs not done: dead %lld, queue %lld", test_int("ZCARD dead"),
                 test_int("LLEN queue:default"));
    }
    assert_int_equal(test_int("LLEN queue:default"), 0);
    /* Each died at its own third crash; a crash of the other one beside it
     * requeued it without counting (one more run each such time). */
    char ec[64];
    error_class_of("dead", "segv1", ec, sizeof ec);
    assert_string_equal(ec, "Dray::ChildCrashed");
    assert_int_equal(crashes_seen, 3);
    error_class_of("dead", "abort1", ec, sizeof ec);
    assert_string_equal(ec, "Dray::ChildCrashed");
    assert_int_equal(crashes_seen, 3);
    assert_true(runs_of("segv1") >= 3);
    assert_true(runs_of("abort1") >= 3);
    fprintf(stderr, "  runs: segv1 %d, abort1 %d (3 own crashes each)\n", runs_of("segv1"),
            runs_of("abort1"));
    int twice = 0;
    for (int i = 0; i < 200; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ok%d", i);
        twice += runs_of(jid) > 1;
    }
    fprintf(stderr, "  200 good jobs: all ran, %d ran twice (their child crashed); 6 crashes\n",
            twice);
    assert_true(kill(pid, 0) == 0); /* the supervisor survived */
    assert_true(test_wait_until(nprocs, &two, 15));
    stop_clean(pid);
}

/* A job spinning forever (its own "timeout": 1) and one sleeping past its
 * class timeout (1 s): each has its child killed and goes to the retry set as
 * Dray::JobTimeout, with exactly one run; 50 good jobs all complete. */
static void
test_timeouts(void **state)
{
    (void)state;
    pid_t pid = spawn_run((const char *const[]){"--processes", "2", "-c", "2", NULL});
    int two = 2;
    test_child_wait(pid, logpath, nprocs, &two, 15, "two children did not register");
    double t0 = test_now();
    push("SupSpin", "spin1", ",\"timeout\":1");
    push("SupSleep", "sleep1", NULL);
    for (int i = 0; i < 50; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ok%d", i);
        push("SupOk", jid, NULL);
    }
    want w = {50, 0, 2};
    if (!test_wait_until(all_ok_ran, &w, 30)) {
        test_print_file(logpath);
        fail_msg("timeouts not handled: retry %lld", test_int("ZCARD retry"));
    }
    fprintf(stderr, "  both timed-out jobs in the retry set %.2fs after the push\n",
            test_now() - t0);
    char ec[64];
    error_class_of("retry", "spin1", ec, sizeof ec);
    assert_string_equal(ec, "Dray::JobTimeout");
    error_class_of("retry", "sleep1", ec, sizeof ec);
    assert_string_equal(ec, "Dray::JobTimeout");
    assert_int_equal(runs_of("spin1"), 1);
    assert_int_equal(runs_of("sleep1"), 1);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    stop_clean(pid);
}

/* --isolate: each job in its own process; a segfault among them costs only
 * its own process. */
static void
test_isolate(void **state)
{
    (void)state;
    pid_t pid = spawn_run((const char *const[]){"--isolate", "--processes", "2", NULL});
    int two = 2;
    test_child_wait(pid, logpath, nprocs, &two, 15, "two children did not register");
    push("SupSegv", "segv1", NULL);
    for (int i = 0; i < 20; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ok%d", i);
        push("SupOk", jid, NULL);
    }
    want w = {20, 1, 0};
    if (!test_wait_until(all_ok_ran, &w, 60)) {
        test_print_file(logpath);
        fail_msg("isolate: jobs not done");
    }
    for (int i = 0; i < 20; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ok%d", i);
        assert_int_equal(runs_of(jid), 1); /* no neighbour can crash an isolated job */
    }
    assert_int_equal(runs_of("segv1"), 3);
    assert_int_equal(count_pids(), 23); /* one process per run */
    stop_clean(pid);
}

static int
log_has(void *needle)
{
    FILE *f = fopen(logpath, "r");
    char line[2048];
    int hit = 0;
    while (f && !hit && fgets(line, sizeof line, f))
        hit = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return hit;
}

/* Thread mode (no --processes): a job with "timeout": 1 sees its deadline,
 * is flagged by the heartbeat once past it (logged), and its handler stops
 * itself; a job without a timeout has no deadline. */
static void
test_thread_deadline(void **state)
{
    (void)state;
    pid_t pid = spawn_run((const char *const[]){"-c", "2", NULL});
    int one = 1;
    test_child_wait(pid, logpath, nprocs, &one, 15, "dray run did not register");
    double t0 = test_now();
    push("SupPatient", "pat1", ",\"timeout\":1");
    want w = {0, 0, 1};
    if (!test_wait_until(all_ok_ran, &w, 20)) {
        test_print_file(logpath);
        fail_msg("the patient job was not flagged");
    }
    double took = test_now() - t0;
    fprintf(stderr, "  flagged and stopped %.2fs after the push (timeout 1 s, heartbeat 1 s)\n",
            took);
    assert_true(took < 10);
    assert_true(log_has("running past its timeout"));
    redisReply *r = redisCommand(test_rc, "ZRANGE retry 0 0");
    assert_int_equal(r->elements, 1);
    assert_non_null(strstr(r->element[0]->str, "cancelled 1 deadline set"));
    freeReplyObject(r);
    assert_int_equal(runs_of("pat1"), 1);
    stop_clean(pid);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_crashes, flush),
        cmocka_unit_test_setup(test_timeouts, flush),
        cmocka_unit_test_setup(test_isolate, flush),
        cmocka_unit_test_setup(test_thread_deadline, flush),
    };
    return cmocka_run_group_tests(tests, setup, test_teardown);
}
