/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Configuration files: syntax, every key, every error (with file:line and
 * the key), repeated keys, precedence file < environment < flags, and
 * allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

static char path[256];

/* Write text to a fresh temporary file (path). */
static void
write_conf(const char *text)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/dray-conf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

/* Load text; returns the status, *cfg stays for inspection. */
static int
load(const char *text, dray_config **cfg)
{
    assert_int_equal(dray_config_new(cfg), 0);
    write_conf(text);
    int rc = dray_config_load_file(*cfg, path);
    unlink(path);
    return rc;
}

/* Assert loading text fails with code and an error containing every
 * fragment ("LINE" is replaced by path:line). */
static void
expect_error(const char *text, int code, int line, const char *frag1, const char *frag2)
{
    dray_config *cfg;
    int rc = load(text, &cfg);
    const char *err = dray_config_errstr(cfg);
    if (rc != code || (frag1 && !strstr(err, frag1)) || (frag2 && !strstr(err, frag2)))
        fail_msg("config %s: rc %d (want %d), error '%s' (want '%s', '%s')", text, rc, code, err,
                 frag1 ? frag1 : "", frag2 ? frag2 : "");
    if (line > 0) {
        char where[300];
        snprintf(where, sizeof where, "%s:%d: ", path, line);
        if (strncmp(err, where, strlen(where)))
            fail_msg("error '%s' does not start with '%s'", err, where);
    }
    dray_config_free(cfg);
}

static void
test_every_key(void **state)
{
    (void)state;
    dray_config *cfg;
    int rc = load("\xEF\xBB\xBF# dray.conf\r\n"
                  "redis_url unix:///tmp/x.sock?db=2\r\n"
                  "namespace myapp\n"
                  "  concurrency   25   # threads\n"
                  "queue critical,3\n"
                  "queue default\n"
                  "queue low,1\n"
                  "timeout 8\n"
                  "max_retries 7\n"
                  "dead_max_jobs 500\n"
                  "dead_timeout 86400\n"
                  "poll_interval 2.5\n"
                  "heartbeat 3\n"
                  "tag \"my app\"\n"
                  "label blue\n"
                  "label canary\n"
                  "log_level WARN\n"
                  "log_jobs yes\n"
                  "metrics off\n"
                  "max_payload 4096\n"
                  "require ./libjobs.so\n"
                  "module /opt/dray/dray-pro.so\n"
                  "module /opt/dray/dray-enterprise.so\n"
                  "license 'dray1.abc.def'\n"
                  "license_file /etc/dray/license\n"
                  "pro.webhook_url https://example.com/hook#frag\n"
                  "\n"
                  "   # indented comment\n",
                  &cfg);
    assert_int_equal(rc, 0);
    assert_string_equal(dray_config_get(cfg, "concurrency"), "25");
    assert_string_equal(dray_config_get(cfg, "tag"), "my app");
    assert_string_equal(dray_config_get(cfg, "license"), "dray1.abc.def");
    assert_string_equal(dray_config_get(cfg, "pro.webhook_url"), "https://example.com/hook#frag");
    assert_int_equal(dray_config_count(cfg, "queue"), 3);
    assert_int_equal(dray_config_count(cfg, "module"), 2);
    assert_null(dray_config_get(cfg, "nothing"));

    dray_options o;
    char err[256];
    assert_int_equal(dray_config_to_options(cfg, &o, err, sizeof err), 0);
    assert_string_equal(o.redis_url, "unix:///tmp/x.sock?db=2");
    assert_string_equal(o.ns, "myapp");
    assert_int_equal(o.concurrency, 25);
    assert_string_equal(o.queues, "critical,3 default low,1");
    assert_int_equal(o.shutdown_timeout_s, 8);
    assert_int_equal(o.max_retries, 7);
    assert_int_equal(o.dead_max_jobs, 500);
    assert_int_equal(o.dead_timeout_s, 86400);
    assert_true(o.poll_interval_s == 2.5);
    assert_int_equal(o.heartbeat_s, 3);
    assert_string_equal(o.tag, "my app");
    assert_string_equal(o.labels, "blue,canary");
    assert_int_equal(o.log_level, DRAY_LOG_WARN);
    assert_int_equal(o.log_jobs, 1);
    assert_int_equal(o.no_metrics, 1);
    assert_int_equal(o.max_payload, 4096);
    dray_config_free(cfg);
}

static void
test_defaults_without_keys(void **state)
{
    (void)state;
    dray_config *cfg;
    assert_int_equal(load("# nothing\n\n", &cfg), 0);
    dray_options o, d;
    dray_options_init(&d);
    assert_int_equal(dray_config_to_options(cfg, &o, NULL, 0), 0);
    assert_null(o.redis_url);
    assert_null(o.ns);
    assert_null(o.queues);
    assert_null(o.labels);
    assert_int_equal(o.concurrency, d.concurrency);
    assert_int_equal(o.shutdown_timeout_s, d.shutdown_timeout_s);
    assert_int_equal(o.heartbeat_s, d.heartbeat_s);
    assert_int_equal(o.max_payload, d.max_payload);
    dray_config_free(cfg);
}

static void
test_quotes_and_comments(void **state)
{
    (void)state;
    dray_config *cfg;
    assert_int_equal(load("tag \"a \\\"quoted\\\" tab\\there\\\\ # not a comment\"  # comment\n"
                          "label 'lit\\n#x'\n"
                          "license \"C:\\dir\\q\"\n"
                          "pro.empty \"\"\n"
                          "pro.hash a#b\n"
                          "pro.sp two words here   \n",
                          &cfg),
                     0);
    assert_string_equal(dray_config_get(cfg, "tag"), "a \"quoted\" tab\there\\ # not a comment");
    assert_string_equal(dray_config_get(cfg, "label"), "lit\\n#x");
    assert_string_equal(dray_config_get(cfg, "license"), "C:\\dir\\q"); /* unknown escapes kept */
    assert_string_equal(dray_config_get(cfg, "pro.empty"), "");
    assert_string_equal(dray_config_get(cfg, "pro.hash"), "a#b");
    assert_string_equal(dray_config_get(cfg, "pro.sp"), "two words here");
    dray_config_free(cfg);
}

static void
test_bad_numbers(void **state)
{
    (void)state;
    expect_error("# c\nconcurrency abc\n", DRAY_ECONFIG, 2, "key 'concurrency'", "'abc'");
    expect_error("concurrency 0\n", DRAY_ECONFIG, 1, "key 'concurrency'", "1-1000");
    expect_error("concurrency 1001\n", DRAY_ECONFIG, 1, "key 'concurrency'", "1-1000");
    expect_error("concurrency 10x\n", DRAY_ECONFIG, 1, "concurrency", NULL);
    expect_error("concurrency 0x10\n", DRAY_ECONFIG, 1, "concurrency", NULL);
    expect_error("concurrency 99999999999999999999999\n", DRAY_ECONFIG, 1, "concurrency", NULL);
    expect_error("timeout -1\n", DRAY_ECONFIG, 1, "key 'timeout'", NULL);
    expect_error("max_retries 1.5\n", DRAY_ECONFIG, 1, "key 'max_retries'", NULL);
    expect_error("dead_max_jobs 0\n", DRAY_ECONFIG, 1, "key 'dead_max_jobs'", NULL);
    expect_error("dead_timeout 0\n", DRAY_ECONFIG, 1, "key 'dead_timeout'", NULL);
    expect_error("poll_interval -0.5\n", DRAY_ECONFIG, 1, "key 'poll_interval'", NULL);
    expect_error("poll_interval nan\n", DRAY_ECONFIG, 1, "key 'poll_interval'", NULL);
    expect_error("heartbeat 60\n", DRAY_ECONFIG, 1, "key 'heartbeat'", "1-59");
    expect_error("max_payload 10\n", DRAY_ECONFIG, 1, "key 'max_payload'", NULL);
}

static void
test_bad_values(void **state)
{
    (void)state;
    expect_error("log_jobs maybe\n", DRAY_ECONFIG, 1, "key 'log_jobs'", "'maybe'");
    expect_error("metrics sometimes\n", DRAY_ECONFIG, 1, "key 'metrics'", "'sometimes'");
    expect_error("log_level loud\n", DRAY_ECONFIG, 1, "key 'log_level'", "'loud'");
    expect_error("queue a,b\n", DRAY_ECONFIG, 1, "key 'queue'", "weight");
    expect_error("queue a,2000\n", DRAY_ECONFIG, 1, "key 'queue'", "weight");
    expect_error("queue ,3\n", DRAY_ECONFIG, 1, "key 'queue'", "empty");
    expect_error("queue \"a b\"\n", DRAY_ECONFIG, 1, "key 'queue'", NULL);
    expect_error("redis_url http://x\n", DRAY_ECONFIG, 1, "key 'redis_url'", "scheme");
    expect_error("redis_url rediss://\n", DRAY_ECONFIG, 1, "key 'redis_url'", "host is empty");
    expect_error("redis_tls_insecure_skip_verify maybe\n", DRAY_ECONFIG, 1,
                 "key 'redis_tls_insecure_skip_verify'", "'maybe'");
    expect_error("namespace \"a b\"\n", DRAY_ECONFIG, 1, "key 'namespace'", "whitespace");
    expect_error("module \"\"\n", DRAY_ECONFIG, 1, "key 'module'", "empty");
    expect_error("require ''\n", DRAY_ECONFIG, 1, "key 'require'", "empty");
    expect_error("label \"a b\"\n", DRAY_ECONFIG, 1, "key 'label'", "whitespace");
    expect_error("label a,b\n", DRAY_ECONFIG, 1, "key 'label'", "comma");
}

static void
test_syntax_errors(void **state)
{
    (void)state;
    expect_error("tag a\n\n# x\nbogus 1\n", DRAY_ECONFIG, 4, "unknown key 'bogus'", NULL);
    expect_error("tag \"abc\n", DRAY_ECONFIG, 1, "key 'tag'", "unterminated quote");
    expect_error("tag 'abc\n", DRAY_ECONFIG, 1, "key 'tag'", "unterminated quote");
    expect_error("tag \"abc\" def\n", DRAY_ECONFIG, 1, "key 'tag'", "after the closing quote");
    expect_error("ok 1\n", DRAY_ECONFIG, 1, "unknown key 'ok'", NULL);
    expect_error("concurrency\n", DRAY_ECONFIG, 1, "key 'concurrency'", "no value");
    expect_error("concurrency   # only a comment\n", DRAY_ECONFIG, 1, "no value", NULL);
    expect_error("pro..x 1\n", DRAY_ECONFIG, 1, "invalid key", NULL);
    expect_error(".x 1\n", DRAY_ECONFIG, 1, "invalid key", NULL);
    expect_error("pro. 1\n", DRAY_ECONFIG, 1, "invalid key", NULL);
    expect_error("tag=x 1\n", DRAY_ECONFIG, 1, "invalid key", NULL);
    /* an error stops loading: later lines are not added */
    dray_config *cfg;
    assert_int_equal(load("tag a\nbogus 1\ntag b\n", &cfg), DRAY_ECONFIG);
    assert_string_equal(dray_config_get(cfg, "tag"), "a");
    dray_config_free(cfg);
    /* a missing file */
    assert_int_equal(dray_config_new(&cfg), 0);
    assert_int_equal(dray_config_load_file(cfg, "/nonexistent/dray.conf"), DRAY_EIO);
    assert_non_null(strstr(dray_config_errstr(cfg), "/nonexistent/dray.conf"));
    dray_config_free(cfg);
}

static void
test_long_key(void **state)
{
    (void)state;
    char text[400];
    memset(text, 'k', 300);
    snprintf(text + 300, sizeof text - 300, " 1\n");
    expect_error(text, DRAY_ECONFIG, 1, "longer than", NULL);
}

typedef struct collect {
    char buf[512];
    int n;
    int stop_at;
} collect;

static int
collect_fn(const char *key, const char *value, void *ud)
{
    collect *c = ud;
    size_t l = strlen(c->buf);
    snprintf(c->buf + l, sizeof c->buf - l, "%s%s=%s", c->n ? "|" : "", key, value);
    return ++c->n == c->stop_at ? 42 : 0;
}

static void
test_repeated_keys(void **state)
{
    (void)state;
    dray_config *cfg;
    assert_int_equal(load("queue a,2\nqueue b\nconcurrency 5\nconcurrency 6\n"
                          "module /m1.so\nmodule /m2.so\nmodule /m1.so\n"
                          "require ./j.so\nlabel x\nlabel x\n"
                          "ent.cron \"* * * * * Hourly\"\nent.cron \"0 * * * * Daily\"\npro.a 1\n",
                          &cfg),
                     0);
    assert_int_equal(dray_config_count(cfg, "concurrency"), 1); /* scalar: last wins */
    assert_string_equal(dray_config_get(cfg, "concurrency"), "6");
    assert_int_equal(dray_config_count(cfg, "module"), 2); /* duplicates dropped */
    assert_int_equal(dray_config_count(cfg, "label"), 2);  /* labels are a list */
    collect c = {"", 0, 0};
    assert_int_equal(dray_config_get_all(cfg, "queue", collect_fn, &c), 0);
    assert_string_equal(c.buf, "queue=a,2|queue=b");
    memset(&c, 0, sizeof c);
    assert_int_equal(dray_config_get_all(cfg, "MODULE", collect_fn, &c), 0);
    assert_string_equal(c.buf, "module=/m1.so|module=/m2.so");
    memset(&c, 0, sizeof c);
    assert_int_equal(dray_config_get_all(cfg, "ent.", collect_fn, &c), 0);
    assert_string_equal(c.buf, "ent.cron=* * * * * Hourly|ent.cron=0 * * * * Daily");
    memset(&c, 0, sizeof c);
    c.stop_at = 2;
    assert_int_equal(dray_config_get_all(cfg, NULL, collect_fn, &c), 42);
    assert_int_equal(c.n, 2);
    assert_string_equal(dray_config_get(cfg, "ent.cron"), "0 * * * * Daily");
    dray_config_free(cfg);
}

static void
test_set_and_add(void **state)
{
    (void)state;
    dray_config *cfg;
    assert_int_equal(dray_config_new(&cfg), 0);
    assert_int_equal(dray_config_set(cfg, "Concurrency", "4"), 0); /* keys are case-insensitive */
    assert_string_equal(dray_config_get(cfg, "concurrency"), "4");
    assert_int_equal(dray_config_set(cfg, "concurrency", "x"), DRAY_ECONFIG);
    assert_non_null(strstr(dray_config_errstr(cfg), "key 'concurrency'"));
    assert_string_equal(dray_config_get(cfg, "concurrency"), "4"); /* unchanged */
    assert_int_equal(dray_config_set(cfg, "nope", "1"), DRAY_ECONFIG);
    assert_non_null(strstr(dray_config_errstr(cfg), "unknown key 'nope'"));
    assert_int_equal(dray_config_set(cfg, "", "1"), DRAY_ECONFIG);
    assert_int_equal(dray_config_set(cfg, "tag", NULL), DRAY_EINVAL);
    assert_int_equal(dray_config_add(cfg, "queue", "a"), 0);
    assert_int_equal(dray_config_add(cfg, "queue", "b"), 0);
    assert_int_equal(dray_config_set(cfg, "queue", "c"), 0); /* set replaces the list */
    assert_int_equal(dray_config_count(cfg, "queue"), 1);
    assert_int_equal(dray_config_add(cfg, "x.y", "1"), 0);
    assert_int_equal(dray_config_set(cfg, "x.y", "2"), 0);
    assert_int_equal(dray_config_count(cfg, "x.y"), 1);
    assert_int_equal(dray_config_set(cfg, "log_jobs", "TRUE"), 0);
    assert_int_equal(dray_config_set(cfg, "log_level", "debug"), 0);
    dray_options o;
    assert_int_equal(dray_config_to_options(cfg, &o, NULL, 0), 0);
    assert_int_equal(o.concurrency, 4);
    assert_string_equal(o.queues, "c");
    assert_int_equal(o.log_jobs, 1);
    assert_int_equal(o.log_level, DRAY_LOG_DEBUG);
    static const char *const bools[][2] = {{"yes", "1"},   {"no", "0"}, {"true", "1"},
                                           {"false", "0"}, {"1", "1"},  {"0", "0"}};
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) {
        assert_int_equal(dray_config_set(cfg, "log_jobs", bools[i][0]), 0);
        assert_int_equal(dray_config_to_options(cfg, &o, NULL, 0), 0);
        assert_int_equal(o.log_jobs, atoi(bools[i][1]));
    }
    dray_config_free(cfg);
    dray_config_free(NULL);
}

static void
clear_env(void)
{
    static const char *const vars[] = {"DRAY_CONCURRENCY", "DRAY_QUEUES",    "DRAY_MODULES",
                                       "DRAY_REQUIRES",    "DRAY_LABELS",    "DRAY_TAG",
                                       "DRAY_REDIS_URL",   "DRAY_LOG_LEVEL", "DRAY_NAMESPACE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
}

static void
test_precedence(void **state)
{
    (void)state;
    clear_env();
    dray_config *cfg;
    assert_int_equal(load("concurrency 5\ntag file\nnamespace filens\nqueue f1\nqueue f2\n"
                          "module /file.so\nrequire ./file.so\n",
                          &cfg),
                     0);
    setenv("DRAY_CONCURRENCY", "7", 1);
    setenv("DRAY_TAG", "env", 1);
    setenv("DRAY_QUEUES", "e1,2  e2", 1);
    setenv("DRAY_MODULES", "/env1.so:/file.so:/env2.so", 1);
    setenv("DRAY_REQUIRES", "./env.so", 1);
    setenv("DRAY_LABELS", "l1,l2 l3", 1);
    assert_int_equal(dray_config_load_env(cfg), 0);
    /* flags, as the CLI applies them */
    assert_int_equal(dray_config_set(cfg, "concurrency", "9"), 0);
    assert_int_equal(dray_config_add(cfg, "module", "/flag.so"), 0);
    dray_options o;
    assert_int_equal(dray_config_to_options(cfg, &o, NULL, 0), 0);
    assert_int_equal(o.concurrency, 9);       /* flag > env > file */
    assert_string_equal(o.tag, "env");        /* env > file */
    assert_string_equal(o.ns, "filens");      /* file only */
    assert_string_equal(o.queues, "e1,2 e2"); /* env queues replace the file's */
    assert_string_equal(o.labels, "l1,l2,l3");
    collect c = {"", 0, 0};
    assert_int_equal(dray_config_get_all(cfg, "module", collect_fn, &c), 0);
    assert_string_equal(c.buf, "module=/file.so|module=/env1.so|module=/env2.so|module=/flag.so");
    assert_int_equal(dray_config_count(cfg, "require"), 2);
    dray_config_free(cfg);

    /* An environment error names the variable. */
    clear_env();
    setenv("DRAY_CONCURRENCY", "lots", 1);
    assert_int_equal(dray_config_new(&cfg), 0);
    assert_int_equal(dray_config_load_env(cfg), DRAY_ECONFIG);
    assert_non_null(strstr(dray_config_errstr(cfg), "environment DRAY_CONCURRENCY: "));
    assert_non_null(strstr(dray_config_errstr(cfg), "'lots'"));
    dray_config_free(cfg);
    clear_env();
    setenv("DRAY_QUEUES", "ok bad,x", 1);
    assert_int_equal(dray_config_new(&cfg), 0);
    assert_int_equal(dray_config_load_env(cfg), DRAY_ECONFIG);
    assert_non_null(strstr(dray_config_errstr(cfg), "environment DRAY_QUEUES: "));
    dray_config_free(cfg);
    clear_env();
}

/* Every allocation may fail: the result is ENOMEM or success, never a
 * crash or a leak (the ASan build checks the leaks). */
static void
test_alloc_failures(void **state)
{
    (void)state;
    write_conf("concurrency 5\nqueue a,2\nqueue b\nredis_url redis://h:1/2\nmodule /m.so\n"
               "pro.x \"y z\"\ntag t\n");
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        dray_config *cfg = NULL;
        dray__alloc_fail_after(n);
        int rc = dray_config_new(&cfg);
        if (!rc)
            rc = dray_config_load_file(cfg, path);
        dray_options o;
        if (!rc)
            rc = dray_config_to_options(cfg, &o, NULL, 0);
        dray__alloc_fail_after(-1);
        assert_true(rc == 0 || rc == DRAY_ENOMEM);
        if (!rc) {
            assert_string_equal(o.queues, "a,2 b");
            ok = 1;
        }
        dray_config_free(cfg);
    }
    unlink(path);
    assert_true(ok);
}

/* timestamps: seconds (the default, Sidekiq 6/7 floats) or ms (Sidekiq 8
 * integers); anything else is refused with the two choices named. */
static void
test_timestamps_key(void **state)
{
    (void)state;
    const char *text[3] = {"concurrency 2\n", "timestamps seconds\n", "timestamps ms\n"};
    for (int i = 0; i < 3; i++) {
        dray_config *cfg;
        assert_int_equal(load(text[i], &cfg), 0);
        dray_options o;
        assert_int_equal(dray_config_to_options(cfg, &o, NULL, 0), 0);
        assert_int_equal(o.timestamps_ms, i == 2);
        dray_config_free(cfg);
    }
    expect_error("timestamps millis\n", DRAY_ECONFIG, 1, "key 'timestamps'", "'millis'");
    expect_error("timestamps 1\n", DRAY_ECONFIG, 1, "seconds", "ms");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_defaults_without_keys),
        cmocka_unit_test(test_quotes_and_comments),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_long_key),
        cmocka_unit_test(test_repeated_keys),
        cmocka_unit_test(test_set_and_add),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_timestamps_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
