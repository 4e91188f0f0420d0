/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Fuzz the job payload parser and what a worker reads from a parsed job
 * before its handler runs.
 *
 * Each input is a payload as fetched from a queue. Invariants:
 *   - a refusal is a DRAY_E* code with a message, and leaves *out NULL;
 *   - a parsed job has a non-empty NUL-free class, an args array, a jid and
 *     queue that pass their own checks, and keeps the exact bytes fetched;
 *   - dumped and parsed again it is the same job (class, jid, queue, args,
 *     every field), bignums included, and dumping is stable;
 *   - the timestamp, timeout, backtrace and retry readers give finite values
 *     in their documented ranges;
 *   - error_backtrace written for it decodes (base64, inflate, json) back to
 *     the lines given, as Sidekiq's reader does.
 *   - a bignum read back (dray_json_bigint) is an integer literal outside
 *     int64, never other text.
 * The bignum marker is random per process; a seed spells it @@BIGINT@@,
 * replaced by this process's marker (JSON-escaped), so forged markers are
 * reproducible. Shared driver and checks: fuzz_driver.h.
 */
#include <limits.h>
#include <math.h>

#include <sodium.h>
#include <zlib.h>

#include "fuzz_driver.h"
#include "internal.h"
#include "server.h"

#define LINES_MAX 16             /* backtrace lines taken from args */
#define BIGINT_SEED "@@BIGINT@@" /* in a seed: this process's bignum marker */

/* This process's bignum marker as it is written inside a JSON string
 * ("\u0000dray-bigint-<tag>:"), learnt by loading a bignum. */
static const char *
bigint_marker(void)
{
    static char mark[64];
    if (mark[0])
        return mark;
    json_t *v = dray__json_load("[123456789012345678901234567890]", 32, NULL);
    const char *s = json_string_value(json_array_get(v, 0));
    size_t n = json_string_length(json_array_get(v, 0));
    FUZZ_ASSERT(s && n > 31 && n - 30 + 6 < sizeof mark && s[0] == '\0', "no bignum marker");
    snprintf(mark, sizeof mark, "\\u0000%.*s", (int)(n - 30 - 1), s + 1);
    json_decref(v);
    return mark;
}

/* data with every BIGINT_SEED replaced by the marker; malloc'ed, length in *len. */
static char *
with_marker(const uint8_t *data, size_t size, size_t *len)
{
    const char *mark = bigint_marker();
    size_t ml = strlen(mark), sl = strlen(BIGINT_SEED);
    char *out = malloc(size / sl * ml + size + 1), *w = out;
    FUZZ_ASSERT(out != NULL, "oom");
    for (size_t i = 0; i < size;) {
        if (size - i >= sl && !memcmp(data + i, BIGINT_SEED, sl)) {
            memcpy(w, mark, ml), w += ml, i += sl;
            continue;
        }
        *w++ = (char)data[i++];
    }
    *len = (size_t)(w - out);
    return out;
}

/* Every bignum in v (recursively) reads back as an out-of-int64 literal. */
static void
check_bigints(const json_t *v)
{
    const char *d = dray_json_bigint(v);
    if (d) {
        const char *p = d + (*d == '-');
        size_t n = strspn(p, "0123456789");
        FUZZ_ASSERT(n >= 19 && p[n] == '\0', "bignum read back as '%s'", d);
    }
    size_t i;
    const char *k;
    json_t *x;
    if (json_is_array(v))
        json_array_foreach(v, i, x) check_bigints(x);
    else if (json_is_object(v))
        json_object_foreach((json_t *)v, k, x) check_bigints(x);
}

/* The exact bytes of dray__json_dump(v); malloc'ed. */
static char *
dump(const json_t *v, size_t *len)
{
    char *s = dray__json_dump(v, len);
    FUZZ_ASSERT(s != NULL, "dray__json_dump failed");
    FUZZ_ASSERT(strlen(s) == *len, "dump length %zu but strlen %zu", *len, strlen(s));
    return s;
}

/* A parsed job's fields are what check_fields promised. */
static void
check_job(const dray_job *job, const uint8_t *data, size_t size)
{
    const char *klass = dray_job_class(job);
    json_t *kv = dray_job_get(job, "class");
    FUZZ_ASSERT(json_is_string(kv) && klass[0] != '\0', "class empty or not a string");
    FUZZ_ASSERT(strlen(klass) == json_string_length(kv), "class contains a NUL");
    FUZZ_ASSERT(json_is_array(dray_job_args(job)), "args is not an array");
    const char *jid = dray_job_jid(job);
    if (dray_job_get(job, "jid")) {
        size_t n = strlen(jid);
        FUZZ_ASSERT(n >= 1 && n <= DRAY_JID_MAX, "jid of %zu bytes accepted", n);
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT((unsigned char)jid[i] > ' ' && (unsigned char)jid[i] < 0x7f,
                        "jid byte 0x%02x accepted", (unsigned char)jid[i]);
    }
    char why[256] = "";
    FUZZ_ASSERT(dray__queue_check(dray_job_queue(job), why, sizeof why) == 0,
                "queue '%s' accepted by parse, refused by the queue check: %s", dray_job_queue(job),
                why);
    FUZZ_ASSERT(job->payload_len == size && memcmp(job->payload, data, size) == 0,
                "the raw payload was not kept as fetched");
    FUZZ_ASSERT(dray_job_validate(job, 0, why, sizeof why) == 0 ||
                    dray_job_validate(job, 0, why, sizeof why) == DRAY_ETOOBIG,
                "a parsed job fails validation: %s", why);
}

/* Dump, parse again, compare: what a retry or a requeue writes back. */
static void
check_round_trip(const dray_job *job)
{
    size_t len, len2;
    char *s = dump(dray_job_json(job), &len);
    dray_job *again = NULL;
    char why[256] = "";
    int rc = dray_job_parse(s, len, SIZE_MAX, &again, why, sizeof why);
    FUZZ_ASSERT(rc == 0, "a parsed job, dumped, does not parse again (%s: %s): %s",
                dray_err_name(rc), why, s);
    FUZZ_ASSERT(!strcmp(dray_job_class(job), dray_job_class(again)), "class changed");
    FUZZ_ASSERT(!strcmp(dray_job_jid(job), dray_job_jid(again)), "jid changed");
    FUZZ_ASSERT(!strcmp(dray_job_queue(job), dray_job_queue(again)), "queue changed");
    FUZZ_ASSERT(json_equal(dray_job_args(job), dray_job_args(again)), "args changed: %s", s);
    FUZZ_ASSERT(json_equal(dray_job_json(job), dray_job_json(again)), "fields changed: %s", s);
    char *s2 = dump(dray_job_json(again), &len2);
    FUZZ_ASSERT(len == len2 && !memcmp(s, s2, len), "dump is not stable: %s then %s", s, s2);
    free(s2);
    free(s);
    dray_job_free(again);
}

/* The readers of a worker and of the failure path, on this job. */
static void
check_readers(const dray_job *job)
{
    static const char *const times[] = {"created_at", "enqueued_at", "at", "failed_at",
                                        "retried_at"};
    for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
        json_t *v = dray_job_get(job, times[i]);
        double t = dray_time_from_json(v);
        FUZZ_ASSERT(isfinite(t), "%s read as %g", times[i], t);
        if (!v)
            FUZZ_ASSERT(t == 0, "absent %s read as %g", times[i], t);
        /* an epoch read back in seconds stays within 1e11 s either way */
        FUZZ_ASSERT(fabs(t) <= fabs(json_number_value(v)), "%s grew when read", times[i]);
    }
    double timeout = dray__job_timeout(job, NULL);
    FUZZ_ASSERT(timeout >= 0 && isfinite(timeout), "timeout read as %g", timeout);
    int want = dray__backtrace_want(job);
    FUZZ_ASSERT(want >= 0 && want <= DRAY_BACKTRACE_MAX, "backtrace want %d", want);
    json_t *rc = dray_job_get(job, "retry_count");
    int count = dray_job_retry_count(job);
    if (!rc)
        FUZZ_ASSERT(count == -1, "absent retry_count read as %d", count);
    else if (json_integer_value(rc) >= INT_MIN && json_integer_value(rc) <= INT_MAX)
        FUZZ_ASSERT(count == json_integer_value(rc), "retry_count %lld read as %d",
                    (long long)json_integer_value(rc), count);
    double d = dray__backoff_default(count);
    FUZZ_ASSERT(d >= 0 && d <= DRAY_BACKOFF_MAX_S, "default backoff %g for count %d", d, count);
}

/* Inflate error_backtrace as Sidekiq's reader does; new reference or NULL. */
static json_t *
backtrace_decode(const char *b64)
{
    size_t n = strlen(b64), zlen = 0;
    unsigned char *z = malloc(n + 1);
    FUZZ_ASSERT(z != NULL, "oom");
    FUZZ_ASSERT(
        sodium_base642bin(z, n + 1, b64, n, NULL, &zlen, NULL, sodium_base64_VARIANT_ORIGINAL) == 0,
        "error_backtrace is not base64: %s", b64);
    uLongf cap = 1 << 16;
    unsigned char *out = NULL;
    int zrc;
    do {
        cap *= 2;
        free(out);
        out = malloc(cap);
        FUZZ_ASSERT(out != NULL, "oom");
        uLongf olen = cap;
        zrc = uncompress(out, &olen, z, (uLong)zlen);
        if (zrc == Z_OK) {
            json_t *v = json_loadb((const char *)out, olen, JSON_ALLOW_NUL, NULL);
            free(out);
            free(z);
            return v;
        }
    } while (zrc == Z_BUF_ERROR && cap < (1u << 26));
    FUZZ_FAIL("error_backtrace does not inflate (zlib %d)", zrc);
}

/* Store a backtrace made of the job's string args and read it back. */
static void
check_backtrace(dray_job *job, int want)
{
    const char *lines[LINES_MAX];
    size_t n = 0, i;
    json_t *a;
    json_array_foreach(dray_job_args(job), i, a)
    {
        if (n < LINES_MAX && json_is_string(a))
            lines[n++] = json_string_value(a);
    }
    if (n == 0)
        lines[n++] = dray_job_class(job);
    if (want <= 0)
        want = DRAY_BACKTRACE_MAX;
    FUZZ_ASSERT(dray__backtrace_store(job, want, lines, n, NULL, 0) == 0, "backtrace_store failed");
    json_t *bt = dray_job_get(job, "error_backtrace");
    FUZZ_ASSERT(json_is_string(bt), "no error_backtrace written");
    json_t *got = backtrace_decode(json_string_value(bt));
    size_t expect = n < (size_t)want ? n : (size_t)want;
    FUZZ_ASSERT(json_is_array(got) && json_array_size(got) == expect,
                "error_backtrace holds %zu lines, not %zu", json_array_size(got), expect);
    for (i = 0; i < expect; i++) {
        const char *line = json_string_value(json_array_get(got, i));
        FUZZ_ASSERT(line && !strcmp(line, lines[i]), "backtrace line %zu changed", i);
    }
    json_decref(got);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char msg[256];
    dray_job *job = (dray_job *)1; /* must be NULLed on refusal */
    size_t len;
    char *text = with_marker(data, size, &len);

    memset(msg, 0, sizeof msg);
    int rc = dray_job_parse(text, len, 0, &job, msg, sizeof msg);
    if (rc) {
        fuzz_check_refusal("dray_job_parse", rc, msg, sizeof msg);
        FUZZ_ASSERT(job == NULL, "refused but *out was not NULLed");
        free(text);
        return 0;
    }
    FUZZ_ASSERT(job != NULL, "accepted without a job");
    check_job(job, (const uint8_t *)text, len);
    free(text);
    check_bigints(dray_job_json(job));
    check_round_trip(job);
    check_readers(job);
    check_backtrace(job, dray__backtrace_want(job));
    check_round_trip(job); /* with error_backtrace added, as the retry set gets it */
    dray_job_free(job);
    return 0;
}
