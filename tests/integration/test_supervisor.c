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

/* A payload for test_hostile_queue: class SupOk, jid, the queue field as
 * raw JSON and args as raw JSON. */
static void
hostile(char *out, size_t n, const char *jid, const char *queue_json, const char *args)
{
    snprintf(out, n,
             "{\"class\":\"SupOk\",\"args\":%s,\"jid\":\"%s\",\"queue\":%s,\"retry\":false,"
             "\"created_at\":1,\"enqueued_at\":1}",
             args, jid, queue_json);
}

/* LPUSH to key the payloads of one recovery round: two with unusable queue
 * names (control bytes; 300 bytes), one for queue "other" whose args hold
 * an integer beyond 64 bits. */
static void
fill_inflight(const char *key, const char *tag)
{
    char p[1024], jid[32], q[400];
    snprintf(jid, sizeof jid, "ctl%s", tag);
    hostile(p, sizeof p, jid, "\"evil\\r\\nFAKE\"", "[]");
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH %s %s", key, p));
    snprintf(jid, sizeof jid, "long%s", tag);
    snprintf(q, sizeof q, "\"%0300d\"", 7);
    hostile(p, sizeof p, jid, q, "[]");
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH %s %s", key, p));
    snprintf(jid, sizeof jid, "big%s", tag);
    hostile(p, sizeof p, jid, "\"other\"", "[123456789012345678901234567890]");
    freeReplyObject(test_redis_cmd(test_rc, "LPUSH %s %s", key, p));
}

static pid_t hostile_pids[2]; /* the supervisor and its child, for reap() */

/* Teardown of test_hostile_queue: nothing it started outlives a failure. */
static int
reap(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        if (hostile_pids[i] > 0 && kill(hostile_pids[i], SIGKILL) == 0 && i == 0)
            waitpid(hostile_pids[i], NULL, 0);
    hostile_pids[0] = hostile_pids[1] = 0;
    return 0;
}

static int
key_gone(void *key)
{
    return test_int("EXISTS %s", (const char *)key) == 0;
}

static int
dead_at_least(void *n)
{
    return test_int("ZCARD dead") >= *(int *)n;
}

/* No queue key or queues-set member with a name the core refuses. */
static void
assert_no_hostile_queue(void)
{
    assert_int_equal(test_int("EXISTS queue:evil\r\nFAKE"), 0);
    redisReply *r = test_redis_cmd(test_rc, "SMEMBERS queues");
    for (size_t i = 0; i < r->elements; i++)
        if (strlen(r->element[i]->str) > DRAY_QUEUE_MAX || strpbrk(r->element[i]->str, "\r\n"))
            fail_msg("queues holds an unusable name (%zu bytes)", strlen(r->element[i]->str));
    freeReplyObject(r);
}

/* In-flight lists recovered from a dead process (the orphan scan) and from
 * a child killed with SIGKILL (the supervisor's own recovery) hold payloads
 * naming unusable queues: they are requeued to "default" (whose worker
 * sends them to the dead set with the reason), never to a key built from
 * the name; a payload with an integer beyond 64 bits keeps its own queue. */
static void
test_hostile_queue(void **state)
{
    (void)state;
    pid_t pid = spawn_run((const char *const[]){"--processes", "1", "-c", "1", NULL});
    hostile_pids[0] = pid;
    int one = 1;
    test_child_wait(pid, logpath, nprocs, &one, 15, "the child did not register");
    redisReply *m = test_redis_cmd(test_rc, "SMEMBERS processes");
    assert_int_equal(m->elements, 1);
    char child[256], host[200], orphan[400], inflight[400];
    snprintf(child, sizeof child, "%s", m->element[0]->str);
    freeReplyObject(m);
    const char *c1 = strchr(child, ':');
    assert_non_null(c1);
    snprintf(host, sizeof host, "%.*s", (int)(c1 - child), child);
    int child_pid = atoi(c1 + 1);
    assert_true(child_pid > 0 && child_pid != pid);
    hostile_pids[1] = child_pid;
    /* a process of this host that is gone: the orphan scan's case */
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    assert_int_equal(waitpid(gone, NULL, 0), gone);
    snprintf(orphan, sizeof orphan, "dray:inflight:%s:%d:feed:0", host, (int)gone);
    fill_inflight(orphan, "1");
    if (!test_wait_until(key_gone, orphan, 20)) {
        test_print_file(logpath);
        fail_msg("the orphaned in-flight list was not recovered");
    }
    assert_no_hostile_queue();
    /* the child's own in-flight list, then the child dies */
    snprintf(inflight, sizeof inflight, "dray:inflight:%s:0", child);
    fill_inflight(inflight, "2");
    assert_int_equal(kill(child_pid, SIGKILL), 0);
    hostile_pids[1] = 0; /* its replacement dies with the supervisor (PDEATHSIG) */
    if (!test_wait_until(key_gone, inflight, 20)) {
        test_print_file(logpath);
        fail_msg("the dead child's in-flight list was not recovered");
    }
    assert_no_hostile_queue();
    assert_int_equal(test_int("LLEN queue:other"), 2); /* big1, big2: nobody serves "other" */
    int four = 4;
    if (!test_wait_until(dead_at_least, &four, 20)) {
        test_print_file(logpath);
        fail_msg("dead set: %lld, want the 4 payloads with unusable queues",
                 test_int("ZCARD dead"));
    }
    /* each kept whole in a malformed-job entry that names the reason */
    static const char *const jids[] = {"ctl1", "long1", "ctl2", "long2"};
    redisReply *d = test_redis_cmd(test_rc, "ZRANGE dead 0 -1");
    for (size_t i = 0; i < 4; i++) {
        int found = 0;
        for (size_t k = 0; k < d->elements; k++)
            found |=
                strstr(d->element[k]->str, jids[i]) && strstr(d->element[k]->str, "queue name");
        if (!found)
            fail_msg("%s is not in the dead set with its reason", jids[i]);
    }
    freeReplyObject(d);
    assert_no_hostile_queue();
    stop_clean(pid);
    hostile_pids[0] = hostile_pids[1] = 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_crashes, flush),
        cmocka_unit_test_setup(test_timeouts, flush),
        cmocka_unit_test_setup(test_isolate, flush),
        cmocka_unit_test_setup(test_thread_deadline, flush),
        cmocka_unit_test_setup_teardown(test_hostile_queue, flush, reap),
    };
    return cmocka_run_group_tests(tests, setup, test_teardown);
}
