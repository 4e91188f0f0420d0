/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Redis URL parsing, environment fallbacks and namespaces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

static void
test_good_urls(void **state)
{
    (void)state;
    dray__redis_cfg c;
    char err[256];
    assert_int_equal(dray__redis_url_parse(&c, "redis://127.0.0.1:6380/3", err, sizeof err), 0);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 6380);
    assert_int_equal(c.db, 3);
    assert_null(c.user);
    assert_null(c.pass);
    assert_string_equal(c.where, "127.0.0.1:6380");
    dray__redis_cfg_close(&c);

    assert_int_equal(
        dray__redis_url_parse(&c, "redis://app:s%40cret@redis.example:7000/0", err, sizeof err), 0);
    assert_string_equal(c.user, "app");
    assert_string_equal(c.pass, "s@cret");
    assert_string_equal(c.host, "redis.example");
    dray__redis_cfg_close(&c);

    assert_int_equal(dray__redis_url_parse(&c, "redis://:pw@localhost", err, sizeof err), 0);
    assert_null(c.user);
    assert_string_equal(c.pass, "pw");
    assert_int_equal(c.port, 6379);
    assert_int_equal(c.db, 0);
    dray__redis_cfg_close(&c);

    assert_int_equal(dray__redis_url_parse(&c, "redis://[::1]:6390/2", err, sizeof err), 0);
    assert_string_equal(c.host, "::1");
    assert_int_equal(c.port, 6390);
    dray__redis_cfg_close(&c);

    /* rediss://: the same grammar, TLS on; plain URLs stay plain. */
    assert_int_equal(
        dray__redis_url_parse(&c, "rediss://u:p%21@redis.example:6380/4", err, sizeof err), 0);
    assert_int_equal(c.tls, 1);
    assert_string_equal(c.user, "u");
    assert_string_equal(c.pass, "p!");
    assert_string_equal(c.host, "redis.example");
    assert_int_equal(c.port, 6380);
    assert_int_equal(c.db, 4);
    dray__redis_cfg_close(&c);
    assert_int_equal(dray__redis_url_parse(&c, "redis://redis.example", err, sizeof err), 0);
    assert_int_equal(c.tls, 0);
    dray__redis_cfg_close(&c);

    /* Sentinel: hosts (default port 26379), the master's name and db; the
     * password is the master's. */
    assert_int_equal(dray__redis_url_parse(
                         &c, "redis-sentinel://:m%40st@s1:26380,s2,10.0.0.3:5000/my%20master/2",
                         err, sizeof err),
                     0);
    assert_int_equal(c.sentinel, 1);
    assert_int_equal(c.tls, 0);
    assert_int_equal(c.nsentinels, 3);
    assert_string_equal(c.sentinel_host[0], "s1");
    assert_int_equal(c.sentinel_port[0], 26380);
    assert_string_equal(c.sentinel_host[1], "s2");
    assert_int_equal(c.sentinel_port[1], 26379);
    assert_string_equal(c.sentinel_host[2], "10.0.0.3");
    assert_int_equal(c.sentinel_port[2], 5000);
    assert_string_equal(c.master_name, "my master");
    assert_string_equal(c.pass, "m@st");
    assert_int_equal(c.db, 2);
    assert_null(c.host);
    dray__redis_cfg_close(&c);
    assert_int_equal(dray__redis_url_parse(&c, "rediss-sentinel://s1/mymaster", err, sizeof err),
                     0);
    assert_int_equal(c.tls, 1);
    assert_int_equal(c.db, 0);
    dray__redis_cfg_close(&c);

    assert_int_equal(
        dray__redis_url_parse(&c, "unix:///run/redis/redis.sock?db=5", err, sizeof err), 0);
    assert_string_equal(c.path, "/run/redis/redis.sock");
    assert_null(c.host);
    assert_int_equal(c.db, 5);
    assert_string_equal(c.where, "unix:/run/redis/redis.sock");
    dray__redis_cfg_close(&c);
}

static void
test_bad_urls(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        int code;
        const char *needle;
    } cases[] = {
        {"rediss://", DRAY_EURL, "host is empty"},
        {"redis+tls://host", DRAY_EURL, "scheme"},
        {"redis-sentinel://s1:26379", DRAY_EURL, "master's name"},
        {"redis-sentinel://s1:26379/", DRAY_EURL, "master's name"},
        {"redis-sentinel:///mymaster", DRAY_EURL, "no sentinel"},
        {"redis-sentinel://s1,,s2/m", DRAY_EURL, "sentinel host is empty"},
        {"redis-sentinel://s1:0/m", DRAY_EURL, "sentinel port"},
        {"redis-sentinel://s1/m/x", DRAY_EURL, "database"},
        {"http://host", DRAY_EURL, "scheme"},
        {"redis://", DRAY_EURL, "host is empty"},
        {"redis://host:0", DRAY_EURL, "port"},
        {"redis://host:99999", DRAY_EURL, "port"},
        {"redis://host:12x", DRAY_EURL, "port"},
        {"redis://host/abc", DRAY_EURL, "database"},
        {"redis://u:%zz@host", DRAY_EURL, "password"},
        {"redis://%zz:pw@host", DRAY_EURL, "in user"},
        {"redis://%zz@host", DRAY_EURL, "password"},
        {"redis-sentinel://%zz:pw@s1/m", DRAY_EURL, "in user"},
        {"redis-sentinel://u:%zz@s1/m", DRAY_EURL, "password"},
        {"rediss-sentinel://%g1@s1/m", DRAY_EURL, "password"},
        {"unix://relative.sock", DRAY_EURL, "absolute"},
        {"unix:///x.sock?db=-1", DRAY_EURL, "db"},
        {"unix:///x.sock?color=red", DRAY_EURL, "unknown parameter"},
        {"redis://[::1", DRAY_EURL, "unclosed"},
        {"", DRAY_EURL, "empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dray__redis_cfg c;
        char err[256] = "";
        int rc = dray__redis_url_parse(&c, cases[i].url, err, sizeof err);
        if (rc != cases[i].code || !strstr(err, cases[i].needle))
            fail_msg("%s: got %s '%s', want %s with '%s'", cases[i].url, dray_err_name(rc), err,
                     dray_err_name(cases[i].code), cases[i].needle);
        dray__redis_cfg_close(&c);
    }
}

/* The userinfo forms, the same in redis:// and sentinel URLs (one parser):
 * "user:pw@", ":pw@", "pw@" (a password alone) and "user:@". */
static void
test_userinfo_forms(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *user; /* NULL: none */
        const char *pass;
    } cases[] = {
        {"redis://u%3a1:p%40w@h", "u:1", "p@w"},
        {"redis://:pw@h", NULL, "pw"},
        {"redis://pw@h", NULL, "pw"},
        {"redis://u:@h", "u", ""},
        {"redis-sentinel://u%3a1:p%40w@s1/m", "u:1", "p@w"},
        {"redis-sentinel://:pw@s1/m", NULL, "pw"},
        {"redis-sentinel://pw@s1/m", NULL, "pw"},
        {"rediss-sentinel://u:@s1/m", "u", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dray__redis_cfg c;
        char err[256] = "";
        int rc = dray__redis_url_parse(&c, cases[i].url, err, sizeof err);
        if (rc)
            fail_msg("%s: %s", cases[i].url, err);
        if (cases[i].user)
            assert_string_equal(c.user, cases[i].user);
        else
            assert_null(c.user);
        assert_string_equal(c.pass, cases[i].pass);
        dray__redis_cfg_close(&c);
    }
}

static void
test_env_fallbacks_and_ns(void **state)
{
    (void)state;
    dray_options o;
    dray_options_init(&o);
    dray__redis_cfg c;
    char err[256];
    unsetenv("DRAY_REDIS_URL");
    unsetenv("REDIS_URL");
    assert_int_equal(dray__redis_cfg_init(&c, &o, err, sizeof err), 0);
    assert_string_equal(c.where, "127.0.0.1:6379");
    assert_string_equal(c.ns, "");
    dray__redis_cfg_close(&c);
    setenv("REDIS_URL", "redis://second:1/0", 1);
    assert_int_equal(dray__redis_cfg_init(&c, &o, err, sizeof err), 0);
    assert_string_equal(c.host, "second");
    dray__redis_cfg_close(&c);
    setenv("DRAY_REDIS_URL", "redis://first:2/0", 1);
    assert_int_equal(dray__redis_cfg_init(&c, &o, err, sizeof err), 0);
    assert_string_equal(c.host, "first");
    dray__redis_cfg_close(&c);
    o.redis_url = "redis://explicit:3/0";
    o.ns = "myapp";
    assert_int_equal(dray__redis_cfg_init(&c, &o, err, sizeof err), 0);
    assert_string_equal(c.host, "explicit");
    assert_string_equal(c.ns, "myapp:");
    char *k = dray__key(&c, "queue:default");
    assert_string_equal(k, "myapp:queue:default");
    dray__free(k);
    dray__redis_cfg_close(&c);
    o.ns = "bad ns";
    assert_int_equal(dray__redis_cfg_init(&c, &o, err, sizeof err), DRAY_ECONFIG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_urls),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_userinfo_forms),
        cmocka_unit_test(test_env_fallbacks_and_ns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
