/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray run --processes with Pro's reliable fetch, against a real
 * redis-server: a handler segfaults its child while 40 slow jobs run beside
 * it. The supervisor deletes the dead child's heartbeat hash, so Pro
 * recovers the child's lists without waiting pro.orphan_after (set to 60 s
 * here): every job runs well within it, the culprit ends in the dead set as
 * a poison pill, and nothing is left in a queue or a Pro list. Runs are
 * counted from the handlers' own log (test_cancel_jobs.c). */
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

#include "harness.h"
#include "pro_test.h"

static char runlog[400], logpath[400], runlog_env[420];
static pid_t g_run;

static pid_t
spawn_run(const char *license)
{
    char lic[PRO_KEY_BUF + 16];
    snprintf(lic, sizeof lic, "license=%s", license);
    char *argv[] = {DRAY_CLI_PATH, "run",
                    "--redis-url", pro_srv.url,
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
    unsetenv("DRAY_MODULES");
    pid_t pid = test_spawn_logged(logpath, runlog_env, argv);
    g_run = pid;
    return pid;
}

static void
push(const char *klass, const char *jid)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"class\":\"%s\",\"args\":[],\"jid\":\"%s\",\"queue\":\"default\","
             "\"retry\":true,\"created_at\":1,\"enqueued_at\":1}",
             klass, jid);
    freeReplyObject(test_redis_cmd(pro_rc, "LPUSH queue:default %s", json));
    freeReplyObject(test_redis_cmd(pro_rc, "SADD queues default"));
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
    return pro_int(pro_rc, "ZCARD dead") == 1 && pro_int(pro_rc, "LLEN queue:default") == 0;
}

static int
two_procs(void *arg)
{
    (void)arg;
    return pro_int(pro_rc, "SCARD processes") == 2;
}

static int
setup(void **state)
{
    if (pro_setup_redis(state))
        return -1;
    snprintf(runlog, sizeof runlog, "%s/runs.log", pro_srv.dir);
    snprintf(logpath, sizeof logpath, "%s/dray.log", pro_srv.dir);
    snprintf(runlog_env, sizeof runlog_env, "CANCEL_RUNLOG=%s", runlog);
    return 0;
}

static int
teardown(void **state)
{
    if (g_run > 0 && waitpid(g_run, NULL, WNOHANG) == 0) {
        kill(g_run, SIGKILL);
        waitpid(g_run, NULL, 0);
    }
    return pro_teardown(state);
}

/* A segfault beside 40 slow jobs, three times (Pro's poison_after): every
 * job runs, far sooner than pro.orphan_after, none is lost. */
static void
test_segv_recovered(void **state)
{
    (void)state;
    pid_t pid = spawn_run(pro_license_default());
    if (!test_wait_until(two_procs, NULL, 20)) {
        test_print_file(logpath);
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
        test_print_file(logpath);
        fail_msg("not done after 50 s: dead %lld, queue %lld, Pro lists %lld",
                 pro_int(pro_rc, "ZCARD dead"), pro_int(pro_rc, "LLEN queue:default"),
                 pro_wip_len("*"));
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
    assert_int_equal(test_wait_exit(pid, 30), 0);
    g_run = 0;
    /* finished jobs are acknowledged lazily, at the latest when a child stops */
    assert_int_equal(pro_wip_len("*"), 0);
    assert_int_equal(pro_int(pro_rc, "ZCARD dead"), 1);
    assert_int_equal(pro_int(pro_rc, "LLEN queue:default"), 0);
    assert_int_equal(pro_int(pro_rc, "ZCARD retry"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segv_recovered),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
