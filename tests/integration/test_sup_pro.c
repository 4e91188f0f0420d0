/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray run --processes with Pro's reliable fetch, against a real
 * redis-server: a handler segfaults its child while 40 slow jobs run beside
 * it. The supervisor deletes the dead child's heartbeat hash, so Pro
 * recovers the child's lists without waiting pro.orphan_after (set to 60 s
 * here): every job runs well within it, the culprit ends in the dead set as
 * a poison pill, and nothing is left in a queue or a Pro list. A job the
 * supervisor killed its child for (past its timeout, or `dray cancel`) is
 * accounted by the supervisor alone: Pro's recovery of the dead child's
 * lists must drop it, not run it again. Runs are counted from the handlers'
 * own log (test_cancel_jobs.c). */
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

#include "pro_test.h"

static test_redis srv;
static redisContext *rc;
static char runlog[400], logpath[400];
static pid_t g_run;

static pid_t
spawn_run(const char *license)
{
    char lic[PRO_KEY_BUF + 16];
    snprintf(lic, sizeof lic, "license=%s", license);
    char *argv[] = {DRAY_CLI_PATH, "run",
                    "--redis-url", srv.url,
                    "-r",          DRAY_CANCEL_JOBS,
                    "--module",    PRO_MODULE,
                    "--set",       lic,
                    "--set",       "heartbeat=1",
                    "--set",       "pro.orphan_after=60",
                    "--set",       "pro.orphan_check=0.5",
                    "--set",       "pro.suspect_delay=0",
                    "--processes", "2",
                    "-c",          "4",
                    NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        setenv("CANCEL_RUNLOG", runlog, 1);
        unsetenv("DRAY_MODULES");
        execv(DRAY_CLI_PATH, argv);
        _exit(127);
    }
    g_run = pid;
    return pid;
}

static void
print_log(void)
{
    FILE *f = fopen(logpath, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "  | %s", line);
    if (f)
        fclose(f);
}

/* Pushes a job of klass; timeout_s > 0 gives it its own "timeout". */
static void
push_timeout(const char *klass, const char *jid, int timeout_s)
{
    char json[512], extra[64] = "";
    if (timeout_s > 0)
        snprintf(extra, sizeof extra, ",\"timeout\":%d", timeout_s);
    snprintf(json, sizeof json,
             "{\"class\":\"%s\",\"args\":[],\"jid\":\"%s\",\"queue\":\"default\","
             "\"retry\":true,\"created_at\":1,\"enqueued_at\":1%s}",
             klass, jid, extra);
    freeReplyObject(test_redis_cmd(rc, "LPUSH queue:default %s", json));
    freeReplyObject(test_redis_cmd(rc, "SADD queues default"));
}

static void
push(const char *klass, const char *jid)
{
    push_timeout(klass, jid, 0);
}

/* The pid of jid's first run (from the run log), 0 before it ran. */
static int
first_pid(const char *jid)
{
    FILE *f = fopen(runlog, "r");
    char line[256], k[64], j[64];
    int pid = 0, p;
    while (f && !pid && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %63s %d", k, j, &p) == 3 && !strcmp(j, jid))
            pid = p;
    if (f)
        fclose(f);
    return pid;
}

static int
runs_of(const char *jid)
{
    FILE *f = fopen(runlog, "r");
    char line[256], k[64], j[64];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %63s", k, j) == 2 && !strcmp(j, jid))
            n++;
    if (f)
        fclose(f);
    return n;
}

static long long
pro_lists(void)
{
    redisReply *k = test_redis_cmd(rc, "KEYS pro:fetch:wip:*");
    long long n = 0;
    for (size_t i = 0; i < k->elements; i++)
        n += pro_int(rc, "LLEN %s", k->element[i]->str);
    freeReplyObject(k);
    return n;
}

/* How many Pro lists (non-empty: empty lists do not exist) the process pid
 * has; identities are "host:pid:nonce". */
static long long
lists_of_pid(int pid)
{
    redisReply *k = test_redis_cmd(rc, "KEYS pro:fetch:wip:*");
    char needle[32];
    snprintf(needle, sizeof needle, ":%d:", pid);
    long long n = 0;
    for (size_t i = 0; i < k->elements; i++)
        n += strstr(k->element[i]->str, needle) != NULL;
    freeReplyObject(k);
    return n;
}

#define NSLOW 40
#define NBESIDE 40

static int
all_done(void *arg)
{
    (void)arg;
    for (int i = 0; i < NSLOW; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "slow%d", i);
        if (runs_of(jid) < 1)
            return 0;
    }
    return pro_int(rc, "ZCARD dead") == 1 && pro_int(rc, "LLEN queue:default") == 0;
}

static int
two_procs(void *arg)
{
    (void)arg;
    return pro_int(rc, "SCARD processes") == 2;
}

/* SIGTERM, then the exit status of a graceful stop (finished jobs are
 * acknowledged, unfinished ones requeued); -1 when it did not stop in 30 s. */
static int
stop_run(pid_t pid)
{
    kill(pid, SIGTERM);
    int st = 0;
    double end = pro_now() + 30;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) != pid && pro_now() < end)
        usleep(20000);
    if (w != pid)
        return -1;
    g_run = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The child that first ran *(const char **)arg is dead and Pro is done with
 * its lists (recovered or dropped), and no job waits in the queue. */
static int
settled(void *arg)
{
    int pid = first_pid(arg);
    return pid > 0 && kill(pid, 0) != 0 && lists_of_pid(pid) == 0 &&
           pro_int(rc, "LLEN queue:default") == 0;
}

static int
retried_settled(void *arg)
{
    return pro_int(rc, "ZCARD retry") == 1 && settled(arg);
}

/* The retried run is done: nothing waits anywhere, jid ran at least twice. */
static int
retry_done(void *arg)
{
    return runs_of(arg) >= 2 && pro_int(rc, "ZCARD retry") == 0 &&
           pro_int(rc, "LLEN queue:default") == 0;
}

static int
ran_once(void *arg)
{
    return runs_of(arg) >= 1;
}

/* `dray cancel jid`: its exit status. */
static int
cli_cancel(const char *jid)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        char *argv[] = {DRAY_CLI_PATH, "cancel", (char *)jid, "--redis-url", srv.url, NULL};
        execv(DRAY_CLI_PATH, argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Stops a run a failed test left behind. */
static int
reap(void **state)
{
    (void)state;
    if (g_run > 0 && waitpid(g_run, NULL, WNOHANG) == 0) {
        kill(g_run, SIGKILL);
        waitpid(g_run, NULL, 0);
    }
    g_run = 0;
    return 0;
}

/* Each test starts from an empty Redis and an empty run log. */
static int
reset(void **state)
{
    (void)state;
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    unlink(runlog);
    return 0;
}

static int
setup(void **state)
{
    (void)state;
    if (test_redis_start(&srv))
        return -1;
    rc = test_redis_connect(&srv);
    snprintf(runlog, sizeof runlog, "%s/runs.log", srv.dir);
    snprintf(logpath, sizeof logpath, "%s/dray.log", srv.dir);
    return rc ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    if (g_run > 0 && waitpid(g_run, NULL, WNOHANG) == 0) {
        kill(g_run, SIGKILL);
        waitpid(g_run, NULL, 0);
    }
    redisFree(rc);
    test_redis_stop(&srv);
    return 0;
}

/* A segfault beside 40 slow jobs, three times (Pro's poison_after): every
 * job runs, far sooner than pro.orphan_after, none is lost. */
static void
test_segv_recovered(void **state)
{
    (void)state;
    pid_t pid = spawn_run(pro_license_default());
    if (!test_wait_until(two_procs, NULL, 20)) {
        print_log();
        fail_msg("two children did not register");
    }
    for (int i = 0; i < NSLOW; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "slow%d", i);
        push("CxSlow", jid);
        if (i == 4)
            push("CxSegv", "segv1"); /* among the first: slow jobs run beside it */
    }
    double t0 = pro_now();
    if (!test_wait_until(all_done, NULL, 50)) {
        print_log();
        fail_msg("not done after 50 s: dead %lld, queue %lld, Pro lists %lld",
                 pro_int(rc, "ZCARD dead"), pro_int(rc, "LLEN queue:default"), pro_lists());
    }
    double took = pro_now() - t0;
    int again = 0;
    for (int i = 0; i < NSLOW; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "slow%d", i);
        again += runs_of(jid) - 1;
    }
    fprintf(stderr,
            "  3 crashes (segv1 ran %d times), %d slow jobs ran again; all done %.1fs after the "
            "push (pro.orphan_after 60 s)\n",
            runs_of("segv1"), again, took);
    assert_true(took < 45);
    assert_int_equal(runs_of("segv1"), 3);
    kill(pid, SIGTERM);
    int st;
    double end = pro_now() + 30;
    while (waitpid(pid, &st, WNOHANG) != pid && pro_now() < end)
        usleep(20000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    g_run = 0;
    /* finished jobs are acknowledged lazily, at the latest when a child stops */
    assert_int_equal(pro_lists(), 0);
    assert_int_equal(pro_int(rc, "ZCARD dead"), 1);
    assert_int_equal(pro_int(rc, "LLEN queue:default"), 0);
    assert_int_equal(pro_int(rc, "ZCARD retry"), 0);
}

/* A job past its own timeout (1 s), beside 40 jobs of 300 ms: the
 * supervisor kills its child and sends it to the retry set as
 * Dray::JobTimeout. Pro's recovery of the dead
 * child's list must drop it: it runs exactly twice (the timed-out run and
 * the retry, which the test moves to the queue as the poller would), never
 * a third time from Pro's requeue. The innocent jobs killed beside it are
 * recovered by Pro: each finishes, none runs more than twice (finished
 * jobs not acknowledged yet, acks being lazy, run again too). */
static void
test_timeout_not_twice(void **state)
{
    (void)state;
    pid_t pid = spawn_run(pro_license_default());
    if (!test_wait_until(two_procs, NULL, 20)) {
        print_log();
        fail_msg("two children did not register");
    }
    push_timeout("CxLateOnce", "late1", 1);
    /* innocent jobs, some running beside late1 when its child is killed */
    for (int i = 0; i < NBESIDE; i++) {
        char jid[32];
        snprintf(jid, sizeof jid, "beside%d", i);
        push("CxSlowEnd", jid);
    }
    if (!test_wait_until(retried_settled, "late1", 30)) {
        print_log();
        fail_msg("no settled timeout after 30 s: runs %d, retry %lld, queue %lld, Pro lists %lld",
                 runs_of("late1"), pro_int(rc, "ZCARD retry"), pro_int(rc, "LLEN queue:default"),
                 pro_lists());
    }
    int before = runs_of("late1");
    /* play the retry poller: the retry is due now */
    redisReply *r = test_redis_cmd(rc, "ZRANGE retry 0 -1");
    assert_int_equal(r->elements, 1);
    freeReplyObject(test_redis_cmd(rc, "ZREM retry %s", r->element[0]->str));
    freeReplyObject(test_redis_cmd(rc, "LPUSH queue:default %s", r->element[0]->str));
    freeReplyObject(r);
    if (!test_wait_until(retry_done, "late1", 30)) {
        print_log();
        fail_msg("the retry did not run: runs %d", runs_of("late1"));
    }
    assert_int_equal(stop_run(pid), 0);
    int again = 0;
    for (int i = 0; i < NBESIDE; i++) {
        char jid[32], end[40];
        snprintf(jid, sizeof jid, "beside%d", i);
        snprintf(end, sizeof end, "end:%s", jid);
        if (runs_of(end) < 1)
            fail_msg("%s never finished (ran %d times)", jid, runs_of(jid));
        assert_in_range(runs_of(jid), 1, 2);
        again += runs_of(jid) - 1;
    }
    fprintf(stderr,
            "  late1 ran %d times (%d before its retry); %d of %d innocent jobs ran again\n",
            runs_of("late1"), before, again, NBESIDE);
    assert_int_equal(before, 1);
    assert_int_equal(runs_of("late1"), 2);
    assert_int_equal(pro_int(rc, "LLEN queue:default"), 0);
    assert_int_equal(pro_int(rc, "ZCARD retry"), 0);
    assert_int_equal(pro_int(rc, "ZCARD dead"), 0);
    assert_int_equal(pro_lists(), 0);
}

/* `dray cancel` of a job looping forever: its child is killed and the job
 * never runs again, though it sat in the dead child's Pro list; Pro does not
 * even hand it back to a worker (whose cancel check would then have to
 * catch it: the record's worker note would turn from "killed" to "skipped"). */
static void
test_cancel_not_again(void **state)
{
    (void)state;
    pid_t pid = spawn_run(pro_license_default());
    if (!test_wait_until(two_procs, NULL, 20)) {
        print_log();
        fail_msg("two children did not register");
    }
    push("CxSpin", "spin1");
    if (!test_wait_until(ran_once, "spin1", 20)) {
        print_log();
        fail_msg("spin1 did not start");
    }
    assert_int_equal(cli_cancel("spin1"), 0);
    if (!test_wait_until(settled, "spin1", 30)) {
        print_log();
        fail_msg("not settled after the cancel: runs %d, queue %lld, Pro lists %lld",
                 runs_of("spin1"), pro_int(rc, "LLEN queue:default"), pro_lists());
    }
    /* a job after it in the same queue: once it ran, a requeued spin1 (at
     * the queue's head, before it) was taken too */
    push("CxOk", "after1");
    if (!test_wait_until(ran_once, "after1", 20)) {
        print_log();
        fail_msg("after1 did not run");
    }
    assert_int_equal(stop_run(pid), 0);
    redisReply *o = test_redis_cmd(rc, "HGET dray:cancel:spin1 worker");
    char outcome[32] = "";
    if (o->type == REDIS_REPLY_STRING)
        snprintf(outcome, sizeof outcome, "%s", o->str);
    freeReplyObject(o);
    fprintf(stderr, "  spin1 ran %d times, worker note \"%s\"\n", runs_of("spin1"), outcome);
    assert_int_equal(runs_of("spin1"), 1);
    assert_string_equal(outcome, "killed");
    assert_int_equal(pro_int(rc, "LLEN queue:default"), 0);
    assert_int_equal(pro_int(rc, "ZCARD retry"), 0);
    assert_int_equal(pro_int(rc, "ZCARD dead"), 0);
    assert_int_equal(pro_lists(), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_segv_recovered, reset, reap),
        cmocka_unit_test_setup_teardown(test_timeout_not_twice, reset, reap),
        cmocka_unit_test_setup_teardown(test_cancel_not_again, reset, reap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
