/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Names, error texts and the one-line messages users see. Every message says
 * what happened and, for refusals, what to do. None ever contains the key.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "license_internal.h"

#define DAY 86400

int
dray__license_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *
dray__license_syserr(int e, char buf[DRAY__LICENSE_ERRNO_BYTES])
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    /* GNU strerror_r may return a static string instead of filling buf */
    const char *s = strerror_r(e, buf, DRAY__LICENSE_ERRNO_BYTES);
    if (s != buf)
        snprintf(buf, DRAY__LICENSE_ERRNO_BYTES, "%s", s);
#else
    if (strerror_r(e, buf, DRAY__LICENSE_ERRNO_BYTES))
        snprintf(buf, DRAY__LICENSE_ERRNO_BYTES, "error %d", e);
#endif
    return buf;
}

int
dray__license_lid_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

const char *
dray_license_strerror(int code)
{
    switch (code) {
    case 0:
        return "license key accepted";
#define DRAY__LICENSE_ERRNO_TEXT(name, val, text)                                                  \
    case (val):                                                                                    \
        return text;
        DRAY_LICENSE_ERRNO_MAP(DRAY__LICENSE_ERRNO_TEXT)
#undef DRAY__LICENSE_ERRNO_TEXT
    default:
        return "unknown license error";
    }
}

const char *
dray_license_err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
#define DRAY__LICENSE_ERRNO_NAME(name, val, text)                                                  \
    case (val):                                                                                    \
        return "ELIC_" #name;
        DRAY_LICENSE_ERRNO_MAP(DRAY__LICENSE_ERRNO_NAME)
#undef DRAY__LICENSE_ERRNO_NAME
    default:
        return "ELIC_UNKNOWN";
    }
}

const char *
dray_license_tier_name(dray_license_tier tier)
{
    switch (tier) {
    case DRAY_LICENSE_TIER_PRO:
        return "pro";
    case DRAY_LICENSE_TIER_ENTERPRISE:
        return "enterprise";
    default:
        return "none";
    }
}

const char *
dray_license_state_name(dray_license_state state)
{
    switch (state) {
    case DRAY_LICENSE_VALID:
        return "valid";
    case DRAY_LICENSE_EXPIRING:
        return "expiring";
    case DRAY_LICENSE_GRACE:
        return "grace";
    case DRAY_LICENSE_LAPSED:
        return "lapsed";
    default:
        return "unknown";
    }
}

const char *
dray_license_feature_name(uint32_t feature)
{
    switch (feature) {
#define DRAY__LICENSE_FEATURE_NAME(name, bit, text, tier)                                          \
    case DRAY_LICENSE_F_##name:                                                                    \
        return text;
        DRAY_LICENSE_FEATURE_MAP(DRAY__LICENSE_FEATURE_NAME)
#undef DRAY__LICENSE_FEATURE_NAME
    default:
        return NULL;
    }
}

int
dray_license_tier_parse(const char *name, dray_license_tier *out)
{
    if (strcmp(name, "pro") == 0)
        *out = DRAY_LICENSE_TIER_PRO;
    else if (strcmp(name, "enterprise") == 0)
        *out = DRAY_LICENSE_TIER_ENTERPRISE;
    else
        return DRAY_ELIC_INVAL;
    return 0;
}

int
dray_license_feature_parse(const char *name, uint32_t *out)
{
#define DRAY__LICENSE_FEATURE_PARSE(name_, bit, text, tier)                                        \
    if (strcmp(name, text) == 0) {                                                                 \
        *out = DRAY_LICENSE_F_##name_;                                                             \
        return 0;                                                                                  \
    }
    DRAY_LICENSE_FEATURE_MAP(DRAY__LICENSE_FEATURE_PARSE)
#undef DRAY__LICENSE_FEATURE_PARSE
    return DRAY_ELIC_INVAL;
}

/* ---- dates --------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void
dray__license_format_date(int64_t t, char buf[DRAY__LICENSE_DATE_BYTES])
{
    struct tm tm;
    time_t tt;

    if (t < 0)
        t = 0;
    if (t > DRAY_LICENSE_MAX_TIME)
        t = DRAY_LICENSE_MAX_TIME;
    tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(buf, DRAY__LICENSE_DATE_BYTES, "%Y-%m-%d", &tm) != 10)
        memcpy(buf, "0000-00-00", DRAY__LICENSE_DATE_BYTES);
}

int
dray__license_parse_date(const char *s, int64_t *out)
{
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, m, d, i;
    size_t n = strlen(s);
    int64_t v = 0;

    if (n == 10 && s[4] == '-' && s[7] == '-') {
        for (i = 0; i < 10; i++)
            if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
                return -1;
        y = (unsigned)((s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0'));
        m = (unsigned)((s[5] - '0') * 10 + (s[6] - '0'));
        d = (unsigned)((s[8] - '0') * 10 + (s[9] - '0'));
        if (y < 1970 || m < 1 || m > 12 || d < 1)
            return -1;
        if (d > mdays[m - 1] + (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
            return -1;
        *out = days_from_civil(y, m, d) * DAY;
        return 0;
    }
    if (n == 0 || n > 12)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > DRAY_LICENSE_MAX_TIME)
        return -1;
    *out = v;
    return 0;
}

/* ---- messages ------------------------------------------------------------ */

/* "batches, periodic" for a feature set. Cannot fail. */
static void
feature_list(uint32_t features, char *buf, size_t size)
{
    size_t used = 0;
    unsigned bit;

    buf[0] = '\0';
    for (bit = 0; bit < 32; bit++) {
        const char *name = dray_license_feature_name(1u << bit);
        int n;
        if (name == NULL || !(features & (1u << bit)))
            continue;
        n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", name);
        if (n < 0 || (size_t)n >= size - used)
            return;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(buf, size, "none");
}

static void
describe_ok(const dray_license_info *in, char *buf, size_t size)
{
    char exp[DRAY__LICENSE_DATE_BYTES], end[DRAY__LICENSE_DATE_BYTES], feats[128] = "";
    const char *tier = dray_license_tier_name(in->tier);

    dray__license_format_date(in->exp, exp);
    dray__license_format_date(in->grace_end, end);
    if (in->features_listed) {
        memcpy(feats, "; features: ", 13);
        feature_list(in->features, feats + 12, sizeof feats - 12);
    }
    switch (in->state) {
    case DRAY_LICENSE_EXPIRING:
        snprintf(buf, size,
                 "license for %s (%s) expires on %s, in %ld day%s; renew the license key "
                 "before then%s",
                 in->sub, tier, exp, in->days_left, in->days_left == 1 ? "" : "s", feats);
        break;
    case DRAY_LICENSE_GRACE:
        snprintf(buf, size,
                 "license for %s (%s) EXPIRED on %s; grace period ends %s, after which new "
                 "processes refuse to start: renew the license key now%s",
                 in->sub, tier, exp, end, feats);
        break;
    case DRAY_LICENSE_LAPSED:
        snprintf(buf, size, "license for %s (%s) expired on %s, grace ended %s", in->sub, tier, exp,
                 end);
        break;
    default:
        if (in->exp == 0 && in->upd != 0) {
            dray__license_format_date(in->upd, end);
            snprintf(buf, size, "licensed to %s (%s, perpetual, updates until %s%s)", in->sub, tier,
                     end, feats);
        } else if (in->exp == 0)
            snprintf(buf, size, "licensed to %s (%s, perpetual%s)", in->sub, tier, feats);
        else
            snprintf(buf, size, "licensed to %s (%s, expires %s%s)", in->sub, tier, exp, feats);
        break;
    }
}

/* The message for a key that is not usable as text (rc 0 included): 1 with
 * buf written, 0 when rc is a refusal of a parsed key (describe_refusal). */
static int
describe_malformed(int rc, const dray_license_info *in, char *buf, size_t size)
{
    switch (rc) {
    case 0:
        if (in != NULL && in->verified)
            describe_ok(in, buf, size);
        else
            snprintf(buf, size, "%s", dray_license_strerror(rc));
        return 1;
    case DRAY_ELIC_EMPTY:
        snprintf(buf, size,
                 "license key is empty: where it was read from (see \"key from\") holds no "
                 "key; put the key in the license or license_file setting, DRAY_LICENSE or "
                 "DRAY_LICENSE_FILE");
        return 1;
    case DRAY_ELIC_TOOLONG:
        snprintf(buf, size,
                 "license key is too long (over %d characters without whitespace): paste only "
                 "the key",
                 DRAY_LICENSE_MAX_BYTES);
        return 1;
    case DRAY_ELIC_PREFIX:
    case DRAY_ELIC_FIELDS:
    case DRAY_ELIC_PAYLOAD_B64:
    case DRAY_ELIC_SIG_B64:
    case DRAY_ELIC_SIG_LEN:
        snprintf(buf, size, "%s; paste the whole key exactly as issued", dray_license_strerror(rc));
        return 1;
    case DRAY_ELIC_MISSING:
        snprintf(buf, size, "malformed license key: required field \"%s\" is missing",
                 in ? in->field : "?");
        return 1;
    case DRAY_ELIC_FIELD:
        snprintf(buf, size, "malformed license key: field \"%s\" has the wrong type or value",
                 in ? in->field : "?");
        return 1;
    case DRAY_ELIC_UNKNOWN_KID:
        if (in == NULL)
            break;
        if (in->trusted[0] == '\0')
            snprintf(buf, size, "license key signed by unknown key %s; this build trusts no keys",
                     in->kid[0] ? in->kid : "(unreadable)");
        else
            snprintf(buf, size, "license key signed by unknown key %s; this build trusts %s",
                     in->kid[0] ? in->kid : "(unreadable)", in->trusted);
        return 1;
    case DRAY_ELIC_BADSIG:
        snprintf(buf, size,
                 "license key signature is invalid%s%s%s: the key was altered or damaged; paste "
                 "it again exactly as issued",
                 in && in->kid[0] ? " (it names key " : "", in && in->kid[0] ? in->kid : "",
                 in && in->kid[0] ? ")" : "");
        return 1;
    default:
        break;
    }
    return 0;
}

/* The message for refusing a genuine key (in verified): names the licensee
 * and the dates, into buf. Cannot fail. */
static void
describe_refusal(int rc, const dray_license_info *in, char *buf, size_t size)
{
    char d1[DRAY__LICENSE_DATE_BYTES], d2[DRAY__LICENSE_DATE_BYTES], feats[128];

    switch (rc) {
    case DRAY_ELIC_LAPSED:
        dray__license_format_date(in->exp, d1);
        dray__license_format_date(in->grace_end, d2);
        snprintf(buf, size,
                 "license for %s (%s) expired on %s, grace ended %s: renew the license key",
                 in->sub, dray_license_tier_name(in->tier), d1, d2);
        return;
    case DRAY_ELIC_NOT_YET_VALID:
        dray__license_format_date(in->iat, d1);
        snprintf(buf, size,
                 "license key for %s is not valid yet: issued %s, more than a day ahead of this "
                 "clock; check the system clock",
                 in->sub, d1);
        return;
    case DRAY_ELIC_REVOKED:
        snprintf(buf, size, "license %s for %s has been revoked; contact dray support", in->lid,
                 in->sub);
        return;
    case DRAY_ELIC_UPDATES:
        dray__license_format_date(in->upd, d1);
        dray__license_format_date(in->build_time, d2);
        snprintf(buf, size,
                 "license for %s covers builds up to %s, this build is from %s: use an older "
                 "build or renew for updates",
                 in->sub, d1, d2);
        return;
    case DRAY_ELIC_WRONG_TIER:
        snprintf(buf, size, "license for %s is %s; this module needs %s", in->sub,
                 dray_license_tier_name(in->tier), dray_license_tier_name(in->need_tier));
        return;
    case DRAY_ELIC_MISSING_FEATURE:
        feature_list(in->features, feats, sizeof feats);
        snprintf(buf, size, "license for %s does not include %s (it includes: %s)", in->sub,
                 dray_license_feature_name(in->need_feature)
                     ? dray_license_feature_name(in->need_feature)
                     : "the required features",
                 feats);
        return;
    default:
        snprintf(buf, size, "%s", dray_license_strerror(rc));
        return;
    }
}

void
dray_license_describe(int rc, const dray_license_info *info, char *buf, size_t size)
{
    const dray_license_info *in = info;

    if (size == 0)
        return;
    buf[0] = '\0';
    if (describe_malformed(rc, in, buf, size))
        return;
    if (in == NULL || !in->verified) {
        snprintf(buf, size, "%s", dray_license_strerror(rc));
        return;
    }
    describe_refusal(rc, in, buf, size);
}
