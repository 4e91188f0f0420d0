/* SPDX-License-Identifier: LGPL-3.0-or-later */
#include "bench_common.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double
bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
bench_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* A TCP port that was free a moment ago (the kernel picks it). */
static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (!bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* The server to stop if the program exits early (exit() on a failed check). */
static bench_redis *running;
static bench_redis running_copy;

static void
stop_at_exit(void)
{
    if (running)
        bench_redis_stop(running);
}

int
bench_redis_start(bench_redis *r, int with_tcp)
{
    static int registered;
    if (!registered) {
        atexit(stop_at_exit);
        registered = 1;
    }
    memset(r, 0, sizeof *r);
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/dray-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(r->dir)) {
        fprintf(stderr, "bench: mkdtemp %s: %s\n", r->dir, strerror(errno));
        return -1;
    }
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    snprintf(r->url, sizeof r->url, "unix://%s", r->sock);
    char port[16] = "0", logpath[320];
    if (with_tcp) {
        r->port = free_port();
        if (r->port <= 0) {
            fprintf(stderr, "bench: no free TCP port\n");
            return -1;
        }
        snprintf(port, sizeof port, "%d", r->port);
        snprintf(r->tcp_url, sizeof r->tcp_url, "redis://127.0.0.1:%d/0", r->port);
    }
    snprintf(logpath, sizeof logpath, "%s/redis.log", r->dir);
    /* clang-format off */
    char *argv[40] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--unixsocket", r->sock,
                    "--unixsocketperm", "700", "--dir", r->dir, "--save", "", "--appendonly", "no",
                    "--daemonize", "no", "--loglevel", "warning", "--logfile", logpath, NULL};
    /* clang-format on */
    /* DRAY_BENCH_TLS=1: the TCP port speaks TLS (certificates made here by
     * tests/support/tls_certs.sh); "tcp" figures are then rediss:// figures,
     * and bench_server's worker connects over it too. */
    static char tlsport[16], cfile[320], kfile[320], cafile[320], tlsurl[64];
    const char *tls = getenv("DRAY_BENCH_TLS");
    if (with_tcp && tls && !strcmp(tls, "1")) {
        char cmd[800];
        snprintf(cmd, sizeof cmd, "sh %s/tests/support/tls_certs.sh %s", DRAY_SOURCE_DIR, r->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench: cannot make TLS certificates\n");
            return -1;
        }
        snprintf(tlsport, sizeof tlsport, "%d", r->port);
        snprintf(cfile, sizeof cfile, "%s/server.pem", r->dir);
        snprintf(kfile, sizeof kfile, "%s/server.key", r->dir);
        snprintf(cafile, sizeof cafile, "%s/ca.pem", r->dir);
        argv[2] = "0"; /* "--port N" becomes "--port 0 --tls-port N ..." */
        int n = 21;
        argv[n++] = "--tls-port";
        argv[n++] = tlsport;
        argv[n++] = "--tls-cert-file";
        argv[n++] = cfile;
        argv[n++] = "--tls-key-file";
        argv[n++] = kfile;
        argv[n++] = "--tls-ca-cert-file";
        argv[n++] = cafile;
        argv[n++] = "--tls-auth-clients";
        argv[n++] = "no";
        argv[n] = NULL;
        snprintf(r->tcp_url, sizeof r->tcp_url, "rediss://127.0.0.1:%d/0", r->port);
        snprintf(tlsurl, sizeof tlsurl, "%s", r->tcp_url);
        setenv("DRAY_BENCH_TLS_CA", cafile, 1);
        setenv("DRAY_BENCH_WORKER_URL", tlsurl, 1);
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
        execvp("redis-server", argv);
        fprintf(stderr, "bench: cannot exec redis-server: %s\n", strerror(errno));
        _exit(127);
    }
    r->pid = pid;
    running_copy = *r;
    running = &running_copy;
    double end = bench_now() + 10;
    while (bench_now() < end) {
        redisContext *c = redisConnectUnix(r->sock);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS;
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c) {
            redisFree(c);
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            r->pid = 0;
            fprintf(stderr, "bench: redis-server exited at start; see %s\n", logpath);
            return -1;
        }
        bench_sleep_us(10000);
    }
    fprintf(stderr, "bench: redis-server did not answer within 10 s\n");
    bench_redis_stop(r);
    return -1;
}

void
bench_redis_stop(bench_redis *r)
{
    if (running && running->pid == r->pid)
        running = NULL; /* nothing left for the exit handler */
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
    char path[400];
    const char *files[] = {"redis.sock", "redis.log", "dump.rdb"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", r->dir, files[i]);
        unlink(path);
    }
    if (r->dir[0])
        rmdir(r->dir);
}

redisContext *
bench_redis_connect(const bench_redis *r)
{
    redisContext *c = redisConnectUnix(r->sock);
    if (!c || c->err) {
        fprintf(stderr, "bench: cannot connect to %s: %s\n", r->sock, c ? c->errstr : "oom");
        exit(1);
    }
    return c;
}

long long
bench_redis_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "bench: redis command '%s' failed: %s\n", fmt, r ? r->str : c->errstr);
        exit(1);
    }
    long long v = 0;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return v;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double
bench_percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t rank = (size_t)(p * (double)n + 0.999999); /* nearest rank, 1-based */
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

double
bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

long
bench_vmhwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

void
bench_redis_version(const bench_redis *r, char *buf, size_t len)
{
    snprintf(buf, len, "?");
    redisContext *c = bench_redis_connect(r);
    redisReply *rep = redisCommand(c, "INFO server");
    if (rep && rep->type == REDIS_REPLY_STRING) {
        const char *p = strstr(rep->str, "redis_version:");
        if (p) {
            p += strlen("redis_version:");
            size_t n = strcspn(p, "\r\n");
            snprintf(buf, len, "%.*s", (int)n, p);
        }
    }
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
}

int
bench_redis_benchmark(const bench_redis *r, const char *args, int ntests, const char *const *names,
                      double *rates)
{
    for (int i = 0; i < ntests; i++)
        rates[i] = -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "redis-benchmark -s '%s' %s -q 2>/dev/null", r->sock, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    /* -q prints progress with \r and the final "NAME: N requests per second" */
    char *all = NULL;
    size_t cap = 0, len = 0;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) {
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            char *q = realloc(all, cap);
            if (!q)
                break;
            all = q;
        }
        memcpy(all + len, chunk, got);
        len += got;
        all[len] = '\0';
    }
    int st = pclose(p);
    if (!all)
        return -1;
    for (char *line = all; line && *line;) {
        char *end = line + strcspn(line, "\r\n");
        char save = *end;
        *end = '\0';
        for (int i = 0; i < ntests; i++) {
            size_t nl = strlen(names[i]);
            if (!strncmp(line, names[i], nl) && line[nl] == ':' &&
                strstr(line, "requests per second"))
                rates[i] = strtod(line + nl + 1, NULL);
        }
        *end = save;
        line = *end ? end + 1 : NULL;
    }
    free(all);
    for (int i = 0; i < ntests; i++)
        if (rates[i] < 0)
            return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

void
bench_result(const char *name, double value, const char *unit, const char *target)
{
    printf("RESULT\t%s\t%.6g\t%s\t%s\n", name, value, unit, target && *target ? target : "-");
    fflush(stdout);
}
