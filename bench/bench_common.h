/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Shared pieces of the benchmark programs: a private redis-server, clocks,
 * percentiles, redis-benchmark, peak RSS and the RESULT lines run.sh reads.
 *
 * Output contract (bench/run.sh parses it): every measured figure is one line
 *   RESULT<TAB>name<TAB>value<TAB>unit<TAB>target
 * where target is ">=N", "<=N" or "-" (no target). Everything else is prose
 * for a human and may change. */
#ifndef DRAY_BENCH_COMMON_H
#define DRAY_BENCH_COMMON_H

#include <stddef.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

typedef struct bench_redis {
    char dir[256];    /* temporary directory, removed by bench_redis_stop */
    char sock[300];   /* unix socket path */
    char url[320];    /* unix:///.../redis.sock */
    int port;         /* TCP port on 127.0.0.1, or 0 when TCP is off */
    char tcp_url[64]; /* redis://127.0.0.1:PORT/0, or "" */
    pid_t pid;        /* the redis-server, 0 when stopped */
} bench_redis;

/* Start a private redis-server (no persistence) on a unix socket, and on
 * 127.0.0.1 too when with_tcp. Returns 0 once it answers PING; -1 with a
 * message on stderr. */
int bench_redis_start(bench_redis *r, int with_tcp);
/* Kill the server and remove its directory. Cannot fail. */
void bench_redis_stop(bench_redis *r);
/* A fresh connection over the unix socket; exits the program on failure. */
redisContext *bench_redis_connect(const bench_redis *r);
/* Run a command that must succeed and return its integer reply (0 for a
 * non-integer reply); exits the program on failure. */
long long bench_redis_int(redisContext *c, const char *fmt, ...);

/* Monotonic seconds (system-wide, so comparable between processes). */
double bench_now(void);
/* Sleep for us microseconds. */
void bench_sleep_us(long us);

/* Sort v[0..n) in place and return its p-quantile (0..1), nearest rank. */
double bench_percentile(double *v, size_t n, double p);
/* Median of v[0..n) (sorts v). */
double bench_median(double *v, size_t n);

/* Peak resident set (VmHWM) of this process in KiB, or -1. */
long bench_vmhwm_kb(void);
/* The redis-server version string ("7.0.15") into buf; "?" if unknown. */
void bench_redis_version(const bench_redis *r, char *buf, size_t len);

/* Run `redis-benchmark -s SOCK <args> -q` and return the requests/s reported
 * for test (e.g. "INCR", "LPUSH", "RPOP"), or -1 when it cannot run. All
 * tests of one invocation come back in rates[] in the order of names[]. */
int bench_redis_benchmark(const bench_redis *r, const char *args, int ntests,
                          const char *const *names, double *rates);

/* Print one RESULT line (and a readable echo on stdout). */
void bench_result(const char *name, double value, const char *unit, const char *target);

#endif
