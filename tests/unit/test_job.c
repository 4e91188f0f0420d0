/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The job model: Ruby-written payloads round-trip without loss; every bad
 * input gets its own code and a message naming the field. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void
test_ruby_fixtures_round_trip(void **state)
{
    (void)state;
    const char *dir = DRAY_SOURCE_DIR "/tests/fixtures/sidekiq";
    DIR *d = opendir(dir);
    assert_non_null(d);
    int seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strstr(e->d_name, ".json"))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        char *buf = slurp(path, &len);
        dray_job *job;
        char err[256] = "";
        int rc = dray_job_parse(buf, len, 0, &job, err, sizeof err);
        if (rc)
            fail_msg("%s: %s", e->d_name, err);
        char *out;
        size_t outlen;
        assert_int_equal(dray_job_dump(job, &out, &outlen), 0);
        json_t *a = json_loadb(buf, len, 0, NULL);
        json_t *b = json_loadb(out, outlen, 0, NULL);
        assert_non_null(b);
        if (!json_equal(a, b))
            fail_msg("%s changed in a round trip:\n%s\n%s", e->d_name, buf, out);
        /* key order is kept, so the text is stable apart from float spelling */
        const char *ka, *kb;
        json_t *va;
        void *it = json_object_iter(b);
        json_object_foreach(a, ka, va)
        {
            (void)va;
            kb = json_object_iter_key(it);
            assert_string_equal(ka, kb);
            it = json_object_iter_next(b, it);
        }
        /* timestamps stay JSON reals (Sidekiq 6/7 readers need a '.') */
        json_t *ca = json_object_get(b, "created_at");
        assert_true(json_is_real(ca));
        assert_non_null(strstr(out, "\"created_at\":1"));
        assert_string_equal(dray_job_payload(job), buf);
        assert_int_equal(strlen(dray_job_jid(job)), 24);
        json_decref(a);
        json_decref(b);
        free(out);
        free(buf);
        dray_job_free(job);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 5);
}

static void
test_ruby_fields(void **state)
{
    (void)state;
    size_t len;
    char *buf = slurp(DRAY_SOURCE_DIR "/tests/fixtures/sidekiq/queue_critical_0.json", &len);
    dray_job *job;
    assert_int_equal(dray_job_parse(buf, len, 0, &job, NULL, 0), 0);
    assert_string_equal(dray_job_class(job), "Billing::InvoiceJob");
    assert_string_equal(dray_job_queue(job), "critical");
    json_t *args = dray_job_args(job);
    assert_int_equal(json_array_size(args), 4);
    assert_string_equal(json_string_value(json_array_get(args, 0)), "naïve café ✓ 日本語 🚀");
    assert_int_equal(json_integer_value(json_array_get(args, 1)), -42);
    assert_true(json_real_value(json_array_get(args, 2)) == 1.0e-7);
    assert_int_equal(json_integer_value(json_array_get(args, 3)), 12345678901234LL);
    assert_int_equal(json_integer_value(dray_job_get(job, "retry")), 3);
    assert_int_equal(json_integer_value(json_object_get(dray_job_get(job, "custom_ctx"), "tenant")),
                     7);
    assert_string_equal(json_string_value(dray_job_get(job, "bid")), "HxBtApqAroMAzw");
    assert_int_equal(dray_job_retry_count(job), -1);
    dray_job_free(job);
    free(buf);
    buf = slurp(DRAY_SOURCE_DIR "/tests/fixtures/sidekiq/retry_0.json", &len);
    assert_int_equal(dray_job_parse(buf, len, 0, &job, NULL, 0), 0);
    assert_int_equal(dray_job_retry_count(job), 1);
    assert_string_equal(json_string_value(dray_job_get(job, "error_class")), "NoMethodError");
    dray_job_free(job);
    free(buf);
}

typedef struct bad_case {
    const char *json;
    int code;
    const char *needle; /* must appear in the message */
} bad_case;

static void
test_bad_input(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"{\"class\":\"A\",\"args\":{}}", DRAY_EARGS, "args"},
        {"{\"class\":\"A\",\"args\":\"x\"}", DRAY_EARGS, "a string"},
        {"{\"class\":\"A\"}", DRAY_EARGS, "missing"},
        {"{\"args\":[]}", DRAY_ECLASS, "class"},
        {"{\"class\":\"\",\"args\":[]}", DRAY_ECLASS, "class"},
        {"{\"class\":5,\"args\":[]}", DRAY_ECLASS, "class"},
        {"{\"class\":\"A\",\"args\":[],\"queue\":\"\"}", DRAY_EQUEUE, "empty"},
        {"{\"class\":\"A\",\"args\":[],\"queue\":7}", DRAY_EQUEUE, "queue"},
        {"{\"class\":\"A\",\"args\":[],\"queue\":\"a b\"}", DRAY_EQUEUE, "space"},
        {"{\"class\":\"A\",\"args\":[],\"jid\":\"\"}", DRAY_EJID, "jid"},
        {"{\"class\":\"A\",\"args\":[],\"jid\":\"a b\"}", DRAY_EJID, "jid"},
        {"{\"class\":\"A\",\"args\":[],\"jid\":7}", DRAY_EJID, "jid"},
        {"{\"class\":\"A\",\"args\":[],\"jid\":\"a\\u0000b\"}", DRAY_EJID, "jid"},
        {"{\"class\":\"A\",\"args\":[],\"retry_count\":18446744073709551616}", DRAY_EFIELD,
         "retry_count"},
        {"{\"class\":\"A\",\"args\":[],\"retry\":\"yes\"}", DRAY_ERETRY, "retry"},
        {"{\"class\":\"A\",\"args\":[],\"retry\":-1}", DRAY_ERETRY, "retry"},
        {"{\"class\":\"A\",\"args\":[],\"retry_count\":\"1\"}", DRAY_EFIELD, "retry_count"},
        {"{\"class\":\"A\",\"args\":[],\"created_at\":\"now\"}", DRAY_EFIELD, "created_at"},
        {"{\"class\":\"A\",\"args\":[],\"at\":null}", DRAY_EFIELD, "'at'"},
        {"[1,2]", DRAY_EJSON, "object"},
        {"{\"class\":\"A\",", DRAY_EJSON, "not json"},
        {"{\"class\":\"A\xff\",\"args\":[]}", DRAY_EUTF8, "utf-8"},
        {"", DRAY_EJSON, "not json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dray_job *job = (dray_job *)1;
        char err[256] = "";
        int rc = dray_job_parse(cases[i].json, strlen(cases[i].json), 0, &job, err, sizeof err);
        if (rc != cases[i].code || !strstr(err, cases[i].needle))
            fail_msg("case %zu %s: got %s (%s), want %s containing '%s'", i, cases[i].json,
                     dray_err_name(rc), err, dray_err_name(cases[i].code), cases[i].needle);
        assert_null(job);
    }
    /* queue name over the limit */
    char big[400];
    snprintf(big, sizeof big, "{\"class\":\"A\",\"args\":[],\"queue\":\"%0250d\"}", 0);
    char err[256];
    dray_job *job;
    assert_int_equal(dray_job_parse(big, strlen(big), 0, &job, err, sizeof err), DRAY_EQUEUE);
    assert_non_null(strstr(err, "limit"));
    /* payload over the size limit, checked before parsing */
    assert_int_equal(dray_job_parse(big, strlen(big), 100, &job, err, sizeof err), DRAY_ETOOBIG);
    assert_non_null(strstr(err, "limit is 100"));
}

static void
test_new_job(void **state)
{
    (void)state;
    dray_job *job;
    assert_int_equal(dray_job_new("", NULL, &job), DRAY_ECLASS);
    assert_int_equal(dray_job_new("A", json_object(), &job), DRAY_EARGS);
    assert_int_equal(dray_job_new("A", json_pack("[i,s]", 1, "x"), &job), 0);
    assert_string_equal(dray_job_class(job), "A");
    const char *jid = dray_job_jid(job);
    assert_int_equal(strlen(jid), 24);
    for (int i = 0; i < 24; i++)
        assert_non_null(strchr("0123456789abcdef", jid[i]));
    assert_true(json_is_real(dray_job_get(job, "created_at")));
    assert_string_equal(dray_job_queue(job), "default");
    assert_int_equal(dray_job_validate(job, 0, NULL, 0), 0);
    assert_int_equal(dray_job_set(job, "custom", json_string("v")), 0);
    char *out;
    assert_int_equal(dray_job_dump(job, &out, NULL), 0);
    assert_non_null(strstr(out, "\"custom\":\"v\""));
    free(out);
    /* in-memory validation catches bad fields and size */
    assert_int_equal(dray_job_set(job, "retry", json_string("x")), 0);
    assert_int_equal(dray_job_validate(job, 0, NULL, 0), DRAY_ERETRY);
    assert_int_equal(dray_job_set(job, "retry", json_true()), 0);
    assert_int_equal(dray_job_validate(job, 10, NULL, 0), DRAY_ETOOBIG);
    dray_job_free(job);
    /* jids differ */
    char a[DRAY_JID_BYTES], b[DRAY_JID_BYTES];
    dray_jid_new(a);
    dray_jid_new(b);
    assert_string_not_equal(a, b);
}

static void
test_errors_named(void **state)
{
    (void)state;
    assert_string_equal(dray_err_name(DRAY_EARGS), "EARGS");
    assert_string_equal(dray_strerror(DRAY_ETLS), "bad TLS settings (CA, certificate or key)");
    assert_string_equal(dray_strerror(0), "success");
    assert_string_equal(dray_err_name(-999), "EUNKNOWN");
}

static void
test_alloc_failure(void **state)
{
    (void)state;
    /* Every allocation failing in turn: parse reports ENOMEM or succeeds,
     * never crashes or leaks (ASan build checks the leak part). */
    const char *j = "{\"class\":\"A\",\"args\":[1]}";
    int ok = 0, oom = 0;
    for (long n = 0; n < 10; n++) {
        dray__alloc_fail_after(n);
        dray_job *job;
        int rc = dray_job_parse(j, strlen(j), 0, &job, NULL, 0);
        dray__alloc_fail_after(-1);
        if (rc == 0) {
            ok++;
            dray_job_free(job);
        } else {
            assert_int_equal(rc, DRAY_ENOMEM);
            oom++;
        }
    }
    assert_true(oom >= 1);
    assert_true(ok >= 1);
}

/* Ruby bignums: parsed, readable as digits, dumped byte for byte. */
static void
test_bigints(void **state)
{
    (void)state;
    static const char payload[] =
        "{\"class\":\"Big\",\"args\":[18446744073709551616,-1180591620717411303424,"
        "123456789012345678901234567890,9223372036854775807,-9223372036854775808,"
        "9223372036854775808,2.5,\"18446744073709551616\",{\"n\":[99999999999999999999]}],"
        "\"jid\":\"abc\",\"queue\":\"q\",\"created_at\":1700000000.5}";
    dray_job *job;
    char err[256] = "";
    int rc = dray_job_parse(payload, strlen(payload), 0, &job, err, sizeof err);
    if (rc)
        fail_msg("parse: %s", err);
    json_t *a = dray_job_args(job);
    assert_string_equal(dray_json_bigint(json_array_get(a, 0)), "18446744073709551616");
    assert_string_equal(dray_json_bigint(json_array_get(a, 1)), "-1180591620717411303424");
    assert_string_equal(dray_json_bigint(json_array_get(a, 2)), "123456789012345678901234567890");
    assert_true(json_is_integer(json_array_get(a, 3)));
    assert_int_equal(json_integer_value(json_array_get(a, 4)), INT64_MIN);
    assert_string_equal(dray_json_bigint(json_array_get(a, 5)), "9223372036854775808");
    assert_true(json_is_real(json_array_get(a, 6)));
    assert_null(dray_json_bigint(json_array_get(a, 7))); /* a string stays a string */
    assert_string_equal(json_string_value(json_array_get(a, 7)), "18446744073709551616");
    assert_string_equal(
        dray_json_bigint(json_array_get(json_object_get(json_array_get(a, 8), "n"), 0)),
        "99999999999999999999");
    assert_string_equal(dray_job_jid(job), "abc");
    char *out;
    size_t len;
    assert_int_equal(dray_job_dump(job, &out, &len), 0);
    assert_int_equal(len, strlen(payload));
    assert_string_equal(out, payload);
    free(out);
    /* a payload that spells a marker with a guessed tag stays a string */
    static const char fake[] =
        "{\"class\":\"F\",\"args\":[\"\\u0000dray-bigint-0000000000000000:12\"]}";
    dray_job *fj;
    assert_int_equal(dray_job_parse(fake, strlen(fake), 0, &fj, err, sizeof err), 0);
    assert_null(dray_json_bigint(json_array_get(dray_job_args(fj), 0)));
    assert_int_equal(dray_job_dump(fj, &out, &len), 0);
    assert_string_equal(out, fake);
    free(out);
    dray_job_free(fj);
    dray_job_free(job);
}

/* ---- property: integers keep their digits ----------------------------------- */

typedef struct gen {
    char s[4096];
    size_t n;
    unsigned seed;
} gen;

static void
gput(gen *g, const char *t)
{
    size_t k = strlen(t);
    if (g->n + k < sizeof g->s) {
        memcpy(g->s + g->n, t, k);
        g->n += k;
    }
}

static void
gnum(gen *g)
{
    char b[64];
    int p = 0, k = 1 + rand_r(&g->seed) % 30;
    if (rand_r(&g->seed) % 2)
        b[p++] = '-';
    b[p++] = (char)('1' + rand_r(&g->seed) % 9);
    for (int i = 1; i < k; i++)
        b[p++] = (char)('0' + rand_r(&g->seed) % 10);
    if (rand_r(&g->seed) % 5 == 0) {
        b[p++] = '.';
        b[p++] = '5';
    }
    b[p] = '\0';
    gput(g, b);
}

static void
gval(gen *g, int depth)
{
    static const char *const parts[] = {
        "a", "\\\"", "\\\\", "9223372036854775808", "\\u0000", "\\u0000dray-bigint-", ":", ","};
    int r = rand_r(&g->seed) % (depth > 3 ? 2 : 4);
    if (r == 0) {
        gnum(g);
    } else if (r == 1) {
        gput(g, "\"");
        for (int i = rand_r(&g->seed) % 4; i > 0; i--)
            gput(g, parts[rand_r(&g->seed) % 8]);
        gput(g, "\"");
    } else {
        bool obj = r == 3;
        gput(g, obj ? "{" : "[");
        for (int i = 0, k = rand_r(&g->seed) % 4; i < k; i++) {
            char key[16];
            snprintf(key, sizeof key, "%s\"k%d\":", i ? "," : "", i);
            if (obj)
                gput(g, key);
            else if (i)
                gput(g, ",");
            gval(g, depth + 1);
        }
        gput(g, obj ? "}" : "]");
    }
}

/* The integer literals outside strings of s, each followed by '|'. */
static void
int_tokens(const char *s, size_t n, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            i++;
        } else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
            size_t st = i++;
            while (i < n && s[i] >= '0' && s[i] <= '9')
                i++;
            bool real = i < n && (s[i] == '.' || s[i] == 'e' || s[i] == 'E');
            size_t en = i;
            while (i < n && s[i] && strchr(".eE+-0123456789", s[i]))
                i++;
            if (!real && w + (en - st) + 2 < cap) {
                memcpy(out + w, s + st, en - st);
                w += en - st;
                out[w++] = '|';
            }
        } else {
            i++;
        }
    }
    out[w] = '\0';
}

/* Random payloads with integers of 1-30 digits, reals, and strings that hold
 * digits, escapes and marker look-alikes: every integer comes back digit for
 * digit, no marker leaks, and a second round trip changes nothing. */
static void
test_bigint_round_trip_property(void **state)
{
    (void)state;
    gen g = {.seed = 20261207};
    static char a[4096], b[4096];
    int longs = 0;
    for (int it = 0; it < 20000; it++) {
        g.n = 0;
        gput(&g, "{\"class\":\"A\",\"args\":[");
        for (int i = 0, k = rand_r(&g.seed) % 6; i < k; i++) {
            if (i)
                gput(&g, ",");
            gval(&g, 0);
        }
        gput(&g, "]}");
        json_t *o = dray__json_load(g.s, g.n, NULL);
        if (!o)
            fail_msg("generated payload refused: %.*s", (int)g.n, g.s);
        size_t l1, l2;
        char *d1 = dray__json_dump(o, &l1);
        assert_non_null(d1);
        json_t *o2 = dray__json_load(d1, l1, NULL);
        assert_non_null(o2);
        char *d2 = dray__json_dump(o2, &l2);
        assert_string_equal(d1, d2);
        int_tokens(g.s, g.n, a, sizeof a);
        int_tokens(d1, l1, b, sizeof b);
        if (strcmp(a, b))
            fail_msg("digits changed:\n%.*s\n%s", (int)g.n, g.s, d1);
        longs += strlen(a) > 25;
        free(d1);
        free(d2);
        json_decref(o);
        json_decref(o2);
    }
    assert_true(longs > 1000); /* the generator does make big integers */
}

/* jids written by other Sidekiq clients run. */
static void
test_foreign_jids(void **state)
{
    (void)state;
    static const char *const jids[] = {"abc", "0f8fad5b-d9cb-469f-a165-70867728950e",
                                       "0123456789abcdef0123456789abcdef",
                                       "ABCDEF0123456789abcdef01", "job:42"};
    for (size_t i = 0; i < sizeof jids / sizeof *jids; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"class\":\"A\",\"args\":[],\"jid\":\"%s\"}", jids[i]);
        dray_job *job;
        char err[256] = "";
        if (dray_job_parse(buf, strlen(buf), 0, &job, err, sizeof err))
            fail_msg("jid %s refused: %s", jids[i], err);
        assert_string_equal(dray_job_jid(job), jids[i]);
        dray_job_free(job);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bigints),
        cmocka_unit_test(test_foreign_jids),
        cmocka_unit_test(test_bigint_round_trip_property),
        cmocka_unit_test(test_ruby_fixtures_round_trip),
        cmocka_unit_test(test_ruby_fields),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_new_job),
        cmocka_unit_test(test_errors_named),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
