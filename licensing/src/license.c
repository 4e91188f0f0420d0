/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Parse and verify license keys (licensing.md 2.1-2.3, 2.6).
 *
 * Order of work, and why: strip whitespace, split into the three fields,
 * base64-decode the payload and signature (syntax only, so a damaged paste
 * gets a precise "malformed" message), then verify the Ed25519 signature over
 * the ASCII text "dray1.<payload>" against each trusted key. Only a payload
 * that verified is parsed as JSON; an unverified one is parsed at most for
 * the claimed kid in the "unknown key" message and trusted for nothing else.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "license_internal.h"

#define DAY 86400

/* A key split into its parts. Large enough for any input under the cap. */
typedef struct token {
    char text[DRAY_LICENSE_MAX_BYTES + 1];         /* the key, whitespace removed */
    size_t len;                                    /* bytes in text */
    size_t signed_len;                             /* bytes of "dray1.<payload>" */
    unsigned char payload[DRAY_LICENSE_MAX_BYTES]; /* decoded payload (JSON, unparsed) */
    size_t payload_len;                            /* bytes in payload */
    unsigned char sig[DRAY_LICENSE_MAX_BYTES];     /* decoded signature; must be 64 bytes */
    size_t sig_len;                                /* bytes in sig */
} token;

static int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * Decode one base64url field; the whole field must be consumed. The alphabet
 * is checked here first: libsodium 1.0.18 decodes every byte >= 0x80 as '_'
 * (a signed char reaches its constant-time lookup), which would let a key
 * with a changed byte still verify.
 */
static int
decode_field(const char *b64, size_t b64_len, unsigned char *bin, size_t cap, size_t *bin_len)
{
    const char *end = NULL;
    size_t i;

    if (b64_len == 0)
        return -1;
    for (i = 0; i < b64_len; i++) {
        char c = b64[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return -1;
    }
    if (sodium_base642bin(bin, cap, b64, b64_len, NULL, bin_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    return end == b64 + b64_len ? 0 : -1;
}

/* Strip, split and decode. Returns 0 or a malformed-key code. */
static int
split(const char *text, size_t len, token *t)
{
    size_t i, ndots = 0, dot1 = 0, dot2 = 0;

    /* Only the key's own characters count: whitespace around or inside it
     * (a padded file, a wrapped paste) is skipped whatever its length. */
    t->len = 0;
    for (i = 0; i < len; i++) {
        if (is_space((unsigned char)text[i]))
            continue;
        if (t->len == DRAY_LICENSE_MAX_BYTES)
            return DRAY_ELIC_TOOLONG;
        t->text[t->len++] = text[i];
    }
    t->text[t->len] = '\0';
    if (t->len == 0)
        return DRAY_ELIC_EMPTY;

    for (i = 0; i < t->len; i++) {
        if (t->text[i] != '.')
            continue;
        if (++ndots == 1)
            dot1 = i;
        else if (ndots == 2)
            dot2 = i;
    }
    if (ndots == 0 || dot1 != strlen(DRAY_LICENSE_PREFIX) - 1 ||
        memcmp(t->text, DRAY_LICENSE_PREFIX, dot1 + 1) != 0)
        return DRAY_ELIC_PREFIX;
    if (ndots != 2)
        return DRAY_ELIC_FIELDS;

    if (decode_field(t->text + dot1 + 1, dot2 - dot1 - 1, t->payload, sizeof t->payload,
                     &t->payload_len) != 0)
        return DRAY_ELIC_PAYLOAD_B64;
    if (decode_field(t->text + dot2 + 1, t->len - dot2 - 1, t->sig, sizeof t->sig, &t->sig_len) !=
        0)
        return DRAY_ELIC_SIG_B64;
    if (t->sig_len != DRAY_LICENSE_SIG_BYTES)
        return DRAY_ELIC_SIG_LEN;
    t->signed_len = dot2;
    return 0;
}

/* ---- payload fields ------------------------------------------------------ */

static int
is_kid(const char *s, size_t n)
{
    size_t i;

    if (n != DRAY_LICENSE_KID_LEN)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Printable text: jansson has already checked UTF-8 and refused NUL; refuse
 * control characters so a licensee name cannot forge log lines. */
static int
is_text(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return 0;
    return 1;
}

static int
is_nonempty_text(const char *s, size_t n)
{
    return n > 0 && is_text(s, n);
}

static int
field_error(dray_license_info *out, const char *name, int code)
{
    snprintf(out->field, sizeof out->field, "%s", name);
    return code;
}

/* Copy string field `name` into dst (cap includes the NUL). */
static int
get_str(json_t *root, const char *name, int required, int (*valid)(const char *, size_t), char *dst,
        size_t cap, dray_license_info *out)
{
    json_t *v = json_object_get(root, name);
    size_t n;

    if (v == NULL)
        return required ? field_error(out, name, DRAY_ELIC_MISSING) : 0;
    if (!json_is_string(v))
        return field_error(out, name, DRAY_ELIC_FIELD);
    n = json_string_length(v);
    if (n >= cap || !valid(json_string_value(v), n))
        return field_error(out, name, DRAY_ELIC_FIELD);
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    return 0;
}

/* Integer field in [lo, hi]; *dst keeps its value when absent and optional. */
static int
get_int(json_t *root, const char *name, int required, int64_t lo, int64_t hi, int64_t *dst,
        dray_license_info *out)
{
    json_t *v = json_object_get(root, name);

    if (v == NULL)
        return required ? field_error(out, name, DRAY_ELIC_MISSING) : 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return field_error(out, name, DRAY_ELIC_FIELD);
    *dst = (int64_t)json_integer_value(v);
    return 0;
}

static uint32_t
tier_features(dray_license_tier tier)
{
    return tier == DRAY_LICENSE_TIER_ENTERPRISE ? DRAY_LICENSE_F_ENTERPRISE_ALL
                                                : DRAY_LICENSE_F_PRO_ALL;
}

/* Unknown feature names are ignored: a newer issuer may know more than this build. */
static int
get_features(json_t *root, dray_license_info *out)
{
    json_t *v = json_object_get(root, "features"), *e;
    size_t i;

    out->features = tier_features(out->tier);
    if (v == NULL)
        return 0;
    if (!json_is_array(v) || json_array_size(v) > 64)
        return field_error(out, "features", DRAY_ELIC_FIELD);
    out->features_listed = 1;
    out->features = 0;
    json_array_foreach(v, i, e)
    {
        uint32_t bit;
        if (!json_is_string(e))
            return field_error(out, "features", DRAY_ELIC_FIELD);
        if (dray_license_feature_parse(json_string_value(e), &bit) == 0)
            out->features |= bit;
    }
    out->features &= tier_features(out->tier);
    return 0;
}

static int
parse_fields(json_t *root, dray_license_info *out)
{
    char tier[16] = "";
    int64_t grace = DRAY_LICENSE_DEFAULT_GRACE, procs = 0;
    int rc;

    /* Required fields first, in the documented order, so "missing X" names the first. */
    if ((rc = get_str(root, "kid", 1, is_kid, out->kid, sizeof out->kid, out)) != 0 ||
        (rc = get_str(root, "lid", 1, dray__license_lid_ok, out->lid, sizeof out->lid, out)) != 0 ||
        (rc = get_str(root, "sub", 1, is_nonempty_text, out->sub, sizeof out->sub, out)) != 0 ||
        (rc = get_str(root, "tier", 1, is_nonempty_text, tier, sizeof tier, out)) != 0 ||
        (rc = get_int(root, "iat", 1, 0, DRAY_LICENSE_MAX_TIME, &out->iat, out)) != 0 ||
        (rc = get_int(root, "exp", 1, 0, DRAY_LICENSE_MAX_TIME, &out->exp, out)) != 0)
        return rc;
    if (dray_license_tier_parse(tier, &out->tier) != 0)
        return field_error(out, "tier", DRAY_ELIC_FIELD);
    if ((rc = get_str(root, "email", 0, is_text, out->email, sizeof out->email, out)) != 0 ||
        (rc = get_str(root, "note", 0, is_text, out->note, sizeof out->note, out)) != 0 ||
        (rc = get_int(root, "grace", 0, 0, DRAY_LICENSE_MAX_GRACE, &grace, out)) != 0 ||
        (rc = get_int(root, "upd", 0, 0, DRAY_LICENSE_MAX_TIME, &out->upd, out)) != 0 ||
        (rc = get_int(root, "procs", 0, 0, DRAY_LICENSE_MAX_PROCS, &procs, out)) != 0 ||
        (rc = get_features(root, out)) != 0)
        return rc;
    out->grace_days = (int)grace;
    out->procs = (long)procs;
    return 0;
}

/* Parse the payload JSON into *out. Returns 0, JSON, MISSING, FIELD or NOMEM. */
static int
parse_payload(const unsigned char *buf, size_t len, dray_license_info *out)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return json_error_code(&jerr) == json_error_out_of_memory ? DRAY_ELIC_NOMEM
                                                                  : DRAY_ELIC_JSON;
    rc = json_is_object(root) ? parse_fields(root, out) : DRAY_ELIC_JSON;
    json_decref(root);
    return rc;
}

/* The kid an unverified payload claims, for the message only; "" if none. */
static void
claimed_kid(const token *t, char kid[DRAY_LICENSE_KID_BYTES])
{
    json_t *root, *v;

    kid[0] = '\0';
    root = json_loadb((const char *)t->payload, t->payload_len, 0, NULL);
    if (root == NULL)
        return;
    v = json_object_get(root, "kid");
    if (json_is_string(v) && is_kid(json_string_value(v), json_string_length(v)))
        memcpy(kid, json_string_value(v), DRAY_LICENSE_KID_BYTES);
    json_decref(root);
}

/* ---- state --------------------------------------------------------------- */

static long
floor_days(int64_t seconds)
{
    int64_t d = seconds / DAY;

    if (seconds % DAY != 0 && seconds < 0)
        d--;
    return (long)d;
}

/* Compute state, grace end and days left at out->now. Cannot fail. */
static void
evaluate(dray_license_info *out)
{
    out->state = DRAY_LICENSE_VALID;
    out->grace_end = 0;
    out->days_left = 0;
    if (out->exp == 0)
        return;
    out->grace_end = out->exp + (int64_t)out->grace_days * DAY;
    out->days_left = floor_days(out->exp - out->now);
    if (out->now > out->grace_end)
        out->state = DRAY_LICENSE_LAPSED;
    else if (out->now > out->exp)
        out->state = DRAY_LICENSE_GRACE;
    else if (out->exp - out->now <= (int64_t)DRAY_LICENSE_EXPIRING_DAYS * DAY)
        out->state = DRAY_LICENSE_EXPIRING;
}

/* The refusals that apply to a genuine key, most specific first. */
static int
refusal(const dray_license_info *info)
{
    if (info->revoked)
        return DRAY_ELIC_REVOKED;
    if (info->iat > info->now + DRAY_LICENSE_IAT_SLACK)
        return DRAY_ELIC_NOT_YET_VALID;
    if (info->upd != 0 && info->build_time > info->upd)
        return DRAY_ELIC_UPDATES;
    if (info->state == DRAY_LICENSE_LAPSED)
        return DRAY_ELIC_LAPSED;
    return 0;
}

static void
list_trusted(const dray__license_keyring *ring, dray_license_info *out)
{
    size_t i, used = 0;

    for (i = 0; i < ring->nkeys; i++) {
        /* room for ", " + kid + ", ..." + NUL */
        if (used + 2 + DRAY_LICENSE_KID_LEN + 5 + 1 > sizeof out->trusted) {
            memcpy(out->trusted + used, ", ...", 6);
            return;
        }
        used += (size_t)snprintf(out->trusted + used, sizeof out->trusted - used, "%s%.8s",
                                 i ? ", " : "", ring->keys[i].kid);
    }
}

static int
in_range(int64_t now)
{
    return now >= 0 && now <= DRAY_LICENSE_MAX_TIME;
}

/* ---- public -------------------------------------------------------------- */

int
dray__license_verify_with(const dray__license_keyring *ring, const char *text, size_t len,
                          int64_t now, dray_license_info *out)
{
    token t;
    const dray_license_trusted_key *key = NULL;
    size_t i;
    int rc;

    if (out == NULL)
        return DRAY_ELIC_INVAL;
    memset(out, 0, sizeof *out);
    out->now = now;
    if (ring == NULL || (text == NULL && len != 0) || !in_range(now))
        return DRAY_ELIC_INVAL;
    out->build_time = ring->build_time;
    list_trusted(ring, out);
    if (sodium_init() < 0)
        return DRAY_ELIC_INTERNAL;
    if (text == NULL)
        return DRAY_ELIC_EMPTY;

    rc = split(text, len, &t);
    if (rc != 0)
        goto done;

    for (i = 0; i < ring->nkeys && key == NULL; i++)
        if (crypto_sign_verify_detached(t.sig, (const unsigned char *)t.text, t.signed_len,
                                        ring->keys[i].pk) == 0)
            key = &ring->keys[i];
    if (key == NULL) {
        claimed_kid(&t, out->kid);
        rc = DRAY_ELIC_UNKNOWN_KID;
        for (i = 0; i < ring->nkeys; i++)
            if (out->kid[0] != '\0' && strcmp(out->kid, ring->keys[i].kid) == 0)
                rc = DRAY_ELIC_BADSIG;
        /* No readable kid: say "unknown" only when nothing could have verified it. */
        if (out->kid[0] == '\0' && ring->nkeys > 0)
            rc = DRAY_ELIC_BADSIG;
        goto done;
    }

    rc = parse_payload(t.payload, t.payload_len, out);
    if (rc != 0)
        goto done;
    if (strcmp(out->kid, key->kid) != 0) {
        rc = DRAY_ELIC_KID_MISMATCH;
        goto done;
    }
    out->verified = 1;
    for (i = 0; i < ring->nrevoked; i++)
        if (strcmp(out->lid, ring->revoked[i]) == 0)
            out->revoked = 1;
    evaluate(out);
    rc = refusal(out);

done:
    sodium_memzero(&t, sizeof t);
    return rc;
}

int
dray__license_decode_unverified(const char *text, size_t len, int64_t now, dray_license_info *out)
{
    token t;
    int rc;

    if (out == NULL)
        return DRAY_ELIC_INVAL;
    memset(out, 0, sizeof *out);
    out->now = now;
    if ((text == NULL && len != 0) || !in_range(now))
        return DRAY_ELIC_INVAL;
    if (sodium_init() < 0)
        return DRAY_ELIC_INTERNAL;
    if (text == NULL)
        return DRAY_ELIC_EMPTY;
    rc = split(text, len, &t);
    if (rc == 0)
        rc = parse_payload(t.payload, t.payload_len, out);
    if (rc == 0)
        evaluate(out);
    sodium_memzero(&t, sizeof t);
    return rc;
}

int
dray_license_verify(const char *text, size_t len, int64_t now, dray_license_info *out)
{
    dray__license_keyring ring = {
        dray_license_trusted_keys,       dray_license_trusted_keys_count, dray_license_revoked_lids,
        dray_license_revoked_lids_count, dray_license_build_time,
    };

    return dray__license_verify_with(&ring, text, len, now, out);
}

int
dray_license_check(dray_license_info *info, dray_license_tier need, uint32_t feature)
{
    int rc;

    info->need_tier = need;
    info->need_feature = feature;
    if (!info->verified || (need != DRAY_LICENSE_TIER_NONE && need != DRAY_LICENSE_TIER_PRO &&
                            need != DRAY_LICENSE_TIER_ENTERPRISE))
        return DRAY_ELIC_INVAL;
    rc = refusal(info);
    if (rc != 0)
        return rc;
    if (info->tier < need)
        return DRAY_ELIC_WRONG_TIER;
    if (feature != 0 && (info->features & feature) != feature)
        return DRAY_ELIC_MISSING_FEATURE;
    return 0;
}
