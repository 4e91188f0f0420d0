/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * pro_bench: figures for docs/pro.md, on one private redis-server.
 *
 *   1. no-op throughput: basic fetch (no module) vs reliable fetch (Pro,
 *      ack batched with the next fetch, the default) vs reliable fetch with
 *      an ack round trip of its own (pro.lazy_ack no);
 *   2. a batch of N jobs vs N plain jobs: push time, processing time, and
 *      the time until the batch's success callback ran.
 *
 * Every measurement runs in a fresh child process (a module, once loaded,
 * stays for the life of a process), alternating modes, 3 times
 * (PRO_BENCH_ROUNDS, up to 9); the median is printed. PRO_BENCH_JOBS (default 50000) and
 * PRO_BENCH_BATCH (default 100000) set the sizes, PRO_BENCH_CONC the worker threads (10). Exit
 * status 1 when reliable fetch is below 70 % of basic fetch and PRO_BENCH_STRICT is set; otherwise
 * the figures are informational. PRO_BENCH_SET="pro.key=value ..." adds module settings
 * (experiments). PRO_BENCH_BASELINE=/path/to/other/dray-pro-test.so also measures reliable fetch
 * (lazy ack, and fetch_batch 8) with that build of the module, in the same rounds: before/after
 * figures of a change from one run.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dray/pro_batch.h"
#include "pro_test.h"

#define MAX_ROUNDS 9

static int g_rounds = 3; /* PRO_BENCH_ROUNDS, up to MAX_ROUNDS */

static test_redis srv;
static long g_jobs, g_batch;
static int g_conc;
static const char *g_module = PRO_MODULE; /* the module a measurement loads */

typedef struct result {
    double push_s;     /* pushing the jobs */
    double run_s;      /* first fetch possible .. last job done */
    double cb_s;       /* run start .. success callback ran (batch) */
    double redis_cpu;  /* CPU seconds redis-server used while the jobs ran */
    double redis_cmds; /* commands redis-server ran while the jobs ran (INFO commandstats) */
} result;

/* used_cpu_sys + used_cpu_user of the redis-server, seconds. */
static double
redis_cpu(void)
{
    redisContext *c = test_redis_connect(&srv);
    redisReply *r = test_redis_cmd(c, "INFO cpu");
    double sys = 0, user = 0;
    const char *p = r->str ? strstr(r->str, "used_cpu_sys:") : NULL;
    if (p)
        sys = strtod(p + 13, NULL);
    p = r->str ? strstr(r->str, "used_cpu_user:") : NULL;
    if (p)
        user = strtod(p + 14, NULL);
    freeReplyObject(r);
    redisFree(c);
    return sys + user;
}

/* Commands redis-server ran since the last CONFIG RESETSTAT (the INFO
 * asking is left out); with PRO_BENCH_VERBOSE, each command's count. */
static double
redis_cmds(void)
{
    redisContext *c = test_redis_connect(&srv);
    redisReply *r = test_redis_cmd(c, "INFO commandstats");
    double total = 0;
    for (const char *p = r->str ? strstr(r->str, "cmdstat_") : NULL; p;
         p = strstr(p + 1, "cmdstat_")) {
        char name[64];
        long long n;
        if (sscanf(p, "cmdstat_%63[^:]:calls=%lld", name, &n) != 2 || !strcmp(name, "info") ||
            !strcmp(name, "config|resetstat"))
            continue;
        total += (double)n;
        if (getenv("PRO_BENCH_VERBOSE"))
            fprintf(stderr, "  %s %lld\n", name, n);
    }
    freeReplyObject(r);
    redisFree(c);
    return total;
}

static void
redis_resetstat(void)
{
    redisContext *c = test_redis_connect(&srv);
    freeReplyObject(test_redis_cmd(c, "CONFIG RESETSTAT"));
    redisFree(c);
}

static atomic_long g_done;
static long g_target;
static double g_t_last;
static atomic_int g_cb;
static double g_t_cb;
static dray_server *g_srv;

static int
h_noop(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    if (atomic_fetch_add(&g_done, 1) + 1 == g_target) {
        g_t_last = pro_now();
        if (!atomic_load(&g_cb))
            dray_server_stop(g_srv);
    }
    return 0;
}

static int
h_cb(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    g_t_cb = pro_now();
    dray_server_stop(g_srv);
    return 0;
}

static void
flushall(void)
{
    redisContext *c = test_redis_connect(&srv);
    freeReplyObject(test_redis_cmd(c, "FLUSHALL"));
    redisFree(c);
}

/* PRO_BENCH_SET="pro.k=v pro.k2=v2": more module settings (experiments). */
static int
extra_settings(dray_server *s)
{
    const char *env = getenv("PRO_BENCH_SET");
    if (!env)
        return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", env);
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        if (!eq)
            return -1;
        *eq = '\0';
        if (dray_server_set_config(s, t, eq + 1))
            return -1;
    }
    return 0;
}

static dray_server *
server(int module, int lazy, int batch)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    o.concurrency = g_conc;
    if (!module)
        o.fetch_batch = batch;
    o.heartbeat_s = 1;
    o.log_level = DRAY_LOG_WARN;
    dray_log_set_level(DRAY_LOG_WARN);
    dray_server *s;
    char err[512];
    if (dray_server_new(&o, &s, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    if (module) {
        if (dray_server_set_config(s, "license", pro_license_default()) ||
            dray_server_set_config(s, "pro.lazy_ack", lazy ? "yes" : "no") ||
            dray_server_set_config(s, "pro.fetch_batch", batch == 8 ? "8" : "1") ||
            extra_settings(s) || dray_server_load_module(s, g_module, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            exit(2);
        }
    }
    if (dray_server_register(s, "Noop", h_noop, NULL, NULL) ||
        dray_server_register(s, "Done", h_cb, NULL, NULL))
        exit(2);
    return s;
}

static void
push_plain(dray_client *c, long n)
{
    json_t *list = json_array();
    for (long i = 0; i < n; i++)
        json_array_append_new(list, json_pack("[I]", (json_int_t)i));
    size_t pushed;
    if (dray_client_push_bulk(c, "Noop", list, NULL, NULL, &pushed) || (long)pushed != n) {
        fprintf(stderr, "push: %s\n", dray_client_errstr(c));
        exit(2);
    }
    json_decref(list);
}

/* One measurement in this (child) process. mode: 0 basic, 1 reliable
 * lazy ack, 2 reliable ack each, 3 plain jobs (reliable), 4 batch, 5 basic
 * fetch_batch 8, 6 reliable fetch_batch 8; 7 and 8 are 1 and 6 with the
 * PRO_BENCH_BASELINE module. */
static result
measure(int mode, long n)
{
    result r = {0, 0, 0, 0, 0};
    if (getenv("PRO_BENCH_MODULE"))
        g_module = getenv("PRO_BENCH_MODULE"); /* e.g. the baseline itself: an A/A run */
    if (mode >= 7) {
        g_module = getenv("PRO_BENCH_BASELINE");
        mode = mode == 7 ? 1 : 6;
    }
    int module = mode != 0 && mode != 5;
    g_srv = server(module, mode != 2, mode >= 5 ? 8 : 1);
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    dray_client *c;
    char err[256];
    if (dray_client_new(&o, &c, err, sizeof err))
        exit(2);
    g_target = n;
    double t0 = pro_now();
    if (mode == 4) {
        redisContext *rc = test_redis_connect(&srv);
        dray_pro *p;
        char bid[DRAY_PRO_BID_BYTES];
        dray_pro_batch_opts bo = {.description = "bench", .on_success = {"Done", NULL}};
        if (dray_pro_new(rc, NULL, &p) || dray_pro_batch_new(p, &bo, bid))
            exit(2);
        json_t *list = json_array();
        for (long i = 0; i < n; i++)
            json_array_append_new(list, json_pack("[I]", (json_int_t)i));
        size_t pushed;
        if (dray_pro_batch_push_bulk(p, c, bid, "Noop", list, NULL, NULL, &pushed) ||
            (long)pushed != n) {
            fprintf(stderr, "batch push: %s\n", dray_pro_errstr(p));
            exit(2);
        }
        json_decref(list);
        if (dray_pro_batch_commit(p, bid, 0)) {
            fprintf(stderr, "commit: %s\n", dray_pro_errstr(p));
            exit(2);
        }
        atomic_store(&g_cb, 1);
        dray_pro_free(p);
        redisFree(rc);
    } else {
        push_plain(c, n);
    }
    r.push_s = pro_now() - t0;
    double cpu0 = redis_cpu();
    redis_resetstat();
    double t1 = pro_now();
    if (dray_server_run(g_srv))
        exit(2);
    r.redis_cmds = redis_cmds();
    r.redis_cpu = redis_cpu() - cpu0;
    r.run_s = g_t_last - t1;
    r.cb_s = g_t_cb > 0 ? g_t_cb - t1 : 0;
    dray_client_free(c);
    return r;
}

static result
in_child(int mode, long n)
{
    int fd[2];
    if (pipe(fd))
        exit(2);
    flushall();
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        result r = measure(mode, n);
        if (write(fd[1], &r, sizeof r) != sizeof r)
            _exit(2);
        _exit(0);
    }
    close(fd[1]);
    result r = {0, 0, 0, 0, 0};
    if (read(fd[0], &r, sizeof r) != sizeof r)
        fprintf(stderr, "bench child (mode %d) failed\n", mode);
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    return r;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

int
main(void)
{
    g_jobs = getenv("PRO_BENCH_JOBS") ? atol(getenv("PRO_BENCH_JOBS")) : 50000;
    g_batch = getenv("PRO_BENCH_BATCH") ? atol(getenv("PRO_BENCH_BATCH")) : 100000;
    g_conc = getenv("PRO_BENCH_CONC") ? atoi(getenv("PRO_BENCH_CONC")) : 10;
    if (getenv("PRO_BENCH_ROUNDS"))
        g_rounds = atoi(getenv("PRO_BENCH_ROUNDS"));
    if (g_rounds < 1 || g_rounds > MAX_ROUNDS)
        g_rounds = 3;
    if (test_redis_start(&srv))
        return 2;
    pro_license_default(); /* sign once, before forking */
    static const int modes[7] = {0, 1, 2, 5, 6, 7, 8};
    int nmodes = getenv("PRO_BENCH_BASELINE") ? 7 : 5;
    /* PRO_BENCH_RELIABLE_ONLY (with a baseline): the four reliable-fetch
     * modes only, for a tighter before/after comparison. */
    int only = nmodes == 7 && getenv("PRO_BENCH_RELIABLE_ONLY");
    double rate[7][MAX_ROUNDS], cpu[7][MAX_ROUNDS], cmds[7][MAX_ROUNDS];
    for (int round = 0; round < g_rounds; round++)
        for (int m = 0; m < nmodes; m++) {
            if (only && (modes[m] == 0 || modes[m] == 2 || modes[m] == 5)) {
                rate[m][round] = cpu[m][round] = cmds[m][round] = 1;
                continue;
            }
            result r = in_child(modes[m], g_jobs);
            rate[m][round] = r.run_s > 0 ? (double)g_jobs / r.run_s : 0;
            cpu[m][round] = r.redis_cpu * 1e6 / (double)g_jobs;
            cmds[m][round] = r.redis_cmds / (double)g_jobs;
            if (getenv("PRO_BENCH_VERBOSE"))
                fprintf(stderr, "round %d mode %d: %.0f jobs/s, redis %.1f us/job\n", round,
                        modes[m], rate[m][round], cpu[m][round]);
        }
    double basic = median(rate[0], g_rounds), lazy = median(rate[1], g_rounds),
           each = median(rate[2], g_rounds), basic8 = median(rate[3], g_rounds),
           rel8 = median(rate[4], g_rounds);
    printf("no-op throughput, %ld jobs, %d worker threads, median of %d runs:\n", g_jobs, g_conc,
           g_rounds);
    printf("  basic fetch (BRPOP)                      %8.0f jobs/s\n", basic);
    printf("  reliable fetch (ack with next fetch)     %8.0f jobs/s  %5.1f %% of basic\n", lazy,
           100 * lazy / basic);
    printf("  reliable fetch (ack round trip, lazy_ack no) %4.0f jobs/s  %5.1f %% of basic\n", each,
           100 * each / basic);
    printf("  basic fetch, fetch_batch 8                %8.0f jobs/s\n", basic8);
    printf("  reliable fetch, pro.fetch_batch 8         %8.0f jobs/s  %5.1f %% of basic batch 8, "
           "%5.1f %% of basic\n",
           rel8, 100 * rel8 / basic8, 100 * rel8 / basic);

    printf("  redis-server CPU per job (median, us): basic %.1f, reliable %.1f, lazy_ack no %.1f, "
           "basic batch 8 %.1f, reliable batch 8 %.1f (includes the heartbeats of the run)\n",
           median(cpu[0], g_rounds), median(cpu[1], g_rounds), median(cpu[2], g_rounds),
           median(cpu[3], g_rounds), median(cpu[4], g_rounds));
    printf("  Redis commands per job (median; Lua's inner calls counted, heartbeats included): "
           "basic %.2f, reliable %.2f, lazy_ack no %.2f, basic batch 8 %.2f, reliable batch 8 "
           "%.2f\n",
           median(cmds[0], g_rounds), median(cmds[1], g_rounds), median(cmds[2], g_rounds),
           median(cmds[3], g_rounds), median(cmds[4], g_rounds));
    if (nmodes == 7) {
        double old1 = median(rate[5], g_rounds), old8 = median(rate[6], g_rounds);
        printf("  baseline module %s:\n", getenv("PRO_BENCH_BASELINE"));
        printf("  reliable fetch (ack with next fetch)     %8.0f jobs/s; this build %+.1f %%\n",
               old1, 100 * (lazy - old1) / old1);
        printf("  reliable fetch, pro.fetch_batch 8         %8.0f jobs/s; this build %+.1f %%\n",
               old8, 100 * (rel8 - old8) / old8);
    }
    if (only) {
        test_redis_stop(&srv);
        return 0;
    }
    double push[2][MAX_ROUNDS], run[2][MAX_ROUNDS], cb[MAX_ROUNDS];
    for (int round = 0; round < g_rounds; round++) {
        result p = in_child(3, g_batch), b = in_child(4, g_batch);
        push[0][round] = p.push_s;
        run[0][round] = p.run_s;
        push[1][round] = b.push_s;
        run[1][round] = b.run_s;
        cb[round] = b.cb_s;
    }
    double pp = median(push[0], g_rounds), pr = median(run[0], g_rounds);
    double bp = median(push[1], g_rounds), br = median(run[1], g_rounds), bc = median(cb, g_rounds);
    printf("batch of %ld jobs vs %ld plain jobs (reliable fetch), median of %d runs:\n", g_batch,
           g_batch, g_rounds);
    printf("  push:    plain %6.2f s (%8.0f jobs/s)   batch %6.2f s (%8.0f jobs/s)  x%.1f\n", pp,
           g_batch / pp, bp, g_batch / bp, bp / pp);
    printf("  process: plain %6.2f s (%8.0f jobs/s)   batch %6.2f s (%8.0f jobs/s)  x%.2f\n", pr,
           g_batch / pr, br, g_batch / br, br / pr);
    printf("  success callback ran %.2f s after the workers started\n", bc);
    test_redis_stop(&srv);
    if (getenv("PRO_BENCH_STRICT") && lazy < 0.7 * basic) {
        printf("FAIL: reliable fetch below 70 %% of basic fetch\n");
        return 1;
    }
    return 0;
}
