/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The failure path, as Sidekiq 6: retry fields, backoff, the retry set, the
 * dead set with its trims, error and death handlers. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sodium.h>

#include "server.h"

#define ERROR_MESSAGE_MAX 10000 /* Sidekiq truncates error_message here */

/* Sidekiq's default retry delay in seconds after failure count:
 * count^4 + 15 + rand(10) * (count + 1), capped at DRAY_BACKOFF_MAX_S. */
double
dray__backoff_default(int count)
{
    double c = count > 0 ? count : 0;
    double d = c * c * c * c + 15.0 + (double)(dray__rand32() % 10) * (c + 1.0);
    return d < DRAY_BACKOFF_MAX_S ? d : DRAY_BACKOFF_MAX_S;
}

/* Truncate to at most max bytes without splitting a UTF-8 sequence. */
static json_t *
truncated_string(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    json_t *v = json_stringn(s, n);
    return v ? v : json_string("(error message was not valid utf-8)");
}

/* Adds json (len bytes) to the dead set at now and trims it by age and size,
 * in one MULTI over c; 0 or c's error. */
int
dray__dead_add(dray__conn *c, const struct dray_server *s, const char *json, size_t len, double now)
{
    char score[32], cutoff[32], rank[32];
    snprintf(score, sizeof score, "%.6f", now);
    snprintf(cutoff, sizeof cutoff, "(%.6f", now - (double)s->opts.dead_timeout_s);
    /* keep at most dead_max_jobs members */
    snprintf(rank, sizeof rank, "%ld", -(s->opts.dead_max_jobs + 1));
    const char *zadd[4] = {"ZADD", s->k_dead, score, json};
    size_t zl[4] = {4, strlen(s->k_dead), strlen(score), len};
    const char *byscore[4] = {"ZREMRANGEBYSCORE", s->k_dead, "-inf", cutoff};
    const char *byrank[4] = {"ZREMRANGEBYRANK", s->k_dead, "0", rank};
    dray__pipe p;
    dray__pipe_init(&p, c);
    dray__pipe_begin(&p);
    dray__pipe_add(&p, 4, zadd, zl);
    dray__pipe_add(&p, 4, byscore, NULL);
    dray__pipe_add(&p, 4, byrank, NULL);
    dray__pipe_commit(&p);
    int rc = dray__pipe_run(&p);
    dray__pipe_close(&p);
    return rc;
}

/* Write json to the retry set (score > 0) or the dead set, retrying through
 * an outage for up to DRAY__WRITE_RETRY_S; if Redis will not take it, log
 * `keep` (the bytes that must not be lost: json itself, or the raw payload
 * json wraps) whole as lost. */
static void
record(dray__worker *w, const char *what, double score, const char *json, size_t len,
       const dray_job *job, const char *keep, size_t keeplen)
{
    struct dray_server *s = w->srv;
    double until = dray__write_deadline(s);
    for (int attempt = 1;; attempt++) {
        int rc;
        if (score > 0) {
            char sc[32];
            snprintf(sc, sizeof sc, "%.6f", score);
            const char *argv[4] = {"ZADD", s->k_retry, sc, json};
            size_t lens[4] = {4, strlen(s->k_retry), strlen(sc), len};
            rc = dray__conn_cmd(&w->conn, NULL, 4, argv, lens);
        } else {
            rc = dray__dead_add(&w->conn, s, json, len, dray_now());
        }
        if (!rc) {
            if (attempt > 1)
                dray__logj(DRAY_LOG_WARN, job ? dray_job_jid(job) : NULL,
                           job ? dray_job_class(job) : NULL, -1,
                           "recorded %s after %d attempts (redis was unavailable)", what, attempt);
            return;
        }
        char why[sizeof w->conn.errstr];
        snprintf(why, sizeof why, "%s", w->conn.errstr);
        if (!dray__write_again(&w->conn, rc, until))
            break;
        if (attempt == 1)
            dray__logj(DRAY_LOG_WARN, job ? dray_job_jid(job) : NULL,
                       job ? dray_job_class(job) : NULL, -1,
                       "cannot record %s yet (%s); retrying for up to %.0f s", what, why,
                       until - dray__mono());
    }
    dray__log_payload(DRAY_LOG_ERROR, job ? dray_job_jid(job) : NULL,
                      job ? dray_job_class(job) : NULL, keep, keeplen,
                      "job lost: its %s not recorded (%s)", what, w->conn.errstr);
}

/* The dead-set entry for a payload that is not a job: a Sidekiq job of the
 * reserved class whose only arg is the payload text (escaped, with the exact
 * bytes in payload_base64, when it is not UTF-8). New reference, or NULL. */
static json_t *
malformed_entry(const dray__unit *u, const char *reason)
{
    json_t *text = json_stringn(u->payload, u->len);
    json_t *b64 = NULL;
    if (!text) {
        size_t elen = dray__escape(u->payload, u->len, NULL);
        size_t blen = sodium_base64_ENCODED_LEN(u->len, sodium_base64_VARIANT_ORIGINAL);
        char *e = dray__malloc(elen + 1), *b = dray__malloc(blen);
        if (e && b) {
            dray__escape(u->payload, u->len, e);
            text = json_stringn(e, elen);
            sodium_bin2base64(b, blen, (const unsigned char *)u->payload, u->len,
                              sodium_base64_VARIANT_ORIGINAL);
            b64 = json_string(b);
        }
        dray__free(e);
        dray__free(b);
        if (!text || !b64) {
            json_decref(text);
            json_decref(b64);
            return NULL;
        }
    }
    char jid[DRAY_JID_BYTES];
    dray_jid_new(jid);
    double now = dray_now();
    json_t *o = json_pack("{s:s, s:s, s:[o], s:s, s:f, s:f, s:f, s:i, s:s, s:o}", "class",
                          DRAY__MALFORMED_CLASS, "queue", u->queue ? u->queue : "default", "args",
                          text, "jid", jid, "created_at", now, "enqueued_at", now, "failed_at", now,
                          "retry", 0, "error_class", DRAY__MALFORMED_ERROR, "error_message",
                          truncated_string(reason, ERROR_MESSAGE_MAX));
    if (o && b64 && json_object_set_new(o, "payload_base64", b64)) {
        json_decref(o);
        return NULL;
    }
    if (!o)
        json_decref(b64);
    return o;
}

/* Sends a payload that is not a job (u, borrowed) to the dead set wrapped as
 * the reserved malformed class with reason; logged whole if it cannot be stored. */
void
dray__dead_raw(dray__worker *w, const dray__unit *u, const char *reason)
{
    /* A payload that is not a job cannot be edited, so it is wrapped: the
     * Web UI and `dray dead list` then show why it died. */
    dray__log(DRAY_LOG_ERROR, "malformed job from queue %s sent to the dead set as %s: %s",
              u->queue, DRAY__MALFORMED_CLASS, reason);
    json_t *o = malformed_entry(u, reason);
    size_t len = 0;
    char *json = o ? dray__json_dump(o, &len) : NULL;
    json_decref(o);
    if (!json) {
        dray__log_payload(DRAY_LOG_ERROR, NULL, NULL, u->payload, u->len,
                          "out of memory wrapping a malformed job from queue %s", u->queue);
        return;
    }
    record(w, "malformed job", 0, json, len, NULL, u->payload, u->len);
    free(json);
}

/* Runs the death callbacks and module death hooks for job. */
static void
death(dray__worker *w, const dray_job *job, const char *ecls, const char *msg)
{
    struct dray_server *s = w->srv;
    for (size_t i = 0; i < s->non_death; i++)
        s->on_death[i].fn(job, ecls, msg, s->on_death[i].ud);
    dray__hooks_death(w, job, ecls, msg);
}

/* How many retries job (its object o) gets: the handler's options first,
 * then the job's "retry" field, then s's max_retries; -1 for none at all
 * ("retry": false: not even the dead set). */
static int
retry_max(const struct dray_server *s, const dray__handler *h, json_t *o)
{
    json_t *rv = json_object_get(o, "retry");
    if (h && h->opts.retry == DRAY_RETRY_NONE)
        return -1;
    if (h && h->opts.retry == DRAY_RETRY_ZERO)
        return 0;
    if (h && h->opts.retry > 0)
        return h->opts.retry;
    if (!rv || json_is_true(rv))
        return s->opts.max_retries;
    if (json_is_integer(rv)) /* 0 is truthy in Ruby: straight to dead */
        return json_integer_value(rv) > INT_MAX ? INT_MAX : (int)json_integer_value(rv);
    return -1;
}

/* Writes Sidekiq's failure fields into o (queue from retry_queue, error
 * message and class, retry_count, failed_at or retried_at at now); returns
 * the new retry_count. */
static int
failure_fields(const struct dray_server *s, const dray__handler *h, json_t *o, const char *ecls,
               const char *msg, double now)
{
    int ms = s->opts.timestamps_ms;
    const char *rq =
        h && h->retry_queue ? h->retry_queue : json_string_value(json_object_get(o, "retry_queue"));
    if (rq)
        json_object_set_new(o, "queue", json_string(rq));
    json_object_set_new(o, "error_message", truncated_string(msg, ERROR_MESSAGE_MAX));
    json_object_set_new(o, "error_class", json_string(ecls));
    int count;
    json_t *rc = json_object_get(o, "retry_count");
    if (json_is_integer(rc)) {
        /* Payloads come from anywhere: a negative count (Sidekiq's "retry
         * now" of count 0 leaves -1) restarts at 0, near INT_MAX saturates. */
        json_int_t prev = json_integer_value(rc);
        count = prev < 0 ? 0 : prev >= INT_MAX ? INT_MAX : (int)prev + 1;
        json_object_set_new(o, "retried_at", dray__time_json(ms, now));
    } else {
        count = 0;
        json_object_set_new(o, "failed_at", dray__time_json(ms, now));
    }
    json_object_set_new(o, "retry_count", json_integer(count));
    return count;
}

/* Whether a job at retry_count count (of max) is retried again; when not,
 * *why says so for the log. */
static bool
retry_due(const dray__handler *h, json_t *o, int count, int max, double now, const char **why)
{
    /* retry_for (Sidekiq 7.1+): retry while the first failure is younger
     * than this many seconds, whatever the count (8.x: exclusive with the
     * count); failed_at in either form, a job without one failed now. */
    double rf = h && h->opts.retry_for > 0 ? h->opts.retry_for : 0;
    json_t *rfv = json_object_get(o, "retry_for");
    if (!(rf > 0) && json_is_number(rfv) && json_number_value(rfv) > 0)
        rf = json_number_value(rfv);
    *why = "retries exhausted";
    if (rf > 0) {
        json_t *fa = json_object_get(o, "failed_at");
        double first = json_is_number(fa) ? dray_time_from_json(fa) : now;
        *why = "retry_for elapsed";
        return first + rf >= now;
    }
    return count < max;
}

/* Writes the failed job (json, len bytes) to the retry set at now + delay
 * (default backoff when delay < 0) or, when !retry, to the dead set unless
 * it opts out; runs the retry or death hooks. json stays the caller's. */
static void
failure_record(dray__worker *w, dray_job *job, const dray__handler *h, bool retry, double delay,
               int count, double now, const char *why, const char *ecls, const char *msg,
               const char *json, size_t len)
{
    if (retry) {
        if (!(delay >= 0)) /* also NaN */
            delay = dray__backoff_default(count);
        if (delay > DRAY_BACKOFF_MAX_S)
            delay = DRAY_BACKOFF_MAX_S;
        double at = now + delay;
        record(w, "retry", at, json, len, job, json, len);
        dray__hooks_retry(w, job, ecls, msg, count, at);
    } else {
        json_t *dv = json_object_get(job->obj, "dead");
        bool to_dead = !(h && h->opts.dead < 0) && !json_is_false(dv);
        dray__logj(DRAY_LOG_WARN, dray_job_jid(job), dray_job_class(job), -1, "%s (%d)%s", why,
                   count, to_dead ? "; moved to the dead set" : "");
        if (to_dead)
            record(w, "death", 0, json, len, job, json, len);
        death(w, job, ecls, msg);
    }
}

/* The failure path of job (owned by the caller; its object is updated): a
 * retry with backoff, the dead set, or discarded, as its handler h (may be
 * NULL) and its fields say. Never loses it: an unrecordable job is logged whole. */
void
dray__retry_or_die(dray__worker *w, dray_job *job, const dray__handler *h, const char *ecls,
                   const char *msg)
{
    struct dray_server *s = w->srv;
    json_t *o = job->obj;
    int max = retry_max(s, h, o);
    if (max < 0) {
        /* "retry": false: no retry and no dead set, death handlers only */
        dray__logj(DRAY_LOG_WARN, dray_job_jid(job), dray_job_class(job), -1,
                   "retry disabled; job discarded after failure");
        death(w, job, ecls, msg);
        return;
    }
    double now = dray_now();
    int count = failure_fields(s, h, o, ecls, msg, now);
    const char *why;
    bool retry = retry_due(h, o, count, max, now, &why);
    double delay = -1;
    if (retry && h && h->opts.backoff) {
        delay = h->opts.backoff(job, count, h->opts.backoff_userdata);
        if (delay == DRAY_BACKOFF_DISCARD) {
            /* Sidekiq's :discard: no retry, no dead set; death handlers run
             * (as 8.x; 7.x skips them) so the job is not dropped unseen */
            dray__logj(DRAY_LOG_WARN, dray_job_jid(job), dray_job_class(job), -1,
                       "discarded by its backoff after failure %d", count);
            json_object_set_new(o, "discarded_at",
                                dray__time_json(s->opts.timestamps_ms, now)); /* as 8.x */
            death(w, job, ecls, msg);
            return;
        }
        if (delay == DRAY_BACKOFF_KILL) {
            retry = false;
            why = "killed by its backoff";
        }
    }
    size_t len;
    char *json = dray__json_dump(o, &len);
    if (!json) {
        dray__log_payload(DRAY_LOG_ERROR, dray_job_jid(job), dray_job_class(job), job->payload,
                          job->payload ? job->payload_len : 0, "out of memory recording failure");
        return;
    }
    failure_record(w, job, h, retry, delay, count, now, why, ecls, msg, json, len);
    free(json);
}
