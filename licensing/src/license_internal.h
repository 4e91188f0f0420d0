/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Internal helpers shared by the library, the dray-license tool, the key
 * table generator and the tests. Not installed, not for modules: a module
 * only ever verifies against its compiled-in table (dray_license_verify).
 */
#ifndef DRAY_LICENSE_INTERNAL_H
#define DRAY_LICENSE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dray/license.h"

#define DRAY__LICENSE_SK_BYTES 64         /* Ed25519 secret key (seed + public key) */
#define DRAY__LICENSE_DATE_BYTES 11       /* "YYYY-MM-DD" + NUL */
#define DRAY__LICENSE_ERR_BYTES 256       /* error text of the key-file helpers */
#define DRAY__LICENSE_SECRET_MAGIC "dLk1" /* secret key file blob version */
#define DRAY__LICENSE_ERRNO_BYTES 128     /* strerror_r text: glibc's longest is under 60 */

/* A set of trusted keys plus deny-list and build date: what verify runs against. */
typedef struct dray__license_keyring {
    const dray_license_trusted_key *keys; /* trusted keys, in order tried */
    size_t nkeys;                         /* may be 0: every key is then UNKNOWN_KID */
    const char *const *revoked;           /* revoked lids */
    size_t nrevoked;                      /* number of revoked lids */
    int64_t build_time;                   /* compared with a key's upd */
} dray__license_keyring;

/* license.c */

/* dray_license_verify against an explicit keyring (the tool's --pub, tests). */
DRAY_LICENSE_WUR int dray__license_verify_with(const dray__license_keyring *ring, const char *text,
                                               size_t len, int64_t now, dray_license_info *out);
/*
 * Decode and parse a key WITHOUT checking its signature (inspect, fuzzing).
 * Fills *out with verified = 0. Returns 0 or a malformed-key code. Nothing
 * it returns may be trusted.
 */
DRAY_LICENSE_WUR int dray__license_decode_unverified(const char *text, size_t len, int64_t now,
                                                     dray_license_info *out);

/* keyfile.c */

/* kid of a public key: lowercase hex of the first 4 bytes of BLAKE2b-256(pk). Cannot fail. */
void dray__license_kid(const unsigned char pk[DRAY_LICENSE_PK_BYTES],
                       char kid[DRAY_LICENSE_KID_BYTES]);
/* Read a signify-style .pub file (comment line + base64 key). 0 or -1 with err. */
DRAY_LICENSE_WUR int dray__license_read_pub(const char *path,
                                            unsigned char pk[DRAY_LICENSE_PK_BYTES], char *err,
                                            size_t errlen);
/*
 * Create <dir>/<name>.key (secret key sealed with the passphrase, mode 0600)
 * and <dir>/<name>.pub. Refuses to overwrite either. Writes the kid.
 * Returns 0 or -1 with err; on failure nothing is left behind.
 */
DRAY_LICENSE_WUR int dray__license_keygen(const char *dir, const char *name, const char *pass,
                                          size_t passlen, char kid[DRAY_LICENSE_KID_BYTES],
                                          char *err, size_t errlen);
/*
 * Open a .key file with the passphrase. 0 or -1 with err. Caller wipes sk.
 * With sk NULL, only reads the (unauthenticated) public half; pass ignored.
 */
DRAY_LICENSE_WUR int dray__license_read_secret(const char *path, const char *pass, size_t passlen,
                                               unsigned char sk[DRAY__LICENSE_SK_BYTES],
                                               unsigned char pk[DRAY_LICENSE_PK_BYTES], char *err,
                                               size_t errlen);
/* One deny-list entry. */
typedef struct dray__license_lid {
    char lid[DRAY_LICENSE_LID_MAX + 1]; /* a revoked license id */
} dray__license_lid;

/*
 * Append the lids listed in a deny-list file (one per line, '#' comments,
 * blank lines ignored) to lids[*n..cap). 0, or -1 with err naming the line.
 */
DRAY_LICENSE_WUR int dray__license_read_lids(const char *path, dray__license_lid *lids, size_t cap,
                                             size_t *n, char *err, size_t errlen);
/*
 * Sign payload bytes into "dray1.<b64url(payload)>.<b64url(sig)>" in out
 * (NUL-terminated). The payload is signed as given, whatever it contains.
 * Returns 0, or -1 if out is too small or the key would exceed the 2 KiB cap.
 */
DRAY_LICENSE_WUR int dray__license_sign(const unsigned char sk[DRAY__LICENSE_SK_BYTES],
                                        const char *payload, size_t payload_len, char *out,
                                        size_t outlen);

/* message.c */

/* The licensing layer's one error helper: formats into err (truncated,
 * always NUL-terminated; nothing written when err is NULL or errlen 0) and
 * returns -1, the layer's failure code. Thread-safe. */
int dray__license_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Text for errno value e in buf (strerror_r, GNU or XSI flavour), for use
 * in dray__license_fail messages; returns buf. Thread-safe, cannot fail. */
const char *dray__license_syserr(int e, char buf[DRAY__LICENSE_ERRNO_BYTES]);
/* A license id's characters: 1 or more of [A-Za-z0-9_-] over n bytes (the
 * length limit is the caller's). 1 or 0. */
int dray__license_lid_ok(const char *s, size_t n);
/* "YYYY-MM-DD" (UTC) of t into buf. Cannot fail. */
void dray__license_format_date(int64_t t, char buf[DRAY__LICENSE_DATE_BYTES]);
/* Parse "YYYY-MM-DD" (midnight UTC) or a decimal Unix time. 0 or -1. */
DRAY_LICENSE_WUR int dray__license_parse_date(const char *s, int64_t *out);

#endif /* DRAY_LICENSE_INTERNAL_H */
