/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Helper process for the dray Enterprise tests: a real worker (or pusher)
 * with dray-enterprise-test.so loaded, as an application would run one.
 * Only the public API (dray.h) is used.
 *
 *   ent_worker run  --redis URL [--queues "a b"] [--concurrency N] [--set k=v]...
 *   ent_worker push --redis URL --gate KEY --class C [--args JSON] [--extra JSON]
 *                   [--count N] [--set k=v]...
 *
 * The license comes from $DRAY_LICENSE. `run` stops on SIGTERM. `push`
 * waits for one element on list KEY (so many pushers start together),
 * pushes, and appends each result code to ent:test:pushed.
 *
 * Handlers write what they saw to Redis (their own connection):
 *   Record  ent:test:ran       {"jid","class","queue","retry_count","deferred","overrated"}
 *   Conc    like Record; ent:test:cur:<args[0]> counts running copies and
 *           ent:test:max:<args[0]> keeps the highest; runs args[1] ms
 *   Stamp   like Record; ent:test:stamps:<args[0]> gets the start time
 *   Fail    like Record, then fails
 *   Block   ent:test:started gets the jid; waits for an element of ent:test:gate
 *   Secret  compares its last argument with $ENT_SECRET (JSON): ent:test:secret
 *           gets "ok" or "bad"; args[0] "fail" always fails, "fail-echo" fails
 *           with its arguments in the error message, "fail-once" fails
 *           its first run
 *   Tick    ent:test:ticks gets "<periodic> <periodic_at> <jid>"
 *
 * --args is read as a fetched payload's args are, so an integer beyond 64
 * bits (123456789012345678901234567890) is pushed as one. When the last
 * argument of a Secret job is an object with "n", ent:test:big gets
 * "<args[1]>|<n>", each the digits of an integer beyond 64 bits or "not-big".
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "dray/dray.h"

static const char *redis_url;
static dray_server *server;
static pthread_key_t conn_key; /* each thread's own link, freed when the thread ends */
static pthread_once_t conn_once = PTHREAD_ONCE_INIT;

static void
conn_free(void *c)
{
    redisFree(c);
}

static void
conn_key_make(void)
{
    pthread_key_create(&conn_key, conn_free);
}

static redisContext *
conn(void)
{
    pthread_once(&conn_once, conn_key_make);
    redisContext *c = pthread_getspecific(conn_key);
    if (c && !c->err)
        return c;
    if (c)
        redisFree(c);
    const char *path = redis_url + strlen("unix://");
    c = redisConnectUnix(path);
    if (!c || c->err) {
        fprintf(stderr, "ent_worker: cannot connect to %s\n", path);
        exit(2);
    }
    pthread_setspecific(conn_key, c);
    return c;
}

static void
cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(conn(), fmt, ap);
    va_end(ap);
    if (r)
        freeReplyObject(r);
}

static long long
field_int(const dray_job *job, const char *f, long long dflt)
{
    json_t *v = dray_job_get(job, f);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static void
record(const dray_job *job)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:i, s:I, s:I}", "jid", dray_job_jid(job), "class",
                  dray_job_class(job), "queue", dray_job_queue(job), "retry_count",
                  dray_job_retry_count(job), "deferred", (json_int_t)field_int(job, "deferred", 0),
                  "overrated", (json_int_t)field_int(job, "overrated", 0));
    char *s = json_dumps(o, JSON_COMPACT);
    cmd("RPUSH ent:test:ran %s", s);
    free(s);
    json_decref(o);
}

static void
nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1)
        ;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *
arg_str(const dray_job *job, size_t i, const char *dflt)
{
    const char *s = json_string_value(json_array_get(dray_job_args(job), i));
    return s ? s : dflt;
}

static int
h_record(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    record(job);
    return 0;
}

static int
h_conc(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    const char *g = arg_str(job, 0, "x");
    json_t *ms = json_array_get(dray_job_args(job), 1);
    redisReply *r = redisCommand(conn(), "EVAL %s 2 ent:test:cur:%s ent:test:max:%s",
                                 "local c = redis.call('INCR', KEYS[1])\n"
                                 "if c > tonumber(redis.call('GET', KEYS[2]) or '0') then "
                                 "redis.call('SET', KEYS[2], c) end\n"
                                 "return c\n",
                                 g, g);
    if (r)
        freeReplyObject(r);
    nap_ms(json_is_integer(ms) ? (long)json_integer_value(ms) : 50);
    cmd("DECR ent:test:cur:%s", g);
    record(job);
    return 0;
}

static int
h_stamp(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    cmd("RPUSH ent:test:stamps:%s %.6f", arg_str(job, 0, "x"), now_s());
    record(job);
    return 0;
}

static int
h_fail(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    record(job);
    return dray_result_fail(res, "ArgumentError", "Fail always fails");
}

static int
h_block(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    cmd("RPUSH ent:test:started %s", dray_job_jid(job));
    redisReply *r = redisCommand(conn(), "BLPOP ent:test:gate 60");
    if (r)
        freeReplyObject(r);
    record(job);
    return 0;
}

/* Args JSON text read by the core's payload loader (bigints kept): a new
 * reference, or NULL when it is not a JSON array. */
static json_t *
load_args(const char *text)
{
    size_t n = strlen(text) + 64;
    char *payload = malloc(n);
    dray_job *job = NULL;
    json_t *a = NULL;
    if (payload) {
        snprintf(payload, n, "{\"class\":\"X\",\"args\":%s}", text);
        if (!dray_job_parse(payload, strlen(payload), 0, &job, NULL, 0))
            a = json_incref(dray_job_args(job));
    }
    dray_job_free(job);
    free(payload);
    return a;
}

/* The digits of v when it is an integer beyond 64 bits, else "not-big". */
static const char *
big_digits(const json_t *v)
{
    const char *d = dray_json_bigint(v);
    return d ? d : "not-big";
}

static int
h_secret(dray_job *job, dray_result *res, void *ud)
{
    (void)ud;
    json_t *args = dray_job_args(job);
    json_t *last = json_array_get(args, json_array_size(args) - 1);
    if (json_object_get(last, "n"))
        cmd("RPUSH ent:test:big %s|%s", big_digits(json_array_get(args, 1)),
            big_digits(json_object_get(last, "n")));
    const char *want = getenv("ENT_SECRET");
    json_t *w = want ? json_loads(want, JSON_DECODE_ANY, NULL) : NULL;
    cmd("RPUSH ent:test:secret %s", w && json_equal(w, last) ? "ok" : "bad");
    json_decref(w);
    record(job);
    const char *mode = arg_str(job, 0, "");
    if (!strcmp(mode, "fail") || (!strcmp(mode, "fail-once") && dray_job_retry_count(job) < 0))
        return dray_result_fail(res, "RuntimeError", "Secret asked to fail");
    if (!strcmp(mode, "fail-echo")) { /* an error text that repeats the arguments */
        char *a = json_dumps(args, JSON_COMPACT);
        int rc = dray_result_fail(res, "ArgumentError", "bad arguments %s", a ? a : "?");
        free(a);
        return rc;
    }
    if (!strcmp(mode, "defer-once") && !dray_job_get(job, "deferred"))
        return dray_result_defer(res, 0.2, "Secret asked to defer");
    return 0;
}

static int
h_tick(dray_job *job, dray_result *res, void *ud)
{
    (void)res;
    (void)ud;
    const char *loop = json_string_value(dray_job_get(job, "periodic"));
    char line[160];
    snprintf(line, sizeof line, "%s %lld %s", loop ? loop : "?", field_int(job, "periodic_at", -1),
             dray_job_jid(job));
    cmd("RPUSH ent:test:ticks %s", line);
    return 0;
}

static void
on_term(int sig)
{
    (void)sig;
    if (server)
        dray_server_stop(server);
}

static void
usage(void)
{
    fprintf(stderr, "usage: ent_worker run|push --redis URL ... (see the source)\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1], *queues = "default", *gate = NULL, *klass = NULL, *args = "[]",
               *extra = NULL;
    const char *sets[64];
    int nsets = 0, conc = 5, count = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--redis"))
            redis_url = v;
        else if (!strcmp(a, "--queues"))
            queues = v;
        else if (!strcmp(a, "--concurrency"))
            conc = atoi(v);
        else if (!strcmp(a, "--set") && nsets < 64)
            sets[nsets++] = v;
        else if (!strcmp(a, "--gate"))
            gate = v;
        else if (!strcmp(a, "--class"))
            klass = v;
        else if (!strcmp(a, "--args"))
            args = v;
        else if (!strcmp(a, "--extra"))
            extra = v;
        else if (!strcmp(a, "--count"))
            count = atoi(v);
        else
            usage();
    }
    if (!redis_url || strncmp(redis_url, "unix://", 7))
        usage();
    dray_options o;
    dray_options_init(&o);
    o.redis_url = redis_url;
    o.queues = queues;
    o.concurrency = conc;
    o.heartbeat_s = 1;
    o.poll_interval_s = 0.1;
    o.shutdown_timeout_s = 5;
    o.log_level = getenv("TEST_LOG") ? DRAY_LOG_DEBUG : DRAY_LOG_ERROR;
    dray_log_set_level(o.log_level);
    char err[512];
    if (dray_server_new(&o, &server, err, sizeof err)) {
        fprintf(stderr, "ent_worker: %s\n", err);
        return 2;
    }
    for (int i = 0; i < nsets; i++) {
        char k[128];
        const char *eq = strchr(sets[i], '=');
        if (!eq || (size_t)(eq - sets[i]) >= sizeof k)
            usage();
        memcpy(k, sets[i], (size_t)(eq - sets[i]));
        k[eq - sets[i]] = '\0';
        if (dray_server_set_config(server, k, eq + 1)) {
            fprintf(stderr, "ent_worker: bad setting %s\n", sets[i]);
            return 2;
        }
    }
    if (dray_server_load_module(server, ENT_MODULE, err, sizeof err)) {
        fprintf(stderr, "ent_worker: %s\n", err);
        return 3;
    }
    if (!strcmp(mode, "push")) {
        if (!klass)
            usage();
        dray_client *c;
        if (dray_client_new(&o, &c, err, sizeof err)) {
            fprintf(stderr, "ent_worker: %s\n", err);
            return 2;
        }
        if (gate) {
            redisReply *r = redisCommand(conn(), "BLPOP %s 30", gate);
            if (r)
                freeReplyObject(r);
        }
        json_t *a = load_args(args), *x = extra ? json_loads(extra, 0, NULL) : NULL;
        for (int i = 0; i < count; i++) {
            dray_push_opts po = {.extra = x};
            int rc = dray_client_push(c, klass, a, &po, NULL);
            cmd("RPUSH ent:test:pushed %d", rc);
        }
        json_decref(a);
        json_decref(x);
        dray_client_free(c);
        dray_server_free(server);
        return 0;
    }
    if (strcmp(mode, "run"))
        usage();
    static const struct {
        const char *klass;
        dray_handler_fn fn;
    } handlers[] = {{"Record", h_record}, {"Conc", h_conc},   {"Stamp", h_stamp},
                    {"Fail", h_fail},     {"Block", h_block}, {"Secret", h_secret},
                    {"Tick", h_tick},     {"Tenant", h_conc}};
    for (size_t i = 0; i < sizeof handlers / sizeof *handlers; i++)
        if (dray_server_register(server, handlers[i].klass, handlers[i].fn, NULL, NULL))
            return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int rc = dray_server_run(server);
    /* as `dray run`: handlers that outlived the stop do not hold up the exit */
    if (dray_server_wait(server, 0) == 0)
        dray_server_free(server);
    return rc ? 1 : 0;
}
