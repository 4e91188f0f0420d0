/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray Enterprise at load time: license gating (tier enterprise; a pro key
 * is refused with the licensing message; features the configuration uses
 * must be licensed) and configuration errors refused before any work
 * starts, each naming the setting and the field at fault: cron fields,
 * time zones, limiter names and types, unique jobs without unique_for, key
 * files that are missing or hold a short key, fetch-time limits when
 * another module already provides fetch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "ent_support.h"
#include "module_internal.h"

static test_redis srv;
static char ent_key[ENT_KEYBUF], pro_key[ENT_KEYBUF];
static char tmpdir[256];

static dray_server *
server(void)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    o.concurrency = 1;
    o.log_level = DRAY_LOG_ERROR;
    char err[256];
    dray_server *s;
    if (dray_server_new(&o, &s, err, sizeof err))
        fail_msg("server_new: %s", err);
    return s;
}

/* Load the module with the license `key` and settings ("k=v", NULL-ended).
 * want NULL: must load; else the refusal must contain want. */
static void
load(const char *key, const char *want, ...)
{
    dray_server *s = server();
    assert_int_equal(dray_server_set_config(s, "license", key), 0);
    va_list ap;
    va_start(ap, want);
    for (const char *kv; (kv = va_arg(ap, const char *));) {
        char k[128];
        const char *eq = strchr(kv, '=');
        assert_non_null(eq);
        snprintf(k, sizeof k, "%.*s", (int)(eq - kv), kv);
        assert_int_equal(dray_server_set_config(s, k, eq + 1), 0);
    }
    va_end(ap);
    char err[1024] = "";
    int rc = dray_server_load_module(s, ENT_MODULE, err, sizeof err);
    if (!want && rc)
        fail_msg("refused: %s", err);
    if (want && !rc)
        fail_msg("loaded, but want a refusal with \"%s\"", want);
    if (want && !strstr(err, want))
        fail_msg("want \"%s\" in: %s", want, err);
    dray_server_free(s);
    dray__modules_reset();
}

static void
test_license(void **state)
{
    (void)state;
    load(ent_key, NULL, NULL);
    load(pro_key, "license for ACME Corp is pro; this module needs enterprise", NULL);
    load(pro_key, "(key from setting license)", NULL);
    load("dray1.garbage", "malformed license key", NULL);
    /* Features: a key for rate limits only runs rate limits. */
    char limits_only[ENT_KEYBUF];
    ent_test_license("enterprise", "[\"rate_limit\"]", limits_only);
    load(limits_only, NULL, "enterprise.limiter=api window 10/1m class=Call", NULL);
    load(limits_only, "does not include periodic", "enterprise.periodic=@hourly Report", NULL);
    load(limits_only, "does not include unique_jobs", "enterprise.unique=Report for=60", NULL);
}

static void
test_no_license(void **state)
{
    (void)state;
    dray_server *s = server();
    char err[512];
    unsetenv("DRAY_LICENSE");
    assert_int_not_equal(dray_server_load_module(s, ENT_MODULE, err, sizeof err), 0);
    assert_non_null(strstr(err, "no license key configured"));
    dray_server_free(s);
    dray__modules_reset();
}

static void
test_periodic_errors(void **state)
{
    (void)state;
    load(ent_key,
         "setting enterprise.periodic '61 * * * * Report': cron '61 * * * *': field 1 (minute) "
         "'61': 61 is out of range 0-59",
         "enterprise.periodic=61 * * * * Report", NULL);
    load(ent_key, "field 3 (day of month) '32': 32 is out of range 1-31",
         "enterprise.periodic=0 0 32 * * | Report", NULL);
    load(ent_key, "field 5 (day of week) 'mon-funday': 'funday' is not a number or a name",
         "enterprise.periodic=0 9 * * mon-funday Report", NULL);
    load(ent_key, "6 fields, but seconds are not supported",
         "enterprise.periodic=0 0 12 * * * Report", NULL);
    load(ent_key, "unknown shortcut", "enterprise.periodic=@fortnightly Report", NULL);
    load(ent_key, "tz: unknown time zone 'Mars/Olympus_Mons'",
         "enterprise.periodic=@hourly Report tz=Mars/Olympus_Mons", NULL);
    load(ent_key, "setting enterprise.tz: unknown time zone 'Europe/Berln'",
         "enterprise.tz=Europe/Berln", "enterprise.periodic=@hourly Report", NULL);
    load(ent_key, "args '[1,' is not a JSON array", "enterprise.periodic=@hourly Report args=[1,",
         NULL);
    /* can never fire: a clear refusal, not a 1969 "next run" */
    load(ent_key, "setting enterprise.periodic '0 0 30 2 * Report': cron '0 0 30 2 *' never fires",
         "enterprise.periodic=0 0 30 2 * Report", NULL);
    load(ent_key, NULL, "enterprise.periodic=0 0 29 2 * Report", NULL); /* leap years: fires */
    /* a typo in a setting name stops start-up, naming it */
    load(ent_key, "unknown setting enterprise.limitr (did you mean enterprise.limiter?)",
         "enterprise.limitr=api 10/second", NULL);
    load(ent_key, "unknown setting enterprise.frobnicate", "enterprise.frobnicate=1", NULL);
    load(ent_key, "loop name 'nightly' is used twice", "enterprise.periodic=@daily A name=nightly",
         "enterprise.periodic=@daily B name=nightly", NULL);
    load(ent_key, "setting enterprise.backfill 'soon'", "enterprise.backfill=soon", NULL);
    load(ent_key, "periodic jobs are enqueued by the leader", "enterprise.leader=no",
         "enterprise.periodic=@hourly Report", NULL);
    load(ent_key, NULL,
         "enterprise.periodic=*/5 9-17 * jan-jun mon-fri | Report tz=Europe/Berlin "
         "queue=low retry=3 args=[1, \"two\"]",
         "enterprise.backfill=2h", NULL);
}

static void
test_limiter_errors(void **state)
{
    (void)state;
    load(ent_key, "limiter name 'stripe.com' has illegal characters",
         "enterprise.limiter=stripe.com concurrent 5 class=Charge", NULL);
    load(ent_key, "limiter name 'tenant-{user}' has illegal characters",
         "enterprise.limiter=tenant-{user} concurrent 5 class=Charge", NULL);
    load(ent_key, "unknown type 'concurent' (concurrent, bucket, window or leaky)",
         "enterprise.limiter=stripe concurent 5 class=Charge", NULL);
    load(ent_key, "bucket interval 'fortnight' must be second, minute, hour or day",
         "enterprise.limiter=mail bucket 10/fortnight class=Mail", NULL);
    load(ent_key, "window limit '10' must be COUNT/INTERVAL",
         "enterprise.limiter=api window 10 class=Call", NULL);
    load(ent_key, "the limiter applies to nothing", "enterprise.limiter=api window 10/1m", NULL);
    load(ent_key, "a per-job limiter ({argN}) cannot limit a queue",
         "enterprise.limiter=t-{arg0} concurrent 1 queue=mail", NULL);
    load(ent_key, "unknown option 'retries'",
         "enterprise.limiter=api leaky 10/1m class=Call retries=3", NULL);
    load(ent_key, "limiter 'api' is defined twice", "enterprise.limiter=api leaky 10/1m class=A",
         "enterprise.limiter=api window 10/1m class=B", NULL);
    load(ent_key, NULL,
         "enterprise.limiter=stripe concurrent 5 class=Charge,Refund lock_timeout=30",
         "enterprise.limiter=tenant-{arg0} concurrent 2 class=Sync",
         "enterprise.limiter=mail bucket 10/minute queue=mail reschedule=5 backoff=10",
         "enterprise.limiter=api window 100/90s class=Call wait=2",
         "enterprise.limiter=shopify leaky 40/20s class=Shop backoff_max=60", NULL);
}

static void
test_unique_errors(void **state)
{
    (void)state;
    load(ent_key,
         "setting enterprise.unique 'Report until=start': unique job class Report has no "
         "unique_for",
         "enterprise.unique=Report until=start", NULL);
    load(ent_key, "unique_until 'finish' must be success or start",
         "enterprise.unique=Report for=60 until=finish", NULL);
    load(ent_key, "unique_for '0' is not a duration of at least 1s",
         "enterprise.unique=Report for=0", NULL);
    load(ent_key, "setting enterprise.unique_grace", "enterprise.unique_grace=-1", NULL);
    load(ent_key, NULL, "enterprise.unique=Report for=10m until=start",
         "enterprise.unique=Mail for=3600", NULL);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

static void
test_crypto_errors(void **state)
{
    (void)state;
    load(ent_key, "cannot open key file /nonexistent/keys",
         "enterprise.encrypt_keys=/nonexistent/keys", NULL);
    char path[320], setting[400];
    snprintf(path, sizeof path, "%s/short.keys", tmpdir);
    write_file(path, "# short\n1 0123456789abcdef\n");
    snprintf(setting, sizeof setting, "enterprise.encrypt_keys=%s", path);
    load(ent_key, "line 2: key version 1 is not 32 bytes", setting, NULL);
    write_file(path, "1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
                     "2 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
                     "3 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw\xc3\xa9Hh8\n");
    load(ent_key, "line 3: key version 3 is not 32 bytes", setting, NULL);
    write_file(path, "\n# nothing\n");
    load(ent_key, "holds no key", setting, NULL);
    write_file(path, "1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
                     "2 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n");
    load(ent_key, NULL, setting, NULL);
    load(ent_key, "key version 7 is not in", setting, "enterprise.encrypt_active=7", NULL);
    load(ent_key, "lists classes but enterprise.encrypt_keys", "enterprise.encrypt=Charge", NULL);
    load(ent_key, "setting enterprise.encrypt_active is set but enterprise.encrypt_keys",
         "enterprise.encrypt_active=2", NULL);
    load(ent_key, "encrypted periodic job needs args", setting,
         "enterprise.periodic=@hourly Report encrypt=yes", NULL);
    unlink(path);
}

/* Fetch-time limits need the fetch slot: with another provider loaded
 * first, the load fails naming both. */
static void
test_fetch_slot_taken(void **state)
{
    (void)state;
    dray_server *s = server();
    char err[1024];
    assert_int_equal(dray_server_load_module(s, MOD_FETCHY, err, sizeof err), 0);
    assert_int_equal(dray_server_set_config(s, "license", ent_key), 0);
    assert_int_equal(
        dray_server_set_config(s, "enterprise.limiter", "mail concurrent 2 queue=mail"), 0);
    assert_int_not_equal(dray_server_load_module(s, ENT_MODULE, err, sizeof err), 0);
    if (!strstr(err, "fetchy") || !strstr(err, "enterprise"))
        fail_msg("want both module names in: %s", err);
    dray_server_free(s);
    dray__modules_reset();
    /* Per-class limits do not need the slot. */
    s = server();
    assert_int_equal(dray_server_load_module(s, MOD_FETCHY, err, sizeof err), 0);
    assert_int_equal(dray_server_set_config(s, "license", ent_key), 0);
    assert_int_equal(
        dray_server_set_config(s, "enterprise.limiter", "mail concurrent 2 class=Mail"), 0);
    if (dray_server_load_module(s, ENT_MODULE, err, sizeof err))
        fail_msg("refused: %s", err);
    dray_server_free(s);
    dray__modules_reset();
}

static void
test_check_mode(void **state)
{
    (void)state;
    dray_server *s = server();
    assert_int_equal(dray_server_set_config(s, "license", ent_key), 0);
    assert_int_equal(dray_server_set_config(s, "enterprise.periodic", "@hourly Report"), 0);
    dray_module_verdict v;
    assert_int_equal(dray_server_check_module(s, ENT_MODULE, &v), 0);
    assert_string_equal(v.name, "enterprise");
    assert_string_equal(v.tier, "enterprise");
    assert_non_null(strstr(v.message, "1 periodic loop"));
    assert_int_equal(dray_server_set_config(s, "enterprise.periodic", "@hourly"), 0);
    assert_int_not_equal(dray_server_check_module(s, ENT_MODULE, &v), 0);
    if (!strstr(v.message, "setting enterprise.periodic '@hourly': want CRON CLASS"))
        fail_msg("check: %s", v.message);
    dray_server_free(s);
    dray__modules_reset();
}

static int
setup(void **state)
{
    (void)state;
    if (ent_test_init())
        return -1;
    ent_test_license("enterprise", NULL, ent_key);
    ent_test_license("pro", NULL, pro_key);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dray-ent-config-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return test_redis_start(&srv);
}

static int
teardown(void **state)
{
    (void)state;
    rmdir(tmpdir);
    test_redis_stop(&srv);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_license),          cmocka_unit_test(test_no_license),
        cmocka_unit_test(test_periodic_errors),  cmocka_unit_test(test_limiter_errors),
        cmocka_unit_test(test_unique_errors),    cmocka_unit_test(test_crypto_errors),
        cmocka_unit_test(test_fetch_slot_taken), cmocka_unit_test(test_check_mode),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
