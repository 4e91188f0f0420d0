/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray Enterprise throughput against the plain path, on a private
 * redis-server (unix socket), printed as figures:
 *   push:    plain (no module) | module loaded, plain class | unique class
 *            (distinct args) | unique duplicates (dropped)
 *   process: no-op jobs through an embedded server: plain class vs a class
 *            behind a window limiter with a limit it never reaches (so the
 *            figure is the cost of the check: one Lua script per job); a
 *            fetch-time limit on another queue puts the module's fetcher in
 *            the path of every job; each figure with its Redis commands per job
 * Usage: bench_ent [N]   (default 20000 jobs per figure)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dray/dray.h"
#include "ent_support.h"

static test_redis srv;
static atomic_long done;
static double last_cmds; /* Redis commands per job of the last process_rate run */

/* Commands redis-server ran since the last CONFIG RESETSTAT, without the
 * INFO and CONFIG RESETSTAT of the measuring itself. */
static double
redis_cmds(void)
{
    redisContext *rc = test_redis_connect(&srv);
    redisReply *r = test_redis_cmd(rc, "INFO commandstats");
    double total = 0;
    for (const char *p = r->str ? strstr(r->str, "cmdstat_") : NULL; p;
         p = strstr(p + 1, "cmdstat_")) {
        char name[64];
        long long n;
        if (sscanf(p, "cmdstat_%63[^:]:calls=%lld", name, &n) == 2 && strcmp(name, "info") &&
            strcmp(name, "config|resetstat"))
            total += (double)n;
    }
    freeReplyObject(r);
    redisFree(rc);
    return total;
}

static int
noop(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    atomic_fetch_add(&done, 1);
    return 0;
}

#define REPS 3 /* each figure is the best of REPS runs: the machine may be busy */

static double
push_once(dray_client *c, const char *klass, long n, int distinct)
{
    double t0 = test_now();
    long dropped = 0;
    for (long i = 0; i < n; i++) {
        json_t *a = json_pack("[I, s]", (json_int_t)(distinct ? i : 0), "bench");
        int rc = dray_client_push(c, klass, a, NULL, NULL);
        json_decref(a);
        if (rc == DRAY_EDROPPED)
            dropped++;
        else if (rc) {
            fprintf(stderr, "push: %s\n", dray_client_errstr(c));
            exit(1);
        }
    }
    double dt = test_now() - t0;
    if (!distinct && dropped != n - 1)
        fprintf(stderr, "warning: %ld of %ld duplicates dropped\n", dropped, n);
    return (double)n / dt;
}

static double
push_rate(dray_client *c, const char *klass, long n, int distinct)
{
    double best = 0;
    for (int r = 0; r < REPS; r++) {
        if (distinct) {
            redisContext *rc = test_redis_connect(&srv);
            freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
            redisFree(rc);
        }
        double v = push_once(c, klass, n, distinct);
        if (v > best)
            best = v;
    }
    return best;
}

static void *
run(void *s)
{
    if (dray_server_run(s))
        fprintf(stderr, "server: %s\n", dray_server_errstr(s));
    return NULL;
}

static double
process_rate(dray_client *c, dray_server *s, const char *klass, const char *queue, long n)
{
    redisContext *rc = test_redis_connect(&srv);
    freeReplyObject(test_redis_cmd(rc, "FLUSHALL"));
    redisFree(rc);
    json_t *list = json_array();
    for (long i = 0; i < n; i++)
        json_array_append_new(list, json_pack("[I]", (json_int_t)i));
    dray_push_opts po = {.queue = queue};
    size_t pushed;
    if (dray_client_push_bulk(c, klass, list, &po, NULL, &pushed) || (long)pushed != n) {
        fprintf(stderr, "bulk push: %s\n", dray_client_errstr(c));
        exit(1);
    }
    json_decref(list);
    atomic_store(&done, 0);
    rc = test_redis_connect(&srv);
    freeReplyObject(test_redis_cmd(rc, "CONFIG RESETSTAT"));
    redisFree(rc);
    double t0 = test_now();
    pthread_t th;
    pthread_create(&th, NULL, run, s);
    while (atomic_load(&done) < n) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    double dt = test_now() - t0;
    last_cmds = redis_cmds() / (double)n;
    dray_server_stop(s);
    pthread_join(th, NULL);
    return (double)n / dt;
}

static dray_server *
server(const char *queues)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    o.queues = queues;
    o.concurrency = 10;
    o.log_level = DRAY_LOG_ERROR;
    dray_server *s;
    char err[256];
    if (dray_server_new(&o, &s, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    if (dray_server_register(s, "Plain", noop, NULL, NULL) ||
        dray_server_register(s, "Limited", noop, NULL, NULL))
        exit(1);
    return s;
}

int
main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    char key[ENT_KEYBUF];
    if (ent_test_init() || test_redis_start(&srv))
        return 1;
    ent_test_license("enterprise", NULL, key);
    dray_log_set_level(DRAY_LOG_ERROR);
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    dray_client *c;
    if (dray_client_new(&o, &c, NULL, 0))
        return 1;

    printf("dray Enterprise benchmark: %ld jobs per figure, best of %d runs, redis-server on a "
           "unix socket\n",
           n, REPS);
    double plain0 = push_rate(c, "Plain", n, 1), proc_plain0 = 0, cmds0 = 0;
    for (int r = 0; r < REPS; r++) {
        dray_server *pre = server("default");
        double v = process_rate(c, pre, "Plain", NULL, n);
        dray_server_free(pre);
        cmds0 = last_cmds;
        if (v > proc_plain0)
            proc_plain0 = v;
    }

    /* From here on the module is loaded (its hooks are process-wide). */
    dray_server *s = server("default");
    const char *sets[][2] = {
        {"license", key},
        {"enterprise.unique", "Unique for=600"},
        {"enterprise.limiter", "bench window 1000000/1s class=Limited"},
        /* a fetch-time limit elsewhere: the module's fetcher fetches every queue */
        {"enterprise.limiter", "other concurrent 5 queue=other"},
        {"enterprise.leader", "no"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        if (dray_server_set_config(s, sets[i][0], sets[i][1]))
            return 1;
    char err[512];
    if (dray_server_load_module(s, ENT_MODULE, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double plain1 = push_rate(c, "Plain", n, 1);
    double uniq = push_rate(c, "Unique", n, 1);
    double dup = push_rate(c, "Unique", n, 0);
    printf("\npush (one client, one thread)          jobs/s    vs plain\n");
    printf("  plain, no module                 %10.0f    1.00\n", plain0);
    printf("  plain class, module loaded       %10.0f    %.2f\n", plain1, plain1 / plain0);
    printf("  unique, distinct args            %10.0f    %.2f\n", uniq, uniq / plain0);
    printf("  unique duplicates (dropped)      %10.0f    %.2f\n", dup, dup / plain0);

    double proc_plain1 = process_rate(c, s, "Plain", NULL, n), proc_lim = 0;
    double cmds1 = last_cmds;
    dray_server_free(s);
    for (int r = 1; r < REPS; r++) {
        s = server("default");
        double v = process_rate(c, s, "Plain", NULL, n);
        dray_server_free(s);
        if (v > proc_plain1)
            proc_plain1 = v;
    }
    double cmds_lim = 0;
    for (int r = 0; r < REPS; r++) {
        s = server("default");
        double v = process_rate(c, s, "Limited", NULL, n);
        dray_server_free(s);
        cmds_lim = last_cmds;
        if (v > proc_lim)
            proc_lim = v;
    }
    printf("\nprocess (embedded server, 10 workers, no-op handler)  jobs/s    vs plain   Redis "
           "commands/job\n");
    printf("  plain, no module                 %10.0f    1.00       %.2f\n", proc_plain0, cmds0);
    printf("  plain class, module loaded       %10.0f    %.2f       %.2f\n", proc_plain1,
           proc_plain1 / proc_plain0, cmds1);
    printf("  window limiter per class         %10.0f    %.2f       %.2f\n", proc_lim,
           proc_lim / proc_plain0, cmds_lim);
    dray_client_free(c);
    test_redis_stop(&srv);
    return 0;
}
