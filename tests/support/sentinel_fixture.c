/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Master + replica + three sentinels for the Sentinel tests
 * (sentinel_fixture.h). */
#include "sentinel_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "redis_fixture.h"

/* The TLS lines of a redis.conf (empty without tls). */
static void
tls_conf(const test_sentinel *s, int tls_port, char *out, size_t len)
{
    if (!s->tls) {
        out[0] = '\0';
        return;
    }
    snprintf(out, len,
             "tls-port %d\ntls-cert-file %s/server.pem\ntls-key-file %s/server.key\n"
             "tls-ca-cert-file %s/ca.pem\ntls-auth-clients no\ntls-replication yes\n",
             tls_port, s->certs, s->certs, s->certs);
}

static pid_t
spawn_conf(const char *conf, int sentinel)
{
    pid_t pid = fork();
    if (pid == 0) {
        execlp("redis-server", "redis-server", conf, sentinel ? "--sentinel" : (char *)NULL,
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Write dir/<name>.conf with the common lines, the TLS lines and extra. */
static int
write_conf(const test_sentinel *s, const char *name, int port, int tls_port, const char *extra,
           char *path, size_t plen)
{
    char tls[1400];
    tls_conf(s, tls_port, tls, sizeof tls);
    snprintf(path, plen, "%s/%s.conf", s->dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "port %d\nbind 127.0.0.1\ndir %s\nlogfile %s/%s.log\n%s%s", port, s->dir, s->dir,
            name, tls, extra);
    return fclose(f) ? -1 : 0;
}

static pid_t
start_redis(const test_sentinel *s, const char *name, int port, int tls_port, int replica_of)
{
    char extra[256], conf[400];
    int n = snprintf(extra, sizeof extra, "dbfilename %s.rdb\nsave \"\"\nappendonly no\n", name);
    if (replica_of)
        snprintf(extra + n, sizeof extra - (size_t)n, "replicaof 127.0.0.1 %d\n", replica_of);
    if (write_conf(s, name, port, tls_port, extra, conf, sizeof conf))
        return -1;
    return spawn_conf(conf, 0);
}

static pid_t
start_one_sentinel(const test_sentinel *s, int i)
{
    char name[32], extra[512], conf[400];
    snprintf(name, sizeof name, "sentinel-%d", i);
    snprintf(extra, sizeof extra,
             "sentinel monitor mymaster 127.0.0.1 %d 2\n"
             "sentinel down-after-milliseconds mymaster 1000\n"
             "sentinel failover-timeout mymaster 4000\n"
             "sentinel parallel-syncs mymaster 1\n",
             s->mtls);
    if (write_conf(s, name, s->sport[i], s->stls[i], extra, conf, sizeof conf))
        return -1;
    return spawn_conf(conf, 1);
}

redisReply *
test_sentinel_at(int port, const char *fmt, ...)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static int
info_has(int port, const char *section, const char *needle)
{
    redisReply *r = test_sentinel_at(port, "INFO %s", section);
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, needle);
    if (r)
        freeReplyObject(r);
    return ok;
}

static int
converged(void *arg)
{
    const test_sentinel *s = arg;
    if (!info_has(s->rport, "replication", "master_link_status:up"))
        return 0;
    for (int i = 0; i < 3; i++) {
        redisReply *r = test_sentinel_at(s->sport[i], "SENTINEL replicas mymaster");
        int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1;
        if (r)
            freeReplyObject(r);
        if (!ok || !info_has(s->sport[i], "sentinel", "sentinels=3"))
            return 0;
    }
    return 1;
}

int
test_sentinel_start(test_sentinel *s)
{
    int tls = s->tls;
    memset(s, 0, sizeof *s);
    s->tls = tls;
    snprintf(s->dir, sizeof s->dir, "/tmp/dray-sentinel-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    if (tls) {
        char cmd[800];
        snprintf(s->certs, sizeof s->certs, "%s/certs", s->dir);
        snprintf(cmd, sizeof cmd,
                 "command -v openssl >/dev/null 2>&1 && mkdir -p %s && sh %s/tests/support/"
                 "tls_certs.sh %s",
                 s->certs, DRAY_SOURCE_DIR, s->certs);
        if (system(cmd) != 0) {
            fprintf(stderr, "# no test certificates (openssl?): skipped\n");
            return -1;
        }
    }
    s->mport = test_free_port();
    s->rport = test_free_port();
    s->mtls = tls ? test_free_port() : s->mport;
    s->rtls = tls ? test_free_port() : s->rport;
    for (int i = 0; i < 3; i++) {
        s->sport[i] = test_free_port();
        s->stls[i] = tls ? test_free_port() : s->sport[i];
    }
    s->mpid = start_redis(s, "master", s->mport, s->mtls, 0);
    s->rpid = start_redis(s, "replica", s->rport, s->rtls, s->mtls);
    for (int i = 0; i < 3; i++)
        s->spid[i] = start_one_sentinel(s, i);
    snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/mymaster",
             tls ? "rediss-sentinel" : "redis-sentinel", s->stls[0], s->stls[1], s->stls[2]);
    /* Sentinels find each other through the master's hello channel (~2 s). */
    s->ready = test_wait_until(converged, s, 30);
    if (!s->ready) {
        fprintf(stderr, "# sentinel set-up did not converge (logs in %s)\n", s->dir);
        return -1;
    }
    return 0;
}

void
test_sentinel_reap(pid_t *p)
{
    if (*p > 0) {
        kill(*p, SIGKILL);
        waitpid(*p, NULL, 0);
        *p = 0;
    }
}

void
test_sentinel_stop(test_sentinel *s)
{
    for (int i = 0; i < 3; i++)
        test_sentinel_reap(&s->spid[i]);
    test_sentinel_reap(&s->rpid);
    test_sentinel_reap(&s->mpid);
    if (s->ready && s->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", s->dir);
    }
    s->ready = 0;
}

int
test_sentinel_replica_in_sync(void *arg)
{
    const test_sentinel *s = arg;
    redisReply *r = test_sentinel_at(s->mport, "INFO replication");
    int ok = 0;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *mo = strstr(r->str, "master_repl_offset:");
        const char *so = strstr(r->str, ",offset=");
        ok = mo && so && atoll(mo + 19) == atoll(so + 8);
    }
    if (r)
        freeReplyObject(r);
    return ok;
}

int
test_sentinel_switched(void *arg)
{
    const test_sentinel *s = arg;
    for (int i = 0; i < 3; i++) {
        redisReply *r = test_sentinel_at(s->sport[i], "SENTINEL get-master-addr-by-name mymaster");
        int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 atoi(r->element[1]->str) == s->rtls;
        if (r)
            freeReplyObject(r);
        if (!ok)
            return 0;
    }
    return 1;
}

int
test_sentinel_failover(const test_sentinel *s)
{
    redisReply *r = test_sentinel_at(s->sport[0], "SENTINEL FAILOVER mymaster");
    int ok = r && r->type != REDIS_REPLY_ERROR;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}
