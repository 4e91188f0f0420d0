/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray web: a dashboard and a Prometheus /metrics endpoint on libmicrohttpd
 * (Debian's libmicrohttpd-dev: maintained, small, no event loop of its own
 * to adopt). One internal polling thread serves every request, so the one
 * dray_api connection is only ever used by that thread.
 *
 * Safety: loopback unless --listen says otherwise; --token / --basic-auth;
 * every action is a POST carrying the per-session CSRF token (double-submit
 * of an HttpOnly SameSite=Strict cookie, plus an Origin check); --read-only
 * refuses every POST; everything rendered is HTML-escaped and a
 * Content-Security-Policy allows no inline script; sets and queues are read
 * a page at a time (ZRANGE/LRANGE with bounds, ZSCAN for search). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <zlib.h>
#include <dray/inspect.h>

#include "cli.h"
#include "web.h"
#include "web_backtrace.h"

#define WEB_MAX_BODY (1 << 20)      /* POST bodies beyond this are refused (413) */
#define WEB_MAX_FIELDS 1024         /* form fields kept: bounds a bulk action */
#define WEB_SCAN_ROUNDS 50          /* ZSCAN calls per search page: bounds one request */
#define WEB_ARGS_SHOWN 300          /* bytes of args shown in a list row */
#define WEB_CSRF_HEX 64             /* hex digits of the session token */
#define WEB_METRICS_MINUTES 60      /* window of the per-class figures */
#define WEB_MAX_BACKTRACE (1 << 20) /* inflated backtrace bytes kept: bounds a zip bomb */

enum { OPT_LISTEN = 2000, OPT_TOKEN, OPT_BASIC, OPT_READ_ONLY, OPT_PAGE_SIZE };

typedef struct web {
    dray_api *api;
    const char *ns;    /* "" or "ns:" */
    const char *token; /* bearer token, or NULL */
    const char *basic; /* "user:pass", or NULL */
    int read_only;     /* 1: no actions */
    size_t page_size;  /* rows per page */
} web;

typedef struct field {
    char *key;
    char *val;
} field;

/* Per request: the POST body and, once parsed, its fields. */
typedef struct req {
    web_buf body;
    int too_big;
    field f[WEB_MAX_FIELDS];
    size_t nf;
} req;

/* What one handler produces. */
typedef struct out {
    unsigned status;
    web_buf b;
    const char *ctype;
    const char *location; /* redirect target (303) or NULL */
    char csrf[WEB_CSRF_HEX + 1];
    int new_cookie; /* 1: send Set-Cookie with csrf */
    char flash[256];
    unsigned mods; /* WEB_MOD_* bits: the module pages in the menu */
} out;

/* ---- buffers and escaping ------------------------------------------------ */

/* Append n bytes of s, growing b by doubling; on OOM b->oom is set and later appends do
 * nothing. */
void
web_buf_cat(web_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* Append the string s (see web_buf_cat for OOM). */
void
web_buf_puts(web_buf *b, const char *s)
{
    web_buf_cat(b, s, strlen(s));
}

/* Append printf output of any length (see web_buf_cat for OOM). */
void
web_buf_printf(web_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        web_buf_cat(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    web_buf_cat(b, big, (size_t)n);
    free(big);
}

/* Append n bytes of s HTML-escaped (& < > " ', NUL as U+FFFD), safe inside text and
 * attributes. */
void
web_buf_html(web_buf *b, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        case '\0':
            rep = "\xEF\xBF\xBD";
            break;
        default:
            continue;
        }
        web_buf_cat(b, s + run, i - run);
        web_buf_puts(b, rep);
        run = i + 1;
    }
    web_buf_cat(b, s + run, n - run);
}

/* web_buf_html of a C string; NULL appends nothing. */
void
web_buf_text(web_buf *b, const char *s)
{
    if (s)
        web_buf_html(b, s, strlen(s));
}

/* Append s percent-encoded except RFC 3986 unreserved bytes, for a path or query part. */
void
web_buf_url(web_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            web_buf_cat(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            web_buf_cat(b, e, 3);
        }
    }
}

/* Append s as a Prometheus label value (backslash, quote and newline escaped). */
void
web_buf_label(web_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            web_buf_puts(b, "\\\\");
        else if (*s == '"')
            web_buf_puts(b, "\\\"");
        else if (*s == '\n')
            web_buf_puts(b, "\\n");
        else
            web_buf_cat(b, s, 1);
    }
}

/* ---- requests ------------------------------------------------------------ */

/* The value of hex digit c, or -1. */
static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode application/x-www-form-urlencoded text in place; returns its new
 * length (the result may hold NUL bytes; it is NUL-terminated too). */
static size_t
urldecode(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            s[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            s[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    s[o] = '\0';
    return o;
}

/* Split the body into fields (keys and values decoded; borrowed from the
 * body buffer, which is modified). */
static void
parse_form(req *r)
{
    if (!r->body.s)
        return;
    char *p = r->body.s, *end = r->body.s + r->body.len;
    while (p < end && r->nf < WEB_MAX_FIELDS) {
        char *amp = memchr(p, '&', (size_t)(end - p));
        char *stop = amp ? amp : end;
        *stop = '\0';
        char *eq = memchr(p, '=', (size_t)(stop - p));
        if (eq) {
            *eq = '\0';
            urldecode(p, (size_t)(eq - p));
            urldecode(eq + 1, (size_t)(stop - eq - 1));
            r->f[r->nf].key = p;
            r->f[r->nf].val = eq + 1;
            r->nf++;
        }
        p = stop + 1;
    }
}

/* The first form field named key (borrowed from r), or NULL. */
static const char *
form_get(const req *r, const char *key)
{
    for (size_t i = 0; i < r->nf; i++)
        if (!strcmp(r->f[i].key, key))
            return r->f[i].val;
    return NULL;
}

/* Constant-time comparison of two strings (length leaks, content does not). */
static int
secret_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* 1 when s is a token csrf_new could have made (WEB_CSRF_HEX hex digits), else 0 (NULL too). */
static int
csrf_valid_shape(const char *s)
{
    if (!s || strlen(s) != WEB_CSRF_HEX)
        return 0;
    for (const char *p = s; *p; p++)
        if (hexval(*p) < 0)
            return 0;
    return 1;
}

/* A fresh random token (WEB_CSRF_HEX hex digits) in tok from getrandom. 0, or -1 when no
 * randomness. */
static int
csrf_new(char tok[WEB_CSRF_HEX + 1])
{
    unsigned char rnd[WEB_CSRF_HEX / 2];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        sprintf(tok + 2 * i, "%02x", rnd[i]);
    return 0;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Append in base64 (padded) to b, for comparing Basic credentials. */
static void
b64_encode(const char *in, web_buf *b)
{
    size_t n = strlen(in);
    const unsigned char *s = (const unsigned char *)in;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        char q[4] = {b64chars[(v >> 18) & 63], b64chars[(v >> 12) & 63],
                     i + 1 < n ? b64chars[(v >> 6) & 63] : '=', i + 2 < n ? b64chars[v & 63] : '='};
        web_buf_cat(b, q, 4);
    }
}

/* 1 when the request carries the configured credentials (or none are set). */
static int
authorized(const web *w, struct MHD_Connection *c)
{
    if (!w->token && !w->basic)
        return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h)
        return 0;
    int ok = 0;
    if (w->token && !strncmp(h, "Bearer ", 7))
        ok = secret_eq(h + 7, w->token);
    if (!ok && !strncmp(h, "Basic ", 6)) {
        web_buf want = {0};
        if (w->basic)
            b64_encode(w->basic, &want);
        if (want.s)
            ok = secret_eq(h + 6, want.s);
        free(want.s);
    }
    return ok;
}

/* ---- page chrome --------------------------------------------------------- */

/* Append the HTML head, the menu (module pages by o->mods) and title as the h1. */
static void
page_begin(out *o, const char *title)
{
    web_buf *b = &o->b;
    web_buf_puts(b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<meta name=\"viewport\" content=\"width=device-width\">"
                    "<link rel=\"stylesheet\" href=\"/assets/dray.css\"><title>");
    web_buf_text(b, title);
    web_buf_puts(b, " - dray</title></head><body><nav><a class=\"brand\" href=\"/\">dray</a>"
                    "<a href=\"/\">Dashboard</a><a href=\"/busy\">Busy</a>"
                    "<a href=\"/queues\">Queues</a><a href=\"/retries\">Retries</a>"
                    "<a href=\"/scheduled\">Scheduled</a><a href=\"/dead\">Dead</a>");
    if (o->mods & WEB_MOD_BATCHES)
        web_buf_puts(b, "<a href=\"/batches\">Batches</a>");
    if (o->mods & WEB_MOD_LIMITS)
        web_buf_puts(b, "<a href=\"/limits\">Limits</a>");
    if (o->mods & WEB_MOD_PERIODIC)
        web_buf_puts(b, "<a href=\"/periodic\">Periodic</a>");
    if (o->mods & WEB_MOD_UNIQUE)
        web_buf_puts(b, "<a href=\"/unique\">Unique locks</a>");
    web_buf_puts(b, "<a href=\"/metrics\">Metrics</a></nav><main><h1>");
    web_buf_text(b, title);
    web_buf_puts(b, "</h1>");
}

/* Close the page opened by page_begin. */
static void
page_end(out *o)
{
    web_buf_puts(&o->b, "</main><script src=\"/assets/dray.js\"></script></body></html>");
}

/* The opening of an action form: POST to action, with the CSRF token. */
static void
form_open(out *o, const char *action, int inline_form)
{
    web_buf_printf(&o->b, "<form method=\"post\"%s action=\"",
                   inline_form ? " class=\"inline\"" : "");
    web_buf_text(&o->b, action);
    web_buf_printf(&o->b, "\"><input type=\"hidden\" name=\"csrf\" value=\"%s\">", o->csrf);
}

/* msg (escaped) as the page's notice paragraph. */
static void
flash_p(out *o, const char *msg)
{
    web_buf_puts(&o->b, "<p class=\"flash\">");
    web_buf_text(&o->b, msg);
    web_buf_puts(&o->b, "</p>");
}

/* Replace o's body with an error page of status carrying msg (escaped). */
static void
fail_page(out *o, unsigned status, const char *title, const char *msg)
{
    o->status = status;
    o->b.len = 0;
    if (o->b.s)
        o->b.s[0] = '\0';
    page_begin(o, title);
    flash_p(o, msg);
    page_end(o);
}

/* cli_fmt_time, or "-" for no time (t <= 0). */
static void
fmt_time(double t, char *buf, size_t n)
{
    if (t <= 0) {
        snprintf(buf, n, "-");
        return;
    }
    cli_fmt_time(t, buf, n);
}

/* The URL path segment of set s (static string). */
static const char *
set_path(dray_set s)
{
    return s == DRAY_SET_RETRY ? "retries" : s == DRAY_SET_SCHEDULE ? "scheduled" : "dead";
}

/* The page title of set s (static string). */
static const char *
set_title(dray_set s)
{
    return s == DRAY_SET_RETRY ? "Retries" : s == DRAY_SET_SCHEDULE ? "Scheduled" : "Dead";
}

/* Query argument name as a number in [0, max], or dflt when absent or not one. */
static size_t
query_size(struct MHD_Connection *c, const char *name, size_t dflt, size_t max)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    long n;
    if (!v || cli_parse_long(v, 0, (long)max, &n))
        return dflt;
    return (size_t)n;
}

/* ---- dashboard ----------------------------------------------------------- */

/* A 502 page with the API's last error. Returns 0 (the page is the answer). */
static int
api_fail(web *w, out *o)
{
    fail_page(o, 502, "Redis error", dray_api_errstr(w->api));
    return 0;
}

/* One dashboard figure with an id the page's script refreshes. */
static void
stat_box(out *o, const char *id, const char *label, long long v)
{
    web_buf_printf(&o->b, "<div class=\"stat\"><b id=\"s-%s\">%lld</b>%s</div>", id, v, label);
}

/* GET /: Sidekiq's figures and the queue sizes. Returns 0; Redis errors give a 502 page. */
static int
page_dashboard(web *w, out *o)
{
    dray_stats st;
    dray_queue_info *q = NULL;
    size_t nq = 0;
    if (dray_api_stats_get(w->api, &st) || dray_api_queues_list(w->api, &q, &nq))
        return api_fail(w, o);
    page_begin(o, "Dashboard");
    web_buf_puts(&o->b, "<div class=\"stats\">");
    stat_box(o, "processed", "Processed", st.processed);
    stat_box(o, "failed", "Failed", st.failed);
    stat_box(o, "busy", "Busy", st.workers_size);
    stat_box(o, "enqueued", "Enqueued", st.enqueued);
    stat_box(o, "retries", "Retries", st.retry_size);
    stat_box(o, "scheduled", "Scheduled", st.scheduled_size);
    stat_box(o, "dead", "Dead", st.dead_size);
    web_buf_puts(&o->b, "</div><h2>Live (processed green, failed red)</h2>"
                        "<canvas id=\"chart\" width=\"900\" height=\"180\"></canvas>"
                        "<h2>Queues</h2><table id=\"queues\"><tr><th>Queue</th><th>Size</th>"
                        "<th>Latency (s)</th></tr>");
    for (size_t i = 0; i < nq; i++) {
        web_buf_puts(&o->b, "<tr><td><a href=\"/queues/");
        web_buf_url(&o->b, q[i].name);
        web_buf_puts(&o->b, "\">");
        web_buf_text(&o->b, q[i].name);
        web_buf_printf(&o->b, "</a></td><td>%lld</td><td>%.3f</td></tr>", q[i].size, q[i].latency);
    }
    web_buf_puts(&o->b, "</table>");
    dray_api_queues_free(q, nq);
    page_end(o);
    return 0;
}

/* GET /stats.json: the dashboard figures the page's script polls. Returns 0; 502 on a Redis
 * error. */
static int
page_stats_json(web *w, out *o)
{
    dray_stats st;
    if (dray_api_stats_get(w->api, &st))
        return api_fail(w, o);
    o->ctype = "application/json";
    web_buf_printf(&o->b,
                   "{\"processed\":%lld,\"failed\":%lld,\"busy\":%lld,\"enqueued\":%lld,"
                   "\"retries\":%lld,\"scheduled\":%lld,\"dead\":%lld,\"processes\":%lld}",
                   st.processed, st.failed, st.workers_size, st.enqueued, st.retry_size,
                   st.scheduled_size, st.dead_size, st.processes_size);
    return 0;
}

/* ---- busy ---------------------------------------------------------------- */

/* Class and args of a running job's "payload" (a JSON string in Sidekiq 7,
 * an object in 6.x). */
static void
running_row(out *o, const char *tid, const char *work)
{
    json_t *wj = json_loads(work, JSON_ALLOW_NUL, NULL);
    json_t *payload = wj ? json_object_get(wj, "payload") : NULL, *pj = NULL;
    if (json_is_string(payload))
        payload = pj = json_loadb(json_string_value(payload), json_string_length(payload),
                                  JSON_ALLOW_NUL, NULL);
    const char *klass = json_string_value(json_object_get(payload, "class"));
    const char *jid = json_string_value(json_object_get(payload, "jid"));
    const char *queue = json_string_value(json_object_get(wj, "queue"));
    char *args = json_object_get(payload, "args")
                     ? json_dumps(json_object_get(payload, "args"), JSON_COMPACT | JSON_ENCODE_ANY)
                     : NULL;
    web_buf_puts(&o->b, "<tr><td>");
    web_buf_text(&o->b, tid);
    web_buf_puts(&o->b, "</td><td>");
    web_buf_text(&o->b, queue ? queue : "");
    web_buf_puts(&o->b, "</td><td>");
    web_buf_text(&o->b, klass ? klass : "?");
    web_buf_puts(&o->b, "</td><td>");
    web_buf_text(&o->b, jid ? jid : "");
    web_buf_puts(&o->b, "</td><td class=\"args\">");
    if (args)
        web_buf_html(&o->b, args, strlen(args) > WEB_ARGS_SHOWN ? WEB_ARGS_SHOWN : strlen(args));
    web_buf_puts(&o->b, "</td></tr>");
    free(args);
    json_decref(pj);
    json_decref(wj);
}

/* GET /busy: processes and their running jobs, with quiet/stop buttons unless read-only.
 * Returns 0. */
static int
page_busy(web *w, out *o)
{
    dray_process_info *p = NULL;
    size_t np = 0;
    if (dray_api_processes_list(w->api, &p, &np))
        return api_fail(w, o);
    page_begin(o, "Busy");
    if (o->flash[0])
        flash_p(o, o->flash);
    web_buf_puts(&o->b, "<table id=\"processes\"><tr><th>Identity</th><th>Version</th><th>Tag</th>"
                        "<th>Queues</th><th>Threads</th><th>Busy</th><th>RSS (KiB)</th>"
                        "<th>Beat</th><th>State</th><th></th></tr>");
    for (size_t i = 0; i < np; i++) {
        char beat[40];
        fmt_time(p[i].beat, beat, sizeof beat);
        web_buf_puts(&o->b, "<tr class=\"process\"><td>");
        web_buf_text(&o->b, p[i].identity);
        web_buf_puts(&o->b, "</td><td>");
        web_buf_text(&o->b, p[i].version);
        web_buf_puts(&o->b, "</td><td>");
        web_buf_text(&o->b, p[i].tag);
        web_buf_puts(&o->b, "</td><td>");
        web_buf_text(&o->b, p[i].queues);
        web_buf_printf(&o->b, "</td><td>%d</td><td>%d</td><td>%ld</td><td>%s</td><td>%s</td><td>",
                       p[i].concurrency, p[i].busy, p[i].rss_kb, beat,
                       p[i].quiet ? "quiet" : "running");
        if (!w->read_only) {
            for (int k = 0; k < 2; k++) {
                form_open(o, "/busy", 1);
                web_buf_puts(&o->b, "<input type=\"hidden\" name=\"identity\" value=\"");
                web_buf_text(&o->b, p[i].identity);
                web_buf_printf(&o->b,
                               "\"><button name=\"signal\" value=\"%s\" data-confirm=\"%s this "
                               "process?\">%s</button></form>",
                               k ? "stop" : "quiet", k ? "Stop" : "Quiet", k ? "Stop" : "Quiet");
            }
        }
        web_buf_puts(&o->b, "</td></tr>");
    }
    web_buf_puts(&o->b, "</table><h2>Running jobs</h2><table id=\"jobs\"><tr><th>Thread</th>"
                        "<th>Queue</th><th>Class</th><th>JID</th><th>Args</th></tr>");
    for (size_t i = 0; i < np; i++) {
        /* Sidekiq 7+ (and dray) write "<identity>:work", 6.x "<identity>:workers". */
        json_t *r = NULL;
        for (int k = 0; k < 2 && !json_array_size(r); k++) {
            char key[1024];
            snprintf(key, sizeof key, "%s%s:%s", w->ns, p[i].identity, k ? "workers" : "work");
            const char *argv[] = {"HGETALL", key};
            json_decref(r);
            r = NULL;
            if (dray_api_command(w->api, 2, argv, &r))
                r = NULL;
        }
        for (size_t k = 0; k + 1 < json_array_size(r) && k < 2 * 1000; k += 2)
            running_row(o, json_string_value(json_array_get(r, k)),
                        json_string_value(json_array_get(r, k + 1)));
        json_decref(r);
    }
    web_buf_puts(&o->b, "</table>");
    dray_api_processes_free(p, np);
    page_end(o);
    return 0;
}

/* POST /busy: send quiet (TSTP) or stop (TERM) to one process, then redirect back. Returns 0. */
static int
post_busy(web *w, req *r, out *o)
{
    const char *id = form_get(r, "identity"), *sig = form_get(r, "signal");
    if (!id || !sig || (strcmp(sig, "quiet") && strcmp(sig, "stop"))) {
        fail_page(o, 400, "Bad request", "identity and signal (quiet or stop) are required");
        return 0;
    }
    int rc = dray_api_signal(w->api, id, !strcmp(sig, "quiet") ? "TSTP" : "TERM");
    if (rc == DRAY_ENOTFOUND) {
        fail_page(o, 404, "Not found", "no such process");
        return 0;
    }
    if (rc)
        return api_fail(w, o);
    o->location = "/busy";
    return 0;
}

/* ---- queues -------------------------------------------------------------- */

/* GET /queues: size, latency and paused state of each queue, with actions unless read-only.
 * Returns 0. */
static int
page_queues(web *w, out *o)
{
    dray_queue_info *q = NULL;
    size_t nq = 0, np = 0;
    char **paused = NULL;
    if (dray_api_queues_list(w->api, &q, &nq))
        return api_fail(w, o);
    if (dray_api_paused_list(w->api, &paused, &np)) {
        dray_api_queues_free(q, nq);
        return api_fail(w, o);
    }
    page_begin(o, "Queues");
    web_buf_puts(&o->b, "<table id=\"queues\"><tr><th>Queue</th><th>Size</th><th>Latency (s)</th>"
                        "<th>State</th><th></th></tr>");
    for (size_t i = 0; i < nq; i++) {
        int is_paused = 0;
        for (size_t k = 0; k < np && !is_paused; k++)
            is_paused = !strcmp(paused[k], q[i].name);
        web_buf_printf(&o->b, "<tr%s><td><a href=\"/queues/", is_paused ? " class=\"paused\"" : "");
        web_buf_url(&o->b, q[i].name);
        web_buf_puts(&o->b, "\">");
        web_buf_text(&o->b, q[i].name);
        web_buf_printf(&o->b, "</a></td><td>%lld</td><td>%.3f</td><td class=\"state\">%s</td><td>",
                       q[i].size, q[i].latency, is_paused ? "paused" : "running");
        if (!w->read_only) {
            web_buf buf = {0};
            web_buf_puts(&buf, "/queues/");
            web_buf_url(&buf, q[i].name);
            form_open(o, buf.s ? buf.s : "/queues", 1);
            web_buf_puts(&o->b, is_paused
                                    ? "<button name=\"action\" value=\"resume\">Resume</button>"
                                    : "<button name=\"action\" value=\"pause\">Pause</button>");
            web_buf_puts(&o->b, "</form>");
            form_open(o, buf.s ? buf.s : "/queues", 1);
            free(buf.s);
            web_buf_puts(&o->b, "<button name=\"action\" value=\"clear\" data-confirm=\"Delete "
                                "every job of this queue?\">Delete</button></form>");
        }
        web_buf_puts(&o->b, "</td></tr>");
    }
    web_buf_puts(&o->b, "</table>");
    dray_api_queues_free(q, nq);
    dray_api_paused_free(paused, np);
    page_end(o);
    return 0;
}

/* Previous/next links for page of base (extra: a query tail already escaped). */
static void
pager(out *o, const char *base, size_t page, int more, const char *extra)
{
    web_buf_puts(&o->b, "<p class=\"pager\">");
    if (page > 0) {
        web_buf_puts(&o->b, "<a class=\"prev\" href=\"");
        web_buf_text(&o->b, base);
        web_buf_printf(&o->b, "?page=%zu%s\">&laquo; previous page</a>", page - 1, extra);
    }
    web_buf_printf(&o->b, "page %zu", page + 1);
    if (more) {
        web_buf_puts(&o->b, " <a class=\"next\" href=\"");
        web_buf_text(&o->b, base);
        web_buf_printf(&o->b, "?page=%zu%s\">next page &raquo;</a>", page + 1, extra);
    }
    web_buf_puts(&o->b, "</p>");
}

/* The class, jid and args cells of one job row (raw shown when job is not JSON), args cut at
 * WEB_ARGS_SHOWN bytes. */
static void
job_cells(out *o, const json_t *job, const char *raw)
{
    const char *klass = json_string_value(json_object_get(job, "class"));
    const char *jid = json_string_value(json_object_get(job, "jid"));
    char *args = json_object_get(job, "args")
                     ? json_dumps(json_object_get(job, "args"), JSON_COMPACT | JSON_ENCODE_ANY)
                     : NULL;
    web_buf_puts(&o->b, "<td>");
    web_buf_text(&o->b, klass ? klass : "?");
    web_buf_puts(&o->b, "</td><td>");
    web_buf_text(&o->b, jid ? jid : "");
    web_buf_puts(&o->b, "</td><td class=\"args\">");
    const char *a = args ? args : raw;
    size_t n = strlen(a);
    web_buf_html(&o->b, a, n > WEB_ARGS_SHOWN ? WEB_ARGS_SHOWN : n);
    if (n > WEB_ARGS_SHOWN)
        web_buf_puts(&o->b, "&hellip;");
    web_buf_puts(&o->b, "</td>");
    free(args);
}

/* GET /queues/NAME: one page of the queue's jobs (LRANGE order). Returns 0; 502 on a Redis
 * error. */
static int
page_queue(web *w, struct MHD_Connection *c, out *o, const char *name)
{
    size_t page = query_size(c, "page", 0, 1000000000);
    char key[1024], start[32], stop[32];
    snprintf(key, sizeof key, "%squeue:%s", w->ns, name);
    snprintf(start, sizeof start, "%zu", page * w->page_size);
    snprintf(stop, sizeof stop, "%zu", page * w->page_size + w->page_size); /* one extra: more? */
    const char *argv[] = {"LRANGE", key, start, stop};
    const char *lenv[] = {"LLEN", key};
    json_t *r = NULL, *len = NULL;
    if (dray_api_command(w->api, 4, argv, &r) || dray_api_command(w->api, 2, lenv, &len)) {
        json_decref(r);
        return api_fail(w, o);
    }
    char title[300];
    snprintf(title, sizeof title, "Queue %s", name);
    page_begin(o, title);
    web_buf_printf(&o->b,
                   "<p>%lld jobs</p><table id=\"jobs\"><tr><th>Class</th><th>JID</th>"
                   "<th>Args</th><th></th></tr>",
                   (long long)json_integer_value(len));
    web_buf base = {0};
    web_buf_puts(&base, "/queues/");
    web_buf_url(&base, name);
    size_t n = json_array_size(r);
    for (size_t i = 0; i < n && i < w->page_size; i++) {
        const char *raw = json_string_value(json_array_get(r, i));
        if (!raw)
            continue;
        json_t *job = json_loads(raw, JSON_ALLOW_NUL, NULL);
        web_buf_puts(&o->b, "<tr class=\"job\">");
        job_cells(o, job, raw);
        web_buf_puts(&o->b, "<td>");
        if (!w->read_only && base.s) {
            form_open(o, base.s, 1);
            web_buf_puts(&o->b, "<input type=\"hidden\" name=\"job\" value=\"");
            web_buf_text(&o->b, raw);
            web_buf_puts(&o->b, "\"><button name=\"action\" value=\"delete_job\" "
                                "data-confirm=\"Delete this job?\">Delete</button></form>");
        }
        web_buf_puts(&o->b, "</td></tr>");
        json_decref(job);
    }
    web_buf_puts(&o->b, "</table>");
    pager(o, base.s ? base.s : "/queues", page, n > w->page_size, "");
    free(base.s);
    json_decref(r);
    json_decref(len);
    page_end(o);
    return 0;
}

/* POST /queues/NAME: clear, pause or resume the queue, then redirect back. Returns 0. */
static int
post_queue(web *w, req *r, out *o, const char *name)
{
    const char *action = form_get(r, "action");
    char key[1024], qs[1024];
    snprintf(key, sizeof key, "%squeue:%s", w->ns, name);
    snprintf(qs, sizeof qs, "%squeues", w->ns);
    json_t *res = NULL;
    if (action && !strcmp(action, "clear")) {
        const char *del[] = {"UNLINK", key};
        const char *srem[] = {"SREM", qs, name};
        if (dray_api_command(w->api, 2, del, &res))
            return api_fail(w, o);
        json_decref(res);
        if (dray_api_command(w->api, 3, srem, &res))
            return api_fail(w, o);
        json_decref(res);
        o->location = "/queues";
        return 0;
    }
    if (action && (!strcmp(action, "pause") || !strcmp(action, "resume"))) {
        /* Workers leave a paused queue out of their fetches (core/src/pause.c). */
        int rc = !strcmp(action, "pause") ? dray_api_queue_pause(w->api, name)
                                          : dray_api_queue_resume(w->api, name);
        if (rc == DRAY_EQUEUE) {
            fail_page(o, 400, "Bad request", "invalid queue name");
            return 0;
        }
        if (rc)
            return api_fail(w, o);
        o->location = "/queues";
        return 0;
    }
    const char *job = form_get(r, "job");
    if (action && !strcmp(action, "delete_job") && job) {
        const char *lrem[] = {"LREM", key, "1", job};
        if (dray_api_command(w->api, 4, lrem, &res))
            return api_fail(w, o);
        json_decref(res);
        o->location = "back";
        return 0;
    }
    fail_page(o, 400, "Bad request", "action must be clear, pause, resume, or delete_job with job");
    return 0;
}

/* ---- paid modules' pages (web_modules.c) --------------------------------- */

/* /batches, /limits, /periodic, /unique: a page of what the module wrote,
 * read-only. 404 for another path. */
static int
page_module(web *w, struct MHD_Connection *c, out *o, const char *url)
{
    static const struct {
        const char *path, *title;
        int (*table)(dray_api *, size_t, size_t, web_buf *, int *);
    } pages[] = {
        {"/batches", "Batches", web_batches_table},
        {"/limits", "Limits", web_limits_table},
        {"/periodic", "Periodic", web_periodic_table},
    };
    web_buf body = {0};
    int rc, more = 0;
    if (!strcmp(url, "/unique")) {
        const char *cur = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");
        char next[32];
        if ((rc = web_unique_table(w->api, cur, w->page_size, &body, next))) {
            free(body.s);
            return api_fail(w, o);
        }
        page_begin(o, "Unique locks");
        web_buf_cat(&o->b, body.s ? body.s : "", body.len);
        if (next[0])
            web_buf_printf(&o->b,
                           "<p class=\"pager\"><a class=\"next\" href=\"/unique?cursor=%s\">"
                           "more locks &raquo;</a></p>",
                           next);
        free(body.s);
        page_end(o);
        return 0;
    }
    for (size_t i = 0; i < sizeof pages / sizeof *pages; i++) {
        if (strcmp(url, pages[i].path))
            continue;
        size_t page = query_size(c, "page", 0, 1000000000);
        if ((rc = pages[i].table(w->api, page, w->page_size, &body, &more))) {
            free(body.s);
            return api_fail(w, o);
        }
        page_begin(o, pages[i].title);
        web_buf_cat(&o->b, body.s ? body.s : "", body.len);
        pager(o, pages[i].path, page, more, "");
        free(body.s);
        page_end(o);
        return 0;
    }
    fail_page(o, 404, "Not found", "no such page");
    return 0;
}

/* ---- retry / schedule / dead sets --------------------------------------- */

/* One row of a set page from a raw member (score as time), with a bulk checkbox unless read-
 * only. */
static void
set_row(web *w, out *o, dray_set s, double score, const char *raw, size_t rawlen)
{
    json_t *job = json_loadb(raw, rawlen, JSON_ALLOW_NUL, NULL);
    const char *jid = json_string_value(json_object_get(job, "jid"));
    char when[40];
    fmt_time(score, when, sizeof when);
    web_buf_puts(&o->b, "<tr class=\"job\"><td>");
    if (jid && !w->read_only) {
        web_buf_puts(&o->b, "<input type=\"checkbox\" name=\"jid\" form=\"bulk\" value=\"");
        web_buf_text(&o->b, jid);
        web_buf_puts(&o->b, "\">");
    }
    web_buf_printf(&o->b, "</td><td>%s</td>", when);
    job_cells(o, job, raw);
    const char *ec = json_string_value(json_object_get(job, "error_class"));
    const char *em = json_string_value(json_object_get(job, "error_message"));
    web_buf_puts(&o->b, "<td>");
    if (ec || em) {
        web_buf_text(&o->b, ec ? ec : "");
        web_buf_puts(&o->b, ": ");
        web_buf_text(&o->b, em ? em : "");
    }
    web_buf_puts(&o->b, "</td><td>");
    if (jid) {
        web_buf_printf(&o->b, "<a class=\"detail\" href=\"/%s/", set_path(s));
        web_buf_url(&o->b, jid);
        web_buf_puts(&o->b, "\">details</a>");
    }
    web_buf_puts(&o->b, "</td></tr>");
    json_decref(job);
}

/* A ZSCAN MATCH glob for "*text*" with the glob's specials escaped. */
static void
glob_for(web_buf *b, const char *text)
{
    web_buf_puts(b, "*");
    for (const char *p = text; *p; p++) {
        if (*p == '*' || *p == '?' || *p == '[' || *p == ']' || *p == '\\')
            web_buf_puts(b, "\\");
        web_buf_cat(b, p, 1);
    }
    web_buf_puts(b, "*");
}

/* GET /retries|/scheduled|/dead: a page of the set, or search results (q) bounded by
 * WEB_SCAN_ROUNDS. Returns 0. */
static int
page_set(web *w, struct MHD_Connection *c, out *o, dray_set s)
{
    size_t page = query_size(c, "page", 0, 1000000000);
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
    long long size = 0;
    if (dray_api_set_size(w->api, s, &size))
        return api_fail(w, o);
    page_begin(o, set_title(s));
    if (o->flash[0])
        flash_p(o, o->flash);
    web_buf_printf(&o->b,
                   "<p>%lld jobs</p><form method=\"get\" action=\"/%s\">"
                   "<input name=\"q\" placeholder=\"class, jid or arg text\" value=\"",
                   size, set_path(s));
    web_buf_text(&o->b, q ? q : "");
    web_buf_puts(&o->b, "\"><button>Search</button></form>");
    if (!w->read_only) {
        char action[32];
        snprintf(action, sizeof action, "/%s", set_path(s));
        web_buf_puts(&o->b, "<form id=\"bulk\" method=\"post\" action=\"");
        web_buf_text(&o->b, action);
        web_buf_printf(&o->b,
                       "\"><input type=\"hidden\" name=\"csrf\" value=\"%s\">"
                       "Selected: <button name=\"action\" value=\"retry\" id=\"bulk-retry\">"
                       "Retry now</button> <button name=\"action\" value=\"delete\" "
                       "id=\"bulk-delete\" data-confirm=\"Delete the selected jobs?\">Delete"
                       "</button>",
                       o->csrf);
        if (s != DRAY_SET_DEAD)
            web_buf_puts(&o->b, " <button name=\"action\" value=\"kill\" id=\"bulk-kill\" "
                                "data-confirm=\"Kill the selected jobs?\">Kill</button>");
        web_buf_puts(&o->b, "</form>");
    } else {
        web_buf_puts(&o->b, "<p class=\"ro\">read-only</p>");
    }
    web_buf_puts(&o->b, "<table id=\"jobs\"><tr><th><input type=\"checkbox\" id=\"check-all\"></th>"
                        "<th>When</th><th>Class</th><th>JID</th><th>Args</th><th>Error</th>"
                        "<th></th></tr>");
    char base[32];
    snprintf(base, sizeof base, "/%s", set_path(s));
    if (q && *q) {
        /* Search: ZSCAN with MATCH, a bounded number of rounds per request;
         * "page" is the ZSCAN cursor to continue from. */
        const char *cur_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");
        char cursor[32];
        snprintf(cursor, sizeof cursor, "%s", cur_s && *cur_s ? cur_s : "0");
        char key[512];
        snprintf(key, sizeof key, "%s%s", w->ns, dray_set_name(s));
        web_buf pat = {0};
        glob_for(&pat, q);
        size_t found = 0;
        for (int round = 0; round < WEB_SCAN_ROUNDS && found < w->page_size && !pat.oom; round++) {
            const char *argv[] = {"ZSCAN", key, cursor, "MATCH", pat.s, "COUNT", "200"};
            json_t *r = NULL;
            if (dray_api_command(w->api, 7, argv, &r)) {
                free(pat.s);
                return api_fail(w, o);
            }
            const char *next = json_string_value(json_array_get(r, 0));
            json_t *items = json_array_get(r, 1);
            for (size_t i = 0; i + 1 < json_array_size(items); i += 2) {
                json_t *m = json_array_get(items, i);
                double score = atof(json_string_value(json_array_get(items, i + 1)) ?: "0");
                set_row(w, o, s, score, json_string_value(m), json_string_length(m));
                found++;
            }
            snprintf(cursor, sizeof cursor, "%s", next ? next : "0");
            json_decref(r);
            if (!strcmp(cursor, "0"))
                break;
        }
        web_buf_puts(&o->b, "</table>");
        if (strcmp(cursor, "0")) {
            web_buf_printf(&o->b, "<p class=\"pager\"><a class=\"next\" href=\"%s?q=", base);
            web_buf_url(&o->b, q);
            web_buf_printf(&o->b, "&amp;cursor=%s\">more matches &raquo;</a></p>", cursor);
        }
        free(pat.s);
    } else {
        dray_set_entry *e = NULL;
        size_t n = 0;
        if (dray_api_set_list(w->api, s, page * w->page_size, w->page_size + 1, &e, &n))
            return api_fail(w, o);
        for (size_t i = 0; i < n && i < w->page_size; i++)
            set_row(w, o, s, e[i].score, e[i].member, e[i].member_len);
        web_buf_puts(&o->b, "</table>");
        pager(o, base, page, n > w->page_size, "");
        dray_api_entries_free(e, n);
    }
    page_end(o);
    return 0;
}

/* v pretty-printed and escaped inside <pre>. */
static void
pre_json(out *o, const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    web_buf_puts(&o->b, "<pre>");
    if (s)
        web_buf_text(&o->b, s);
    web_buf_puts(&o->b, "</pre>");
    free(s);
}

/* GET /SET/JID: one entry with its payload and backtrace, and its actions. Returns 0; 404
 * when gone. */
static int
page_entry(web *w, out *o, dray_set s, const char *jid)
{
    dray_set_entry *e = NULL;
    int rc = dray_api_set_find(w->api, s, jid, &e);
    if (rc == DRAY_ENOTFOUND) {
        fail_page(o, 404, "Not found", "no job with this jid in the set");
        return 0;
    }
    if (rc)
        return api_fail(w, o);
    json_t *job = json_loadb(e->member, e->member_len, JSON_ALLOW_NUL, NULL);
    char title[200], when[40];
    snprintf(title, sizeof title, "%s job", set_title(s));
    fmt_time(e->score, when, sizeof when);
    page_begin(o, title);
    web_buf_puts(&o->b, "<table id=\"detail\"><tr><th>JID</th><td>");
    web_buf_text(&o->b, jid);
    web_buf_puts(&o->b, "</td></tr><tr><th>Class</th><td>");
    web_buf_text(&o->b, e->klass);
    web_buf_puts(&o->b, "</td></tr><tr><th>Queue</th><td>");
    web_buf_text(&o->b, e->queue);
    web_buf_printf(&o->b, "</td></tr><tr><th>%s</th><td>%s</td></tr>",
                   s == DRAY_SET_DEAD ? "Died" : "Runs at", when);
    web_buf_printf(&o->b, "<tr><th>Retry count</th><td>%d</td></tr><tr><th>Error</th><td>",
                   e->retry_count);
    web_buf_text(&o->b, e->error_class);
    web_buf_puts(&o->b, ": ");
    web_buf_text(&o->b, e->error_message);
    web_buf_puts(&o->b, "</td></tr></table><h2>Args</h2><div id=\"args\">");
    pre_json(o, json_object_get(job, "args"));
    web_buf_puts(&o->b, "</div><h2>Backtrace</h2>");
    json_t *bt = json_object_get(job, "error_backtrace");
    if (json_is_array(bt))
        pre_json(o, bt);
    else if (json_is_string(bt)) {
        json_t *lines = web_backtrace_inflate(json_string_value(bt), WEB_MAX_BACKTRACE);
        if (lines)
            pre_json(o, lines);
        else
            web_buf_puts(&o->b, "<p>(not readable: not base64 of deflated JSON lines)</p>");
        json_decref(lines);
    } else
        web_buf_puts(&o->b, "<p>none stored (the job does not ask for a backtrace)</p>");
    if (!w->read_only) {
        char action[32];
        snprintf(action, sizeof action, "/%s", set_path(s));
        form_open(o, action, 0);
        web_buf_puts(&o->b, "<input type=\"hidden\" name=\"jid\" value=\"");
        web_buf_text(&o->b, jid);
        web_buf_puts(&o->b, "\"><button name=\"action\" value=\"retry\" id=\"retry\">Retry now"
                            "</button> <button name=\"action\" value=\"delete\" id=\"delete\" "
                            "data-confirm=\"Delete this job?\">Delete</button>");
        if (s != DRAY_SET_DEAD)
            web_buf_puts(&o->b, " <button name=\"action\" value=\"kill\" id=\"kill\" "
                                "data-confirm=\"Kill this job?\">Kill</button>");
        web_buf_puts(&o->b, "</form>");
    }
    web_buf_puts(&o->b, "<h2>Job</h2><div id=\"raw\">");
    pre_json(o, job);
    web_buf_puts(&o->b, "</div>");
    json_decref(job);
    dray_api_entries_free(e, 1);
    page_end(o);
    return 0;
}

/* POST /SET: retry, delete or kill the checked jids (kill not on dead), then redirect with
 * the counts. Returns 0. */
static int
post_set(web *w, req *r, out *o, dray_set s)
{
    const char *action = form_get(r, "action");
    int (*fn)(dray_api *, dray_set, const char *) = NULL;
    if (action && !strcmp(action, "retry"))
        fn = dray_api_set_retry;
    else if (action && !strcmp(action, "delete"))
        fn = dray_api_set_delete;
    else if (action && !strcmp(action, "kill") && s != DRAY_SET_DEAD)
        fn = dray_api_set_kill;
    if (!fn) {
        fail_page(o, 400, "Bad request", "action must be retry, delete or kill");
        return 0;
    }
    size_t done = 0, missing = 0;
    for (size_t i = 0; i < r->nf; i++) {
        if (strcmp(r->f[i].key, "jid"))
            continue;
        int rc = fn(w->api, s, r->f[i].val);
        if (rc == DRAY_ENOTFOUND || rc == DRAY_EQUEUE)
            missing++;
        else if (rc)
            return api_fail(w, o);
        else
            done++;
    }
    /* Back to the list with the counts in the query (numbers and a fixed
     * action name only: the page never reflects free text). */
    snprintf(o->flash, sizeof o->flash, "action=%s&done=%zu&missing=%zu", action, done, missing);
    o->location = set_path(s);
    return 0;
}

/* ---- metrics ------------------------------------------------------------- */

/* A Prometheus # HELP and # TYPE pair for name. */
void
web_metric_head(web_buf *b, const char *name, const char *type, const char *help)
{
    web_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The figures of Sidekiq's dashboard (st) as Prometheus gauges and counters. */
static void
stat_metrics(web_buf *b, const dray_stats *st)
{
    const struct {
        const char *name, *type, *help;
        long long v;
    } figs[] = {
        {"dray_processed_total", "counter", "Jobs processed (stat:processed).", st->processed},
        {"dray_failed_total", "counter", "Jobs failed (stat:failed).", st->failed},
        {"dray_busy_threads", "gauge", "Jobs running now, over every process.", st->workers_size},
        {"dray_enqueued_jobs", "gauge", "Jobs waiting in every queue.", st->enqueued},
        {"dray_processes", "gauge", "Members of the processes set.", st->processes_size},
        {"dray_retry_set_size", "gauge", "Jobs in the retry set.", st->retry_size},
        {"dray_scheduled_set_size", "gauge", "Jobs in the schedule set.", st->scheduled_size},
        {"dray_dead_set_size", "gauge", "Jobs in the dead set.", st->dead_size},
    };
    for (size_t i = 0; i < sizeof figs / sizeof *figs; i++) {
        web_metric_head(b, figs[i].name, figs[i].type, figs[i].help);
        web_buf_printf(b, "%s %lld\n", figs[i].name, figs[i].v);
    }
}

static void class_metrics(web *w, web_buf *b);

/* GET /metrics: Prometheus text of the Redis-side figures, per-class histograms and the
 * modules' figures. Returns 0; 502 on a Redis error. */
static int
page_metrics(web *w, out *o)
{
    dray_stats st;
    dray_queue_info *q = NULL;
    dray_process_info *p = NULL;
    size_t nq = 0, np = 0;
    struct timespec t0, t1;
    json_t *pong = NULL;
    const char *ping[] = {"PING"};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = dray_api_command(w->api, 1, ping, &pong);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    json_decref(pong);
    if (rc || dray_api_stats_get(w->api, &st) || dray_api_queues_list(w->api, &q, &nq) ||
        dray_api_processes_list(w->api, &p, &np)) {
        dray_api_queues_free(q, nq);
        o->ctype = "text/plain; charset=utf-8";
        o->status = 502;
        web_buf_printf(&o->b, "redis error: %s\n", dray_api_errstr(w->api));
        return 0;
    }
    web_buf *b = &o->b;
    o->ctype = "text/plain; version=0.0.4; charset=utf-8";
    stat_metrics(b, &st);
    web_metric_head(b, "dray_queue_size", "gauge", "Jobs waiting in a queue.");
    for (size_t i = 0; i < nq; i++) {
        web_buf_puts(b, "dray_queue_size{queue=\"");
        web_buf_label(b, q[i].name);
        web_buf_printf(b, "\"} %lld\n", q[i].size);
    }
    web_metric_head(b, "dray_queue_latency_seconds", "gauge",
                    "Seconds the oldest job of a queue has waited.");
    for (size_t i = 0; i < nq; i++) {
        web_buf_puts(b, "dray_queue_latency_seconds{queue=\"");
        web_buf_label(b, q[i].name);
        web_buf_printf(b, "\"} %.6f\n", q[i].latency);
    }
    char **paused = NULL;
    size_t npaused = 0;
    if (!dray_api_paused_list(w->api, &paused, &npaused)) { /* a Redis error leaves it out */
        web_metric_head(b, "dray_queue_paused", "gauge",
                        "1 while a queue is paused (the paused set).");
        for (size_t i = 0; i < nq; i++) {
            int is = 0;
            for (size_t k = 0; k < npaused && !is; k++)
                is = !strcmp(paused[k], q[i].name);
            web_buf_puts(b, "dray_queue_paused{queue=\"");
            web_buf_label(b, q[i].name);
            web_buf_printf(b, "\"} %d\n", is);
        }
        dray_api_paused_free(paused, npaused);
    }
    static const char *pm[][3] = {
        {"dray_process_concurrency", "gauge", "Worker threads of a process."},
        {"dray_process_busy_threads", "gauge", "Jobs a process ran at its last heartbeat."},
        {"dray_process_rss_bytes", "gauge", "Resident memory of a process at its last beat."},
        {"dray_process_redis_rtt_seconds", "gauge", "Redis round trip a process measured."},
    };
    for (size_t k = 0; k < 4; k++) {
        web_metric_head(b, pm[k][0], pm[k][1], pm[k][2]);
        for (size_t i = 0; i < np; i++) {
            web_buf_printf(b, "%s{identity=\"", pm[k][0]);
            web_buf_label(b, p[i].identity);
            web_buf_puts(b, "\"} ");
            if (k == 0)
                web_buf_printf(b, "%d\n", p[i].concurrency);
            else if (k == 1)
                web_buf_printf(b, "%d\n", p[i].busy);
            else if (k == 2)
                web_buf_printf(b, "%ld\n", p[i].rss_kb * 1024);
            else
                web_buf_printf(b, "%.6f\n", p[i].rtt_us / 1e6);
        }
    }
    web_metric_head(b, "dray_redis_rtt_seconds", "gauge",
                    "PING round trip from dray web to Redis.");
    web_buf_printf(b, "dray_redis_rtt_seconds %.6f\n",
                   (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    class_metrics(w, b);
    unsigned mods = 0;
    if (!web_modules_present(w->api, &mods) && mods)
        web_module_metrics(w->api, mods, b); /* a Redis error leaves the module figures out */
    dray_api_queues_free(q, nq);
    dray_api_processes_free(p, np);
    return 0;
}

/* Per-class figures of the last WEB_METRICS_MINUTES minutes from Sidekiq 7's
 * execution metrics (core/src/metrics.c): the "j|YYYYMMDD|H:M" hashes and
 * the "Class-DD-HH:M" BITFIELD histograms, summed in one script (one round
 * trip per scrape). Reply: class, processed, failed, ms, then the 26 bucket
 * counts, repeated. */
static const char metrics_lua[] =
    "local ns = ARGV[1]\n"
    "local cls, order = {}, {}\n"
    "for i = 2, #ARGV, 2 do\n"
    "  local h = redis.call('HGETALL', ns .. 'j|' .. ARGV[i])\n"
    "  for j = 1, #h, 2 do\n"
    "    local name, kind = string.match(h[j], '^(.*)|(%a+)$')\n"
    "    if name and (kind == 'p' or kind == 'f' or kind == 'ms') then\n"
    "      local c = cls[name]\n"
    "      if not c then\n"
    "        c = {p = 0, f = 0, ms = 0, b = {}}\n"
    "        for x = 1, 26 do c.b[x] = 0 end\n"
    "        cls[name] = c\n"
    "        order[#order + 1] = name\n"
    "      end\n"
    "      c[kind] = c[kind] + tonumber(h[j + 1])\n"
    "      if kind == 'ms' then\n"
    "        local args = {'BITFIELD_RO', ns .. name .. '-' .. ARGV[i + 1]}\n"
    "        for x = 0, 25 do args[#args + 1] = 'GET'; args[#args + 1] = 'u16';"
    " args[#args + 1] = '#' .. x end\n"
    "        local v = redis.call(unpack(args))\n"
    "        for x = 1, 26 do c.b[x] = c.b[x] + (v[x] or 0) end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local out = {}\n"
    "for _, name in ipairs(order) do\n"
    "  local c = cls[name]\n"
    "  out[#out + 1] = name; out[#out + 1] = c.p; out[#out + 1] = c.f; out[#out + 1] = c.ms\n"
    "  for x = 1, 26 do out[#out + 1] = c.b[x] end\n"
    "end\n"
    "return out\n";

/* Sidekiq's bucket bounds in seconds (shared.rb), the last is +Inf. */
static const char *const bucket_le[] = {"0.02",  "0.03", "0.045", "0.065", "0.1", "0.15", "0.225",
                                        "0.335", "0.5",  "0.75",  "1.1",   "1.7", "2.5",  "3.8",
                                        "5.75",  "8.5",  "13",    "20",    "30",  "45",   "65",
                                        "100",   "150",  "225",   "335",   "+Inf"};

/* Append the per-class metrics. When Redis refuses the script, a comment
 * says why and the rest of the page stands. */
static void
class_metrics(web *w, web_buf *b)
{
    enum { MINUTES = WEB_METRICS_MINUTES };
    char keys[2 * MINUTES][48];
    const char *argv[3 + 1 + 2 * MINUTES];
    int n = 0;
    argv[n++] = "EVAL";
    argv[n++] = metrics_lua;
    argv[n++] = "0";
    argv[n++] = w->ns;
    time_t now = time(NULL);
    for (int m = 0; m < MINUTES; m++) {
        time_t t = now - 60 * m;
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(keys[2 * m], sizeof keys[0], "%04d%02d%02d|%d:%d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
        snprintf(keys[2 * m + 1], sizeof keys[0], "%02d-%02d:%d", tm.tm_mday, tm.tm_hour,
                 tm.tm_min);
        argv[n++] = keys[2 * m];
        argv[n++] = keys[2 * m + 1];
    }
    json_t *r = NULL;
    if (dray_api_command(w->api, n, argv, &r)) {
        web_buf_puts(b, "# per-class metrics unavailable: ");
        web_buf_puts(b, dray_api_errstr(w->api));
        web_buf_puts(b, "\n");
        return;
    }
    size_t per = 4 + 26, nc = json_array_size(r) / per;
    static const struct {
        const char *name, *help;
        size_t at; /* the count's place in a class's record */
    } counts[] = {
        {"dray_job_processed_last_hour",
         "Jobs of a class run in the last 60 minutes (Sidekiq 7 execution metrics).", 1},
        {"dray_job_failed_last_hour", "Jobs of a class that failed in the last 60 minutes.", 2},
    };
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
        web_metric_head(b, counts[k].name, "gauge", counts[k].help);
        for (size_t i = 0; i < nc; i++) {
            web_buf_printf(b, "%s{class=\"", counts[k].name);
            web_buf_label(b, json_string_value(json_array_get(r, i * per)) ?: "");
            web_buf_printf(
                b, "\"} %lld\n",
                (long long)json_integer_value(json_array_get(r, i * per + counts[k].at)));
        }
    }
    web_metric_head(b, "dray_job_duration_last_hour_seconds", "histogram",
                    "Run time of the successful jobs of a class in the last 60 minutes (a sliding "
                    "window, not a counter: use histogram_quantile without rate).");
    for (size_t i = 0; i < nc; i++) {
        const char *klass = json_string_value(json_array_get(r, i * per)) ?: "";
        long long cum = 0;
        for (int k = 0; k < 26; k++) {
            cum += (long long)json_integer_value(json_array_get(r, i * per + 4 + (size_t)k));
            web_buf_puts(b, "dray_job_duration_last_hour_seconds_bucket{class=\"");
            web_buf_label(b, klass);
            web_buf_printf(b, "\",le=\"%s\"} %lld\n", bucket_le[k], cum);
        }
        web_buf_puts(b, "dray_job_duration_last_hour_seconds_count{class=\"");
        web_buf_label(b, klass);
        web_buf_printf(b, "\"} %lld\n", cum);
        web_buf_puts(b, "dray_job_duration_last_hour_seconds_sum{class=\"");
        web_buf_label(b, klass);
        web_buf_printf(b, "\"} %.3f\n",
                       (double)json_integer_value(json_array_get(r, i * per + 3)) / 1000.0);
    }
    json_decref(r);
}

/* ---- dispatch ------------------------------------------------------------ */

/* Refuse a POST that this dashboard must not act on: read-only, body over
 * 1 MiB, cross-origin, or without the CSRF cookie and matching form token.
 * Returns 0 when the POST may proceed (r's form is parsed), -1 after
 * writing the refusal page into o. */
static int
post_allowed(const web *w, struct MHD_Connection *c, req *r, out *o)
{
    if (w->read_only) {
        fail_page(o, 403, "Read-only", "this dashboard is read-only (--read-only)");
        return -1;
    }
    if (r->too_big) {
        fail_page(o, 413, "Too large", "request body over 1 MiB");
        return -1;
    }
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (origin && strcmp(origin, "null")) {
        const char *o2 = strstr(origin, "://");
        if (!o2 || !host || strcmp(o2 + 3, host)) {
            fail_page(o, 403, "Forbidden", "cross-origin POST refused");
            return -1;
        }
    }
    parse_form(r);
    const char *cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "dray_csrf");
    const char *tok = form_get(r, "csrf");
    if (!csrf_valid_shape(cookie) || !tok || !secret_eq(cookie, tok)) {
        fail_page(o, 403, "Forbidden", "missing or wrong CSRF token; reload the page");
        return -1;
    }
    return 0;
}

/* Serve the pages that need no menu: the two assets, /metrics and
 * /stats.json (GET only). Returns 1 when url was one of them, else 0. */
static int
route_plain(web *w, int post, const char *url, out *o)
{
    if (!strcmp(url, "/assets/dray.css") || !strcmp(url, "/assets/dray.js")) {
        int css = !strcmp(url, "/assets/dray.css");
        o->ctype = css ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8";
        web_buf_puts(&o->b, css ? web_css : web_js);
        return 1;
    }
    if (!post && !strcmp(url, "/metrics")) {
        page_metrics(w, o);
        return 1;
    }
    if (!post && !strcmp(url, "/stats.json")) {
        page_stats_json(w, o);
        return 1;
    }
    return 0;
}

/* Serve /retries, /scheduled, /dead (list or POST) and /<set>/<jid>
 * (entry), with the flash line a bulk action redirected back with.
 * Returns 1 when url named one of the three sets, else 0. */
static int
route_set(web *w, struct MHD_Connection *c, int post, const char *url, req *r, out *o)
{
    const char *slash = strchr(url + 1, '/');
    char name[16];
    size_t nlen = slash ? (size_t)(slash - url - 1) : strlen(url + 1);
    dray_set s;
    if (nlen >= sizeof name)
        return 0;
    memcpy(name, url + 1, nlen);
    name[nlen] = '\0';
    if ((strcmp(name, "retries") && strcmp(name, "scheduled") && strcmp(name, "dead")) ||
        dray_set_parse(name, &s))
        return 0;
    const char *act = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "action");
    if (act && (!strcmp(act, "retry") || !strcmp(act, "delete") || !strcmp(act, "kill")))
        snprintf(o->flash, sizeof o->flash, "%s: %zu done, %zu not found or refused", act,
                 query_size(c, "done", 0, 1000000), query_size(c, "missing", 0, 1000000));
    if (post && !slash)
        post_set(w, r, o, s);
    else if (!post && !slash)
        page_set(w, c, o, s);
    else if (!post && slash[1])
        page_entry(w, o, s, slash + 1);
    else
        fail_page(o, 404, "Not found", "no such page");
    return 1;
}

/* Route one request (url decoded by libmicrohttpd) to its page or action;
 * every outcome, refusals and 404 included, is written into o. */
static void
route(web *w, struct MHD_Connection *c, const char *method, const char *url, req *r, out *o)
{
    int post = !strcmp(method, "POST");
    if (!post && strcmp(method, "GET") && strcmp(method, "HEAD")) {
        fail_page(o, 405, "Method not allowed", "GET or POST only");
        return;
    }
    if (post && post_allowed(w, c, r, o))
        return;
    if (route_plain(w, post, url, o))
        return;
    if (!post)
        web_modules_present(w->api, &o->mods); /* the menu's module pages; 0 on error */
    if (!post && !strcmp(url, "/")) {
        page_dashboard(w, o);
        return;
    }
    if (!post && (!strcmp(url, "/batches") || !strcmp(url, "/limits") ||
                  !strcmp(url, "/periodic") || !strcmp(url, "/unique"))) {
        page_module(w, c, o, url);
        return;
    }
    if (!strcmp(url, "/busy")) {
        if (post)
            post_busy(w, r, o);
        else
            page_busy(w, o);
        return;
    }
    if (!post && !strcmp(url, "/queues")) {
        page_queues(w, o);
        return;
    }
    if (!strncmp(url, "/queues/", 8) && url[8]) {
        if (post)
            post_queue(w, r, o, url + 8);
        else
            page_queue(w, c, o, url + 8);
        return;
    }
    if (!route_set(w, c, post, url, r, o))
        fail_page(o, 404, "Not found", "no such page");
}

/* The headers every response carries: a strict CSP, no sniffing, no framing, no caching. */
static void
add_security_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "img-src 'self'; connect-src 'self'; form-action 'self'; "
                            "frame-ancestors 'none'; base-uri 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
}

/* libmicrohttpd handler: collect the POST body (over WEB_MAX_BODY: refused), check auth,
 * route, and queue the response. MHD_NO only when no response can be made. */
static enum MHD_Result
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    web *w = cls;
    (void)version;
    req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->body.len + *upload_size > WEB_MAX_BODY)
            r->too_big = 1;
        else
            web_buf_cat(&r->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    out o = {.status = 200, .ctype = "text/html; charset=utf-8"};
    struct MHD_Response *resp;
    enum MHD_Result ret;
    if (!authorized(w, c)) {
        static const char msg[] = "authorization required\n";
        resp = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, "WWW-Authenticate",
                                "Basic realm=\"dray\", charset=\"UTF-8\"");
        add_security_headers(resp);
        ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    const char *cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "dray_csrf");
    if (csrf_valid_shape(cookie)) {
        snprintf(o.csrf, sizeof o.csrf, "%s", cookie);
    } else if (csrf_new(o.csrf)) {
        return MHD_NO;
    } else {
        o.new_cookie = 1;
    }
    route(w, c, method, url, r, &o);
    web_buf loc = {0};
    if (o.location) {
        /* After an action: back to the page the form was on (a same-site
         * path from the Referer), else to the given page. */
        const char *ref = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Referer");
        const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
        const char *path = NULL;
        if (ref && host) {
            const char *h = strstr(ref, "://");
            if (h && !strncmp(h + 3, host, strlen(host)) && h[3 + strlen(host)] == '/')
                path = h + 3 + strlen(host);
        }
        if (!strcmp(o.location, "back"))
            web_buf_puts(&loc, path ? path : "/queues");
        else if (o.location[0] == '/')
            web_buf_puts(&loc, o.location);
        else {
            web_buf_printf(&loc, "/%s", o.location);
            if (o.flash[0])
                web_buf_printf(&loc, "?%s", o.flash);
        }
        o.status = 303;
        o.b.len = 0;
    }
    if (o.b.oom || loc.oom) {
        free(o.b.s);
        free(loc.s);
        return MHD_NO;
    }
    resp = MHD_create_response_from_buffer(o.b.len, o.b.s ? o.b.s : (void *)"",
                                           o.b.s ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(o.b.s);
        free(loc.s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, o.ctype);
    add_security_headers(resp);
    if (o.new_cookie) {
        char cookie_h[160];
        snprintf(cookie_h, sizeof cookie_h, "dray_csrf=%s; Path=/; HttpOnly; SameSite=Strict",
                 o.csrf);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, cookie_h);
    }
    if (loc.s)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, loc.s);
    free(loc.s);
    ret = MHD_queue_response(c, o.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* libmicrohttpd request end: free the per-request state answer allocated. */
static void
completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    req *r = *con_cls;
    if (r) {
        free(r->body.s);
        free(r);
        *con_cls = NULL;
    }
}

/* ---- command ------------------------------------------------------------- */

/* "host:port" (IPv4, localhost or [IPv6]) into sa and *len; *loopback 1 for a loopback
 * address. 0, or -1. */
int
web_parse_listen(const char *s, struct sockaddr_storage *sa, socklen_t *len, int *loopback)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    long port;
    if (!colon || (size_t)(colon - s) >= sizeof host || cli_parse_long(colon + 1, 0, 65535, &port))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(sa, 0, sizeof *sa);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        host[strlen(host) - 1] = '\0';
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return -1;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        *len = sizeof *a6;
        return 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return -1;
    *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    *len = sizeof *a4;
    return 0;
}

/* The port d listens on (the kernel's pick for port 0), or 0 when it cannot be read. */
unsigned
web_bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (!info || getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen))
        return 0;
    return ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                             : ((struct sockaddr_in *)&bound)->sin_port);
}

/* dray web's flags into w and *listen, over DRAY_WEB_TOKEN and
 * DRAY_WEB_BASIC_AUTH. Returns 0 to serve, -1 after printing --help, or
 * CLI_EUSAGE after the usage message. */
static int
web_opts(cli_ctx *ctx, int argc, char **argv, web *w, const char **listen)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"basic-auth", required_argument, NULL, OPT_BASIC},
        {"read-only", no_argument, NULL, OPT_READ_ONLY},
        {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
        {NULL, 0, NULL, 0},
    };
    w->token = getenv("DRAY_WEB_TOKEN");
    w->basic = getenv("DRAY_WEB_BASIC_AUTH");
    if (w->token && !*w->token)
        w->token = NULL;
    if (w->basic && !*w->basic)
        w->basic = NULL;
    int c;
    long n;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        int h = cli_common_opt(ctx, c, optarg);
        if (h < 0)
            return CLI_EUSAGE;
        if (h)
            continue;
        switch (c) {
        case OPT_LISTEN:
            *listen = optarg;
            break;
        case OPT_TOKEN:
            w->token = optarg;
            break;
        case OPT_BASIC:
            if (!strchr(optarg, ':'))
                return cli_usage(ctx, "--basic-auth takes USER:PASSWORD");
            w->basic = optarg;
            break;
        case OPT_READ_ONLY:
            w->read_only = 1;
            break;
        case OPT_PAGE_SIZE:
            if (cli_parse_long(optarg, 1, 1000, &n))
                return cli_usage(ctx, "--page-size takes 1-1000, not '%s'", optarg);
            w->page_size = (size_t)n;
            break;
        default:
            return cli_usage(ctx, "unknown option");
        }
    }
    return cli_opts_done(ctx, argc, argv);
}

/* Serve w on sa from libmicrohttpd's thread until SIGINT or SIGTERM (both
 * blocked here and waited for). Returns CLI_OK after a signal, or
 * CLI_ERUNTIME when listen cannot be bound. Owns nothing of w. */
static int
web_serve(cli_ctx *ctx, web *w, const struct sockaddr_storage *sa, const char *listen)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the server thread inherits it */
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
            (sa->ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, answer, w, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)sa,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_LIMIT, 64u,
        MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!d) {
        cli_err(ctx, "cannot listen on %s (in use, or not an address of this host)", listen);
        return CLI_ERUNTIME;
    }
    unsigned port = web_bound_port(d);
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(strrchr(listen, ':') - listen), listen);
    fprintf(stderr, "dray web: listening on http://%s:%u/%s%s\n", host, port,
            w->read_only ? " (read-only)" : "", w->token || w->basic ? " (auth required)" : "");
    fflush(stderr);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "dray web: stopping (%s)\n", sig == SIGINT ? "INT" : "TERM");
    MHD_stop_daemon(d);
    return CLI_OK;
}

/* dray web: the dashboard and /metrics until SIGINT or SIGTERM. A CLI exit code. */
int
cli_cmd_web(int argc, char **argv)
{
    cli_ctx ctx;
    cli_ctx_init(&ctx, "web");
    web w = {.page_size = 25};
    const char *listen = "127.0.0.1:7433";
    int rc = web_opts(&ctx, argc, argv, &w, &listen);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    struct sockaddr_storage sa;
    socklen_t salen;
    int loopback = 0;
    if (web_parse_listen(listen, &sa, &salen, &loopback))
        return cli_usage(&ctx, "--listen takes HOST:PORT (127.0.0.1:7433, [::1]:7433), not '%s'",
                         listen);
    if (!loopback && !w.token && !w.basic)
        fprintf(stderr,
                "dray web: warning: listening on %s without --token or --basic-auth: "
                "anyone who reaches it can act on your jobs\n",
                listen);
    rc = cli_open_api(&ctx, &w.api);
    if (rc) {
        cli_ctx_close(&ctx);
        return rc;
    }
    w.ns = dray_api_namespace(w.api);
    rc = web_serve(&ctx, &w, &sa, listen);
    dray_api_free(w.api);
    cli_ctx_close(&ctx);
    return rc;
}
