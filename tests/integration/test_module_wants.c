/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * push_wants (module ABI 1.2) against a real redis-server, with the fixture
 * module tests/modules/wants.c: a push no predicate wants skips the hook
 * chain (single and bulk, immediate and scheduled), a push one wants runs
 * it, a per-push field reaches the hook (and its refusal), a hook without a
 * predicate still sees every push, and a predicate on another hook point is
 * refused at load with a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "module_internal.h"

/* Load wants.so with settings ("key", "value", ... NULL); 0 or the load's
 * code with its message in err. */
static int
load_wants(char *err, size_t errlen, ...)
{
    dray__modules_reset(); /* a failed test left its module */
    dray_options o;
    test_options(&o, "default", 1);
    dray_server *s;
    assert_int_equal(dray_server_new(&o, &s, err, errlen), 0);
    va_list ap;
    va_start(ap, errlen);
    for (const char *k; (k = va_arg(ap, const char *));)
        assert_int_equal(dray_server_set_config(s, k, va_arg(ap, const char *)), 0);
    va_end(ap);
    int rc = dray_server_load_module(s, MOD_WANTS, err, errlen);
    dray_server_free(s);
    return rc;
}

/* Bulk push n jobs of klass (args [first..]) with extra (borrowed, may be
 * NULL), at > 0: scheduled. dray_client_push_bulk's code. */
static int
bulk(dray_client *c, const char *klass, int first, int n, json_t *extra, double at)
{
    json_t *l = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(l, json_pack("[i]", first + i));
    dray_push_opts po = {.extra = extra, .at = at};
    size_t pushed = 0;
    int rc = dray_client_push_bulk(c, klass, l, &po, NULL, &pushed);
    json_decref(l);
    if (!rc)
        assert_int_equal(pushed, n);
    return rc;
}

/* The hook calls so far, "picky:Picky,always:Plain,..." (caller frees). */
static char *
calls(void)
{
    redisReply *r = redisCommand(test_rc, "LRANGE wants:calls 0 -1");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    char out[2048] = "";
    for (size_t i = 0; i < r->elements; i++) {
        size_t at = strlen(out);
        snprintf(out + at, sizeof out - at, "%s%s", i ? "," : "", r->element[i]->str);
    }
    freeReplyObject(r);
    return strdup(out);
}

/* Payloads of queue:default carrying "picked", of `n` in the queue. */
static long long
picked(long long n)
{
    assert_int_equal(test_int("LLEN queue:default"), n);
    long long k = 0;
    for (long long i = 0; i < n; i++) {
        char *s = test_str("LINDEX queue:default %lld", i);
        k += strstr(s, "\"picked\":true") != NULL;
        free(s);
    }
    return k;
}

/* Plain pushes (no predicate wants them) never reach the picky hook;
 * Picky ones, and a Plain one carrying "picky", do, in push order. */
static void
test_unwanted_pushes_skip_the_chain(void **state)
{
    (void)state;
    char err[1024] = "";
    assert_int_equal(load_wants(err, sizeof err, NULL), 0);
    dray_client *c = test_client(NULL);
    assert_int_equal(bulk(c, "Plain", 0, 3, NULL, 0), 0);
    assert_int_equal(test_push_arg(c, "Plain", 3), 0);
    assert_int_equal(bulk(c, "Plain", 4, 2, NULL, dray_now() + 3600), 0);
    assert_int_equal(bulk(c, "Picky", 10, 2, NULL, 0), 0);
    assert_int_equal(test_push_arg(c, "Picky", 12), 0);
    json_t *flag = json_pack("{s:i}", "picky", 1);
    assert_int_equal(bulk(c, "Plain", 20, 1, flag, 0), 0);
    json_decref(flag);
    char *got = calls();
    assert_string_equal(got, "picky:Picky,picky:Picky,picky:Picky,picky:Plain");
    free(got);
    assert_int_equal(picked(8), 4);
    assert_int_equal(test_int("ZCARD schedule"), 2);
    dray_client_free(c);
    dray__modules_reset();
}

/* A bad byte in a per-push field of a plain class still meets the hook
 * that checks it: refused with its message, nothing written. */
static void
test_unwanted_class_bad_field_refused(void **state)
{
    (void)state;
    char err[1024] = "";
    assert_int_equal(load_wants(err, sizeof err, NULL), 0);
    dray_client *c = test_client(NULL);
    json_t *bad = json_pack("{s:s}", "picky", "x");
    assert_int_equal(bulk(c, "Plain", 0, 3, bad, 0), DRAY_EFIELD);
    assert_non_null(strstr(dray_client_errstr(c), "must not be a string"));
    dray_push_opts po = {.extra = bad};
    json_t *args = json_pack("[i]", 1);
    assert_int_equal(dray_client_push(c, "Plain", args, &po, NULL), DRAY_EFIELD);
    json_decref(args);
    json_decref(bad);
    assert_int_equal(test_int("LLEN queue:default"), 0);
    dray_client_free(c);
    dray__modules_reset();
}

/* A hook without a predicate sees every push, as before ABI 1.2; with it
 * in the chain the whole chain runs, and picky still stamps only its own. */
static void
test_hook_without_predicate_sees_all(void **state)
{
    (void)state;
    char err[1024] = "";
    assert_int_equal(load_wants(err, sizeof err, "wants.always", "yes", NULL), 0);
    dray_client *c = test_client(NULL);
    assert_int_equal(bulk(c, "Plain", 0, 2, NULL, 0), 0);
    assert_int_equal(test_push_arg(c, "Plain", 2), 0);
    assert_int_equal(bulk(c, "Picky", 10, 1, NULL, 0), 0);
    char *got = calls();
    assert_string_equal(got, "picky:Plain,always:Plain,picky:Plain,always:Plain,picky:Plain,"
                             "always:Plain,picky:Picky,always:Picky");
    free(got);
    assert_int_equal(picked(4), 1);
    dray_client_free(c);
    dray__modules_reset();
}

/* push_wants on a perform hook: the registration is refused and the load
 * fails, naming the hook. */
static void
test_predicate_on_other_point_refused(void **state)
{
    (void)state;
    char err[1024] = "";
    assert_int_not_equal(load_wants(err, sizeof err, "wants.stray", "yes", NULL), 0);
    if (!strstr(err, "stray") || !strstr(err, "set exactly the function field"))
        fail_msg("unexpected message: %s", err);
    dray__modules_reset();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_unwanted_pushes_skip_the_chain, test_flush),
        cmocka_unit_test_setup(test_unwanted_class_bad_field_refused, test_flush),
        cmocka_unit_test_setup(test_hook_without_predicate_sees_all, test_flush),
        cmocka_unit_test_setup(test_predicate_on_other_point_refused, test_flush),
    };
    return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
