/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Worker benchmark: no-op throughput, peak RSS and push->start latency of an
 * embedded dray_server on a private redis-server (unix socket), at each
 * concurrency given and each fetch_batch given (1 is Sidekiq's BRPOP per job;
 * N > 1 takes up to N jobs per round trip while the queue is busy), next to
 * two ceilings measured in the same run:
 *
 *  - redis-benchmark (50 connections, -P 1): INCR, LPUSH and RPOP rates; a
 *    job costs one fetch (BRPOP) and, in the INCR variant, one INCR, so the
 *    ceiling is 1/(1/RPOP + 1/INCR) jobs/s with INCR and RPOP without;
 *  - the "wire floor": C bare hiredis threads doing exactly dray's Redis
 *    work (BRPOP, then INCR on a second connection) with no parsing at all,
 *    plus the same with the fetch batched (BLMPOP COUNT 10, Redis >= 7), the
 *    bound for dray's fetch_batch 10.
 *
 * The dray worker runs as a separate process (this program re-executed with
 * --worker), so its peak RSS (VmHWM) is the worker's alone, not the enqueue's.
 *
 *   bench_server [--jobs N] [--latency-jobs N] [--gap-us US] [--conc 10,25]
 *                [--fetch-batch 1,10] [--only incr,noop,latency] [--no-wire]
 *                [--no-ceiling] [--smoke]
 *
 * BENCH_METRICS=0 runs the dray worker with execution metrics off (the
 * "metrics" setting), for the on/off comparison in bench/metrics.sh.
 *
 * BENCH_WORKER_WRAP="valgrind --tool=callgrind" (or "perf record -g ...")
 * runs each dray worker process under that command, for profiles.
 *
 * The worker mode is a contract that bench/compare relies on too: `bench_server
 * --worker MODE SOCK CONC N FETCH_BATCH` (MODE incr | noop | latency) runs a
 * dray_server until N BenchJob jobs are done and prints "key value" lines:
 * done processed errors rate wall hwm_kb hwm_start_kb cpu_s cpu_sys_s, plus
 * p50_us p99_us max_us in latency mode. Add keys freely; keep these.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dray/dray.h>

#include "bench_common.h"

#define QUEUE_KEY "queue:default"
#define COUNTER_KEY "bench:incr"
#define MAX_CONC 64
#define BATCH 10

/* ================================================================ worker */

typedef struct wstate {
    int incr;         /* 1: one INCR per job on the thread's own connection */
    int latency;      /* 1: args[0] is the push time (ns, CLOCK_MONOTONIC) */
    long n;           /* stop after this many jobs */
    const char *sock; /* for the INCR connections */
    dray_server *srv;
    atomic_long started;
    atomic_long done;
    atomic_long errors;
    double t_first, t_last;
    double *lat_us; /* latency mode: one sample per job */
    pthread_key_t conn_key;
} wstate;

static wstate W;

static void
conn_free(void *p)
{
    redisFree(p);
}

static redisContext *
thread_conn(void)
{
    redisContext *c = pthread_getspecific(W.conn_key);
    if (c)
        return c;
    c = redisConnectUnix(W.sock);
    if (!c || c->err) {
        fprintf(stderr, "bench worker: cannot connect: %s\n", c ? c->errstr : "oom");
        exit(1);
    }
    pthread_setspecific(W.conn_key, c);
    return c;
}

static int
handler(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    double t = bench_now();
    long k = atomic_fetch_add(&W.started, 1);
    if (k == 0)
        W.t_first = t;
    if (W.latency && k < W.n) {
        json_int_t pushed_ns = json_integer_value(json_array_get(dray_job_args(job), 0));
        W.lat_us[k] = (t - (double)pushed_ns / 1e9) * 1e6;
    }
    if (W.incr) {
        redisReply *r = redisCommand(thread_conn(), "INCR %s", COUNTER_KEY);
        if (!r || r->type != REDIS_REPLY_INTEGER)
            atomic_fetch_add(&W.errors, 1);
        if (r)
            freeReplyObject(r);
    }
    if (atomic_fetch_add(&W.done, 1) + 1 == W.n) {
        W.t_last = bench_now();
        dray_server_stop(W.srv);
    }
    return 0;
}

/* bench_server --worker MODE SOCK CONC N FETCH_BATCH: run until N jobs are done, then
 * print "key value" lines on stdout for the parent. */
static int
worker_main(const char *mode, const char *sock, int conc, long n, int fetch_batch)
{
    long hwm_start = bench_vmhwm_kb();
    W.incr = !strcmp(mode, "incr");
    W.latency = !strcmp(mode, "latency");
    W.n = n;
    W.sock = sock;
    pthread_key_create(&W.conn_key, conn_free);
    if (W.latency && !(W.lat_us = calloc((size_t)n, sizeof *W.lat_us)))
        return 1;
    char url[400];
    snprintf(url, sizeof url, "unix://%s", sock);
    dray_options o;
    dray_options_init(&o);
    o.redis_url = url;
    const char *wurl = getenv("DRAY_BENCH_WORKER_URL"); /* DRAY_BENCH_TLS (bench_common.c) */
    if (wurl && *wurl) {
        o.redis_url = wurl;
        o.redis_tls_ca_file = getenv("DRAY_BENCH_TLS_CA");
    }
    o.concurrency = conc;
    o.fetch_batch = fetch_batch;
    o.log_level = DRAY_LOG_WARN; /* no per-job logging (log_jobs stays 0) */
    /* BENCH_METRICS=0: no execution metrics, to measure what they cost */
    const char *bm = getenv("BENCH_METRICS");
    o.no_metrics = bm && !strcmp(bm, "0");
    char err[256];
    if (dray_server_new(&o, &W.srv, err, sizeof err) ||
        dray_server_register(W.srv, "BenchJob", handler, NULL, NULL)) {
        fprintf(stderr, "bench worker: %s\n", W.srv ? dray_server_errstr(W.srv) : err);
        return 1;
    }
    double t0 = bench_now();
    if (dray_server_run(W.srv)) {
        fprintf(stderr, "bench worker: run: %s\n", dray_server_errstr(W.srv));
        return 1;
    }
    double wall = bench_now() - t0;
    dray_server_counts counts;
    dray_server_counts_get(W.srv, &counts);
    long hwm = bench_vmhwm_kb();
    printf("done %ld\n", atomic_load(&W.done));
    printf("processed %llu\n", (unsigned long long)counts.processed);
    printf("errors %ld\n", atomic_load(&W.errors));
    printf("rate %.1f\n", W.t_last > W.t_first ? (double)n / (W.t_last - W.t_first) : 0.0);
    printf("wall %.3f\n", wall);
    printf("hwm_kb %ld\n", hwm);
    printf("hwm_start_kb %ld\n", hwm_start);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("cpu_s %.6f\n", (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                               (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    printf("cpu_sys_s %.6f\n", (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    if (W.latency) {
        long m = atomic_load(&W.done) < n ? atomic_load(&W.done) : n;
        printf("p50_us %.1f\n", bench_percentile(W.lat_us, (size_t)m, 0.50));
        printf("p99_us %.1f\n", bench_percentile(W.lat_us, (size_t)m, 0.99));
        printf("max_us %.1f\n", bench_percentile(W.lat_us, (size_t)m, 1.0));
    }
    fflush(stdout);
    dray_server_free(W.srv);
    free(W.lat_us);
    return 0;
}

/* ================================================================ parent */

typedef struct wresult {
    double done, processed, errors, rate, wall, hwm_kb, hwm_start_kb, p50_us, p99_us, max_us;
    double cpu_s, cpu_sys_s; /* worker process CPU (user+sys, and sys alone) */
} wresult;

typedef struct wproc {
    pid_t pid;
    FILE *out;
} wproc;

static wproc
worker_spawn(const char *mode, const bench_redis *r, int conc, long n, int fetch_batch)
{
    int fds[2];
    if (pipe(fds)) {
        perror("pipe");
        exit(1);
    }
    char cs[16], ns[24], fb[16];
    snprintf(cs, sizeof cs, "%d", conc);
    snprintf(fb, sizeof fb, "%d", fetch_batch);
    snprintf(ns, sizeof ns, "%ld", n);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        /* exec: a fresh address space, so VmHWM is the worker's alone */
        const char *wrap = getenv("BENCH_WORKER_WRAP");
        if (wrap && *wrap) {
            char self[512], cmd[2048];
            ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
            self[k > 0 ? k : 0] = '\0';
            snprintf(cmd, sizeof cmd, "exec %s '%s' --worker %s '%s' %s %s %s", wrap, self, mode,
                     r->sock, cs, ns, fb);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        } else {
            execl("/proc/self/exe", "bench_server", "--worker", mode, r->sock, cs, ns, fb,
                  (char *)NULL);
        }
        fprintf(stderr, "bench_server: exec: %s\n", strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    wproc w = {pid, fdopen(fds[0], "r")};
    return w;
}

static int
worker_collect(wproc w, wresult *res)
{
    memset(res, 0, sizeof *res);
    char key[32];
    double v;
    while (fscanf(w.out, "%31s %lf", key, &v) == 2) {
        if (!strcmp(key, "done"))
            res->done = v;
        else if (!strcmp(key, "processed"))
            res->processed = v;
        else if (!strcmp(key, "errors"))
            res->errors = v;
        else if (!strcmp(key, "rate"))
            res->rate = v;
        else if (!strcmp(key, "wall"))
            res->wall = v;
        else if (!strcmp(key, "hwm_kb"))
            res->hwm_kb = v;
        else if (!strcmp(key, "hwm_start_kb"))
            res->hwm_start_kb = v;
        else if (!strcmp(key, "cpu_s"))
            res->cpu_s = v;
        else if (!strcmp(key, "cpu_sys_s"))
            res->cpu_sys_s = v;
        else if (!strcmp(key, "p50_us"))
            res->p50_us = v;
        else if (!strcmp(key, "p99_us"))
            res->p99_us = v;
        else if (!strcmp(key, "max_us"))
            res->max_us = v;
    }
    fclose(w.out);
    int st;
    waitpid(w.pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_server: worker failed (status %d)\n", st);
        return -1;
    }
    return 0;
}

static dray_client *
new_client(const bench_redis *r)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = r->url;
    dray_client *c;
    char err[256];
    if (dray_client_new(&o, &c, err, sizeof err)) {
        fprintf(stderr, "bench_server: %s\n", err);
        exit(1);
    }
    return c;
}

/* n jobs of BenchJob into queue:default with dray_client_push_bulk. */
static void
enqueue(dray_client *c, long n)
{
    const long chunk = 10000;
    for (long i = 0; i < n; i += chunk) {
        json_t *list = json_array();
        for (long k = i; k < n && k < i + chunk; k++)
            json_array_append_new(list, json_pack("[i]", (int)k));
        size_t pushed;
        if (dray_client_push_bulk(c, "BenchJob", list, NULL, NULL, &pushed)) {
            fprintf(stderr, "bench_server: enqueue: %s\n", dray_client_errstr(c));
            exit(1);
        }
        json_decref(list);
    }
}

static long long
info_field(redisContext *c, const char *section, const char *field)
{
    redisReply *r = redisCommand(c, "INFO %s", section);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        char pat[64];
        snprintf(pat, sizeof pat, "%s:", field);
        const char *p = strstr(r->str, pat);
        if (p)
            v = strtoll(p + strlen(pat), NULL, 10);
    }
    if (r)
        freeReplyObject(r);
    return v;
}

/* CPU seconds (user + sys) the redis-server has used so far. */
static double
redis_cpu_s(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO cpu");
    double v = 0;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "used_cpu_sys:");
        if (p)
            v += strtod(p + strlen("used_cpu_sys:"), NULL);
        if ((p = strstr(r->str, "used_cpu_user:")))
            v += strtod(p + strlen("used_cpu_user:"), NULL);
    }
    if (r)
        freeReplyObject(r);
    return v;
}

/* Throughput of the dray worker at conc threads, incr or noop, with
 * fetch_batch jobs per fetch round trip (1: BRPOP, as Sidekiq). *rate gets
 * jobs/s (-1 on failure); 0 when every check passed. */
static int
run_dray_throughput(const bench_redis *r, redisContext *ctl, dray_client *cl, int incr, int conc,
                    int fetch_batch, long n, double *rate)
{
    *rate = -1;
    bench_redis_int(ctl, "FLUSHALL");
    enqueue(cl, n);
    double rcpu0 = redis_cpu_s(ctl);
    wproc w = worker_spawn(incr ? "incr" : "noop", r, conc, n, fetch_batch);
    wresult res;
    if (worker_collect(w, &res))
        return -1;
    double rcpu = redis_cpu_s(ctl) - rcpu0;
    *rate = res.rate;
    long long left = bench_redis_int(ctl, "LLEN %s", QUEUE_KEY);
    long long counter = bench_redis_int(ctl, "GET %s", COUNTER_KEY);
    long long stat = bench_redis_int(ctl, "GET stat:processed");
    int ok =
        (long)res.done == n && left == 0 && stat == n && (!incr || counter == n) && res.errors == 0;
    char label[48], name[96];
    snprintf(label, sizeof label, "dray.%s.c%d", incr ? "incr" : "noop", conc);
    if (fetch_batch > 1)
        snprintf(label + strlen(label), sizeof label - strlen(label), ".fb%d", fetch_batch);
    double active = res.rate > 0 ? n / res.rate : 0;
    printf("# %s: %ld jobs in %.3f s (first start to last finish); queue left %lld, "
           "stat:processed %lld, %s %lld: %s\n",
           label, n, active, left, stat, COUNTER_KEY, counter, ok ? "checks ok" : "CHECK FAILED");
    printf("# %s: worker RSS %.0f KiB at start, peak %.0f KiB; CPU per job: worker %.1f us "
           "(user %.1f, kernel %.1f), redis-server %.1f us (busy %.0f%% of the time)\n",
           label, res.hwm_start_kb, res.hwm_kb, res.cpu_s / n * 1e6,
           (res.cpu_s - res.cpu_sys_s) / n * 1e6, res.cpu_sys_s / n * 1e6, rcpu / n * 1e6,
           active > 0 ? 100 * rcpu / active : 0.0);
    bench_result(label, res.rate, "jobs/s", incr ? ">=50000" : "-");
    snprintf(name, sizeof name, "%s.rss", label);
    bench_result(name, res.hwm_kb / 1024.0, "MiB", conc == 25 ? "<=8" : "-");
    snprintf(name, sizeof name, "%s.worker_cpu", label);
    bench_result(name, res.cpu_s / n * 1e6, "us/job", "-");
    snprintf(name, sizeof name, "%s.redis_cpu", label);
    bench_result(name, rcpu / n * 1e6, "us/job", "-");
    return ok ? 0 : -1;
}

/* Push->start latency with an idle worker: n jobs pushed one at a time,
 * gap_us apart, each carrying its push time. p50/p99 get the percentiles. */
static int
run_dray_latency(const bench_redis *r, redisContext *ctl, dray_client *cl, int conc, long n,
                 long gap_us, double *p50, double *p99)
{
    bench_redis_int(ctl, "FLUSHALL");
    wproc w = worker_spawn("latency", r, conc, n, 1);
    /* idle means every worker thread is already blocked in BRPOP */
    double end = bench_now() + 20;
    while (info_field(ctl, "clients", "blocked_clients") < conc && bench_now() < end)
        bench_sleep_us(5000);
    json_t *args = json_array();
    json_array_append_new(args, json_integer(0));
    for (long i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        json_array_set_new(args, 0, json_integer((json_int_t)ts.tv_sec * 1000000000 + ts.tv_nsec));
        if (dray_client_push(cl, "BenchJob", args, NULL, NULL)) {
            fprintf(stderr, "bench_server: push: %s\n", dray_client_errstr(cl));
            exit(1);
        }
        bench_sleep_us(gap_us);
    }
    json_decref(args);
    wresult res;
    if (worker_collect(w, &res))
        return -1;
    printf("# dray latency c=%d: %ld jobs pushed one at a time %ld us apart: p50 %.1f us, "
           "p99 %.1f us, max %.1f us\n",
           conc, n, gap_us, res.p50_us, res.p99_us, res.max_us);
    char name[64];
    snprintf(name, sizeof name, "dray.latency.c%d.p50", conc);
    bench_result(name, res.p50_us, "us", "<=120");
    snprintf(name, sizeof name, "dray.latency.c%d.p99", conc);
    bench_result(name, res.p99_us, "us", "<=400");
    *p50 = res.p50_us;
    *p99 = res.p99_us;
    return (long)res.done == n ? 0 : -1;
}

/* ---- the wire floor: bare hiredis threads doing dray's Redis work ------ */

typedef struct wire_run {
    const char *sock;
    int incr;
    int batch; /* 0: BRPOP; else BLMPOP COUNT batch */
    long n;
    atomic_long done;
    atomic_int unsupported;
    double t_last;
} wire_run;

static void *
wire_thread(void *arg)
{
    wire_run *wr = arg;
    redisContext *f = redisConnectUnix(wr->sock);
    redisContext *x = wr->incr ? redisConnectUnix(wr->sock) : NULL;
    if (!f || f->err || (wr->incr && (!x || x->err))) {
        fprintf(stderr, "bench_server: wire connect failed\n");
        exit(1);
    }
    char count[16];
    snprintf(count, sizeof count, "%d", wr->batch);
    while (atomic_load(&wr->done) < wr->n && !atomic_load(&wr->unsupported)) {
        redisReply *r;
        if (wr->batch)
            r = redisCommand(f, "BLMPOP 0.1 1 %s RIGHT COUNT %s", QUEUE_KEY, count);
        else
            r = redisCommand(f, "BRPOP %s 0.1", QUEUE_KEY);
        if (!r) {
            fprintf(stderr, "bench_server: wire: %s\n", f->errstr);
            exit(1);
        }
        size_t got = 0;
        if (r->type == REDIS_REPLY_ERROR)
            atomic_store(&wr->unsupported, 1);
        else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2)
            got = wr->batch ? r->element[1]->elements : 1;
        freeReplyObject(r);
        for (size_t i = 0; i < got; i++) {
            if (x) {
                redisReply *ir = redisCommand(x, "INCR %s", COUNTER_KEY);
                if (!ir)
                    exit(1);
                freeReplyObject(ir);
            }
            if (atomic_fetch_add(&wr->done, 1) + 1 == wr->n)
                wr->t_last = bench_now();
        }
    }
    redisFree(f);
    if (x)
        redisFree(x);
    return NULL;
}

/* jobs/s, or -1 when Redis lacks the command (BLMPOP before 7.0) */
static double
wire_throughput(const bench_redis *r, redisContext *ctl, dray_client *cl, int incr, int batch,
                int conc, long n)
{
    bench_redis_int(ctl, "FLUSHALL");
    enqueue(cl, n);
    wire_run wr = {.sock = r->sock, .incr = incr, .batch = batch, .n = n};
    pthread_t th[MAX_CONC];
    double rcpu0 = redis_cpu_s(ctl);
    double t0 = bench_now();
    for (int i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, wire_thread, &wr);
    for (int i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    if (atomic_load(&wr.unsupported))
        return -1;
    double rate = (double)n / (wr.t_last - t0);
    printf("# wire %s%s c=%d: %.0f jobs/s, redis-server CPU %.1f us per job\n",
           incr ? "incr" : "noop", batch ? " batched" : "", conc, rate,
           (redis_cpu_s(ctl) - rcpu0) / n * 1e6);
    return rate;
}

/* The latency floor: conc bare threads blocked in BRPOP, n payloads pushed
 * one at a time (MULTI SADD LPUSH EXEC, as dray_client_push) gap_us apart,
 * each carrying its push time; the thread that pops one records now - push
 * time. Fills p50/p99 in microseconds. */
typedef struct wire_lat {
    const char *sock;
    long n;
    atomic_long got;
    double *lat_us;
} wire_lat;

static void *
wire_lat_thread(void *arg)
{
    wire_lat *wl = arg;
    redisContext *f = redisConnectUnix(wl->sock);
    if (!f || f->err)
        exit(1);
    while (atomic_load(&wl->got) < wl->n) {
        redisReply *r = redisCommand(f, "BRPOP %s 0.1", QUEUE_KEY);
        if (!r)
            exit(1);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            double t = bench_now();
            const char *p = strstr(r->element[1]->str, "\"args\":[");
            double pushed = p ? strtod(p + 8, NULL) / 1e9 : t;
            long k = atomic_fetch_add(&wl->got, 1);
            if (k < wl->n)
                wl->lat_us[k] = (t - pushed) * 1e6;
        }
        freeReplyObject(r);
    }
    redisFree(f);
    return NULL;
}

static void
wire_latency(const bench_redis *r, redisContext *ctl, int conc, long n, long gap_us, double *p50,
             double *p99)
{
    bench_redis_int(ctl, "FLUSHALL");
    wire_lat wl = {.sock = r->sock, .n = n};
    wl.lat_us = calloc((size_t)n, sizeof *wl.lat_us);
    pthread_t th[MAX_CONC];
    for (int i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, wire_lat_thread, &wl);
    double end = bench_now() + 20;
    while (info_field(ctl, "clients", "blocked_clients") < conc && bench_now() < end)
        bench_sleep_us(5000);
    redisContext *c = bench_redis_connect(r);
    const char *sadd[3] = {"SADD", "queues", "default"};
    for (long i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        char payload[256];
        int len = snprintf(payload, sizeof payload,
                           "{\"class\":\"BenchJob\",\"args\":[%lld],\"jid\":\"%024ld\","
                           "\"created_at\":1700000000.123456,\"queue\":\"default\",\"retry\":true,"
                           "\"enqueued_at\":1700000000.123456}",
                           (long long)ts.tv_sec * 1000000000 + ts.tv_nsec, i);
        const char *lpush[3] = {"LPUSH", QUEUE_KEY, payload};
        size_t lpushl[3] = {5, strlen(QUEUE_KEY), (size_t)len};
        redisAppendCommand(c, "MULTI");
        redisAppendCommandArgv(c, 3, sadd, NULL);
        redisAppendCommandArgv(c, 3, lpush, lpushl);
        redisAppendCommand(c, "EXEC");
        for (int k = 0; k < 4; k++) {
            void *rep;
            if (redisGetReply(c, &rep) != REDIS_OK)
                exit(1);
            freeReplyObject(rep);
        }
        bench_sleep_us(gap_us);
    }
    for (int i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    redisFree(c);
    *p50 = bench_percentile(wl.lat_us, (size_t)n, 0.50);
    *p99 = bench_percentile(wl.lat_us, (size_t)n, 0.99);
    free(wl.lat_us);
}

static void
usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: bench_server [--jobs N] [--latency-jobs N] [--gap-us US] [--conc 10,25]\n"
            "                    [--fetch-batch 1,10] [--only incr,noop,latency] [--no-wire]\n"
            "                    [--no-ceiling] [--smoke]\n"
            "  --jobs N          pre-enqueued jobs per throughput run (default 100000)\n"
            "  --latency-jobs N  jobs pushed one at a time for latency (default 2000)\n"
            "  --gap-us US       pause between latency pushes (default 1000)\n"
            "  --conc LIST       worker threads, comma separated (default 10,25)\n"
            "  --fetch-batch L   dray fetch_batch values for throughput (default 1,10)\n"
            "  --only LIST       dray runs to do (default incr,noop,latency)\n"
            "  --no-wire         skip the bare-hiredis wire floor\n"
            "  --no-ceiling      skip redis-benchmark\n"
            "  --smoke           tiny N, for CI (no thresholds)\n"
            "env BENCH_WORKER_WRAP=\"valgrind --tool=callgrind\" runs each worker under it\n");
    exit(code);
}

int
main(int argc, char **argv)
{
    if (argc == 7 && !strcmp(argv[1], "--worker"))
        return worker_main(argv[2], argv[3], atoi(argv[4]), atol(argv[5]), atoi(argv[6]));

    long n = 100000, nlat = 2000, gap_us = 1000, ceiling_n = 200000;
    int concs[8] = {10, 25}, nconc = 2, wire = 1, ceiling = 1;
    int fbs[8] = {1, BATCH}, nfb = 2;
    const char *only = "incr,noop,latency";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--jobs") && i + 1 < argc) {
            n = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--latency-jobs") && i + 1 < argc) {
            nlat = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--gap-us") && i + 1 < argc) {
            gap_us = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--conc") && i + 1 < argc) {
            nconc = 0;
            char *save = NULL, *copy = argv[++i];
            for (char *t = strtok_r(copy, ",", &save); t && nconc < 8;
                 t = strtok_r(NULL, ",", &save))
                concs[nconc++] = atoi(t);
        } else if (!strcmp(argv[i], "--fetch-batch") && i + 1 < argc) {
            nfb = 0;
            char *save = NULL, *copy = argv[++i];
            for (char *t = strtok_r(copy, ",", &save); t && nfb < 8; t = strtok_r(NULL, ",", &save))
                fbs[nfb++] = atoi(t);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--no-wire")) {
            wire = 0;
        } else if (!strcmp(argv[i], "--no-ceiling")) {
            ceiling = 0;
        } else if (!strcmp(argv[i], "--smoke")) {
            n = 2000, nlat = 50, gap_us = 200, ceiling_n = 2000;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(0);
        } else {
            usage(2);
        }
    }
    for (int i = 0; i < nconc; i++)
        if (concs[i] < 1 || concs[i] > MAX_CONC)
            usage(2);
    for (int i = 0; i < nfb; i++)
        if (fbs[i] < 1 || fbs[i] > 1000)
            usage(2);
    if (n < 1 || nlat < 1 || gap_us < 0)
        usage(2);
    signal(SIGPIPE, SIG_IGN);
    dray_log_set_level(DRAY_LOG_WARN);
    bench_redis r;
    if (bench_redis_start(&r, getenv("DRAY_BENCH_TLS") != NULL)) /* TLS needs the port */
        return 1;
    char ver[32];
    bench_redis_version(&r, ver, sizeof ver);
    printf("# bench_server: dray %s, redis-server %s (private, %s), %ld jobs per run, "
           "latency %ld jobs\n",
           dray_version(), ver, r.sock, n, nlat);
    redisContext *ctl = bench_redis_connect(&r);
    dray_client *cl = new_client(&r);
    int failed = 0;

    double incr_rate = -1, rpop_rate = -1;
    if (ceiling) {
        bench_redis_int(ctl, "FLUSHALL");
        char args[96];
        snprintf(args, sizeof args, "-n %ld -P 1 -t incr,lpush,rpop", ceiling_n);
        const char *names[3] = {"INCR", "LPUSH", "RPOP"};
        double rates[3];
        if (bench_redis_benchmark(&r, args, 3, names, rates) == 0) {
            incr_rate = rates[0];
            rpop_rate = rates[2];
            bench_result("redis_benchmark.incr", rates[0], "req/s", "-");
            bench_result("redis_benchmark.lpush", rates[1], "req/s", "-");
            bench_result("redis_benchmark.rpop", rates[2], "req/s", "-");
            bench_result("ceiling.incr", 1 / (1 / rates[2] + 1 / rates[0]), "jobs/s", "-");
            bench_result("ceiling.noop", rates[2], "jobs/s", "-");
        } else {
            printf("# redis-benchmark not available: ceiling skipped\n");
        }
    }

    for (int ci = 0; ci < nconc; ci++) {
        int conc = concs[ci];
        char name[96];
        double wi = -1, wn = -1, wbi = -1, wbn = -1;
        if (wire) {
            wi = wire_throughput(&r, ctl, cl, 1, 0, conc, n);
            wn = wire_throughput(&r, ctl, cl, 0, 0, conc, n);
            wbi = wire_throughput(&r, ctl, cl, 1, BATCH, conc, n);
            wbn = wire_throughput(&r, ctl, cl, 0, BATCH, conc, n);
            snprintf(name, sizeof name, "wire.incr.c%d", conc);
            bench_result(name, wi, "jobs/s", "-");
            snprintf(name, sizeof name, "wire.noop.c%d", conc);
            bench_result(name, wn, "jobs/s", "-");
            if (wbn > 0) {
                snprintf(name, sizeof name, "wire.incr.c%d.batch%d", conc, BATCH);
                bench_result(name, wbi, "jobs/s", "-");
                snprintf(name, sizeof name, "wire.noop.c%d.batch%d", conc, BATCH);
                bench_result(name, wbn, "jobs/s", "-");
            } else {
                printf("# BLMPOP unsupported by this redis-server: batched wire floor skipped\n");
            }
        }
        for (int fi = 0; fi < nfb; fi++) {
            int fb = fbs[fi];
            char sfx[16] = "";
            if (fb > 1)
                snprintf(sfx, sizeof sfx, ".fb%d", fb);
            for (int incr = 1; incr >= 0; incr--) {
                if (!strstr(only, incr ? "incr" : "noop"))
                    continue;
                double rate;
                if (run_dray_throughput(&r, ctl, cl, incr, conc, fb, n, &rate))
                    failed = 1;
                if (rate <= 0)
                    continue;
                double ceil_rate =
                    incr ? (incr_rate > 0 ? 1 / (1 / rpop_rate + 1 / incr_rate) : -1) : rpop_rate;
                if (ceil_rate > 0) {
                    snprintf(name, sizeof name, "ratio.dray_vs_ceiling.%s.c%d%s",
                             incr ? "incr" : "noop", conc, sfx);
                    bench_result(name, rate / ceil_rate, "x", "-");
                }
                /* against the wire floor with the same fetch shape */
                double floor = fb == 1 ? (incr ? wi : wn) : fb == BATCH ? (incr ? wbi : wbn) : -1;
                if (floor > 0) {
                    snprintf(name, sizeof name, "ratio.dray_vs_wire.%s.c%d%s",
                             incr ? "incr" : "noop", conc, sfx);
                    bench_result(name, rate / floor, "x", "-");
                }
            }
        }
        if (strstr(only, "latency")) {
            double d50 = 0, d99 = 0;
            if (run_dray_latency(&r, ctl, cl, conc, nlat, gap_us, &d50, &d99))
                failed = 1;
            if (wire) {
                /* right after dray's, so both see the same machine */
                double p50, p99;
                wire_latency(&r, ctl, conc, nlat, gap_us, &p50, &p99);
                printf("# wire latency c=%d: p50 %.1f us, p99 %.1f us\n", conc, p50, p99);
                snprintf(name, sizeof name, "wire.latency.c%d.p50", conc);
                bench_result(name, p50, "us", "-");
                snprintf(name, sizeof name, "wire.latency.c%d.p99", conc);
                bench_result(name, p99, "us", "-");
                snprintf(name, sizeof name, "dray.latency.c%d.p50_minus_wire", conc);
                bench_result(name, d50 - p50, "us", "-");
                snprintf(name, sizeof name, "dray.latency.c%d.p99_minus_wire", conc);
                bench_result(name, d99 - p99, "us", "-");
            }
        }
    }
    dray_client_free(cl);
    redisFree(ctl);
    bench_redis_stop(&r);
    return failed;
}
