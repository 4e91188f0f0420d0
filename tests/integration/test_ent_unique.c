/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Unique jobs of dray Enterprise against a real redis-server and real
 * worker processes (ent_worker): 8 concurrent pushers of one job enqueue
 * exactly one; unique_until success vs start; a lock whose owner is no
 * longer queued, scheduled, retrying or running does not block, while one
 * whose owner is does; death releases the lock; a scheduled unique job
 * holds its lock for unique_for plus the delay; a duplicate push returns
 * DRAY_EDROPPED and writes nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "dray/dray.h"
#include "ent_support.h"
#include "module_internal.h"

static dray_server *host; /* loads the module into this process for our own pushes */
static dray_client *cli;

static long long
count_locks(void)
{
    redisReply *r = test_redis_cmd(ent_rc, "KEYS ent:unique:*");
    long long n = (long long)r->elements;
    freeReplyObject(r);
    return n;
}

static int
no_locks(void *p)
{
    (void)p;
    return count_locks() == 0;
}

/* Set a field of every lock (age them: "t" "0"). */
static void
lock_set(const char *field, const char *value)
{
    redisReply *r = test_redis_cmd(ent_rc, "KEYS ent:unique:*");
    for (size_t i = 0; i < r->elements; i++)
        freeReplyObject(test_redis_cmd(ent_rc, "HSET %s %s %s", r->element[i]->str, field, value));
    freeReplyObject(r);
}

/* Make every lock old and unchecked: the next conflicting push looks for its owner. */
static void
age(void)
{
    lock_set("t", "0");
    lock_set("v", "0");
}

static int
blocked(void *p)
{
    char *info = NULL;
    redisReply *r = test_redis_cmd(ent_rc, "INFO clients");
    info = strstr(r->str, "blocked_clients:");
    int n = info ? atoi(info + strlen("blocked_clients:")) : 0;
    freeReplyObject(r);
    return n >= *(int *)p;
}

/* Load the module here with these settings (NULL-ended), for pushes. */
static void
load_here(const char *first, ...)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = ent_srv.url;
    o.log_level = DRAY_LOG_ERROR;
    char err[512];
    assert_int_equal(dray_server_new(&o, &host, err, sizeof err), 0);
    va_list ap;
    va_start(ap, first);
    for (const char *kv = first; kv; kv = va_arg(ap, const char *)) {
        char k[128];
        const char *eq = strchr(kv, '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - kv), kv);
        assert_int_equal(dray_server_set_config(host, k, eq + 1), 0);
    }
    va_end(ap);
    if (dray_server_load_module(host, ENT_MODULE, err, sizeof err))
        fail_msg("load: %s", err);
    assert_int_equal(dray_client_new(&o, &cli, err, sizeof err), 0);
}

/* Push class with args (JSON text) and extra fields (JSON or NULL). */
static int
push(const char *klass, const char *args, const char *extra, double in, int retry, char *jid)
{
    json_t *a = json_loads(args, 0, NULL), *x = extra ? json_loads(extra, 0, NULL) : NULL;
    dray_push_opts po = {.extra = x, .in = in, .retry = retry};
    int e = dray_client_push(cli, klass, a, &po, jid);
    json_decref(a);
    json_decref(x);
    return e;
}

static char *
lock_owner(void)
{
    redisReply *r = test_redis_cmd(ent_rc, "KEYS ent:unique:*");
    assert_int_equal(r->elements, 1);
    char *owner = ent_rstr(ent_rc, "HGET %s jid", r->element[0]->str);
    freeReplyObject(r);
    return owner;
}

static int
each_teardown(void **state)
{
    (void)state;
    dray_client_free(cli);
    dray_server_free(host);
    cli = NULL;
    host = NULL;
    dray__modules_reset();
    return 0;
}

/* ---- tests ------------------------------------------------------------------------- */

static void
test_eight_pushers(void **state)
{
    (void)state;
    ent_proc p[8];
    const char *argv[] = {"push",
                          "--redis",
                          ent_srv.url,
                          "--gate",
                          "ent:test:go",
                          "--class",
                          "Record",
                          "--args",
                          "[\"same\", 42, {\"b\": 1, \"a\": 2}]",
                          "--set",
                          "enterprise.unique=Record for=60",
                          NULL};
    for (int i = 0; i < 8; i++)
        assert_int_equal(ent_proc_spawn(&p[i], argv), 0);
    /* every pusher has loaded the module and waits at the gate */
    int eight = 8;
    if (!test_wait_until(blocked, &eight, 30))
        fail_msg("the pushers did not reach the gate");
    for (int i = 0; i < 8; i++)
        freeReplyObject(test_redis_cmd(ent_rc, "RPUSH ent:test:go 1"));
    for (int i = 0; i < 8; i++)
        assert_int_equal(ent_proc_wait(&p[i], 30), 0);
    redisReply *r = test_redis_cmd(ent_rc, "LRANGE ent:test:pushed 0 -1");
    assert_int_equal(r->elements, 8);
    int ok = 0, dropped = 0;
    for (size_t i = 0; i < r->elements; i++) {
        ok += !strcmp(r->element[i]->str, "0");
        dropped += atoi(r->element[i]->str) == DRAY_EDROPPED;
    }
    freeReplyObject(r);
    assert_int_equal(ok, 1);
    assert_int_equal(dropped, 7);
    assert_int_equal(ent_rint(ent_rc, "LLEN queue:default"), 1);
    /* the lock names the one job that was written */
    char *job = ent_rstr(ent_rc, "LINDEX queue:default 0");
    json_t *o = json_loads(job, 0, NULL);
    char *owner = lock_owner();
    assert_string_equal(owner, json_string_value(json_object_get(o, "jid")));
    assert_non_null(json_object_get(o, "unique_key"));
    assert_string_equal(json_string_value(json_object_get(o, "unique_until")), "success");
    json_decref(o);
    free(job);
    free(owner);
}

/* The same job with an integer beyond 64 bits in its args, pushed by two
 * processes one after the other: the second is a duplicate (the digest
 * hashes the digits, not the pushing process's random marker). */
static void
test_bigint_args(void **state)
{
    (void)state;
    const char *argv[] = {"push",
                          "--redis",
                          ent_srv.url,
                          "--class",
                          "Record",
                          "--args",
                          "[\"same\", 123456789012345678901234567890]",
                          "--set",
                          "enterprise.unique=Record for=60",
                          NULL};
    for (int i = 0; i < 2; i++) {
        ent_proc p;
        assert_int_equal(ent_proc_spawn(&p, argv), 0);
        assert_int_equal(ent_proc_wait(&p, 30), 0);
    }
    redisReply *r = test_redis_cmd(ent_rc, "LRANGE ent:test:pushed 0 -1");
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->str, "0");
    assert_int_equal(atoi(r->element[1]->str), DRAY_EDROPPED);
    freeReplyObject(r);
    assert_int_equal(ent_rint(ent_rc, "LLEN queue:default"), 1);
    char *job = ent_rstr(ent_rc, "LINDEX queue:default 0");
    assert_non_null(strstr(job, "[\"same\",123456789012345678901234567890]"));
    free(job);
}

static void
test_until_success(void **state)
{
    (void)state;
    const char *settings[] = {"enterprise.unique=Block for=60", NULL};
    load_here(settings[0], NULL);
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 2, settings), 0);
    char jid[DRAY_JID_BYTES];
    assert_int_equal(push("Block", "[1]", NULL, 0, 0, jid), 0);
    ent_wait_for("LLEN ent:test:started", 1, 30);
    /* running: the lock still blocks, and names its owner */
    assert_int_equal(push("Block", "[1]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    char *owner = lock_owner();
    assert_string_equal(owner, jid);
    free(owner);
    /* different args or another queue are different jobs */
    assert_int_equal(push("Block", "[2]", NULL, 0, 0, NULL), 0);
    ent_wait_for("LLEN ent:test:started", 2, 30);
    freeReplyObject(test_redis_cmd(ent_rc, "RPUSH ent:test:gate 1 1"));
    ent_wait_for("LLEN ent:test:ran", 2, 30);
    /* success released both locks */
    assert_true(test_wait_until(no_locks, NULL, 10));
    assert_int_equal(push("Block", "[1]", NULL, 0, 0, NULL), 0);
    ent_wait_for("LLEN ent:test:started", 3, 30);
    freeReplyObject(test_redis_cmd(ent_rc, "RPUSH ent:test:gate 1"));
    ent_wait_for("LLEN ent:test:ran", 3, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
}

static void
test_until_start(void **state)
{
    (void)state;
    const char *settings[] = {"enterprise.unique=Block for=60 until=start", NULL};
    load_here(settings[0], NULL);
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 1, settings), 0);
    assert_int_equal(push("Block", "[1]", NULL, 0, 0, NULL), 0);
    ent_wait_for("LLEN ent:test:started", 1, 30);
    /* released when it started: one more copy may wait in the queue... */
    assert_int_equal(push("Block", "[1]", NULL, 0, 0, NULL), 0);
    /* ...but only one */
    assert_int_equal(push("Block", "[1]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    assert_int_equal(ent_rint(ent_rc, "LLEN queue:default"), 1);
    freeReplyObject(test_redis_cmd(ent_rc, "RPUSH ent:test:gate 1 1"));
    ent_wait_for("LLEN ent:test:ran", 2, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    /* per-push options work the same way, without a setting */
    each_teardown(NULL);
    load_here("enterprise.limiter=x concurrent 1 class=Nothing", NULL);
    const char *x = "{\"unique_for\": 30, \"unique_until\": \"start\"}";
    assert_int_equal(push("Record", "[7]", x, 0, 0, NULL), 0);
    assert_int_equal(push("Record", "[7]", x, 0, 0, NULL), DRAY_EDROPPED);
    /* unique_until without unique_for is refused at push time */
    assert_int_equal(push("Record", "[7]", "{\"unique_until\": \"start\"}", 0, 0, NULL),
                     DRAY_EFIELD);
    assert_non_null(strstr(dray_client_errstr(cli), "unique_for (seconds) is required"));
}

static void
test_stale_owner(void **state)
{
    (void)state;
    load_here("enterprise.unique=Record for=600", "enterprise.unique=Fail for=600", NULL);
    char a[DRAY_JID_BYTES], b[DRAY_JID_BYTES];
    assert_int_equal(push("Record", "[1]", NULL, 0, 0, a), 0);
    /* young lock: blocks without looking (the owner's push may be in flight) */
    freeReplyObject(test_redis_cmd(ent_rc, "DEL queue:default"));
    assert_int_equal(push("Record", "[1]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    /* an old lock whose owner is gone (its job was deleted): taken over */
    age();
    assert_int_equal(push("Record", "[1]", NULL, 0, 0, b), 0);
    char *owner = lock_owner();
    assert_string_equal(owner, b);
    free(owner);
    /* an old lock whose owner is still queued: blocks */
    age();
    assert_int_equal(push("Record", "[1]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    assert_int_equal(ent_rint(ent_rc, "LLEN queue:default"), 1);
    freeReplyObject(test_redis_cmd(ent_rc, "FLUSHALL"));

    /* scheduled owner: blocks */
    assert_int_equal(push("Record", "[2]", NULL, 3600, 0, a), 0);
    age();
    assert_int_equal(push("Record", "[2]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    /* ... even without the score hint */
    redisReply *ks = test_redis_cmd(ent_rc, "KEYS ent:unique:*");
    freeReplyObject(test_redis_cmd(ent_rc, "HDEL %s at", ks->element[0]->str));
    freeReplyObject(ks);
    age();
    assert_int_equal(push("Record", "[2]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    assert_int_equal(ent_rint(ent_rc, "ZCARD schedule"), 1);
    freeReplyObject(test_redis_cmd(ent_rc, "FLUSHALL"));

    /* retrying owner: blocks (a real failure in a worker) */
    const char *settings[] = {"enterprise.unique=Fail for=600", NULL};
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 1, settings), 0);
    assert_int_equal(push("Fail", "[3]", NULL, 0, 0, a), 0);
    ent_wait_for("ZCARD retry", 1, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    age();
    assert_int_equal(push("Fail", "[3]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    /* its retry entry gone (deleted by hand): the lock no longer blocks
     * (once unique_grace has passed since the owner was last seen) */
    freeReplyObject(test_redis_cmd(ent_rc, "DEL retry"));
    assert_int_equal(push("Fail", "[3]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    age();
    assert_int_equal(push("Fail", "[3]", NULL, 0, 0, b), 0);
    freeReplyObject(test_redis_cmd(ent_rc, "FLUSHALL"));

    /* "running" on a process that is gone (no heartbeat hash): taken over */
    assert_int_equal(push("Record", "[4]", NULL, 0, 0, a), 0);
    freeReplyObject(test_redis_cmd(ent_rc, "DEL queue:default"));
    age();
    lock_set("run", "gone:1:abc");
    /* ...while a live one (its hash exists) keeps it */
    freeReplyObject(test_redis_cmd(ent_rc, "HSET gone:1:abc beat 1"));
    assert_int_equal(push("Record", "[4]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    freeReplyObject(test_redis_cmd(ent_rc, "DEL gone:1:abc"));
    age();
    assert_int_equal(push("Record", "[4]", NULL, 0, 0, b), 0);
}

static void
test_death_releases(void **state)
{
    (void)state;
    const char *settings[] = {"enterprise.unique=Fail for=600", NULL};
    load_here(settings[0], NULL);
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 1, settings), 0);
    assert_int_equal(push("Fail", "[1]", NULL, 0, DRAY_RETRY_ZERO, NULL), 0);
    ent_wait_for("ZCARD dead", 1, 30);
    assert_true(test_wait_until(no_locks, NULL, 10));
    assert_int_equal(push("Fail", "[1]", NULL, 0, DRAY_RETRY_ZERO, NULL), 0);
    ent_wait_for("ZCARD dead", 2, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
}

static void
test_scheduled_ttl(void **state)
{
    (void)state;
    load_here("enterprise.unique=Record for=10", NULL);
    assert_int_equal(push("Record", "[1]", NULL, 300, 0, NULL), 0);
    redisReply *r = test_redis_cmd(ent_rc, "KEYS ent:unique:*");
    assert_int_equal(r->elements, 1);
    long long pttl = ent_rint(ent_rc, "PTTL %s", r->element[0]->str);
    freeReplyObject(r);
    assert_true(pttl > 300 * 1000 && pttl <= 310 * 1000);
    /* a duplicate writes nothing anywhere */
    long long keys = ent_rint(ent_rc, "DBSIZE");
    assert_int_equal(push("Record", "[1]", NULL, 0, 0, NULL), DRAY_EDROPPED);
    assert_int_equal(push("Record", "[1]", NULL, 600, 0, NULL), DRAY_EDROPPED);
    assert_int_equal(ent_rint(ent_rc, "DBSIZE"), keys);
    assert_int_equal(ent_rint(ent_rc, "ZCARD schedule"), 1);
    assert_int_equal(ent_rint(ent_rc, "EXISTS queue:default"), 0);
}

/* With a namespace every key is prefixed, the lock included. */
static void
test_namespace(void **state)
{
    (void)state;
    load_here("enterprise.unique=Record for=60", NULL);
    dray_options o;
    dray_options_init(&o);
    o.redis_url = ent_srv.url;
    o.ns = "app";
    dray_client *nc;
    assert_int_equal(dray_client_new(&o, &nc, NULL, 0), 0);
    json_t *a = json_pack("[i]", 1);
    assert_int_equal(dray_client_push(nc, "Record", a, NULL, NULL), 0);
    assert_int_equal(dray_client_push(nc, "Record", a, NULL, NULL), DRAY_EDROPPED);
    /* another namespace is another world */
    assert_int_equal(dray_client_push(cli, "Record", a, NULL, NULL), 0);
    json_decref(a);
    dray_client_free(nc);
    redisReply *r = test_redis_cmd(ent_rc, "KEYS app:ent:unique:*");
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
    assert_int_equal(count_locks(), 1);
    assert_int_equal(ent_rint(ent_rc, "LLEN app:queue:default"), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eight_pushers, ent_flush, each_teardown),
        cmocka_unit_test_setup_teardown(test_bigint_args, ent_flush, each_teardown),
        cmocka_unit_test_setup_teardown(test_until_success, ent_flush, each_teardown),
        cmocka_unit_test_setup_teardown(test_until_start, ent_flush, each_teardown),
        cmocka_unit_test_setup_teardown(test_stale_owner, ent_flush, each_teardown),
        cmocka_unit_test_setup_teardown(test_death_releases, ent_flush, each_teardown),
        cmocka_unit_test_setup_teardown(test_scheduled_ttl, ent_flush, each_teardown),
        cmocka_unit_test_setup_teardown(test_namespace, ent_flush, each_teardown),
    };
    return cmocka_run_group_tests(tests, ent_setup, ent_teardown);
}
