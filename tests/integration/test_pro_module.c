/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray-pro.so as a module: license gating (none, bad signature, lapsed,
 * enterprise, features narrowed by the key), settings that do not parse,
 * an invalid webhook URL, the maxmemory-policy warning (and the refusal
 * it becomes with pro.require_noeviction), check mode, and `dray run`
 * exiting with the license message.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "pro_test.h"
#include "test_skip.h"

void dray__modules_reset(void); /* core, tests only: unload every module */

static test_redis srv;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];

static void
capture(dray_log_level level, const char *line, void *ud)
{
    (void)level;
    (void)ud;
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%s\n", line);
    pthread_mutex_unlock(&log_mu);
}

/* Load the module into a fresh server with settings (NULL-terminated
 * key, value pairs). Returns the load's code; err gets the message. */
static int
load(const char *url, const char *license, const char *const *settings, char *err, size_t errlen)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = url;
    dray_server *s;
    assert_int_equal(dray_server_new(&o, &s, err, errlen), 0);
    log_text[0] = '\0';
    dray_log_set_level(DRAY_LOG_INFO);
    dray_log_set_sink(capture, NULL);
    if (license)
        assert_int_equal(dray_server_set_config(s, "license", license), 0);
    for (int i = 0; settings && settings[i]; i += 2)
        assert_int_equal(dray_server_set_config(s, settings[i], settings[i + 1]), 0);
    err[0] = '\0';
    int rc = dray_server_load_module(s, PRO_MODULE, err, errlen);
    dray_server_free(s);
    dray_log_set_sink(NULL, NULL);
    return rc;
}

static int
setup(void **state)
{
    (void)state;
    unsetenv("DRAY_LICENSE");
    unsetenv("DRAY_LICENSE_FILE");
    return test_redis_start(&srv);
}

static int
teardown(void **state)
{
    (void)state;
    test_redis_stop(&srv);
    return 0;
}

static int
each(void **state)
{
    (void)state;
    dray__modules_reset();
    return 0;
}

static void
test_refusals(void **state)
{
    (void)state;
    char err[1024], key[PRO_KEY_BUF];
    /* no key at all */
    assert_int_not_equal(load(srv.url, NULL, NULL, err, sizeof err), 0);
    assert_non_null(strstr(err, "refused to load: no license key configured"));
    /* a flipped signature byte */
    pro_license("pro", 365, NULL, key);
    size_t n = strlen(key);
    key[n - 3] = key[n - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(load(srv.url, key, NULL, err, sizeof err), DRAY_ELICENSE);
    assert_non_null(strstr(err, "signature is invalid"));
    /* lapsed: expired 60 days ago, grace over */
    pro_license("pro", -60, NULL, key);
    assert_int_equal(load(srv.url, key, NULL, err, sizeof err), DRAY_ELICENSE);
    assert_non_null(strstr(err, "expired on"));
    /* garbage */
    assert_int_equal(load(srv.url, "not-a-key", NULL, err, sizeof err), DRAY_ELICENSE);
    assert_non_null(strstr(err, "malformed license key"));
}

static void
test_accepts_pro_and_enterprise(void **state)
{
    (void)state;
    char err[1024], key[PRO_KEY_BUF];
    assert_int_equal(load(srv.url, pro_license_default(), NULL, err, sizeof err), 0);
    assert_non_null(strstr(log_text, "licensed to Pro Tests Inc (pro"));
    assert_non_null(
        strstr(log_text, "features on: batches, notifications, reliable_fetch, expiring_jobs"));
    dray__modules_reset();
    pro_license("enterprise", 365, NULL, key);
    assert_int_equal(load(srv.url, key, NULL, err, sizeof err), 0);
    assert_non_null(strstr(log_text, "(enterprise"));
    dray__modules_reset();
    /* a key narrowed to batches: the other features stay off, with a warning */
    pro_license("pro", 365, "[\"batches\"]", key);
    assert_int_equal(load(srv.url, key, NULL, err, sizeof err), 0);
    assert_non_null(strstr(log_text, "reliable_fetch: not included in this license; switched off"));
    assert_non_null(strstr(log_text, "features on: batches\n"));
    dray__modules_reset();
    /* switched off by a setting */
    const char *off[] = {"pro.reliable_fetch", "no", "pro.batches", "off", NULL};
    assert_int_equal(load(srv.url, pro_license_default(), off, err, sizeof err), 0);
    assert_non_null(strstr(log_text, "features on: notifications, expiring_jobs\n"));
}

static void
test_bad_settings(void **state)
{
    (void)state;
    char err[1024];
    const char *poison[] = {"pro.poison_after", "0", NULL};
    assert_int_not_equal(load(srv.url, pro_license_default(), poison, err, sizeof err), 0);
    assert_non_null(strstr(err, "poison_after"));
    const char *url[] = {"pro.webhook_url", "ftp://example.com/x", NULL};
    assert_int_not_equal(load(srv.url, pro_license_default(), url, err, sizeof err), 0);
    assert_non_null(
        strstr(err, "pro.webhook_url \"ftp://example.com/x\" is not a valid http(s) URL"));
    const char *url2[] = {"pro.webhook_slack_url", "http://exa mple.com/ x", NULL};
    assert_int_not_equal(load(srv.url, pro_license_default(), url2, err, sizeof err), 0);
    assert_non_null(strstr(err, "pro.webhook_slack_url"));
    const char *flag[] = {"pro.lazy_ack", "maybe", NULL};
    assert_int_not_equal(load(srv.url, pro_license_default(), flag, err, sizeof err), 0);
    assert_non_null(strstr(err, "lazy_ack"));
}

static void
test_eviction_policy(void **state)
{
    (void)state;
    test_redis lru;
    memset(&lru, 0, sizeof lru);
    snprintf(lru.extra, sizeof lru.extra, "--maxmemory-policy allkeys-lru");
    assert_int_equal(test_redis_start(&lru), 0);
    char err[1024];
    assert_int_equal(load(lru.url, pro_license_default(), NULL, err, sizeof err), 0);
    assert_non_null(
        strstr(log_text, "Redis maxmemory-policy is allkeys-lru: under memory pressure"));
    dray__modules_reset();
    const char *strict[] = {"pro.require_noeviction", "yes", NULL};
    assert_int_not_equal(load(lru.url, pro_license_default(), strict, err, sizeof err), 0);
    assert_non_null(strstr(err, "maxmemory-policy is allkeys-lru; pro.require_noeviction"));
    test_redis_stop(&lru);
    /* noeviction (the fixture's default): no warning */
    dray__modules_reset();
    assert_int_equal(load(srv.url, pro_license_default(), NULL, err, sizeof err), 0);
    assert_null(strstr(log_text, "maxmemory-policy"));
}

static void
test_check_mode(void **state)
{
    (void)state;
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    dray_server *s;
    char err[256];
    assert_int_equal(dray_server_new(&o, &s, err, sizeof err), 0);
    assert_int_equal(dray_server_set_config(s, "license", pro_license_default()), 0);
    dray_module_verdict v;
    assert_int_equal(dray_server_check_module(s, PRO_MODULE, &v), 0);
    assert_string_equal(v.name, "pro");
    assert_string_equal(v.tier, "pro");
    assert_non_null(strstr(v.message, "licensed to Pro Tests Inc"));
    dray_server_free(s);
}

/* A worker process without a key stops at once with the message. */
static void
test_worker_refuses(void **state)
{
    (void)state;
    pro_worker w;
    assert_int_equal(pro_worker_start(&w, srv.url, NULL, NULL), 0);
    double end = pro_now() + 20;
    while (!pro_worker_reap(&w) && pro_now() < end)
        ;
    assert_true(w.pid == 0);
    assert_true(WIFEXITED(w.status));
    assert_int_equal(WEXITSTATUS(w.status), 3);
    FILE *f = fopen(w.log, "r");
    assert_non_null(f);
    char buf[2048] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "refused to load: no license key configured"));
}

/* `dray run --module dray-pro.so` without a key exits with the license message. */
static void
test_dray_run(void **state)
{
    (void)state;
#ifdef DRAY_CLI
    char cmd[2048];
    snprintf(
        cmd, sizeof cmd,
        "env -u DRAY_LICENSE -u DRAY_LICENSE_FILE '%s' run --redis-url '%s' --module '%s' 2>&1",
        DRAY_CLI, srv.url, PRO_MODULE);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    if (!strstr(out, "no license key configured"))
        fail_msg("dray run output: %s", out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
#else
    TEST_SKIP();
#endif
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_refusals, each),
        cmocka_unit_test_setup(test_accepts_pro_and_enterprise, each),
        cmocka_unit_test_setup(test_bad_settings, each),
        cmocka_unit_test_setup(test_eviction_policy, each),
        cmocka_unit_test_setup(test_check_mode, each),
        cmocka_unit_test(test_worker_refuses),
        cmocka_unit_test(test_dray_run),
    };
    return test_exit_code(cmocka_run_group_tests(tests, setup, teardown));
}
