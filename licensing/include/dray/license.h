/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray license keys: parse and verify `dray1.<payload>.<signature>` tokens
 * (shared/reference/licensing.md; docs/licensing.md for users).
 *
 * This is a static library (PIC, hidden visibility) linked into each
 * commercial module and into the dray-license tool. Its functions carry no
 * DRAY_API on purpose: a module exports only its entry symbol, so nothing
 * here may ever become a dynamic symbol.
 *
 * Trusted keys are not configurable at run time. The including target links
 * one generated key table (CMake: dray_license_keys for release builds,
 * dray_license_testkeys for tests, or its own via dray_license_keytable()),
 * which defines the dray_license_trusted_* symbols declared at the bottom.
 *
 * Thread safety: every function is reentrant and may be called from any
 * thread; none keeps state between calls.
 */
#ifndef DRAY_LICENSE_H
#define DRAY_LICENSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DRAY_LICENSE_WUR __attribute__((warn_unused_result))
#define DRAY_LICENSE_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#define DRAY_LICENSE_HIDDEN __attribute__((visibility("hidden")))
#else
#define DRAY_LICENSE_WUR
#define DRAY_LICENSE_NONNULL(...)
#define DRAY_LICENSE_HIDDEN
#endif

/* ---- constants ----------------------------------------------------------- */

#define DRAY_LICENSE_FORMAT_VERSION 1 /* the "dray1." prefix; an incompatible change is dray2 */

#define DRAY_LICENSE_PREFIX "dray1." /* format version + signature domain separation */
#define DRAY_LICENSE_MAX_BYTES                                                                     \
    2048 /* longest key once whitespace is stripped; real keys are 300-600 */
#define DRAY_LICENSE_MAX_INPUT                                                                     \
    16384 /* dray-license's stdin buffer; verify skips any amount of whitespace */
#define DRAY_LICENSE_PK_BYTES 32  /* Ed25519 public key */
#define DRAY_LICENSE_SIG_BYTES 64 /* Ed25519 detached signature */
#define DRAY_LICENSE_KID_LEN 8    /* hex of the first 4 bytes of BLAKE2b-256(public key) */
#define DRAY_LICENSE_KID_BYTES (DRAY_LICENSE_KID_LEN + 1)
#define DRAY_LICENSE_LID_MAX 64       /* issued lids are 32 hex chars; room for other schemes */
#define DRAY_LICENSE_SUB_MAX 200      /* a company name, printed on every start */
#define DRAY_LICENSE_EMAIL_MAX 254    /* RFC 5321 path limit */
#define DRAY_LICENSE_NOTE_MAX 200     /* "PO 1234", "trial": not an essay */
#define DRAY_LICENSE_FIELD_BYTES 16   /* name of the payload field an error refers to */
#define DRAY_LICENSE_TRUSTED_BYTES 96 /* "this build trusts ..." list, truncated with "..." */
/* Buffer that always holds a whole dray_license_describe line. */
#define DRAY_LICENSE_MSG_BYTES 512
#define DRAY_LICENSE_IAT_SLACK                                                                     \
    (24 * 3600)                       /* iat this far ahead is time zones or a fast signer clock */
#define DRAY_LICENSE_EXPIRING_DAYS 30 /* warn this many days before exp */
#define DRAY_LICENSE_DEFAULT_GRACE 30 /* days of full function after exp unless the key says */
#define DRAY_LICENSE_MAX_GRACE 3650   /* bounds exp + grace arithmetic */
#define DRAY_LICENSE_MAX_TIME                                                                      \
    INT64_C(253402300799)              /* 9999-12-31T23:59:59Z: dates stay 10 characters */
#define DRAY_LICENSE_MAX_PROCS 1000000 /* advisory process count, sanity bound */

/*
 * Error codes. Disjoint from the core's DRAY_E* codes (-1 .. -99), so one
 * int can carry either. Each has its own text (dray_license_strerror); the
 * line for users comes from dray_license_describe, which adds the details.
 */
#define DRAY_LICENSE_ERRNO_MAP(X)                                                                  \
    X(EMPTY, -100, "license key is empty")                                                         \
    X(TOOLONG, -101, "license key is too long")                                                    \
    X(PREFIX, -102, "malformed license key: it does not start with dray1.")                        \
    X(FIELDS, -103, "malformed license key: expected dray1.<payload>.<signature>")                 \
    X(PAYLOAD_B64, -104, "malformed license key: payload is not valid base64url")                  \
    X(SIG_B64, -105, "malformed license key: signature is not valid base64url")                    \
    X(SIG_LEN, -106, "malformed license key: signature is not 64 bytes")                           \
    X(JSON, -107, "malformed license key: payload is not a JSON object")                           \
    X(MISSING, -108, "malformed license key: a required field is missing")                         \
    X(FIELD, -109, "malformed license key: a field has the wrong type or value")                   \
    X(KID_MISMATCH, -110, "malformed license key: kid does not match the signing key")             \
    X(UNKNOWN_KID, -111, "license key signed by a key this build does not trust")                  \
    X(BADSIG, -112, "license key signature is invalid")                                            \
    X(WRONG_TIER, -113, "license tier does not cover this module")                                 \
    X(MISSING_FEATURE, -114, "license does not include this feature")                              \
    X(NOT_YET_VALID, -115, "license key is not valid yet")                                         \
    X(LAPSED, -116, "license expired and its grace period has ended")                              \
    X(REVOKED, -117, "license has been revoked")                                                   \
    X(UPDATES, -118, "license does not cover builds this recent")                                  \
    X(INVAL, -119, "invalid argument")                                                             \
    X(NOMEM, -120, "out of memory")                                                                \
    X(INTERNAL, -121, "libsodium failed to initialise")

enum {
#define DRAY__LICENSE_ERRNO_ENUM(name, val, text) DRAY_ELIC_##name = (val),
    DRAY_LICENSE_ERRNO_MAP(DRAY__LICENSE_ERRNO_ENUM)
#undef DRAY__LICENSE_ERRNO_ENUM
};

/* Tiers, ordered: a higher tier includes everything below it. */
typedef enum dray_license_tier {
    DRAY_LICENSE_TIER_NONE = 0, /* as a requirement: any tier will do */
    DRAY_LICENSE_TIER_PRO = 1,
    DRAY_LICENSE_TIER_ENTERPRISE = 2
} dray_license_tier;

/* Where a verified key stands at `now` (licensing.md 2.6). */
typedef enum dray_license_state {
    DRAY_LICENSE_VALID = 0,    /* log at info */
    DRAY_LICENSE_EXPIRING = 1, /* <= 30 days before exp: warn at start and daily */
    DRAY_LICENSE_GRACE = 2,    /* exp < now <= exp + grace: works; error-level log */
    DRAY_LICENSE_LAPSED = 3    /* after grace: a new process refuses to load */
} dray_license_state;

/* Features, as bits. A key without "features" gets every feature of its tier. */
#define DRAY_LICENSE_FEATURE_MAP(X)                                                                \
    X(BATCHES, 0, "batches", PRO)                                                                  \
    X(NOTIFICATIONS, 1, "notifications", PRO)                                                      \
    X(RELIABLE_FETCH, 2, "reliable_fetch", PRO)                                                    \
    X(EXPIRING_JOBS, 3, "expiring_jobs", PRO)                                                      \
    X(RATE_LIMIT, 4, "rate_limit", ENTERPRISE)                                                     \
    X(UNIQUE_JOBS, 5, "unique_jobs", ENTERPRISE)                                                   \
    X(PERIODIC, 6, "periodic", ENTERPRISE)                                                         \
    X(ENCRYPTION, 7, "encryption", ENTERPRISE)

enum {
#define DRAY__LICENSE_FEATURE_ENUM(name, bit, text, tier) DRAY_LICENSE_F_##name = (1u << (bit)),
    DRAY_LICENSE_FEATURE_MAP(DRAY__LICENSE_FEATURE_ENUM)
#undef DRAY__LICENSE_FEATURE_ENUM
};
#define DRAY_LICENSE_F_PRO_ALL 0x0fu        /* the pro features */
#define DRAY_LICENSE_F_ENTERPRISE_ALL 0xffu /* enterprise includes pro */

/* ---- types --------------------------------------------------------------- */

/* What dray_license_verify learned. Caller-owned, no heap: embed or stack it. */
typedef struct dray_license_info {
    int verified; /* 1: signature checked, payload parsed; fields below trusted */
    char kid[DRAY_LICENSE_KID_BYTES];       /* signing key id; on UNKNOWN_KID/BADSIG the claimed one
                                               (untrusted) or "" */
    char lid[DRAY_LICENSE_LID_MAX + 1];     /* license id */
    char sub[DRAY_LICENSE_SUB_MAX + 1];     /* licensee, UTF-8 */
    char email[DRAY_LICENSE_EMAIL_MAX + 1]; /* technical contact or "" */
    char note[DRAY_LICENSE_NOTE_MAX + 1];   /* free text or "" */
    dray_license_tier tier;                 /* pro or enterprise */
    uint32_t features;        /* DRAY_LICENSE_F_* bits; the tier's set when not listed */
    int features_listed;      /* 1: the key narrows features with a list */
    int64_t iat;              /* issued at, Unix seconds */
    int64_t exp;              /* end of term, Unix seconds; 0 = perpetual */
    int grace_days;           /* days of full function after exp */
    int64_t grace_end;        /* exp + grace (0 when perpetual) */
    int64_t upd;              /* builds dated after this refuse the key; 0 = no limit */
    long procs;               /* licensed process count (advisory); 0 = not stated */
    int64_t now;              /* the time this was evaluated at */
    int64_t build_time;       /* this build's date, compared with upd */
    dray_license_state state; /* computed at now */
    long days_left;           /* whole days until exp (negative after); 0 when perpetual */
    int revoked;              /* 1: lid is on the compiled-in deny-list */
    char field[DRAY_LICENSE_FIELD_BYTES];     /* MISSING/FIELD errors: the payload field at fault */
    char trusted[DRAY_LICENSE_TRUSTED_BYTES]; /* kids this build trusts, for UNKNOWN_KID messages */
    dray_license_tier need_tier;              /* set by dray_license_check, for its message */
    uint32_t need_feature;                    /* set by dray_license_check, for its message */
} dray_license_info;

/* One trusted public key; tables of these are generated at build time. */
typedef struct dray_license_trusted_key {
    char kid[DRAY_LICENSE_KID_BYTES];        /* derived from pk, checked by the generator */
    unsigned char pk[DRAY_LICENSE_PK_BYTES]; /* Ed25519 public key */
} dray_license_trusted_key;

/* ---- verify and check ---------------------------------------------------- */

/*
 * Parse and verify a key against the compiled-in trusted keys at time `now`
 * (Unix seconds; pass the later of the local clock and Redis TIME). `text`
 * need not be NUL-terminated; ASCII whitespace anywhere is ignored and does
 * not count toward DRAY_LICENSE_MAX_BYTES.
 * Returns 0 when the key may be used (state VALID, EXPIRING or GRACE), or a
 * DRAY_ELIC_* code. The signature is checked before any payload byte is
 * parsed. On REVOKED, NOT_YET_VALID, UPDATES and LAPSED the key was genuine:
 * out->verified is 1 and every field is filled, for the message.
 */
DRAY_LICENSE_WUR DRAY_LICENSE_NONNULL(4) int dray_license_verify(const char *text, size_t len,
                                                                 int64_t now,
                                                                 dray_license_info *out);

/*
 * May a module that needs tier `need` (NONE: any) and feature bit `feature`
 * (0: none in particular) run on this key? Returns 0, or REVOKED,
 * NOT_YET_VALID, UPDATES, LAPSED, WRONG_TIER, MISSING_FEATURE, or INVAL if
 * `info` was not verified. Records need/feature in `info` for the message.
 */
DRAY_LICENSE_WUR DRAY_LICENSE_NONNULL(1) int dray_license_check(dray_license_info *info,
                                                                dray_license_tier need,
                                                                uint32_t feature);

/* ---- messages and names -------------------------------------------------- */

/*
 * Write one human line for the outcome `rc` of verify/check on `info` (may be
 * NULL when rc < 0) into buf, always NUL-terminated, truncated to `size`
 * (DRAY_LICENSE_MSG_BYTES always suffices). Never prints the key itself.
 * Cannot fail.
 */
DRAY_LICENSE_NONNULL(3)
void dray_license_describe(int rc, const dray_license_info *info, char *buf, size_t size);

/* Static text of a DRAY_ELIC_* code (or 0); never NULL. */
const char *dray_license_strerror(int code);
/* Symbolic name ("ELIC_BADSIG") of a code; never NULL. */
const char *dray_license_err_name(int code);
/* "pro", "enterprise", "none"; never NULL. */
const char *dray_license_tier_name(dray_license_tier tier);
/* "valid", "expiring", "grace", "lapsed"; never NULL. */
const char *dray_license_state_name(dray_license_state state);
/* Name of one feature bit ("batches"), or NULL if not exactly one known bit. */
const char *dray_license_feature_name(uint32_t feature);
/* Parse "pro"/"enterprise". Returns 0 or DRAY_ELIC_INVAL. */
DRAY_LICENSE_WUR DRAY_LICENSE_NONNULL(1, 2) int dray_license_tier_parse(const char *name,
                                                                        dray_license_tier *out);
/* Parse a feature name into its bit. Returns 0 or DRAY_ELIC_INVAL. */
DRAY_LICENSE_WUR DRAY_LICENSE_NONNULL(1, 2) int dray_license_feature_parse(const char *name,
                                                                           uint32_t *out);

/* ---- the compiled-in table (defined by one generated file per target) ---- */

extern const dray_license_trusted_key dray_license_trusted_keys[] DRAY_LICENSE_HIDDEN;
extern const size_t dray_license_trusted_keys_count DRAY_LICENSE_HIDDEN;
extern const char *const dray_license_revoked_lids[] DRAY_LICENSE_HIDDEN;
extern const size_t dray_license_revoked_lids_count DRAY_LICENSE_HIDDEN;
extern const int64_t dray_license_build_time DRAY_LICENSE_HIDDEN; /* build date, Unix seconds */

#ifdef __cplusplus
}
#endif

#endif /* DRAY_LICENSE_H */
