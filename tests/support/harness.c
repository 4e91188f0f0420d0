/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The harness's Redis side, wait conditions and log capture (harness.h). */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

test_redis test_srv;
redisContext *test_rc;

int
test_setup(void **state)
{
    (void)state;
    if (test_redis_start(&test_srv))
        return -1;
    test_rc = test_redis_connect(&test_srv);
    return 0;
}

int
test_start(void **state)
{
    (void)state;
    return test_redis_start(&test_srv);
}

int
test_teardown(void **state)
{
    (void)state;
    if (test_rc)
        redisFree(test_rc);
    test_rc = NULL;
    test_redis_stop(&test_srv);
    return 0;
}

int
test_flush(void **state)
{
    (void)state;
    if (!test_rc || test_rc->err) {
        if (test_rc)
            redisFree(test_rc);
        test_rc = test_redis_connect(&test_srv);
    }
    freeReplyObject(test_redis_cmd(test_rc, "FLUSHALL"));
    return 0;
}

/* The reply to fmt on test_rc (freeReplyObject it); fails the test on none. */
static redisReply *
vcommand(const char *fmt, va_list ap)
{
    redisReply *r = redisvCommand(test_rc, fmt, ap);
    if (!r)
        fail_msg("redis: %s (%s)", test_rc->errstr, fmt);
    return r;
}

void
test_run(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcommand(fmt, ap);
    va_end(ap);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s (%s)", r->str, fmt);
    freeReplyObject(r);
}

long long
test_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcommand(fmt, ap);
    va_end(ap);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

char *
test_str(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcommand(fmt, ap);
    va_end(ap);
    char *s = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

void
test_push_raw(const char *queue, const char *json)
{
    test_run("SADD queues %s", queue);
    test_run("LPUSH queue:%s %s", queue, json);
}

int
test_flag_set(void *arg)
{
    return atomic_load((atomic_int *)arg);
}

int
test_reached(void *arg)
{
    test_at_least *c = arg;
    return atomic_load(c->v) >= c->want;
}

/* ---- log capture ------------------------------------------------------------ */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char *logs;   /* every captured line, '\n'-separated (log_mu) */
static size_t nlogs; /* bytes in logs (log_mu) */
static atomic_int log_min = DRAY_LOG_DEBUG;

void
test_log_capture(dray_log_level level, const char *line, void *ud)
{
    (void)ud;
    if ((int)level < atomic_load(&log_min))
        return;
    size_t n = strlen(line);
    pthread_mutex_lock(&log_mu);
    char *p = realloc(logs, nlogs + n + 2);
    if (p) {
        logs = p;
        memcpy(logs + nlogs, line, n);
        logs[nlogs + n] = '\n';
        logs[nlogs + n + 1] = '\0';
        nlogs += n + 1;
    }
    pthread_mutex_unlock(&log_mu);
}

void
test_log_reset(dray_log_level min)
{
    pthread_mutex_lock(&log_mu);
    free(logs);
    logs = NULL;
    nlogs = 0;
    atomic_store(&log_min, (int)min);
    pthread_mutex_unlock(&log_mu);
}

char *
test_log_line(const char *needle)
{
    char *out = NULL;
    pthread_mutex_lock(&log_mu);
    char *hit = logs ? strstr(logs, needle) : NULL;
    if (hit) {
        char *b = hit;
        while (b > logs && b[-1] != '\n')
            b--;
        char *e = strchr(hit, '\n');
        out = strndup(b, (size_t)(e - b));
    }
    pthread_mutex_unlock(&log_mu);
    return out;
}

int
test_log_contains(const char *needle)
{
    char *l = test_log_line(needle);
    free(l);
    return l != NULL;
}

int
test_log_has(void *needle)
{
    return test_log_contains(needle);
}

void
test_log_print(void)
{
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "%s", logs ? logs : "");
    pthread_mutex_unlock(&log_mu);
}
