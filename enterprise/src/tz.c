/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/* Time zones from the TZ database, read once from TZif files (RFC 8536):
 * transitions for the past, the footer's POSIX TZ rule for the future.
 * Thread-safe by construction: no TZ variable, no localtime, no globals. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"

#define DEFAULT_TZDIR "/usr/share/zoneinfo"

/* One date of a POSIX rule: Jn (1-365, no Feb 29), n (0-365), Mm.w.d. */
typedef struct rule_date {
    char kind;    /* 'J', 'n' or 'M' */
    int m, w, d;  /* M form */
    int day;      /* J and n forms */
    int32_t time; /* local seconds after midnight (may be negative or > 24 h) */
} rule_date;

typedef struct tz_rule {
    int32_t std_off; /* seconds east of UTC */
    int32_t dst_off;
    int has_dst;
    rule_date start, end;
} tz_rule;

struct ent_tz {
    char name[ENT_TZ_NAME_MAX + 1];
    size_t n;     /* transitions */
    int64_t *at;  /* transition times, ascending */
    int32_t *off; /* offset in effect from at[i] */
    uint8_t *dst; /* isdst from at[i] */
    int32_t off0; /* before the first transition */
    uint8_t dst0;
    int has_rule; /* the footer rule governs after the last transition */
    tz_rule rule;
};

/* ---- calendar arithmetic (proleptic Gregorian, no libc time functions) ---- */

/* Days from 1970-01-01 to y-m-d (Howard Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(int64_t y, int m)
{
    static const int md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : md[m - 1];
}

/* Broken-down UTC time of t (what gmtime_r does, for any int64). */
static void
breakdown(int64_t t, struct tm *tm)
{
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t secs = t - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    memset(tm, 0, sizeof *tm);
    tm->tm_year = (int)(y - 1900);
    tm->tm_mon = m - 1;
    tm->tm_mday = d;
    tm->tm_hour = (int)(secs / 3600);
    tm->tm_min = (int)(secs / 60 % 60);
    tm->tm_sec = (int)(secs % 60);
    tm->tm_wday = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
    tm->tm_yday = (int)(days - days_from_civil(y, 1, 1));
}

/* ---- POSIX TZ rules (the TZif footer) ----------------------------------- */

static const char *
rule_name(const char *p)
{
    if (*p == '<') {
        const char *e = strchr(p, '>');
        return e && e - p >= 2 ? e + 1 : NULL;
    }
    const char *s = p;
    while (isalpha((unsigned char)*p))
        p++;
    return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]], hours up to 167 (RFC 8536 extension). */
static const char *
rule_hms(const char *p, int32_t *out)
{
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*p))
        return NULL;
    long h = 0, m = 0, s = 0;
    while (isdigit((unsigned char)*p) && h <= 167)
        h = h * 10 + (*p++ - '0');
    if (h > 167)
        return NULL;
    if (*p == ':') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p) && m < 60)
            m = m * 10 + (*p++ - '0');
        if (*p == ':') {
            p++;
            if (!isdigit((unsigned char)*p))
                return NULL;
            while (isdigit((unsigned char)*p) && s < 60)
                s = s * 10 + (*p++ - '0');
        }
    }
    if (m > 59 || s > 59)
        return NULL;
    *out = (int32_t)(sign * (h * 3600 + m * 60 + s));
    return p;
}

static const char *
rule_num(const char *p, int lo, int hi, int *out)
{
    if (!isdigit((unsigned char)*p))
        return NULL;
    long v = 0;
    while (isdigit((unsigned char)*p) && v <= hi)
        v = v * 10 + (*p++ - '0');
    if (v < lo || v > hi)
        return NULL;
    *out = (int)v;
    return p;
}

static const char *
rule_date_parse(const char *p, rule_date *d)
{
    memset(d, 0, sizeof *d);
    d->time = 2 * 3600;
    if (*p == 'M') {
        d->kind = 'M';
        if (!(p = rule_num(p + 1, 1, 12, &d->m)) || *p++ != '.' ||
            !(p = rule_num(p, 1, 5, &d->w)) || *p++ != '.' || !(p = rule_num(p, 0, 6, &d->d)))
            return NULL;
    } else if (*p == 'J') {
        d->kind = 'J';
        if (!(p = rule_num(p + 1, 1, 365, &d->day)))
            return NULL;
    } else {
        d->kind = 'n';
        if (!(p = rule_num(p, 0, 365, &d->day)))
            return NULL;
    }
    if (*p == '/')
        p = rule_hms(p + 1, &d->time);
    return p;
}

static int
rule_parse(const char *s, tz_rule *r)
{
    memset(r, 0, sizeof *r);
    const char *p = rule_name(s);
    int32_t west;
    if (!p || !(p = rule_hms(p, &west)))
        return -1;
    r->std_off = -west;
    if (!*p)
        return 0;
    if (!(p = rule_name(p)))
        return -1;
    r->has_dst = 1;
    r->dst_off = r->std_off + 3600;
    if (*p && *p != ',') {
        if (!(p = rule_hms(p, &west)))
            return -1;
        r->dst_off = -west;
    }
    if (!*p) {
        /* POSIX leaves the default rule to the implementation: the US one */
        r->start = (rule_date){.kind = 'M', .m = 3, .w = 2, .d = 0, .time = 2 * 3600};
        r->end = (rule_date){.kind = 'M', .m = 11, .w = 1, .d = 0, .time = 2 * 3600};
        return 0;
    }
    if (*p++ != ',' || !(p = rule_date_parse(p, &r->start)) || *p++ != ',' ||
        !(p = rule_date_parse(p, &r->end)) || *p)
        return -1;
    return 0;
}

/* UTC time of rule date d in year y, whose local time runs at offset off. */
static int64_t
rule_when(int64_t y, const rule_date *d, int32_t off)
{
    int64_t day;
    if (d->kind == 'J') {
        day = days_from_civil(y, 1, 1) + d->day - 1 + (is_leap(y) && d->day >= 60);
    } else if (d->kind == 'n') {
        day = days_from_civil(y, 1, 1) + d->day;
    } else {
        int64_t first = days_from_civil(y, d->m, 1);
        int wd1 = (int)(((first % 7) + 11) % 7);
        int md = 1 + (d->d - wd1 + 7) % 7 + (d->w - 1) * 7;
        if (md > month_days(y, d->m))
            md -= 7;
        day = first + md - 1;
    }
    return day * 86400 + d->time - off;
}

static int
rule_isdst(const tz_rule *r, int64_t t, int32_t *off)
{
    *off = r->std_off;
    if (!r->has_dst)
        return 0;
    struct tm tm;
    breakdown(t + r->std_off, &tm);
    int64_t y = (int64_t)tm.tm_year + 1900;
    int64_t start = rule_when(y, &r->start, r->std_off);
    int64_t end = rule_when(y, &r->end, r->dst_off);
    int dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
    if (dst)
        *off = r->dst_off;
    return dst;
}

/* ---- TZif files ----------------------------------------------------------- */

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t
be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct tzif_hdr {
    uint32_t isut, isstd, leap, time, type, chars;
} tzif_hdr;

static int
header(const unsigned char *p, size_t n, tzif_hdr *h, char *version)
{
    if (n < 44 || memcmp(p, "TZif", 4))
        return -1;
    *version = (char)p[4];
    h->isut = be32(p + 20);
    h->isstd = be32(p + 24);
    h->leap = be32(p + 28);
    h->time = be32(p + 32);
    h->type = be32(p + 36);
    h->chars = be32(p + 40);
    if (h->type == 0 || h->type > 256 || h->time > 100000 || h->chars > 65536 || h->leap > 10000 ||
        (h->isut && h->isut != h->type) || (h->isstd && h->isstd != h->type))
        return -1;
    return 0;
}

static size_t
block_size(const tzif_hdr *h, int tsize)
{
    return (size_t)h->time * (size_t)tsize + h->time + (size_t)h->type * 6 + h->chars +
           (size_t)h->leap * (size_t)(tsize + 4) + h->isstd + h->isut;
}

/* Decode one data block (after its header) into tz. */
static int
block(const unsigned char *p, const tzif_hdr *h, int tsize, ent_tz *tz)
{
    const unsigned char *times = p, *idx = times + (size_t)h->time * (size_t)tsize,
                        *types = idx + h->time;
    tz->n = h->time;
    if (tz->n) {
        tz->at = calloc(tz->n, sizeof *tz->at);
        tz->off = calloc(tz->n, sizeof *tz->off);
        tz->dst = calloc(tz->n, sizeof *tz->dst);
        if (!tz->at || !tz->off || !tz->dst)
            return -1;
    }
    for (size_t i = 0; i < tz->n; i++) {
        unsigned ti = idx[i];
        if (ti >= h->type)
            return -1;
        tz->at[i] = tsize == 8 ? be64(times + 8 * i) : (int64_t)(int32_t)be32(times + 4 * i);
        if (i && tz->at[i] <= tz->at[i - 1])
            return -1;
        tz->off[i] = (int32_t)be32(types + 6 * ti);
        tz->dst[i] = types[6 * ti + 4];
    }
    tz->off0 = (int32_t)be32(types);
    tz->dst0 = types[4];
    for (size_t i = 0; i < h->type; i++) {
        int32_t o = (int32_t)be32(types + 6 * i);
        if (o < -25 * 3600 || o > 26 * 3600)
            return -1;
    }
    return 0;
}

static int
parse_tzif(const unsigned char *p, size_t n, ent_tz *tz)
{
    tzif_hdr h;
    char version;
    if (header(p, n, &h, &version))
        return -1;
    size_t v1 = 44 + block_size(&h, 4);
    if (v1 > n)
        return -1;
    if (version < '2')
        return block(p + 44, &h, 4, tz);
    const unsigned char *q = p + v1;
    size_t left = n - v1;
    tzif_hdr h2;
    char v2;
    if (header(q, left, &h2, &v2))
        return -1;
    size_t b2 = block_size(&h2, 8);
    if (44 + b2 > left)
        return -1;
    if (block(q + 44, &h2, 8, tz))
        return -1;
    /* Footer: "\n<POSIX TZ string>\n". Empty means no rule. */
    const char *f = (const char *)q + 44 + b2;
    size_t flen = left - 44 - b2;
    if (flen >= 2 && f[0] == '\n') {
        const char *e = memchr(f + 1, '\n', flen - 1);
        if (e && e > f + 1 && e - f < 128) {
            char rule[128];
            memcpy(rule, f + 1, (size_t)(e - f - 1));
            rule[e - f - 1] = '\0';
            if (rule_parse(rule, &tz->rule))
                return -1;
            tz->has_rule = 1;
        }
    }
    return 0;
}

static int
name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > ENT_TZ_NAME_MAX || name[0] == '/' || name[0] == '.' || strstr(name, ".."))
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/_+-.", *p))
            return 0;
    return 1;
}

int
ent__tz_load(const char *name, ent_tz **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!name || !name_ok(name))
        return ent__err(err, errlen, -1,
                        "time zone '%s' is not a zone name (like Europe/Berlin or UTC)",
                        name ? name : "");
    ent_tz *tz = calloc(1, sizeof *tz);
    if (!tz)
        return ent__err(err, errlen, -1, "out of memory");
    snprintf(tz->name, sizeof tz->name, "%s", name);
    const char *dir = getenv("TZDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : DEFAULT_TZDIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        if (!strcmp(name, "UTC") || !strcmp(name, "Etc/UTC") || !strcmp(name, "GMT")) {
            *out = tz; /* no database: UTC still works (all offsets zero) */
            return 0;
        }
        free(tz);
        if (e == ENOENT || e == ENOTDIR)
            return ent__err(err, errlen, -1, "unknown time zone '%s' (no %s)", name, path);
        char eb[ENT_ERRNO_BYTES];
        return ent__err(err, errlen, -1, "time zone '%s': cannot read %s: %s", name, path,
                        ent__syserr(e, eb));
    }
    unsigned char *buf = malloc(ENT_TZ_FILE_MAX);
    size_t n = buf ? fread(buf, 1, ENT_TZ_FILE_MAX, f) : 0;
    fclose(f);
    int rc = buf && n > 0 && n < ENT_TZ_FILE_MAX ? parse_tzif(buf, n, tz) : -1;
    free(buf);
    if (rc) {
        ent__tz_free(tz);
        return ent__err(err, errlen, -1, "time zone '%s': %s is not a valid TZif file", name, path);
    }
    *out = tz;
    return 0;
}

void
ent__tz_free(ent_tz *tz)
{
    if (!tz)
        return;
    free(tz->at);
    free(tz->off);
    free(tz->dst);
    free(tz);
}

const char *
ent__tz_name(const ent_tz *tz)
{
    return tz->name;
}

static int32_t
offset_dst(const ent_tz *tz, int64_t t, int *isdst)
{
    *isdst = 0;
    if (tz->n == 0 || t >= tz->at[tz->n - 1]) {
        if (tz->has_rule) {
            int32_t off;
            *isdst = rule_isdst(&tz->rule, t, &off);
            return off;
        }
        if (tz->n == 0) {
            *isdst = tz->dst0;
            return tz->off0;
        }
        *isdst = tz->dst[tz->n - 1];
        return tz->off[tz->n - 1];
    }
    if (t < tz->at[0]) {
        *isdst = tz->dst0;
        return tz->off0;
    }
    size_t lo = 0, hi = tz->n - 1; /* at[lo] <= t < at[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    *isdst = tz->dst[lo];
    return tz->off[lo];
}

int32_t
ent__tz_offset(const ent_tz *tz, int64_t t)
{
    int dst;
    return offset_dst(tz, t, &dst);
}

void
ent__tz_local(const ent_tz *tz, int64_t t, struct tm *out)
{
    int dst;
    int32_t off = offset_dst(tz, t, &dst);
    breakdown(t + off, out);
    out->tm_isdst = dst;
    out->tm_gmtoff = off;
}
