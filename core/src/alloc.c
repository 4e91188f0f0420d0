/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The allocation seam, the growable string, time helpers and the version. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#include "internal.h"

static atomic_long fail_after = -1;

/* Tests: fail the allocation after n more succeed; -1 disables. Any thread. */
void
dray__alloc_fail_after(long n)
{
    atomic_store(&fail_after, n);
}

/* True when the test seam says this allocation must fail. */
static bool
should_fail(void)
{
    long v = atomic_load_explicit(&fail_after, memory_order_relaxed);
    if (v < 0)
        return false;
    if (v == 0)
        return true;
    atomic_fetch_sub(&fail_after, 1);
    return false;
}

/* malloc through the test seam. */
void *
dray__malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n ? n : 1);
}

/* calloc through the test seam. */
void *
dray__calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

/* realloc through the test seam (p unchanged on failure). */
void *
dray__realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n ? n : 1);
}

/* A NUL-terminated copy of at most n bytes of s (dray__free); NULL on OOM. */
char *
dray__strndup(const char *s, size_t n)
{
    char *d = dray__malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* A copy of s (dray__free); NULL on OOM. */
char *
dray__strdup(const char *s)
{
    return s ? dray__strndup(s, strlen(s)) : NULL;
}

/* free; accepts NULL. */
void
dray__free(void *p)
{
    free(p);
}

/* An empty buffer (nothing allocated). Cannot fail. */
void
dray__buf_init(dray__buf *b)
{
    memset(b, 0, sizeof *b);
}

/* Free the contents; b is empty again. Cannot fail. */
void
dray__buf_close(dray__buf *b)
{
    dray__free(b->p);
    memset(b, 0, sizeof *b);
}

/* Keep the allocation, drop the contents and the oom flag. */
void
dray__buf_reset(dray__buf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->p)
        b->p[0] = '\0';
}

/* Make room for n more bytes plus the NUL; false on OOM (sticky). */
static bool
buf_reserve(dray__buf *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = dray__realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

/* Append n bytes of s; on OOM b->oom is set and b keeps its contents. */
void
dray__buf_add(dray__buf *b, const void *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Append the string s. */
void
dray__buf_adds(dray__buf *b, const char *s)
{
    dray__buf_add(b, s, strlen(s));
}

/* Append printf-formatted text; as dray__buf_add. */
void
dray__buf_addf(dray__buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        dray__buf_add(b, small, (size_t)n);
        return;
    }
    if (!buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Monotonic seconds. */
double
dray__mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall-clock epoch seconds, at microsecond precision. */
double
dray_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000) / 1e6;
}

/* Sleep ms milliseconds, resumed across signals. */
void
dray__sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Jitter and queue shuffles need speed, not secrecy: a per-thread
 * xorshift64* seeded once from libsodium (one syscall per thread, not one per
 * fetch). jids and nonces still come from libsodium directly. */
uint32_t
dray__rand32(void)
{
    static _Thread_local uint64_t state;
    while (state == 0)
        randombytes_buf(&state, sizeof state);
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (uint32_t)((state * 0x2545F4914F6CDD1DULL) >> 32);
}

/* A uniform double in [0, 1) from dray__rand32. */
double
dray__rand01(void)
{
    return (double)dray__rand32() / 4294967296.0;
}

/* The library's version string (static). */
const char *
dray_version(void)
{
    return DRAY_VERSION_STRING;
}
