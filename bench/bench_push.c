/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Producer benchmark: single-push and bulk-push rates of dray_client_push and
 * dray_client_push_bulk on a private redis-server, next to the "wire floor"
 * (the same Redis commands with a ready-made payload sent by bare hiredis,
 * i.e. dray with zero client CPU) and redis-benchmark's one-connection LPUSH
 * rate, measured in the same run so the ratios survive a noisy machine.
 *
 *   bench_push [--single N] [--bulk N] [--tcp] [--smoke]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dray/dray.h>

#include "bench_common.h"

#define QUEUE_KEY "queue:default"
#define WIRE_CHUNK 1000  /* jobs per MULTI block, as client.c */
#define WIRE_IN_FLIGHT 8 /* chunks pipelined before reading, as client.c */

static void
usage(int code)
{
    fprintf(code ? stderr : stdout, "usage: bench_push [--single N] [--bulk N] [--tcp] [--smoke]\n"
                                    "  --single N  single pushes to time (default 20000)\n"
                                    "  --bulk N    jobs in the bulk push (default 100000)\n"
                                    "  --tcp       also measure over TCP loopback (127.0.0.1)\n"
                                    "  --smoke     tiny N, for CI (no thresholds)\n");
    exit(code);
}

static dray_client *
new_client(const char *url)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = url;
    if (!strncmp(url, "rediss://", 9))
        o.redis_tls_ca_file = getenv("DRAY_BENCH_TLS_CA"); /* DRAY_BENCH_TLS (bench_common.c) */
    dray_client *c;
    char err[256];
    if (dray_client_new(&o, &c, err, sizeof err)) {
        fprintf(stderr, "bench_push: %s\n", err);
        exit(1);
    }
    return c;
}

static redisContext *
wire_connect(const bench_redis *r, int tcp)
{
    if (!tcp || !strncmp(r->tcp_url, "rediss://", 9)) /* hiredis 0.14 has no TLS: unix floor */
        return bench_redis_connect(r);
    redisContext *c = redisConnect("127.0.0.1", r->port);
    if (!c || c->err) {
        fprintf(stderr, "bench_push: tcp connect: %s\n", c ? c->errstr : "oom");
        exit(1);
    }
    return c;
}

static void
wire_read(redisContext *c, int n)
{
    for (int i = 0; i < n; i++) {
        void *rep;
        if (redisGetReply(c, &rep) != REDIS_OK) {
            fprintf(stderr, "bench_push: wire: %s\n", c->errstr);
            exit(1);
        }
        freeReplyObject(rep);
    }
}

/* n single pushes of payload with dray's exact command sequence
 * (MULTI SADD LPUSH EXEC, one round trip); returns jobs/s. */
static double
wire_single(redisContext *c, const char *payload, size_t len, long n)
{
    const char *sadd[3] = {"SADD", "queues", "default"};
    const char *lpush[3] = {"LPUSH", QUEUE_KEY, payload};
    size_t lpushl[3] = {5, strlen(QUEUE_KEY), len};
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        redisAppendCommand(c, "MULTI");
        redisAppendCommandArgv(c, 3, sadd, NULL);
        redisAppendCommandArgv(c, 3, lpush, lpushl);
        redisAppendCommand(c, "EXEC");
        wire_read(c, 4);
    }
    return (double)n / (bench_now() - t0);
}

/* n jobs in MULTI/SADD/LPUSH x1000/EXEC chunks, 8 chunks in flight, as
 * dray_client_push_bulk sends them; returns jobs/s. */
static double
wire_bulk(redisContext *c, const char *payload, size_t len, long n)
{
    const char **argv = malloc(sizeof *argv * (WIRE_CHUNK + 2));
    size_t *lens = malloc(sizeof *lens * (WIRE_CHUNK + 2));
    if (!argv || !lens)
        exit(1);
    argv[0] = "LPUSH";
    lens[0] = 5;
    argv[1] = QUEUE_KEY;
    lens[1] = strlen(QUEUE_KEY);
    for (int i = 0; i < WIRE_CHUNK; i++) {
        argv[2 + i] = payload;
        lens[2 + i] = len;
    }
    const char *sadd[3] = {"SADD", "queues", "default"};
    double t0 = bench_now();
    long left = n;
    int inflight = 0;
    while (left > 0) {
        int k = left < WIRE_CHUNK ? (int)left : WIRE_CHUNK;
        redisAppendCommand(c, "MULTI");
        redisAppendCommandArgv(c, 3, sadd, NULL);
        redisAppendCommandArgv(c, 2 + k, argv, lens);
        redisAppendCommand(c, "EXEC");
        left -= k;
        if (++inflight == WIRE_IN_FLIGHT || left == 0) {
            wire_read(c, 4 * inflight);
            inflight = 0;
        }
    }
    double rate = (double)n / (bench_now() - t0);
    free(argv);
    free(lens);
    return rate;
}

/* One job as dray wrote it (for the wire floor's payload). */
static char *
sample_payload(redisContext *c, size_t *len)
{
    redisReply *r = redisCommand(c, "LINDEX %s 0", QUEUE_KEY);
    if (!r || r->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "bench_push: no job to sample\n");
        exit(1);
    }
    char *p = strdup(r->str);
    *len = r->len;
    freeReplyObject(r);
    return p;
}

static void
run_transport(const bench_redis *r, int tcp, long nsingle, long nbulk)
{
    const char *t = tcp ? "tcp" : "unix";
    char name[96];
    redisContext *ctl = bench_redis_connect(r);
    redisContext *wire = wire_connect(r, tcp);
    dray_client *c = new_client(tcp ? r->tcp_url : r->url);

    /* single: one job per call, one round trip each */
    bench_redis_int(ctl, "FLUSHALL");
    json_t *args = json_pack("[i,s]", 0, "bench");
    long warm = nsingle / 20 + 10;
    for (long i = 0; i < warm; i++) /* connect, fault in the code paths */
        if (dray_client_push(c, "BenchJob", args, NULL, NULL)) {
            fprintf(stderr, "bench_push: push: %s\n", dray_client_errstr(c));
            exit(1);
        }
    double t0 = bench_now();
    for (long i = 0; i < nsingle; i++) {
        json_array_set_new(args, 0, json_integer(i));
        if (dray_client_push(c, "BenchJob", args, NULL, NULL)) {
            fprintf(stderr, "bench_push: push: %s\n", dray_client_errstr(c));
            exit(1);
        }
    }
    double single = (double)nsingle / (bench_now() - t0);
    json_decref(args);
    long long llen = bench_redis_int(ctl, "LLEN %s", QUEUE_KEY);
    if (llen != warm + nsingle) {
        fprintf(stderr, "bench_push: %lld jobs in the queue, expected %ld\n", llen, warm + nsingle);
        exit(1);
    }
    size_t plen;
    char *payload = sample_payload(ctl, &plen);
    printf("# %s: sample payload (%zu bytes): %s\n", t, plen, payload);

    /* bulk: one call, n jobs; building the args list is the caller's and is
     * not timed */
    bench_redis_int(ctl, "FLUSHALL");
    json_t *list = json_array();
    for (long i = 0; i < nbulk; i++)
        json_array_append_new(list, json_pack("[i,s]", (int)i, "bench"));
    size_t pushed = 0;
    t0 = bench_now();
    if (dray_client_push_bulk(c, "BenchJob", list, NULL, NULL, &pushed)) {
        fprintf(stderr, "bench_push: push_bulk: %s\n", dray_client_errstr(c));
        exit(1);
    }
    double bulk = (double)nbulk / (bench_now() - t0);
    json_decref(list);
    llen = bench_redis_int(ctl, "LLEN %s", QUEUE_KEY);
    if ((long)pushed != nbulk || llen != nbulk) {
        fprintf(stderr, "bench_push: bulk wrote %zu (queue %lld), expected %ld\n", pushed, llen,
                nbulk);
        exit(1);
    }
    size_t blen;
    char *bsample = sample_payload(ctl, &blen);
    printf("# %s: sample bulk payload (%zu bytes): %s\n", t, blen, bsample);
    free(bsample);

    /* the wire floor: same commands, same payload size, no client work */
    bench_redis_int(ctl, "FLUSHALL");
    wire_single(wire, payload, plen, warm);
    double wsingle = wire_single(wire, payload, plen, nsingle);
    bench_redis_int(ctl, "FLUSHALL");
    double wbulk = wire_bulk(wire, payload, plen, nbulk);
    bench_redis_int(ctl, "FLUSHALL");

    snprintf(name, sizeof name, "push.single.%s", t);
    bench_result(name, single, "jobs/s", tcp ? "-" : ">=15000");
    snprintf(name, sizeof name, "push.bulk.%s", t);
    bench_result(name, bulk, "jobs/s", tcp ? "-" : ">=500000");
    snprintf(name, sizeof name, "wire.single.%s", t);
    bench_result(name, wsingle, "jobs/s", "-");
    snprintf(name, sizeof name, "wire.bulk.%s", t);
    bench_result(name, wbulk, "jobs/s", "-");
    snprintf(name, sizeof name, "ratio.single_vs_wire.%s", t);
    bench_result(name, single / wsingle, "x", "-");
    snprintf(name, sizeof name, "ratio.bulk_vs_wire.%s", t);
    bench_result(name, bulk / wbulk, "x", "-");

    free(payload);
    dray_client_free(c);
    redisFree(wire);
    redisFree(ctl);
}

int
main(int argc, char **argv)
{
    long nsingle = 20000, nbulk = 100000;
    int tcp = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--single") && i + 1 < argc)
            nsingle = atol(argv[++i]);
        else if (!strcmp(argv[i], "--bulk") && i + 1 < argc)
            nbulk = atol(argv[++i]);
        else if (!strcmp(argv[i], "--tcp"))
            tcp = 1;
        else if (!strcmp(argv[i], "--smoke"))
            nsingle = 200, nbulk = 2000;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            usage(0);
        else
            usage(2);
    }
    if (nsingle <= 0 || nbulk <= 0)
        usage(2);
    dray_log_set_level(DRAY_LOG_WARN);
    bench_redis r;
    if (bench_redis_start(&r, tcp))
        return 1;
    char ver[32];
    bench_redis_version(&r, ver, sizeof ver);
    printf("# bench_push: dray %s, redis-server %s (private, %s%s), single %ld, bulk %ld\n",
           dray_version(), ver, r.sock, tcp ? " and 127.0.0.1" : "", nsingle, nbulk);

    run_transport(&r, 0, nsingle, nbulk);
    if (tcp)
        run_transport(&r, 1, nsingle, nbulk);

    /* redis-benchmark: one connection, one LPUSH per round trip, same
     * payload size: the generic single-push ceiling of this machine */
    char rbargs[128];
    snprintf(rbargs, sizeof rbargs, "-c 1 -P 1 -n %ld -d 160 -t lpush", nsingle);
    const char *names[1] = {"LPUSH"};
    double rate;
    if (bench_redis_benchmark(&r, rbargs, 1, names, &rate) == 0)
        bench_result("redis_benchmark.lpush.c1", rate, "req/s", "-");
    else
        printf("# redis-benchmark not available: skipped\n");
    bench_redis_stop(&r);
    return 0;
}
