/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The job model: Sidekiq's job JSON, parsed, validated and serialized. Every
 * field, known or not, is kept in the jansson object, so Ruby middleware
 * state survives a round trip through C. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "internal.h"

static const char hexdigits[] = "0123456789abcdef";

/* jids come from a per-thread pool of random bytes, refilled 64 jids at a
 * time (one getrandom call instead of one per job); a fork invalidates every
 * pool so parent and child never share bytes. */
#define JID_POOL (64 * DRAY_JID_LEN / 2)
static atomic_uint fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* pthread_atfork child hook: every thread's jid pool is stale now. */
static void
on_fork_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

/* pthread_once body: install on_fork_child once per process. */
static void
register_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

/* 24 lowercase hex chars and a NUL into out, from this thread's random
 * pool (refilled after 64 jids or a fork). Cannot fail; any thread. */
void
dray_jid_new(char out[DRAY_JID_BYTES])
{
    static _Thread_local unsigned char pool[JID_POOL];
    static _Thread_local size_t used = JID_POOL;
    static _Thread_local unsigned gen;
    pthread_once(&atfork_once, register_atfork);
    unsigned g = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (used + DRAY_JID_LEN / 2 > JID_POOL || gen != g) {
        randombytes_buf(pool, sizeof pool);
        used = 0;
        gen = g;
    }
    const unsigned char *raw = pool + used;
    used += DRAY_JID_LEN / 2;
    for (size_t i = 0; i < DRAY_JID_LEN / 2; i++) {
        out[2 * i] = hexdigits[raw[i] >> 4];
        out[2 * i + 1] = hexdigits[raw[i] & 15];
    }
    sodium_memzero((void *)raw, DRAY_JID_LEN / 2);
    out[DRAY_JID_LEN] = '\0';
}

/* ---- integers beyond 64 bits ------------------------------------------------
 * jansson refuses integer literals outside int64 (any Ruby bignum). The
 * loader turns each such literal into a json string "\0dray-bigint-<tag>:"
 * followed by the exact digits, and dray__json_dump turns every such string
 * back into the bare digits. <tag> is random per process, so no payload can
 * spell a marker by accident or on purpose (none is ever written out). */
#define BIGINT_HEAD "dray-bigint-"
#define BIGINT_TAG_LEN 16
static char bigint_mark[1 + sizeof BIGINT_HEAD + BIGINT_TAG_LEN + 1]; /* "\0…-<tag>:" */
static size_t bigint_mark_len;
static pthread_once_t bigint_once = PTHREAD_ONCE_INIT;
static atomic_int bigint_seen; /* a marker was ever made: dumps must look for them */

/* pthread_once body: the process's random bigint marker. */
static void
bigint_init(void)
{
    unsigned char raw[BIGINT_TAG_LEN / 2];
    randombytes_buf(raw, sizeof raw);
    size_t n = 0;
    bigint_mark[n++] = '\0';
    memcpy(bigint_mark + n, BIGINT_HEAD, sizeof BIGINT_HEAD - 1);
    n += sizeof BIGINT_HEAD - 1;
    for (size_t i = 0; i < sizeof raw; i++) {
        bigint_mark[n++] = hexdigits[raw[i] >> 4];
        bigint_mark[n++] = hexdigits[raw[i] & 15];
    }
    bigint_mark[n++] = ':';
    bigint_mark_len = n;
}

/* True when the integer literal [s, s+n) (optional '-', digits) is outside
 * int64. */
static bool
int_overflows(const char *s, size_t n)
{
    bool neg = s[0] == '-';
    const char *d = s + neg;
    size_t dl = n - neg;
    const char *lim = neg ? "9223372036854775808" : "9223372036854775807";
    if (dl != 19)
        return dl > 19;
    return memcmp(d, lim, 19) > 0;
}

/* Copy buf into b with every out-of-range integer literal outside strings
 * replaced by a marker string. Returns the number replaced. */
static size_t
mark_bigints(const char *buf, size_t len, dray__buf *b)
{
    size_t count = 0, from = 0, i = 0;
    while (i < len) {
        char ch = buf[i];
        if (ch == '"') {
            for (i++; i < len && buf[i] != '"'; i++)
                if (buf[i] == '\\')
                    i++;
            i++;
            continue;
        }
        if (ch != '-' && !(ch >= '0' && ch <= '9')) {
            i++;
            continue;
        }
        size_t start = i;
        if (ch == '-')
            i++;
        while (i < len && buf[i] >= '0' && buf[i] <= '9')
            i++;
        bool real = i < len && (buf[i] == '.' || buf[i] == 'e' || buf[i] == 'E');
        size_t end = i;
        while (i < len && (buf[i] == '.' || buf[i] == 'e' || buf[i] == 'E' || buf[i] == '+' ||
                           buf[i] == '-' || (buf[i] >= '0' && buf[i] <= '9')))
            i++;
        if (real || end - start < 19 || !int_overflows(buf + start, end - start))
            continue;
        dray__buf_add(b, buf + from, start - from);
        dray__buf_adds(b, "\"\\u0000");
        dray__buf_add(b, bigint_mark + 1, bigint_mark_len - 1);
        dray__buf_add(b, buf + start, end - start);
        dray__buf_add(b, "\"", 1);
        from = end;
        count++;
    }
    dray__buf_add(b, buf + from, len - from);
    return count;
}

/* json_loadb with integers beyond 64 bits kept as marker strings; a new
 * reference or NULL with *e (may be NULL) set. */
json_t *
dray__json_load(const char *buf, size_t len, json_error_t *e)
{
    return dray__json_loadf(buf, len, JSON_ALLOW_NUL, e);
}

/* dray__json_load with the caller's json_loadb flags; a new reference or
 * NULL with *e (may be NULL) set. */
json_t *
dray__json_loadf(const char *buf, size_t len, size_t flags, json_error_t *e)
{
    json_error_t local;
    if (!e)
        e = &local;
    json_t *o = json_loadb(buf, len, flags, e);
    if (o || json_error_code(e) != json_error_numeric_overflow)
        return o;
    pthread_once(&bigint_once, bigint_init);
    dray__buf b;
    dray__buf_init(&b);
    size_t n = mark_bigints(buf, len, &b);
    if (n && !b.oom) {
        atomic_store(&bigint_seen, 1);
        json_error_t e2;
        o = json_loadb(b.p, b.len, flags | JSON_ALLOW_NUL, &e2);
        if (!o && json_error_code(&e2) != json_error_numeric_overflow)
            *e = e2; /* what is really wrong; its position counts in the rewritten text */
    }
    dray__buf_close(&b);
    return o;
}

/* True when [s, s+n) is what mark_bigints puts after a marker: a JSON
 * integer literal (no leading zero) outside int64. Anything else behind a
 * marker was forged. */
static bool
bigint_digits(const char *s, size_t n)
{
    size_t neg = n && s[0] == '-';
    if (n - neg < 19 || s[neg] == '0')
        return false;
    for (size_t i = neg; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return int_overflows(s, n);
}

/* The exact digits behind a bigint marker string (borrowed from v), or
 * NULL when v is not one. */
const char *
dray_json_bigint(const json_t *v)
{
    if (!atomic_load(&bigint_seen) || !json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n <= bigint_mark_len || memcmp(s, bigint_mark, bigint_mark_len) ||
        !bigint_digits(s + bigint_mark_len, n - bigint_mark_len))
        return NULL;
    return s + bigint_mark_len;
}

/* Replace every marker string in the dumped text s by its bare digits, in
 * place (the text only shrinks). A marker not followed by such digits and
 * the closing quote is a forged one in a payload's string: kept as text. */
static size_t
unmark_bigints(char *s, size_t len)
{
    /* dumped, the marker's NUL reads \u0000 */
    char pat[8 + sizeof bigint_mark];
    size_t pl = 0;
    memcpy(pat, "\"\\u0000", 7);
    pl = 7;
    memcpy(pat + pl, bigint_mark + 1, bigint_mark_len - 1);
    pl += bigint_mark_len - 1;
    size_t r = 0, w = 0;
    while (r < len) {
        char *hit = r + pl <= len ? memmem(s + r, len - r, pat, pl) : NULL;
        if (!hit) {
            memmove(s + w, s + r, len - r);
            w += len - r;
            break;
        }
        size_t at = (size_t)(hit - s);
        size_t d = at + pl, dl = 0, bs = 0;
        while (d + dl < len && s[d + dl] != '"' && s[d + dl] != '\\')
            dl++;
        while (at - bs > r && s[at - bs - 1] == '\\')
            bs++; /* odd: the quote is an escaped one inside a string */
        if (bs % 2 || d + dl >= len || s[d + dl] != '"' || !bigint_digits(s + d, dl)) {
            memmove(s + w, s + r, d - r); /* forged: copy it, marker included */
            w += d - r;
            r = d;
            continue;
        }
        memmove(s + w, s + r, at - r);
        w += at - r;
        memmove(s + w, s + d, dl);
        w += dl;
        r = d + dl + 1; /* past the closing quote */
    }
    s[w] = '\0';
    return w;
}

/* Compact JSON of v with bigint markers turned back into digits;
 * malloc'ed (free()), NULL on OOM; *len (may be NULL) its length. */
char *
dray__json_dump(const json_t *v, size_t *len)
{
    /* jansson writes reals with %.17g and appends ".0" to integral reals, so
     * created_at stays a JSON real with full precision (wire contract). */
    return dray__json_dumpf(v, JSON_COMPACT, len);
}

/* json_dumps with the caller's flags and bigint markers turned back into
 * digits; malloc'ed (free()), NULL on OOM; *len (may be NULL) its length. */
char *
dray__json_dumpf(const json_t *v, size_t flags, size_t *len)
{
    char *s = json_dumps(v, flags);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (atomic_load(&bigint_seen))
        n = unmark_bigints(s, n);
    if (len)
        *len = n;
    return s;
}

/* Epoch seconds of a Sidekiq timestamp (float s or integer ms); 0 for
 * anything that is not a number. */
double
dray_time_from_json(const json_t *v)
{
    if (!json_is_number(v))
        return 0;
    /* Sidekiq 8 writes integer ms, 6.x and 7.x float seconds; a value past
     * 1e11 is milliseconds whatever its JSON type (1e11 s is the year 5138,
     * 1e11 ms is 1973), so an 8.x reader's ms float is read right too. */
    double x = json_number_value(v);
    return x > 1e11 || x < -1e11 ? x / 1000.0 : x;
}

/* A job timestamp for t: integer ms when ms, else a real of seconds. New
 * reference; NULL on OOM. */
json_t *
dray__time_json(int ms, double t)
{
    if (ms)
        return json_integer((json_int_t)llround(t * 1000.0));
    return json_real(t);
}

/* A job around obj (reference stolen, also on failure); NULL on OOM. */
dray_job *
dray__job_wrap(json_t *obj)
{
    dray_job *job = dray__calloc(1, sizeof *job);
    if (!job) {
        json_decref(obj);
        return NULL;
    }
    job->obj = obj;
    return job;
}

/* 0 for a usable queue name; DRAY_EQUEUE with the reason in errbuf. */
int
dray__queue_check(const char *q, char *errbuf, size_t errlen)
{
    size_t n = strlen(q);
    if (n == 0)
        return dray__err(errbuf, errlen, DRAY_EQUEUE, "queue name is empty");
    if (n > DRAY_QUEUE_MAX)
        return dray__err(errbuf, errlen, DRAY_EQUEUE, "queue name is %zu bytes; the limit is %d", n,
                         DRAY_QUEUE_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)q[i] < 0x20 || q[i] == 0x7f || q[i] == ' ' || q[i] == ',')
            return dray__err(errbuf, errlen, DRAY_EQUEUE,
                             "queue name '%s' contains a space, comma or control byte", q);
    return 0;
}

/* Sidekiq writes 24 hex characters, other clients UUIDs or their own ids:
 * any printable ASCII without spaces, up to DRAY_JID_MAX bytes (jids go
 * into logs, keys and glob patterns). */
static bool
jid_ok(const json_t *v)
{
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > DRAY_JID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* Checks shared by parse and validate; size is checked by the callers. */
static int
check_fields(json_t *o, char *errbuf, size_t errlen)
{
    if (!json_is_object(o))
        return dray__err(errbuf, errlen, DRAY_EJSON, "job payload is not a json object");
    json_t *v = json_object_get(o, "class");
    if (!v)
        return dray__err(errbuf, errlen, DRAY_ECLASS, "job field 'class' is missing");
    if (!json_is_string(v) || json_string_length(v) == 0)
        return dray__err(errbuf, errlen, DRAY_ECLASS,
                         "job field 'class' must be a non-empty string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return dray__err(errbuf, errlen, DRAY_ECLASS, "job field 'class' contains a NUL byte");
    v = json_object_get(o, "args");
    if (!json_is_array(v))
        return dray__err(errbuf, errlen, DRAY_EARGS,
                         "job field 'args' must be a json array, not %s",
                         !v                  ? "missing"
                         : json_is_object(v) ? "an object"
                         : json_is_string(v) ? "a string"
                         : json_is_number(v) ? "a number"
                         : json_is_null(v)   ? "null"
                                             : "a boolean");
    if ((v = json_object_get(o, "jid"))) {
        if (!json_is_string(v) || !jid_ok(v))
            return dray__err(errbuf, errlen, DRAY_EJID,
                             "job field 'jid' must be 1-%d printable characters without spaces",
                             DRAY_JID_MAX);
    }
    if ((v = json_object_get(o, "queue"))) {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            return dray__err(errbuf, errlen, DRAY_EQUEUE,
                             "job field 'queue' must be a string without NUL");
        int rc = dray__queue_check(json_string_value(v), errbuf, errlen);
        if (rc)
            return rc;
    }
    if ((v = json_object_get(o, "retry"))) {
        if (!json_is_boolean(v) && !(json_is_integer(v) && json_integer_value(v) >= 0))
            return dray__err(errbuf, errlen, DRAY_ERETRY,
                             "job field 'retry' must be true, false or an integer >= 0");
    }
    if ((v = json_object_get(o, "retry_count")) && !json_is_integer(v))
        return dray__err(errbuf, errlen, DRAY_EFIELD, "job field 'retry_count' must be an integer");
    static const char *const times[] = {"created_at", "enqueued_at", "at", "failed_at",
                                        "retried_at"};
    for (size_t i = 0; i < sizeof times / sizeof *times; i++)
        if ((v = json_object_get(o, times[i])) && !json_is_number(v))
            return dray__err(errbuf, errlen, DRAY_EFIELD,
                             "job field '%s' must be a number (epoch seconds or ms)", times[i]);
    return 0;
}

/* Parse and check a payload; *out keeps a copy of the raw text. The
 * cause (size, utf-8, json, field) in errbuf (may be NULL). */
int
dray_job_parse(const char *buf, size_t len, size_t max_payload, dray_job **out, char *errbuf,
               size_t errlen)
{
    *out = NULL;
    if (!max_payload)
        max_payload = DRAY_DEFAULT_MAX_PAYLOAD;
    if (len > max_payload)
        return dray__err(errbuf, errlen, DRAY_ETOOBIG, "job payload is %zu bytes; the limit is %zu",
                         len, max_payload);
    json_error_t e;
    json_t *o = dray__json_load(buf, len, &e);
    if (!o) {
        if (json_error_code(&e) == json_error_invalid_utf8)
            return dray__err(errbuf, errlen, DRAY_EUTF8, "job payload is not valid utf-8 (byte %d)",
                             e.position);
        return dray__err(errbuf, errlen, DRAY_EJSON, "job payload is not json: %s at byte %d",
                         e.text, e.position);
    }
    int rc = check_fields(o, errbuf, errlen);
    if (rc) {
        json_decref(o);
        return rc;
    }
    dray_job *job = dray__job_wrap(o);
    if (!job)
        return DRAY_ENOMEM;
    job->payload = dray__strndup(buf, len);
    if (!job->payload) {
        dray_job_free(job);
        return DRAY_ENOMEM;
    }
    job->payload_len = len;
    *out = job;
    return 0;
}

/* The field checks of a parsed job, without the size limit. */
int
dray__job_check_fields(const dray_job *job, char *errbuf, size_t errlen)
{
    return check_fields(job->obj, errbuf, errlen);
}

/* The field checks, then the serialized size against max_payload (0:
 * the default). The cause in errbuf. */
int
dray_job_validate(const dray_job *job, size_t max_payload, char *errbuf, size_t errlen)
{
    int rc = check_fields(job->obj, errbuf, errlen);
    if (rc)
        return rc;
    if (!max_payload)
        max_payload = DRAY_DEFAULT_MAX_PAYLOAD;
    size_t n = json_dumpb(job->obj, NULL, 0, JSON_COMPACT);
    if (n == 0)
        return dray__err(errbuf, errlen, DRAY_EJSON, "job cannot be serialized");
    if (n > max_payload)
        return dray__err(errbuf, errlen, DRAY_ETOOBIG, "job payload is %zu bytes; the limit is %zu",
                         n, max_payload);
    return 0;
}

/* A job of klass with args (stolen, also on failure; NULL is []), a new
 * jid and created_at. *out is the caller's (dray_job_free). */
int
dray_job_new(const char *klass, json_t *args, dray_job **out)
{
    *out = NULL;
    if (!klass || !*klass) {
        json_decref(args);
        return DRAY_ECLASS;
    }
    if (args && !json_is_array(args)) {
        json_decref(args);
        return DRAY_EARGS;
    }
    json_t *o = json_object();
    json_t *k = json_string(klass);
    if (!k) {
        json_decref(o);
        json_decref(args);
        return DRAY_EUTF8;
    }
    char jid[DRAY_JID_BYTES];
    dray_jid_new(jid);
    if (!o || json_object_set_new(o, "class", k) ||
        json_object_set_new(o, "args", args ? args : json_array()) ||
        json_object_set_new(o, "jid", json_string(jid)) ||
        json_object_set_new(o, "created_at", json_real(dray_now()))) {
        json_decref(o);
        return DRAY_ENOMEM;
    }
    dray_job *job = dray__job_wrap(o);
    if (!job)
        return DRAY_ENOMEM;
    *out = job;
    return 0;
}

/* Compact JSON of job; *out is malloc'ed (free()). DRAY_ENOMEM. */
int
dray_job_dump(const dray_job *job, char **out, size_t *outlen)
{
    *out = dray__json_dump(job->obj, outlen);
    return *out ? 0 : DRAY_ENOMEM;
}

/* Free job, its object and raw text. Accepts NULL. */
void
dray_job_free(dray_job *job)
{
    if (!job)
        return;
    json_decref(job->obj);
    dray__free(job->payload);
    dray__free(job);
}

/* A string field of the job (borrowed), or dflt when absent or not a string. */
static const char *
str_field(const dray_job *job, const char *name, const char *dflt)
{
    const char *s = json_string_value(json_object_get(job->obj, name));
    return s ? s : dflt;
}

/* The class (borrowed), "" when missing. */
const char *
dray_job_class(const dray_job *job)
{
    return str_field(job, "class", "");
}

/* The jid (borrowed), "" when missing. */
const char *
dray_job_jid(const dray_job *job)
{
    return str_field(job, "jid", "");
}

/* The queue (borrowed), "default" when unset. */
const char *
dray_job_queue(const dray_job *job)
{
    return str_field(job, "queue", "default");
}

/* The args array (borrowed), or NULL. */
json_t *
dray_job_args(const dray_job *job)
{
    return json_object_get(job->obj, "args");
}

/* retry_count, or -1 when the job never failed. */
int
dray_job_retry_count(const dray_job *job)
{
    json_t *v = json_object_get(job->obj, "retry_count");
    return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

/* The raw text the job was parsed from (borrowed), or NULL. */
const char *
dray_job_payload(const dray_job *job)
{
    return job->payload;
}

/* Any top-level field (borrowed), or NULL. */
json_t *
dray_job_get(const dray_job *job, const char *field)
{
    return json_object_get(job->obj, field);
}

/* Set field to value (stolen) or delete it (value NULL: DRAY_ENOTFOUND
 * when absent). DRAY_ENOMEM. */
int
dray_job_set(dray_job *job, const char *field, json_t *value)
{
    if (!value)
        return json_object_del(job->obj, field) ? DRAY_ENOTFOUND : 0;
    return json_object_set_new(job->obj, field, value) ? DRAY_ENOMEM : 0;
}

/* The payload object (borrowed; changes show in dumps). */
json_t *
dray_job_json(const dray_job *job)
{
    return job->obj;
}
