/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The producer: push, bulk push and schedule, through the client hook chain.
 * Immediate jobs: MULTI; SADD queues q; LPUSH queue:q json; EXEC, pipelined
 * (one round trip, all or nothing). Scheduled jobs: ZADD schedule at json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BULK_CHUNK 1000         /* jobs per MULTI block */
#define BULK_CHUNKS_IN_FLIGHT 8 /* chunks pipelined before reading replies */

struct dray_client {
    dray__redis_cfg cfg;
    dray__conn conn;
    size_t max_payload;
    int ts_ms; /* write Sidekiq 8's integer ms timestamps */
    char errstr[DRAY_ERRSTR_BYTES];
    char *queues_key; /* "<ns>queues" */
    char *schedule_key;
};

/* Defaults for every option (Sidekiq's where it has one). Cannot fail. */
void
dray_options_init(dray_options *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = 2000;
    o->command_timeout_ms = 5000;
    o->max_payload = DRAY_DEFAULT_MAX_PAYLOAD;
    o->concurrency = 10;
    o->shutdown_timeout_s = 25;
    o->max_retries = DRAY_DEFAULT_MAX_RETRIES;
    o->dead_max_jobs = 10000;
    o->dead_timeout_s = 180L * 24 * 3600;
    o->heartbeat_s = 5;
    o->log_level = DRAY_LOG_INFO;
}

/* A client on opts (NULL: defaults), connecting lazily. *out is the
 * caller's (dray_client_free); DRAY_EURL/DRAY_ETLS/DRAY_ENOMEM in errbuf. */
int
dray_client_new(const dray_options *opts, dray_client **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    dray_options dflt;
    if (!opts) {
        dray_options_init(&dflt);
        opts = &dflt;
    }
    dray_client *c = dray__calloc(1, sizeof *c);
    if (!c)
        return dray__err(errbuf, errlen, DRAY_ENOMEM, "out of memory");
    int rc = dray__redis_cfg_init(&c->cfg, opts, errbuf, errlen);
    if (rc) {
        dray__free(c);
        return rc;
    }
    c->max_payload = opts->max_payload ? opts->max_payload : DRAY_DEFAULT_MAX_PAYLOAD;
    c->ts_ms = opts->timestamps_ms ? 1 : 0;
    c->queues_key = dray__key(&c->cfg, "queues");
    c->schedule_key = dray__key(&c->cfg, "schedule");
    if (!c->queues_key || !c->schedule_key) {
        dray_client_free(c);
        return dray__err(errbuf, errlen, DRAY_ENOMEM, "out of memory");
    }
    dray__conn_init(&c->conn, &c->cfg);
    *out = c;
    return 0;
}

/* Close the link and free c. Accepts NULL. */
void
dray_client_free(dray_client *c)
{
    if (!c)
        return;
    dray__conn_close(&c->conn);
    dray__free(c->queues_key);
    dray__free(c->schedule_key);
    dray__redis_cfg_close(&c->cfg);
    dray__free(c);
}

/* The client's last error text (borrowed; never NULL). */
const char *
dray_client_errstr(const dray_client *c)
{
    return c->errstr;
}

/* Copy the connection's error text to the client. */
static int
conn_fail(dray_client *c, int rc)
{
    snprintf(c->errstr, sizeof c->errstr, "%s", c->conn.errstr);
    return rc;
}

/* Run time of a push: 0 for "now", else epoch seconds. */
static double
run_at(const dray_push_opts *o, double now)
{
    double t = 0;
    if (o && o->at > 0)
        t = o->at < 1e9 ? now + o->at : o->at; /* Sidekiq: small values are intervals */
    else if (o && o->in > 0)
        t = now + o->in;
    return t > now ? t : 0;
}

/* Apply per-call options to a job object. */
static int
apply_opts(dray_client *c, json_t *o, const dray_push_opts *po, bool keep_queue, double now)
{
    if (po && po->extra) {
        if (!json_is_object(po->extra))
            return DRAY__SET_ERR(c, DRAY_EFIELD, "push option 'extra' must be a json object");
        if (json_object_update(o, po->extra))
            return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    }
    const char *q = po && po->queue ? po->queue : NULL;
    if (!q && !(keep_queue && json_object_get(o, "queue")) && !json_object_get(o, "queue"))
        q = "default";
    if (q && json_object_set_new(o, "queue", json_string(q)))
        return DRAY__SET_ERR(c, DRAY_EQUEUE, "queue name is not valid utf-8");
    int retry = po ? po->retry : DRAY_RETRY_DEFAULT;
    if (retry == DRAY_RETRY_NONE)
        json_object_set_new(o, "retry", json_false());
    else if (retry == DRAY_RETRY_ZERO)
        json_object_set_new(o, "retry", json_integer(0));
    else if (retry > 0)
        json_object_set_new(o, "retry", json_integer(retry));
    else if (retry != DRAY_RETRY_DEFAULT)
        return DRAY__SET_ERR(c, DRAY_ERETRY,
                             "push option retry must be > 0 or a DRAY_RETRY_* constant");
    else if (!json_object_get(o, "retry"))
        json_object_set_new(o, "retry", json_true());
    json_t *ca = json_object_get(o, "created_at");
    if (!ca)
        json_object_set_new(o, "created_at", dray__time_json(c->ts_ms, now)); /* <= enqueued_at */
    else if (c->ts_ms && json_is_real(ca)) /* dray_job_new's seconds, in this fleet's form */
        json_object_set_new(o, "created_at", dray__time_json(1, dray_time_from_json(ca)));
    return 0;
}

/* Hooks, validation, timestamps and serialization of one job: *json is the
 * text to write (dray__free'd by the caller), or NULL if a hook dropped it. */
static int
prepare(dray_client *c, dray_job *job, double at, double now, char **json, size_t *len)
{
    *json = NULL;
    if (at > 0)
        json_object_set_new(job->obj, "at", json_real(at));
    /* Hooks whose push_wants says no would leave the job as it is. */
    int rc = !dray__hooks_push_wanted(&c->conn, job)
                 ? DRAY__PUSH_CONTINUE
                 : dray__hooks_push(&c->conn, job, c->errstr, sizeof c->errstr);
    if (rc < 0)
        return rc;
    if (rc == DRAY__PUSH_DROP)
        return 0;
    /* A hook may have scheduled or unscheduled the job. */
    json_t *atv = json_object_get(job->obj, "at");
    if (atv && dray_time_from_json(atv) <= now)
        json_object_del(job->obj, "at");
    if (json_object_get(job->obj, "at")) {
        json_object_del(job->obj, "enqueued_at");
    } else if (json_object_set_new(job->obj, "enqueued_at", dray__time_json(c->ts_ms, now))) {
        return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    }
    rc = dray__job_check_fields(job, c->errstr, sizeof c->errstr);
    if (rc)
        return rc;
    /* "at" travels as the zset score, not in the payload. */
    json_t *sched = json_object_get(job->obj, "at");
    double score = sched ? dray_time_from_json(sched) : 0;
    if (sched) {
        json_incref(sched);
        json_object_del(job->obj, "at");
    }
    *json = dray__json_dump(job->obj, len);
    if (sched) {
        /* leave the caller's job showing where it went */
        json_object_set_new(job->obj, "at", sched);
    }
    DRAY__UNUSED(score);
    if (!*json)
        return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    if (*len > c->max_payload) {
        free(*json);
        *json = NULL;
        return DRAY__SET_ERR(c, DRAY_ETOOBIG, "job payload is %zu bytes; the limit is %zu", *len,
                             c->max_payload);
    }
    return 0;
}

/* Write one immediate job: MULTI SADD LPUSH EXEC in one round trip. */
static int
write_now(dray_client *c, const char *queue, const char *json, size_t len)
{
    dray__buf key;
    dray__buf_init(&key);
    dray__key_buf(&key, &c->cfg, "queue:");
    dray__buf_adds(&key, queue);
    if (key.oom) {
        dray__buf_close(&key);
        return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    }
    const char *sadd[3] = {"SADD", c->queues_key, queue};
    const char *lpush[3] = {"LPUSH", key.p, json};
    size_t lpushl[3] = {5, key.len, len};
    dray__pipe p;
    dray__pipe_init(&p, &c->conn);
    dray__pipe_begin(&p);
    dray__pipe_add(&p, 3, sadd, NULL);
    dray__pipe_add(&p, 3, lpush, lpushl);
    dray__pipe_commit(&p);
    int rc = dray__pipe_run(&p);
    if (rc)
        conn_fail(c, rc);
    dray__pipe_close(&p);
    dray__buf_close(&key);
    return rc;
}

/* ZADD the payload json (len bytes) to the schedule set at epoch at, in
 * one round trip; the link's error with its text on c. */
static int
write_sched(dray_client *c, double at, const char *json, size_t len)
{
    char score[32];
    int sl = snprintf(score, sizeof score, "%.6f", at);
    const char *argv[4] = {"ZADD", c->schedule_key, score, json};
    size_t lens[4] = {4, strlen(c->schedule_key), (size_t)sl, len};
    dray__pipe p;
    dray__pipe_init(&p, &c->conn);
    dray__pipe_add(&p, 4, argv, lens);
    int rc = dray__pipe_run(&p);
    dray__pipe_close(&p);
    return rc ? conn_fail(c, rc) : 0;
}

/* Write with one retry when the link failed before the whole command was
 * sent (a MULTI block without its EXEC never runs, a half-sent ZADD is never
 * read): then nothing was written and a second try cannot duplicate. After
 * a complete send the outcome is unknown (DRAY_EUNSURE) and there is no
 * retry, so a job is never written twice. Idle links the server closed are
 * replaced before sending (dray__pipe_init). */
static int
write_job(dray_client *c, dray_job *job, const char *json, size_t len)
{
    json_t *atv = json_object_get(job->obj, "at");
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = atv ? write_sched(c, dray_time_from_json(atv), json, len)
                 : write_now(c, dray_job_queue(job), json, len);
        if (rc != DRAY_ECONN)
            break;
    }
    if (rc == DRAY_EUNSURE) {
        char why[DRAY_ERRSTR_BYTES];
        snprintf(why, sizeof why, "%s", c->conn.errstr);
        DRAY__SET_ERR(c, rc, "jid %s may have been written (once, never twice): %s",
                      dray_job_jid(job), why);
    }
    return rc;
}

/* Copy a jid into a DRAY_JID_BYTES buffer. A jid from elsewhere (a parsed
 * job, a hook) may be any length; a longer one is cut, never overrun. */
static void
jid_copy(char *out, const char *jid)
{
    snprintf(out, DRAY_JID_BYTES, "%s", jid);
}

/* Push a caller-owned job: jid, opts and "at" applied to it, then
 * hooks, validation and one write. DRAY_EDROPPED when a hook dropped it. */
int
dray_client_push_job(dray_client *c, dray_job *job, const dray_push_opts *opts)
{
    c->errstr[0] = '\0';
    double now = dray_now();
    if (!json_object_get(job->obj, "jid")) {
        char jid[DRAY_JID_BYTES];
        dray_jid_new(jid);
        json_object_set_new(job->obj, "jid", json_string(jid));
    }
    int rc = apply_opts(c, job->obj, opts, true, now);
    if (rc)
        return rc;
    double at = run_at(opts, now);
    json_t *own_at = json_object_get(job->obj, "at");
    if (!at && own_at && dray_time_from_json(own_at) > now)
        at = dray_time_from_json(own_at);
    json_object_del(job->obj, "at");
    char *json;
    size_t len;
    rc = prepare(c, job, at, now, &json, &len);
    if (rc)
        return rc;
    if (!json)
        return DRAY__SET_ERR(c, DRAY_EDROPPED, "push of %s dropped by a client hook",
                             dray_job_class(job));
    rc = write_job(c, job, json, len);
    free(json);
    return rc;
}

/* Build a job of klass with args (borrowed) and push it; the jid goes to
 * jid_out (may be NULL) on success. */
int
dray_client_push(dray_client *c, const char *klass, json_t *args, const dray_push_opts *opts,
                 char *jid_out)
{
    c->errstr[0] = '\0';
    if (!klass || !*klass)
        return DRAY__SET_ERR(c, DRAY_ECLASS, "job class is missing or empty");
    if (!json_is_array(args))
        return DRAY__SET_ERR(c, DRAY_EARGS, "job args must be a json array");
    dray_job *job;
    int rc = dray_job_new(klass, json_incref(args), &job);
    if (rc)
        return DRAY__SET_ERR(c, rc, "cannot build job of class '%s': %s", klass, dray_strerror(rc));
    rc = dray_client_push_job(c, job, opts);
    if (!rc && jid_out)
        jid_copy(jid_out, dray_job_jid(job));
    dray_job_free(job);
    return rc;
}

/* One bulk chunk: either MULTI/SADD/LPUSH.../EXEC or one ZADD. */
typedef struct chunk {
    dray__buf key;     /* queue:<q> (immediate) */
    const char **argv; /* command argv being built */
    size_t *lens;
    char **owned; /* json strings to free */
    char (*scores)[32];
    int n; /* jobs in the chunk */
} chunk;

/* json_dump_callback sink into a dray__buf; -1 once it ran out of memory. */
static int
buf_dump_cb(const char *buffer, size_t size, void *data)
{
    dray__buf_add(data, buffer, size);
    return ((dray__buf *)data)->oom ? -1 : 0;
}

/* Render one bulk job from the shared head into the chunk. */
static int
render_fast(dray_client *c, const dray__buf *head, dray__buf *one, const char *jid, json_t *args,
            size_t index, const char *score, chunk *ch)
{
    dray__buf_reset(one);
    dray__buf_add(one, head->p, head->len);
    dray__buf_add(one, ",\"jid\":\"", 8);
    dray__buf_add(one, jid, DRAY_JID_LEN);
    dray__buf_add(one, "\",\"args\":", 9);
    if (json_dump_callback(args, buf_dump_cb, one, JSON_COMPACT) || one->oom)
        return DRAY__SET_ERR(c, DRAY_ENOMEM, "bulk args[%zu] cannot be serialized", index);
    dray__buf_add(one, "}", 1);
    if (one->len > c->max_payload)
        return DRAY__SET_ERR(c, DRAY_ETOOBIG, "bulk job %zu is %zu bytes; the limit is %zu", index,
                             one->len, c->max_payload);
    char *json = dray__strndup(one->p, one->len);
    if (!json || one->oom)
        return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    ch->argv[2 + 2 * ch->n] = score;
    ch->lens[2 + 2 * ch->n] = strlen(score);
    ch->argv[2 + 2 * ch->n + 1] = json;
    ch->lens[2 + 2 * ch->n + 1] = one->len;
    ch->owned[ch->n++] = json;
    return 0;
}

/* One bulk push in progress: the shared template, the chunk being filled
 * and the round trip being built. Everything in it is owned by it. */
typedef struct bulk {
    dray_client *c;                             /* borrowed */
    json_t *args_list;                          /* borrowed array of args arrays */
    size_t n;                                   /* jobs asked for */
    char *jids_out;                             /* borrowed, or NULL */
    double now, at;                             /* the push's time; at > 0: to the schedule set */
    json_t *tmpl;                               /* the object every job starts from */
    const char *queue;                          /* its queue (borrowed from tmpl) */
    chunk ch;                                   /* the chunk being filled */
    dray__buf fast;                             /* fast path head (no hook wants the push),
                                                   or empty: every job takes the hooks */
    dray__buf one;                              /* scratch for one rendered job */
    char score[32];                             /* at, as ZADD writes it */
    dray__pipe pipe;                            /* the round trip being built, while piping */
    bool piping;                                /* pipe is initialised */
    int inflight;                               /* chunks appended to pipe */
    size_t inflight_n[BULK_CHUNKS_IN_FLIGHT];   /* jobs of each */
    size_t inflight_cmd[BULK_CHUNKS_IN_FLIGHT]; /* index of its deciding reply */
    size_t done;                                /* jobs Redis took */
} bulk;

/* 0 when klass and every element of args_list can make a job; else
 * DRAY_ECLASS or DRAY_EARGS with the text on c, before anything is built. */
static int
bulk_check(dray_client *c, const char *klass, json_t *args_list)
{
    if (!klass || !*klass)
        return DRAY__SET_ERR(c, DRAY_ECLASS, "job class is missing or empty");
    if (!json_is_array(args_list))
        return DRAY__SET_ERR(c, DRAY_EARGS, "bulk args must be a json array of args arrays");
    size_t n = json_array_size(args_list);
    for (size_t i = 0; i < n; i++)
        if (!json_is_array(json_array_get(args_list, i)))
            return DRAY__SET_ERR(c, DRAY_EARGS, "bulk args[%zu] must be a json array", i);
    return 0;
}

/* Zero b and set what needs no allocation, so bulk_close is always safe.
 * Cannot fail. */
static void
bulk_init(bulk *b, dray_client *c, json_t *args_list, const dray_push_opts *opts, char *jids_out)
{
    memset(b, 0, sizeof *b);
    b->c = c;
    b->args_list = args_list;
    b->n = json_array_size(args_list);
    b->jids_out = jids_out;
    b->now = dray_now();
    b->at = run_at(opts, b->now);
    dray__buf_init(&b->ch.key);
    dray__buf_init(&b->fast);
    dray__buf_init(&b->one);
    snprintf(b->score, sizeof b->score, "%.6f", b->at);
}

/* The template job (class, empty args, opts applied) and its checked
 * queue. DRAY_ENOMEM/DRAY_EUTF8 or apply_opts's and the queue check's
 * codes, with the text on c. */
static int
bulk_template(bulk *b, const char *klass, const dray_push_opts *opts)
{
    dray_client *c = b->c;
    json_t *kv = json_string(klass);
    b->tmpl = json_object();
    if (!b->tmpl || !kv) {
        json_decref(kv);
        return DRAY__SET_ERR(c, kv ? DRAY_ENOMEM : DRAY_EUTF8, "cannot build job of class '%s'",
                             klass);
    }
    json_object_set_new(b->tmpl, "class", kv);
    json_object_set_new(b->tmpl, "args", json_array());
    int rc = apply_opts(c, b->tmpl, opts, false, b->now);
    if (rc)
        return rc;
    b->queue = json_string_value(json_object_get(b->tmpl, "queue"));
    return dray__queue_check(b->queue, c->errstr, sizeof c->errstr);
}

/* The chunk's queue key and its argv/lens/owned/scores arrays, sized for
 * BULK_CHUNK jobs. DRAY_ENOMEM with the text on c. */
static int
bulk_alloc(bulk *b)
{
    chunk *ch = &b->ch;
    dray__key_buf(&ch->key, &b->c->cfg, "queue:");
    dray__buf_adds(&ch->key, b->queue);
    size_t maxargs = 2 + 2 * BULK_CHUNK;
    ch->argv = dray__malloc(sizeof *ch->argv * maxargs);
    ch->lens = dray__malloc(sizeof *ch->lens * maxargs);
    ch->owned = dray__calloc(BULK_CHUNK, sizeof *ch->owned);
    ch->scores = dray__malloc(sizeof *ch->scores * BULK_CHUNK);
    if (!ch->argv || !ch->lens || !ch->owned || !ch->scores || ch->key.oom)
        return DRAY__SET_ERR(b->c, DRAY_ENOMEM, "out of memory");
    return 0;
}

/* Fast path head, for a push no hook can change: the template serialized
 * once without its closing brace, validated once like a whole job. Errors
 * are dray_job_validate's or DRAY_ENOMEM, with the text on c. */
static int
bulk_fast_head(bulk *b)
{
    dray_client *c = b->c;
    json_t *head = json_copy(b->tmpl);
    if (head && b->at <= 0)
        json_object_set_new(head, "enqueued_at", dray__time_json(c->ts_ms, b->now));
    json_object_set_new(head, "jid", json_string("000000000000000000000000"));
    dray_job *hj = head ? dray__job_wrap(head) : NULL;
    int rc = hj ? dray_job_validate(hj, c->max_payload, c->errstr, sizeof c->errstr)
                : DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    if (!rc) {
        json_object_del(head, "jid");
        json_object_del(head, "args");
        size_t hl;
        char *hs = dray__json_dump(head, &hl);
        if (hs && hl > 2)
            dray__buf_add(&b->fast, hs, hl - 1);
        free(hs);
        if (!b->fast.p || b->fast.oom)
            rc = DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    }
    dray_job_free(hj);
    return rc;
}

/* Whether some push hook must see the jobs of this bulk: asked once, with
 * the template as the hooks would see it (class, queue, options, "at"),
 * since every job of a bulk differs only in args and jid. true when the
 * question cannot be asked (out of memory): the hooks then decide. */
static bool
bulk_hooks_wanted(bulk *b)
{
    if (dray__hooks_push_empty())
        return false;
    json_t *view = json_copy(b->tmpl);
    if (view && b->at > 0)
        json_object_set_new(view, "at", json_real(b->at));
    dray_job *vj = view ? dray__job_wrap(view) : NULL;
    bool wanted = !vj || dray__hooks_push_wanted(&b->c->conn, vj);
    dray_job_free(vj);
    return wanted;
}

/* Append the full chunk to the round trip (ZADD, or MULTI SADD LPUSH EXEC),
 * free its payloads and remember which reply says it was written. Errors
 * are sticky in the pipe and come out of its run. */
static void
bulk_append_chunk(bulk *b)
{
    dray_client *c = b->c;
    chunk *ch = &b->ch;
    if (!b->piping) {
        dray__pipe_init(&b->pipe, &c->conn);
        b->piping = true;
    }
    if (b->at > 0) {
        ch->argv[0] = "ZADD";
        ch->lens[0] = 4;
        ch->argv[1] = c->schedule_key;
        ch->lens[1] = strlen(c->schedule_key);
        dray__pipe_add(&b->pipe, 2 + 2 * ch->n, ch->argv, ch->lens);
    } else {
        const char *sadd[3] = {"SADD", c->queues_key, b->queue};
        ch->argv[0] = "LPUSH";
        ch->lens[0] = 5;
        ch->argv[1] = ch->key.p;
        ch->lens[1] = ch->key.len;
        /* LPUSH argv holds only json values: compact the pairs */
        for (int k = 0; k < ch->n; k++) {
            ch->argv[2 + k] = ch->argv[2 + 2 * k + 1];
            ch->lens[2 + k] = ch->lens[2 + 2 * k + 1];
        }
        dray__pipe_begin(&b->pipe);
        dray__pipe_add(&b->pipe, 3, sadd, NULL);
        dray__pipe_add(&b->pipe, 2 + ch->n, ch->argv, ch->lens);
        dray__pipe_commit(&b->pipe);
    }
    for (int k = 0; k < ch->n; k++) {
        free(ch->owned[k]);
        ch->owned[k] = NULL;
    }
    b->inflight_cmd[b->inflight] = b->pipe.n ? b->pipe.n - 1 : 0;
    b->inflight_n[b->inflight++] = (size_t)ch->n;
    ch->n = 0;
}

/* Run the round trip and count into done every chunk Redis took (an
 * immediate chunk is in Redis iff EXEC's LPUSH answered). 0, or the pipe's
 * error with the connection's text on c. */
static int
bulk_round_trip(bulk *b)
{
    int prc = dray__pipe_run(&b->pipe);
    for (int k = 0; k < b->inflight; k++) {
        const redisReply *r = dray__pipe_reply(&b->pipe, b->inflight_cmd[k]);
        bool written = b->at > 0 ? r && r->type == REDIS_REPLY_INTEGER
                                 : r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                                       r->element[1]->type == REDIS_REPLY_INTEGER;
        if (written)
            b->done += b->inflight_n[k];
    }
    dray__pipe_close(&b->pipe);
    b->piping = false;
    b->inflight = 0;
    return prc ? conn_fail(b->c, prc) : 0;
}

/* Render job i through the client path (hooks, validation) into the chunk;
 * a job a hook dropped gets an all-zero jid. 0, or the refusal with the
 * text on c. */
static int
bulk_add_slow(bulk *b, size_t i, const char *jid)
{
    dray_client *c = b->c;
    chunk *ch = &b->ch;
    json_t *o = json_copy(b->tmpl);
    dray_job *job = o ? dray__job_wrap(o) : NULL;
    if (!job)
        return DRAY__SET_ERR(c, DRAY_ENOMEM, "out of memory");
    json_object_set(o, "args", json_array_get(b->args_list, i));
    json_object_set_new(o, "jid", json_string(jid));
    char *json;
    size_t len;
    int rc = prepare(c, job, b->at, b->now, &json, &len);
    if (!rc && json) {
        if (b->jids_out)
            jid_copy(b->jids_out + i * DRAY_JID_BYTES, dray_job_jid(job));
        snprintf(ch->scores[ch->n], sizeof ch->scores[ch->n], "%.6f", b->at);
        ch->argv[2 + 2 * ch->n] = ch->scores[ch->n];
        ch->lens[2 + 2 * ch->n] = strlen(ch->scores[ch->n]);
        ch->argv[2 + 2 * ch->n + 1] = json;
        ch->lens[2 + 2 * ch->n + 1] = len;
        ch->owned[ch->n++] = json;
    } else if (!rc && b->jids_out) {
        memset(b->jids_out + i * DRAY_JID_BYTES, 0, DRAY_JID_BYTES);
    }
    dray_job_free(job);
    return rc;
}

/* Add job i (a new jid, args i) to the chunk: the shared head plus jid and
 * args when no hook runs, else the whole client path. 0 or the refusal. */
static int
bulk_add_job(bulk *b, size_t i)
{
    char jid[DRAY_JID_BYTES];
    dray_jid_new(jid);
    if (!b->fast.p)
        return bulk_add_slow(b, i, jid);
    int rc = render_fast(b->c, &b->fast, &b->one, jid, json_array_get(b->args_list, i), i, b->score,
                         &b->ch);
    if (!rc && b->jids_out)
        memcpy(b->jids_out + i * DRAY_JID_BYTES, jid, DRAY_JID_BYTES);
    return rc;
}

/* Every job into chunks, every BULK_CHUNKS_IN_FLIGHT chunks (or at the end,
 * or at once while hooks may use the link) one round trip. A refused job
 * stops the call: what was buffered with it is never sent, so the written
 * jobs are the first b->done. Returns the link's error, else the refusal. */
static int
bulk_send_all(bulk *b)
{
    int rc = 0, jobrc = 0;
    for (size_t i = 0;; i++) {
        if (jobrc) {
            if (b->piping)
                dray__pipe_discard(&b->pipe);
            b->piping = false;
            break;
        }
        bool last = i >= b->n;
        if (b->ch.n == BULK_CHUNK || (last && b->ch.n > 0))
            bulk_append_chunk(b);
        /* Push hooks may use the connection while the next jobs are
         * prepared: then no command may be left buffered or unread. */
        if (b->piping && (b->inflight == BULK_CHUNKS_IN_FLIGHT || last || !b->fast.p)) {
            if ((rc = bulk_round_trip(b)))
                break;
        }
        if (last)
            break;
        jobrc = bulk_add_job(b, i);
    }
    return rc ? rc : jobrc;
}

/* Free everything b owns (payloads not yet sent included). Cannot fail. */
static void
bulk_close(bulk *b)
{
    chunk *ch = &b->ch;
    dray__buf_close(&b->fast);
    dray__buf_close(&b->one);
    if (ch->owned)
        for (int k = 0; k < ch->n; k++)
            free(ch->owned[k]);
    dray__free(ch->argv);
    dray__free(ch->lens);
    dray__free(ch->owned);
    dray__free(ch->scores);
    dray__buf_close(&ch->key);
    json_decref(b->tmpl);
}

/* n jobs of klass in chunks (see dray.h for what *pushed counts on
 * each failure); the steps are the bulk_* functions above. */
int
dray_client_push_bulk(dray_client *c, const char *klass, json_t *args_list,
                      const dray_push_opts *opts, char *jids_out, size_t *pushed)
{
    if (pushed)
        *pushed = 0;
    c->errstr[0] = '\0';
    int rc = bulk_check(c, klass, args_list);
    if (rc)
        return rc;
    bulk b;
    bulk_init(&b, c, args_list, opts, jids_out);
    rc = bulk_template(&b, klass, opts);
    if (!rc)
        rc = bulk_alloc(&b);
    if (!rc && !bulk_hooks_wanted(&b))
        rc = bulk_fast_head(&b);
    if (!rc) {
        rc = bulk_send_all(&b);
        if (pushed)
            *pushed = b.done;
    }
    bulk_close(&b);
    return rc;
}

/* A client that borrows conn (and its configuration) for one push: the
 * normal path, hooks included, for modules (host->enqueue). The link is
 * handed back, reconnected or dropped, as the push left it. */
int
dray__client_push_conn(dray__conn *conn, size_t max_payload, dray_job *job,
                       const dray_push_opts *opts, char *errbuf, size_t errlen)
{
    dray_client c;
    memset(&c, 0, sizeof c);
    c.cfg = *conn->cfg; /* shallow: the strings stay the owner's, never closed here */
    c.conn = *conn;
    c.max_payload = max_payload ? max_payload : DRAY_DEFAULT_MAX_PAYLOAD;
    c.queues_key = dray__key(conn->cfg, "queues");
    c.schedule_key = dray__key(conn->cfg, "schedule");
    int rc = c.queues_key && c.schedule_key ? dray_client_push_job(&c, job, opts)
                                            : DRAY__SET_ERR(&c, DRAY_ENOMEM, "out of memory");
    *conn = c.conn;
    dray__free(c.queues_key);
    dray__free(c.schedule_key);
    if (rc)
        dray__err(errbuf, errlen, rc, "%s", c.errstr);
    return rc;
}
