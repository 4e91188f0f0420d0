/* SPDX-License-Identifier: LGPL-3.0-or-later */
#include "redis_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double
test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int
test_wait_until(int (*cond)(void *), void *arg, double timeout_s)
{
    double end = test_now() + timeout_s;
    int v;
    while (!(v = cond(arg)) && test_now() < end)
        nap_ms(5);
    return v;
}

static int
spawn(test_redis *r)
{
    char *argv[64];
    int n = 0;
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--unixsocket";
    argv[n++] = r->sock;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--loglevel";
    argv[n++] = "warning";
    argv[n++] = "--logfile";
    static char logpath[320];
    snprintf(logpath, sizeof logpath, "%s/redis.log", r->dir);
    argv[n++] = logpath;
    char extra[512];
    snprintf(extra, sizeof extra, "%s", r->extra);
    for (char *save = NULL, *t = strtok_r(extra, " ", &save); t && n < 62;
         t = strtok_r(NULL, " ", &save))
        argv[n++] = t;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* never outlive the test, even when it crashes or is killed */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execvp("redis-server", argv);
        fprintf(stderr, "cannot exec redis-server: %s\n", strerror(errno));
        _exit(127);
    }
    r->pid = pid;
    double end = test_now() + 10;
    while (test_now() < end) {
        redisContext *c = redisConnectUnix(r->sock);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && (rep->type == REDIS_REPLY_STATUS ||
                             (rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOAUTH", 6)));
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c) {
            redisFree(c);
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            fprintf(stderr, "redis-server exited at start; see %s\n", logpath);
            return -1;
        }
        nap_ms(10);
    }
    fprintf(stderr, "redis-server did not answer within 10 s\n");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    r->pid = 0;
    return -1;
}

int
test_redis_start(test_redis *r)
{
    char extra[sizeof r->extra];
    memcpy(extra, r->extra, sizeof extra);
    memset(r, 0, sizeof *r);
    memcpy(r->extra, extra, sizeof extra);
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/dray-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(r->dir))
        return -1;
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    snprintf(r->url, sizeof r->url, "unix://%s", r->sock);
    return spawn(r);
}

void
test_redis_kill(test_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
    unlink(r->sock);
}

int
test_redis_start_again(test_redis *r)
{
    return spawn(r);
}

void
test_redis_stop(test_redis *r)
{
    test_redis_kill(r);
    char path[400];
    snprintf(path, sizeof path, "%s/redis.log", r->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/dump.rdb", r->dir);
    unlink(path);
    rmdir(r->dir);
}

redisContext *
test_redis_connect(const test_redis *r)
{
    redisContext *c = redisConnectUnix(r->sock);
    if (!c || c->err) {
        fprintf(stderr, "cannot connect to test redis at %s\n", r->sock);
        abort();
    }
    return c;
}

redisReply *
test_redis_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) {
        fprintf(stderr, "test redis command failed: %s\n", c->errstr);
        abort();
    }
    return r;
}

int
test_free_port(void)
{
    /* Not bind(0): the kernel hands out ephemeral ports (32768-60999), which
     * it may give again to the next probe or to any outgoing connection
     * before the server binds it (seen: a replica and a sentinel got the
     * same port). Random ports below that range, each handed out once per
     * process, only collide with another test binary by chance. */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static int given[256];
    static size_t ngiven;
    static unsigned seed;
    pthread_mutex_lock(&mu);
    if (!seed)
        seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    int port = -1;
    for (int tries = 0; tries < 1000 && port < 0; tries++) {
        int p = 20000 + (int)(rand_r(&seed) % 12000u);
        int dup = 0;
        for (size_t i = 0; i < ngiven; i++)
            dup |= given[i] == p;
        int fd = dup ? -1 : socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            continue;
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                .sin_port = htons((uint16_t)p)};
        if (!bind(fd, (struct sockaddr *)&a, sizeof a))
            port = p;
        close(fd);
    }
    if (port > 0 && ngiven < sizeof given / sizeof given[0])
        given[ngiven++] = port;
    pthread_mutex_unlock(&mu);
    return port;
}
