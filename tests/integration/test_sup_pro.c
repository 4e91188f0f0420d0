/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray run --processes with Pro's reliable fetch, against a real
 * redis-server: a handler segfaults its child while 40 slow jobs run beside
 * it. The supervisor deletes the dead child's heartbeat hash, so Pro
 * recovers the child's lists without waiting pro.orphan_after (set to 60 s
 * here): every job runs well within it, the culprit ends in the dead set as
 * a poison pill, and nothing is left in a queue or a Pro list. Runs are
 * counted from the handlers' own log (test_cancel_jobs.c). */
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

static void
push(const char *klass, const char *jid)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"class\":\"%s\",\"args\":[],\"jid\":\"%s\",\"queue\":\"default\","
             "\"retry\":true,\"created_at\":1,\"enqueued_at\":1}",
             klass, jid);
    freeReplyObject(test_redis_cmd(rc, "LPUSH queue:default %s", json));
    freeReplyObject(test_redis_cmd(rc, "SADD queues default"));
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

#define NSLOW 40

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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segv_recovered),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
