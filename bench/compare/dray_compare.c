/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray's driver for bench/compare/run: the producer side through the public
 * client API, and the worker side by running bench/bench_server's worker
 * mode (`bench_server --worker MODE SOCK CONC N FETCH_BATCH`) on the Redis
 * the harness started, so dray's worker figures come from the same binary as
 * bench/run.sh's.
 *
 *   dray_compare push SOCK NSINGLE NBULK
 *   dray_compare throughput SOCK CONC N FETCH_BATCH BENCH_SERVER
 *   dray_compare latency SOCK CONC N GAP_US FETCH_BATCH BENCH_SERVER
 *
 * Output: "RESULT<TAB>metric<TAB>value" lines (bench/compare/run reads them)
 * and "# " prose. Exit status 1 when a run fails its own checks (jobs lost,
 * counter wrong). Every mode starts with FLUSHALL. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <dray/dray.h>

#define QUEUE_KEY "queue:default"
#define COUNTER_KEY "bench:incr" /* the key bench_server's worker INCRs */
#define ENQUEUE_CHUNK 10000      /* args arrays built per push_bulk call */
#define IDLE_WAIT_S 20           /* how long to wait for the workers to block */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dray_compare: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void
result(const char *metric, double value)
{
    printf("RESULT\t%s\t%.6g\n", metric, value);
    fflush(stdout);
}

static redisContext *
ctl_connect(const char *sock)
{
    redisContext *c = redisConnectUnix(sock);
    if (!c || c->err)
        die("cannot connect to %s: %s", sock, c ? c->errstr : "out of memory");
    return c;
}

/* Run a command and return its integer reply (a bulk string is parsed, nil
 * is 0); exits on error. */
static long long
ctl_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR)
        die("redis '%s': %s", fmt, r ? r->str : c->errstr);
    long long v = 0;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return v;
}

/* One field of INFO clients (e.g. blocked_clients), or -1. */
static long long
info_clients(redisContext *c, const char *field)
{
    redisReply *r = redisCommand(c, "INFO clients");
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

static dray_client *
client_new(const char *sock)
{
    char url[400], err[256];
    snprintf(url, sizeof url, "unix://%s", sock);
    dray_options o;
    dray_options_init(&o);
    o.redis_url = url;
    dray_client *c;
    if (dray_client_new(&o, &c, err, sizeof err))
        die("%s", err);
    return c;
}

/* ---- push: single and bulk rates ----------------------------------------- */

/* The same jobs as bench/bench_push.c: class BenchJob, args [i, "bench"]. */
static int
mode_push(const char *sock, long nsingle, long nbulk)
{
    redisContext *ctl = ctl_connect(sock);
    dray_client *c = client_new(sock);
    ctl_int(ctl, "FLUSHALL");

    json_t *args = json_pack("[i,s]", 0, "bench");
    long warm = nsingle / 20 + 10; /* connect and fault in the code paths */
    for (long i = 0; i < warm; i++)
        if (dray_client_push(c, "BenchJob", args, NULL, NULL))
            die("push: %s", dray_client_errstr(c));
    double t0 = now_s();
    for (long i = 0; i < nsingle; i++) {
        json_array_set_new(args, 0, json_integer(i));
        if (dray_client_push(c, "BenchJob", args, NULL, NULL))
            die("push: %s", dray_client_errstr(c));
    }
    double single = (double)nsingle / (now_s() - t0);
    json_decref(args);
    long long llen = ctl_int(ctl, "LLEN %s", QUEUE_KEY);
    if (llen != warm + nsingle)
        die("single: %lld jobs queued, expected %ld", llen, warm + nsingle);

    ctl_int(ctl, "FLUSHALL");
    json_t *list = json_array(); /* building the args is the caller's: not timed */
    for (long i = 0; i < nbulk; i++)
        json_array_append_new(list, json_pack("[i,s]", (int)i, "bench"));
    size_t pushed = 0;
    t0 = now_s();
    if (dray_client_push_bulk(c, "BenchJob", list, NULL, NULL, &pushed))
        die("push_bulk: %s", dray_client_errstr(c));
    double bulk = (double)nbulk / (now_s() - t0);
    json_decref(list);
    llen = ctl_int(ctl, "LLEN %s", QUEUE_KEY);
    if ((long)pushed != nbulk || llen != nbulk)
        die("bulk: wrote %zu (queue %lld), expected %ld", pushed, llen, nbulk);
    ctl_int(ctl, "FLUSHALL");

    printf("# dray push: %ld single pushes (after %ld warm-up), one push_bulk of %ld\n", nsingle,
           warm, nbulk);
    result("push.single", single);
    result("push.bulk", bulk);
    dray_client_free(c);
    redisFree(ctl);
    return 0;
}

/* ---- the worker: bench_server --worker ------------------------------------ */

typedef struct worker {
    pid_t pid;
    FILE *out; /* the worker's stdout: "key value" lines at the end */
} worker;

typedef struct worker_out {
    double done, processed, errors, rate, hwm_kb, p50_us, p99_us, max_us, cpu_s;
} worker_out;

static worker
worker_spawn(const char *server, const char *mode, const char *sock, int conc, long n, int fb)
{
    int fds[2];
    if (pipe(fds))
        die("pipe: %s", strerror(errno));
    char cs[16], ns[24], fbs[16];
    snprintf(cs, sizeof cs, "%d", conc);
    snprintf(ns, sizeof ns, "%ld", n);
    snprintf(fbs, sizeof fbs, "%d", fb);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(server, "bench_server", "--worker", mode, sock, cs, ns, fbs, (char *)NULL);
        fprintf(stderr, "dray_compare: exec %s: %s\n", server, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    worker w = {pid, fdopen(fds[0], "r")};
    return w;
}

/* Read the worker's report and reap it; -1 when it failed. */
static int
worker_collect(worker w, worker_out *o)
{
    memset(o, 0, sizeof *o);
    char key[32];
    double v;
    while (fscanf(w.out, "%31s %lf", key, &v) == 2) {
        if (!strcmp(key, "done"))
            o->done = v;
        else if (!strcmp(key, "processed"))
            o->processed = v;
        else if (!strcmp(key, "errors"))
            o->errors = v;
        else if (!strcmp(key, "rate"))
            o->rate = v;
        else if (!strcmp(key, "hwm_kb"))
            o->hwm_kb = v;
        else if (!strcmp(key, "p50_us"))
            o->p50_us = v;
        else if (!strcmp(key, "p99_us"))
            o->p99_us = v;
        else if (!strcmp(key, "max_us"))
            o->max_us = v;
        else if (!strcmp(key, "cpu_s"))
            o->cpu_s = v;
    }
    fclose(w.out);
    int st;
    waitpid(w.pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "dray_compare: worker failed (wait status %d)\n", st);
        return -1;
    }
    return 0;
}

/* ---- throughput: N pre-enqueued jobs, one INCR each ------------------------ */

static int
mode_throughput(const char *sock, int conc, long n, int fb, const char *server)
{
    redisContext *ctl = ctl_connect(sock);
    dray_client *c = client_new(sock);
    ctl_int(ctl, "FLUSHALL");
    for (long i = 0; i < n; i += ENQUEUE_CHUNK) {
        json_t *list = json_array();
        for (long k = i; k < n && k < i + ENQUEUE_CHUNK; k++)
            json_array_append_new(list, json_pack("[i]", (int)k));
        size_t pushed;
        if (dray_client_push_bulk(c, "BenchJob", list, NULL, NULL, &pushed))
            die("enqueue: %s", dray_client_errstr(c));
        json_decref(list);
    }
    worker w = worker_spawn(server, "incr", sock, conc, n, fb);
    worker_out o;
    int failed = worker_collect(w, &o);
    long long left = ctl_int(ctl, "LLEN %s", QUEUE_KEY);
    long long counter = ctl_int(ctl, "GET %s", COUNTER_KEY);
    int ok = !failed && (long)o.done == n && left == 0 && counter == n && o.errors == 0;
    printf("# dray c=%d fetch_batch=%d: %ld jobs, %.0f jobs/s, peak RSS %.0f KiB, worker CPU "
           "%.1f us/job; queue left %lld, %s %lld: %s\n",
           conc, fb, n, o.rate, o.hwm_kb, o.cpu_s / (double)n * 1e6, left, COUNTER_KEY, counter,
           ok ? "checks ok" : "CHECK FAILED");
    if (ok) {
        result("thr", o.rate);
        result("rss", o.hwm_kb / 1024.0);
    }
    dray_client_free(c);
    redisFree(ctl);
    return ok ? 0 : 1;
}

/* ---- latency: an idle worker, N jobs pushed one at a time ------------------- */

static int
mode_latency(const char *sock, int conc, long n, long gap_us, int fb, const char *server)
{
    redisContext *ctl = ctl_connect(sock);
    dray_client *c = client_new(sock);
    ctl_int(ctl, "FLUSHALL");
    worker w = worker_spawn(server, "latency", sock, conc, n, fb);
    /* idle means every worker thread is already blocked in its fetch */
    double end = now_s() + IDLE_WAIT_S;
    while (info_clients(ctl, "blocked_clients") < conc && now_s() < end)
        sleep_us(5000);
    if (info_clients(ctl, "blocked_clients") < conc)
        printf("# dray latency: only %lld of %d workers blocked after %d s\n",
               info_clients(ctl, "blocked_clients"), conc, IDLE_WAIT_S);
    json_t *args = json_array();
    json_array_append_new(args, json_integer(0));
    for (long i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        json_array_set_new(args, 0, json_integer((json_int_t)ts.tv_sec * 1000000000 + ts.tv_nsec));
        if (dray_client_push(c, "BenchJob", args, NULL, NULL))
            die("push: %s", dray_client_errstr(c));
        sleep_us(gap_us);
    }
    json_decref(args);
    worker_out o;
    int failed = worker_collect(w, &o);
    int ok = !failed && (long)o.done == n;
    printf("# dray latency c=%d fetch_batch=%d: %ld jobs %ld us apart: p50 %.1f us, p99 %.1f us, "
           "max %.1f us%s\n",
           conc, fb, n, gap_us, o.p50_us, o.p99_us, o.max_us, ok ? "" : " (CHECK FAILED)");
    if (ok) {
        result("p50", o.p50_us);
        result("p99", o.p99_us);
    }
    dray_client_free(c);
    redisFree(ctl);
    return ok ? 0 : 1;
}

static void
usage(void)
{
    fprintf(stderr, "usage: dray_compare push SOCK NSINGLE NBULK\n"
                    "       dray_compare throughput SOCK CONC N FETCH_BATCH BENCH_SERVER\n"
                    "       dray_compare latency SOCK CONC N GAP_US FETCH_BATCH BENCH_SERVER\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    dray_log_set_level(DRAY_LOG_WARN);
    if (argc == 5 && !strcmp(argv[1], "push"))
        return mode_push(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc == 7 && !strcmp(argv[1], "throughput"))
        return mode_throughput(argv[2], atoi(argv[3]), atol(argv[4]), atoi(argv[5]), argv[6]);
    if (argc == 8 && !strcmp(argv[1], "latency"))
        return mode_latency(argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5]), atoi(argv[6]),
                            argv[7]);
    usage();
    return 2;
}
