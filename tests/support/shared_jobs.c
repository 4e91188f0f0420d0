/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/* Helpers the Pro and Enterprise test families share (shared_jobs.h). */
#include "shared_jobs.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include <sodium.h>

#include "license_internal.h"

/* ---- a redis-server and one connection ----------------------------------- */

int
tj_redis_open(test_redis *r, redisContext **c)
{
    if (test_redis_start(r))
        return -1;
    *c = test_redis_connect(r);
    return 0;
}

void
tj_redis_close(test_redis *r, redisContext **c)
{
    if (*c)
        redisFree(*c);
    *c = NULL;
    test_redis_stop(r);
}

void
tj_flushall(redisContext *c)
{
    freeReplyObject(test_redis_cmd(c, "FLUSHALL"));
}

/* ---- reply readers ---------------------------------------------------------- */

/* The reply to fmt/ap on c (freeReplyObject it); aborts when there is none. */
static redisReply *
vcommand(redisContext *c, const char *fmt, va_list ap)
{
    redisReply *r = redisvCommand(c, fmt, ap);
    if (!r) {
        fprintf(stderr, "redis: %s\n", c->errstr);
        abort();
    }
    return r;
}

long long
tj_rint(long long other, redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcommand(c, fmt, ap);
    va_end(ap);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : other;
    freeReplyObject(r);
    return v;
}

char *
tj_rstr(int status_too, redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcommand(c, fmt, ap);
    va_end(ap);
    int text = r->type == REDIS_REPLY_STRING || (status_too && r->type == REDIS_REPLY_STATUS);
    char *s = text ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

/* ---- license keys ---------------------------------------------------------- */

static unsigned char sk[DRAY__LICENSE_SK_BYTES], pk[DRAY_LICENSE_PK_BYTES];
static char kid[DRAY_LICENSE_KID_BYTES];

int
tj_license_init(void)
{
    if (kid[0])
        return 0;
    char err[DRAY__LICENSE_ERR_BYTES] = "";
    if (sodium_init() < 0 ||
        dray__license_read_secret(DRAY_TEST_LICENSE_KEY, DRAY_TEST_LICENSE_PASSPHRASE,
                                  strlen(DRAY_TEST_LICENSE_PASSPHRASE), sk, pk, err, sizeof err)) {
        fprintf(stderr, "cannot read the throwaway license key: %s\n", err);
        return -1;
    }
    dray__license_kid(pk, kid);
    return 0;
}

void
tj_license(const char *sub, const char *tier, long exp_days, const char *features, char *out,
           size_t outlen)
{
    if (tj_license_init())
        abort();
    int64_t now = (int64_t)time(NULL);
    json_t *p = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "kid", kid, "lid",
                          "0123456789abcdef0123456789abcdef", "sub", sub, "tier", tier, "iat",
                          (json_int_t)(now - 86400), "exp", (json_int_t)(now + exp_days * 86400));
    if (features)
        json_object_set_new(p, "features", json_loads(features, 0, NULL));
    char *s = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s || dray__license_sign(sk, s, strlen(s), out, outlen)) {
        fprintf(stderr, "cannot sign a test license\n");
        abort();
    }
    free(s);
    json_decref(p);
}
