/* SPDX-License-Identifier: LicenseRef-dray-commercial */
#include "pro_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "harness.h"
#include "license_internal.h"

/* ---- licenses --------------------------------------------------------------- */

void
pro_license(const char *tier, long exp_days, const char *features, char out[PRO_KEY_BUF])
{
    tj_license("Pro Tests Inc", tier, exp_days, features, out, PRO_KEY_BUF);
}

const char *
pro_license_default(void)
{
    static char key[PRO_KEY_BUF];
    if (!key[0])
        pro_license("pro", 365, NULL, key);
    return key;
}

/* ---- workers ----------------------------------------------------------------- */

#define MAX_STARTED 4096
static pid_t g_started[MAX_STARTED];
static int g_nstarted;

void
pro_worker_kill_all(void)
{
    for (int i = 0; i < g_nstarted; i++)
        if (g_started[i] > 0 && kill(g_started[i], 0) == 0) {
            kill(g_started[i], SIGKILL);
            waitpid(g_started[i], NULL, 0);
        }
    g_nstarted = 0;
}

int
pro_worker_start(pro_worker *w, const char *url, const char *license, const char *const *args)
{
    static int seq;
    memset(w, 0, sizeof *w);
    snprintf(w->log, sizeof w->log, "%s/worker-%d-%d.log", PRO_LOG_DIR, (int)getpid(), ++seq);
    const char *argv[64];
    int n = 0;
    argv[n++] = PRO_WORKER;
    argv[n++] = url;
    /* PRO_TEST_MODULE: another build of the module (e.g. the code before a
     * fix, to show that a test fails there). */
    argv[n++] = getenv("PRO_TEST_MODULE") && *getenv("PRO_TEST_MODULE") ? getenv("PRO_TEST_MODULE")
                                                                        : PRO_MODULE;
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int fd = open(w->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        if (license)
            setenv("DRAY_LICENSE", license, 1);
        else
            unsetenv("DRAY_LICENSE");
        unsetenv("DRAY_LICENSE_FILE");
        execv(PRO_WORKER, (char *const *)argv);
        fprintf(stderr, "cannot exec %s: %s\n", PRO_WORKER, strerror(errno));
        _exit(127);
    }
    w->pid = pid;
    if (g_nstarted < MAX_STARTED)
        g_started[g_nstarted++] = pid;
    return 0;
}

int
pro_worker_reap(pro_worker *w)
{
    if (w->pid <= 0)
        return 1;
    int st;
    if (waitpid(w->pid, &st, WNOHANG) == w->pid) {
        w->status = st;
        w->pid = 0;
        return 1;
    }
    return 0;
}

int
pro_worker_stop(pro_worker *w, int sig, double timeout_s)
{
    if (w->pid <= 0)
        return 0;
    kill(w->pid, sig);
    double end = pro_now() + timeout_s;
    while (pro_now() < end) {
        if (pro_worker_reap(w))
            return 0;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

void
pro_worker_dump(const pro_worker *w, int lines)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "tail -n %d '%s' >&2", lines, w->log);
    fprintf(stderr, "---- %s ----\n", w->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

/* ---- producer ------------------------------------------------------------------ */

void
pro_producer_open(const char *url, const char *license, dray_server **srv, dray_client **cli)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = url;
    o.log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_WARN;
    dray_log_set_level(o.log_level);
    char err[512];
    if (dray_server_new(&o, srv, err, sizeof err) || dray_client_new(&o, cli, err, sizeof err)) {
        fprintf(stderr, "producer: %s\n", err);
        abort();
    }
    if (license && dray_server_set_config(*srv, "license", license)) {
        fprintf(stderr, "producer: cannot set the license\n");
        abort();
    }
    /* The producer only pushes: no fetch provider, no notifier. */
    if (dray_server_set_config(*srv, "pro.reliable_fetch", "no") ||
        dray_server_load_module(*srv, PRO_MODULE, err, sizeof err)) {
        fprintf(stderr, "producer: %s\n", err);
        abort();
    }
}

/* ---- the shared fixture ---------------------------------------------------- */

test_redis pro_srv;
redisContext *pro_rc;
dray_server *pro_producer;
dray_client *pro_cli;
int pro_srv_stopped;

int
pro_setup_redis(void **state)
{
    (void)state;
    return tj_redis_open(&pro_srv, &pro_rc);
}

int
pro_setup(void **state)
{
    if (pro_setup_redis(state))
        return -1;
    pro_producer_open(pro_srv.url, pro_license_default(), &pro_producer, &pro_cli);
    return 0;
}

int
pro_teardown(void **state)
{
    (void)state;
    if (pro_srv_stopped && pro_srv.pid > 0) {
        kill(pro_srv.pid, SIGCONT);
        pro_srv_stopped = 0;
    }
    pro_worker_kill_all();
    dray_client_free(pro_cli);
    pro_cli = NULL;
    tj_redis_close(&pro_srv, &pro_rc);
    return 0;
}

int
pro_flush(void **state)
{
    (void)state;
    tj_flushall(pro_rc);
    return 0;
}

int
pro_leftovers(void **state)
{
    (void)state;
    pro_worker_kill_all();
    return 0;
}

/* ---- redis -------------------------------------------------------------------- */

long long
pro_wip_len(const char *pattern)
{
    redisReply *k = test_redis_cmd(pro_rc, "KEYS pro:fetch:wip:%s", pattern);
    long long n = 0;
    for (size_t i = 0; i < k->elements; i++)
        n += pro_int(pro_rc, "LLEN %s", k->element[i]->str);
    freeReplyObject(k);
    return n;
}

long long
pro_wip_of(pid_t pid)
{
    char pat[32];
    snprintf(pat, sizeof pat, "*:%d:*", (int)pid);
    return pro_wip_len(pat);
}

long long
pro_run_dups(long long *maxruns)
{
    long long dups = 0, most = 0;
    redisReply *v = test_redis_cmd(pro_rc, "HVALS t:runs");
    for (size_t i = 0; i < v->elements; i++) {
        long long n = strtoll(v->element[i]->str, NULL, 10);
        dups += n > 1;
        if (n > most)
            most = n;
    }
    freeReplyObject(v);
    if (maxruns)
        *maxruns = most;
    return dups;
}

int
pro_plain_client(dray_client **c)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = pro_srv.url;
    return dray_client_new(&o, c, NULL, 0);
}

long
pro_env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

double
pro_now(void)
{
    return test_now();
}
