/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The error convention of core/src (err.c): dray__err/DRAY__SET_ERR format
 * into the caller's buffer, truncate safely and return the code;
 * dray__strerror gives errno text without strerror's shared buffer, from
 * many threads at once, and a config file that cannot be opened says why. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dray/inspect.h"
#include "internal.h"

static void
test_err_truncates_and_returns_code(void **state)
{
    (void)state;
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(dray__err(small, sizeof small, DRAY_EINVAL, "%s %d", "abcdefgh", 42),
                     DRAY_EINVAL);
    assert_string_equal(small, "abcdefg"); /* 7 bytes and the NUL: never past the end */
    assert_int_equal(dray__err(NULL, 0, DRAY_ENOMEM, "dropped %d", 1), DRAY_ENOMEM);
    small[0] = 'q';
    assert_int_equal(dray__err(small, 0, DRAY_EIO, "not written"), DRAY_EIO);
    assert_int_equal(small[0], 'q');

    struct {
        int other;
        char errstr[16];
    } obj = {7, ""};
    assert_int_equal(DRAY__SET_ERR(&obj, DRAY_ECONN, "redis at %s: down", "host:6379"), DRAY_ECONN);
    assert_string_equal(obj.errstr, "redis at host:6");
    assert_int_equal(obj.other, 7);
}

static void
test_strerror_text(void **state)
{
    (void)state;
    char buf[DRAY__STRERROR_BYTES];
    assert_string_equal(dray__strerror(ENOENT, buf, sizeof buf), "No such file or directory");
    assert_ptr_equal(dray__strerror(EACCES, buf, sizeof buf), buf);
    assert_string_equal(buf, "Permission denied");
    /* A value libc has no text for still reads as a number. */
    assert_non_null(strstr(dray__strerror(123456, buf, sizeof buf), "123456"));
    /* Truncated, terminated. */
    char tiny[5];
    assert_string_equal(dray__strerror(ENOENT, tiny, sizeof tiny), "No s");
    assert_string_equal(dray__strerror(ENOENT, NULL, 0), "");
}

#define THREADS 8
#define ROUNDS 4000

static char expect[THREADS][2][DRAY__STRERROR_BYTES];

static int
errnum_of(long t, int k)
{
    /* one known errno and one unknown value per thread: unknown ones are
     * exactly what strerror builds in a shared static buffer on some libcs */
    return k ? 20000 + (int)t : (int)(1 + t * 3);
}

static void *
hammer(void *arg)
{
    long t = (long)arg;
    long bad = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int k = i & 1;
        char buf[DRAY__STRERROR_BYTES];
        const char *s = dray__strerror(errnum_of(t, k), buf, sizeof buf);
        if (strcmp(s, expect[t][k]))
            bad++;
    }
    return (void *)bad;
}

static void
test_strerror_threads(void **state)
{
    (void)state;
    for (long t = 0; t < THREADS; t++)
        for (int k = 0; k < 2; k++)
            snprintf(expect[t][k], sizeof expect[t][k], "%s",
                     dray__strerror(errnum_of(t, k), (char[DRAY__STRERROR_BYTES]){0},
                                    DRAY__STRERROR_BYTES));
    assert_string_equal(expect[0][0], "Operation not permitted");
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, hammer, (void *)t), 0);
    long bad = 0;
    for (int t = 0; t < THREADS; t++) {
        void *r;
        assert_int_equal(pthread_join(th[t], &r), 0);
        bad += (long)r;
    }
    assert_int_equal(bad, 0);
}

/* The user-visible end of the convention: the reason is errno's text. */
static void
test_config_cannot_open(void **state)
{
    (void)state;
    dray_config *cfg;
    assert_int_equal(dray_config_new(&cfg), 0);
    assert_int_equal(dray_config_load_file(cfg, "/nonexistent/dray.conf"), DRAY_EIO);
    assert_string_equal(dray_config_errstr(cfg),
                        "/nonexistent/dray.conf: cannot open: No such file or directory");
    dray_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_truncates_and_returns_code),
        cmocka_unit_test(test_strerror_text),
        cmocka_unit_test(test_strerror_threads),
        cmocka_unit_test(test_config_cannot_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
