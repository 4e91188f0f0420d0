/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * License keys: every state and every refusal, with keys signed at test time
 * by the throwaway build-time key (DRAY_TEST_LICENSE_KEY), verified through
 * the public API against the test key table (dray_license_testkeys).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "dray/license.h"
#include "license_internal.h"
#include "../support/test_skip.h"

#define DAY INT64_C(86400)
#define NOW INT64_C(1767225600)      /* 2026-01-01T00:00:00Z */
#define END_2026 INT64_C(1798761599) /* 2026-12-31T23:59:59Z */
#define KEEP INT64_MIN               /* case field: leave the base payload's value */
#define KEYBUF (DRAY_LICENSE_MAX_BYTES + 1)
#define X10 "xxxxxxxxxx"
#define X200 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10

static unsigned char test_sk[DRAY__LICENSE_SK_BYTES], test_pk[DRAY_LICENSE_PK_BYTES];
static unsigned char other_sk[DRAY__LICENSE_SK_BYTES], other_pk[DRAY_LICENSE_PK_BYTES];
static char test_kid[DRAY_LICENSE_KID_BYTES], other_kid[DRAY_LICENSE_KID_BYTES];

static int
load_keys(void **state)
{
    char err[DRAY__LICENSE_ERR_BYTES];

    (void)state;
    if (sodium_init() < 0)
        return -1;
    if (dray__license_read_secret(DRAY_TEST_LICENSE_KEY, DRAY_TEST_LICENSE_PASSPHRASE,
                                  strlen(DRAY_TEST_LICENSE_PASSPHRASE), test_sk, test_pk, err,
                                  sizeof err) != 0) {
        fprintf(stderr, "cannot load the throwaway key: %s\n", err);
        return -1;
    }
    dray__license_kid(test_pk, test_kid);
    crypto_sign_keypair(other_pk, other_sk);
    dray__license_kid(other_pk, other_kid);
    return 0;
}

static int
wipe_keys(void **state)
{
    (void)state;
    sodium_memzero(test_sk, sizeof test_sk);
    sodium_memzero(other_sk, sizeof other_sk);
    return 0;
}

/* Sign raw payload bytes with sk. */
static void
sign_raw(const unsigned char *sk, const char *payload, char *out)
{
    assert_int_equal(dray__license_sign(sk, payload, strlen(payload), out, KEYBUF), 0);
}

/*
 * The base payload (ACME Corp, pro, issued 10 days before NOW, expires end
 * of 2026), with `patch` (a JSON object) merged in, `drop` removed, and
 * iat/exp replaced unless KEEP; signed by sk into out.
 */
static void
issue(const unsigned char *sk, const char *kid, const char *patch, const char *drop, int64_t iat,
      int64_t exp, char *out)
{
    json_t *p = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "kid", kid, "lid",
                          "0123456789abcdef0123456789abcdef", "sub", "ACME Corp", "tier", "pro",
                          "iat", (json_int_t)(NOW - 10 * DAY), "exp", (json_int_t)END_2026);
    char *s;

    assert_non_null(p);
    if (patch != NULL) {
        json_error_t e;
        json_t *j = json_loads(patch, 0, &e);
        if (j == NULL)
            fail_msg("bad patch %s: %s", patch, e.text);
        assert_int_equal(json_object_update(p, j), 0);
        json_decref(j);
    }
    if (iat != KEEP)
        json_object_set_new(p, "iat", json_integer(iat));
    if (exp != KEEP)
        json_object_set_new(p, "exp", json_integer(exp));
    if (drop != NULL)
        assert_int_equal(json_object_del(p, drop), 0);
    s = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    sign_raw(sk, s, out);
    free(s);
    json_decref(p);
}

static void
issue_ok(const char *patch, int64_t iat, int64_t exp, char *out)
{
    issue(test_sk, test_kid, patch, NULL, iat, exp, out);
}

static void
assert_msg(int rc, const dray_license_info *info, const char *want)
{
    char msg[DRAY_LICENSE_MSG_BYTES];

    dray_license_describe(rc, info, msg, sizeof msg);
    if (want != NULL && strstr(msg, want) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", msg, want);
}

/* ---- the table: states and payload errors ------------------------------- */

typedef struct vcase {
    const char *name;  /* what the case shows */
    const char *patch; /* merged into the base payload, or NULL */
    const char *drop;  /* field removed, or NULL */
    int64_t iat, exp;  /* KEEP or a value */
    int64_t now;       /* verification time */
    int rc;            /* expected dray_license_verify result */
    int state;         /* expected state when verified, or -1 */
    const char *field; /* expected info.field, or NULL */
    const char *msg;   /* substring of the message, or NULL */
} vcase;

static const vcase cases[] = {
    {"valid", NULL, NULL, KEEP, KEEP, NOW, 0, DRAY_LICENSE_VALID, NULL,
     "licensed to ACME Corp (pro, expires 2026-12-31)"},
    {"valid with features", "{\"features\":[\"batches\",\"periodic\"]}", NULL, KEEP, KEEP, NOW, 0,
     DRAY_LICENSE_VALID, NULL, "features: batches"},
    {"perpetual", NULL, NULL, KEEP, 0, NOW, 0, DRAY_LICENSE_VALID, NULL,
     "licensed to ACME Corp (pro, perpetual)"},
    {"just outside expiring", NULL, NULL, KEEP, NOW + 30 * DAY + 1, NOW, 0, DRAY_LICENSE_VALID,
     NULL, "licensed to"},
    {"expiring at 30 days", NULL, NULL, KEEP, NOW + 30 * DAY, NOW, 0, DRAY_LICENSE_EXPIRING, NULL,
     "expires on 2026-01-31, in 30 days"},
    {"expiring", NULL, NULL, KEEP, NOW + 10 * DAY, NOW, 0, DRAY_LICENSE_EXPIRING, NULL,
     "expires on 2026-01-11, in 10 days"},
    {"expiring at exp", NULL, NULL, KEEP, NOW, NOW, 0, DRAY_LICENSE_EXPIRING, NULL, "in 0 days"},
    {"grace", NULL, NULL, KEEP, NOW - 5 * DAY, NOW, 0, DRAY_LICENSE_GRACE, NULL,
     "EXPIRED on 2025-12-27; grace period ends 2026-01-26"},
    {"grace, last second", NULL, NULL, KEEP, NOW - 30 * DAY, NOW, 0, DRAY_LICENSE_GRACE, NULL,
     "grace period ends 2026-01-01"},
    {"lapsed, first second", NULL, NULL, KEEP, NOW - 30 * DAY - 1, NOW, DRAY_ELIC_LAPSED,
     DRAY_LICENSE_LAPSED, NULL, "grace ended 2025-12-31"},
    {"lapsed", NULL, NULL, NOW - 400 * DAY, NOW - 40 * DAY, NOW, DRAY_ELIC_LAPSED,
     DRAY_LICENSE_LAPSED, NULL, "expired on 2025-11-22, grace ended 2025-12-22"},
    {"custom grace keeps it working", "{\"grace\":60}", NULL, KEEP, NOW - 40 * DAY, NOW, 0,
     DRAY_LICENSE_GRACE, NULL, "grace period ends 2026-01-21"},
    {"no grace", "{\"grace\":0}", NULL, KEEP, NOW - 1, NOW, DRAY_ELIC_LAPSED, DRAY_LICENSE_LAPSED,
     NULL, "grace ended 2025-12-31"},
    {"iat 23 h ahead is accepted", NULL, NULL, NOW + 23 * 3600, KEEP, NOW, 0, DRAY_LICENSE_VALID,
     NULL, NULL},
    {"not yet valid", NULL, NULL, NOW + 2 * DAY, KEEP, NOW, DRAY_ELIC_NOT_YET_VALID,
     DRAY_LICENSE_VALID, NULL, "check the system clock"},
    {"revoked", "{\"lid\":\"" DRAY_TEST_REVOKED_LID "\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_REVOKED,
     DRAY_LICENSE_VALID, NULL, "has been revoked"},
    {"unknown fields are ignored", "{\"future\":{\"x\":[1,2]},\"zz\":null}", NULL, KEEP, KEEP, NOW,
     0, DRAY_LICENSE_VALID, NULL, NULL},
    {"unknown feature names are ignored", "{\"features\":[\"batches\",\"teleport\"]}", NULL, KEEP,
     KEEP, NOW, 0, DRAY_LICENSE_VALID, NULL, NULL},
    {"all optional fields",
     "{\"email\":\"ops@acme.example\",\"note\":\"PO 1234\",\"procs\":50,"
     "\"grace\":14,\"features\":[]}",
     NULL, KEEP, KEEP, NOW, 0, DRAY_LICENSE_VALID, NULL, NULL},
    {"missing kid", NULL, "kid", KEEP, KEEP, NOW, DRAY_ELIC_MISSING, -1, "kid",
     "required field \"kid\" is missing"},
    {"missing lid", NULL, "lid", KEEP, KEEP, NOW, DRAY_ELIC_MISSING, -1, "lid",
     "required field \"lid\" is missing"},
    {"missing sub", NULL, "sub", KEEP, KEEP, NOW, DRAY_ELIC_MISSING, -1, "sub",
     "required field \"sub\" is missing"},
    {"missing tier", NULL, "tier", KEEP, KEEP, NOW, DRAY_ELIC_MISSING, -1, "tier",
     "required field \"tier\" is missing"},
    {"missing iat", NULL, "iat", KEEP, KEEP, NOW, DRAY_ELIC_MISSING, -1, "iat",
     "required field \"iat\" is missing"},
    {"missing exp", NULL, "exp", KEEP, KEEP, NOW, DRAY_ELIC_MISSING, -1, "exp",
     "required field \"exp\" is missing"},
    {"unknown tier", "{\"tier\":\"gold\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "tier",
     "field \"tier\" has the wrong type or value"},
    {"tier not a string", "{\"tier\":2}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "tier", NULL},
    {"iat a string", "{\"iat\":\"yesterday\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "iat",
     NULL},
    {"exp a real", "{\"exp\":1.5}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "exp", NULL},
    {"exp negative", "{\"exp\":-1}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "exp", NULL},
    {"exp past year 9999", "{\"exp\":253402300800}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1,
     "exp", NULL},
    {"sub empty", "{\"sub\":\"\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "sub", NULL},
    {"sub with a newline", "{\"sub\":\"ACME\\nINFO forged log line\"}", NULL, KEEP, KEEP, NOW,
     DRAY_ELIC_FIELD, -1, "sub", NULL},
    {"sub too long", "{\"sub\":\"" X200 "x\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "sub",
     NULL},
    {"sub at the limit", "{\"sub\":\"" X200 "\"}", NULL, KEEP, KEEP, NOW, 0, DRAY_LICENSE_VALID,
     NULL, NULL},
    {"multibyte sub", "{\"sub\":\"M\u00fcller GmbH \u2014 K\u00f6ln\"}", NULL, KEEP, KEEP, NOW, 0,
     DRAY_LICENSE_VALID, NULL, "licensed to M\xc3\xbcller GmbH"},
    {"lid with a space", "{\"lid\":\"ab cd\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "lid",
     NULL},
    {"grace too long", "{\"grace\":3651}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "grace",
     NULL},
    {"procs negative", "{\"procs\":-1}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "procs", NULL},
    {"features not an array", "{\"features\":\"batches\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD,
     -1, "features", NULL},
    {"feature not a string", "{\"features\":[1]}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1,
     "features", NULL},
    {"email not a string", "{\"email\":true}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "email",
     NULL},
    {"kid not hex", "{\"kid\":\"ABCDEF01\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_FIELD, -1, "kid",
     NULL},
    {"kid of another key", "{\"kid\":\"00000000\"}", NULL, KEEP, KEEP, NOW, DRAY_ELIC_KID_MISMATCH,
     -1, NULL, "does not match"},
};

static void
test_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const vcase *c = &cases[i];
        char key[KEYBUF];
        dray_license_info info;
        int rc;

        issue(test_sk, test_kid, c->patch, c->drop, c->iat, c->exp, key);
        rc = dray_license_verify(key, strlen(key), c->now, &info);
        if (rc != c->rc)
            fail_msg("case \"%s\": rc %s, want %s", c->name, dray_license_err_name(rc),
                     dray_license_err_name(c->rc));
        if (c->state >= 0) {
            if (!info.verified)
                fail_msg("case \"%s\": not verified", c->name);
            if ((int)info.state != c->state)
                fail_msg("case \"%s\": state %s, want %s", c->name,
                         dray_license_state_name(info.state),
                         dray_license_state_name((dray_license_state)c->state));
        } else if (info.verified) {
            fail_msg("case \"%s\": verified despite an error", c->name);
        }
        if (c->field != NULL && strcmp(info.field, c->field) != 0)
            fail_msg("case \"%s\": field \"%s\", want \"%s\"", c->name, info.field, c->field);
        assert_msg(rc, &info, c->msg);
    }
}

static void
test_fields(void **state)
{
    char key[KEYBUF];
    dray_license_info info;

    (void)state;
    issue_ok("{\"tier\":\"enterprise\",\"email\":\"ops@acme.example\",\"note\":\"PO 1234\","
             "\"procs\":50,\"grace\":14,\"upd\":4102444799}",
             KEEP, KEEP, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), 0);
    assert_int_equal(info.verified, 1);
    assert_string_equal(info.kid, test_kid);
    assert_string_equal(info.lid, "0123456789abcdef0123456789abcdef");
    assert_string_equal(info.sub, "ACME Corp");
    assert_string_equal(info.email, "ops@acme.example");
    assert_string_equal(info.note, "PO 1234");
    assert_int_equal(info.tier, DRAY_LICENSE_TIER_ENTERPRISE);
    assert_int_equal(info.features, DRAY_LICENSE_F_ENTERPRISE_ALL);
    assert_int_equal(info.features_listed, 0);
    assert_int_equal(info.iat, NOW - 10 * DAY);
    assert_int_equal(info.exp, END_2026);
    assert_int_equal(info.grace_days, 14);
    assert_int_equal(info.grace_end, END_2026 + 14 * DAY);
    assert_int_equal(info.upd, 4102444799);
    assert_int_equal(info.procs, 50);
    assert_int_equal(info.days_left, 364);
    assert_int_equal(info.now, NOW);
    assert_int_equal(info.revoked, 0);
    assert_int_equal(info.build_time, dray_license_build_time);

    /* Defaults: grace 30, pro features only. */
    issue_ok(NULL, KEEP, KEEP, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), 0);
    assert_int_equal(info.grace_days, DRAY_LICENSE_DEFAULT_GRACE);
    assert_int_equal(info.features, DRAY_LICENSE_F_PRO_ALL);
    assert_int_equal(info.procs, 0);
    assert_string_equal(info.email, "");
}

/* ---- tampering ----------------------------------------------------------- */

static void
test_every_byte_change_refused(void **state)
{
    static const unsigned char repl[] = {'A', 'B', 'a', 'z', '0',  '9',  '-',  '_', '.',
                                         '=', '+', '/', ' ', '\n', '\0', 0x80, 0xff};
    char key[KEYBUF], bad[KEYBUF];
    dray_license_info info;
    size_t len, pos, r, tried = 0;

    (void)state;
    issue_ok("{\"tier\":\"enterprise\",\"features\":[\"batches\"]}", KEEP, KEEP, key);
    len = strlen(key);
    assert_int_equal(dray_license_verify(key, len, NOW, &info), 0);
    for (pos = 0; pos < len; pos++) {
        for (r = 0; r < sizeof repl + 3; r++) {
            unsigned char c;
            int rc;
            if (r < sizeof repl)
                c = repl[r];
            else /* flip one bit: 0x01, 0x20 (case), 0x40 */
                c = (unsigned char)key[pos] ^
                    (unsigned char[]) { 0x01, 0x20, 0x40 }[r - sizeof repl];
            if (c == (unsigned char)key[pos])
                continue;
            memcpy(bad, key, len + 1);
            bad[pos] = (char)c;
            rc = dray_license_verify(bad, len, NOW, &info);
            tried++;
            if (rc == 0 || info.verified)
                fail_msg("key with byte %zu changed to 0x%02x was accepted", pos, c);
        }
        /* Deleting the byte must fail too. */
        memcpy(bad, key, pos);
        memcpy(bad + pos, key + pos + 1, len - pos);
        if (dray_license_verify(bad, len - 1, NOW, &info) == 0)
            fail_msg("key with byte %zu deleted was accepted", pos);
    }
    print_message("%zu single-byte changes of a %zu-byte key, all refused\n", tried, len);
    assert_true(tried > len * 10);
}

static void
test_truncated(void **state)
{
    char key[KEYBUF];
    dray_license_info info;
    size_t len, n;

    (void)state;
    issue_ok(NULL, KEEP, KEEP, key);
    len = strlen(key);
    for (n = 0; n < len; n++) {
        int rc = dray_license_verify(key, n, NOW, &info);
        if (rc == 0 || info.verified)
            fail_msg("key truncated to %zu bytes was accepted", n);
        if (n == 0)
            assert_int_equal(rc, DRAY_ELIC_EMPTY);
    }
    /* Cut inside the signature: precise codes. */
    assert_int_equal(dray_license_verify(key, len - 1, NOW, &info), DRAY_ELIC_SIG_B64);
    assert_int_equal(dray_license_verify(key, len - 2, NOW, &info), DRAY_ELIC_SIG_LEN);
    assert_int_equal(dray_license_verify(key, len - 86, NOW, &info), DRAY_ELIC_SIG_B64);
    assert_int_equal(dray_license_verify(key, len - 87, NOW, &info), DRAY_ELIC_FIELDS);
    /* A trailing dot adds a field. */
    key[len] = '.';
    assert_int_equal(dray_license_verify(key, len + 1, NOW, &info), DRAY_ELIC_FIELDS);
}

static void
test_empty_and_too_long(void **state)
{
    static char big[3 * DRAY_LICENSE_MAX_INPUT];
    char key[KEYBUF];
    dray_license_info info;

    (void)state;
    assert_int_equal(dray_license_verify("", 0, NOW, &info), DRAY_ELIC_EMPTY);
    assert_int_equal(dray_license_verify(NULL, 0, NOW, &info), DRAY_ELIC_EMPTY);
    assert_int_equal(dray_license_verify(" \t\r\n\v\f", 6, NOW, &info), DRAY_ELIC_EMPTY);
    assert_msg(DRAY_ELIC_EMPTY, &info, "DRAY_LICENSE");
    assert_int_equal(dray_license_verify(NULL, 5, NOW, &info), DRAY_ELIC_INVAL);

    memset(big, 'A', DRAY_LICENSE_MAX_BYTES + 1);
    assert_int_equal(dray_license_verify(big, DRAY_LICENSE_MAX_BYTES + 1, NOW, &info),
                     DRAY_ELIC_TOOLONG);
    assert_int_equal(dray_license_verify(big, DRAY_LICENSE_MAX_BYTES, NOW, &info),
                     DRAY_ELIC_PREFIX);
    /* Only the key's characters count: any amount of whitespace is skipped. */
    memset(big, ' ', sizeof big);
    assert_int_equal(dray_license_verify(big, sizeof big, NOW, &info), DRAY_ELIC_EMPTY);
    issue_ok(NULL, KEEP, KEEP, key);
    memcpy(big + 1000, key, strlen(key));
    assert_int_equal(dray_license_verify(big, sizeof big, NOW, &info), 0);
    memset(big, '\n', sizeof big);
    memcpy(big + 2 * DRAY_LICENSE_MAX_INPUT, key, strlen(key));
    assert_int_equal(dray_license_verify(big, sizeof big, NOW, &info), 0);
}

static void
test_malformed_where(void **state)
{
    char key[KEYBUF], bad[KEYBUF * 2], *dot;
    unsigned char sig63[63] = {0};
    char sig63_b64[128];
    dray_license_info info;

    (void)state;
    issue_ok(NULL, KEEP, KEEP, key);
    dot = strrchr(key, '.');

#define EXPECT(text, code)                                                                         \
    assert_int_equal(dray_license_verify((text), strlen(text), NOW, &info), (code))
    EXPECT("hello", DRAY_ELIC_PREFIX);
    EXPECT("dray1", DRAY_ELIC_PREFIX);
    EXPECT("dray2.eyJ9.AAAA", DRAY_ELIC_PREFIX);
    EXPECT("DRAY1.eyJ9.AAAA", DRAY_ELIC_PREFIX);
    EXPECT("xdray1.eyJ9.AAAA", DRAY_ELIC_PREFIX);
    EXPECT(".dray1.a.b", DRAY_ELIC_PREFIX);
    EXPECT("dray1.abc", DRAY_ELIC_FIELDS);
    EXPECT("dray1.a.b.c", DRAY_ELIC_FIELDS);
    EXPECT("dray1..AAAA", DRAY_ELIC_PAYLOAD_B64);
    EXPECT("dray1.e!J9.AAAA", DRAY_ELIC_PAYLOAD_B64);
    EXPECT("dray1.eyJ9=.AAAA", DRAY_ELIC_PAYLOAD_B64);
    EXPECT("dray1.eyJ+.AAAA", DRAY_ELIC_PAYLOAD_B64); /* standard, not url-safe, alphabet */
    EXPECT("dray1.eyJ9.", DRAY_ELIC_SIG_B64);
    EXPECT("dray1.eyJ9.A", DRAY_ELIC_SIG_B64);
    EXPECT("dray1.eyJ9.AAAA", DRAY_ELIC_SIG_LEN);
    assert_msg(DRAY_ELIC_SIG_LEN, &info, "paste the whole key");

    /* Real payload, signature of the wrong length. */
    sodium_bin2base64(sig63_b64, sizeof sig63_b64, sig63, sizeof sig63,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(bad, sizeof bad, "%.*s.%s", (int)(dot - key), key, sig63_b64);
    EXPECT(bad, DRAY_ELIC_SIG_LEN);
    /* Padded signature is not the no-padding variant. */
    snprintf(bad, sizeof bad, "%s==", key);
    EXPECT(bad, DRAY_ELIC_SIG_B64);

    /* Signed, but not JSON, not an object, or with duplicate keys. */
    sign_raw(test_sk, "not json", bad);
    EXPECT(bad, DRAY_ELIC_JSON);
    sign_raw(test_sk, "[1,2,3]", bad);
    EXPECT(bad, DRAY_ELIC_JSON);
    sign_raw(test_sk, "", bad);
    EXPECT(bad, DRAY_ELIC_PAYLOAD_B64); /* empty payload field */
    snprintf(bad, sizeof bad,
             "{\"exp\":%lld,\"iat\":1,\"kid\":\"%s\",\"lid\":\"a\",\"sub\":\"A\",\"tier\":\"pro\","
             "\"tier\":\"enterprise\"}",
             (long long)END_2026, test_kid);
    sign_raw(test_sk, bad, key);
    EXPECT(key, DRAY_ELIC_JSON);
#undef EXPECT
}

/* ---- who signed it ------------------------------------------------------- */

static void
test_unknown_kid(void **state)
{
    char key[KEYBUF], want[128];
    dray_license_info info;
    int rc;

    (void)state;
    issue(other_sk, other_kid, NULL, NULL, KEEP, KEEP, key);
    rc = dray_license_verify(key, strlen(key), NOW, &info);
    assert_int_equal(rc, DRAY_ELIC_UNKNOWN_KID);
    assert_int_equal(info.verified, 0);
    assert_string_equal(info.kid, other_kid);
    assert_string_equal(info.sub, ""); /* nothing untrusted is copied out */
    snprintf(want, sizeof want, "signed by unknown key %s; this build trusts %s", other_kid,
             test_kid);
    assert_msg(rc, &info, want);

    /* A key that only claims a trusted kid is a bad signature, not unknown. */
    issue(other_sk, test_kid, NULL, NULL, KEEP, KEEP, key);
    rc = dray_license_verify(key, strlen(key), NOW, &info);
    assert_int_equal(rc, DRAY_ELIC_BADSIG);
    assert_msg(rc, &info, "signature is invalid");

    /* Unreadable payload under a foreign signature: bad signature. */
    sign_raw(other_sk, "garbage", key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), DRAY_ELIC_BADSIG);
}

static void
test_bad_signature(void **state)
{
    char key[KEYBUF], other[KEYBUF], bad[KEYBUF];
    dray_license_info info;
    char *dot;

    (void)state;
    /* Genuine payload, signature swapped for another valid one over other bytes. */
    issue_ok(NULL, KEEP, KEEP, key);
    issue_ok("{\"tier\":\"enterprise\"}", KEEP, KEEP, other);
    dot = strrchr(key, '.');
    snprintf(bad, sizeof bad, "%.*s%s", (int)(dot - key), key, strrchr(other, '.'));
    assert_int_equal(dray_license_verify(bad, strlen(bad), NOW, &info), DRAY_ELIC_BADSIG);
    assert_int_equal(info.verified, 0);
    /* Upgraded payload under the original signature. */
    snprintf(bad, sizeof bad, "%.*s%s", (int)(strrchr(other, '.') - other), other, dot);
    assert_int_equal(dray_license_verify(bad, strlen(bad), NOW, &info), DRAY_ELIC_BADSIG);
}

static void
test_keyring(void **state)
{
    dray_license_trusted_key keys[2];
    dray__license_keyring ring = {keys, 2, NULL, 0, 0};
    char key[KEYBUF];
    dray_license_info info;

    (void)state;
    memcpy(keys[0].pk, other_pk, sizeof other_pk);
    memcpy(keys[0].kid, other_kid, sizeof other_kid);
    memcpy(keys[1].pk, test_pk, sizeof test_pk);
    memcpy(keys[1].kid, test_kid, sizeof test_kid);
    /* Either trusted key verifies; the revoked lid is not revoked in this ring. */
    issue_ok("{\"lid\":\"" DRAY_TEST_REVOKED_LID "\"}", KEEP, KEEP, key);
    assert_int_equal(dray__license_verify_with(&ring, key, strlen(key), NOW, &info), 0);
    assert_string_equal(info.kid, test_kid);
    issue(other_sk, other_kid, NULL, NULL, KEEP, KEEP, key);
    assert_int_equal(dray__license_verify_with(&ring, key, strlen(key), NOW, &info), 0);
    assert_string_equal(info.kid, other_kid);
    assert_non_null(strstr(info.trusted, other_kid));
    assert_non_null(strstr(info.trusted, test_kid));
    /* Empty ring: everything is unknown, and the message says so. */
    ring.nkeys = 0;
    assert_int_equal(dray__license_verify_with(&ring, key, strlen(key), NOW, &info),
                     DRAY_ELIC_UNKNOWN_KID);
    assert_msg(DRAY_ELIC_UNKNOWN_KID, &info, "this build trusts no keys");
    /* Out-of-range clocks are refused, not misread. */
    ring.nkeys = 2;
    assert_int_equal(dray__license_verify_with(&ring, key, strlen(key), -1, &info),
                     DRAY_ELIC_INVAL);
    assert_int_equal(dray__license_verify_with(&ring, key, strlen(key), INT64_MAX, &info),
                     DRAY_ELIC_INVAL);
}

static void
test_whitespace_accepted(void **state)
{
    char key[KEYBUF], spaced[KEYBUF * 3];
    dray_license_info info;
    size_t i, j = 0, len;

    (void)state;
    issue_ok(NULL, KEEP, KEEP, key);
    len = strlen(key);
    spaced[j++] = ' ';
    spaced[j++] = '\t';
    for (i = 0; i < len; i++) {
        spaced[j++] = key[i];
        if (i % 60 == 59) {
            spaced[j++] = '\r';
            spaced[j++] = '\n';
        }
        if (i % 97 == 13)
            spaced[j++] = ' ';
    }
    spaced[j++] = '\n';
    spaced[j] = '\0';
    assert_int_equal(dray_license_verify(spaced, j, NOW, &info), 0);
    assert_string_equal(info.sub, "ACME Corp");
    /* Not NUL-terminated: only len bytes are read. */
    memcpy(spaced, key, len);
    spaced[len] = 'X';
    assert_int_equal(dray_license_verify(spaced, len, NOW, &info), 0);
}

/* ---- entitlement --------------------------------------------------------- */

static void
test_tiers(void **state)
{
    char key[KEYBUF];
    dray_license_info info;
    int rc;

    (void)state;
    issue_ok(NULL, KEEP, KEEP, key); /* pro */
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), 0);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_NONE, 0), 0);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, 0), 0);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, DRAY_LICENSE_F_BATCHES), 0);
    rc = dray_license_check(&info, DRAY_LICENSE_TIER_ENTERPRISE, 0);
    assert_int_equal(rc, DRAY_ELIC_WRONG_TIER);
    assert_msg(rc, &info, "license for ACME Corp is pro; this module needs enterprise");
    /* A pro key does not unlock enterprise features, even via the feature check. */
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, DRAY_LICENSE_F_PERIODIC),
                     DRAY_ELIC_MISSING_FEATURE);

    issue_ok("{\"tier\":\"enterprise\"}", KEEP, KEEP, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), 0);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, DRAY_LICENSE_F_BATCHES), 0);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_ENTERPRISE, 0), 0);
    assert_int_equal(
        dray_license_check(&info, DRAY_LICENSE_TIER_ENTERPRISE, DRAY_LICENSE_F_RATE_LIMIT), 0);
    assert_int_equal(dray_license_check(&info, (dray_license_tier)7, 0), DRAY_ELIC_INVAL);
}

static void
test_features(void **state)
{
    char key[KEYBUF];
    dray_license_info info;
    int rc;

    (void)state;
    issue_ok("{\"features\":[\"batches\"]}", KEEP, KEEP, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), 0);
    assert_int_equal(info.features_listed, 1);
    assert_int_equal(info.features, DRAY_LICENSE_F_BATCHES);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, DRAY_LICENSE_F_BATCHES), 0);
    rc = dray_license_check(&info, DRAY_LICENSE_TIER_PRO, DRAY_LICENSE_F_RELIABLE_FETCH);
    assert_int_equal(rc, DRAY_ELIC_MISSING_FEATURE);
    assert_msg(rc, &info, "does not include reliable_fetch (it includes: batches)");

    issue_ok("{\"tier\":\"enterprise\",\"features\":[\"rate_limit\",\"periodic\"]}", KEEP, KEEP,
             key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), 0);
    assert_int_equal(
        dray_license_check(&info, DRAY_LICENSE_TIER_ENTERPRISE, DRAY_LICENSE_F_PERIODIC), 0);
    assert_int_equal(
        dray_license_check(&info, DRAY_LICENSE_TIER_ENTERPRISE, DRAY_LICENSE_F_UNIQUE_JOBS),
        DRAY_ELIC_MISSING_FEATURE);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, DRAY_LICENSE_F_BATCHES),
                     DRAY_ELIC_MISSING_FEATURE);
}

static void
test_check_refuses(void **state)
{
    char key[KEYBUF];
    dray_license_info info;
    int rc;

    (void)state;
    issue_ok(NULL, KEEP, NOW - 40 * DAY, key);
    rc = dray_license_verify(key, strlen(key), NOW, &info);
    assert_int_equal(rc, DRAY_ELIC_LAPSED);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, 0), DRAY_ELIC_LAPSED);
    assert_msg(DRAY_ELIC_LAPSED, &info, "expired on 2025-11-22, grace ended 2025-12-22");

    issue_ok("{\"lid\":\"" DRAY_TEST_REVOKED_LID "\"}", KEEP, KEEP, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), DRAY_ELIC_REVOKED);
    assert_int_equal(info.revoked, 1);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, 0), DRAY_ELIC_REVOKED);
    assert_msg(DRAY_ELIC_REVOKED, &info, DRAY_TEST_REVOKED_LID);

    issue_ok(NULL, NOW + 3 * DAY, KEEP, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), DRAY_ELIC_NOT_YET_VALID);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, 0), DRAY_ELIC_NOT_YET_VALID);

    /* Grace still works: check passes, the message shouts. */
    issue_ok(NULL, KEEP, NOW - DAY, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), 0);
    assert_int_equal(info.state, DRAY_LICENSE_GRACE);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_PRO, 0), 0);

    /* An unverified result never passes. */
    issue(other_sk, other_kid, NULL, NULL, KEEP, KEEP, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), DRAY_ELIC_UNKNOWN_KID);
    assert_int_equal(dray_license_check(&info, DRAY_LICENSE_TIER_NONE, 0), DRAY_ELIC_INVAL);
}

static void
test_updates_until(void **state)
{
    char key[KEYBUF], patch[64];
    dray_license_info info;
    int rc;

    (void)state;
    if (dray_license_build_time == 0)
        TEST_SKIP();
    snprintf(patch, sizeof patch, "{\"upd\":%lld}", (long long)(dray_license_build_time - DAY));
    issue_ok(patch, KEEP, 0, key);
    rc = dray_license_verify(key, strlen(key), NOW, &info);
    assert_int_equal(rc, DRAY_ELIC_UPDATES);
    assert_msg(rc, &info, "covers builds up to");
    snprintf(patch, sizeof patch, "{\"upd\":%lld}", (long long)dray_license_build_time);
    issue_ok(patch, KEEP, 0, key);
    assert_int_equal(dray_license_verify(key, strlen(key), NOW, &info), 0);
    assert_msg(0, &info, "perpetual, updates until");
}

/* ---- messages, names, helpers -------------------------------------------- */

static void
test_codes_distinct(void **state)
{
    static const int codes[] = {
#define CODE(name, val, text) DRAY_ELIC_##name,
        DRAY_LICENSE_ERRNO_MAP(CODE)
#undef CODE
    };
    size_t i, j, n = sizeof codes / sizeof codes[0];

    (void)state;
    assert_true(n >= 20);
    for (i = 0; i < n; i++) {
        assert_true(codes[i] < 0);
        assert_string_not_equal(dray_license_strerror(codes[i]), "unknown license error");
        assert_string_not_equal(dray_license_err_name(codes[i]), "ELIC_UNKNOWN");
        for (j = 0; j < i; j++) {
            assert_int_not_equal(codes[i], codes[j]);
            assert_string_not_equal(dray_license_strerror(codes[i]),
                                    dray_license_strerror(codes[j]));
        }
    }
    assert_string_equal(dray_license_err_name(DRAY_ELIC_BADSIG), "ELIC_BADSIG");
    assert_string_equal(dray_license_strerror(12345), "unknown license error");
    assert_string_equal(dray_license_strerror(0), "license key accepted");
}

static void
test_describe_bounds(void **state)
{
    char key[KEYBUF], small[8];
    dray_license_info info;
    size_t sizes[] = {1, 2, 8}, i;
    int rc;

    (void)state;
    issue_ok(NULL, KEEP, KEEP, key);
    rc = dray_license_verify(key, strlen(key), NOW, &info);
    assert_int_equal(rc, 0);
    dray_license_describe(rc, &info, small, 0); /* no write at all */
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(small, 'Z', sizeof small);
        dray_license_describe(rc, &info, small, sizes[i]);
        assert_int_equal(strlen(small), sizes[i] - 1);
    }
    /* NULL info for an error is fine. */
    dray_license_describe(DRAY_ELIC_MISSING, NULL, small, sizeof small);
    dray_license_describe(DRAY_ELIC_UNKNOWN_KID, NULL, small, sizeof small);
    dray_license_describe(-999, NULL, small, sizeof small);
    assert_true(strlen(small) < sizeof small);
}

static void
test_names(void **state)
{
    dray_license_tier t;
    uint32_t f;

    (void)state;
    assert_int_equal(dray_license_tier_parse("pro", &t), 0);
    assert_int_equal(t, DRAY_LICENSE_TIER_PRO);
    assert_int_equal(dray_license_tier_parse("enterprise", &t), 0);
    assert_int_equal(t, DRAY_LICENSE_TIER_ENTERPRISE);
    assert_int_equal(dray_license_tier_parse("Pro", &t), DRAY_ELIC_INVAL);
    assert_int_equal(dray_license_feature_parse("unique_jobs", &f), 0);
    assert_int_equal(f, DRAY_LICENSE_F_UNIQUE_JOBS);
    assert_int_equal(dray_license_feature_parse("nope", &f), DRAY_ELIC_INVAL);
    assert_string_equal(dray_license_feature_name(DRAY_LICENSE_F_ENCRYPTION), "encryption");
    assert_null(dray_license_feature_name(DRAY_LICENSE_F_BATCHES | DRAY_LICENSE_F_PERIODIC));
    assert_string_equal(dray_license_tier_name(DRAY_LICENSE_TIER_ENTERPRISE), "enterprise");
    assert_string_equal(dray_license_state_name(DRAY_LICENSE_GRACE), "grace");
}

static void
test_dates(void **state)
{
    int64_t t;
    char d[DRAY__LICENSE_DATE_BYTES];

    (void)state;
    assert_int_equal(dray__license_parse_date("2026-01-01", &t), 0);
    assert_int_equal(t, NOW);
    assert_int_equal(dray__license_parse_date("2024-02-29", &t), 0);
    assert_int_equal(dray__license_parse_date("2026-02-29", &t), -1);
    assert_int_equal(dray__license_parse_date("2100-02-29", &t), -1);
    assert_int_equal(dray__license_parse_date("2000-02-29", &t), 0);
    assert_int_equal(dray__license_parse_date("2026-13-01", &t), -1);
    assert_int_equal(dray__license_parse_date("2026-1-01", &t), -1);
    assert_int_equal(dray__license_parse_date("1767225600", &t), 0);
    assert_int_equal(t, NOW);
    assert_int_equal(dray__license_parse_date("", &t), -1);
    assert_int_equal(dray__license_parse_date("99999999999999", &t), -1);
    dray__license_format_date(END_2026, d);
    assert_string_equal(d, "2026-12-31");
    dray__license_format_date(0, d);
    assert_string_equal(d, "1970-01-01");
}

static void
test_key_files(void **state)
{
    unsigned char pk[DRAY_LICENSE_PK_BYTES], sk[DRAY__LICENSE_SK_BYTES];
    char err[DRAY__LICENSE_ERR_BYTES], kid[DRAY_LICENSE_KID_BYTES], kid2[DRAY_LICENSE_KID_BYTES];
    char dir[] = "/tmp/dray-license-test-XXXXXX", path[256];
    struct stat st;

    (void)state;
    /* The table compiled into this test holds exactly the throwaway key. */
    assert_int_equal(dray_license_trusted_keys_count, 1);
    assert_string_equal(dray_license_trusted_keys[0].kid, test_kid);
    assert_memory_equal(dray_license_trusted_keys[0].pk, test_pk, sizeof test_pk);
    assert_int_equal(dray__license_read_pub(DRAY_TEST_LICENSE_PUB, pk, err, sizeof err), 0);
    assert_memory_equal(pk, test_pk, sizeof pk);
    assert_int_equal(
        dray__license_read_secret(DRAY_TEST_LICENSE_KEY, "wrong", 5, sk, pk, err, sizeof err), -1);
    assert_non_null(strstr(err, "wrong passphrase"));
    assert_int_equal(dray__license_read_pub(DRAY_TEST_LICENSE_KEY, pk, err, sizeof err), -1);

    assert_non_null(mkdtemp(dir));
    assert_int_equal(dray__license_keygen(dir, "k", "pw", 2, kid, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/k.key", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(dray__license_keygen(dir, "k", "pw", 2, kid2, err, sizeof err), -1);
    assert_non_null(strstr(err, "refusing to overwrite"));
    assert_int_equal(dray__license_read_secret(path, "pw", 2, sk, pk, err, sizeof err), 0);
    dray__license_kid(pk, kid2);
    assert_string_equal(kid, kid2);
    sodium_memzero(sk, sizeof sk);
    assert_int_equal(dray__license_keygen(dir, "../evil", "pw", 2, kid, err, sizeof err), -1);
    unlink(path);
    snprintf(path, sizeof path, "%s/k.pub", dir);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

/* Thread body for test_error_helper: errno texts must not mix across threads. */
static void *
syserr_thread(void *arg)
{
    int e = *(int *)arg, bad = 0;
    char buf[DRAY__LICENSE_ERRNO_BYTES], want[DRAY__LICENSE_ERRNO_BYTES];
    snprintf(want, sizeof want, "%s", dray__license_syserr(e, buf));
    for (int i = 0; i < 20000; i++)
        bad += strcmp(dray__license_syserr(e, buf), want) != 0;
    return (void *)(intptr_t)bad;
}

/* The layer's error helper: errno texts unchanged (byte for byte what
 * strerror gave), safe truncation, NULL buffers, several threads at once. */
static void
test_error_helper(void **state)
{
    char err[DRAY__LICENSE_ERR_BYTES], kid[DRAY_LICENSE_KID_BYTES], small[8];
    unsigned char pk[DRAY_LICENSE_PK_BYTES];
    char eb[DRAY__LICENSE_ERRNO_BYTES];

    (void)state;
    assert_int_equal(dray__license_read_pub("/nonexistent/dray.pub", pk, err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/dray.pub: No such file or directory");
    assert_int_equal(dray__license_keygen("/nonexistent", "k", "pw", 2, kid, err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/k.key: No such file or directory");
    assert_int_equal(dray__license_fail(small, sizeof small, "%s", "abcdefghij"), -1);
    assert_string_equal(small, "abcdefg");
    assert_int_equal(dray__license_fail(NULL, 0, "%s", "nowhere"), -1);
    assert_string_equal(dray__license_syserr(ENOENT, eb), "No such file or directory");
    assert_string_equal(dray__license_syserr(99999, eb), "Unknown error 99999");

    int errs[4] = {ENOENT, EACCES, 99998, 99999};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, syserr_thread, &errs[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_int_equal((intptr_t)bad, 0);
    }
}

static void
test_decode_unverified(void **state)
{
    char key[KEYBUF];
    dray_license_info info;

    (void)state;
    issue(other_sk, other_kid, "{\"sub\":\"Someone Else\"}", NULL, KEEP, KEEP, key);
    assert_int_equal(dray__license_decode_unverified(key, strlen(key), NOW, &info), 0);
    assert_int_equal(info.verified, 0);
    assert_string_equal(info.sub, "Someone Else");
    assert_string_equal(info.kid, other_kid);
    assert_int_equal(dray__license_decode_unverified("dray1.x", 7, NOW, &info), DRAY_ELIC_FIELDS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_every_byte_change_refused),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_empty_and_too_long),
        cmocka_unit_test(test_malformed_where),
        cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_keyring),
        cmocka_unit_test(test_whitespace_accepted),
        cmocka_unit_test(test_tiers),
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_check_refuses),
        cmocka_unit_test(test_updates_until),
        cmocka_unit_test(test_codes_distinct),
        cmocka_unit_test(test_describe_bounds),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_error_helper),
        cmocka_unit_test(test_decode_unverified),
    };

    return test_exit_code(cmocka_run_group_tests_name("license", tests, load_keys, wipe_keys));
}
