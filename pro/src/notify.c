/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Webhook notifications for batch events (batch.complete, batch.success,
 * batch.death) and job deaths (job.death), to the URLs of pro.webhook_url
 * (JSON body) and pro.webhook_slack_url (Slack-compatible {"text": ...}).
 *
 * Events are written to Redis first, by the script that caused them (a
 * batch callback firing, a death), so an event survives any crash:
 *   <ns>pro:notify:events      list of event JSON, not yet fanned out
 *   <ns>pro:notify:deliveries  hash: delivery id -> {url, format, event, attempts, ...}
 *   <ns>pro:notify:due         zset: delivery id -> next attempt (epoch s)
 *   <ns>pro:notify:failed      list: deliveries that used up their attempts
 *   <ns>pro:notify:on          set while some process has webhooks configured
 * Only the notifier thread (one per process, started with the first server
 * and stopped with the last) talks HTTP, through libcurl's multi interface;
 * worker threads never do. Each POST carries X-Dray-Timestamp and
 * X-Dray-Signature: v1=<hex HMAC-SHA256(secret, timestamp "." body)>.
 * A failed delivery is retried with exponential backoff; one whose
 * notifier died is claimed again when its lease runs out. Delivery is at
 * least once: X-Dray-Delivery lets a receiver drop duplicates.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "pro.h"

#define MAX_INFLIGHT 32      /* requests in flight per process */
#define FANOUT_MAX "100"     /* events fanned out per script call */
#define FLAG_TTL "86400"     /* pro:notify:on outlives its last refresher by a day */
#define FLAG_EVERY_S 60.0    /* refresh the flag this often */
#define FAILED_KEEP "9999"   /* pro:notify:failed keeps the newest 10,000 */
#define MAX_BACKOFF_S 3600.0 /* retry at least hourly */
#define ERR_LOG_EVERY_S 30.0 /* Redis trouble is logged at most this often */
#define RESP_SNIPPET 200     /* bytes of a failed response kept for the log */

/* KEYS[1] flag, KEYS[2] events; ARGV[1] event JSON. */
static const char emit_lua[] = "local keep = redis.call('GET', KEYS[1])\n"
                               "if not keep then return 0 end\n"
                               "redis.call('LPUSH', KEYS[2], ARGV[1])\n"
                               "redis.call('EXPIRE', KEYS[2], keep)\n"
                               "return 1\n";

/* KEYS[1] events, KEYS[2] due, KEYS[3] deliveries. ARGV[1] now, ARGV[2]
 * keep s, ARGV[3] seed, ARGV[4] max events, ARGV[5..] url, format pairs:
 * one delivery per event and target, due now. */
static const char fanout_lua[] =
    "local n = 0\n"
    "for i = 1, tonumber(ARGV[4]) do\n"
    "  local e = redis.call('RPOP', KEYS[1])\n"
    "  if not e then break end\n"
    "  for t = 5, #ARGV, 2 do\n"
    "    local id = string.sub(redis.sha1hex(ARGV[3] .. ':' .. i .. ':' .. t), 1, 24)\n"
    "    redis.call('HSET', KEYS[3], id, cjson.encode({url = ARGV[t], format = ARGV[t + 1],\n"
    "      event = e, attempts = 0, created_at = tonumber(ARGV[1])}))\n"
    "    redis.call('ZADD', KEYS[2], ARGV[1], id)\n"
    "  end\n"
    "  n = n + 1\n"
    "end\n"
    "if n > 0 then\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[2])\n"
    "end\n"
    "return n\n";

/* KEYS[1] due, KEYS[2] deliveries. ARGV[1] now, ARGV[2] lease end, ARGV[3]
 * max. Due deliveries move to the lease end (nobody else takes them
 * meanwhile). Returns {id, data, ...}. */
static const char claim_lua[] = "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], "
                                "'LIMIT', 0, tonumber(ARGV[3]))\n"
                                "local out = {}\n"
                                "for _, id in ipairs(ids) do\n"
                                "  local d = redis.call('HGET', KEYS[2], id)\n"
                                "  if d then\n"
                                "    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)\n"
                                "    out[#out + 1] = id\n"
                                "    out[#out + 1] = d\n"
                                "  else\n"
                                "    redis.call('ZREM', KEYS[1], id)\n"
                                "  end\n"
                                "end\n"
                                "return out\n";

/* KEYS[1] due, KEYS[2] deliveries; ARGV[1] id. */
static const char done_lua[] = "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                               "return redis.call('HDEL', KEYS[2], ARGV[1])\n";

/* KEYS[1] due, KEYS[2] deliveries, KEYS[3] failed. ARGV[1] id, ARGV[2]
 * updated data, ARGV[3] next attempt, ARGV[4] "1" to park it as failed,
 * ARGV[5] keep s. */
static const char retry_lua[] =
    "if ARGV[4] == '1' then\n"
    "  redis.call('LPUSH', KEYS[3], ARGV[2])\n"
    "  redis.call('LTRIM', KEYS[3], 0, " FAILED_KEEP ")\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[5])\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "  redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "  return 0\n"
    "end\n"
    "if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return -1 end\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])\n"
    "return 1\n";

static dray_script *s_emit, *s_fanout, *s_claim, *s_done, *s_retry;

typedef struct target {
    char *url;
    const char *format; /* "json" or "slack" */
} target;

static target *g_targets;
static size_t g_ntargets;
static const char *g_secret; /* borrowed from the host (process lifetime) */
static int g_job_death;      /* pro.webhook_job_death */

/* ---- configuration ------------------------------------------------------------ */

static int
add_target(const char *url, const char *format)
{
    CURLU *u = curl_url();
    if (!u)
        return H->set_error(M, "out of memory");
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    char *scheme = NULL;
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    int ok = uc == CURLUE_OK && scheme && (!strcmp(scheme, "http") || !strcmp(scheme, "https"));
    curl_free(scheme);
    curl_url_cleanup(u);
    if (!ok)
        return H->set_error(M, "pro.webhook%s_url \"%s\" is not a valid http(s) URL%s%s",
                            !strcmp(format, "slack") ? "_slack" : "", url,
                            uc != CURLUE_OK ? ": " : " (only http and https are allowed)",
                            uc != CURLUE_OK ? curl_url_strerror(uc) : "");
    target *t = realloc(g_targets, sizeof *t * (g_ntargets + 1));
    if (!t)
        return H->set_error(M, "out of memory");
    g_targets = t;
    g_targets[g_ntargets].url = strdup(url);
    g_targets[g_ntargets].format = format;
    if (!g_targets[g_ntargets].url)
        return H->set_error(M, "out of memory");
    g_ntargets++;
    return 0;
}

static int
each_json(const char *key, const char *value, void *ud)
{
    (void)key;
    (void)ud;
    return add_target(value, "json");
}

static int
each_slack(const char *key, const char *value, void *ud)
{
    (void)key;
    (void)ud;
    return add_target(value, "slack");
}

/* ---- events -------------------------------------------------------------------- */

void
pro__notify_job_death(dray_ctx *ctx, const dray_job *job, const char *payload,
                      const char *error_class, const char *message)
{
    if (!(pro__cfg.features & DRAY_LICENSE_F_NOTIFICATIONS) || !s_emit)
        return;
    json_t *src = NULL;
    if (!job && payload)
        src = json_loads(payload, 0, NULL);
    const char *jid = job ? H->job_jid(job) : json_string_value(json_object_get(src, "jid"));
    const char *klass = job ? H->job_class(job) : json_string_value(json_object_get(src, "class"));
    const char *queue = job ? H->job_queue(job) : json_string_value(json_object_get(src, "queue"));
    json_t *bidv = job ? H->job_get(job, "bid") : json_object_get(src, "bid");
    json_t *ev = json_pack("{s:s, s:s?, s:s?, s:s?, s:O?, s:s?, s:s?, s:f}", "event", "job.death",
                           "jid", jid, "class", klass, "queue", queue, "bid", bidv, "error_class",
                           error_class, "error_message", message, "at", H->now());
    char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    json_decref(src);
    if (!text) {
        H->log(M, DRAY_LOG_ERROR, "out of memory recording the death of job %s for webhooks",
               jid ? jid : "?");
        return;
    }
    char flag[PRO_KEY_BYTES], events[PRO_KEY_BYTES];
    pro__key(ctx, flag, sizeof flag, "pro:notify:on");
    pro__key(ctx, events, sizeof events, "pro:notify:events");
    const char *argv[3] = {flag, events, text};
    redisReply *r = NULL;
    if (pro__eval(ctx, s_emit, &r, 2, 3, argv))
        H->log(M, DRAY_LOG_ERROR, "cannot record the death of job %s for webhooks (%s): %s",
               jid ? jid : "?", H->redis_errstr(ctx), text);
    if (r)
        freeReplyObject(r);
    free(text);
}

static void
on_death(dray_ctx *ctx, const dray_job *job, const char *error_class, const char *message, void *ud)
{
    (void)ud;
    if (g_job_death)
        pro__notify_job_death(ctx, job, NULL, error_class, message);
}

/* ---- the notifier thread ----------------------------------------------------- */

typedef struct req {
    CURL *easy;
    struct curl_slist *hdrs;
    char id[32]; /* delivery id */
    char *data;  /* the delivery record as claimed */
    char *body;  /* what we POST */
    char url[2048];
    char resp[RESP_SNIPPET + 1];
    size_t resp_len;
    struct req *next;
} req;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_users; /* servers running in this process */
static int g_started;
static pthread_t g_thread;
static atomic_int g_stop;
static CURLM *g_multi; /* the thread's, for curl_multi_wakeup; under g_mu */
static double g_last_err;

static void
log_redis_trouble(dray_ctx *ctx, const char *what)
{
    double now = H->now();
    if (now - g_last_err < ERR_LOG_EVERY_S)
        return;
    g_last_err = now;
    H->log(M, DRAY_LOG_ERROR, "notifier: %s: %s (events stay in Redis and are retried)", what,
           H->redis_errstr(ctx));
}

static size_t
on_body(char *p, size_t size, size_t n, void *ud)
{
    req *r = ud;
    size_t len = size * n, room = RESP_SNIPPET - r->resp_len;
    size_t k = len < room ? len : room;
    memcpy(r->resp + r->resp_len, p, k);
    r->resp_len += k;
    r->resp[r->resp_len] = '\0';
    return len;
}

/* The Slack-compatible body for an event: {"text": "..."}. New reference. */
static json_t *
slack_body(const json_t *ev)
{
    const char *e = json_string_value(json_object_get(ev, "event"));
    const char *bid = json_string_value(json_object_get(ev, "bid"));
    const char *desc = json_string_value(json_object_get(ev, "description"));
    char text[1024];
    if (e && !strncmp(e, "batch.", 6)) {
        long long total = json_integer_value(json_object_get(ev, "total"));
        long long fails = json_integer_value(json_object_get(ev, "failures"));
        const char *what = !strcmp(e, "batch.success")    ? "succeeded"
                           : !strcmp(e, "batch.complete") ? "is complete"
                                                          : "had a job die";
        snprintf(text, sizeof text, "%s dray batch %s%s%s%s %s: %lld jobs, %lld failures",
                 !strcmp(e, "batch.success") ? ":white_check_mark:"
                 : !strcmp(e, "batch.death") ? ":x:"
                                             : ":information_source:",
                 bid ? bid : "?", desc && *desc ? " (" : "", desc && *desc ? desc : "",
                 desc && *desc ? ")" : "", what, total, fails);
    } else {
        const char *jid = json_string_value(json_object_get(ev, "jid"));
        const char *klass = json_string_value(json_object_get(ev, "class"));
        const char *queue = json_string_value(json_object_get(ev, "queue"));
        const char *ec = json_string_value(json_object_get(ev, "error_class"));
        const char *em = json_string_value(json_object_get(ev, "error_message"));
        snprintf(text, sizeof text, ":skull: dray job %s %s died in queue %s: %s: %.400s",
                 klass ? klass : "?", jid ? jid : "?", queue ? queue : "?", ec ? ec : "?",
                 em ? em : "");
    }
    return json_pack("{s:s}", "text", text);
}

/* Start the POST of one claimed delivery. Returns the request or NULL
 * (the delivery then stays claimed and is retried when the lease ends). */
static req *
start_request(CURLM *multi, const char *id, const char *data, size_t len)
{
    json_t *d = json_loadb(data, len, 0, NULL);
    const char *url = json_string_value(json_object_get(d, "url"));
    const char *format = json_string_value(json_object_get(d, "format"));
    const char *event = json_string_value(json_object_get(d, "event"));
    req *r = calloc(1, sizeof *r);
    if (!d || !url || !event || !r) {
        H->log(M, DRAY_LOG_ERROR, "notifier: delivery %s is unreadable: %.200s", id, data);
        json_decref(d);
        free(r);
        return NULL;
    }
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->url, sizeof r->url, "%s", url);
    r->data = strndup(data, len);
    json_t *ev = json_loads(event, 0, NULL);
    const char *evname = json_string_value(json_object_get(ev, "event"));
    if (format && !strcmp(format, "slack")) {
        json_t *sb = ev ? slack_body(ev) : NULL;
        r->body = sb ? json_dumps(sb, JSON_COMPACT) : NULL;
        json_decref(sb);
    } else {
        r->body = strdup(event);
    }
    char ts[32], hdr[256];
    snprintf(ts, sizeof ts, "%lld", (long long)H->now());
    r->hdrs = curl_slist_append(r->hdrs, "Content-Type: application/json");
    snprintf(hdr, sizeof hdr, "X-Dray-Event: %s", evname ? evname : "unknown");
    r->hdrs = curl_slist_append(r->hdrs, hdr);
    snprintf(hdr, sizeof hdr, "X-Dray-Delivery: %s", id);
    r->hdrs = curl_slist_append(r->hdrs, hdr);
    snprintf(hdr, sizeof hdr, "X-Dray-Timestamp: %s", ts);
    r->hdrs = curl_slist_append(r->hdrs, hdr);
    if (g_secret && *g_secret && r->body) {
        crypto_auth_hmacsha256_state st;
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_init(&st, (const unsigned char *)g_secret, strlen(g_secret));
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)r->body, strlen(r->body));
        crypto_auth_hmacsha256_final(&st, mac);
        char hex[2 * sizeof mac + 1];
        sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
        snprintf(hdr, sizeof hdr, "X-Dray-Signature: v1=%s", hex);
        r->hdrs = curl_slist_append(r->hdrs, hdr);
    }
    r->hdrs = curl_slist_append(r->hdrs, "Expect:");
    json_decref(ev);
    json_decref(d);
    r->easy = curl_easy_init();
    if (!r->easy || !r->body || !r->data || !r->hdrs) {
        H->log(M, DRAY_LOG_ERROR, "notifier: out of memory preparing delivery %s", id);
        goto fail;
    }
    long tmo = (long)(pro__cfg.webhook_timeout_s * 1000);
    curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, tmo);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, tmo);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "dray-pro/" PRO_VERSION);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (curl_multi_add_handle(multi, r->easy) != CURLM_OK)
        goto fail;
    return r;
fail:
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->body);
    free(r->data);
    free(r);
    return NULL;
}

static void
req_free(CURLM *multi, req *r)
{
    curl_multi_remove_handle(multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->body);
    free(r->data);
    free(r);
}

typedef struct keys {
    char events[PRO_KEY_BYTES], due[PRO_KEY_BYTES], deliveries[PRO_KEY_BYTES];
    char failed[PRO_KEY_BYTES], flag[PRO_KEY_BYTES];
} keys;

/* A request ended: done, or retry later, or park it as failed. */
static void
finish(dray_ctx *ctx, const keys *k, req *r, CURLcode cc)
{
    long code = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    if (cc == CURLE_OK && code >= 200 && code < 300) {
        atomic_fetch_add(&pro__stats.webhooks_sent, 1);
        const char *argv[3] = {k->due, k->deliveries, r->id};
        redisReply *rep = NULL;
        if (pro__eval(ctx, s_done, &rep, 2, 3, argv))
            log_redis_trouble(ctx, "cannot mark a delivery done (it may be sent again)");
        if (rep)
            freeReplyObject(rep);
        return;
    }
    atomic_fetch_add(&pro__stats.webhooks_failed, 1);
    char err[512];
    if (cc != CURLE_OK)
        snprintf(err, sizeof err, "%s", curl_easy_strerror(cc));
    else
        snprintf(err, sizeof err, "HTTP %ld%s%s", code, r->resp_len ? ": " : "", r->resp);
    json_t *d = json_loads(r->data, 0, NULL);
    long long attempts = json_integer_value(json_object_get(d, "attempts")) + 1;
    json_object_set_new(d, "attempts", json_integer(attempts));
    json_object_set_new(d, "last_error", json_string(err));
    json_object_set_new(d, "last_attempt_at", json_real(H->now()));
    char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    int park = attempts >= pro__cfg.webhook_attempts;
    double delay = pro__cfg.webhook_backoff_s;
    for (long long i = 1; i < attempts && delay < MAX_BACKOFF_S; i++)
        delay *= 2;
    if (delay > MAX_BACKOFF_S)
        delay = MAX_BACKOFF_S;
    delay *= 1.0 + 0.2 * (double)randombytes_uniform(1000) / 1000.0; /* spread retries */
    char next[32], keep[32];
    pro__fmt_time(next, sizeof next, H->now() + delay);
    snprintf(keep, sizeof keep, "%lld", pro__cfg.webhook_keep_s);
    const char *argv[8] = {k->due, k->deliveries,    k->failed, r->id, data ? data : r->data,
                           next,   park ? "1" : "0", keep};
    redisReply *rep = NULL;
    if (pro__eval(ctx, s_retry, &rep, 3, 8, argv))
        log_redis_trouble(ctx,
                          "cannot reschedule a failed delivery (its lease will bring it back)");
    if (rep)
        freeReplyObject(rep);
    if (park)
        H->log(M, DRAY_LOG_ERROR,
               "webhook delivery %s to %s failed %lld times (%s); parked in pro:notify:failed",
               r->id, r->url, attempts, err);
    else
        H->log(M, DRAY_LOG_WARN,
               "webhook delivery %s to %s failed (%s), attempt %lld of %lld; "
               "retrying in %.1f s",
               r->id, r->url, err, attempts, pro__cfg.webhook_attempts, delay);
    free(data);
}

static void
fanout(dray_ctx *ctx, const keys *k)
{
    size_t argc = 5 + 2 * g_ntargets;
    const char **argv = calloc(argc + 3, sizeof *argv);
    if (!argv)
        return;
    char now[32], keep[32], seed[25];
    pro__fmt_time(now, sizeof now, H->now());
    snprintf(keep, sizeof keep, "%lld", pro__cfg.webhook_keep_s);
    pro__random_hex(seed, 24);
    argv[0] = k->events;
    argv[1] = k->due;
    argv[2] = k->deliveries;
    argv[3] = now;
    argv[4] = keep;
    argv[5] = seed;
    argv[6] = FANOUT_MAX;
    for (size_t i = 0; i < g_ntargets; i++) {
        argv[7 + 2 * i] = g_targets[i].url;
        argv[8 + 2 * i] = g_targets[i].format;
    }
    redisReply *r = NULL;
    if (pro__eval(ctx, s_fanout, &r, 3, (int)(argc + 2), argv))
        log_redis_trouble(ctx, "cannot read new events");
    if (r)
        freeReplyObject(r);
    free(argv);
}

/* Claim up to `room` due deliveries and start them. Returns how many. */
static int
claim(dray_ctx *ctx, const keys *k, CURLM *multi, req **inflight, int room)
{
    char now[32], until[32], max[16];
    double t = H->now();
    pro__fmt_time(now, sizeof now, t);
    pro__fmt_time(until, sizeof until, t + 2 * pro__cfg.webhook_timeout_s + 5);
    snprintf(max, sizeof max, "%d", room);
    const char *argv[5] = {k->due, k->deliveries, now, until, max};
    redisReply *r = NULL;
    int started = 0;
    if (pro__eval(ctx, s_claim, &r, 2, 5, argv)) {
        log_redis_trouble(ctx, "cannot claim due deliveries");
    } else if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            req *q = start_request(multi, r->element[i]->str, r->element[i + 1]->str,
                                   r->element[i + 1]->len);
            if (q) {
                q->next = *inflight;
                *inflight = q;
                started++;
            }
        }
    }
    if (r)
        freeReplyObject(r);
    return started;
}

static void *
notifier_main(void *arg)
{
    dray_ctx *ctx = arg;
    keys k;
    pro__key(ctx, k.events, sizeof k.events, "pro:notify:events");
    pro__key(ctx, k.due, sizeof k.due, "pro:notify:due");
    pro__key(ctx, k.deliveries, sizeof k.deliveries, "pro:notify:deliveries");
    pro__key(ctx, k.failed, sizeof k.failed, "pro:notify:failed");
    pro__key(ctx, k.flag, sizeof k.flag, "pro:notify:on");
    CURLM *multi = curl_multi_init();
    pthread_mutex_lock(&g_mu);
    g_multi = multi;
    pthread_mutex_unlock(&g_mu);
    req *inflight = NULL;
    int n = 0;
    double next_flag = 0, next_poll = 0;
    char keep[32];
    snprintf(keep, sizeof keep, "%lld", pro__cfg.webhook_keep_s);
    while (multi && !atomic_load(&g_stop)) {
        double now = H->now();
        if (now >= next_flag) {
            redisReply *r = NULL;
            if (H->redisf(ctx, &r, "SET %s %s EX " FLAG_TTL, k.flag, keep))
                log_redis_trouble(ctx, "cannot announce webhooks");
            else
                next_flag = now + FLAG_EVERY_S;
            if (r)
                freeReplyObject(r);
        }
        if (now >= next_poll) {
            fanout(ctx, &k);
            if (n < MAX_INFLIGHT)
                n += claim(ctx, &k, multi, &inflight, MAX_INFLIGHT - n);
            next_poll = now + pro__cfg.webhook_poll_s;
        }
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            req *r = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            CURLcode cc = msg->data.result;
            for (req **pp = &inflight; *pp; pp = &(*pp)->next)
                if (*pp == r) {
                    *pp = r->next;
                    break;
                }
            finish(ctx, &k, r, cc);
            req_free(multi, r);
            n--;
        }
        double wait = next_poll - H->now();
        int ms = wait > 0 ? (int)(wait * 1000) + 1 : 0;
        curl_multi_poll(multi, NULL, 0, ms > 1000 ? 1000 : ms, NULL);
    }
    /* Stopping: what is in flight stays claimed in Redis and is sent again
     * (by any process) when its lease ends. */
    while (inflight) {
        req *r = inflight;
        inflight = r->next;
        req_free(multi, r);
    }
    pthread_mutex_lock(&g_mu);
    g_multi = NULL;
    pthread_mutex_unlock(&g_mu);
    if (multi)
        curl_multi_cleanup(multi);
    H->ctx_close(ctx);
    return NULL;
}

static void
on_startup(dray_ctx *ctx, int point, void *ud)
{
    (void)point;
    (void)ud;
    /* Announce webhooks before any worker exists, so the first events are
     * recorded (the notifier thread refreshes this every minute). */
    char flag[PRO_KEY_BYTES];
    pro__key(ctx, flag, sizeof flag, "pro:notify:on");
    redisReply *r = NULL;
    if (H->redisf(ctx, &r, "SET %s %lld EX " FLAG_TTL, flag, pro__cfg.webhook_keep_s))
        H->log(M, DRAY_LOG_WARN, "cannot announce webhooks yet (%s); the notifier retries",
               H->redis_errstr(ctx));
    if (r)
        freeReplyObject(r);
    pthread_mutex_lock(&g_mu);
    g_users++;
    if (!g_started) {
        dray_ctx *own = NULL;
        int rc = H->ctx_open(ctx, &own);
        atomic_store(&g_stop, 0);
        if (!rc && (rc = pthread_create(&g_thread, NULL, notifier_main, own)) == 0) {
            g_started = 1;
            H->log(M, DRAY_LOG_INFO, "notifier started: %zu webhook target%s%s", g_ntargets,
                   g_ntargets == 1 ? "" : "s",
                   g_secret && *g_secret ? ", signed" : ", UNSIGNED (set pro.webhook_secret)");
        } else {
            H->ctx_close(own);
            H->log(M, DRAY_LOG_ERROR, "cannot start the notifier (%d); events wait in Redis", rc);
        }
    }
    pthread_mutex_unlock(&g_mu);
}

static void
on_shutdown(dray_ctx *ctx, int point, void *ud)
{
    (void)ctx;
    (void)point;
    (void)ud;
    pthread_mutex_lock(&g_mu);
    int last = --g_users <= 0;
    int join = last && g_started;
    if (join) {
        atomic_store(&g_stop, 1);
        if (g_multi)
            curl_multi_wakeup(g_multi);
        g_started = 0;
        g_users = 0;
    }
    pthread_mutex_unlock(&g_mu);
    if (join)
        pthread_join(g_thread, NULL);
}

int
pro__notify_init(void)
{
    int rc;
    if ((rc = H->config_each(M, "webhook_url", each_json, NULL)) ||
        (rc = H->config_each(M, "webhook_slack_url", each_slack, NULL)))
        return rc;
    if ((rc = H->config_str(M, "webhook_secret", NULL, &g_secret)) ||
        (rc = H->config_bool(M, "webhook_job_death", 1, &g_job_death)))
        return rc;
    pro__cfg.webhooks = g_ntargets > 0;
    if ((rc = pro__script(emit_lua, &s_emit)))
        return rc;
    if (g_job_death &&
        (rc = H->hook(M, DRAY_HOOK(.point = DRAY_HOOK_DEATH, .priority = DRAY_PRIO_LATE,
                                   .name = "notify", .death = on_death))))
        return H->set_error(M, "cannot register the notification death hook: %s", H->strerror(rc));
    if (!pro__cfg.webhooks)
        return 0; /* events are still recorded when another process has webhooks */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return H->set_error(M, "libcurl failed to initialise");
    if (!g_secret || !*g_secret)
        H->log(M, DRAY_LOG_WARN,
               "webhooks are not signed: set pro.webhook_secret so receivers can "
               "verify X-Dray-Signature");
    if ((rc = pro__script(fanout_lua, &s_fanout)) || (rc = pro__script(claim_lua, &s_claim)) ||
        (rc = pro__script(done_lua, &s_done)) || (rc = pro__script(retry_lua, &s_retry)))
        return rc;
    if ((rc = H->hook(
             M, DRAY_HOOK(.point = DRAY_HOOK_STARTUP, .name = "notifier", .event = on_startup))) ||
        (rc = H->hook(
             M, DRAY_HOOK(.point = DRAY_HOOK_SHUTDOWN, .name = "notifier", .event = on_shutdown))))
        return H->set_error(M, "cannot register notifier hooks: %s", H->strerror(rc));
    return 0;
}
