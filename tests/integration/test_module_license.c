/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * License gating of modules, end to end: keys signed at test time with the
 * build-time throwaway key (DRAY_TEST_LICENSE_KEY), handed to the fixture
 * modules lic_pro.so / lic_ent.so (built with dray_add_module TEST_KEYS)
 * through the loader's settings, environment and license files, with a
 * real Redis for the module's clock. Also the check mode behind
 * `dray license check`.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <sodium.h>

#include "license_internal.h"
#include "module_internal.h"
#include "redis_fixture.h"

#define DAY INT64_C(86400)
#define KEYBUF (DRAY_LICENSE_MAX_BYTES + 1)

static test_redis srv;
static unsigned char sk[DRAY__LICENSE_SK_BYTES], pk[DRAY_LICENSE_PK_BYTES];
static char kid[DRAY_LICENSE_KID_BYTES];

/* A key for tier, issued `iat_days` ago, ending `exp_days` from now. */
static void
issue(const char *tier, int64_t iat_days, int64_t exp_days, const char *lid, char *out)
{
    int64_t now = (int64_t)time(NULL);
    json_t *p = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "kid", kid, "lid",
                          lid ? lid : "0123456789abcdef0123456789abcdef", "sub", "ACME Corp",
                          "tier", tier, "iat", (json_int_t)(now - iat_days * DAY), "exp",
                          (json_int_t)(now + exp_days * DAY));
    char *s = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    assert_int_equal(dray__license_sign(sk, s, strlen(s), out, KEYBUF), 0);
    free(s);
    json_decref(p);
}

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];

static void
capture(dray_log_level level, const char *line, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%d %s\n", (int)level, line);
    pthread_mutex_unlock(&log_mu);
}

static dray_server *
server(void)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = srv.url;
    o.concurrency = 1;
    char err[256];
    dray_server *s;
    if (dray_server_new(&o, &s, err, sizeof err))
        fail_msg("server_new: %s", err);
    dray_log_set_level(DRAY_LOG_INFO);
    log_text[0] = '\0';
    dray_log_set_sink(capture, NULL);
    return s;
}

/* Load path with `key` as the license setting; 0 or the refusal code, whose
 * message must contain want (when given). */
static int
load_with(const char *path, const char *key, const char *want)
{
    dray_server *s = server();
    if (key)
        assert_int_equal(dray_server_set_config(s, "license", key), 0);
    char err[512] = "";
    int rc = dray_server_load_module(s, path, err, sizeof err);
    if (want && !strstr(err, want))
        fail_msg("load %s: want \"%s\" in: %s", path, want, err);
    if (!want && rc)
        fail_msg("load %s refused: %s", path, err);
    dray_server_free(s);
    return rc;
}

static int
setup(void **state)
{
    (void)state;
    char err[DRAY__LICENSE_ERR_BYTES];
    if (sodium_init() < 0)
        return -1;
    if (dray__license_read_secret(DRAY_TEST_LICENSE_KEY, DRAY_TEST_LICENSE_PASSPHRASE,
                                  strlen(DRAY_TEST_LICENSE_PASSPHRASE), sk, pk, err, sizeof err)) {
        fprintf(stderr, "cannot read the throwaway key: %s\n", err);
        return -1;
    }
    dray__license_kid(pk, kid);
    return test_redis_start(&srv);
}

static int
teardown(void **state)
{
    (void)state;
    sodium_memzero(sk, sizeof sk);
    test_redis_stop(&srv);
    return 0;
}

static int
each_teardown(void **state)
{
    (void)state;
    dray__modules_reset();
    dray_log_set_sink(NULL, NULL);
    unsetenv("DRAY_LICENSE");
    unsetenv("DRAY_LICENSE_FILE");
    return 0;
}

static void
test_tiers(void **state)
{
    (void)state;
    char pro[KEYBUF], ent[KEYBUF];
    issue("pro", 10, 365, NULL, pro);
    issue("enterprise", 10, 365, NULL, ent);
    /* pro key on the pro module */
    assert_int_equal(load_with(MOD_LIC_PRO, pro, NULL), 0);
    assert_non_null(strstr(log_text, "module lic_pro 1.0.0 (pro) loaded from " MOD_LIC_PRO
                                     ": licensed to ACME Corp (pro"));
    dray__modules_reset();
    /* enterprise includes pro */
    assert_int_equal(load_with(MOD_LIC_PRO, ent, NULL), 0);
    dray__modules_reset();
    assert_int_equal(load_with(MOD_LIC_ENT, ent, NULL), 0);
    dray__modules_reset();
    /* a pro key on the enterprise module: refused with the license message */
    assert_int_equal(
        load_with(MOD_LIC_ENT, pro,
                  "module " MOD_LIC_ENT " (lic_ent) refused to load: license for ACME "
                  "Corp is pro; this module needs enterprise (key from setting license)"),
        DRAY_ELICENSE);
    /* nothing of the refused module stays */
    dray__hook_table *t = atomic_load(&dray__hooks);
    assert_true(t == NULL || t->n[DRAY_HOOK_TICK] == 0);
}

static void
test_expiry_states(void **state)
{
    (void)state;
    char key[KEYBUF];
    /* lapsed: expired 60 days ago, grace (30) over */
    issue("pro", 400, -60, NULL, key);
    assert_int_equal(
        load_with(MOD_LIC_PRO, key, "refused to load: license for ACME Corp (pro) expired on"),
        DRAY_ELICENSE);
    assert_non_null(strstr(dray_license_strerror(DRAY_ELIC_LAPSED), "grace period has ended"));
    /* in grace: loads, with an error-level line */
    issue("pro", 400, -5, NULL, key);
    assert_int_equal(load_with(MOD_LIC_PRO, key, NULL), 0);
    assert_non_null(
        strstr(log_text, "ERROR main [lic_pro] license for ACME Corp (pro) EXPIRED on"));
    dray__modules_reset();
    /* expiring within 30 days: loads, with a warning */
    issue("pro", 300, 10, NULL, key);
    assert_int_equal(load_with(MOD_LIC_PRO, key, NULL), 0);
    assert_non_null(
        strstr(log_text, "WARN  main [lic_pro] license for ACME Corp (pro) expires on"));
    dray__modules_reset();
    /* revoked lid, and a flipped signature byte */
    issue("pro", 10, 365, DRAY_TEST_REVOKED_LID, key);
    assert_int_equal(load_with(MOD_LIC_PRO, key, "revoked"), DRAY_ELICENSE);
    issue("pro", 10, 365, NULL, key);
    size_t n = strlen(key);
    key[n - 3] = key[n - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(load_with(MOD_LIC_PRO, key, "signature is invalid"), DRAY_ELICENSE);
}

static void
test_key_sources(void **state)
{
    (void)state;
    char key[KEYBUF], path[400];
    /* none configured */
    assert_int_equal(load_with(MOD_LIC_PRO, NULL,
                               "refused to load: no license key configured (setting license or "
                               "license_file, or DRAY_LICENSE / DRAY_LICENSE_FILE)"),
                     DRAY_ENOTFOUND);
    /* the environment */
    issue("pro", 10, 365, NULL, key);
    setenv("DRAY_LICENSE", key, 1);
    assert_int_equal(load_with(MOD_LIC_PRO, NULL, NULL), 0);
    dray__modules_reset();
    unsetenv("DRAY_LICENSE");
    /* a file (with a trailing newline and line breaks inside), named by a setting */
    snprintf(path, sizeof path, "%s/license.key", srv.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%.40s\n%s\n", key, key + 40);
    fclose(f);
    dray_server *s = server();
    assert_int_equal(dray_server_set_config(s, "license_file", path), 0);
    char err[512] = "";
    if (dray_server_load_module(s, MOD_LIC_PRO, err, sizeof err))
        fail_msg("license_file: %s", err);
    dray_server_free(s);
    dray__modules_reset();
    /* $DRAY_LICENSE_FILE naming a missing file: the message says which */
    setenv("DRAY_LICENSE_FILE", "/nonexistent/dray.license", 1);
    assert_int_equal(load_with(MOD_LIC_PRO, NULL,
                               "cannot read license file /nonexistent/dray.license "
                               "(DRAY_LICENSE_FILE): No such file or directory"),
                     DRAY_EIO);
    /* a lapsed key in a file: the refusal names where it came from */
    issue("pro", 400, -60, NULL, key);
    f = fopen(path, "w");
    fputs(key, f);
    fclose(f);
    setenv("DRAY_LICENSE_FILE", path, 1);
    char want[512];
    snprintf(want, sizeof want, "(key from DRAY_LICENSE_FILE %s)", path);
    assert_int_equal(load_with(MOD_LIC_PRO, NULL, want), DRAY_ELICENSE);
}

typedef struct verdicts {
    int n;
    dray_module_verdict v[4];
    char path[4][512];
} verdicts;

static void
collect(const char *path, const dray_module_verdict *v, void *ud)
{
    verdicts *vs = ud;
    if (vs->n < 4) {
        vs->v[vs->n] = *v;
        snprintf(vs->path[vs->n], sizeof vs->path[0], "%s", path);
        vs->n++;
    }
}

static void
test_check_mode(void **state)
{
    (void)state;
    char pro[KEYBUF], grace[KEYBUF];
    issue("pro", 10, 365, NULL, pro);
    issue("pro", 400, -5, NULL, grace);
    dray_server *s = server();
    assert_int_equal(dray_server_set_config(s, "license", grace), 0);
    dray_module_verdict v;
    /* grace: would load, with the warning captured, not logged */
    assert_int_equal(dray_server_check_module(s, MOD_LIC_PRO, &v), 0);
    assert_string_equal(v.name, "lic_pro");
    assert_string_equal(v.tier, "pro");
    assert_int_equal(v.warnings, 1);
    assert_non_null(strstr(v.warning, "EXPIRED on"));
    assert_non_null(strstr(v.message, "license for ACME Corp (pro) EXPIRED on"));
    assert_null(strstr(log_text, "EXPIRED"));
    /* checked, not loaded: nothing registered, and a real load still works */
    dray__hook_table *t = atomic_load(&dray__hooks);
    assert_true(t == NULL || t->n[DRAY_HOOK_TICK] == 0);
    /* the enterprise module refuses a pro key */
    assert_int_equal(dray_server_set_config(s, "license", pro), 0);
    assert_int_equal(dray_server_check_module(s, MOD_LIC_ENT, &v), DRAY_ELICENSE);
    assert_non_null(
        strstr(v.message, "license for ACME Corp is pro; this module needs enterprise"));
    assert_int_equal(dray_server_check_module(s, "/nonexistent/dray-pro.so", &v), DRAY_EMODULE);
    assert_non_null(strstr(v.message, "cannot open"));
    char err[512];
    if (dray_server_load_module(s, MOD_LIC_PRO, err, sizeof err))
        fail_msg("load after check: %s", err);
    t = atomic_load(&dray__hooks);
    assert_int_equal(t->n[DRAY_HOOK_TICK], 1);
    dray_server_free(s);
    dray__modules_reset();

    /* the whole configuration, as `dray license check` runs it */
    dray_config *cfg;
    assert_int_equal(dray_config_new(&cfg), 0);
    assert_int_equal(dray_config_add(cfg, "module", MOD_LIC_PRO), 0);
    assert_int_equal(dray_config_add(cfg, "module", MOD_LIC_ENT), 0);
    assert_int_equal(dray_config_set(cfg, "license", pro), 0);
    assert_int_equal(dray_config_add(cfg, "lic_pro.anything", "1"), 0);
    s = server();
    verdicts vs = {0};
    assert_int_equal(dray_server_check_modules(s, cfg, collect, &vs), 1);
    assert_int_equal(vs.n, 2);
    assert_string_equal(vs.path[0], MOD_LIC_PRO);
    assert_int_equal(vs.v[0].rc, 0);
    assert_non_null(strstr(vs.v[0].message, "licensed to ACME Corp (pro"));
    assert_int_equal(vs.v[1].rc, DRAY_ELICENSE);
    /* and `dray run`: load them all, stopping at the refusal */
    assert_int_equal(dray_server_load_modules(s, cfg, err, sizeof err), DRAY_ELICENSE);
    assert_non_null(strstr(err, "(lic_ent) refused to load: license for ACME Corp is pro"));
    dray_server_free(s);
    dray_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tiers, each_teardown),
        cmocka_unit_test_teardown(test_expiry_states, each_teardown),
        cmocka_unit_test_teardown(test_key_sources, each_teardown),
        cmocka_unit_test_teardown(test_check_mode, each_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
