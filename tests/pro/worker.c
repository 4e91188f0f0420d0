/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * pro_worker: a dray worker process for the Pro tests. It embeds a
 * dray_server, loads dray-pro-test.so (the license comes from
 * $DRAY_LICENSE), and runs the test job classes below, recording what they
 * do in Redis under "t:" so the test process can check it:
 *
 *   Work [tag, sleep_ms]      HINCRBY t:runs <jid> 1; then sleeps
 *   Gate [tag]                HINCRBY t:runs <jid> 1; then waits (bounded, 60 s)
 *                             until the key t:gate exists, ignoring any stop
 *   Flaky [tag, fails]        fails its first `fails` runs (t:tries <jid>)
 *   Fail [tag]                always fails
 *   Poison [tag]              HINCRBY t:poison <jid> 1, then SIGKILLs its process
 *   Cb [bid, event, options]  a batch callback: HINCRBY t:cb <bid>:<event> 1,
 *                             RPUSH t:cblog "<bid>:<event>"
 *   Reopen [n]                reopens its batch and adds n Work jobs (t:reopen_done
 *                             <jid> -> when it finished)
 *   Nest [n]                  makes a child batch of its own with n Work
 *                             jobs (t:child <jid> -> child bid)
 *   NestCrash [n]             the same, but its first run SIGKILLs its process
 *                             before committing the child (t:children lists
 *                             every child made)
 *
 * usage: pro_worker REDIS_URL MODULE [key=value]...
 *   concurrency=N queues="a b" heartbeat=S timeout=S poll=S ns=NS
 *   command_timeout=MS (the Redis read timeout; blocking fetches add 2 s)
 *   retry_backoff=S (retry delay of Flaky/Fail), and any pro.<key>=value
 * SIGTERM/SIGINT stop it gracefully; exit status 0 after a clean stop, 3
 * when the module refused to load (its message on stderr).
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "dray/dray.h"
#include "dray/pro_batch.h"

static dray_server *g_srv;
static const char *g_url;
static char g_ns[64];
static double g_backoff = 0.2;

/* ---- per-thread links ----------------------------------------------------- */

static _Thread_local redisContext *tl_redis;
static _Thread_local dray_client *tl_client;
static _Thread_local dray_pro *tl_pro;

/* Worker threads end with the server: their links go with them. */
static pthread_key_t g_links;
static pthread_once_t g_links_once = PTHREAD_ONCE_INIT;

static void
links_free(void *unused)
{
    (void)unused;
    dray_pro_free(tl_pro);
    dray_client_free(tl_client);
    if (tl_redis)
        redisFree(tl_redis);
    tl_pro = NULL;
    tl_client = NULL;
    tl_redis = NULL;
}

static void
links_key(void)
{
    pthread_key_create(&g_links, links_free);
}

static redisContext *
redis(void)
{
    if (tl_redis && !tl_redis->err)
        return tl_redis;
    pthread_once(&g_links_once, links_key);
    pthread_setspecific(g_links, &g_links); /* any non-NULL value: run links_free at exit */
    if (tl_pro) {
        dray_pro_free(tl_pro); /* it borrowed the context we replace */
        tl_pro = NULL;
    }
    if (tl_redis)
        redisFree(tl_redis);
    tl_redis = strncmp(g_url, "unix://", 7) ? NULL : redisConnectUnix(g_url + 7);
    if (!tl_redis || tl_redis->err) {
        fprintf(stderr, "pro_worker: cannot connect to %s\n", g_url);
        _exit(2);
    }
    return tl_redis;
}

/* The reply to fmt/ap on this thread's connection (freeReplyObject it);
 * exits 2 when there is none. */
static redisReply *
vcmd(const char *fmt, va_list ap)
{
    redisReply *r = redisvCommand(redis(), fmt, ap);
    if (!r) {
        fprintf(stderr, "pro_worker: redis: %s\n", redis()->errstr);
        _exit(2);
    }
    return r;
}

static void
cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    freeReplyObject(vcmd(fmt, ap));
    va_end(ap);
}

static long long
cmd_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd(fmt, ap);
    va_end(ap);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return v;
}

static dray_client *
client(void)
{
    if (tl_client)
        return tl_client;
    redis(); /* registers the thread's cleanup */
    dray_options o;
    dray_options_init(&o);
    o.redis_url = g_url;
    o.ns = g_ns;
    char err[256];
    if (dray_client_new(&o, &tl_client, err, sizeof err)) {
        fprintf(stderr, "pro_worker: client: %s\n", err);
        _exit(2);
    }
    return tl_client;
}

static dray_pro *
pro(void)
{
    if (!tl_pro && dray_pro_new(redis(), g_ns, &tl_pro)) {
        fprintf(stderr, "pro_worker: dray_pro_new failed\n");
        _exit(2);
    }
    return tl_pro;
}

static void
nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- job classes ------------------------------------------------------------ */

static int
h_work(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    cmd("HINCRBY %st:runs %s 1", g_ns, dray_job_jid(job));
    long ms = (long)json_integer_value(json_array_get(dray_job_args(job), 1));
    if (ms > 0)
        nap_ms(ms);
    return 0;
}

static int
h_flaky(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    long long fails = json_integer_value(json_array_get(dray_job_args(job), 1));
    long long n = cmd_int("HINCRBY %st:tries %s 1", g_ns, dray_job_jid(job));
    if (n <= fails)
        return dray_result_fail(res, "FlakyError", "try %lld of %lld fails", n, fails);
    cmd("HINCRBY %st:runs %s 1", g_ns, dray_job_jid(job));
    return 0;
}

static int
h_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    cmd("HINCRBY %st:tries %s 1", g_ns, dray_job_jid(job));
    return dray_result_fail(res, "ArgumentError", "always fails");
}

static int
h_poison(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    cmd("HINCRBY %st:poison %s 1", g_ns, dray_job_jid(job));
    kill(getpid(), SIGKILL);
    return 0;
}

static int
h_cb(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    json_t *a = dray_job_args(job);
    const char *bid = json_string_value(json_array_get(a, 0));
    const char *ev = json_string_value(json_array_get(a, 1));
    char *opts = json_dumps(json_array_get(a, 2), JSON_COMPACT | JSON_ENCODE_ANY);
    cmd("HINCRBY %st:cb %s:%s 1", g_ns, bid ? bid : "?", ev ? ev : "?");
    cmd("RPUSH %st:cblog %s:%s", g_ns, bid ? bid : "?", ev ? ev : "?");
    cmd("HSET %st:cbopts %s:%s %s", g_ns, bid ? bid : "?", ev ? ev : "?", opts ? opts : "?");
    free(opts);
    return 0;
}

static int
h_gate(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    cmd("HINCRBY %st:runs %s 1", g_ns, dray_job_jid(job));
    double until = dray_now() + 60;
    while (!cmd_int("EXISTS %st:gate", g_ns) && dray_now() < until)
        nap_ms(5);
    return 0;
}

static int
h_reopen(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    long long n = json_integer_value(json_array_get(dray_job_args(job), 0));
    if (dray_pro_batch_reopen(pro(), job))
        return dray_result_fail(res, "ReopenError", "%s", dray_pro_errstr(pro()));
    const char *bid = json_string_value(dray_job_get(job, "bid"));
    if (n < 0 || n > 64)
        return dray_result_fail(res, "ReopenError", "Reopen takes 0-64 jobs, not %lld", n);
    char jids[64][DRAY_JID_BYTES];
    for (long long i = 0; i < n; i++) {
        json_t *args = json_pack("[s, i]", "reopened", 20);
        int rc = dray_pro_batch_push(pro(), client(), bid, "Work", args, NULL, jids[i]);
        json_decref(args);
        if (rc)
            return dray_result_fail(res, "ReopenError", "%s", dray_pro_errstr(pro()));
    }
    /* The added jobs finish before this one (polled, bounded): callbacks
     * must still wait for this run. */
    double until = dray_now() + 30;
    for (long long i = 0; i < n && dray_now() < until;)
        if (cmd_int("HEXISTS %st:runs %s", g_ns, jids[i]))
            i++;
        else
            nap_ms(5);
    cmd("HINCRBY %st:runs %s 1", g_ns, dray_job_jid(job));
    if (dray_pro_batch_close(pro(), job))
        return dray_result_fail(res, "ReopenError", "%s", dray_pro_errstr(pro()));
    char now[32];
    snprintf(now, sizeof now, "%.6f", dray_now());
    cmd("HSET %st:reopen_done %s %s", g_ns, dray_job_jid(job), now);
    return 0;
}

static int
h_nest(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    long long n = json_integer_value(json_array_get(dray_job_args(job), 0));
    dray_pro_batch_opts o = {.description = "child",
                             .callback_queue = "cb",
                             .on_complete = {"Cb", NULL},
                             .on_success = {"Cb", NULL},
                             .parent_job = job};
    char bid[DRAY_PRO_BID_BYTES];
    if (dray_pro_batch_new(pro(), &o, bid))
        return dray_result_fail(res, "NestError", "%s", dray_pro_errstr(pro()));
    cmd("HSET %st:child %s %s", g_ns, dray_job_jid(job), bid);
    for (long long i = 0; i < n; i++) {
        json_t *args = json_pack("[s, i]", "child", 50);
        int rc = dray_pro_batch_push(pro(), client(), bid, "Work", args, NULL, NULL);
        json_decref(args);
        if (rc)
            return dray_result_fail(res, "NestError", "%s", dray_pro_errstr(pro()));
    }
    if (dray_pro_batch_commit(pro(), bid, 0))
        return dray_result_fail(res, "NestError", "%s", dray_pro_errstr(pro()));
    cmd("HINCRBY %st:runs %s 1", g_ns, dray_job_jid(job));
    return 0;
}

/* Nest, but the first run dies (SIGKILL) after pushing into its child and
 * before committing it: the child must not stay open forever. */
static int
h_nest_crash(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    long long n = json_integer_value(json_array_get(dray_job_args(job), 0));
    long long run = cmd_int("HINCRBY %st:tries %s 1", g_ns, dray_job_jid(job));
    dray_pro_batch_opts o = {.description = "crash child",
                             .callback_queue = "cb",
                             .on_success = {"Cb", NULL},
                             .parent_job = job};
    char bid[DRAY_PRO_BID_BYTES];
    if (dray_pro_batch_new(pro(), &o, bid))
        return dray_result_fail(res, "NestError", "%s", dray_pro_errstr(pro()));
    cmd("RPUSH %st:children %s", g_ns, bid);
    for (long long i = 0; i < n; i++) {
        json_t *args = json_pack("[s, i]", "child", 10);
        int rc = dray_pro_batch_push(pro(), client(), bid, "Work", args, NULL, NULL);
        json_decref(args);
        if (rc)
            return dray_result_fail(res, "NestError", "%s", dray_pro_errstr(pro()));
    }
    if (run == 1)
        kill(getpid(), SIGKILL);
    if (dray_pro_batch_commit(pro(), bid, 0))
        return dray_result_fail(res, "NestError", "%s", dray_pro_errstr(pro()));
    return 0;
}

static double
quick_backoff(const dray_job *job, int count, void *ud)
{
    (void)job;
    (void)count;
    (void)ud;
    return g_backoff;
}

/* ---- main -------------------------------------------------------------------- */

static void
on_signal(int sig)
{
    (void)sig;
    if (g_srv)
        dray_server_stop(g_srv);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pro_worker REDIS_URL MODULE [key=value]...\n");
        return 2;
    }
    g_url = argv[1];
    dray_options o;
    dray_options_init(&o);
    o.redis_url = g_url;
    o.concurrency = 4;
    o.heartbeat_s = 1;
    o.poll_interval_s = 0.2;
    o.shutdown_timeout_s = 5;
    o.log_level = getenv("PRO_WORKER_DEBUG") ? DRAY_LOG_DEBUG : DRAY_LOG_INFO;
    static char queues[256] = "default cb";
    o.queues = queues;
    for (int i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq)
            continue;
        *eq = '\0';
        const char *k = argv[i], *v = eq + 1;
        if (!strcmp(k, "concurrency"))
            o.concurrency = atoi(v);
        else if (!strcmp(k, "queues"))
            snprintf(queues, sizeof queues, "%s", v);
        else if (!strcmp(k, "heartbeat"))
            o.heartbeat_s = atoi(v);
        else if (!strcmp(k, "timeout"))
            o.shutdown_timeout_s = atoi(v);
        else if (!strcmp(k, "poll"))
            o.poll_interval_s = atof(v);
        else if (!strcmp(k, "command_timeout"))
            o.command_timeout_ms = atoi(v);
        else if (!strcmp(k, "ns"))
            snprintf(g_ns, sizeof g_ns, "%s", v);
        else if (!strcmp(k, "retry_backoff"))
            g_backoff = atof(v);
        *eq = '=';
    }
    if (g_ns[0] && g_ns[strlen(g_ns) - 1] != ':')
        strcat(g_ns, ":");
    o.ns = g_ns;
    dray_log_set_level(o.log_level);
    char err[512];
    if (dray_server_new(&o, &g_srv, err, sizeof err)) {
        fprintf(stderr, "pro_worker: %s\n", err);
        return 2;
    }
    for (int i = 3; i < argc; i++)
        if (!strncmp(argv[i], "pro.", 4)) {
            char *eq = strchr(argv[i], '=');
            if (!eq)
                continue;
            *eq = '\0';
            int rc = dray_server_set_config(g_srv, argv[i], eq + 1);
            *eq = '=';
            if (rc) {
                fprintf(stderr, "pro_worker: setting %s: %s\n", argv[i], dray_strerror(rc));
                return 2;
            }
        }
    if (dray_server_load_module(g_srv, argv[2], err, sizeof err)) {
        fprintf(stderr, "pro_worker: %s\n", err);
        return 3;
    }
    dray_class_opts quick = {.backoff = quick_backoff};
    if (dray_server_register(g_srv, "Work", h_work, NULL, NULL) ||
        dray_server_register(g_srv, "Gate", h_gate, NULL, NULL) ||
        dray_server_register(g_srv, "Flaky", h_flaky, NULL, &quick) ||
        dray_server_register(g_srv, "Fail", h_fail, NULL, &quick) ||
        dray_server_register(g_srv, "Poison", h_poison, NULL, NULL) ||
        dray_server_register(g_srv, "Cb", h_cb, NULL, NULL) ||
        dray_server_register(g_srv, "Reopen", h_reopen, NULL, NULL) ||
        dray_server_register(g_srv, "Nest", h_nest, NULL, NULL) ||
        dray_server_register(g_srv, "NestCrash", h_nest_crash, NULL, NULL)) {
        fprintf(stderr, "pro_worker: register: %s\n", dray_server_errstr(g_srv));
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int rc = dray_server_run(g_srv);
    fprintf(stderr, "pro_worker: stopped (%s)\n", rc ? dray_server_errstr(g_srv) : "clean");
    /* as `dray run`: exit without waiting for handlers that outlived the
     * stop (their jobs were requeued); free would wait for them */
    if (dray_server_wait(g_srv, 0) == 0)
        dray_server_free(g_srv);
    return rc ? 1 : 0;
}
