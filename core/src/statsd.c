/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* statsd / DogStatsD output of job outcomes, as Sidekiq Pro's metrics:
 * per job one datagram with jobs.count, jobs.success or jobs.failure and the
 * jobs.perform timing (ms). DogStatsD tags them worker:<class>,queue:<q>;
 * plain statsd also counts per class (jobs.<Class>.success, ...perform).
 * Each heartbeat adds gauges: jobs.busy (this process) and the size of each
 * of its queues (queue.size tagged queue:<q>, or queue.<q>.size).
 * The socket is UDP, connected and non-blocking: a slow, full or absent
 * listener drops datagrams and never delays a job. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "server.h"

#define STATSD_DATAGRAM 1432 /* bytes: fits an Ethernet MTU, as statsd clients do */

struct dray__statsd {
    int fd;                /* connected UDP socket */
    int dogstatsd;         /* 1: |#tags, 0: class in the metric name */
    char prefix[64];       /* "" or "myapp." */
    atomic_ullong dropped; /* datagrams the kernel refused (full buffer, no listener) */
};

/* Class or queue text safe in a metric name or tag: [A-Za-z0-9_.-:], the
 * rest becomes '_' ("::" of Ruby classes stays readable as "__"). */
static void
clean(const char *in, char *out, size_t cap, int keep_colon)
{
    size_t k = 0;
    for (; in && *in && k + 1 < cap; in++) {
        char c = *in;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '.' || (keep_colon && c == ':');
        out[k++] = ok ? c : '_';
    }
    out[k] = '\0';
}

/* "statsd: <what> '<addr>'<why>" into the server's error text. */
static int
fail(dray_server *s, const char *what, const char *addr, const char *why)
{
    snprintf(s->errstr, sizeof s->errstr, "statsd: %s '%s'%s%s", what, addr, why[0] ? ": " : "",
             why);
    return DRAY_ECONFIG;
}

/* Sends s's per-job metrics to the statsd at addr (HOST:PORT; dogstatsd: tags)
 * with prefix, replacing any earlier target. 0, DRAY_EINVAL, DRAY_ECONFIG (in s's errstr),
 * DRAY_ENOMEM. */
int
dray_server_statsd(dray_server *s, const char *addr, int dogstatsd, const char *prefix)
{
    if (!s || !addr)
        return DRAY_EINVAL;
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host || !colon[1])
        return fail(s, "want HOST:PORT, not", addr, "");
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g)
        return fail(s, "cannot resolve", addr, gai_strerror(g));
    int fd = -1;
    for (struct addrinfo *p = ai; p && fd < 0; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, p->ai_addr, p->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    char why[DRAY__STRERROR_BYTES];
    if (fd < 0)
        return fail(s, "no socket for", addr, dray__strerror(errno, why, sizeof why));
    dray__statsd *st = dray__calloc(1, sizeof *st);
    if (!st) {
        close(fd);
        return DRAY_ENOMEM;
    }
    st->fd = fd;
    st->dogstatsd = dogstatsd;
    clean(prefix, st->prefix, sizeof st->prefix, 0);
    dray__statsd_free(s->statsd);
    s->statsd = st;
    dray__log(DRAY_LOG_INFO, "statsd: job metrics to %s (%s)", addr,
              dogstatsd ? "DogStatsD tags" : "plain statsd");
    return 0;
}

/* Closes st's socket and frees it. Accepts NULL. */
void
dray__statsd_free(dray__statsd *st)
{
    if (!st)
        return;
    close(st->fd);
    dray__free(st);
}

/* Sends one job's count, outcome and time to st in one datagram, never
 * blocking; a datagram that cannot be sent is counted as dropped. Thread-safe. */
void
dray__statsd_job(dray__statsd *st, const char *klass, const char *queue, int failed, double ms)
{
    char k[200], q[200], d[STATSD_DATAGRAM];
    const char *outcome = failed ? "failure" : "success";
    const char *p = st->prefix;
    clean(klass, k, sizeof k, st->dogstatsd);
    clean(queue, q, sizeof q, st->dogstatsd);
    int n;
    if (st->dogstatsd)
        n = snprintf(d, sizeof d,
                     "%sjobs.count:1|c|#worker:%s,queue:%s\n%sjobs.%s:1|c|#worker:%s,queue:%s\n"
                     "%sjobs.perform:%.3f|ms|#worker:%s,queue:%s",
                     p, k, q, p, outcome, k, q, p, ms, k, q);
    else
        n = snprintf(d, sizeof d,
                     "%sjobs.count:1|c\n%sjobs.%s:1|c\n%sjobs.perform:%.3f|ms\n"
                     "%sjobs.%s.%s:1|c\n%sjobs.%s.perform:%.3f|ms",
                     p, p, outcome, p, ms, p, k, outcome, p, k, ms);
    if (n <= 0 || (size_t)n >= sizeof d)
        return; /* cannot happen with the bounded names above */
    if (send(st->fd, d, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        atomic_fetch_add_explicit(&st->dropped, 1, memory_order_relaxed);
}

/* The length of each key. */
static dray__script llen_script = {
    .src = "local r = {}\n"
           "for i, k in ipairs(KEYS) do r[i] = redis.call('LLEN', k) end\n"
           "return r\n",
};

/* Send d[0..*n) and start again when line would not fit. */
static void
gauge_line(dray__statsd *st, char *d, size_t *n, const char *line)
{
    size_t len = strlen(line);
    if (*n && *n + 1 + len > STATSD_DATAGRAM) {
        if (send(st->fd, d, *n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            atomic_fetch_add_explicit(&st->dropped, 1, memory_order_relaxed);
        *n = 0;
    }
    if (len > STATSD_DATAGRAM)
        return;
    if (*n)
        d[(*n)++] = '\n';
    memcpy(d + *n, line, len);
    *n += len;
}

/* Heartbeat thread: gauges of busy threads and queue sizes (one LLEN script on c; busy alone
 * if it fails), batched into datagrams. Never fails. */
void
dray__statsd_gauges(struct dray_server *s, dray__conn *c, int busy)
{
    dray__statsd *st = s->statsd;
    char d[STATSD_DATAGRAM], line[400], q[200];
    size_t n = 0;
    snprintf(line, sizeof line, "%sjobs.busy:%d|g", st->prefix, busy);
    gauge_line(st, d, &n, line);
    const char **argv = dray__calloc(s->nqueues ? s->nqueues : 1, sizeof *argv);
    size_t *lens = dray__calloc(s->nqueues ? s->nqueues : 1, sizeof *lens);
    redisReply *r = NULL;
    if (argv && lens) {
        for (size_t i = 0; i < s->nqueues; i++) {
            argv[i] = s->queues[i].key;
            lens[i] = strlen(s->queues[i].key);
        }
        if (dray__conn_eval(c, &llen_script, &r, (int)s->nqueues, (int)s->nqueues, argv, lens)) {
            if (r)
                freeReplyObject(r);
            r = NULL; /* no sizes this beat; busy still goes */
        }
    }
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements && i < s->nqueues;
         i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            continue;
        clean(s->queues[i].name, q, sizeof q, st->dogstatsd);
        if (st->dogstatsd)
            snprintf(line, sizeof line, "%squeue.size:%lld|g|#queue:%s", st->prefix,
                     r->element[i]->integer, q);
        else
            snprintf(line, sizeof line, "%squeue.%s.size:%lld|g", st->prefix, q,
                     r->element[i]->integer);
        gauge_line(st, d, &n, line);
    }
    if (r)
        freeReplyObject(r);
    dray__free(argv);
    dray__free(lens);
    if (n && send(st->fd, d, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        atomic_fetch_add_explicit(&st->dropped, 1, memory_order_relaxed);
}
