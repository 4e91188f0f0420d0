/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Honest skips: cmocka's skip() alone leaves the binary exiting 0, so CTest
 * would say Passed for a test that could not run here. TEST_SKIP() marks the
 * binary; main returns test_exit_code(...), which is TEST_SKIP_CODE when
 * nothing failed but something was skipped, and the test is registered with
 * SKIP_RETURN_CODE TEST_SKIP_CODE so CTest reports it as Skipped. */
#ifndef DRAY_TEST_SKIP_H
#define DRAY_TEST_SKIP_H

#define TEST_SKIP_CODE 77 /* automake's "skipped", and SKIP_RETURN_CODE in the cmake files */

/* Weak: one flag per binary, whichever of its files include this. */
__attribute__((weak)) volatile int test_skipped_flag;

/* Skip the current cmocka test (from the test's own thread) and remember it. */
#define TEST_SKIP()                                                                                \
    do {                                                                                           \
        test_skipped_flag = 1;                                                                     \
        skip();                                                                                    \
    } while (0)

/* Exit status for main: failures as cmocka counted them, else 77 if any test
 * was skipped, else 0. */
static inline int
test_exit_code(int failures)
{
    return failures ? failures : test_skipped_flag ? TEST_SKIP_CODE : 0;
}

#endif
