/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray web: the paid modules' pages (Batches, Limits, Periodic, Unique locks)
 * and their /metrics figures, read straight from the keys Pro and Enterprise
 * write (docs/redis-keys.md); no module is loaded. Each page is one script
 * (one round trip) over one page of the module's index, except Unique locks,
 * which has no index and pages with SCAN. Everything from Redis is escaped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dray/inspect.h>

#include "web.h"

#define UNIQUE_SCAN_ROUNDS 50     /* SCAN calls per Unique page: bounds one request */
#define UNIQUE_METRIC_ROUNDS 100  /* SCAN calls per scrape for dray_unique_locks */
#define BATCH_METRIC_NEWEST "999" /* batch job sums cover the newest 1000 batches */

/* Which modules have data: a bitmask of WEB_MOD_*. The Unique tab shows
 * with any Enterprise data, or when the first SCAN step meets a lock. */
static const char present_lua[] =
    "local ns = ARGV[1]\n"
    "local m = 0\n"
    "if redis.call('EXISTS', ns .. 'pro:batches') == 1 then m = m + 1 end\n"
    "local ent = false\n"
    "if redis.call('EXISTS', ns .. 'ent:limiters') == 1 then m = m + 2; ent = true end\n"
    "if redis.call('EXISTS', ns .. 'ent:periodic:loops') == 1 or\n"
    "   redis.call('EXISTS', ns .. 'dear-leader') == 1 then m = m + 4; ent = true end\n"
    "if ent then return m + 8 end\n"
    "local r = redis.call('SCAN', '0', 'MATCH', ns .. 'ent:unique:*', 'COUNT', 1000)\n"
    "if #r[2] > 0 then m = m + 8 end\n"
    "return m\n";

/* A page of batches, newest first: per batch 13 strings (bid, exists,
 * description, total, created_at, committed_at, complete_at, success_at,
 * death_at, parent, pending, failed, dead). ARGV: ns, start, stop. */
static const char batches_lua[] =
    "local ns = ARGV[1]\n"
    "local out = {}\n"
    "for _, bid in ipairs(redis.call('ZREVRANGE', ns .. 'pro:batches', ARGV[2], ARGV[3])) do\n"
    "  local k = ns .. 'pro:batch:' .. bid\n"
    "  local h = redis.call('HMGET', k, 'description', 'total', 'created_at', 'committed_at',\n"
    "                       'complete_at', 'success_at', 'death_at', 'parent')\n"
    "  out[#out + 1] = bid\n"
    "  out[#out + 1] = tostring(redis.call('EXISTS', k))\n"
    "  for i = 1, 8 do out[#out + 1] = h[i] or '' end\n"
    "  out[#out + 1] = tostring(redis.call('SCARD', k .. ':pending'))\n"
    "  out[#out + 1] = tostring(redis.call('SCARD', k .. ':failed'))\n"
    "  out[#out + 1] = tostring(redis.call('SCARD', k .. ':dead'))\n"
    "end\n"
    "return out\n";
#define BATCH_FIELDS 13

/* Sums over the newest batches (metrics): {count, pending, failed, dead,
 * complete cb, success cb, death cb}. ARGV: ns, last rank. */
static const char batch_sums_lua[] =
    "local ns = ARGV[1]\n"
    "local p, f, d = 0, 0, 0\n"
    "for _, bid in ipairs(redis.call('ZREVRANGE', ns .. 'pro:batches', 0, ARGV[2])) do\n"
    "  local k = ns .. 'pro:batch:' .. bid\n"
    "  p = p + redis.call('SCARD', k .. ':pending')\n"
    "  f = f + redis.call('SCARD', k .. ':failed')\n"
    "  d = d + redis.call('SCARD', k .. ':dead')\n"
    "end\n"
    "local function n(k) return tonumber(redis.call('GET', ns .. k) or '0') or 0 end\n"
    "return {redis.call('ZCARD', ns .. 'pro:batches'), p, f, d,\n"
    "        n('pro:stat:batch:complete'), n('pro:stat:batch:success'),\n"
    "        n('pro:stat:batch:death')}\n";

/* Limiters, most recently used first: per limiter 8 strings (name, type,
 * limit, interval, taken, overages, in use now, last use). The use now is
 * read as each kind counts it (docs/enterprise.md): live holders, this
 * interval's count, admissions in the window, the drained level. ARGV: ns,
 * start, stop. */
static const char limits_lua[] =
    "local ns = ARGV[1]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
    "local out = {}\n"
    "local names = redis.call('ZREVRANGE', ns .. 'ent:limiters', ARGV[2], ARGV[3], 'WITHSCORES')\n"
    "for i = 1, #names, 2 do\n"
    "  local base = ns .. 'ent:lmtr:' .. names[i]\n"
    "  local h = redis.call('HMGET', base, 'type', 'limit', 'interval', 'taken', 'overages')\n"
    "  local typ = h[1] or ''\n"
    "  local limit = tonumber(h[2] or '') or 0\n"
    "  local ival = tonumber(h[3] or '') or 0\n"
    "  local used = 0\n"
    "  if typ == 'c' then\n"
    "    used = redis.call('ZCOUNT', base .. ':c', '(' .. string.format('%.6f', now), '+inf')\n"
    "  elseif typ == 'b' and ival > 0 then\n"
    "    used = tonumber(redis.call('GET', base .. ':b:' ..\n"
    "                               string.format('%d', math.floor(now / ival))) or '0') or 0\n"
    "  elseif typ == 'w' then\n"
    "    used = redis.call('ZCOUNT', base .. ':w', '(' .. string.format('%.6f', now - ival),\n"
    "                      '+inf')\n"
    "  elseif typ == 'l' and ival > 0 and limit > 0 then\n"
    "    local v = redis.call('HMGET', base .. ':l', 'level', 'ts')\n"
    "    local level = tonumber(v[1] or '0') or 0\n"
    "    local ts = tonumber(v[2] or '') or now\n"
    "    used = level - (now - ts) * limit / ival\n"
    "    if used < 0 then used = 0 end\n"
    "  end\n"
    "  out[#out + 1] = names[i]\n"
    "  out[#out + 1] = typ\n"
    "  out[#out + 1] = h[2] or ''\n"
    "  out[#out + 1] = h[3] or ''\n"
    "  out[#out + 1] = h[4] or '0'\n"
    "  out[#out + 1] = h[5] or '0'\n"
    "  out[#out + 1] = string.format('%.3f', used)\n"
    "  out[#out + 1] = names[i + 1]\n"
    "end\n"
    "return out\n";
#define LIMIT_FIELDS 8

/* The leader and a page of periodic loops: {leader or '', its ms to live,
 * then per loop 8 strings (loop, cron, class, queue, tz, last, next,
 * last_jid)}. ARGV: ns, start, stop. */
static const char periodic_lua[] =
    "local ns = ARGV[1]\n"
    "local out = {redis.call('GET', ns .. 'dear-leader') or '',\n"
    "             tostring(redis.call('PTTL', ns .. 'dear-leader'))}\n"
    "for _, loop in ipairs(redis.call('ZRANGE', ns .. 'ent:periodic:loops', ARGV[2], ARGV[3])) do\n"
    "  local h = redis.call('HMGET', ns .. 'ent:periodic:' .. loop, 'cron', 'class', 'queue', "
    "'tz',\n"
    "                       'last', 'next', 'last_jid')\n"
    "  out[#out + 1] = loop\n"
    "  for i = 1, 7 do out[#out + 1] = h[i] or '' end\n"
    "end\n"
    "return out\n";
#define PERIODIC_FIELDS 8

/* One unique lock: {owner jid, taken (Redis time), running on, ms to live}. */
static const char unique_lua[] = "local h = redis.call('HMGET', KEYS[1], 'jid', 't', 'run')\n"
                                 "return {h[1] or '', h[2] or '', h[3] or '',\n"
                                 "        tostring(redis.call('PTTL', KEYS[1]))}\n";

/* One table cell <td class="cls"> (plain <td> for NULL cls) holding text,
 * escaped. */
static void
td(web_buf *b, const char *cls, const char *text)
{
    if (cls)
        web_buf_printf(b, "<td class=\"%s\">", cls);
    else
        web_buf_puts(b, "<td>");
    web_buf_text(b, text);
    web_buf_puts(b, "</td>");
}

/* Run a listing script whose ARGV are ns, start, stop ("0", "-1": all):
 * *out its reply (new reference), *rows how many records of fields items
 * follow its head leading items. 0 or a DRAY_E* code (*out NULL). */
static int
run_rows(dray_api *api, const char *lua, const char *start, const char *stop, size_t head,
         size_t fields, json_t **out, size_t *rows)
{
    const char *argv[6] = {"EVAL", lua, "0", dray_api_namespace(api), start, stop};
    int rc = dray_api_command(api, 6, argv, out);
    size_t len = rc ? 0 : json_array_size(*out);
    *rows = len > head ? (len - head) / fields : 0;
    return rc;
}

/* run_rows for a page (0-based) of page_size records plus one, which only
 * tells *more (1 when a next page has rows). */
static int
run_page(dray_api *api, const char *lua, size_t page, size_t page_size, size_t head, size_t fields,
         json_t **out, size_t *rows, int *more)
{
    char a[32], z[32];
    snprintf(a, sizeof a, "%zu", page * page_size);
    snprintf(z, sizeof z, "%zu", page * page_size + page_size);
    int rc = run_rows(api, lua, a, z, head, fields, out, rows);
    *more = *rows > page_size;
    return rc;
}

/* String element i of r (borrowed), or "" when absent or not a string. */
static const char *
item(const json_t *r, size_t i)
{
    const char *s = json_string_value(json_array_get(r, i));
    return s ? s : "";
}

/* An epoch-seconds string as "YYYY-MM-DD HH:MM:SS UTC", or "-". */
static void
when(web_buf *b, const char *epoch)
{
    char *end;
    double t = strtod(epoch, &end);
    if (!*epoch || *end || t <= 0) {
        web_buf_puts(b, "-");
        return;
    }
    time_t s = (time_t)t;
    struct tm tm;
    char buf[40];
    gmtime_r(&s, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    web_buf_puts(b, buf);
}

/* *mask: the WEB_MOD_* bits from one script. 0, or a DRAY_E* code with *mask 0. */
int
web_modules_present(dray_api *api, unsigned *mask)
{
    json_t *r = NULL;
    const char *argv[4] = {"EVAL", present_lua, "0", dray_api_namespace(api)};
    int rc = dray_api_command(api, 4, argv, &r);
    *mask = rc ? 0 : (unsigned)json_integer_value(r);
    json_decref(r);
    return rc;
}

/* A page of Pro batches as an HTML table appended to b; *more 1 when a next page has rows. 0
 * or a DRAY_E* code. */
int
web_batches_table(dray_api *api, size_t page, size_t page_size, web_buf *b, int *more)
{
    json_t *r = NULL;
    size_t n;
    int rc = run_page(api, batches_lua, page, page_size, 0, BATCH_FIELDS, &r, &n, more);
    if (rc)
        return rc;
    web_buf_puts(b, "<table id=\"batches\"><tr><th>Batch</th><th>Description</th><th>Status</th>"
                    "<th>Progress</th><th>Total</th><th>Pending</th><th>Failures</th>"
                    "<th>Dead</th><th>Created</th><th>Parent</th></tr>");
    for (size_t i = 0; i < n && i < page_size; i++) {
        size_t f = i * BATCH_FIELDS;
        long long total = atoll(item(r, f + 3)), pending = atoll(item(r, f + 10));
        const char *status = "running";
        if (strcmp(item(r, f + 1), "1"))
            status = "expired";
        else if (*item(r, f + 7))
            status = "success";
        else if (*item(r, f + 8))
            status = "dead";
        else if (*item(r, f + 6))
            status = "complete";
        else if (!*item(r, f + 5))
            status = "open";
        web_buf_puts(b, "<tr class=\"batch\"><td class=\"bid\">");
        web_buf_text(b, item(r, f));
        web_buf_puts(b, "</td><td>");
        web_buf_text(b, item(r, f + 2));
        web_buf_printf(b, "</td><td class=\"status\">%s</td>", status);
        int pct = total > 0 ? (int)((total - pending) * 100 / total) : 0;
        if (pct < 0)
            pct = 0;
        web_buf_printf(b,
                       "<td class=\"progress\"><progress max=\"100\" value=\"%d\"></progress> "
                       "%d%%</td><td class=\"total\">%lld</td><td class=\"pending\">%lld</td>"
                       "<td class=\"failed\">%lld</td><td class=\"dead\">%lld</td><td>",
                       pct, pct, total, pending, atoll(item(r, f + 11)), atoll(item(r, f + 12)));
        when(b, item(r, f + 4));
        web_buf_puts(b, "</td><td>");
        web_buf_text(b, *item(r, f + 9) ? item(r, f + 9) : "-");
        web_buf_puts(b, "</td></tr>");
    }
    web_buf_puts(b, "</table>");
    json_decref(r);
    return 0;
}

/* The word for a limiter type letter (static string, "?" when unknown). */
static const char *
limiter_kind(const char *t)
{
    if (!strcmp(t, "c"))
        return "concurrent";
    if (!strcmp(t, "b"))
        return "bucket";
    if (!strcmp(t, "w"))
        return "window";
    if (!strcmp(t, "l"))
        return "leaky";
    return "?";
}

/* A page of Enterprise limiters as an HTML table appended to b; *more as for batches. 0 or a
 * DRAY_E* code. */
int
web_limits_table(dray_api *api, size_t page, size_t page_size, web_buf *b, int *more)
{
    json_t *r = NULL;
    size_t n;
    int rc = run_page(api, limits_lua, page, page_size, 0, LIMIT_FIELDS, &r, &n, more);
    if (rc)
        return rc;
    web_buf_puts(b, "<table id=\"limits\"><tr><th>Limiter</th><th>Kind</th><th>In use</th>"
                    "<th>Limit</th><th>Interval (s)</th><th>Taken</th><th>Over limit</th>"
                    "<th>Last used</th></tr>");
    for (size_t i = 0; i < n && i < page_size; i++) {
        size_t f = i * LIMIT_FIELDS;
        web_buf_puts(b, "<tr class=\"limiter\">");
        td(b, "name", item(r, f));
        td(b, "kind", limiter_kind(item(r, f + 1)));
        td(b, "used", item(r, f + 6));
        td(b, "limit", item(r, f + 2));
        td(b, NULL, *item(r, f + 1) == 'c' ? "-" : item(r, f + 3));
        td(b, "taken", item(r, f + 4));
        td(b, "overages", item(r, f + 5));
        web_buf_puts(b, "<td>");
        when(b, item(r, f + 7));
        web_buf_puts(b, "</td></tr>");
    }
    web_buf_puts(b, "</table>");
    json_decref(r);
    return 0;
}

/* The periodic leader and a page of loops appended to b; *more as for batches. 0 or a DRAY_E*
 * code. */
int
web_periodic_table(dray_api *api, size_t page, size_t page_size, web_buf *b, int *more)
{
    json_t *r = NULL;
    size_t n;
    int rc = run_page(api, periodic_lua, page, page_size, 2, PERIODIC_FIELDS, &r, &n, more);
    if (rc)
        return rc;
    web_buf_puts(b, "<p>Leader: <span id=\"leader\">");
    web_buf_text(b, *item(r, 0) ? item(r, 0) : "(none)");
    long long ttl = atoll(item(r, 1));
    if (*item(r, 0) && ttl > 0)
        web_buf_printf(b, "</span> (lease %.1f s left)</p>", ttl / 1000.0);
    else
        web_buf_puts(b, "</span></p>");
    web_buf_puts(b, "<table id=\"periodic\"><tr><th>Loop</th><th>Cron</th><th>Class</th>"
                    "<th>Queue</th><th>Time zone</th><th>Last run</th><th>Next run</th>"
                    "<th>Last JID</th></tr>");
    for (size_t i = 0; i < n && i < page_size; i++) {
        size_t f = 2 + i * PERIODIC_FIELDS;
        web_buf_puts(b, "<tr class=\"loop\">");
        static const char *const cls[] = {"loop", "cron", "class", "queue", "tz"};
        for (size_t k = 0; k < 5; k++)
            td(b, cls[k], item(r, f + k));
        web_buf_puts(b, "<td class=\"last\">");
        when(b, item(r, f + 5));
        web_buf_puts(b, "</td><td class=\"next\">");
        when(b, item(r, f + 6));
        web_buf_puts(b, "</td>");
        td(b, NULL, item(r, f + 7));
        web_buf_puts(b, "</tr>");
    }
    web_buf_puts(b, "</table>");
    json_decref(r);
    return 0;
}

/* Unique locks from SCAN cursor as a table appended to b; next gets the cursor to go on from
 * ("" at the end). 0 or a DRAY_E* code. */
int
web_unique_table(dray_api *api, const char *cursor, size_t page_size, web_buf *b, char next[32])
{
    const char *ns = dray_api_namespace(api);
    size_t nslen = strlen(ns), pre = nslen + strlen("ent:unique:");
    char *pattern = malloc(pre + 2);
    if (!pattern)
        return DRAY_ENOMEM;
    snprintf(pattern, pre + 2, "%sent:unique:*", ns);
    char cur[32], count[24];
    snprintf(cur, sizeof cur, "%s", cursor && *cursor ? cursor : "0");
    snprintf(count, sizeof count, "%zu", page_size * 4);
    web_buf_puts(b, "<table id=\"unique\"><tr><th>Lock (digest)</th><th>Owner JID</th>"
                    "<th>Taken</th><th>TTL (s)</th><th>Running on</th></tr>");
    size_t rows = 0;
    int rc = 0;
    for (int round = 0; round < UNIQUE_SCAN_ROUNDS && rows < page_size; round++) {
        json_t *page = NULL;
        const char *sc[6] = {"SCAN", cur, "MATCH", pattern, "COUNT", count};
        if ((rc = dray_api_command(api, 6, sc, &page)))
            break;
        snprintf(cur, sizeof cur, "%s", item(page, 0));
        json_t *keys = json_array_get(page, 1);
        for (size_t i = 0; i < json_array_size(keys) && !rc; i++) {
            const char *key = item(keys, i);
            json_t *u = NULL;
            const char *ev[4] = {"EVAL", unique_lua, "1", key};
            if ((rc = dray_api_command(api, 4, ev, &u)))
                break;
            long long ttl = atoll(item(u, 3));
            web_buf_puts(b, "<tr class=\"lock\"><td class=\"digest\">");
            web_buf_text(b, strlen(key) > pre ? key + pre : key);
            web_buf_puts(b, "</td><td class=\"owner\">");
            web_buf_text(b, item(u, 0));
            web_buf_puts(b, "</td><td>");
            when(b, item(u, 1));
            if (ttl >= 0)
                web_buf_printf(b, "</td><td class=\"ttl\">%.1f</td><td>", ttl / 1000.0);
            else
                web_buf_puts(b, "</td><td class=\"ttl\">none</td><td>");
            web_buf_text(b, *item(u, 2) ? item(u, 2) : "-");
            web_buf_puts(b, "</td></tr>");
            json_decref(u);
            rows++;
        }
        json_decref(page);
        if (!strcmp(cur, "0"))
            break;
    }
    web_buf_puts(b, "</table>");
    free(pattern);
    snprintf(next, 32, "%s", rc || !strcmp(cur, "0") ? "" : cur);
    return rc;
}

/* One sample with a single label. */
static void
sample(web_buf *b, const char *name, const char *label, const char *value, const char *num)
{
    web_buf_printf(b, "%s{%s=\"", name, label);
    web_buf_label(b, value);
    web_buf_printf(b, "\"} %s\n", num);
}

/* A number string as Prometheus wants it ("0" for empty or junk). */
static const char *
num(const char *s)
{
    char *end;
    if (!*s)
        return "0";
    strtod(s, &end);
    return *end ? "0" : s;
}

/* Prometheus figures of Pro batches (sums over the newest BATCH_METRIC_NEWEST) appended to b.
 * 0 or a DRAY_E* code. */
static int
batch_metrics(dray_api *api, web_buf *b)
{
    json_t *r = NULL;
    const char *argv[5] = {"EVAL", batch_sums_lua, "0", dray_api_namespace(api),
                           BATCH_METRIC_NEWEST};
    int rc = dray_api_command(api, 5, argv, &r);
    if (rc)
        return rc;
    long long v[7];
    for (size_t i = 0; i < 7; i++)
        v[i] = json_integer_value(json_array_get(r, i));
    json_decref(r);
    web_metric_head(b, "dray_batches", "gauge", "Pro batches listed in pro:batches.");
    web_buf_printf(b, "dray_batches %lld\n", v[0]);
    web_metric_head(b, "dray_batch_jobs_pending", "gauge",
                    "Jobs not yet succeeded, over the newest 1000 batches.");
    web_buf_printf(b, "dray_batch_jobs_pending %lld\n", v[1]);
    web_metric_head(b, "dray_batch_jobs_failed", "gauge",
                    "Jobs whose last run failed, over the newest 1000 batches.");
    web_buf_printf(b, "dray_batch_jobs_failed %lld\n", v[2]);
    web_metric_head(b, "dray_batch_jobs_dead", "gauge",
                    "Jobs that died, over the newest 1000 batches.");
    web_buf_printf(b, "dray_batch_jobs_dead %lld\n", v[3]);
    web_metric_head(b, "dray_batch_callbacks_total", "counter", "Batch callbacks fired, by event.");
    static const char *const ev[3] = {"complete", "success", "death"};
    for (size_t i = 0; i < 3; i++)
        web_buf_printf(b, "dray_batch_callbacks_total{event=\"%s\"} %lld\n", ev[i], v[4 + i]);
    return 0;
}

/* Prometheus figures of each Enterprise limiter appended to b. 0 or a DRAY_E* code. */
static int
limit_metrics(dray_api *api, web_buf *b)
{
    json_t *r = NULL;
    size_t n;
    int rc = run_rows(api, limits_lua, "0", "-1", 0, LIMIT_FIELDS, &r, &n);
    if (rc)
        return rc;
    static const struct {
        const char *name, *type, *help;
        size_t field;
    } m[] = {
        {"dray_limiter_in_use", "gauge", "Slots or units a limiter has in use now.", 6},
        {"dray_limiter_limit", "gauge", "A limiter's limit.", 2},
        {"dray_limiter_taken_total", "counter", "Admissions by a limiter.", 4},
        {"dray_limiter_over_limit_total", "counter",
         "Checks a limiter refused (the job waited or was rescheduled).", 5},
    };
    for (size_t k = 0; k < sizeof m / sizeof *m; k++) {
        web_metric_head(b, m[k].name, m[k].type, m[k].help);
        for (size_t i = 0; i < n; i++)
            sample(b, m[k].name, "limiter", item(r, i * LIMIT_FIELDS),
                   num(item(r, i * LIMIT_FIELDS + m[k].field)));
    }
    json_decref(r);
    return 0;
}

/* Prometheus figures of the periodic leader and loops appended to b. 0 or a DRAY_E* code. */
static int
periodic_metrics(dray_api *api, web_buf *b)
{
    json_t *r = NULL;
    size_t n;
    int rc = run_rows(api, periodic_lua, "0", "-1", 2, PERIODIC_FIELDS, &r, &n);
    if (rc)
        return rc;
    web_metric_head(b, "dray_periodic_leader", "gauge", "1 for the process holding dear-leader.");
    if (*item(r, 0))
        sample(b, "dray_periodic_leader", "identity", item(r, 0), "1");
    web_metric_head(b, "dray_periodic_next_run_timestamp_seconds", "gauge",
                    "When a periodic loop runs next (epoch seconds).");
    for (size_t i = 0; i < n; i++)
        sample(b, "dray_periodic_next_run_timestamp_seconds", "loop",
               item(r, 2 + i * PERIODIC_FIELDS), num(item(r, 2 + i * PERIODIC_FIELDS + 6)));
    web_metric_head(b, "dray_periodic_last_run_timestamp_seconds", "gauge",
                    "The last tick a periodic loop enqueued (epoch seconds; 0 none yet).");
    for (size_t i = 0; i < n; i++)
        sample(b, "dray_periodic_last_run_timestamp_seconds", "loop",
               item(r, 2 + i * PERIODIC_FIELDS), num(item(r, 2 + i * PERIODIC_FIELDS + 5)));
    json_decref(r);
    return 0;
}

/* Count unique locks with a bounded SCAN: -1 in *n when the bound was hit. */
static int
unique_count(dray_api *api, long long *n)
{
    const char *ns = dray_api_namespace(api);
    char pattern[512], cur[32] = "0";
    snprintf(pattern, sizeof pattern, "%sent:unique:*", ns);
    *n = 0;
    for (int round = 0; round < UNIQUE_METRIC_ROUNDS; round++) {
        json_t *page = NULL;
        const char *sc[6] = {"SCAN", cur, "MATCH", pattern, "COUNT", "1000"};
        int rc = dray_api_command(api, 6, sc, &page);
        if (rc)
            return rc;
        snprintf(cur, sizeof cur, "%s", item(page, 0));
        *n += (long long)json_array_size(json_array_get(page, 1));
        json_decref(page);
        if (!strcmp(cur, "0"))
            return 0;
    }
    *n = -1;
    return 0;
}

/* Prometheus text of the modules in mask appended to b, stopping at the first error. 0 or a
 * DRAY_E* code. */
int
web_module_metrics(dray_api *api, unsigned mask, web_buf *b)
{
    int rc = 0;
    if (mask & WEB_MOD_BATCHES)
        rc = batch_metrics(api, b);
    if (!rc && (mask & WEB_MOD_LIMITS))
        rc = limit_metrics(api, b);
    if (!rc && (mask & WEB_MOD_PERIODIC))
        rc = periodic_metrics(api, b);
    if (!rc && (mask & WEB_MOD_UNIQUE)) {
        long long n;
        if (!(rc = unique_count(api, &n)) && n >= 0) {
            web_metric_head(b, "dray_unique_locks", "gauge", "Enterprise unique-job locks held.");
            web_buf_printf(b, "dray_unique_locks %lld\n", n);
        }
    }
    return rc;
}
