/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Pushes that no module hook needs stay on the core's path (module ABI 1.2,
 * dray_hook.push_wants), with Pro and Enterprise both loaded into this
 * process: a bulk push of a plain class writes payloads of exactly the
 * shape the core alone writes (the core's bulk fast path), while the hooks
 * still run for every push that needs them (a unique class, an encrypted
 * class, "encrypt" or a batch id given per push, a bad unique field), in
 * one queue whose order is the order of the pushes. Redis killed under a
 * plain bulk loses nothing: what the call says it wrote is in the queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "dray/pro_batch.h"
#include "ent_support.h"
#include "harness.h"
#include "module_internal.h"

#define SEAL_PREFIX "$dray-enc1$" /* enterprise/src/ent.h: a sealed secret bag */

static char lic_key[ENT_KEYBUF];
static char keyfile[300];

/* Load Pro, then Enterprise, into this process (hooks are process-wide):
 * unique class Unique, encrypted class Secret; Plain has no feature. */
static void
load_modules(void)
{
    dray__modules_reset(); /* a failed test left its modules */
    dray_options o;
    test_options(&o, "mix", 1);
    dray_server *s;
    char err[1024] = "";
    assert_int_equal(dray_server_new(&o, &s, err, sizeof err), 0);
    const char *sets[][2] = {
        {"license", lic_key},
        {"enterprise.unique", "Unique for=600"},
        {"enterprise.encrypt_keys", keyfile},
        {"enterprise.encrypt", "Secret"},
        {"enterprise.leader", "no"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        assert_int_equal(dray_server_set_config(s, sets[i][0], sets[i][1]), 0);
    if (dray_server_load_module(s, PRO_MODULE, err, sizeof err))
        fail_msg("pro refused: %s", err);
    if (dray_server_load_module(s, ENT_MODULE, err, sizeof err))
        fail_msg("enterprise refused: %s", err);
    dray_server_free(s);
}

/* args lists [[first], [first+1], ...] of n jobs. New reference. */
static json_t *
arg_lists(int first, int n)
{
    json_t *l = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(l, json_pack("[i]", first + i));
    return l;
}

/* Bulk push n jobs of klass to queue "mix" with extra (borrowed, may be
 * NULL); dray_client_push_bulk's code, *pushed the jobs it wrote. */
static int
bulk(dray_client *c, const char *klass, int first, int n, json_t *extra, size_t *pushed)
{
    json_t *l = arg_lists(first, n);
    dray_push_opts po = {.queue = "mix", .extra = extra};
    int rc = dray_client_push_bulk(c, klass, l, &po, NULL, pushed);
    json_decref(l);
    return rc;
}

/* The shape of payload `i` from the tail of queue:mix (0: the oldest): its
 * keys in text order, with the values of all but jid and the timestamps.
 * Caller frees. */
static char *
shape(long i)
{
    char *p = test_str("LINDEX queue:mix %ld", -1 - i);
    assert_non_null(p);
    json_t *o = json_loads(p, 0, NULL);
    assert_non_null(o);
    char out[1024] = "";
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        size_t at = strlen(out);
        if (!strcmp(k, "jid") || !strcmp(k, "created_at") || !strcmp(k, "enqueued_at")) {
            snprintf(out + at, sizeof out - at, "%s;", k);
        } else {
            char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            snprintf(out + at, sizeof out - at, "%s=%s;", k, d);
            free(d);
        }
    }
    json_decref(o);
    free(p);
    return strdup(out);
}

/* A bulk push of a plain class, Pro and Enterprise loaded, writes payloads
 * of the shape the core alone writes: same fields, same order, same
 * values (jid and times aside). Before push_wants the modules' hooks sent
 * every job through the slow path, whose payloads order their fields
 * differently. */
static void
test_plain_bulk_shape_as_core(void **state)
{
    (void)state;
    dray_client *c = test_client(NULL);
    size_t pushed = 0;
    assert_int_equal(bulk(c, "Plain", 0, 3, NULL, &pushed), 0);
    assert_int_equal(pushed, 3);
    char *core[3];
    for (long i = 0; i < 3; i++)
        core[i] = shape(i);
    test_run("DEL queue:mix");

    load_modules();
    assert_int_equal(bulk(c, "Plain", 0, 3, NULL, &pushed), 0);
    assert_int_equal(pushed, 3);
    for (long i = 0; i < 3; i++) {
        char *mod = shape(i);
        assert_string_equal(mod, core[i]);
        free(mod);
        free(core[i]);
    }
    /* and the same for one push */
    assert_int_equal(test_push_arg(c, "Plain", 7), 0);
    assert_int_equal(test_int("LLEN queue:default"), 1);
    dray_client_free(c);
    dray__modules_reset();
}

/* Scheduled plain bulk: still the fast path's ZADD, at the asked time. */
static void
test_plain_bulk_scheduled(void **state)
{
    (void)state;
    load_modules();
    dray_client *c = test_client(NULL);
    json_t *l = arg_lists(0, 4);
    double at = dray_now() + 3600;
    dray_push_opts po = {.queue = "mix", .at = at};
    size_t pushed = 0;
    assert_int_equal(dray_client_push_bulk(c, "Plain", l, &po, NULL, &pushed), 0);
    json_decref(l);
    assert_int_equal(pushed, 4);
    assert_int_equal(test_int("ZCOUNT schedule %.0f %.0f", at - 1, at + 1), 4);
    assert_int_equal(test_int("LLEN queue:mix"), 0);
    dray_client_free(c);
    dray__modules_reset();
}

/* Plain and featured pushes interleaved into one queue: every push lands
 * in order, and each featured push went through its hook. */
static void
test_mixed_pushes_hooks_fire_in_order(void **state)
{
    (void)state;
    load_modules();
    dray_client *c = test_client(NULL);
    dray_pro *p;
    assert_int_equal(dray_pro_new(test_rc, NULL, &p), 0);
    char bid[DRAY_PRO_BID_BYTES];
    assert_int_equal(dray_pro_batch_new(p, NULL, bid), 0);
    json_t *enc = json_pack("{s:b}", "encrypt", 1);
    json_t *inbatch = json_pack("{s:s}", "bid", bid);
    size_t pushed = 0;
    /* class, first arg, count */
    assert_int_equal(bulk(c, "Plain", 0, 3, NULL, &pushed), 0);     /* 0..2   plain */
    assert_int_equal(bulk(c, "Unique", 10, 3, NULL, &pushed), 0);   /* 10..12 unique lock */
    assert_int_equal(bulk(c, "Plain", 20, 2, NULL, &pushed), 0);    /* 20..21 plain */
    assert_int_equal(bulk(c, "Secret", 30, 2, NULL, &pushed), 0);   /* 30..31 sealed */
    assert_int_equal(bulk(c, "Plain", 40, 2, enc, &pushed), 0);     /* 40..41 sealed per push */
    assert_int_equal(bulk(c, "Plain", 50, 2, inbatch, &pushed), 0); /* 50..51 batch members */
    assert_int_equal(bulk(c, "Plain", 60, 2, NULL, &pushed), 0);    /* 60..61 plain */
    assert_int_equal(bulk(c, "Unique", 10, 1, NULL, &pushed), 0);   /* a duplicate: dropped */
    assert_int_equal(pushed, 0);
    json_decref(enc);
    json_decref(inbatch);

    static const struct {
        const char *klass;
        int arg;
        int sealed, unique, batch;
    } want[] = {
        {"Plain", 0, 0, 0, 0},   {"Plain", 1, 0, 0, 0},   {"Plain", 2, 0, 0, 0},
        {"Unique", 10, 0, 1, 0}, {"Unique", 11, 0, 1, 0}, {"Unique", 12, 0, 1, 0},
        {"Plain", 20, 0, 0, 0},  {"Plain", 21, 0, 0, 0},  {"Secret", 30, 1, 0, 0},
        {"Secret", 31, 1, 0, 0}, {"Plain", 40, 1, 0, 0},  {"Plain", 41, 1, 0, 0},
        {"Plain", 50, 0, 0, 1},  {"Plain", 51, 0, 0, 1},  {"Plain", 60, 0, 0, 0},
        {"Plain", 61, 0, 0, 0},
    };
    long n = (long)(sizeof want / sizeof *want);
    assert_int_equal(test_int("LLEN queue:mix"), n);
    for (long i = 0; i < n; i++) {
        char *s = test_str("LINDEX queue:mix %ld", -1 - i);
        json_t *o = json_loads(s, 0, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "class")), want[i].klass);
        json_t *a0 = json_array_get(json_object_get(o, "args"), 0);
        if (want[i].sealed) {
            assert_true(json_is_string(a0));
            assert_memory_equal(json_string_value(a0), SEAL_PREFIX, strlen(SEAL_PREFIX));
            assert_true(json_is_true(json_object_get(o, "encrypt")));
        } else {
            assert_int_equal(json_integer_value(a0), want[i].arg);
            assert_null(json_object_get(o, "encrypt"));
        }
        const char *uk = json_string_value(json_object_get(o, "unique_key"));
        assert_int_equal(uk != NULL, want[i].unique);
        if (uk)
            assert_int_equal(test_int("EXISTS ent:unique:%s", uk), 1);
        const char *jb = json_string_value(json_object_get(o, "bid"));
        assert_int_equal(jb != NULL, want[i].batch);
        if (want[i].batch)
            assert_string_equal(jb, bid);
        json_decref(o);
        free(s);
    }
    dray_pro_batch_status *st = NULL;
    assert_int_equal(dray_pro_batch_status_get(p, bid, &st), 0);
    assert_int_equal(st->total, 2); /* exactly the two members, not the plain jobs */
    dray_pro_batch_status_free(st);
    dray_pro_free(p);
    dray_client_free(c);
    dray__modules_reset();
}

/* Bad bytes in a plain-class bulk's options still meet the hooks that
 * check them: refused with the module's message, nothing written. */
static void
test_plain_bulk_bad_fields_refused(void **state)
{
    (void)state;
    load_modules();
    dray_client *c = test_client(NULL);
    size_t pushed = 9;
    json_t *bad = json_pack("{s:s}", "unique_until", "start");
    assert_int_equal(bulk(c, "Plain", 0, 3, bad, &pushed), DRAY_EFIELD);
    assert_non_null(strstr(dray_client_errstr(c), "unique_for"));
    assert_int_equal(pushed, 0);
    json_decref(bad);
    bad = json_pack("{s:s}", "bid", "no-such-batch");
    assert_int_equal(bulk(c, "Plain", 0, 3, bad, &pushed), DRAY_ENOTFOUND);
    assert_int_equal(pushed, 0);
    json_decref(bad);
    bad = json_pack("{s:s}", "expires_in", "soon");
    assert_int_equal(bulk(c, "Plain", 0, 3, bad, &pushed), DRAY_EFIELD);
    assert_non_null(strstr(dray_client_errstr(c), "expires_in"));
    json_decref(bad);
    assert_int_equal(test_int("LLEN queue:mix"), 0);
    assert_int_equal(bulk(c, "Plain", 0, 3, NULL, &pushed), 0);
    assert_int_equal(test_int("LLEN queue:mix"), 3);
    dray_client_free(c);
    dray__modules_reset();
}

/* Redis killed: a plain bulk on the fast path (pipelined, modules loaded)
 * fails with the link's error and counts only what Redis took; after the
 * restart the next bulk is written whole and nothing counted is missing. */
static void
test_plain_bulk_redis_killed(void **state)
{
    load_modules();
    dray_client *c = test_client(NULL);
    size_t pushed = 0;
    assert_int_equal(bulk(c, "Plain", 0, 2500, NULL, &pushed), 0);
    assert_int_equal(pushed, 2500);
    test_redis_kill(&test_srv);
    int rc = bulk(c, "Plain", 2500, 2500, NULL, &pushed);
    assert_true(rc == DRAY_ECONN || rc == DRAY_EUNSURE);
    assert_int_equal(pushed, 0);
    assert_null(redisCommand(test_rc, "PING")); /* test_rc sees the break */
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    assert_int_equal(test_flush(state), 0); /* reconnects; the restart kept nothing */
    assert_int_equal(bulk(c, "Plain", 5000, 2500, NULL, &pushed), 0);
    assert_int_equal(pushed, 2500);
    assert_int_equal(test_int("LLEN queue:mix"), 2500);
    char *s = test_str("LINDEX queue:mix -1");
    assert_non_null(strstr(s, "\"args\":[5000]"));
    free(s);
    dray_client_free(c);
    dray__modules_reset();
}

static int
group_setup(void **state)
{
    if (ent_inproc_setup(state, lic_key, keyfile, sizeof keyfile))
        return -1;
    dray_log_set_level(DRAY_LOG_ERROR);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_plain_bulk_shape_as_core, test_flush),
        cmocka_unit_test_setup(test_plain_bulk_scheduled, test_flush),
        cmocka_unit_test_setup(test_mixed_pushes_hooks_fire_in_order, test_flush),
        cmocka_unit_test_setup(test_plain_bulk_bad_fields_refused, test_flush),
        cmocka_unit_test_setup(test_plain_bulk_redis_killed, test_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, test_teardown);
}
