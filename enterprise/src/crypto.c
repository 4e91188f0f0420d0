/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Encrypted arguments. With "encrypt": true on the push (or the class in
 * enterprise.encrypt), the push hook seals the last argument (the "secret
 * bag") with XChaCha20-Poly1305 under the active key version; the worker
 * opens it in before_perform, just before the handler. Keys come from a
 * file (never from Redis); older versions keep decrypting after a rotation.
 *
 * Sealed form, a JSON string: "$dray-enc1$<version>$<base64url(nonce ||
 * ciphertext || tag)>", with associated data "dray-enc1|<class>|<version>"
 * (a bag cannot be moved to another class or relabelled to another key).
 * A sealed bag is never sealed again (retries, reschedules, re-pushes).
 *
 * The core writes the job it holds to the retry, dead or schedule set when
 * the handler fails or defers, and by then the args are plaintext. The
 * after_perform hook swaps that member for the sealed form in one script,
 * so plaintext stays in Redis for one round trip (module.h has no hook
 * that runs before the core persists a job: see docs/enterprise.md).
 * Limiter deferrals happen before decryption (the decrypt hook runs LAST)
 * and never write plaintext.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "ent.h"

#define H ent__H

#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES /* 24: random nonces are safe */
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES      /* 16 */
#define KEYFILE_MAX 65536                                        /* a key file holds a few lines */
#define SEALED_MAX (4 * 1024 * 1024) /* bigger than any job the core accepts */

/* KEYS retry, dead, schedule; ARGV[1] the member as the core wrote it,
 * ARGV[2] the same job with the bag sealed. Swaps it where it is, same score. */
static const char reseal_lua[] = "for i = 1, #KEYS do\n"
                                 "  local s = redis.call('ZSCORE', KEYS[i], ARGV[1])\n"
                                 "  if s then\n"
                                 "    redis.call('ZREM', KEYS[i], ARGV[1])\n"
                                 "    redis.call('ZADD', KEYS[i], s, ARGV[2])\n"
                                 "    return i\n"
                                 "  end\n"
                                 "end\n"
                                 "return 0\n";

/* The sealed bag of the job being performed on this thread, for after_perform. */
static __thread json_t *tl_sealed;
static __thread int tl_restored; /* crypto_record put tl_sealed back in the args */

/* ---- keys --------------------------------------------------------------------- */

/* Decode a key: 64 hex digits or base64 (standard or url, padded or not)
 * of 32 bytes. 0 or -1. The alphabet is checked here: libsodium 1.0.18
 * takes bytes >= 0x80 for '_'. */
static int
decode_key(const char *s, unsigned char out[ENT_CRYPTO_KEY_BYTES])
{
    size_t n = strlen(s), bin = 0;
    if (n == 2 * ENT_CRYPTO_KEY_BYTES && strspn(s, "0123456789abcdefABCDEF") == n)
        return sodium_hex2bin(out, ENT_CRYPTO_KEY_BYTES, s, n, NULL, &bin, NULL) ||
                       bin != ENT_CRYPTO_KEY_BYTES
                   ? -1
                   : 0;
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    static const char url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=";
    int variant;
    if (strspn(s, std) == n)
        variant = strchr(s, '=') ? sodium_base64_VARIANT_ORIGINAL
                                 : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    else if (strspn(s, url) == n)
        variant = strchr(s, '=') ? sodium_base64_VARIANT_URLSAFE
                                 : sodium_base64_VARIANT_URLSAFE_NO_PADDING;
    else
        return -1;
    unsigned char tmp[64];
    if (sodium_base642bin(tmp, sizeof tmp, s, n, NULL, &bin, NULL, variant) ||
        bin != ENT_CRYPTO_KEY_BYTES) {
        sodium_memzero(tmp, sizeof tmp);
        return -1;
    }
    memcpy(out, tmp, ENT_CRYPTO_KEY_BYTES);
    sodium_memzero(tmp, sizeof tmp);
    return 0;
}

static int
load_keys(ent_state *E, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        char eb[ENT_ERRNO_BYTES];
        return ent__err(err, errlen, DRAY_ECONFIG,
                        "setting %s.encrypt_keys: cannot open key file %s: %s", ENT_NAME, path,
                        ent__syserr(errno, eb));
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        H->log(ent__M, DRAY_LOG_WARN,
               "encryption key file %s is readable by group or others (mode %03o): chmod 600 it",
               path, (unsigned)(st.st_mode & 0777));
    E->keys = sodium_malloc(ENT_CRYPTO_MAX_KEYS * sizeof *E->keys);
    if (!E->keys) {
        fclose(f);
        return ent__err(err, errlen, DRAY_ENOMEM, "out of memory");
    }
    char *line = NULL;
    size_t cap = 0, total = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        total += (size_t)len;
        if (total > KEYFILE_MAX) {
            snprintf(err, errlen, "key file %s is larger than %d bytes", path, KEYFILE_MAX);
            rc = DRAY_ECONFIG;
            break;
        }
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || *p == '#')
            continue;
        char *v = p;
        while (isdigit((unsigned char)*p))
            p++;
        char *end = p;
        while (*p == ' ' || *p == '\t' || *p == ':')
            p++;
        char *k = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        *p = '\0';
        *end = '\0';
        long ver;
        if (ent__long(v, 1, 2147483647L, &ver)) {
            snprintf(
                err, errlen,
                "key file %s line %d: want '<version> <key>' (version a whole number >= 1, key "
                "64 hex digits or base64 of 32 bytes)",
                path, lineno);
            rc = DRAY_ECONFIG;
            break;
        }
        for (size_t i = 0; i < E->nkeys; i++)
            if (E->keys[i].version == (uint32_t)ver) {
                snprintf(err, errlen, "key file %s line %d: version %ld appears twice", path,
                         lineno, ver);
                rc = DRAY_ECONFIG;
            }
        if (rc)
            break;
        if (E->nkeys == ENT_CRYPTO_MAX_KEYS) {
            snprintf(err, errlen, "key file %s: more than %d keys", path, ENT_CRYPTO_MAX_KEYS);
            rc = DRAY_ECONFIG;
            break;
        }
        if (!*k || decode_key(k, E->keys[E->nkeys].k)) {
            snprintf(err, errlen,
                     "key file %s line %d: key version %ld is %s: a key is 32 bytes, written as 64 "
                     "hex digits or base64",
                     path, lineno, ver,
                     *k ? "not 32 bytes of hex or base64 (too short?)" : "missing");
            rc = DRAY_ECONFIG;
            break;
        }
        E->keys[E->nkeys++].version = (uint32_t)ver;
    }
    if (line) {
        sodium_memzero(line, cap);
        free(line);
    }
    fclose(f);
    if (!rc && E->nkeys == 0) {
        snprintf(err, errlen, "key file %s holds no key (lines: '<version> <key>')", path);
        rc = DRAY_ECONFIG;
    }
    return rc;
}

typedef ent_parse_ctx parse_ctx;

static int
add_class(const char *key, const char *value, void *ud)
{
    (void)key;
    parse_ctx *pc = ud;
    char **w;
    int n = ent__words(value, NULL, &w);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!ent__class_ok(w[i])) {
            snprintf(pc->err, pc->errlen, "setting %s.encrypt '%s': '%s' is not a job class",
                     ENT_NAME, value, w[i]);
            rc = DRAY_ECONFIG;
        } else if (!ent__strv_has(pc->E->enc_classes, pc->E->nenc, w[i]) &&
                   ent__strv_add(&pc->E->enc_classes, &pc->E->nenc, w[i])) {
            rc = DRAY_ENOMEM;
        }
    }
    free(w);
    return n < 0 ? DRAY_ENOMEM : rc;
}

int
ent__crypto_configure(ent_state *E, char *err, size_t errlen)
{
    const char *path, *active_set;
    long long active;
    parse_ctx pc = {E, err, errlen};
    int rc = H->config_each(ent__M, "encrypt", add_class, &pc);
    if (rc)
        return rc;
    if ((rc = H->config_str(ent__M, "encrypt_keys", NULL, &path)) ||
        (rc = H->config_int(ent__M, "encrypt_active", 0, 0, 2147483647LL, &active)))
        return rc;
    if (!path || !*path) {
        if ((rc = H->config_str(ent__M, "encrypt_active", NULL, &active_set)))
            return rc;
        if (active_set && *active_set) {
            snprintf(err, errlen,
                     "setting %s.encrypt_active is set but %s.encrypt_keys (the key file) is not",
                     ENT_NAME, ENT_NAME);
            return DRAY_ECONFIG;
        }
        if (E->nenc) {
            snprintf(
                err, errlen,
                "setting %s.encrypt lists classes but %s.encrypt_keys (the key file) is not set",
                ENT_NAME, ENT_NAME);
            return DRAY_ECONFIG;
        }
        return 0;
    }
    if ((rc = load_keys(E, path, err, errlen)))
        return rc;
    E->active = 0;
    for (size_t i = 0; i < E->nkeys; i++)
        if (active ? E->keys[i].version == (uint32_t)active : E->keys[i].version > E->active)
            E->active = E->keys[i].version;
    if (!E->active) {
        return ent__err(err, errlen, DRAY_ECONFIG,
                        "setting %s.encrypt_active: key version %lld is not in %s", ENT_NAME,
                        active, path);
    }
    return 0;
}

void
ent__crypto_free(ent_state *E)
{
    if (E->keys)
        sodium_free(E->keys); /* zeroes it */
    E->keys = NULL;
    E->nkeys = 0;
    ent__strv_free(E->enc_classes, E->nenc);
    E->enc_classes = NULL;
    E->nenc = 0;
}

static const ent_crypto_key *
key_for(const ent_state *E, uint32_t version)
{
    for (size_t i = 0; i < E->nkeys; i++)
        if (E->keys[i].version == version)
            return &E->keys[i];
    return NULL;
}

/* ---- seal and open ------------------------------------------------------------- */

int
ent__sealed(const json_t *v)
{
    const char *s = json_string_value(v);
    return s && !strncmp(s, ENT_SEAL_PREFIX, sizeof ENT_SEAL_PREFIX - 1);
}

int
ent__crypto_wanted(const ent_state *E, const char *klass)
{
    return ent__strv_has(E->enc_classes, E->nenc, klass);
}

static void
aad(char *buf, size_t len, const char *klass, uint32_t version)
{
    snprintf(buf, len, "dray-enc1|%s|%u", klass, version);
}

int
ent__seal(const ent_state *E, const char *klass, const json_t *plain, json_t **out, char *err,
          size_t errlen)
{
    *out = NULL;
    const ent_crypto_key *k = key_for(E, E->active);
    if (!k) {
        return ent__err(err, errlen, -1, "no encryption key configured (%s.encrypt_keys)",
                        ENT_NAME);
    }
    /* the core's dump: an integer beyond 64 bits is sealed as its digits,
     * not as this process's marker, which no other process can read */
    char *text = H->json_dump(plain, JSON_COMPACT | JSON_ENCODE_ANY, NULL);
    if (!text) {
        return ent__err(err, errlen, -1, "cannot serialize the secret bag");
    }
    size_t tl = strlen(text), bl = NONCE_BYTES + tl + TAG_BYTES;
    unsigned char *box = malloc(bl);
    size_t b64l = sodium_base64_ENCODED_LEN(bl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *s = malloc(sizeof ENT_SEAL_PREFIX + 16 + b64l);
    if (!box || !s) {
        sodium_memzero(text, tl);
        H->free(text);
        free(box);
        free(s);
        return ent__err(err, errlen, -1, "out of memory");
    }
    char ad[ENT_CLASS_MAX + 32];
    aad(ad, sizeof ad, klass, k->version);
    randombytes_buf(box, NONCE_BYTES);
    unsigned long long cl;
    crypto_aead_xchacha20poly1305_ietf_encrypt(box + NONCE_BYTES, &cl, (const unsigned char *)text,
                                               tl, (const unsigned char *)ad, strlen(ad), NULL, box,
                                               k->k);
    sodium_memzero(text, tl);
    H->free(text);
    int n = sprintf(s, "%s%u$", ENT_SEAL_PREFIX, k->version);
    sodium_bin2base64(s + n, b64l, box, NONCE_BYTES + (size_t)cl,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free(box);
    *out = json_string(s);
    free(s);
    if (!*out) {
        return ent__err(err, errlen, -1, "out of memory");
    }
    return 0;
}

/* Open a sealed bag into a new reference (*out). 0, or -1 with why. */
static int
open_bag(const ent_state *E, const char *klass, const char *s, json_t **out, char *why,
         size_t whylen)
{
    *out = NULL;
    const char *p = s + sizeof ENT_SEAL_PREFIX - 1;
    char *end;
    errno = 0;
    unsigned long ver = isdigit((unsigned char)*p) ? strtoul(p, &end, 10) : 0;
    if (!ver || errno || *end != '$' || ver > 2147483647UL) {
        return ent__err(why, whylen, -1, "malformed sealed argument (no key version)");
    }
    const ent_crypto_key *k = key_for(E, (uint32_t)ver);
    if (!k) {
        return ent__err(why, whylen, -1,
                        "sealed with key version %lu, which is not in the key file", ver);
    }
    const char *b = end + 1;
    size_t bl = strlen(b);
    static const char url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (bl > SEALED_MAX || strspn(b, url) != bl) {
        return ent__err(why, whylen, -1, "malformed sealed argument (not base64url)");
    }
    size_t cap = bl * 3 / 4 + 3, got = 0;
    unsigned char *box = malloc(cap);
    if (!box) {
        return ent__err(why, whylen, -1, "out of memory");
    }
    if (sodium_base642bin(box, cap, b, bl, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        got < NONCE_BYTES + TAG_BYTES) {
        free(box);
        return ent__err(why, whylen, -1, "malformed sealed argument (bad base64url or too short)");
    }
    unsigned char *plain = malloc(got);
    unsigned long long pl = 0;
    char ad[ENT_CLASS_MAX + 32];
    aad(ad, sizeof ad, klass, (uint32_t)ver);
    int bad = !plain || crypto_aead_xchacha20poly1305_ietf_decrypt(
                            plain, &pl, NULL, box + NONCE_BYTES, got - NONCE_BYTES,
                            (const unsigned char *)ad, strlen(ad), box, k->k) != 0;
    free(box);
    if (bad) {
        free(plain);
        snprintf(why, whylen,
                 "cannot decrypt the secret bag with key version %lu: it was tampered with, sealed "
                 "for another class, or sealed with a different key",
                 ver);
        return -1;
    }
    json_error_t je;
    *out = H->json_load((const char *)plain, (size_t)pl, JSON_DECODE_ANY, &je);
    sodium_memzero(plain, (size_t)pl);
    free(plain);
    if (!*out) {
        return ent__err(why, whylen, -1, "the decrypted secret bag is not JSON");
    }
    return 0;
}

/* A copy of args with its last element replaced by v (reference stolen). */
static json_t *
with_last(json_t *args, json_t *v)
{
    json_t *copy = json_copy(args);
    if (!copy || json_array_set_new(copy, json_array_size(copy) - 1, v)) {
        json_decref(copy);
        return NULL;
    }
    return copy;
}

/* ---- hooks ---------------------------------------------------------------------- */

/* crypto_push acts on a job that says "encrypt" (any value: it sees the
 * field) or whose class is listed in enterprise.encrypt. */
static int
crypto_wants(dray_ctx *ctx, const dray_job *job, void *ud)
{
    (void)ctx;
    const ent_state *E = ud;
    return H->job_get(job, "encrypt") || ent__crypto_wanted(E, H->job_class(job));
}

static int
crypto_push(dray_ctx *ctx, dray_job *job, void *ud)
{
    ent_state *E = ud;
    const char *klass = H->job_class(job);
    json_t *flag = H->job_get(job, "encrypt");
    if (!json_is_true(flag) && !ent__crypto_wanted(E, klass))
        return DRAY_CONTINUE;
    if (!(E->features & DRAY_LICENSE_F_ENCRYPTION))
        return H->fail(ctx, DRAY_ELICENSE,
                       "encrypted job %s: the license does not include encryption", klass);
    json_t *args = H->job_args(job);
    size_t n = json_array_size(args);
    if (n == 0)
        return H->fail(ctx, DRAY_EARGS,
                       "encrypted job %s has no arguments: the last one is the secret bag", klass);
    if (ent__sealed(json_array_get(args, n - 1))) {
        /* a retry, reschedule or re-push: sealed once is enough */
        if (!json_is_true(flag))
            H->job_set(job, "encrypt", json_true());
        return DRAY_CONTINUE;
    }
    if (!E->nkeys)
        return H->fail(ctx, DRAY_ECONFIG,
                       "job %s asks for encryption but no key file is configured (%s.encrypt_keys)",
                       klass, ENT_NAME);
    json_t *sealed;
    char err[256];
    if (ent__seal(E, klass, json_array_get(args, n - 1), &sealed, err, sizeof err))
        return H->fail(ctx, DRAY_ENOMEM, "cannot encrypt %s: %s", klass, err);
    json_t *na = with_last(args, sealed);
    if (!na || H->job_set(job, "args", na) || H->job_set(job, "encrypt", json_true()))
        return H->fail(ctx, DRAY_ENOMEM, "out of memory");
    return DRAY_CONTINUE;
}

/* To the dead set at once: a bag that cannot be opened will not open on a
 * retry either (unless a key is added, and `dray dead retry` covers that). */
static int
dead(dray_ctx *ctx, dray_job *job, const char *why)
{
    H->job_set(job, "retry", json_integer(0));
    H->log(ent__M, DRAY_LOG_ERROR,
           "%s %s: %s; failed without running, with \"retry\": 0 (to the dead set, unless its "
           "handler's own retry option schedules retries)",
           H->job_class(job), H->job_jid(job), why);
    return H->fail(ctx, DRAY_EINVAL, "%s", why);
}

static int
crypto_before(dray_ctx *ctx, dray_job *job, void *ud)
{
    ent_state *E = ud;
    json_decref(tl_sealed);
    tl_sealed = NULL;
    tl_restored = 0;
    if (!json_is_true(H->job_get(job, "encrypt")))
        return DRAY_CONTINUE;
    json_t *args = H->job_args(job);
    size_t n = json_array_size(args);
    json_t *last = n ? json_array_get(args, n - 1) : NULL;
    if (!ent__sealed(last))
        return dead(ctx, job, "the job says \"encrypt\": true but its last argument is not sealed");
    if (!E->nkeys)
        return dead(ctx, job,
                    "encrypted job, but this process has no key file (enterprise.encrypt_keys)");
    json_t *plain;
    char why[256];
    if (open_bag(E, H->job_class(job), json_string_value(last), &plain, why, sizeof why))
        return dead(ctx, job, why);
    tl_sealed = json_incref(last);
    json_t *na = with_last(args, plain);
    if (!na || H->job_set(job, "args", na)) {
        json_decref(tl_sealed);
        tl_sealed = NULL;
        return H->fail(ctx, DRAY_ENOMEM, "out of memory");
    }
    return DRAY_CONTINUE;
}

/* Before a failed or deferred run is written: the sealed bag goes back in
 * the args (so the plaintext never reaches Redis), and an error message,
 * which may quote the arguments, is sealed too (or withheld when the
 * sealed text does not fit). */
static void
crypto_record(dray_ctx *ctx, dray_job *job, int outcome, char *message, size_t size, void *ud)
{
    ent_state *E = ud;
    (void)ctx;
    if (!tl_sealed)
        return;
    json_t *args = H->job_args(job);
    json_t *na = json_array_size(args) ? with_last(args, json_incref(tl_sealed)) : NULL;
    if (na && !H->job_set(job, "args", na))
        tl_restored = 1; /* else crypto_after re-seals what the core wrote */
    if (outcome != DRAY_OUTCOME_FAILURE || !message[0])
        return;
    static const char sealed_tag[] = "[encrypted job: error message sealed] ";
    json_t *text = json_stringn_nocheck(message, strlen(message)), *sealed = NULL;
    char err[256];
    const char *ss = NULL;
    if (text && !ent__seal(E, H->job_class(job), text, &sealed, err, sizeof err))
        ss = json_string_value(sealed);
    sodium_memzero(message, size);
    if (ss && strlen(ss) + sizeof sealed_tag <= size)
        snprintf(message, size, "%s%s", sealed_tag, ss);
    else
        snprintf(message, size, "[encrypted job: error message withheld]");
    if (text)
        sodium_memzero((char *)json_string_value(text), json_string_length(text));
    json_decref(text);
    json_decref(sealed);
}

static void
crypto_after(dray_ctx *ctx, dray_job *job, int outcome, void *ud)
{
    ent_state *E = ud;
    json_t *sealed = tl_sealed;
    int restored = tl_restored;
    tl_sealed = NULL;
    tl_restored = 0;
    if (!sealed)
        return;
    if (restored || (outcome != DRAY_OUTCOME_FAILURE && outcome != DRAY_OUTCOME_DEFERRED)) {
        json_decref(sealed);
        return;
    }
    /* The core wrote this job with plaintext args: replace it. */
    char *plain = NULL, *redone = NULL;
    size_t pl = 0;
    json_t *copy = NULL;
    if (!H->job_dump(job, &plain, &pl) && (copy = H->json_load(plain, pl, 0, NULL))) {
        json_t *args = json_object_get(copy, "args");
        if (json_array_size(args) && !json_array_set(args, json_array_size(args) - 1, sealed))
            redone = H->json_dump(copy, JSON_COMPACT, NULL);
    }
    char rk[ENT_KEY_BYTES], dk[ENT_KEY_BYTES], sk[ENT_KEY_BYTES];
    if (redone && !ent__key(rk, sizeof rk, ctx, "retry", NULL) &&
        !ent__key(dk, sizeof dk, ctx, "dead", NULL) &&
        !ent__key(sk, sizeof sk, ctx, "schedule", NULL)) {
        const char *argv[5] = {rk, dk, sk, plain, redone};
        size_t lens[5] = {strlen(rk), strlen(dk), strlen(sk), pl, strlen(redone)};
        if (H->eval(ctx, E->s_reseal, NULL, 3, 5, argv, lens))
            H->log(ent__M, DRAY_LOG_ERROR,
                   "%s %s: cannot re-seal the secret bag in the retry/dead/schedule set: %s",
                   H->job_class(job), H->job_jid(job), H->redis_errstr(ctx));
    } else {
        H->log(ent__M, DRAY_LOG_ERROR, "%s %s: out of memory re-sealing the secret bag",
               H->job_class(job), H->job_jid(job));
    }
    if (plain) {
        sodium_memzero(plain, pl);
        H->free(plain);
    }
    if (redone)
        H->free(redone);
    json_decref(copy);
    json_decref(sealed);
}

int
ent__crypto_scripts(ent_state *E)
{
    return H->script(ent__M, reseal_lua, &E->s_reseal);
}

int
ent__crypto_hooks(ent_state *E)
{
    int rc;
    if ((rc = H->hook(ent__M, DRAY_HOOK(.point = DRAY_HOOK_PUSH, .name = "encrypt",
                                        .priority = DRAY_PRIO_LAST, .push = crypto_push,
                                        .push_wants = crypto_wants, .userdata = E))) ||
        (rc = H->hook(ent__M,
                      DRAY_HOOK(.point = DRAY_HOOK_PERFORM, .name = "decrypt",
                                .priority = DRAY_PRIO_LAST, .before = crypto_before,
                                .after = crypto_after, .record = crypto_record, .userdata = E))))
        return rc;
    return 0;
}
