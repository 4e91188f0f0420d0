/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Key ids, key files and signing: the vendor side, used by dray-license, the
 * key table generator and the tests. Modules never call any of this.
 *
 * Files are signify-style: an "untrusted comment:" line, then one base64 line.
 *   NAME.pub  base64(pk[32])
 *   NAME.key  base64(magic "dLk1" | alg u8 | 0 0 0 | opslimit u64le | memlimit u64le
 *                    | salt[16] | nonce[24] | pk[32] | secretbox(sk[64])[80])
 * The secretbox key is Argon2id(passphrase, salt, opslimit, memlimit); the
 * parameters travel in the file so stronger ones can be used later.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "license_internal.h"

#define FILE_MAX 4096 /* any key file is far smaller */
#define SALT_BYTES crypto_pwhash_SALTBYTES
#define NONCE_BYTES crypto_secretbox_NONCEBYTES
#define BOX_BYTES (DRAY__LICENSE_SK_BYTES + crypto_secretbox_MACBYTES)
#define BLOB_BYTES (4 + 4 + 8 + 8 + SALT_BYTES + NONCE_BYTES + DRAY_LICENSE_PK_BYTES + BOX_BYTES)
#define OPS_MAX 64                  /* refuse files that would make us spin for minutes */
#define MEM_MAX (UINT64_C(4) << 30) /* ... or allocate more than 4 GiB */

void
dray__license_kid(const unsigned char pk[DRAY_LICENSE_PK_BYTES], char kid[DRAY_LICENSE_KID_BYTES])
{
    unsigned char h[crypto_generichash_BYTES];

    crypto_generichash(h, sizeof h, pk, DRAY_LICENSE_PK_BYTES, NULL, 0);
    sodium_bin2hex(kid, DRAY_LICENSE_KID_BYTES, h, DRAY_LICENSE_KID_LEN / 2);
}

/* Read a whole small file into buf (NUL-terminated). */
static int
slurp(const char *path, char *buf, size_t cap, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    char eb[DRAY__LICENSE_ERRNO_BYTES];

    if (f == NULL)
        return dray__license_fail(err, errlen, "%s: %s", path, dray__license_syserr(errno, eb));
    n = fread(buf, 1, cap - 1, f);
    if (ferror(f) || !feof(f)) {
        fclose(f);
        return dray__license_fail(err, errlen, "%s: unreadable or larger than %zu bytes", path,
                                  cap - 1);
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return 0;
}

/* The single base64 line of a signify-style file, decoded into bin. */
static int
decode_keyfile(const char *path, const char *text, unsigned char *bin, size_t cap, size_t *bin_len,
               char *err, size_t errlen)
{
    const char *line = text, *b64 = NULL, *end;
    size_t b64_len = 0;

    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        size_t s = 0;

        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            n--;
        while (s < n && (line[s] == ' ' || line[s] == '\t'))
            s++;
        if (n > s && strncmp(line, "untrusted comment:", 18) != 0 && line[s] != '#') {
            if (b64 != NULL)
                return dray__license_fail(err, errlen, "%s: more than one key line", path);
            b64 = line + s;
            b64_len = n - s;
        }
        line = nl ? nl + 1 : line + strlen(line);
    }
    if (b64 == NULL)
        return dray__license_fail(err, errlen, "%s: no key line", path);
    /* libsodium 1.0.18 would decode bytes >= 0x80 as digits: check the alphabet. */
    if (strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") < b64_len)
        return dray__license_fail(err, errlen, "%s: key line is not valid base64", path);
    if (sodium_base642bin(bin, cap, b64, b64_len, NULL, bin_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + b64_len)
        return dray__license_fail(err, errlen, "%s: key line is not valid base64", path);
    return 0;
}

int
dray__license_read_pub(const char *path, unsigned char pk[DRAY_LICENSE_PK_BYTES], char *err,
                       size_t errlen)
{
    char text[FILE_MAX];
    unsigned char bin[FILE_MAX];
    size_t len, n;

    if (slurp(path, text, sizeof text, &len, err, errlen) != 0 ||
        decode_keyfile(path, text, bin, sizeof bin, &n, err, errlen) != 0)
        return -1;
    if (n != DRAY_LICENSE_PK_BYTES)
        return dray__license_fail(err, errlen,
                                  "%s: not a dray-license public key (%zu bytes, want %d)", path, n,
                                  DRAY_LICENSE_PK_BYTES);
    memcpy(pk, bin, DRAY_LICENSE_PK_BYTES);
    return 0;
}

static void
put_u64(unsigned char *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;

    for (i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int
valid_name(const char *name)
{
    size_t i, n = strlen(name);

    if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-')
        return 0;
    for (i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static int
write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Derive the secretbox key from a passphrase. 0 or -1 (out of memory). */
static int
derive(unsigned char key[crypto_secretbox_KEYBYTES], const char *pass, size_t passlen,
       const unsigned char *salt, uint64_t ops, uint64_t mem)
{
    return crypto_pwhash(key, crypto_secretbox_KEYBYTES, pass, passlen, salt, ops, (size_t)mem,
                         crypto_pwhash_ALG_ARGON2ID13);
}

int
dray__license_keygen(const char *dir, const char *name, const char *pass, size_t passlen,
                     char kid[DRAY_LICENSE_KID_BYTES], char *err, size_t errlen)
{
    unsigned char pk[DRAY_LICENSE_PK_BYTES], sk[DRAY__LICENSE_SK_BYTES];
    unsigned char key[crypto_secretbox_KEYBYTES], blob[BLOB_BYTES], *p = blob;
    char keypath[4096], pubpath[4096];
    char blob64[sodium_base64_ENCODED_LEN(BLOB_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    char pk64[sodium_base64_ENCODED_LEN(DRAY_LICENSE_PK_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    char text[1024], eb[DRAY__LICENSE_ERRNO_BYTES];
    int kfd = -1, pfd = -1, rc = -1, n;
    const uint64_t ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    const uint64_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;

    if (!valid_name(name))
        return dray__license_fail(
            err, errlen, "key name must be 1-64 of [A-Za-z0-9._-], not starting with . or -");
    if (passlen == 0)
        return dray__license_fail(err, errlen, "empty passphrase");
    if (sodium_init() < 0)
        return dray__license_fail(err, errlen, "libsodium failed to initialise");
    if ((size_t)snprintf(keypath, sizeof keypath, "%s/%s.key", dir, name) >= sizeof keypath ||
        (size_t)snprintf(pubpath, sizeof pubpath, "%s/%s.pub", dir, name) >= sizeof pubpath)
        return dray__license_fail(err, errlen, "path too long");

    kfd = open(keypath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (kfd < 0) {
        int e = errno;
        return dray__license_fail(err, errlen, "%s: %s%s", keypath, dray__license_syserr(e, eb),
                                  e == EEXIST ? " (refusing to overwrite a key)" : "");
    }
    pfd = open(pubpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (pfd < 0) {
        int e = errno;
        dray__license_fail(err, errlen, "%s: %s%s", pubpath, dray__license_syserr(e, eb),
                           e == EEXIST ? " (refusing to overwrite a key)" : "");
        goto out;
    }
    if (fchmod(kfd, 0600) != 0) {
        dray__license_fail(err, errlen, "%s: %s", keypath, dray__license_syserr(errno, eb));
        goto out;
    }

    crypto_sign_keypair(pk, sk);
    dray__license_kid(pk, kid);
    memcpy(p, DRAY__LICENSE_SECRET_MAGIC, 4), p += 4;
    *p++ = (unsigned char)crypto_pwhash_ALG_ARGON2ID13;
    *p++ = 0, *p++ = 0, *p++ = 0;
    put_u64(p, ops), p += 8;
    put_u64(p, mem), p += 8;
    randombytes_buf(p, SALT_BYTES);
    if (derive(key, pass, passlen, p, ops, mem) != 0) {
        dray__license_fail(err, errlen, "crypto_pwhash failed (out of memory?)");
        goto out;
    }
    p += SALT_BYTES;
    randombytes_buf(p, NONCE_BYTES);
    memcpy(p + NONCE_BYTES, pk, DRAY_LICENSE_PK_BYTES);
    crypto_secretbox_easy(p + NONCE_BYTES + DRAY_LICENSE_PK_BYTES, sk, sizeof sk, p, key);
    sodium_bin2base64(blob64, sizeof blob64, blob, sizeof blob, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(pk64, sizeof pk64, pk, sizeof pk, sodium_base64_VARIANT_ORIGINAL);

    n = snprintf(text, sizeof text,
                 "untrusted comment: dray-license secret key %s, kid %s (passphrase-encrypted; "
                 "keep offline)\n%s\n",
                 name, kid, blob64);
    if (n < 0 || (size_t)n >= sizeof text || write_all(kfd, text, (size_t)n) != 0 ||
        fsync(kfd) != 0) {
        dray__license_fail(err, errlen, "%s: write failed", keypath);
        goto out;
    }
    n = snprintf(text, sizeof text, "untrusted comment: dray-license public key %s, kid %s\n%s\n",
                 name, kid, pk64);
    if (n < 0 || (size_t)n >= sizeof text || write_all(pfd, text, (size_t)n) != 0 ||
        fsync(pfd) != 0) {
        dray__license_fail(err, errlen, "%s: write failed", pubpath);
        goto out;
    }
    rc = 0;

out:
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(key, sizeof key);
    sodium_memzero(text, sizeof text);
    if (kfd >= 0 && close(kfd) != 0 && rc == 0)
        rc = dray__license_fail(err, errlen, "%s: close failed", keypath);
    if (pfd >= 0 && close(pfd) != 0 && rc == 0)
        rc = dray__license_fail(err, errlen, "%s: close failed", pubpath);
    if (rc != 0) {
        /* Only remove what this call created. */
        if (kfd >= 0)
            unlink(keypath);
        if (pfd >= 0)
            unlink(pubpath);
    }
    return rc;
}

int
dray__license_read_secret(const char *path, const char *pass, size_t passlen,
                          unsigned char sk[DRAY__LICENSE_SK_BYTES],
                          unsigned char pk[DRAY_LICENSE_PK_BYTES], char *err, size_t errlen)
{
    char text[FILE_MAX];
    unsigned char bin[FILE_MAX], key[crypto_secretbox_KEYBYTES], check[DRAY_LICENSE_PK_BYTES];
    const unsigned char *salt, *nonce, *box;
    uint64_t ops, mem;
    size_t len, n;
    int rc = -1;

    if (sodium_init() < 0)
        return dray__license_fail(err, errlen, "libsodium failed to initialise");
    if (slurp(path, text, sizeof text, &len, err, errlen) != 0)
        return -1;
    if (decode_keyfile(path, text, bin, sizeof bin, &n, err, errlen) != 0)
        goto out;
    if (n != BLOB_BYTES || memcmp(bin, DRAY__LICENSE_SECRET_MAGIC, 4) != 0 ||
        bin[4] != crypto_pwhash_ALG_ARGON2ID13) {
        dray__license_fail(err, errlen, "%s: not a dray-license secret key file", path);
        goto out;
    }
    ops = get_u64(bin + 8);
    mem = get_u64(bin + 16);
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > OPS_MAX || mem < crypto_pwhash_MEMLIMIT_MIN ||
        mem > MEM_MAX) {
        dray__license_fail(err, errlen, "%s: unsupported key derivation parameters", path);
        goto out;
    }
    salt = bin + 24;
    nonce = salt + SALT_BYTES;
    memcpy(pk, nonce + NONCE_BYTES, DRAY_LICENSE_PK_BYTES);
    box = nonce + NONCE_BYTES + DRAY_LICENSE_PK_BYTES;
    if (sk == NULL) {
        rc = 0; /* public half only, unauthenticated: for display */
        goto out;
    }
    if (derive(key, pass, passlen, salt, ops, mem) != 0) {
        dray__license_fail(err, errlen, "crypto_pwhash failed (out of memory?)");
        goto out;
    }
    if (crypto_secretbox_open_easy(sk, box, BOX_BYTES, nonce, key) != 0) {
        dray__license_fail(err, errlen, "%s: wrong passphrase, or the key file is damaged", path);
        goto out;
    }
    crypto_sign_ed25519_sk_to_pk(check, sk);
    if (sodium_memcmp(check, pk, sizeof check) != 0) {
        dray__license_fail(err, errlen, "%s: secret and public halves do not match", path);
        goto out;
    }
    rc = 0;

out:
    if (rc != 0 && sk != NULL)
        sodium_memzero(sk, DRAY__LICENSE_SK_BYTES);
    sodium_memzero(key, sizeof key);
    sodium_memzero(bin, sizeof bin);
    sodium_memzero(text, sizeof text);
    return rc;
}

int
dray__license_sign(const unsigned char sk[DRAY__LICENSE_SK_BYTES], const char *payload,
                   size_t payload_len, char *out, size_t outlen)
{
    const size_t plen = strlen(DRAY_LICENSE_PREFIX);
    size_t b64_cap, signed_len;
    unsigned char sig[DRAY_LICENSE_SIG_BYTES];

    if (sodium_init() < 0 || payload_len > DRAY_LICENSE_MAX_BYTES)
        return -1;
    b64_cap = sodium_base64_ENCODED_LEN(payload_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    /* prefix + payload + "." + 86-char signature + NUL */
    if (outlen < plen + b64_cap + 1 + 87)
        return -1;
    memcpy(out, DRAY_LICENSE_PREFIX, plen);
    sodium_bin2base64(out + plen, b64_cap, (const unsigned char *)payload, payload_len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    signed_len = strlen(out);
    crypto_sign_detached(sig, NULL, (const unsigned char *)out, signed_len, sk);
    out[signed_len] = '.';
    sodium_bin2base64(out + signed_len + 1, outlen - signed_len - 1, sig, sizeof sig,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return strlen(out) > DRAY_LICENSE_MAX_BYTES ? -1 : 0;
}

static int
valid_lid(const char *s, size_t n)
{
    return n <= DRAY_LICENSE_LID_MAX && dray__license_lid_ok(s, n);
}

int
dray__license_read_lids(const char *path, dray__license_lid *lids, size_t cap, size_t *n, char *err,
                        size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[512];
    unsigned lineno = 0;
    char eb[DRAY__LICENSE_ERRNO_BYTES];

    if (f == NULL)
        return dray__license_fail(err, errlen, "%s: %s", path, dray__license_syserr(errno, eb));
    while (fgets(line, sizeof line, f) != NULL) {
        char *s = line, *e;
        lineno++;
        if ((e = strchr(s, '#')) != NULL)
            *e = '\0';
        while (*s == ' ' || *s == '\t')
            s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        if (*s == '\0')
            continue;
        if (!valid_lid(s, (size_t)(e - s))) {
            fclose(f);
            return dray__license_fail(err, errlen,
                                      "%s:%u: not a license id (1-%d of [A-Za-z0-9_-])", path,
                                      lineno, DRAY_LICENSE_LID_MAX);
        }
        if (*n == cap) {
            fclose(f);
            return dray__license_fail(err, errlen, "%s:%u: too many revoked ids (limit %zu)", path,
                                      lineno, cap);
        }
        memcpy(lids[(*n)++].lid, s, (size_t)(e - s) + 1);
    }
    fclose(f);
    return 0;
}
