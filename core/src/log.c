/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Logging: one line per event, to stderr or a user sink. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "internal.h"

static dray_log_fn sink_fn;
static void *sink_ud;
static atomic_int min_level = DRAY_LOG_INFO;
static _Thread_local char thread_name[24];
static pthread_mutex_t stderr_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

void
dray_log_set_sink(dray_log_fn fn, void *userdata)
{
    sink_fn = fn;
    sink_ud = userdata;
}

void
dray_log_set_level(dray_log_level level)
{
    atomic_store(&min_level, (int)level);
}

bool
dray__log_enabled(dray_log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

void
dray__log_thread_name(const char *name)
{
    snprintf(thread_name, sizeof thread_name, "%s", name);
}

static void
emit(dray_log_level level, const char *jid, const char *klass, double elapsed_ms,
     const char *fmt, va_list ap)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)tv.tv_usec / 1000, level_names[level],
                     thread_name[0] ? thread_name : "main");
    if (n < 0)
        return;
    if (jid && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " jid=%s", jid);
    if (klass && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " class=%s", klass);
    if (elapsed_ms >= 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " elapsed=%.3fms", elapsed_ms);
    if ((size_t)n < sizeof line - 1) {
        line[n++] = ' ';
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    }
    if (sink_fn) {
        sink_fn(level, line, sink_ud);
        return;
    }
    pthread_mutex_lock(&stderr_lock);
    fputs(line, stderr);
    fputc('\n', stderr);
    pthread_mutex_unlock(&stderr_lock);
}

void
dray__log(dray_log_level level, const char *fmt, ...)
{
    if (!dray__log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, NULL, NULL, -1, fmt, ap);
    va_end(ap);
}

void
dray__logj(dray_log_level level, const char *jid, const char *klass, double elapsed_ms,
           const char *fmt, ...)
{
    if (!dray__log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, jid, klass, elapsed_ms, fmt, ap);
    va_end(ap);
}
