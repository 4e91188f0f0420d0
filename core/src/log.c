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
static atomic_int log_format = DRAY_LOG_FORMAT_TEXT;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

/* Send every line to fn (NULL: stderr). Process-wide; before threads start. */
void
dray_log_set_sink(dray_log_fn fn, void *userdata)
{
    sink_fn = fn;
    sink_ud = userdata;
}

/* Text or JSON lines (DRAY_LOG_FORMAT_*). Process-wide. */
void
dray_log_set_format(int format)
{
    atomic_store(&log_format,
                 format == DRAY_LOG_FORMAT_JSON ? DRAY_LOG_FORMAT_JSON : DRAY_LOG_FORMAT_TEXT);
}

/* True when lines are JSON. */
static int
json_format(void)
{
    return atomic_load_explicit(&log_format, memory_order_relaxed) == DRAY_LOG_FORMAT_JSON;
}

/* Append s (n bytes) to out as the inside of a JSON string: quote,
 * backslash and control bytes escaped; returns the bytes written, or would
 * write when out is NULL. Other bytes pass unchanged. */
static size_t
json_escape(const char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *two = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\t' ? "\\t"
                                      : NULL;
        if (two) {
            if (out)
                memcpy(out + k, two, 2);
            k += 2;
        } else if (c < 0x20) {
            if (out) {
                memcpy(out + k, "\\u00", 4);
                out[k + 4] = hex[c >> 4];
                out[k + 5] = hex[c & 15];
            }
            k += 6;
        } else {
            if (out)
                out[k] = (char)c;
            k++;
        }
    }
    return k;
}

static void output(dray_log_level level, const char *line);

/* Write one JSON line (format 1) with the fields of header() plus msg and,
 * when payload is not NULL, payload_bytes and payload (escaped as
 * dray__escape). -1 when out of memory (nothing written: the caller writes
 * the text form, which never needs the heap for a payload), else 0. */
static int
output_json(dray_log_level level, const char *jid, const char *klass, double elapsed_ms,
            const char *msg, const char *payload, size_t plen)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    char head[160];
    int hn =
        snprintf(head, sizeof head,
                 "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"thread\":\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (long)tv.tv_usec / 1000, level_names[level]);
    const char *tn = thread_name[0] ? thread_name : "main";
    size_t mlen = strlen(msg);
    size_t esc = payload ? dray__escape(payload, plen, NULL) : 0;
    size_t cap = (size_t)hn + json_escape(tn, strlen(tn), NULL) + 64 +
                 (jid ? 10 + json_escape(jid, strlen(jid), NULL) : 0) +
                 (klass ? 12 + json_escape(klass, strlen(klass), NULL) : 0) +
                 json_escape(msg, mlen, NULL) + (payload ? 64 + 2 * esc : 0) + 8;
    char *line = dray__malloc(cap), *tmp = payload ? dray__malloc(esc + 1) : NULL;
    if (!line || (payload && !tmp)) {
        dray__free(line);
        dray__free(tmp);
        return -1;
    }
    size_t k = (size_t)hn;
    memcpy(line, head, k);
    k += json_escape(tn, strlen(tn), line + k);
    line[k++] = '"';
    if (jid) {
        memcpy(line + k, ",\"jid\":\"", 8);
        k += 8;
        k += json_escape(jid, strlen(jid), line + k);
        line[k++] = '"';
    }
    if (klass) {
        memcpy(line + k, ",\"class\":\"", 10);
        k += 10;
        k += json_escape(klass, strlen(klass), line + k);
        line[k++] = '"';
    }
    if (elapsed_ms >= 0)
        k += (size_t)snprintf(line + k, cap - k, ",\"elapsed_ms\":%.3f", elapsed_ms);
    memcpy(line + k, ",\"msg\":\"", 8);
    k += 8;
    k += json_escape(msg, mlen, line + k);
    line[k++] = '"';
    if (payload) {
        dray__escape(payload, plen, tmp);
        k += (size_t)snprintf(line + k, cap - k, ",\"payload_bytes\":%zu,\"payload\":\"", plen);
        k += json_escape(tmp, esc, line + k);
        line[k++] = '"';
    }
    line[k++] = '}';
    line[k] = '\0';
    output(level, line);
    dray__free(line);
    dray__free(tmp);
    return 0;
}

/* Drop lines below level. Process-wide, any thread. */
void
dray_log_set_level(dray_log_level level)
{
    atomic_store(&min_level, (int)level);
}

/* True when a line at level would be written. */
bool
dray__log_enabled(dray_log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

/* Name this thread in its log lines (copied, truncated). */
void
dray__log_thread_name(const char *name)
{
    snprintf(thread_name, sizeof thread_name, "%s", name);
}

/* Write "<time> <LEVEL> <thread>[ jid=…][ class=…][ elapsed=…]" into line;
 * returns the length (< cap). */
static size_t
header(char *line, size_t cap, dray_log_level level, const char *jid, const char *klass,
       double elapsed_ms)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)tv.tv_usec / 1000, level_names[level],
                     thread_name[0] ? thread_name : "main");
    if (n < 0)
        return 0;
    if (jid && (size_t)n < cap)
        n += snprintf(line + n, cap - (size_t)n, " jid=%s", jid);
    if (klass && (size_t)n < cap)
        n += snprintf(line + n, cap - (size_t)n, " class=%s", klass);
    if (elapsed_ms >= 0 && (size_t)n < cap)
        n += snprintf(line + n, cap - (size_t)n, " elapsed=%.3fms", elapsed_ms);
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Hand one finished line to the sink, or to stderr under its lock. */
static void
output(dray_log_level level, const char *line)
{
    if (sink_fn) {
        sink_fn(level, line, sink_ud);
        return;
    }
    pthread_mutex_lock(&stderr_lock);
    fputs(line, stderr);
    fputc('\n', stderr);
    pthread_mutex_unlock(&stderr_lock);
}

/* Text format: escape the control bytes of line[0, n) in place (\n \r
 * \t, others and DEL as \xNN), cutting at cap, so text that came from
 * Redis or a payload (a signal, a class, an error message) cannot start a
 * forged line of its own. Returns the new length. */
static size_t
escape_controls(char *line, size_t n, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < n && (unsigned char)line[i] >= 0x20 && line[i] != 0x7f)
        i++;
    if (i == n)
        return n; /* the usual case: nothing to do */
    char tail[2048];
    size_t tl = n - i < sizeof tail ? n - i : sizeof tail;
    memcpy(tail, line + i, tl);
    size_t w = i;
    for (size_t r = 0; r < tl; r++) {
        unsigned char c = (unsigned char)tail[r];
        char esc[4];
        size_t el = 1;
        esc[0] = (char)c;
        if (c < 0x20 || c == 0x7f) {
            esc[0] = '\\';
            el = 2;
            if (c == '\n')
                esc[1] = 'n';
            else if (c == '\r')
                esc[1] = 'r';
            else if (c == '\t')
                esc[1] = 't';
            else {
                esc[1] = 'x';
                esc[2] = hex[c >> 4];
                esc[3] = hex[c & 15];
                el = 4;
            }
        }
        if (w + el >= cap)
            break;
        memcpy(line + w, esc, el);
        w += el;
    }
    line[w] = '\0';
    return w;
}

/* Format one line (text or JSON, cut to 2 KiB) and output it. */
static void
emit(dray_log_level level, const char *jid, const char *klass, double elapsed_ms, const char *fmt,
     va_list ap)
{
    char line[2048];
    if (json_format()) {
        va_list copy;
        va_copy(copy, ap);
        vsnprintf(line, sizeof line, fmt, copy);
        va_end(copy);
        if (!output_json(level, jid, klass, elapsed_ms, line, NULL, 0))
            return;
    }
    size_t n = header(line, sizeof line, level, jid, klass, elapsed_ms);
    if (n < sizeof line - 1) {
        line[n++] = ' ';
        vsnprintf(line + n, sizeof line - n, fmt, ap);
    }
    escape_controls(line, strlen(line), sizeof line);
    output(level, line);
}

/* Escape n bytes of in as one printable line (contract in internal.h). */
size_t
dray__escape(const char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\\') {
            if (out)
                out[k] = out[k + 1] = '\\';
            k += 2;
        } else if (c < 0x20 || c >= 0x7f) {
            if (out) {
                out[k] = '\\';
                out[k + 1] = 'x';
                out[k + 2] = hex[c >> 4];
                out[k + 3] = hex[c & 15];
            }
            k += 4;
        } else {
            if (out)
                out[k] = (char)c;
            k++;
        }
    }
    return k;
}

#define PART_BYTES 1024 /* payload bytes per line when the whole line cannot be allocated */

/* Log a job that could not be written back, its payload whole (contract
 * in internal.h). */
void
dray__log_payload(dray_log_level level, const char *jid, const char *klass, const char *payload,
                  size_t len, const char *fmt, ...)
{
    if (!dray__log_enabled(level))
        return;
    char line[2048];
    if (json_format()) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        if (!output_json(level, jid, klass, -1, line, payload ? payload : "", payload ? len : 0))
            return;
    }
    size_t n = header(line, sizeof line, level, jid, klass, -1);
    if (n < sizeof line - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += (size_t)m < sizeof line - n ? (size_t)m : sizeof line - n - 1;
    }
    n = escape_controls(line, n, sizeof line);
    if (!payload)
        payload = "", len = 0;
    char tag[64];
    int tl = snprintf(tag, sizeof tag, "; payload (%zu bytes, escaped): ", len);
    size_t elen = dray__escape(payload, len, NULL);
    char *big = dray__malloc(n + (size_t)tl + elen + 1);
    if (big) {
        memcpy(big, line, n);
        memcpy(big + n, tag, (size_t)tl);
        dray__escape(payload, len, big + n + tl);
        big[n + (size_t)tl + elen] = '\0';
        output(level, big);
        dray__free(big);
        return;
    }
    /* Out of memory: the same text in numbered parts from stack buffers. */
    line[n] = '\0';
    output(level, line);
    size_t parts = len ? (len + PART_BYTES - 1) / PART_BYTES : 1;
    for (size_t p = 0; p < parts; p++) {
        char part[256 + PART_BYTES * 4];
        size_t off = p * PART_BYTES, cnt = len - off < PART_BYTES ? len - off : PART_BYTES;
        size_t h = header(part, 256, level, jid, klass, -1);
        int m = snprintf(part + h, 256 - h, " payload part %zu/%zu (bytes %zu-%zu of %zu): ", p + 1,
                         parts, off, off + cnt, len);
        h = m > 0 && (size_t)m < 256 - h ? h + (size_t)m : 255;
        h = escape_controls(part, h, 256);
        h += dray__escape(payload + off, cnt, part + h);
        part[h] = '\0';
        output(level, part);
    }
}

/* Log one line at level. */
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

/* Log one line about a job (jid, class, elapsed ms when >= 0). */
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
