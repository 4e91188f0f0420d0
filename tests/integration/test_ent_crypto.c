/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Encrypted arguments of dray Enterprise with a real redis-server and
 * worker processes (ent_worker): the handler sees the plaintext secret
 * bag; Redis never holds it (queue, retry, schedule and dead entries are
 * sealed, and an uncompressed RDB dump of the whole dataset does not
 * contain it); retries, deferrals and re-pushes never encrypt twice; key
 * rotation (old versions decrypt, new pushes use the active one); a
 * tampered, relabelled or undecryptable bag sends the job to the dead set
 * with the reason.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "dray/dray.h"
#include "ent_support.h"
#include "module_internal.h"

#define PLAIN "4111-SECRET-PLAINTEXT-1111"
#define SECRET "{\"card\":\"" PLAIN "\",\"cvv\":\"987\"}"
#define K1 "1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
#define K2 "2 q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n"

static char dir[256], keyfile[320], keys_setting[400];
static dray_server *host;
static dray_client *cli;

static void
write_keys(const char *text)
{
    FILE *f = fopen(keyfile, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(keyfile, 0600);
}

static void
load_here(const char *extra_setting)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = ent_srv.url;
    o.log_level = DRAY_LOG_ERROR;
    char err[512];
    assert_int_equal(dray_server_new(&o, &host, err, sizeof err), 0);
    assert_int_equal(dray_server_set_config(host, "enterprise.encrypt_keys", keyfile), 0);
    assert_int_equal(dray_server_set_config(host, "enterprise.encrypt", "Secret"), 0);
    if (extra_setting) {
        const char *eq = strchr(extra_setting, '=');
        char k[128];
        snprintf(k, sizeof k, "%.*s", (int)(eq - extra_setting), extra_setting);
        assert_int_equal(dray_server_set_config(host, k, eq + 1), 0);
    }
    if (dray_server_load_module(host, ENT_MODULE, err, sizeof err))
        fail_msg("load: %s", err);
    assert_int_equal(dray_client_new(&o, &cli, err, sizeof err), 0);
}

static void
unload_here(void)
{
    dray_client_free(cli);
    dray_server_free(host);
    cli = NULL;
    host = NULL;
    dray__modules_reset();
}

static void
push(const char *klass, const char *mode, const char *extra, int retry)
{
    json_t *a = json_pack("[s, o]", mode, json_loads(SECRET, 0, NULL));
    json_t *x = extra ? json_loads(extra, 0, NULL) : NULL;
    dray_push_opts po = {.extra = x, .retry = retry};
    if (dray_client_push(cli, klass, a, &po, NULL))
        fail_msg("push: %s", dray_client_errstr(cli));
    json_decref(a);
    json_decref(x);
}

/* No key or value anywhere in Redis holds the plaintext (live entries). */
static void
assert_sealed_everywhere(void)
{
    static const char *const where[] = {"LRANGE queue:default 0 -1", "ZRANGE retry 0 -1",
                                        "ZRANGE schedule 0 -1", "ZRANGE dead 0 -1"};
    for (size_t w = 0; w < sizeof where / sizeof *where; w++) {
        redisReply *r = test_redis_cmd(ent_rc, where[w]);
        for (size_t i = 0; i < r->elements; i++) {
            if (strstr(r->element[i]->str, PLAIN))
                fail_msg("%s holds the plaintext: %s", where[w], r->element[i]->str);
            if (strstr(r->element[i]->str, "\"Secret\""))
                assert_non_null(strstr(r->element[i]->str, "$dray-enc1$"));
        }
        freeReplyObject(r);
    }
}

/* An uncompressed RDB dump of everything does not contain the plaintext. */
static void
assert_dump_clean(void)
{
    freeReplyObject(test_redis_cmd(ent_rc, "CONFIG SET rdbcompression no"));
    freeReplyObject(test_redis_cmd(ent_rc, "SAVE"));
    char path[400];
    snprintf(path, sizeof path, "%s/dump.rdb", ent_srv.dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[8 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n > 0 && n < sizeof buf);
    assert_null(memmem(buf, n, PLAIN, strlen(PLAIN)));
    assert_null(memmem(buf, n, "\"cvv\"", 5));
    /* and the dump does hold our jobs: the check is not vacuous */
    assert_non_null(memmem(buf, n, "$dray-enc1$", 11));
    printf("RDB dump: %zu bytes, no plaintext of the secret bag\n", n);
}

static char *
first(const char *cmd)
{
    redisReply *r = test_redis_cmd(ent_rc, cmd);
    char *s = r->elements ? strdup(r->element[0]->str) : NULL;
    freeReplyObject(r);
    return s;
}

static int
setup(void **state)
{
    setenv("ENT_SECRET", SECRET, 1);
    snprintf(dir, sizeof dir, "/tmp/dray-ent-crypto-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(keyfile, sizeof keyfile, "%s/enterprise.keys", dir);
    snprintf(keys_setting, sizeof keys_setting, "enterprise.encrypt_keys=%s", keyfile);
    return ent_setup(state);
}

static int
teardown(void **state)
{
    unlink(keyfile);
    rmdir(dir);
    return ent_teardown(state);
}

static int
each_setup(void **state)
{
    ent_flush(state);
    write_keys(K1 K2);
    return 0;
}

static int
each_teardown(void **state)
{
    (void)state;
    if (host)
        unload_here();
    return 0;
}

/* MONITOR on its own connection, from before the worker starts until the
 * test sends "ECHO monitor-stop": did any command carry the plaintext? */
typedef struct monitor {
    redisContext *c;
    int saw_plain;
    char first[400];
} monitor;

static void *
monitor_main(void *arg)
{
    monitor *m = arg;
    redisReply *r;
    while (redisGetReply(m->c, (void **)&r) == REDIS_OK && r) {
        int stop = r->type == REDIS_REPLY_STATUS && strstr(r->str, "monitor-stop");
        if (r->type == REDIS_REPLY_STATUS && strstr(r->str, PLAIN) && !m->saw_plain++)
            snprintf(m->first, sizeof m->first, "%s", r->str);
        freeReplyObject(r);
        if (stop)
            break;
    }
    return NULL;
}

/* A handler's error text that echoes its arguments: the retry and dead
 * entries hold it sealed, and the plaintext args never reach Redis, not
 * even for the one round trip before a re-seal. */
static void
test_errors_sealed(void **state)
{
    (void)state;
    load_here(NULL);
    push("Secret", "fail-echo", NULL, 0);
    push("Secret", "fail-echo", NULL, DRAY_RETRY_ZERO);
    monitor m = {.c = test_redis_connect(&ent_srv)};
    assert_non_null(m.c);
    redisReply *ok = redisCommand(m.c, "MONITOR");
    assert_non_null(ok);
    freeReplyObject(ok);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, monitor_main, &m), 0);
    const char *settings[] = {keys_setting, NULL};
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 1, settings), 0);
    ent_wait_for("ZCARD retry", 1, 30);
    ent_wait_for("ZCARD dead", 1, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    freeReplyObject(test_redis_cmd(ent_rc, "ECHO monitor-stop"));
    pthread_join(th, NULL);
    redisFree(m.c);
    assert_sealed_everywhere();
    char *r = first("ZRANGE retry 0 0");
    assert_non_null(
        strstr(r, "\"error_message\":\"[encrypted job: error message sealed] $dray-enc1$"));
    free(r);
    r = first("ZRANGE dead 0 0");
    assert_non_null(strstr(r, "[encrypted job: error message sealed] $dray-enc1$"));
    free(r);
    if (m.saw_plain)
        fail_msg("%d Redis commands carried the plaintext, the first: %s", m.saw_plain, m.first);
}

#define BIG "123456789012345678901234567890"

/* An integer beyond 64 bits in the args (one plain, one inside the secret
 * bag), pushed from this process and run by a worker process: the handler
 * sees both as that integer (the bag was sealed with the digits, not this
 * process's marker), and the failed run's retry entry is re-sealed (the
 * bigint does not make the re-seal fail and leave the plaintext). */
static void
test_bigint_sealed(void **state)
{
    (void)state;
    load_here(NULL);
    const char *payload = "{\"class\":\"Secret\",\"args\":[\"fail-once\"," BIG ",{\"card\":\"" PLAIN
                          "\",\"n\":" BIG "}]}";
    dray_job *parsed;
    char err[256];
    if (dray_job_parse(payload, strlen(payload), 0, &parsed, err, sizeof err))
        fail_msg("parse: %s", err);
    assert_string_equal(dray_json_bigint(json_array_get(dray_job_args(parsed), 1)), BIG);
    if (dray_client_push(cli, "Secret", dray_job_args(parsed), NULL, NULL))
        fail_msg("push: %s", dray_client_errstr(cli));
    dray_job_free(parsed);
    assert_sealed_everywhere();
    const char *settings[] = {keys_setting, NULL};
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 1, settings), 0);
    ent_wait_for("ZCARD retry", 1, 30);
    assert_sealed_everywhere(); /* the failure's retry entry */
    char *r = first("ZRANGE retry 0 0");
    assert_non_null(strstr(r, "[\"fail-once\"," BIG ",\"$dray-enc1$2$"));
    freeReplyObject(test_redis_cmd(ent_rc, "ZADD retry XX 0 %s", r));
    free(r);
    ent_wait_for("LLEN ent:test:big", 2, 30);
    ent_wait_for("LLEN ent:test:ran", 2, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    redisReply *all = test_redis_cmd(ent_rc, "LRANGE ent:test:big 0 -1");
    for (size_t i = 0; i < all->elements; i++)
        assert_string_equal(all->element[i]->str, BIG "|" BIG);
    freeReplyObject(all);
    assert_sealed_everywhere();
}

static void
test_never_plaintext(void **state)
{
    (void)state;
    load_here(NULL);
    /* class setting, and "encrypt": true on a push of another class */
    push("Secret", "ok", NULL, 0);
    push("Record", "ok", "{\"encrypt\": true}", 0);
    char *job = first("LRANGE queue:default 0 -1");
    assert_null(strstr(job, PLAIN));
    assert_non_null(strstr(job, "\"encrypt\":true"));
    assert_non_null(strstr(job, "[\"ok\",\"$dray-enc1$2$")); /* the last argument only; key v2 */
    free(job);
    push("Secret", "fail-once", NULL, 0);
    push("Secret", "defer-once", NULL, 0);
    push("Secret", "fail", NULL, DRAY_RETRY_ZERO);
    assert_sealed_everywhere();
    const char *settings[] = {keys_setting, NULL};
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 2, settings), 0);
    /* ok, fail-once (1st), defer-once (1st), fail; then defer-once again */
    ent_wait_for("LLEN ent:test:secret", 5, 30);
    ent_wait_for("ZCARD retry", 1, 30);
    ent_wait_for("ZCARD dead", 1, 30);
    assert_sealed_everywhere();
    /* the retry runs (now, rather than in 15 s), decrypting the same bag */
    char *r = first("ZRANGE retry 0 0");
    assert_non_null(strstr(r, "\"retry_count\":0"));
    assert_non_null(strstr(r, "$dray-enc1$2$"));
    freeReplyObject(test_redis_cmd(ent_rc, "ZADD retry XX 0 %s", r));
    free(r);
    ent_wait_for("LLEN ent:test:secret", 6, 30);
    ent_wait_for("LLEN ent:test:ran", 7, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    redisReply *all = test_redis_cmd(ent_rc, "LRANGE ent:test:secret 0 -1");
    for (size_t i = 0; i < all->elements; i++)
        assert_string_equal(all->element[i]->str, "ok"); /* never double-encrypted */
    freeReplyObject(all);
    assert_sealed_everywhere();
    assert_dump_clean();
}

static void
test_rotation(void **state)
{
    (void)state;
    write_keys(K1);
    load_here(NULL);
    push("Secret", "ok", NULL, 0);
    unload_here();
    write_keys(K1 K2);
    load_here(NULL);
    push("Secret", "ok", NULL, 0); /* new pushes use the highest version */
    unload_here();
    load_here("enterprise.encrypt_active=1");
    push("Secret", "ok", NULL, 0);                                       /* unless told otherwise */
    redisReply *q = test_redis_cmd(ent_rc, "LRANGE queue:default 0 -1"); /* newest first */
    assert_int_equal(q->elements, 3);
    assert_non_null(strstr(q->element[0]->str, "$dray-enc1$1$"));
    assert_non_null(strstr(q->element[1]->str, "$dray-enc1$2$"));
    assert_non_null(strstr(q->element[2]->str, "$dray-enc1$1$"));
    freeReplyObject(q);
    /* a worker with both keys opens both versions */
    const char *settings[] = {keys_setting, NULL};
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 2, settings), 0);
    ent_wait_for("LLEN ent:test:ran", 3, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    assert_int_equal(ent_rint(ent_rc, "LLEN ent:test:secret"), 3);
    assert_int_equal(ent_rint(ent_rc, "ZCARD dead"), 0);
    /* v1 retired: a job still sealed with it goes to the dead set, saying why */
    push("Secret", "ok", NULL, 0);
    write_keys(K2);
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 2, settings), 0);
    ent_wait_for("ZCARD dead", 1, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    char *d = first("ZRANGE dead 0 0");
    assert_non_null(strstr(d, "sealed with key version 1, which is not in the key file"));
    assert_non_null(strstr(d, "$dray-enc1$1$")); /* still sealed in the dead set */
    free(d);
}

/* Replace the first occurrence of `from` in the queued job with `to`. */
static void
edit_queued(const char *from, const char *to)
{
    char *job = first("LRANGE queue:default 0 0");
    char *at = strstr(job, from);
    assert_non_null(at);
    size_t fl = strlen(from), tl = strlen(to), jl = strlen(job);
    char *out = malloc(jl - fl + tl + 1);
    memcpy(out, job, (size_t)(at - job));
    memcpy(out + (at - job), to, tl);
    strcpy(out + (at - job) + tl, at + fl);
    freeReplyObject(test_redis_cmd(ent_rc, "LSET queue:default 0 %s", out));
    free(out);
    free(job);
}

static void
test_tamper(void **state)
{
    (void)state;
    load_here(NULL);
    const char *settings[] = {keys_setting, NULL};
    struct {
        const char *what, *want;
    } cases[] = {
        {"flip", "cannot decrypt the secret bag with key version 2: it was tampered with"},
        {"class", "cannot decrypt the secret bag with key version 2"},
        {"version", "cannot decrypt the secret bag with key version 1"},
        {"alphabet", "malformed sealed argument (not base64url)"},
        {"plain", "its last argument is not sealed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        freeReplyObject(test_redis_cmd(ent_rc, "DEL queue:default dead ent:test:secret"));
        push("Secret", "ok", NULL, 0);
        char *job = first("LRANGE queue:default 0 0");
        char *b = strstr(job, "$dray-enc1$2$") + strlen("$dray-enc1$2$");
        char orig[16], repl[16];
        snprintf(orig, sizeof orig, "%.12s", b + 10);
        snprintf(repl, sizeof repl, "%.12s", b + 10);
        repl[2] = repl[2] == 'A' ? 'B' : 'A';
        free(job);
        if (!strcmp(cases[i].what, "flip"))
            edit_queued(orig, repl);
        else if (!strcmp(cases[i].what, "class"))
            edit_queued("\"class\":\"Secret\"", "\"class\":\"Conc\"");
        else if (!strcmp(cases[i].what, "version"))
            edit_queued("$dray-enc1$2$", "$dray-enc1$1$");
        else if (!strcmp(cases[i].what, "alphabet"))
            edit_queued(orig, "\xc3\xa9\xc3\xa9_");
        else
            edit_queued("\"encrypt\":true", "\"encrypt\":true,\"x\":1");
        if (!strcmp(cases[i].what, "plain")) {
            /* "encrypt": true but a plain last argument */
            freeReplyObject(test_redis_cmd(ent_rc, "DEL queue:default"));
            freeReplyObject(
                test_redis_cmd(ent_rc, "LPUSH queue:default %s",
                               "{\"class\":\"Secret\",\"args\":[\"ok\",{\"card\":\"x\"}],\"jid\":"
                               "\"0123456789abcdef01234567\",\"queue\":\"default\",\"retry\":true,"
                               "\"encrypt\":true,"
                               "\"created_at\":1700000000.0,\"enqueued_at\":1700000000.0}"));
        }
        ent_proc w;
        assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 1, settings), 0);
        ent_wait_for("ZCARD dead", 1, 30);
        assert_int_equal(ent_proc_stop(&w), 0);
        char *d = first("ZRANGE dead 0 0");
        if (!strstr(d, cases[i].want))
            fail_msg("%s: want \"%s\" in the dead job: %s", cases[i].what, cases[i].want, d);
        assert_non_null(strstr(d, "\"error_class\":\"DrayHookError\""));
        free(d);
        assert_int_equal(ent_rint(ent_rc, "ZCARD retry"), 0);          /* straight to dead */
        assert_int_equal(ent_rint(ent_rc, "LLEN ent:test:secret"), 0); /* the handler never ran */
    }
}

/* Re-pushing a sealed job (from the dead set, "retry now") keeps its seal. */
static void
test_repush_sealed(void **state)
{
    (void)state;
    load_here(NULL);
    push("Secret", "ok", NULL, 0);
    char *sealed = first("LRANGE queue:default 0 0");
    freeReplyObject(test_redis_cmd(ent_rc, "DEL queue:default"));
    dray_job *job;
    assert_int_equal(dray_job_parse(sealed, strlen(sealed), 0, &job, NULL, 0), 0);
    assert_int_equal(dray_client_push_job(cli, job, NULL), 0);
    dray_job_free(job);
    char *again = first("LRANGE queue:default 0 0");
    /* the same sealed bag, not a seal of the seal */
    const char *a = strstr(sealed, "$dray-enc1$"), *b = strstr(again, "$dray-enc1$");
    assert_int_equal(strcspn(a, "\""), strcspn(b, "\""));
    assert_memory_equal(a, b, strcspn(a, "\""));
    free(sealed);
    free(again);
    const char *settings[] = {keys_setting, NULL};
    ent_proc w;
    assert_int_equal(ent_proc_start(&w, ent_srv.url, "default", 1, settings), 0);
    ent_wait_for("LLEN ent:test:secret", 1, 30);
    assert_int_equal(ent_proc_stop(&w), 0);
    char *v = first("LRANGE ent:test:secret 0 0");
    assert_string_equal(v, "ok");
    free(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_never_plaintext, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_errors_sealed, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_rotation, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_tamper, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_repush_sealed, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_bigint_sealed, each_setup, each_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
