/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Test fixture: a Redis master, its replica and three sentinels
 * (redis-server --sentinel) on 127.0.0.1, started and stopped by the test.
 * With tls set, every process also listens on a TLS port with certificates
 * made at test time (support/tls_certs.sh), replication and the sentinels'
 * links to Redis run over TLS, and url is rediss-sentinel:// to the
 * sentinels' TLS ports. The plain ports stay open for the test's own
 * helpers (plain hiredis); dray reaches everything through url. */
#ifndef DRAY_TEST_SENTINEL_FIXTURE_H
#define DRAY_TEST_SENTINEL_FIXTURE_H

#include <sys/types.h>
#include <hiredis/hiredis.h>

typedef struct test_sentinel {
    int tls;          /* set before start */
    char dir[256];    /* temporary directory: logs, configs, certificates */
    char certs[300];  /* dir/certs when tls */
    int mport, rport; /* plain ports of the first master and the replica */
    int mtls, rtls;   /* their TLS ports (tls), else equal to mport, rport */
    int sport[3];     /* sentinels' plain ports */
    int stls[3];      /* sentinels' TLS ports (tls), else sport */
    pid_t mpid, rpid; /* 0 when not running */
    pid_t spid[3];
    char url[320]; /* redis[s]-sentinel://.../mymaster */
    int ready;     /* 1 when start converged */
} test_sentinel;

/* Start everything and wait (bounded, 30 s) until the replica is in sync
 * and each sentinel knows the replica and the other two sentinels. 0 when
 * ready; -1 (with the reason on stderr) otherwise: skip the test then. */
int test_sentinel_start(test_sentinel *s);
/* SIGKILL every process still running; remove the directory when the
 * start had converged (kept for its logs otherwise). */
void test_sentinel_stop(test_sentinel *s);
/* SIGKILL one process (e.g. &s->mpid) and reap it; *pid becomes 0. */
void test_sentinel_reap(pid_t *pid);
/* A command on a fresh plain link to 127.0.0.1:port: the reply (free it)
 * or NULL. */
redisReply *test_sentinel_at(int port, const char *fmt, ...);
/* 1 when the replica's replication offset equals the master's. s is a
 * test_sentinel (void *: a condition for test_wait_until). */
int test_sentinel_replica_in_sync(void *s);
/* 1 when all three sentinels name the replica as the master (s as above). */
int test_sentinel_switched(void *s);
/* SENTINEL FAILOVER on the first sentinel: 0 when it was accepted. */
int test_sentinel_failover(const test_sentinel *s);

#endif
