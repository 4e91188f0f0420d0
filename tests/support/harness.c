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

/* The reply to fmt on c (freeReplyObject it); fails the test on none. */
static redisReply *
vcommand(redisContext *c, const char *fmt, va_list ap)
{
    redisReply *r = redisvCommand(c, fmt, ap);
    if (!r)
        fail_msg("redis: %s (%s)", c->errstr, fmt);
    return r;
}

void
test_run(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcommand(test_rc, fmt, ap);
    va_end(ap);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s (%s)", r->str, fmt);
    freeReplyObject(r);
}

/* test_int with a va_list. */
static long long
vint(redisContext *c, const char *fmt, va_list ap)
{
    redisReply *r = vcommand(c, fmt, ap);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

long long
test_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    long long v = vint(test_rc, fmt, ap);
    va_end(ap);
    return v;
}

/* A test_int condition: the reply to fmt (with a copy of ap) against want. */
typedef struct int_wait {
    redisContext *c;
    long long want;
    int at_least; /* >= want rather than == want */
    const char *fmt;
    va_list ap;
} int_wait;

static int
int_reached(void *arg)
{
    int_wait *w = arg;
    va_list ap;
    va_copy(ap, w->ap);
    long long v = vint(w->c, w->fmt, ap);
    va_end(ap);
    return w->at_least ? v >= w->want : v == w->want;
}

int
test_wait_int_on(redisContext *c, long long want, int at_least, double timeout_s, const char *fmt,
                 ...)
{
    int_wait w = {.c = c, .want = want, .at_least = at_least, .fmt = fmt};
    va_start(w.ap, fmt);
    int ok = test_wait_until(int_reached, &w, timeout_s);
    va_end(w.ap);
    return ok;
}

char *
test_str(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcommand(test_rc, fmt, ap);
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
