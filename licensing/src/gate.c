/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * The license gate of the paid modules (dray/license_gate.h): when the time
 * is decided, fleet continuity for lapsed keys, process records, and the
 * running-time warnings. The rules are docs/licensing.md's; keep them equal.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dray/license_gate.h"
#include "license_internal.h"

#define DAY INT64_C(86400)
#define HOUR INT64_C(3600)

static double
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Redis TIME on ctx, waiting up to wait_s for it (logging once). Returns 0
 * with *out set, or the last error with its text in why. */
static int
redis_clock(dray_license_gate *g, dray_ctx *ctx, long long wait_s, double *out, char *why,
            size_t size)
{
    const dray_host *H = g->host;
    double deadline = mono() + (double)wait_s;
    int logged = 0;
    dray__license_fail(why, size, "no Redis context");
    for (;;) {
        int rc = ctx ? H->redis_time(ctx, out) : -1;
        if (rc == 0)
            return 0;
        if (ctx)
            dray__license_fail(why, size, "%s: %s", H->strerror(rc), H->redis_errstr(ctx));
        if (!ctx || mono() >= deadline)
            return rc ? rc : -1;
        if (!logged) {
            H->log(g->mod, DRAY_LOG_WARN,
                   "cannot read Redis's clock (%s): the license is judged by it before any job "
                   "runs; waiting up to %lld s for Redis",
                   why, wait_s);
            logged = 1;
        }
        nap_ms(250);
    }
}

/* "<ns>dray:license:<lid>": a sorted set of process identities scored by
 * the (later) time they last ran with this license. */
static void
fleet_key(const dray_license_gate *g, dray_ctx *ctx, char *out, size_t size)
{
    dray__license_fail(out, size, "%sdray:license:%s", g->host->ns(ctx), g->info.lid);
}

/* The newest process record of this license, 0 when none (or unreadable). */
static int64_t
fleet_last_seen(dray_license_gate *g, dray_ctx *ctx)
{
    char key[160];
    redisReply *r = NULL;
    int64_t seen = 0;
    fleet_key(g, ctx, key, sizeof key);
    if (g->host->redisf(ctx, &r, "ZREVRANGE %s 0 0 WITHSCORES", key) == 0 && r &&
        r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING)
        seen = (int64_t)strtod(r->element[1]->str, NULL);
    if (r)
        freeReplyObject(r);
    return seen;
}

/* Record this process at `now` and return how many processes are live
 * under this license (-1 when Redis did not answer). */
static long
fleet_record(dray_license_gate *g, dray_ctx *ctx, int64_t now)
{
    const dray_host *H = g->host;
    char key[160];
    redisReply *r = NULL;
    long live = -1;
    fleet_key(g, ctx, key, sizeof key);
    const char *id = H->identity(ctx);
    if (H->redisf(ctx, NULL, "ZADD %s %" PRId64 " %s", key, now, id) ||
        H->redisf(ctx, NULL, "ZREMRANGEBYSCORE %s -inf (%" PRId64, key,
                  now - DRAY_LICENSE_FLEET_SEEN_HOURS * HOUR) ||
        H->redisf(ctx, NULL, "EXPIRE %s %" PRId64, key,
                  (int64_t)DRAY_LICENSE_FLEET_SEEN_HOURS * HOUR + HOUR))
        return -1;
    if (H->redisf(ctx, &r, "ZCOUNT %s %" PRId64 " +inf", key, now - DRAY_LICENSE_LIVE_S) == 0 &&
        r && r->type == REDIS_REPLY_INTEGER)
        live = (long)r->integer;
    if (r)
        freeReplyObject(r);
    return live;
}

static void
warn_procs(dray_license_gate *g, long live)
{
    if (g->info.procs > 0 && live > g->info.procs)
        g->host->log(g->mod, DRAY_LOG_WARN,
                     "%ld processes run with license %s for %s, which allows %ld: a warning "
                     "only, nothing stops; ask us to raise the count",
                     live, g->info.lid, g->info.sub, g->info.procs);
}

/* Verify and check at `now`. */
static int
judge(dray_license_gate *g, int64_t now, dray_license_info *info)
{
    int rc = dray_license_verify(g->key, strlen(g->key), now, info);
    if (rc == 0)
        rc = dray_license_check(info, g->need, 0);
    return rc;
}

static int
plausible(double t)
{
    return t >= (double)DRAY_LICENSE_MIN_TIME && t <= (double)DRAY_LICENSE_MAX_TIME;
}

/* The time the license is judged by: the later of this machine's clock
 * (*local) and Redis's (*rt, when *have_rt), and Redis's is required outside
 * check mode (no job runs without Redis anyway). 0 with *now set, or
 * DRAY_ELICENSE with the reason set on the module. */
static int
gate_clock(dray_license_gate *g, dray_ctx *lc, int check, long long wait, double *now,
           double *local, double *rt, int *have_rt)
{
    const dray_host *H = g->host;
    char why[256];
    *local = H->now();
    *rt = 0;
    *have_rt = redis_clock(g, lc, check ? 0 : wait, rt, why, sizeof why) == 0;
    if (!*have_rt && !check) {
        H->set_error(g->mod,
                     "cannot judge the license: Redis's clock is unreachable (%s) after "
                     "%lld s; the license is judged by the later of this machine's clock "
                     "and Redis's, and no job runs without Redis: start again once Redis "
                     "answers (setting %s.license_wait is the wait)",
                     why, wait, g->name);
        return DRAY_ELICENSE;
    }
    if (*have_rt && !plausible(*rt)) {
        H->set_error(g->mod,
                     "cannot judge the license: Redis's clock reads %.0f, not a plausible "
                     "date; fix the Redis server's clock",
                     *rt);
        return DRAY_ELICENSE;
    }
    *now = *have_rt && *rt > *local ? *rt : *local;
    if (!plausible(*now)) {
        H->set_error(g->mod,
                     "cannot judge the license: this machine's clock reads %.0f, not a "
                     "plausible date; fix the system clock",
                     *now);
        return DRAY_ELICENSE;
    }
    return 0;
}

/* Fleet continuity for a lapsed key: it loads, loudly, for a bounded time,
 * in a fleet that ran with it recently (a restart, a drain, a new replica);
 * a new deployment is refused. Sets g->continuity when it applies; until
 * gets the end date and seen_txt (seen_len bytes) the reason. */
static void
gate_continuity(dray_license_gate *g, dray_ctx *lc, int64_t now,
                char until[DRAY__LICENSE_DATE_BYTES], char *seen_txt, size_t seen_len)
{
    int64_t end = g->info.grace_end + DRAY_LICENSE_FLEET_DAYS * DAY;
    int64_t seen = fleet_last_seen(g, lc);
    int64_t ago = now - seen;
    dray__license_format_date(end, until);
    if (now <= end && seen > 0 && ago <= DRAY_LICENSE_FLEET_SEEN_HOURS * HOUR) {
        g->continuity = 1;
        dray__license_fail(seen_txt, seen_len, "%" PRId64 " min ago", ago > 0 ? ago / 60 : 0);
    } else if (now > end) {
        dray__license_fail(seen_txt, seen_len, "fleet continuity ended %s", until);
    } else {
        dray__license_fail(seen_txt, seen_len,
                           "no process ran with it against this Redis in the last %d h",
                           DRAY_LICENSE_FLEET_SEEN_HOURS);
    }
}

/* Accepts the judged key: status and log line on the module, the next
 * warning times, and (outside check mode) the fleet record. Cannot fail. */
static void
gate_accept(dray_license_gate *g, dray_ctx *lc, int check, int64_t now, const char *msg,
            const char *clock_note, const char *until, const char *seen_txt)
{
    const dray_host *H = g->host;
    if (g->continuity)
        dray__license_fail(
            g->msg, sizeof g->msg,
            "%s%s; LOADED ANYWAY under fleet continuity until %s (a process ran with this "
            "license against this Redis %s); new deployments are refused: renew the "
            "license key now",
            msg, clock_note, until, seen_txt);
    else
        dray__license_fail(g->msg, sizeof g->msg, "%s%s", msg, clock_note);
    H->set_status(g->mod, "%s", g->msg);
    if (g->continuity || g->info.state == DRAY_LICENSE_GRACE)
        H->log(g->mod, DRAY_LOG_ERROR, "%s", g->msg);
    else if (g->info.state == DRAY_LICENSE_EXPIRING)
        H->log(g->mod, DRAY_LOG_WARN, "%s", g->msg);
    g->logged = g->info.state;
    g->next_warn = now + (g->info.state == DRAY_LICENSE_EXPIRING ? DAY : HOUR);
    if (!check && lc)
        warn_procs(g, fleet_record(g, lc, now));
    g->next_procs_warn = now + HOUR;
}

/* The init gate (license_gate.h): judge mod's key for tier need by the
 * later of the local and Redis clocks; 0 (loaded, maybe under fleet
 * continuity) or a DRAY_E* code with the refusal set on the module. */
int
dray_license_gate_open(dray_license_gate *g, const dray_host *host, dray_module *mod,
                       const char *name, dray_license_tier need)
{
    const dray_host *H = host;
    memset(g, 0, sizeof *g);
    g->host = host;
    g->mod = mod;
    g->name = name;
    g->need = need;
    int rc = H->license_key(mod, &g->key, &g->origin);
    if (rc)
        return rc; /* the host set the message: none configured, unreadable file */
    const char *origin = g->origin ? g->origin : "?";
    int check = H->check_only(mod);
    long long wait = DRAY_LICENSE_REDIS_WAIT;
    if (!check &&
        (rc = H->config_int(mod, "license_wait", DRAY_LICENSE_REDIS_WAIT, 0, 86400, &wait)))
        return rc;

    double local, rt, now;
    int have_rt;
    dray_ctx *lc = H->load_ctx(mod);
    if ((rc = gate_clock(g, lc, check, wait, &now, &local, &rt, &have_rt)))
        return rc;

    int lrc = judge(g, (int64_t)now, &g->info);
    char until[16] = "", seen_txt[64] = "";
    if (lrc == DRAY_ELIC_LAPSED && g->info.tier < need)
        lrc = DRAY_ELIC_WRONG_TIER;
    else if (lrc == DRAY_ELIC_LAPSED && lc)
        gate_continuity(g, lc, (int64_t)now, until, seen_txt, sizeof seen_txt);
    char msg[DRAY_LICENSE_MSG_BYTES], clock_note[128] = "";
    dray_license_describe(g->continuity ? DRAY_ELIC_LAPSED : lrc, &g->info, msg, sizeof msg);
    if (have_rt && rt > local + DRAY_LICENSE_CLOCK_SKEW) {
        dray_license_info at_local;
        int local_rc = judge(g, (int64_t)local, &at_local);
        if (local_rc != lrc || at_local.state != g->info.state || g->continuity)
            dray__license_fail(clock_note, sizeof clock_note,
                               " (judged by Redis's clock, %.0f s ahead of this machine's)",
                               rt - local);
    } else if (!have_rt) {
        dray__license_fail(clock_note, sizeof clock_note,
                           " (Redis unreachable: judged by this machine's clock only)");
    }
    if (lrc && !g->continuity) {
        if (lrc == DRAY_ELIC_LAPSED)
            H->set_error(mod, "%s%s; %s, so new processes refuse it (key from %s)", msg, clock_note,
                         seen_txt, origin);
        else
            H->set_error(mod, "%s%s (key from %s)", msg, clock_note, origin);
        return DRAY_ELICENSE;
    }
    gate_accept(g, lc, check, (int64_t)now, msg, clock_note, until, seen_txt);
    return 0;
}

/* Seconds until the key's state next changes after now (0: never). */
static int64_t
until_next_state(const dray_license_info *in, int64_t now)
{
    if (in->exp == 0)
        return 0;
    int64_t edges[3] = {in->exp - DRAY_LICENSE_EXPIRING_DAYS * DAY, in->exp, in->grace_end};
    for (int i = 0; i < 3; i++)
        if (edges[i] >= now)
            return edges[i] - now + 1;
    return 0;
}

static double
gate_tick(dray_ctx *ctx, void *ud)
{
    dray_license_gate *g = ud;
    const dray_host *H = g->host;
    double local = H->now(), rt;
    double now = local;
    if (H->redis_time(ctx, &rt) == 0 && rt > now && plausible(rt))
        now = rt;
    dray_license_info info;
    int rc = judge(g, (int64_t)now, &info);
    if (info.verified)
        g->info = info;
    dray_license_state st = g->info.state;
    if (st != g->logged || (int64_t)now >= g->next_warn) {
        char msg[DRAY_LICENSE_MSG_BYTES];
        dray_license_describe(st == DRAY_LICENSE_LAPSED ? DRAY_ELIC_LAPSED : 0, &g->info, msg,
                              sizeof msg);
        if (st == DRAY_LICENSE_EXPIRING) {
            H->log(g->mod, DRAY_LOG_WARN, "%s", msg);
        } else if (st == DRAY_LICENSE_GRACE) {
            H->log(g->mod, DRAY_LOG_ERROR, "%s", msg);
        } else if (st == DRAY_LICENSE_LAPSED) {
            H->log(g->mod, DRAY_LOG_ERROR,
                   "%s; this process keeps running (a running process is never stopped), but "
                   "new deployments will refuse the key",
                   msg);
        } else if (rc && g->logged != st) {
            dray_license_describe(rc, &info, msg, sizeof msg);
            H->log(g->mod, DRAY_LOG_ERROR, "%s; this process keeps running", msg);
        }
        g->logged = st;
        g->next_warn = (int64_t)now + (st == DRAY_LICENSE_EXPIRING ? DAY : HOUR);
    }
    long live = fleet_record(g, ctx, (int64_t)now);
    if ((int64_t)now >= g->next_procs_warn && g->info.procs > 0 && live > g->info.procs) {
        warn_procs(g, live);
        g->next_procs_warn = (int64_t)now + HOUR;
    }
    int64_t next = until_next_state(&g->info, (int64_t)now);
    return next > 0 && next < DRAY_LICENSE_RECORD_S ? (double)next : DRAY_LICENSE_RECORD_S;
}

int
dray_license_gate_hook(dray_license_gate *g)
{
    return g->host->hook(g->mod, DRAY_HOOK(.point = DRAY_HOOK_TICK, .name = "license",
                                           .tick = gate_tick, .userdata = g));
}
