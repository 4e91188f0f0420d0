/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Cron expressions and time zones for periodic jobs (docs/enterprise.md).
 * Pure C with no dray, Redis or global state: every function is reentrant
 * and may be called from any thread (time zones are read from TZif files
 * once and never touch TZ, setenv or localtime). Unit-tested on its own
 * (tests/enterprise/test_ent_cron.c).
 *
 * Names: cross-file helpers of the module are ent__<name> and its types
 * ent_<noun> (house rule 1's dray__/dray_ spelling, kept apart from the
 * core's so a unit test can link both).
 */
#ifndef DRAY_ENT_CRON_H
#define DRAY_ENT_CRON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

#define ENT_CRON_ERR_BYTES 256 /* a parse error names the field and the value */
#define ENT_TZ_NAME_MAX 64     /* longest zone name ("America/Argentina/ComodRivadavia" is 32) */
#define ENT_TZ_FILE_MAX (1024 * 1024) /* a TZif file is a few KiB; refuse anything huge */
#define ENT_CRON_SEARCH_S                                                                          \
    (5LL * 366 * 86400) /* "next run" looks this far: Feb 29 on a Monday is rare */

/* A parsed 5-field expression: one bit per allowed value. */
typedef struct ent_cron {
    uint64_t minute; /* bits 0-59 */
    uint32_t hour;   /* bits 0-23 */
    uint32_t mday;   /* bits 1-31 */
    uint32_t month;  /* bits 1-12 */
    uint32_t wday;   /* bits 0-6, Sunday = 0 (7 is accepted as Sunday) */
    int dom_star;    /* day-of-month field started with '*' (Vixie: then both days must match) */
    int dow_star;    /* day-of-week field started with '*' */
} ent_cron;

/* A time zone read from the TZ database (opaque). */
typedef struct ent_tz ent_tz;

/*
 * Parse a 5-field cron expression (lists, ranges, steps, month and weekday
 * names) or a shortcut (@yearly @annually @monthly @weekly @daily
 * @midnight @hourly). Returns 0, or -1 with a message in err naming the
 * field at fault ("field 2 (hour) '25': 25 is out of range 0-23").
 */
__attribute__((warn_unused_result)) int ent__cron_parse(const char *text, ent_cron *out, char *err,
                                                        size_t errlen);

/* Does local broken-down time tm (tm_min, tm_hour, tm_mday, tm_mon, tm_wday) match? */
int ent__cron_match(const ent_cron *c, const struct tm *tm);

/*
 * Load zone `name` ("Europe/Berlin", "UTC") from $TZDIR or
 * /usr/share/zoneinfo. Returns 0, or -1 with a message in err (unknown
 * zone, unsafe name, damaged file). Free with ent__tz_free.
 */
__attribute__((warn_unused_result)) int ent__tz_load(const char *name, ent_tz **out, char *err,
                                                     size_t errlen);
void ent__tz_free(ent_tz *tz); /* accepts NULL */
const char *ent__tz_name(const ent_tz *tz);
/* Seconds east of UTC in effect at UTC time t. Cannot fail. */
int32_t ent__tz_offset(const ent_tz *tz, int64_t t);
/* Local broken-down time at UTC time t (tm_gmtoff and tm_isdst set). Cannot fail. */
void ent__tz_local(const ent_tz *tz, int64_t t, struct tm *out);

/*
 * Is the minute starting at UTC time t (a multiple of 60) a tick of c in
 * tz? A local minute repeated when clocks fall back is a tick only the
 * first time (so a 01:30 job runs once on that night); a local minute
 * skipped when clocks spring forward is never one.
 */
int ent__cron_tick(const ent_cron *c, const ent_tz *tz, int64_t t);

/*
 * The first tick at or after `from` (rounded up to a minute) and before
 * `until`, or -1 when there is none. Skips whole hours and days that
 * cannot match, so a year ahead costs thousands of steps, not 500k.
 */
int64_t ent__cron_next(const ent_cron *c, const ent_tz *tz, int64_t from, int64_t until);

#endif /* DRAY_ENT_CRON_H */
