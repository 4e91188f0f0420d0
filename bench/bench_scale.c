/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Scaling benchmark (#7, "Scaling with work"): does dray's cost per job stay
 * flat as work piles up? Three measurements, each repeated --runs times with
 * medians printed at the end, on a private redis-server (unix socket), with
 * an embedded dray_server (no-op handler, concurrency 10) in this process:
 *
 *  depth   the queue holds D jobs (1,000 .. 1,000,000) before the first is
 *          taken; the first min(D, 100,000) are timed from the first handler
 *          start to the last handler end. Warm start (default): the jobs are
 *          staged under another key and RENAMEd onto the queue once every
 *          worker waits in BRPOP, so thread start-up is not in the figure;
 *          --cold starts the server on the full queue instead. us/job, jobs/s,
 *          CPU per job of this process and of redis-server over the same
 *          window, Redis' BRPOP time, Redis memory (the redis-server's VmHWM
 *          and INFO used_memory_peak; a fresh redis-server per run). Ratio of
 *          the largest depth to the smallest.
 *  sched   N jobs (100,000) in the schedule set, all due (score 0); a server
 *          with poll_interval_s 1 starts. "drain": the workers listen on
 *          another queue, so only the scheduler works: seconds from the first
 *          move to an empty schedule set (ZCARD read every ms), jobs/s, CPU
 *          per moved job, Redis' time per command (INFO commandstats, script
 *          calls included). "process": the workers take the jobs as they
 *          arrive; seconds to all processed. Next to it, the scheduler's
 *          floor from bare hiredis: poller.c's script with enqueued_at spliced
 *          into the payload in C (no JSON parse), at batch 100 and 1000, and
 *          one Lua script per batch doing everything.
 *  queues  fetch throughput with one busy queue listed last among Q-1 idle
 *          ones (Q = 1, 10, 100, 1,000), strict and weighted orders, at each
 *          fetch_batch given, against the busy queue alone. Next to it, the
 *          wire floor (bare hiredis threads sending the same BRPOP key lists)
 *          and a prototype of skipping idle queues ("live": LMPOP over the
 *          queues a probe script last saw non-empty, refreshed every 100 ms or
 *          when they run dry; BRPOP over every queue only when none is).
 *
 *   bench_scale [--smoke] [--runs N] [--only depth,sched,queues]
 *               [--depths 1000,10000,100000,1000000] [--measure N] [--sched N]
 *               [--queues 1,10,100,1000] [--queue-jobs N] [--fetch-batch 1,10]
 *               [--conc N] [--cold] [--no-wire]
 *
 * Output: RESULT lines as bench_common.h describes; '#' lines for people.
 * Needs Redis >= 7 for the live prototype (LMPOP).
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <dray/dray.h>

#include "bench_common.h"

#define MAX_RUNS 16
#define MAX_LIST 8
#define MAX_CONC 64
#define CHUNK 10000        /* jobs per dray_client_push_bulk call when filling */
#define FIRST_WINDOW 1000  /* the window every depth shares: the first 1,000 jobs */
#define SCHED_POLL_US 1000 /* how often the drain watcher reads ZCARD */
#define RUN_TIMEOUT_S 600  /* give up on one measurement after this long */

typedef struct list {
    long v[MAX_LIST];
    int n;
} list;

/* ================================================= the embedded server */

/* CPU seconds (user + sys) of this process, or of the calling thread. */
static double
cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* A numeric field of INFO section, or -1. */
static double
info_num(redisContext *c, const char *section, const char *field)
{
    redisReply *r = redisCommand(c, "INFO %s", section);
    double v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n%s:", field);
        const char *p = strstr(r->str, pat);
        if (p)
            v = strtod(p + strlen(pat), NULL);
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

/* What the handler sees; reset before each run. */
typedef struct run_state {
    dray_server *srv;
    long target; /* stop the server after this many BenchJob jobs (0: never) */
    atomic_long started;
    atomic_long done;
    double t_first;               /* first handler start */
    double t_window;              /* end of job FIRST_WINDOW */
    double t_last;                /* end of job `target` */
    double cpu_first, cpu_last;   /* this process's CPU seconds at t_first and t_last */
    double rcpu_first, rcpu_last; /* redis-server's, likewise (-1 without probe) */
    redisContext *probe;          /* read INFO cpu at the first and last job; set by the caller */
    sem_t reached;                /* posted once when done reaches target */
} run_state;

static run_state RS;

static int
bench_job(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    double t = bench_now();
    if (atomic_fetch_add(&RS.started, 1) == 0) {
        /* CPU is counted from here, so start-up is left out as in the wall time */
        RS.t_first = t;
        RS.cpu_first = cpu_s(RUSAGE_SELF);
        RS.rcpu_first = RS.probe ? redis_cpu_s(RS.probe) : -1;
    }
    long d = atomic_fetch_add(&RS.done, 1) + 1;
    t = bench_now();
    if (d == FIRST_WINDOW)
        RS.t_window = t;
    if (RS.target > 0 && d == RS.target) {
        RS.t_last = t;
        RS.cpu_last = cpu_s(RUSAGE_SELF);
        RS.rcpu_last = RS.probe ? redis_cpu_s(RS.probe) : -1;
        dray_server_stop(RS.srv);
        sem_post(&RS.reached);
    }
    return 0;
}

/* Jobs pushed only to wake workers blocked in BRPOP once the server is
 * stopping, so a stop takes milliseconds instead of the 2 s fetch timeout. */
static int
filler_job(dray_job *job, dray_result *res, void *ud)
{
    (void)job;
    (void)res;
    (void)ud;
    return 0;
}

typedef struct server_run {
    dray_server *srv;
    pthread_t thread;
    int rc;
} server_run;

static void *
server_thread(void *arg)
{
    server_run *sr = arg;
    sr->rc = dray_server_run(sr->srv);
    return NULL;
}

/* Start an embedded server on r in a thread; exits the program on failure. */
static void
server_start(server_run *sr, const bench_redis *r, const char *queues, int conc, int fetch_batch,
             double poll_interval_s, long target)
{
    memset(&RS, 0, sizeof RS);
    sem_init(&RS.reached, 0, 0);
    RS.target = target;
    RS.probe = target > 0 ? bench_redis_connect(r) : NULL;
    dray_options o;
    dray_options_init(&o);
    o.redis_url = r->url;
    o.concurrency = conc;
    o.queues = queues;
    o.fetch_batch = fetch_batch;
    o.poll_interval_s = poll_interval_s;
    o.shutdown_timeout_s = 10;
    o.log_level = DRAY_LOG_WARN; /* no per-job logging (log_jobs stays 0) */
    char err[256];
    memset(sr, 0, sizeof *sr);
    if (dray_server_new(&o, &sr->srv, err, sizeof err) ||
        dray_server_register(sr->srv, "BenchJob", bench_job, NULL, NULL) ||
        dray_server_register(sr->srv, "Filler", filler_job, NULL, NULL)) {
        fprintf(stderr, "bench_scale: server: %s\n", sr->srv ? dray_server_errstr(sr->srv) : err);
        exit(1);
    }
    RS.srv = sr->srv;
    if (pthread_create(&sr->thread, NULL, server_thread, sr)) {
        fprintf(stderr, "bench_scale: pthread_create failed\n");
        exit(1);
    }
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
        fprintf(stderr, "bench_scale: %s\n", err);
        exit(1);
    }
    return c;
}

/* Push conc Filler jobs to queue so every worker blocked on it wakes up. */
static void
wake_workers(dray_client *cl, const char *queue, int conc)
{
    dray_push_opts po;
    memset(&po, 0, sizeof po);
    po.queue = queue;
    po.retry = DRAY_RETRY_NONE;
    json_t *args = json_array();
    for (int i = 0; i < conc; i++)
        if (dray_client_push(cl, "Filler", args, &po, NULL))
            fprintf(stderr, "bench_scale: filler push: %s\n", dray_client_errstr(cl));
    json_decref(args);
}

/* Stop (if the handler has not), wake idle workers, join, free. */
static void
server_finish(server_run *sr, dray_client *cl, const char *wake_queue, int conc)
{
    dray_server_stop(sr->srv);
    if (wake_queue)
        wake_workers(cl, wake_queue, conc);
    pthread_join(sr->thread, NULL);
    if (sr->rc)
        fprintf(stderr, "bench_scale: server run: %s\n", dray_server_errstr(sr->srv));
    dray_server_free(sr->srv);
    sem_destroy(&RS.reached);
    if (RS.probe)
        redisFree(RS.probe);
    RS.probe = NULL;
    sr->srv = NULL;
}

/* Wait until the handler has seen RS.target jobs; 0, or -1 after timeout_s. */
static int
wait_target(double timeout_s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)timeout_s;
    while (sem_timedwait(&RS.reached, &ts))
        if (errno != EINTR)
            return -1;
    return 0;
}

/* n BenchJob jobs into queue, CHUNK per bulk call; with at > 0 into the
 * schedule set at that time instead. */
static void
enqueue(dray_client *cl, const char *queue, long n, double at)
{
    dray_push_opts po;
    memset(&po, 0, sizeof po);
    po.queue = queue;
    po.at = at;
    for (long i = 0; i < n; i += CHUNK) {
        json_t *args = json_array();
        for (long k = i; k < n && k < i + CHUNK; k++)
            json_array_append_new(args, json_pack("[i]", (int)k));
        size_t pushed;
        if (dray_client_push_bulk(cl, "BenchJob", args, &po, NULL, &pushed)) {
            fprintf(stderr, "bench_scale: enqueue: %s\n", dray_client_errstr(cl));
            exit(1);
        }
        json_decref(args);
    }
}

/* Jobs are first pushed to queue "staging", which no server listens to. */
#define STAGING "staging"

/* Warm start: once conc workers are blocked in their fetch (so every thread
 * is connected and idle), move the staged jobs onto dest_key in one RENAME,
 * which wakes them like a push. The queue then holds all its jobs before any
 * is taken, without counting the server's start-up. Exits after 30 s. */
static void
release_staged(redisContext *ctl, int conc, const char *dest_key)
{
    double end = bench_now() + 30;
    while (info_num(ctl, "clients", "blocked_clients") < conc) {
        if (bench_now() > end) {
            fprintf(stderr, "bench_scale: workers never blocked in their fetch\n");
            exit(1);
        }
        bench_sleep_us(2000);
    }
    bench_redis_int(ctl, "RENAME queue:" STAGING " %s", dest_key);
    bench_redis_int(ctl, "SREM queues " STAGING);
}

/* ================================================= measuring helpers */

/* Calls and microseconds Redis spent in command cmd (lowercase) since the
 * last CONFIG RESETSTAT; both 0 when it never ran. */
static void
cmdstat(redisContext *c, const char *cmd, double *calls, double *usec)
{
    *calls = *usec = 0;
    redisReply *r = redisCommand(c, "INFO commandstats");
    if (r && r->type == REDIS_REPLY_STRING) {
        char pat[64];
        snprintf(pat, sizeof pat, "cmdstat_%s:calls=", cmd);
        const char *p = strstr(r->str, pat);
        if (p) {
            *calls = strtod(p + strlen(pat), NULL);
            const char *u = strstr(p, ",usec=");
            if (u)
                *usec = strtod(u + 6, NULL);
        }
    }
    if (r)
        freeReplyObject(r);
}

/* Peak resident set (VmHWM) of process pid in KiB, or -1. */
static long
vmhwm_kb_of(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

static double
med(double *v, int n)
{
    double tmp[MAX_RUNS];
    memcpy(tmp, v, sizeof *v * (size_t)n);
    return bench_median(tmp, (size_t)n);
}

static void
result(const char *name, double v, const char *unit)
{
    bench_result(name, v, unit, "-");
}

/* ================================================= 1. queue depth */

typedef struct depth_fig {
    double us_job[MAX_RUNS];    /* wall time per job over the timed jobs */
    double rate[MAX_RUNS];      /* jobs/s over the timed jobs */
    double rate_1k[MAX_RUNS];   /* jobs/s over the first FIRST_WINDOW */
    double dray_cpu[MAX_RUNS];  /* us of CPU per job, this process */
    double redis_cpu[MAX_RUNS]; /* us of CPU per job, redis-server */
    double brpop_us[MAX_RUNS];  /* Redis' own time per BRPOP (commandstats) */
    double hwm_mib[MAX_RUNS];   /* redis-server VmHWM */
    double peak_mib[MAX_RUNS];  /* INFO memory used_memory_peak */
    double b_per_job[MAX_RUNS]; /* used_memory growth per queued job */
} depth_fig;

static int
depth_run(long depth, long measure, int conc, int cold, depth_fig *f, int run)
{
    bench_redis r;
    if (bench_redis_start(&r, 0))
        return -1;
    redisContext *ctl = bench_redis_connect(&r);
    dray_client *cl = new_client(&r);
    double mem0 = info_num(ctl, "memory", "used_memory");
    double t0 = bench_now();
    enqueue(cl, cold ? "default" : STAGING, depth, 0);
    double t_fill = bench_now() - t0;
    double mem1 = info_num(ctl, "memory", "used_memory");
    long m = depth < measure ? depth : measure;
    bench_redis_int(ctl, "CONFIG RESETSTAT");
    server_run sr;
    server_start(&sr, &r, "default", conc, 1, 0, m);
    if (!cold)
        release_staged(ctl, conc, "queue:default");
    int rc = wait_target(RUN_TIMEOUT_S);
    double cpu = RS.cpu_last - RS.cpu_first, rcpu = RS.rcpu_last - RS.rcpu_first;
    double brpop_calls, brpop_usec;
    cmdstat(ctl, "brpop", &brpop_calls, &brpop_usec);
    server_finish(&sr, cl, m == depth ? "default" : NULL, conc);
    if (rc) {
        fprintf(stderr, "bench_scale: depth %ld: only %ld of %ld jobs in %d s\n", depth,
                atomic_load(&RS.done), m, RUN_TIMEOUT_S);
    } else {
        double active = RS.t_last - RS.t_first;
        f->us_job[run] = active / (double)m * 1e6;
        f->rate[run] = (double)m / active;
        f->rate_1k[run] =
            m >= FIRST_WINDOW ? FIRST_WINDOW / (RS.t_window - RS.t_first) : f->rate[run];
        f->dray_cpu[run] = cpu / (double)m * 1e6;
        f->redis_cpu[run] = rcpu / (double)m * 1e6;
        f->brpop_us[run] = brpop_calls > 0 ? brpop_usec / brpop_calls : 0;
        f->hwm_mib[run] = (double)vmhwm_kb_of(r.pid) / 1024.0;
        f->peak_mib[run] = info_num(ctl, "memory", "used_memory_peak") / 1048576.0;
        f->b_per_job[run] = (mem1 - mem0) / (double)depth;
        printf("# depth %ld run %d: filled in %.2f s; timed %ld jobs: %.2f us/job (%.0f jobs/s), "
               "first %d: %.0f jobs/s; CPU/job dray %.1f us, redis %.1f us (BRPOP %.2f us in "
               "Redis); redis VmHWM %.1f MiB, used_memory_peak %.1f MiB, %.0f B/queued job\n",
               depth, run + 1, t_fill, m, f->us_job[run], f->rate[run], FIRST_WINDOW,
               f->rate_1k[run], f->dray_cpu[run], f->redis_cpu[run], f->brpop_us[run],
               f->hwm_mib[run], f->peak_mib[run], f->b_per_job[run]);
    }
    fflush(stdout);
    dray_client_free(cl);
    redisFree(ctl);
    bench_redis_stop(&r);
    return rc;
}

static int
bench_depth(const list *depths, long measure, int conc, int cold, int runs)
{
    static depth_fig figs[MAX_LIST];
    int failed = 0;
    printf("# == 1. queue depth: no-op jobs, concurrency %d, fetch_batch 1; the first "
           "min(depth, %ld) jobs timed; %s\n",
           conc, measure,
           cold ? "cold: the server starts on the full queue (its start-up ramp included)"
                : "warm: the full queue appears (RENAME) once every worker waits in BRPOP");
    for (int run = 0; run < runs; run++)
        for (int i = 0; i < depths->n; i++)
            if (depth_run(depths->v[i], measure, conc, cold, &figs[i], run))
                failed = 1;
    if (failed)
        return -1;
    printf("#\n# %-9s %9s %9s %12s %12s %9s %9s %10s %10s %8s\n", "depth", "us/job", "jobs/s",
           "jobs/s 1st1k", "dray cpu us", "redis us", "brpop us", "redis MiB", "peak MiB", "B/job");
    for (int i = 0; i < depths->n; i++) {
        depth_fig *f = &figs[i];
        printf("# %-9ld %9.2f %9.0f %12.0f %12.1f %9.1f %9.2f %10.1f %10.1f %8.0f\n", depths->v[i],
               med(f->us_job, runs), med(f->rate, runs), med(f->rate_1k, runs),
               med(f->dray_cpu, runs), med(f->redis_cpu, runs), med(f->brpop_us, runs),
               med(f->hwm_mib, runs), med(f->peak_mib, runs), med(f->b_per_job, runs));
    }
    for (int i = 0; i < depths->n; i++) {
        depth_fig *f = &figs[i];
        long d = depths->v[i];
        char name[96];
#define DEPTH_RESULT(field, label, unit)                                                           \
    snprintf(name, sizeof name, "scale.depth.%ld.%s", d, label);                                   \
    result(name, med(f->field, runs), unit)
        DEPTH_RESULT(us_job, "us_per_job", "us/job");
        DEPTH_RESULT(rate, "rate", "jobs/s");
        DEPTH_RESULT(rate_1k, "rate_first1k", "jobs/s");
        DEPTH_RESULT(dray_cpu, "dray_cpu", "us/job");
        DEPTH_RESULT(redis_cpu, "redis_cpu", "us/job");
        DEPTH_RESULT(brpop_us, "redis_brpop", "us/call");
        DEPTH_RESULT(hwm_mib, "redis_vmhwm", "MiB");
        DEPTH_RESULT(peak_mib, "redis_used_memory_peak", "MiB");
        DEPTH_RESULT(b_per_job, "redis_bytes_per_job", "B");
#undef DEPTH_RESULT
    }
    if (depths->n > 1) {
        depth_fig *lo = &figs[0], *hi = &figs[depths->n - 1];
        double cpu_lo = med(lo->dray_cpu, runs) + med(lo->redis_cpu, runs);
        double cpu_hi = med(hi->dray_cpu, runs) + med(hi->redis_cpu, runs);
        printf("# largest/smallest depth (%ld/%ld): us/job %.2fx, CPU/job (dray + redis) %.2fx, "
               "first-1k rate %.2fx\n",
               depths->v[depths->n - 1], depths->v[0],
               med(hi->us_job, runs) / med(lo->us_job, runs), cpu_hi / cpu_lo,
               med(hi->rate_1k, runs) / med(lo->rate_1k, runs));
        result("scale.depth.ratio.us_per_job", med(hi->us_job, runs) / med(lo->us_job, runs), "x");
        result("scale.depth.ratio.cpu_per_job", cpu_hi / cpu_lo, "x");
        result("scale.depth.ratio.rate_first1k", med(hi->rate_1k, runs) / med(lo->rate_1k, runs),
               "x");
    }
    return 0;
}

/* ================================================= 2. scheduler drain */

typedef struct sched_fig {
    double drain_s[MAX_RUNS];   /* first move -> schedule set empty */
    double rate[MAX_RUNS];      /* jobs/s moved */
    double start_s[MAX_RUNS];   /* server start -> schedule set empty (includes the random
                                   first nap of up to poll_interval_s) */
    double dray_cpu[MAX_RUNS];  /* us per moved job, dray's threads */
    double redis_cpu[MAX_RUNS]; /* us per moved job, redis-server */
    double zrange_us[MAX_RUNS]; /* Redis time per ZRANGEBYSCORE call */
    double eval_us[MAX_RUNS];   /* Redis time per EVALSHA (the move script) */
    double zrem_us[MAX_RUNS];   /* Redis time per call made by the script */
    double sadd_us[MAX_RUNS];
    double lpush_us[MAX_RUNS];
    double done_s[MAX_RUNS]; /* "process": first move -> last job processed */
    double done_rate[MAX_RUNS];
} sched_fig;

/* One scheduler run: n due jobs for queue "default"; the workers listen on
 * "default" when process, else on "elsewhere". */
static int
sched_run(long n, int conc, int process, sched_fig *f, int run)
{
    bench_redis r;
    if (bench_redis_start(&r, 0))
        return -1;
    redisContext *ctl = bench_redis_connect(&r);
    dray_client *cl = new_client(&r);
    enqueue(cl, "default", n, dray_now() + 3600);
    /* every job due: score 0 (the epoch) */
    bench_redis_int(ctl, "ZUNIONSTORE schedule 1 schedule WEIGHTS 0");
    long long zn = bench_redis_int(ctl, "ZCARD schedule");
    bench_redis_int(ctl, "CONFIG RESETSTAT");
    double rcpu0 = redis_cpu_s(ctl), cpu0 = cpu_s(RUSAGE_SELF), me0 = cpu_s(RUSAGE_THREAD);
    server_run sr;
    double t0 = bench_now(), t_move = -1, t_empty = -1;
    server_start(&sr, &r, process ? "default" : "elsewhere", conc, 1, 1.0, process ? n : 0);
    while (bench_now() - t0 < RUN_TIMEOUT_S) {
        long long z = bench_redis_int(ctl, "ZCARD schedule");
        double t = bench_now();
        if (t_move < 0 && z < zn)
            t_move = t;
        if (z == 0) {
            t_empty = t;
            break;
        }
        bench_sleep_us(SCHED_POLL_US);
    }
    /* this thread's polling is not the scheduler's work */
    double cpu = cpu_s(RUSAGE_SELF) - cpu0 - (cpu_s(RUSAGE_THREAD) - me0);
    double rcpu = redis_cpu_s(ctl) - rcpu0;
    int rc = t_empty < 0 ? -1 : 0;
    if (!rc && process)
        rc = wait_target(RUN_TIMEOUT_S);
    double zc, zu, ec, eu, c, u;
    cmdstat(ctl, "zrangebyscore", &zc, &zu);
    cmdstat(ctl, "evalsha", &ec, &eu);
    cmdstat(ctl, "zrem", &c, &u);
    f->zrem_us[run] = c > 0 ? u / c : 0;
    cmdstat(ctl, "sadd", &c, &u);
    f->sadd_us[run] = c > 0 ? u / c : 0;
    cmdstat(ctl, "lpush", &c, &u);
    f->lpush_us[run] = c > 0 ? u / c : 0;
    server_finish(&sr, cl, process ? "default" : "elsewhere", conc);
    long long queued = bench_redis_int(ctl, "LLEN queue:default");
    long long dead = bench_redis_int(ctl, "ZCARD dead");
    if (rc) {
        fprintf(stderr, "bench_scale: sched: not drained in %d s\n", RUN_TIMEOUT_S);
    } else {
        f->drain_s[run] = t_empty - t_move;
        f->rate[run] = (double)zn / f->drain_s[run];
        f->start_s[run] = t_empty - t0;
        f->dray_cpu[run] = cpu / (double)zn * 1e6;
        f->redis_cpu[run] = rcpu / (double)zn * 1e6;
        f->zrange_us[run] = zc > 0 ? zu / zc : 0;
        f->eval_us[run] = ec > 0 ? eu / ec : 0;
        if (process) {
            f->done_s[run] = RS.t_last - t_move;
            f->done_rate[run] = (double)zn / f->done_s[run];
        }
        printf("# sched %s run %d: %lld due jobs moved in %.3f s (%.0f jobs/s; %.3f s after "
               "server start); CPU per moved job: dray %.1f us, redis %.1f us; Redis per call: "
               "ZRANGEBYSCORE %.1f us x %.0f, EVALSHA %.1f us x %.0f (in it ZREM %.2f, SADD %.2f, "
               "LPUSH %.2f us)",
               process ? "process" : "drain", run + 1, zn, f->drain_s[run], f->rate[run],
               f->start_s[run], f->dray_cpu[run], f->redis_cpu[run], f->zrange_us[run], zc,
               f->eval_us[run], ec, f->zrem_us[run], f->sadd_us[run], f->lpush_us[run]);
        if (process)
            printf("; all processed %.3f s after the first move (%.0f jobs/s)", f->done_s[run],
                   f->done_rate[run]);
        else
            printf("; queue:default holds %lld", queued);
        printf("; dead %lld\n", dead);
        if (!process && queued != zn) {
            fprintf(stderr, "bench_scale: sched: %lld of %lld jobs reached the queue\n", queued,
                    zn);
            rc = -1;
        }
    }
    fflush(stdout);
    dray_client_free(cl);
    redisFree(ctl);
    bench_redis_stop(&r);
    return rc;
}

/* ---- the scheduler's floor: the same Redis work without JSON ----------- */

/* poller.c's move script, verbatim. */
#define MOVE_LUA                                                                                   \
    "local moved = 0\n"                                                                            \
    "for i = 3, #ARGV, 3 do\n"                                                                     \
    "  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then\n"                                        \
    "    if ARGV[i + 2] == '' then\n"                                                              \
    "      redis.call('ZADD', ARGV[1] .. 'dead', ARGV[2], ARGV[i])\n"                              \
    "    else\n"                                                                                   \
    "      redis.call('SADD', ARGV[1] .. 'queues', ARGV[i + 2])\n"                                 \
    "      redis.call('LPUSH', ARGV[1] .. 'queue:' .. ARGV[i + 2], ARGV[i + 1])\n"                 \
    "      moved = moved + 1\n"                                                                    \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "return moved\n"

/* Everything in one script per batch: find, claim, stamp, push, SADD once
 * per queue. The stamp is a textual append, right only for payloads with no
 * enqueued_at (scheduled jobs; not retries) and the queue match is naive:
 * a floor, not an implementation. */
#define DRAIN_LUA                                                                                  \
    "local ms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])\n"      \
    "local seen = {}\n"                                                                            \
    "for _, m in ipairs(ms) do\n"                                                                  \
    "  if redis.call('ZREM', KEYS[1], m) == 1 then\n"                                              \
    "    local q = string.match(m, '\"queue\":\"([^\"]*)\"') or 'default'\n"                       \
    "    if not seen[q] then redis.call('SADD', ARGV[1] .. 'queues', q); seen[q] = true end\n"     \
    "    redis.call('LPUSH', ARGV[1] .. 'queue:' .. q,\n"                                          \
    "               string.sub(m, 1, -2) .. ',\"enqueued_at\":' .. ARGV[2] .. '}')\n"              \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "return #ms\n"

enum { SW_SPLICE100, SW_SPLICE1000, SW_LUA1000, SW_N };
static const char *const sw_names[SW_N] = {"splice_b100", "splice_b1000", "lua_b1000"};
static const int sw_batch[SW_N] = {100, 1000, 1000};

typedef struct sched_wire_fig {
    double s[SW_N][MAX_RUNS];         /* seconds to move every job */
    double rate[SW_N][MAX_RUNS];      /* jobs/s */
    double cpu[SW_N][MAX_RUNS];       /* client CPU us per job */
    double redis_cpu[SW_N][MAX_RUNS]; /* redis-server CPU us per job */
} sched_wire_fig;

static char *
script_load(redisContext *c, const char *src)
{
    redisReply *r = redisCommand(c, "SCRIPT LOAD %s", src);
    if (!r || r->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "bench_scale: SCRIPT LOAD: %s\n", r ? r->str : c->errstr);
        exit(1);
    }
    char *sha = strdup(r->str);
    freeReplyObject(r);
    return sha;
}

/* The scheduler's Redis work from one bare-hiredis thread. splice: ZRANGEBYSCORE
 * then poller.c's script, with enqueued_at appended to each payload in C
 * (no JSON parse); lua: DRAIN_LUA alone. */
static int
sched_wire_run(long n, int v, sched_wire_fig *f, int run)
{
    bench_redis r;
    if (bench_redis_start(&r, 0))
        return -1;
    redisContext *ctl = bench_redis_connect(&r);
    dray_client *cl = new_client(&r);
    enqueue(cl, "default", n, dray_now() + 3600);
    bench_redis_int(ctl, "ZUNIONSTORE schedule 1 schedule WEIGHTS 0");
    char *move_sha = script_load(ctl, MOVE_LUA), *drain_sha = script_load(ctl, DRAIN_LUA);
    int batch = sw_batch[v];
    char nowstr[32], bs[16];
    snprintf(nowstr, sizeof nowstr, "%.6f", dray_now());
    snprintf(bs, sizeof bs, "%d", batch);
    const char **av = malloc(sizeof *av * (6 + 3 * (size_t)batch));
    size_t *al = malloc(sizeof *al * (6 + 3 * (size_t)batch));
    char **own = calloc((size_t)batch, sizeof *own);
    if (!av || !al || !own)
        exit(1);
    double rcpu0 = redis_cpu_s(ctl), cpu0 = cpu_s(RUSAGE_THREAD), t0 = bench_now();
    for (;;) {
        if (v == SW_LUA1000) {
            const char *dv[7] = {"EVALSHA", drain_sha, "1", "schedule", "", nowstr, bs};
            redisReply *rep = redisCommandArgv(ctl, 7, dv, NULL);
            if (!rep || rep->type != REDIS_REPLY_INTEGER) {
                fprintf(stderr, "bench_scale: drain script: %s\n", rep ? rep->str : ctl->errstr);
                exit(1);
            }
            long long got = rep->integer;
            freeReplyObject(rep);
            if (got < batch)
                break;
            continue;
        }
        const char *zv[7] = {"ZRANGEBYSCORE", "schedule", "-inf", nowstr, "LIMIT", "0", bs};
        redisReply *zr = redisCommandArgv(ctl, 7, zv, NULL);
        if (!zr || zr->type != REDIS_REPLY_ARRAY)
            exit(1);
        size_t k = 0, m = zr->elements;
        av[k] = "EVALSHA", al[k++] = 7;
        av[k] = move_sha, al[k++] = 40;
        av[k] = "1", al[k++] = 1;
        av[k] = "schedule", al[k++] = 8;
        av[k] = "", al[k++] = 0;
        av[k] = nowstr, al[k++] = strlen(nowstr);
        for (size_t i = 0; i < m; i++) {
            const redisReply *e = zr->element[i];
            const char *end = memrchr(e->str, '}', e->len);
            size_t head = end ? (size_t)(end - e->str) : e->len;
            own[i] = malloc(head + 64);
            if (!own[i])
                exit(1);
            memcpy(own[i], e->str, head);
            int tail = snprintf(own[i] + head, 64, ",\"enqueued_at\":%s}", nowstr);
            av[k] = e->str, al[k++] = e->len;
            av[k] = own[i], al[k++] = head + (size_t)tail;
            av[k] = "default", al[k++] = 7;
        }
        if (m > 0) {
            redisReply *er = redisCommandArgv(ctl, (int)k, av, al);
            if (!er || er->type != REDIS_REPLY_INTEGER) {
                fprintf(stderr, "bench_scale: move script: %s\n", er ? er->str : ctl->errstr);
                exit(1);
            }
            freeReplyObject(er);
        }
        for (size_t i = 0; i < m; i++)
            free(own[i]);
        freeReplyObject(zr);
        if (m < (size_t)batch)
            break;
    }
    double t = bench_now() - t0, cpu = cpu_s(RUSAGE_THREAD) - cpu0;
    double rcpu = redis_cpu_s(ctl) - rcpu0;
    long long queued = bench_redis_int(ctl, "LLEN queue:default");
    f->s[v][run] = t;
    f->rate[v][run] = (double)n / t;
    f->cpu[v][run] = cpu / (double)n * 1e6;
    f->redis_cpu[v][run] = rcpu / (double)n * 1e6;
    printf("# wire sched %s run %d: %lld jobs moved in %.3f s (%.0f jobs/s); CPU/job client "
           "%.1f us, redis %.1f us\n",
           sw_names[v], run + 1, queued, t, f->rate[v][run], f->cpu[v][run], f->redis_cpu[v][run]);
    fflush(stdout);
    free(av);
    free(al);
    free(own);
    free(move_sha);
    free(drain_sha);
    dray_client_free(cl);
    redisFree(ctl);
    bench_redis_stop(&r);
    return queued == n ? 0 : -1;
}

static int
bench_sched(long n, int conc, int runs, int wire)
{
    static sched_fig figs[2];
    static sched_wire_fig wf;
    int failed = 0;
    printf("# == 2. scheduler: %ld jobs due at once in the schedule set, poll_interval_s 1, "
           "concurrency %d\n",
           n, conc);
    for (int run = 0; run < runs; run++) {
        for (int p = 0; p < 2; p++)
            if (sched_run(n, conc, p, &figs[p], run))
                failed = 1;
        for (int v = 0; wire && v < SW_N; v++)
            if (sched_wire_run(n, v, &wf, run))
                failed = 1;
    }
    if (failed)
        return -1;
    printf("#\n");
    for (int p = 0; p < 2; p++) {
        sched_fig *f = &figs[p];
        printf("# sched %-7s median: moved in %.3f s = %.0f jobs/s (%.3f s after start); "
               "CPU/job dray %.1f us, redis %.1f us; ZRANGEBYSCORE %.1f us, EVALSHA %.1f us per "
               "call (ZREM %.2f, SADD %.2f, LPUSH %.2f)",
               p ? "process" : "drain", med(f->drain_s, runs), med(f->rate, runs),
               med(f->start_s, runs), med(f->dray_cpu, runs), med(f->redis_cpu, runs),
               med(f->zrange_us, runs), med(f->eval_us, runs), med(f->zrem_us, runs),
               med(f->sadd_us, runs), med(f->lpush_us, runs));
        if (p)
            printf("; all processed in %.3f s = %.0f jobs/s", med(f->done_s, runs),
                   med(f->done_rate, runs));
        printf("\n");
    }
    double dray_s = med(figs[0].drain_s, runs);
    for (int v = 0; wire && v < SW_N; v++)
        printf("# wire sched %-12s median: moved in %.3f s = %.0f jobs/s (%.2fx dray's drain); "
               "CPU/job client %.1f us, redis %.1f us\n",
               sw_names[v], med(wf.s[v], runs), med(wf.rate[v], runs), dray_s / med(wf.s[v], runs),
               med(wf.cpu[v], runs), med(wf.redis_cpu[v], runs));
    for (int p = 0; p < 2; p++) {
        sched_fig *f = &figs[p];
        const char *v = p ? "process" : "drain";
        char name[96];
#define SCHED_RESULT(field, label, unit)                                                           \
    snprintf(name, sizeof name, "scale.sched.%s.%s", v, label);                                    \
    result(name, med(f->field, runs), unit)
        SCHED_RESULT(drain_s, "drain_s", "s");
        SCHED_RESULT(rate, "moved_rate", "jobs/s");
        SCHED_RESULT(start_s, "from_start_s", "s");
        SCHED_RESULT(dray_cpu, "dray_cpu", "us/job");
        SCHED_RESULT(redis_cpu, "redis_cpu", "us/job");
        SCHED_RESULT(zrange_us, "redis_zrangebyscore", "us/call");
        SCHED_RESULT(eval_us, "redis_evalsha", "us/call");
        SCHED_RESULT(zrem_us, "redis_zrem", "us/call");
        SCHED_RESULT(sadd_us, "redis_sadd", "us/call");
        SCHED_RESULT(lpush_us, "redis_lpush", "us/call");
        if (p) {
            SCHED_RESULT(done_s, "processed_s", "s");
            SCHED_RESULT(done_rate, "processed_rate", "jobs/s");
        }
#undef SCHED_RESULT
    }
    for (int v = 0; wire && v < SW_N; v++) {
        char name[96];
        snprintf(name, sizeof name, "scale.sched.wire_%s.drain_s", sw_names[v]);
        result(name, med(wf.s[v], runs), "s");
        snprintf(name, sizeof name, "scale.sched.wire_%s.moved_rate", sw_names[v]);
        result(name, med(wf.rate[v], runs), "jobs/s");
        snprintf(name, sizeof name, "scale.sched.wire_%s.client_cpu", sw_names[v]);
        result(name, med(wf.cpu[v], runs), "us/job");
        snprintf(name, sizeof name, "scale.sched.wire_%s.redis_cpu", sw_names[v]);
        result(name, med(wf.redis_cpu[v], runs), "us/job");
        snprintf(name, sizeof name, "scale.sched.wire_%s.speedup", sw_names[v]);
        result(name, dray_s / med(wf.s[v], runs), "x");
    }
    return 0;
}

/* ================================================= 3. many queues */

enum { ORDER_SINGLE, ORDER_STRICT, ORDER_WEIGHTED };
static const char *const order_names[] = {"single", "strict", "weighted"};

/* "idle0000 idle0001 ... busy" (weights ",1" when weighted): nq queues, the
 * busy one last. Returned string is malloc'ed; free with free(). */
static char *
queue_spec(int nq, int order)
{
    size_t cap = (size_t)nq * 16 + 16;
    char *s = malloc(cap), *p = s;
    if (!s)
        exit(1);
    const char *w = order == ORDER_WEIGHTED ? ",1" : "";
    for (int i = 0; i < nq - 1; i++)
        p += sprintf(p, "idle%04d%s ", i, w);
    sprintf(p, "busy%s", w);
    return s;
}

typedef struct queue_fig {
    double rate[MAX_RUNS];           /* jobs/s through the dray server */
    double dray_cpu[MAX_RUNS];       /* us per job, this process */
    double redis_cpu[MAX_RUNS];      /* us per job, redis-server */
    double fetch_us[MAX_RUNS];       /* Redis time per fetch command (BRPOP/BLMPOP/EVALSHA) */
    double fetches[MAX_RUNS];        /* fetch commands per job */
    double wire[MAX_RUNS];           /* jobs/s, bare hiredis BRPOP over the same keys */
    double wire_redis[MAX_RUNS];     /* Redis time per BRPOP in the wire run */
    double wire_redis_cpu[MAX_RUNS]; /* redis-server CPU per job in the wire run */
    double wire_cpu[MAX_RUNS];       /* this process's CPU per job in the wire run */
    double live[MAX_RUNS];           /* jobs/s, the live-queues prototype (wire) */
    double live_cpu[MAX_RUNS];       /* this process's CPU per job in it */
    double live_redis_cpu[MAX_RUNS]; /* redis-server CPU per job in it, probes included */
    double live_probe_us[MAX_RUNS];  /* Redis time per probe over every key */
} queue_fig;

/* Fetch commands Redis ran since the last RESETSTAT, and their total time. */
static void
fetch_stats(redisContext *ctl, double *calls, double *usec)
{
    const char *cmds[] = {"brpop", "blmpop", "evalsha"};
    *calls = *usec = 0;
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        double c, u;
        cmdstat(ctl, cmds[i], &c, &u);
        *calls += c;
        *usec += u;
    }
}

static int
queue_run(const bench_redis *r, redisContext *ctl, dray_client *cl, int nq, int order, int fb,
          long n, int conc, queue_fig *f, int run)
{
    bench_redis_int(ctl, "FLUSHALL");
    enqueue(cl, STAGING, n, 0);
    char *spec = queue_spec(nq, order);
    bench_redis_int(ctl, "CONFIG RESETSTAT");
    server_run sr;
    server_start(&sr, r, spec, conc, fb, 0, n);
    release_staged(ctl, conc, "queue:busy");
    int rc = wait_target(RUN_TIMEOUT_S);
    double cpu = RS.cpu_last - RS.cpu_first, rcpu = RS.rcpu_last - RS.rcpu_first;
    double calls, usec;
    fetch_stats(ctl, &calls, &usec);
    server_finish(&sr, cl, "busy", conc);
    free(spec);
    if (rc) {
        fprintf(stderr, "bench_scale: queues %d %s: only %ld of %ld jobs in %d s\n", nq,
                order_names[order], atomic_load(&RS.done), n, RUN_TIMEOUT_S);
        return -1;
    }
    f->rate[run] = (double)n / (RS.t_last - RS.t_first);
    f->dray_cpu[run] = cpu / (double)n * 1e6;
    f->redis_cpu[run] = rcpu / (double)n * 1e6;
    f->fetch_us[run] = calls > 0 ? usec / calls : 0;
    f->fetches[run] = calls / (double)n;
    printf("# queues %d %s fb%d run %d: %.0f jobs/s; CPU/job dray %.1f us, redis %.1f us; "
           "%.2f fetch commands/job at %.1f us each in Redis\n",
           nq, order_names[order], fb, run + 1, f->rate[run], f->dray_cpu[run], f->redis_cpu[run],
           f->fetches[run], f->fetch_us[run]);
    fflush(stdout);
    return 0;
}

/* ---- the wire floor: bare hiredis BRPOP over the same key list --------- */

/* Indices (1-based) of the KEYS that hold a list: the "live" probe. */
#define PROBE_LUA                                                                                  \
    "local r = {}\n"                                                                               \
    "for i = 1, #KEYS do\n"                                                                        \
    "  if redis.call('EXISTS', KEYS[i]) == 1 then r[#r + 1] = i end\n"                             \
    "end\n"                                                                                        \
    "return r\n"
#define PROBE_EVERY_US 100000 /* the live set is refreshed this often, or at once when stale */

typedef struct wire_q {
    const char *sock;
    const char **keys; /* "queue:idle0000" ... "queue:busy" */
    int nkeys;
    int shuffle; /* weighted: a fresh random order per fetch, as order_keys */
    int live;    /* prototype: LMPOP over the live queues, BRPOP over all when none is */
    long n;
    atomic_long done;
    double t_last;
    pthread_mutex_t mu;
    int *live_idx; /* 0-based key indices the probe last saw non-empty; guarded by mu */
    int nlive;
    atomic_int stale; /* a fetch found the live queues empty: probe now */
    long probes;      /* probe calls (written by the probe thread only) */
} wire_q;

static void
shuffle_keys(const char **v, int n, unsigned *seed)
{
    for (int i = n; i > 1; i--) {
        int j = (int)(rand_r(seed) % (unsigned)i);
        const char *t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* One fetch thread. Full mode: BRPOP over every key (Sidekiq's fetch).
 * Live mode: a non-blocking LMPOP over the keys the probe saw non-empty, in
 * the same order; when none is, or they turn out empty, a blocking BRPOP over
 * every key (idle, so its cost does not matter) and a request to re-probe. */
static void *
wire_q_thread(void *arg)
{
    wire_q *wq = arg;
    redisContext *c = redisConnectUnix(wq->sock);
    const char **av = malloc(sizeof *av * ((size_t)wq->nkeys + 6));
    const char **lv = malloc(sizeof *lv * ((size_t)wq->nkeys + 6));
    if (!c || c->err || !av || !lv) {
        fprintf(stderr, "bench_scale: wire connect failed\n");
        exit(1);
    }
    av[0] = "BRPOP";
    memcpy(av + 1, wq->keys, sizeof *av * (size_t)wq->nkeys);
    av[wq->nkeys + 1] = "0.1";
    unsigned seed = (unsigned)(uintptr_t)&c ^ (unsigned)getpid();
    while (atomic_load(&wq->done) < wq->n) {
        redisReply *rep = NULL;
        int got = 0, nl = 0;
        if (wq->live) {
            pthread_mutex_lock(&wq->mu);
            for (int i = 0; i < wq->nlive; i++)
                lv[2 + nl++] = wq->keys[wq->live_idx[i]];
            pthread_mutex_unlock(&wq->mu);
        }
        if (nl > 0) {
            /* LMPOP numkeys key [key ...] RIGHT: never blocks */
            char nk[16];
            snprintf(nk, sizeof nk, "%d", nl);
            lv[0] = "LMPOP";
            lv[1] = nk;
            if (wq->shuffle)
                shuffle_keys(lv + 2, nl, &seed);
            lv[2 + nl] = "RIGHT";
            rep = redisCommandArgv(c, nl + 3, lv, NULL);
            if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
                got = 1;
            else
                atomic_store(&wq->stale, 1);
        }
        if (!got) {
            if (rep)
                freeReplyObject(rep);
            if (wq->shuffle)
                shuffle_keys(av + 1, wq->nkeys, &seed);
            rep = redisCommandArgv(c, wq->nkeys + 2, av, NULL);
            got = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2;
            if (got && wq->live)
                atomic_store(&wq->stale, 1); /* work where the probe saw none */
        }
        if (!rep) {
            fprintf(stderr, "bench_scale: wire: %s\n", c->errstr);
            exit(1);
        }
        if (got && atomic_fetch_add(&wq->done, 1) + 1 == wq->n)
            wq->t_last = bench_now();
        freeReplyObject(rep);
    }
    free(av);
    free(lv);
    redisFree(c);
    return NULL;
}

/* Live mode's probe: one script over every key every PROBE_EVERY_US (at once
 * when a fetch thread found the live set stale), publishing the non-empty
 * ones. */
static void *
wire_probe_thread(void *arg)
{
    wire_q *wq = arg;
    redisContext *c = redisConnectUnix(wq->sock);
    const char **av = malloc(sizeof *av * ((size_t)wq->nkeys + 3));
    int *idx = malloc(sizeof *idx * (size_t)wq->nkeys);
    if (!c || c->err || !av || !idx)
        exit(1);
    char nk[16];
    snprintf(nk, sizeof nk, "%d", wq->nkeys);
    av[0] = "EVAL";
    av[1] = PROBE_LUA;
    av[2] = nk;
    memcpy(av + 3, wq->keys, sizeof *av * (size_t)wq->nkeys);
    while (atomic_load(&wq->done) < wq->n) {
        atomic_store(&wq->stale, 0);
        redisReply *rep = redisCommandArgv(c, wq->nkeys + 3, av, NULL);
        if (!rep || rep->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "bench_scale: probe: %s\n", rep ? rep->str : c->errstr);
            exit(1);
        }
        int n = 0;
        for (size_t i = 0; i < rep->elements; i++)
            idx[n++] = (int)rep->element[i]->integer - 1;
        freeReplyObject(rep);
        pthread_mutex_lock(&wq->mu);
        memcpy(wq->live_idx, idx, sizeof *idx * (size_t)n);
        wq->nlive = n;
        pthread_mutex_unlock(&wq->mu);
        wq->probes++;
        for (long waited = 0;
             waited < PROBE_EVERY_US && !atomic_load(&wq->stale) && atomic_load(&wq->done) < wq->n;
             waited += 1000)
            bench_sleep_us(1000);
    }
    free(av);
    free(idx);
    redisFree(c);
    return NULL;
}

static int
wire_run(const bench_redis *r, redisContext *ctl, dray_client *cl, int nq, int order, int live,
         long n, int conc, queue_fig *f, int run)
{
    bench_redis_int(ctl, "FLUSHALL");
    enqueue(cl, "busy", n, 0);
    const char **keys = malloc(sizeof *keys * (size_t)nq);
    char *names = malloc((size_t)nq * 24);
    int *live_idx = malloc(sizeof *live_idx * (size_t)nq);
    if (!keys || !names || !live_idx)
        exit(1);
    for (int i = 0; i < nq; i++) {
        char *k = names + (size_t)i * 24;
        if (i == nq - 1)
            snprintf(k, 24, "queue:busy");
        else
            snprintf(k, 24, "queue:idle%04d", i);
        keys[i] = k;
    }
    wire_q wq = {.sock = r->sock,
                 .keys = keys,
                 .nkeys = nq,
                 .shuffle = order == ORDER_WEIGHTED,
                 .live = live,
                 .n = n,
                 .live_idx = live_idx};
    pthread_mutex_init(&wq.mu, NULL);
    bench_redis_int(ctl, "CONFIG RESETSTAT");
    pthread_t th[MAX_CONC], probe;
    double rcpu0 = redis_cpu_s(ctl), cpu0 = cpu_s(RUSAGE_SELF), t0 = bench_now();
    if (live)
        pthread_create(&probe, NULL, wire_probe_thread, &wq);
    for (int i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, wire_q_thread, &wq);
    for (int i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    if (live)
        pthread_join(probe, NULL);
    double rcpu = redis_cpu_s(ctl) - rcpu0, cpu = cpu_s(RUSAGE_SELF) - cpu0;
    double calls, usec, lcalls, lusec, pcalls, pusec;
    cmdstat(ctl, "brpop", &calls, &usec);
    cmdstat(ctl, "lmpop", &lcalls, &lusec);
    cmdstat(ctl, "eval", &pcalls, &pusec);
    double rate = (double)n / (wq.t_last - t0);
    if (live) {
        f->live[run] = rate;
        f->live_cpu[run] = cpu / (double)n * 1e6;
        f->live_redis_cpu[run] = rcpu / (double)n * 1e6;
        f->live_probe_us[run] = pcalls > 0 ? pusec / pcalls : 0;
        printf("# wire-live queues %d %s run %d: %.0f jobs/s; CPU/job client %.1f us, redis %.1f "
               "us; %.0f LMPOP (%.1f us each in Redis), %.0f BRPOP over all keys, %ld probes "
               "(%.1f us each)\n",
               nq, order_names[order], run + 1, rate, f->live_cpu[run], f->live_redis_cpu[run],
               lcalls, lcalls > 0 ? lusec / lcalls : 0.0, calls, wq.probes, f->live_probe_us[run]);
    } else {
        f->wire[run] = rate;
        f->wire_redis[run] = calls > 0 ? usec / calls : 0;
        f->wire_redis_cpu[run] = rcpu / (double)n * 1e6;
        f->wire_cpu[run] = cpu / (double)n * 1e6;
        printf("# wire queues %d %s run %d: %.0f jobs/s; CPU/job client %.1f us, redis %.1f us; "
               "BRPOP %.1f us each in Redis\n",
               nq, order_names[order], run + 1, rate, f->wire_cpu[run], f->wire_redis_cpu[run],
               f->wire_redis[run]);
    }
    fflush(stdout);
    pthread_mutex_destroy(&wq.mu);
    free(keys);
    free(names);
    free(live_idx);
    return 0;
}

/* One row of the many-queues summary: pass 0 prints the table row, pass 1
 * the RESULT lines. wf holds the wire figures (fb 1 only); base_wire 0 skips
 * them. */
static void
queue_row(int pass, int nq, const char *order, int fb, queue_fig *f, queue_fig *wf, int runs,
          double base_rate, double base_wire)
{
    double rate = med(f->rate, runs);
    double w = base_wire > 0 ? med(wf->wire, runs) : 0;
    double lw = base_wire > 0 && nq > 1 ? med(wf->live, runs) : 0;
    if (pass == 0) {
        printf("# %-6d %-8s %3d %9.0f %7.2fx %9.1f %9.1f %9.2f %8.1f", nq, order, fb, rate,
               rate / base_rate, med(f->dray_cpu, runs), med(f->redis_cpu, runs),
               med(f->fetches, runs), med(f->fetch_us, runs));
        if (base_wire > 0)
            printf(" | %9.0f %7.2fx %9.1f %9.1f %8.1f", w, w / base_wire, med(wf->wire_cpu, runs),
                   med(wf->wire_redis_cpu, runs), med(wf->wire_redis, runs));
        if (lw > 0)
            printf(" | %9.0f %7.2fx %9.1f %9.1f %8.1f", lw, lw / base_wire, med(wf->live_cpu, runs),
                   med(wf->live_redis_cpu, runs), med(wf->live_probe_us, runs));
        printf("\n");
        return;
    }
    char name[96];
    snprintf(name, sizeof name, "scale.queues.%d.%s.fb%d.rate", nq, order, fb);
    result(name, rate, "jobs/s");
    snprintf(name, sizeof name, "scale.queues.%d.%s.fb%d.ratio", nq, order, fb);
    result(name, rate / base_rate, "x");
    snprintf(name, sizeof name, "scale.queues.%d.%s.fb%d.dray_cpu", nq, order, fb);
    result(name, med(f->dray_cpu, runs), "us/job");
    snprintf(name, sizeof name, "scale.queues.%d.%s.fb%d.redis_cpu", nq, order, fb);
    result(name, med(f->redis_cpu, runs), "us/job");
    snprintf(name, sizeof name, "scale.queues.%d.%s.fb%d.redis_fetch", nq, order, fb);
    result(name, med(f->fetch_us, runs), "us/call");
    if (base_wire > 0) {
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire.rate", nq, order);
        result(name, w, "jobs/s");
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire.ratio", nq, order);
        result(name, w / base_wire, "x");
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire.client_cpu", nq, order);
        result(name, med(wf->wire_cpu, runs), "us/job");
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire.redis_cpu", nq, order);
        result(name, med(wf->wire_redis_cpu, runs), "us/job");
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire.redis_brpop", nq, order);
        result(name, med(wf->wire_redis, runs), "us/call");
    }
    if (lw > 0) {
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire_live.rate", nq, order);
        result(name, lw, "jobs/s");
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire_live.ratio", nq, order);
        result(name, lw / base_wire, "x");
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire_live.client_cpu", nq, order);
        result(name, med(wf->live_cpu, runs), "us/job");
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire_live.redis_cpu", nq, order);
        result(name, med(wf->live_redis_cpu, runs), "us/job");
        snprintf(name, sizeof name, "scale.queues.%d.%s.wire_live.probe", nq, order);
        result(name, med(wf->live_probe_us, runs), "us/call");
    }
}

static int
bench_queues(const list *nqs, const list *fbs, long n, int conc, int runs, int wire)
{
    /* [queue count][order][fetch batch] */
    static queue_fig figs[MAX_LIST][3][MAX_LIST];
    bench_redis r;
    if (bench_redis_start(&r, 0))
        return -1;
    redisContext *ctl = bench_redis_connect(&r);
    dray_client *cl = new_client(&r);
    int failed = 0;
    printf("# == 3. many queues: %ld no-op jobs in queue 'busy', listed last after Q-1 idle "
           "queues; concurrency %d\n",
           n, conc);
    for (int run = 0; run < runs; run++)
        for (int qi = 0; qi < nqs->n; qi++) {
            int nq = (int)nqs->v[qi];
            int o0 = nq == 1 ? ORDER_SINGLE : ORDER_STRICT;
            int o1 = nq == 1 ? ORDER_SINGLE : ORDER_WEIGHTED;
            for (int o = o0; o <= o1; o++) {
                for (int fi = 0; fi < fbs->n; fi++)
                    if (queue_run(&r, ctl, cl, nq, o, (int)fbs->v[fi], n, conc, &figs[qi][o][fi],
                                  run))
                        failed = 1;
                if (wire && wire_run(&r, ctl, cl, nq, o, 0, n, conc, &figs[qi][o][0], run))
                    failed = 1;
                if (wire && nq > 1 &&
                    wire_run(&r, ctl, cl, nq, o, 1, n, conc, &figs[qi][o][0], run))
                    failed = 1;
            }
        }
    dray_client_free(cl);
    redisFree(ctl);
    bench_redis_stop(&r);
    if (failed)
        return -1;
    /* the baseline: the busy queue alone (Q = 1, else the smallest Q given) */
    int base = 0;
    for (int qi = 0; qi < nqs->n; qi++)
        if (nqs->v[qi] < nqs->v[base])
            base = qi;
    int base_o = nqs->v[base] == 1 ? ORDER_SINGLE : ORDER_STRICT;
    printf("#\n# %-6s %-8s %3s %9s %8s %9s %9s %9s %8s", "queues", "order", "fb", "jobs/s",
           "vs base", "dray us", "redis us", "fetch/job", "fetch us");
    if (wire)
        printf(" | %9s %8s %9s %9s %8s | %9s %8s %9s %9s %8s", "wire j/s", "vs base", "client us",
               "redis us", "brpop us", "live j/s", "vs base", "client us", "redis us", "probe us");
    printf("\n");
    for (int pass = 0; pass < 2; pass++) /* 0: the table; 1: RESULT lines */
        for (int fi = 0; fi < fbs->n; fi++) {
            int fb = (int)fbs->v[fi];
            double base_rate = med(figs[base][base_o][fi].rate, runs);
            double base_wire = wire ? med(figs[base][base_o][0].wire, runs) : 0;
            for (int qi = 0; qi < nqs->n; qi++) {
                int nq = (int)nqs->v[qi];
                int o0 = nq == 1 ? ORDER_SINGLE : ORDER_STRICT;
                int o1 = nq == 1 ? ORDER_SINGLE : ORDER_WEIGHTED;
                for (int o = o0; o <= o1; o++)
                    queue_row(pass, nq, order_names[o], fb, &figs[qi][o][fi], &figs[qi][o][0], runs,
                              base_rate, wire && fi == 0 ? base_wire : 0);
            }
        }
    return 0;
}

/* ================================================= main */

static void
usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: bench_scale [--smoke] [--runs N] [--only depth,sched,queues]\n"
            "                   [--depths 1000,10000,100000,1000000] [--measure N] [--sched N]\n"
            "                   [--queues 1,10,100,1000] [--queue-jobs N] [--fetch-batch 1,10]\n"
            "                   [--conc N] [--cold] [--no-wire]\n"
            "  --runs N         repetitions; medians are printed (default 3)\n"
            "  --only LIST      parts to run (default depth,sched,queues)\n"
            "  --depths LIST    jobs queued before the server starts (default 1e3,1e4,1e5,1e6)\n"
            "  --measure N      jobs timed at most per depth (default 100000)\n"
            "  --sched N        due jobs in the schedule set (default 100000)\n"
            "  --queues LIST    queue counts, the busy queue last (default 1,10,100,1000)\n"
            "  --queue-jobs N   jobs per many-queues run (default 50000)\n"
            "  --fetch-batch L  fetch_batch values for the many-queues runs (default 1,10)\n"
            "  --conc N         worker threads (default 10)\n"
            "  --cold           depth: start the server on the full queue (default: warm)\n"
            "  --no-wire        skip the bare-hiredis floors (scheduler and many queues)\n"
            "  --smoke          tiny sizes, 1 run, for CI (under 15 s)\n");
    exit(code);
}

static void
parse_list(const char *arg, list *l)
{
    char *copy = strdup(arg), *save = NULL;
    l->n = 0;
    for (char *t = strtok_r(copy, ",", &save); t && l->n < MAX_LIST; t = strtok_r(NULL, ",", &save))
        l->v[l->n++] = atol(t);
    free(copy);
    if (l->n == 0)
        usage(2);
    for (int i = 0; i < l->n; i++)
        if (l->v[i] < 1)
            usage(2);
}

int
main(int argc, char **argv)
{
    list depths = {{1000, 10000, 100000, 1000000}, 4};
    list nqs = {{1, 10, 100, 1000}, 4};
    list fbs = {{1, 10}, 2};
    long measure = 100000, nsched = 100000, qjobs = 50000;
    int runs = 3, conc = 10, wire = 1, cold = 0;
    const char *only = "depth,sched,queues";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--smoke")) {
            depths = (list){{200, 2000}, 2};
            nqs = (list){{1, 100}, 2};
            fbs = (list){{1}, 1};
            measure = 2000, nsched = 2000, qjobs = 2000, runs = 1;
        } else if (!strcmp(a, "--runs") && more) {
            runs = atoi(argv[++i]);
        } else if (!strcmp(a, "--only") && more) {
            only = argv[++i];
        } else if (!strcmp(a, "--depths") && more) {
            parse_list(argv[++i], &depths);
        } else if (!strcmp(a, "--measure") && more) {
            measure = atol(argv[++i]);
        } else if (!strcmp(a, "--sched") && more) {
            nsched = atol(argv[++i]);
        } else if (!strcmp(a, "--queues") && more) {
            parse_list(argv[++i], &nqs);
        } else if (!strcmp(a, "--queue-jobs") && more) {
            qjobs = atol(argv[++i]);
        } else if (!strcmp(a, "--fetch-batch") && more) {
            parse_list(argv[++i], &fbs);
        } else if (!strcmp(a, "--conc") && more) {
            conc = atoi(argv[++i]);
        } else if (!strcmp(a, "--cold")) {
            cold = 1;
        } else if (!strcmp(a, "--no-wire")) {
            wire = 0;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(0);
        } else {
            usage(2);
        }
    }
    if (runs < 1 || runs > MAX_RUNS || conc < 1 || conc > MAX_CONC || measure < 1 || nsched < 1 ||
        qjobs < 1)
        usage(2);
    for (int i = 0; i < fbs.n; i++)
        if (fbs.v[i] > 1000)
            usage(2);
    signal(SIGPIPE, SIG_IGN);
    dray_log_set_level(DRAY_LOG_WARN);
    {
        bench_redis r;
        if (bench_redis_start(&r, 0))
            return 1;
        char ver[32];
        bench_redis_version(&r, ver, sizeof ver);
        bench_redis_stop(&r);
        printf("# bench_scale: dray %s, redis-server %s (private, unix socket), %d run(s), "
               "medians; concurrency %d\n",
               dray_version(), ver, runs, conc);
    }
    double t0 = bench_now();
    int failed = 0;
    if (strstr(only, "depth") && bench_depth(&depths, measure, conc, cold, runs))
        failed = 1;
    if (strstr(only, "sched") && bench_sched(nsched, conc, runs, wire))
        failed = 1;
    if (strstr(only, "queues") && bench_queues(&nqs, &fbs, qjobs, conc, runs, wire))
        failed = 1;
    printf("# bench_scale: %s in %.1f s\n", failed ? "FAILED" : "done", bench_now() - t0);
    return failed;
}
