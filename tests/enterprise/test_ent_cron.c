/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Cron expressions and time zones of dray Enterprise (enterprise/src/cron.c,
 * tz.c), on their own: parse errors name the field, Vixie's day rule,
 * shortcuts, and our TZif reader against glibc's localtime for many zones
 * and decades (transitions and the footer rules beyond them), DST gaps and
 * repeated hours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "cron.h"

static int64_t
utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm);
}

static void
parse_ok(const char *expr, ent_cron *c)
{
    char err[ENT_CRON_ERR_BYTES];
    if (ent__cron_parse(expr, c, err, sizeof err))
        fail_msg("'%s' refused: %s", expr, err);
}

static void
parse_bad(const char *expr, const char *want)
{
    ent_cron c;
    char err[ENT_CRON_ERR_BYTES] = "";
    if (!ent__cron_parse(expr, &c, err, sizeof err))
        fail_msg("'%s' accepted", expr);
    if (!strstr(err, want))
        fail_msg("'%s': want \"%s\" in: %s", expr, want, err);
}

static void
test_parse(void **state)
{
    (void)state;
    ent_cron c;
    parse_ok("*/15 9-17 * * mon-fri", &c);
    assert_true(c.minute == ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45)));
    assert_int_equal(c.hour, 0x3fe00);
    assert_int_equal(c.wday, 0x3e);
    assert_true(c.dom_star);
    parse_ok("5/20 0 1,15 JAN,Jul,dec-dec 7", &c);
    assert_true(c.minute == ((1ull << 5) | (1ull << 25) | (1ull << 45)));
    assert_int_equal(c.mday, (1 << 1) | (1 << 15));
    assert_int_equal(c.month, (1 << 1) | (1 << 7) | (1 << 12));
    assert_int_equal(c.wday, 1); /* 7 is Sunday */
    assert_false(c.dom_star);
    parse_ok("0-10/5,30 * * * */2", &c);
    assert_true(c.minute == ((1ull << 0) | (1ull << 5) | (1ull << 10) | (1ull << 30)));
    assert_int_equal(c.wday, (1 << 0) | (1 << 2) | (1 << 4) | (1 << 6));
    ent_cron h;
    parse_ok("@hourly", &h);
    parse_ok("0 * * * *", &c);
    assert_memory_equal(&h, &c, sizeof c);
    parse_ok("@daily", &h);
    parse_ok("@midnight", &c);
    assert_memory_equal(&h, &c, sizeof c);
    parse_ok("  @weekly  ", &c);
    parse_ok("@yearly", &c);
    parse_ok("@annually", &c);
    parse_ok("@monthly", &c);

    parse_bad("61 * * * *", "field 1 (minute) '61': 61 is out of range 0-59");
    parse_bad("* 25 * * *", "field 2 (hour) '25': 25 is out of range 0-23");
    parse_bad("* * 0 * *", "field 3 (day of month) '0': 0 is out of range 1-31");
    parse_bad("* * * 13 *", "field 4 (month) '13': 13 is out of range 1-12");
    parse_bad("* * * * 8", "field 5 (day of week) '8': 8 is out of range 0-7");
    parse_bad("* * * foo *", "field 4 (month) 'foo': 'foo' is not a number or a name");
    parse_bad("* * * * mon-xyz",
              "field 5 (day of week) 'mon-xyz': 'xyz' is not a number or a name");
    parse_bad("x * * * *", "field 1 (minute) 'x': 'x' is not a number");
    parse_bad("*/0 * * * *", "field 1 (minute) '*/0': step 0 is out of range 1-59");
    parse_bad("5-1 * * * *", "field 1 (minute) '5-1': range 5-1 runs backwards");
    parse_bad("1,,2 * * * *", "field 1 (minute) '1,,2': empty list item");
    parse_bad("1, * * * *", "empty list item");
    parse_bad("1-2-3 * * * *", "unexpected '-'");
    parse_bad("0 0 12 * * *", "6 fields, but seconds are not supported");
    parse_bad("0 0 12 *", "4 fields, want 5");
    parse_bad("", "empty");
    parse_bad("@reboot", "@reboot is not a schedule");
    parse_bad("@fortnightly", "unknown shortcut");
    parse_bad("@daily 5", "text after the shortcut");
}

static void
test_match_days(void **state)
{
    (void)state;
    ent_cron c;
    /* Both day fields restricted: either matches (Vixie cron). */
    parse_ok("0 0 13 * fri", &c);
    struct tm tm = {.tm_min = 0, .tm_hour = 0, .tm_mday = 13, .tm_mon = 0, .tm_wday = 2};
    assert_true(ent__cron_match(&c, &tm));
    tm.tm_mday = 10;
    tm.tm_wday = 5;
    assert_true(ent__cron_match(&c, &tm));
    tm.tm_wday = 4;
    assert_false(ent__cron_match(&c, &tm));
    /* One restricted: both must match. */
    parse_ok("0 0 13 * *", &c);
    tm.tm_mday = 12;
    assert_false(ent__cron_match(&c, &tm));
    parse_ok("0 0 * * fri", &c);
    tm.tm_wday = 5;
    assert_true(ent__cron_match(&c, &tm));
}

static const char *const zones[] = {"UTC",
                                    "Europe/Berlin",
                                    "Europe/London",
                                    "Europe/Dublin", /* negative DST in the rules */
                                    "America/New_York",
                                    "America/Sao_Paulo",
                                    "America/St_Johns",    /* -03:30 */
                                    "Australia/Sydney",    /* southern hemisphere */
                                    "Australia/Lord_Howe", /* 30-minute DST */
                                    "Asia/Kolkata",
                                    "Asia/Kathmandu", /* +05:45 */
                                    "Pacific/Chatham",
                                    "Africa/Casablanca",
                                    "America/Santiago",
                                    "Pacific/Apia"};

/* Our offsets equal glibc's at every hour from 1975 to 2060 (transitions
 * read from the file, and the footer's rule after the last one). */
static void
test_tz_against_libc(void **state)
{
    (void)state;
    for (size_t z = 0; z < sizeof zones / sizeof *zones; z++) {
        ent_tz *tz;
        char err[256];
        if (ent__tz_load(zones[z], &tz, err, sizeof err))
            fail_msg("%s: %s", zones[z], err);
        assert_string_equal(ent__tz_name(tz), zones[z]);
        setenv("TZ", zones[z], 1);
        tzset();
        long mismatches = 0;
        for (int64_t t = utc(1975, 1, 1, 0, 0); t < utc(2060, 1, 1, 0, 0); t += 3600 + 60 * 7) {
            time_t tt = (time_t)t;
            struct tm lt, ours;
            localtime_r(&tt, &lt);
            ent__tz_local(tz, t, &ours);
            if (lt.tm_gmtoff != ours.tm_gmtoff || lt.tm_hour != ours.tm_hour ||
                lt.tm_min != ours.tm_min || lt.tm_mday != ours.tm_mday ||
                lt.tm_wday != ours.tm_wday || lt.tm_isdst != ours.tm_isdst) {
                if (mismatches++ < 3)
                    fprintf(stderr, "%s at %lld: libc %ld (dst %d), ours %ld (dst %d)\n", zones[z],
                            (long long)t, lt.tm_gmtoff, lt.tm_isdst, ours.tm_gmtoff, ours.tm_isdst);
            }
        }
        assert_int_equal(mismatches, 0);
        ent__tz_free(tz);
    }
    unsetenv("TZ");
}

static void
test_tz_errors(void **state)
{
    (void)state;
    ent_tz *tz;
    char err[256];
    assert_int_equal(ent__tz_load("Europe/Berln", &tz, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown time zone 'Europe/Berln'"));
    assert_int_equal(ent__tz_load("../etc/passwd", &tz, err, sizeof err), -1);
    assert_non_null(strstr(err, "is not a zone name"));
    assert_int_equal(ent__tz_load("/etc/localtime", &tz, err, sizeof err), -1);
    assert_int_equal(ent__tz_load("", &tz, err, sizeof err), -1);
    /* A file that is not TZif. */
    setenv("TZDIR", DRAY_SOURCE_DIR "/enterprise", 1);
    assert_int_equal(ent__tz_load("CMakeLists.txt", &tz, err, sizeof err), -1);
    assert_non_null(strstr(err, "is not a valid TZif file"));
    /* No database at all: UTC still works. */
    setenv("TZDIR", "/nonexistent", 1);
    assert_int_equal(ent__tz_load("UTC", &tz, err, sizeof err), 0);
    assert_int_equal(ent__tz_offset(tz, 1700000000), 0);
    ent__tz_free(tz);
    unsetenv("TZDIR");
}

static ent_tz *
zone(const char *name)
{
    ent_tz *tz;
    char err[256];
    if (ent__tz_load(name, &tz, err, sizeof err))
        fail_msg("%s: %s", name, err);
    return tz;
}

static void
test_next(void **state)
{
    (void)state;
    ent_cron c;
    ent_tz *utc_tz = zone("UTC");
    parse_ok("*/5 * * * *", &c);
    int64_t from = utc(2024, 5, 6, 10, 3) + 20;
    assert_int_equal(ent__cron_next(&c, utc_tz, from, from + 86400), utc(2024, 5, 6, 10, 5));
    assert_int_equal(ent__cron_next(&c, utc_tz, utc(2024, 5, 6, 10, 5), from + 86400),
                     utc(2024, 5, 6, 10, 5));
    /* Feb 29 at midnight: years ahead, found by skipping days. */
    parse_ok("0 0 29 2 *", &c);
    assert_int_equal(ent__cron_next(&c, utc_tz, utc(2025, 1, 1, 0, 0),
                                    utc(2025, 1, 1, 0, 0) + ENT_CRON_SEARCH_S),
                     utc(2028, 2, 29, 0, 0));
    /* Nothing before `until`. */
    assert_int_equal(ent__cron_next(&c, utc_tz, utc(2025, 1, 1, 0, 0), utc(2025, 6, 1, 0, 0)), -1);
    /* 9:30 on weekdays in New York: 13:30 UTC in summer, 14:30 in winter. */
    ent_tz *ny = zone("America/New_York");
    parse_ok("30 9 * * 1-5", &c);
    assert_int_equal(ent__cron_next(&c, ny, utc(2024, 7, 6, 0, 0), utc(2024, 8, 1, 0, 0)),
                     utc(2024, 7, 8, 13, 30)); /* Saturday -> Monday */
    assert_int_equal(ent__cron_next(&c, ny, utc(2024, 12, 2, 0, 0), utc(2024, 12, 9, 0, 0)),
                     utc(2024, 12, 2, 14, 30));
    ent__tz_free(ny);
    ent__tz_free(utc_tz);
}

static void
test_dst(void **state)
{
    (void)state;
    ent_cron c;
    ent_tz *be = zone("Europe/Berlin");
    parse_ok("30 2 * * *", &c);
    /* 2024-03-31: 02:00 -> 03:00 local; 02:30 does not exist that day. */
    assert_int_equal(ent__cron_next(&c, be, utc(2024, 3, 30, 12, 0), utc(2024, 4, 10, 0, 0)),
                     utc(2024, 4, 1, 0, 30));
    /* 2024-10-27: 03:00 -> 02:00 local; 02:30 happens at 00:30 and 01:30
     * UTC, and is a tick only the first time. */
    assert_int_equal(ent__cron_next(&c, be, utc(2024, 10, 26, 12, 0), utc(2024, 11, 1, 0, 0)),
                     utc(2024, 10, 27, 0, 30));
    assert_true(ent__cron_tick(&c, be, utc(2024, 10, 27, 0, 30)));
    assert_false(ent__cron_tick(&c, be, utc(2024, 10, 27, 1, 30)));
    assert_int_equal(ent__cron_next(&c, be, utc(2024, 10, 27, 0, 31), utc(2024, 11, 1, 0, 0)),
                     utc(2024, 10, 28, 1, 30));
    /* Every minute through the fall-back hour: each local minute once. */
    parse_ok("* * * * *", &c);
    int n = 0;
    for (int64_t t = utc(2024, 10, 26, 23, 0); t < utc(2024, 10, 27, 2, 0); t += 60)
        n += ent__cron_tick(&c, be, t);
    assert_int_equal(n, 120); /* 3 h of UTC, one of them repeated local time */
    ent__tz_free(be);
    /* Lord Howe falls back 30 minutes. */
    ent_tz *lh = zone("Australia/Lord_Howe");
    parse_ok("45 1 * * *", &c);
    int ticks = 0;
    for (int64_t t = utc(2024, 4, 6, 12, 0); t < utc(2024, 4, 7, 12, 0); t += 60)
        ticks += ent__cron_tick(&c, lh, t);
    assert_int_equal(ticks, 1);
    ent__tz_free(lh);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_match_days),
        cmocka_unit_test(test_tz_against_libc),
        cmocka_unit_test(test_tz_errors),
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_dst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
