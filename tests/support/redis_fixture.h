/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Test fixture: a private redis-server on a unix socket in a temporary
 * directory, started and stopped by the test itself. */
#ifndef DRAY_TEST_REDIS_FIXTURE_H
#define DRAY_TEST_REDIS_FIXTURE_H

#include <sys/types.h>
#include <hiredis/hiredis.h>

typedef struct test_redis {
    char dir[256];   /* temporary directory (removed by stop) */
    char sock[300];  /* unix socket path */
    char url[320];   /* unix:///…/redis.sock */
    pid_t pid;       /* redis-server, or 0 when stopped */
    char extra[512]; /* extra redis-server arguments (space separated), or "" */
} test_redis;

/* Start a fresh server; 0 on success. Waits (by connecting and PING,
 * bounded at 10 s) until it answers. */
int test_redis_start(test_redis *r);
/* Stop the server (SIGTERM, wait) but keep the directory: start_again
 * brings it back on the same socket. */
void test_redis_kill(test_redis *r);
int test_redis_start_again(test_redis *r);
/* Stop and remove everything. */
void test_redis_stop(test_redis *r);
/* A new synchronous connection to the server (redisFree it). */
redisContext *test_redis_connect(const test_redis *r);
/* Run a command and return the reply (freeReplyObject it); aborts the test
 * on connection failure. */
redisReply *test_redis_cmd(redisContext *c, const char *fmt, ...);
/* Poll `cond` every 5 ms until it returns non-zero or `timeout_s` passes;
 * returns the last value. For waiting on effects in Redis, not for sleeps. */
int test_wait_until(int (*cond)(void *), void *arg, double timeout_s);
double test_now(void);
/* A TCP port on 127.0.0.1 that was free a moment ago, or -1. */
int test_free_port(void);

#endif
