/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * License gating of modules, end to end: keys signed at test time with the
 * build-time throwaway key (DRAY_TEST_LICENSE_KEY), handed to the fixture
 * modules lic_pro.so / lic_ent.so (built with dray_add_module TEST_KEYS)
 * through the loader's settings, environment and license files, with a
 * real Redis for the module's clock. Also the check mode behind
 * `dray license check`.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "license_internal.h"
#include "module_internal.h"
#include "harness.h"

#define DAY INT64_C(86400)
#define KEYBUF (DRAY_LICENSE_MAX_BYTES + 1)

static unsigned char sk[DRAY__LICENSE_SK_BYTES], pk[DRAY_LICENSE_PK_BYTES];
static char kid[DRAY_LICENSE_KID_BYTES];

#define LID "0123456789abcdef0123456789abcdef"

/* This machine's clock as the core and the modules read it (dray_now), set
 * back by clock_back seconds: the "clock set back" attack, in this process
 * only (redis-server keeps the true time). time(2) and CLOCK_MONOTONIC,
 * which the test itself uses, are untouched. */
static atomic_llong clock_back;

int
clock_gettime(clockid_t clk, struct timespec *ts)
{
    long r = syscall(SYS_clock_gettime, clk, ts);
    if (r == 0 && clk == CLOCK_REALTIME)
        ts->tv_sec -= (time_t)atomic_load(&clock_back);
    return (int)r;
}

/* A key for tier issued iat_s seconds ago, ending exp_s seconds from now
 * (true time), with a processes count when procs > 0. */
static void
issue_s(const char *tier, int64_t iat_s, int64_t exp_s, const char *lid, long procs, char *out)
{
    int64_t now = (int64_t)time(NULL);
    json_t *p = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "kid", kid, "lid", lid ? lid : LID,
                          "sub", "ACME Corp", "tier", tier, "iat", (json_int_t)(now - iat_s), "exp",
                          (json_int_t)(now + exp_s));
    if (procs > 0)
        json_object_set_new(p, "procs", json_integer(procs));
    char *s = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    assert_int_equal(dray__license_sign(sk, s, strlen(s), out, KEYBUF), 0);
    free(s);
    json_decref(p);
}

/* A key for tier, issued `iat_days` ago, ending `exp_days` from now. */
static void
issue(const char *tier, int64_t iat_days, int64_t exp_days, const char *lid, char *out)
{
    issue_s(tier, iat_days * DAY, exp_days * DAY, lid, 0, out);
}

static dray_server *
server(void)
{
    dray_options o;
    dray_options_init(&o);
    o.redis_url = test_srv.url;
    o.concurrency = 1;
    o.heartbeat_s = 1; /* the license tick runs at most once a heartbeat */
    char err[256];
    dray_server *s;
    if (dray_server_new(&o, &s, err, sizeof err))
        fail_msg("server_new: %s", err);
    dray_log_set_level(DRAY_LOG_INFO);
    test_log_reset(DRAY_LOG_DEBUG);
    dray_log_set_sink(test_log_capture, NULL);
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
    return test_start(state);
}

static int
teardown(void **state)
{
    (void)state;
    sodium_memzero(sk, sizeof sk);
    return test_teardown(state);
}

static int
each_teardown(void **state)
{
    (void)state;
    dray__modules_reset();
    dray_log_set_sink(NULL, NULL);
    unsetenv("DRAY_LICENSE");
    unsetenv("DRAY_LICENSE_FILE");
    atomic_store(&clock_back, 0);
    if (!test_srv.pid)
        test_redis_start_again(&test_srv);
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
    assert_true(test_log_contains("module lic_pro 1.0.0 (pro) loaded from " MOD_LIC_PRO
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
    assert_true(test_log_contains("ERROR main [lic_pro] license for ACME Corp (pro) EXPIRED on"));
    dray__modules_reset();
    /* expiring within 30 days: loads, with a warning */
    issue("pro", 300, 10, NULL, key);
    assert_int_equal(load_with(MOD_LIC_PRO, key, NULL), 0);
    assert_true(test_log_contains("WARN  main [lic_pro] license for ACME Corp (pro) expires on"));
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
    snprintf(path, sizeof path, "%s/license.key", test_srv.dir);
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

/* Run a Redis command on the test's own connection; returns the integer
 * reply (or 0 for others). */
static long long
rcmd(const char *fmt, const char *a, const char *b)
{
    redisContext *c = test_redis_connect(&test_srv);
    assert_non_null(c);
    redisReply *r = test_redis_cmd(c, fmt, a, b);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* A process record of license LID, `ago` seconds old (true time). */
static void
fleet_seen(const char *who, int64_t ago)
{
    char score[32];
    snprintf(score, sizeof score, "%lld", (long long)((int64_t)time(NULL) - ago));
    rcmd("ZADD dray:license:" LID " %s %s", score, who);
}

/* Clock set back with Redis reachable: the later (Redis's) clock decides,
 * and the refusal says that it did. */
static void
test_clock_back(void **state)
{
    (void)state;
    char key[KEYBUF];
    rcmd("FLUSHALL", NULL, NULL);
    issue("pro", 600, -60, NULL, key);    /* lapsed by the true clock */
    atomic_store(&clock_back, 400 * DAY); /* valid by this one */
    int rc = load_with(MOD_LIC_PRO, key, "judged by Redis's clock");
    assert_int_equal(rc, DRAY_ELICENSE);
}

typedef struct bg_load {
    dray_server *s;
    int rc;
    char err[512];
    atomic_int done;
} bg_load;

static void *
bg_main(void *arg)
{
    bg_load *b = arg;
    b->rc = dray_server_load_module(b->s, MOD_LIC_PRO, b->err, sizeof b->err);
    atomic_store(&b->done, 1);
    return NULL;
}

/* Clock set back while Redis is unreachable at start: the module waits for
 * Redis's clock instead of trusting this one, then refuses the lapsed key;
 * with Redis still down after license_wait, it refuses and says why. */
static void
test_clock_back_redis_down(void **state)
{
    (void)state;
    char key[KEYBUF];
    rcmd("FLUSHALL", NULL, NULL);
    issue("pro", 600, -60, NULL, key);
    test_redis_kill(&test_srv);
    atomic_store(&clock_back, 400 * DAY);
    bg_load b = {.s = server()};
    assert_int_equal(dray_server_set_config(b.s, "license", key), 0);
    assert_int_equal(dray_server_set_config(b.s, "lic_pro.license_wait", "30"), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_main, &b), 0);
    int waiting = test_wait_until(test_log_has, "cannot read Redis's clock", 10);
    int done_early = atomic_load(&b.done);
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    pthread_join(th, NULL);
    if (!waiting || done_early)
        fail_msg("the load did not wait for Redis's clock (rc %d: %s)", b.rc, b.err);
    assert_int_equal(b.rc, DRAY_ELICENSE);
    assert_non_null(strstr(b.err, "expired on"));
    assert_non_null(strstr(b.err, "judged by Redis's clock"));
    dray_server_free(b.s);
    dray__modules_reset();

    /* Redis stays down past license_wait: refused, naming the cause */
    test_redis_kill(&test_srv);
    bg_load c = {.s = server()};
    assert_int_equal(dray_server_set_config(c.s, "license", key), 0);
    assert_int_equal(dray_server_set_config(c.s, "lic_pro.license_wait", "1"), 0);
    double t0 = test_now();
    bg_main(&c);
    double took = test_now() - t0;
    assert_int_equal(test_redis_start_again(&test_srv), 0);
    assert_int_equal(c.rc, DRAY_ELICENSE);
    if (!strstr(c.err, "Redis's clock is unreachable") || took < 1.0)
        fail_msg("after %.2f s: %s", took, c.err);
    dray_server_free(c.s);
}

/* Fleet continuity: a lapsed key loads (loudly) where a process of the same
 * license ran against this Redis within 24 h, for 14 days after grace; a
 * new deployment is refused. */
static void
test_fleet_continuity(void **state)
{
    (void)state;
    char key[KEYBUF], old[KEYBUF];
    rcmd("FLUSHALL", NULL, NULL);
    issue("pro", 400, -40, NULL, key); /* grace ended 10 days ago */
    issue("pro", 400, -60, NULL, old); /* grace ended 30 days ago */
    /* a new deployment: no record */
    assert_int_equal(load_with(MOD_LIC_PRO, key, "no process ran with it against this Redis"),
                     DRAY_ELICENSE);
    /* a record older than 24 h is no fleet */
    fleet_seen("gone:1:a", 25 * 3600);
    assert_int_equal(load_with(MOD_LIC_PRO, key, "no process ran with it against this Redis"),
                     DRAY_ELICENSE);
    /* a process ran 10 minutes ago: a replacement starts, with an error */
    fleet_seen("peer:1:b", 600);
    assert_int_equal(load_with(MOD_LIC_PRO, key, NULL), 0);
    assert_true(test_log_contains("ERROR main [lic_pro] license for ACME Corp (pro) expired on"));
    assert_true(test_log_contains("LOADED ANYWAY under fleet continuity until"));
    /* ... and recorded itself (the stale record was dropped) */
    assert_int_equal(rcmd("ZCARD dray:license:" LID, NULL, NULL), 2);
    dray__modules_reset();
    /* past the 14 days, even a live fleet does not carry the key */
    assert_int_equal(load_with(MOD_LIC_PRO, old, "fleet continuity ended"), DRAY_ELICENSE);
    /* a valid start records its process */
    rcmd("FLUSHALL", NULL, NULL);
    issue("pro", 10, 365, NULL, key);
    assert_int_equal(load_with(MOD_LIC_PRO, key, NULL), 0);
    assert_int_equal(rcmd("ZCARD dray:license:" LID, NULL, NULL), 1);
}

/* More live processes than the key's processes count: a warning, never a
 * refusal. */
static void
test_processes(void **state)
{
    (void)state;
    char key[KEYBUF];
    rcmd("FLUSHALL", NULL, NULL);
    issue_s("pro", 10 * DAY, 365 * DAY, NULL, 1, key);
    assert_int_equal(load_with(MOD_LIC_PRO, key, NULL), 0);
    assert_false(test_log_contains("processes run with license"));
    dray__modules_reset();
    /* a second process (another server identity) with the same key */
    assert_int_equal(load_with(MOD_LIC_PRO, key, NULL), 0);
    assert_true(test_log_contains("WARN  main [lic_pro] 2 processes run with license " LID
                                  " for ACME Corp, which allows 1"));
}

typedef struct bg_file_load {
    dray_server *s;
    int rc;
    char err[512];
    atomic_int done;
} bg_file_load;

static void *
bg_file_main(void *arg)
{
    bg_file_load *b = arg;
    b->rc = dray_server_load_module(b->s, MOD_LIC_PRO, b->err, sizeof b->err);
    atomic_store(&b->done, 1);
    return NULL;
}

static int
bg_done(void *arg)
{
    return atomic_load(&((bg_file_load *)arg)->done);
}

/* Bad key sources: a FIFO as the license file is refused at once (it hung
 * in open), a NUL byte is refused (bytes after it were ignored), and
 * whitespace padding does not count toward the key's length. */
static void
test_bad_key_sources(void **state)
{
    (void)state;
    char key[KEYBUF], path[400];
    rcmd("FLUSHALL", NULL, NULL);
    issue("pro", 10, 365, NULL, key);

    /* a FIFO nobody writes */
    snprintf(path, sizeof path, "%s/license.fifo", test_srv.dir);
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    bg_file_load b = {.s = server()};
    assert_int_equal(dray_server_set_config(b.s, "license_file", path), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_file_main, &b), 0);
    int finished = test_wait_until(bg_done, &b, 5);
    if (!finished) { /* release the blocked open, then report */
        int fd = open(path, O_WRONLY | O_NONBLOCK);
        if (fd >= 0)
            close(fd);
    }
    pthread_join(th, NULL);
    dray_server_free(b.s);
    unlink(path);
    if (!finished)
        fail_msg("a FIFO as license file blocked the load for 5 s");
    assert_int_equal(b.rc, DRAY_EIO);
    assert_non_null(strstr(b.err, "not a regular file"));

    /* a NUL byte, with more after it */
    snprintf(path, sizeof path, "%s/license.nul", test_srv.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite(key, 1, strlen(key), f);
    fwrite("\0trailing", 1, 9, f);
    fclose(f);
    setenv("DRAY_LICENSE_FILE", path, 1);
    assert_int_equal(load_with(MOD_LIC_PRO, NULL, "contains a NUL byte"), DRAY_EIO);
    unsetenv("DRAY_LICENSE_FILE");

    /* an empty (whitespace only) file: the message says where it came from */
    snprintf(path, sizeof path, "%s/license.empty", test_srv.dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(" \n\n", f);
    fclose(f);
    setenv("DRAY_LICENSE_FILE", path, 1);
    char want[600];
    snprintf(want, sizeof want,
             "license key is empty: where it was read from (see \"key from\") holds no key; put "
             "the key in the license or license_file setting, DRAY_LICENSE or DRAY_LICENSE_FILE "
             "(key from DRAY_LICENSE_FILE %s)",
             path);
    assert_int_equal(load_with(MOD_LIC_PRO, NULL, want), DRAY_ELICENSE);
    unsetenv("DRAY_LICENSE_FILE");

    /* whitespace padding: in the environment, and in a file past 16 KiB */
    static char padded[KEYBUF + 40000];
    size_t n = strlen(key);
    memset(padded, ' ', 20000);
    memcpy(padded + 20000, key, n);
    memset(padded + 20000 + n, '\n', 20000);
    padded[40000 + n] = '\0';
    setenv("DRAY_LICENSE", padded, 1);
    assert_int_equal(load_with(MOD_LIC_PRO, NULL, NULL), 0);
    dray__modules_reset();
    unsetenv("DRAY_LICENSE");
    snprintf(path, sizeof path, "%s/license.padded", test_srv.dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(padded, f);
    fclose(f);
    setenv("DRAY_LICENSE_FILE", path, 1);
    assert_int_equal(load_with(MOD_LIC_PRO, NULL, NULL), 0);
}

/* Run a server with lic_pro on `key` until `want` is logged (or 20 s). */
static int
run_until_logged(const char *key, const char *want)
{
    test_running r = {.s = server()};
    assert_int_equal(dray_server_set_config(r.s, "license", key), 0);
    char err[512];
    if (dray_server_load_module(r.s, MOD_LIC_PRO, err, sizeof err))
        fail_msg("load: %s", err);
    test_server_go(&r);
    int seen = test_wait_until(test_log_has, (void *)want, 20);
    test_server_stop(&r);
    dray_server_free(r.s);
    dray__modules_reset();
    return seen;
}

/* A process started while valid warns once the key is expiring, and one
 * started while expiring logs an error once it is in grace: the tick
 * re-judges the key, it does not repeat the start-up state. */
static void
test_running_warnings(void **state)
{
    (void)state;
    char key[KEYBUF];
    rcmd("FLUSHALL", NULL, NULL);
    issue_s("pro", 10 * DAY, 30 * DAY + 3, NULL, 0, key);
    assert_true(run_until_logged(key, "[lic_pro] license for ACME Corp (pro) expires on"));
    assert_false(
        test_log_contains("WARN  main [lic_pro]")); /* valid at start: no start-up warning */
    issue_s("pro", 300 * DAY, 3, NULL, 0, key);
    assert_true(run_until_logged(key, "[lic_pro] license for ACME Corp (pro) EXPIRED on"));
    assert_true(test_log_contains("WARN  main [lic_pro] license for ACME Corp (pro) expires on"));
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
    assert_false(test_log_contains("EXPIRED"));
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
        cmocka_unit_test_teardown(test_clock_back, each_teardown),
        cmocka_unit_test_teardown(test_clock_back_redis_down, each_teardown),
        cmocka_unit_test_teardown(test_fleet_continuity, each_teardown),
        cmocka_unit_test_teardown(test_processes, each_teardown),
        cmocka_unit_test_teardown(test_running_warnings, each_teardown),
        cmocka_unit_test_teardown(test_bad_key_sources, each_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
