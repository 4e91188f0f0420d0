/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/* Cron expressions: parse the 5 fields (Vixie cron's syntax and day rule),
 * match a local time, and find ticks in a time zone. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cron.h"

typedef struct field_def {
    const char *what; /* for messages */
    int lo, hi;
    const char *const *names; /* names[i] is value lo + i (or NULL) */
} field_def;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const field_def fields[5] = {
    {"minute", 0, 59, NULL},           {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},     {"month", 1, 12, month_names},
    {"day of week", 0, 7, wday_names}, /* 7 is Sunday too */
};

static const struct {
    const char *name;
    const char *expr;
} shortcuts[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* One value (number or name) of field f at *p; advances *p. */
static int
value(const field_def *f, const char **p, int *out)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s) && v < 1000)
            v = v * 10 + (*s++ - '0');
        if (isdigit((unsigned char)*s))
            return -1;
        *out = (int)v;
        *p = s;
        return 0;
    }
    if (f->names && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) &&
        isalpha((unsigned char)s[2]) && !isalpha((unsigned char)s[3])) {
        for (int i = 0; f->names[i]; i++)
            if (!strncasecmp(s, f->names[i], 3)) {
                *out = f->lo + i;
                *p = s + 3;
                return 0;
            }
    }
    return -1;
}

/* Parse field number fi (0-based) of length len at s into *bits. */
static int
field(int fi, const char *s, size_t len, uint64_t *bits, char *err, size_t errlen)
{
    const field_def *f = &fields[fi];
    char text[64];
    if (len >= sizeof text)
        return ent__err(err, errlen, -1, "field %d (%s) is too long", fi + 1, f->what);
    memcpy(text, s, len);
    text[len] = '\0';
#define BAD(...)                                                                                   \
    do {                                                                                           \
        char why_[128];                                                                            \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
        return ent__err(err, errlen, -1, "field %d (%s) '%s': %s", fi + 1, f->what, text, why_);   \
    } while (0)
    *bits = 0;
    const char *p = text;
    for (;;) {
        int a, b, step = 1;
        const char *item = p;
        if (*p == '*') {
            a = f->lo;
            b = fi == 4 ? 6 : f->hi;
            p++;
        } else {
            if (value(f, &p, &a))
                BAD("'%.*s' is not a number%s", (int)strcspn(item, ",-/"), item,
                    f->names ? " or a name" : "");
            b = a;
            if (*p == '-') {
                p++;
                const char *vb = p;
                if (value(f, &p, &b))
                    BAD("'%.*s' is not a number%s", (int)strcspn(vb, ",-/"), vb,
                        f->names ? " or a name" : "");
            }
            if (a < f->lo || a > f->hi)
                BAD("%d is out of range %d-%d", a, f->lo, f->hi);
            if (b < f->lo || b > f->hi)
                BAD("%d is out of range %d-%d", b, f->lo, f->hi);
            if (b < a)
                BAD("range %d-%d runs backwards", a, b);
        }
        if (*p == '/') {
            p++;
            const char *vs = p;
            long st = 0;
            while (isdigit((unsigned char)*p) && st < 1000)
                st = st * 10 + (*p++ - '0');
            if (p == vs || isdigit((unsigned char)*p))
                BAD("step '%.*s' is not a number", (int)strcspn(vs, ","), vs);
            if (st < 1 || st > f->hi)
                BAD("step %ld is out of range 1-%d", st, f->hi);
            step = (int)st;
            if (item[0] != '*' && b == a)
                b = fi == 4 ? 6 : f->hi; /* "5/15": from 5 to the end */
        }
        if (*p != ',' && *p != '\0')
            BAD("unexpected '%c'", *p);
        for (int v = a; v <= b; v += step)
            *bits |= (uint64_t)1 << (fi == 4 && v == 7 ? 0 : v);
        if (*p == '\0')
            break;
        p++;
        if (*p == '\0' || *p == ',')
            BAD("empty list item");
    }
#undef BAD
    return 0;
}

int
ent__cron_parse(const char *text, ent_cron *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!text)
        return ent__err(err, errlen, -1, "cron expression is missing");
    while (isspace((unsigned char)*text))
        text++;
    if (*text == '@') {
        size_t n = strcspn(text, " \t");
        const char *rest = text + n;
        while (isspace((unsigned char)*rest))
            rest++;
        if (*rest)
            return ent__err(err, errlen, -1, "cron '%s': text after the shortcut", text);
        for (size_t i = 0; i < sizeof shortcuts / sizeof *shortcuts; i++)
            if (strlen(shortcuts[i].name) == n && !strncasecmp(text, shortcuts[i].name, n))
                return ent__cron_parse(shortcuts[i].expr, out, err, errlen);
        if (n == 7 && !strncasecmp(text, "@reboot", 7))
            return ent__err(err, errlen, -1,
                            "cron '%s': @reboot is not a schedule (periodic jobs need one)", text);
        return ent__err(err, errlen, -1,
                        "cron '%.*s': unknown shortcut (use @yearly, @annually, @monthly, @weekly, "
                        "@daily, @midnight or @hourly)",
                        (int)n, text);
    }
    const char *start[6];
    size_t len[6];
    int n = 0;
    for (const char *p = text; *p;) {
        if (isspace((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (n < 6) {
            start[n] = s;
            len[n] = (size_t)(p - s);
        }
        n++;
    }
    if (n == 0)
        return ent__err(err, errlen, -1, "cron expression is empty");
    if (n == 6)
        return ent__err(err, errlen, -1,
                        "cron '%s': 6 fields, but seconds are not supported: use 5 fields (minute "
                        "hour day-of-month month day-of-week)",
                        text);
    if (n != 5)
        return ent__err(
            err, errlen, -1,
            "cron '%s': %d field%s, want 5 (minute hour day-of-month month day-of-week)", text, n,
            n == 1 ? "" : "s");
    uint64_t bits[5];
    for (int i = 0; i < 5; i++) {
        char ferr[ENT_CRON_ERR_BYTES];
        if (field(i, start[i], len[i], &bits[i], ferr, sizeof ferr))
            return ent__err(err, errlen, -1, "cron '%s': %s", text, ferr);
    }
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->mday = (uint32_t)bits[2];
    out->month = (uint32_t)bits[3];
    out->wday = (uint32_t)bits[4];
    out->dom_star = start[2][0] == '*';
    out->dow_star = start[4][0] == '*';
    return 0;
}

static int
day_match(const ent_cron *c, const struct tm *tm)
{
    int dom = (c->mday >> tm->tm_mday) & 1u, dow = (c->wday >> tm->tm_wday) & 1u;
    /* Vixie cron: with both day fields restricted, either one will do. */
    if (c->dom_star || c->dow_star)
        return dom && dow;
    return dom || dow;
}

int
ent__cron_match(const ent_cron *c, const struct tm *tm)
{
    return ((c->minute >> tm->tm_min) & 1u) && ((c->hour >> tm->tm_hour) & 1u) &&
           ((c->month >> (tm->tm_mon + 1)) & 1u) && day_match(c, tm);
}

/* Did this local minute already happen earlier (clocks fell back)? */
static int
repeated(const ent_tz *tz, int64_t t)
{
    int32_t now = ent__tz_offset(tz, t);
    int32_t before = ent__tz_offset(tz, t - 3 * 3600);
    if (before <= now)
        return 0;
    int64_t prev = t - (before - now);
    return ent__tz_offset(tz, prev) == before;
}

int
ent__cron_tick(const ent_cron *c, const ent_tz *tz, int64_t t)
{
    struct tm tm;
    ent__tz_local(tz, t, &tm);
    return ent__cron_match(c, &tm) && !repeated(tz, t);
}

int64_t
ent__cron_next(const ent_cron *c, const ent_tz *tz, int64_t from, int64_t until)
{
    int64_t t = from % 60 ? from + (60 - ((from % 60) + 60) % 60) : from;
    while (t < until) {
        struct tm tm;
        ent__tz_local(tz, t, &tm);
        int mod = tm.tm_hour * 60 + tm.tm_min;
        if (!((c->month >> (tm.tm_mon + 1)) & 1u) || !day_match(c, &tm)) {
            /* To the next local midnight, less 2 h so a DST change cannot
             * make us jump over it. */
            int64_t skip = (int64_t)(1440 - mod - 120) * 60;
            t += skip > 60 ? skip : 60;
            continue;
        }
        if (!((c->hour >> tm.tm_hour) & 1u)) {
            t += (int64_t)(60 - tm.tm_min) * 60;
            continue;
        }
        if (((c->minute >> tm.tm_min) & 1u) && !repeated(tz, t))
            return t;
        t += 60;
    }
    return -1;
}
