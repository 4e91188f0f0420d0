/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Helpers the Pro and Enterprise test families share (tests/pro/pro_test.c,
 * tests/enterprise/ent_support.c and their tests/integration/test_pro_*,
 * test_ent_* users): a redis-server plus one connection as cmocka group
 * fixture pieces, reply readers, and license keys signed at test time with
 * the build-time throwaway key (the including target defines
 * DRAY_TEST_LICENSE_KEY and DRAY_TEST_LICENSE_PASSPHRASE).
 */
#ifndef DRAY_TEST_SHARED_JOBS_H
#define DRAY_TEST_SHARED_JOBS_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "redis_fixture.h"

/* ---- a redis-server and one connection ----------------------------------- */

/* Start a fresh server r and connect *c to it; 0, or -1 when it will not
 * start. */
int tj_redis_open(test_redis *r, redisContext **c);
/* Close *c (NULL is fine, and it becomes NULL) and stop r. */
void tj_redis_close(test_redis *r, redisContext **c);
/* FLUSHALL on c; aborts the test on connection failure. */
void tj_flushall(redisContext *c);

/* ---- reply readers (abort the process on a connection failure) ----------- */

/* The integer a command returns: an INTEGER reply, or a STRING parsed as a
 * number; `other` for any other reply (nil included). */
long long tj_rint(long long other, redisContext *c, const char *fmt, ...);
/* A copy of a command's STRING reply (and of a STATUS one when status_too),
 * malloc'ed (the caller frees it), or NULL for any other reply. */
char *tj_rstr(int status_too, redisContext *c, const char *fmt, ...);

/* ---- license keys ---------------------------------------------------------- */

/* Read the throwaway signing key (once; later calls return at once). 0, or
 * -1 with the reason on stderr. */
int tj_license_init(void);
/* Sign a key for subject `sub` and tier ("pro" | "enterprise"), issued a day
 * ago and expiring in exp_days (negative: in the past), with `features` (a
 * JSON array text) or NULL for the tier's set, into out[outlen]. Aborts when
 * the key cannot be read or signed. */
void tj_license(const char *sub, const char *tier, long exp_days, const char *features, char *out,
                size_t outlen);

#endif
