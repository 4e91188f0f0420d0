/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* The sorted job sets (retry, schedule, dead), as Sidekiq's SortedSet and
 * SortedEntry: size, pages, find by jid, and retry/delete/kill. Every move
 * between keys is one Lua script whose ZREM decides ownership, and a member
 * is never rewritten while it stays in a set (deletes by value must keep
 * working). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

#define SCAN_COUNT "1000" /* ZSCAN batch: few round trips, short Redis pauses */
#define MOVE_ATTEMPTS 3   /* a member that vanished between find and move */

static const char *const set_names[] = {"retry", "schedule", "dead"};

/* KEYS: set, queues, queue:<q>; ARGV: member, new payload, queue name. */
static dray__script retry_script = {
    .src = "if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
           "redis.call('SADD', KEYS[2], ARGV[3])\n"
           "redis.call('LPUSH', KEYS[3], ARGV[2])\n"
           "return 1\n",
};

/* KEYS: set, dead; ARGV: member, score, cutoff (exclusive), rank. */
static dray__script kill_script = {
    .src = "if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
           "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
           "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])\n"
           "redis.call('ZREMRANGEBYRANK', KEYS[2], 0, ARGV[4])\n"
           "return 1\n",
};

/* Key name of set without namespace (static), or NULL when set is invalid. */
const char *
dray_set_name(dray_set set)
{
    return (unsigned)set < 3 ? set_names[set] : NULL;
}

/* Name (Sidekiq's spellings too) to set; DRAY_EINVAL for anything else. */
int
dray_set_parse(const char *name, dray_set *out)
{
    if (!name)
        return DRAY_EINVAL;
    if (!strcmp(name, "retry") || !strcmp(name, "retries"))
        *out = DRAY_SET_RETRY;
    else if (!strcmp(name, "schedule") || !strcmp(name, "scheduled"))
        *out = DRAY_SET_SCHEDULE;
    else if (!strcmp(name, "dead") || !strcmp(name, "morgue"))
        *out = DRAY_SET_DEAD;
    else
        return DRAY_EINVAL;
    return 0;
}

/* ---- job sets --------------------------------------------------------------- */

/* 0 when set is one of the three, else DRAY_EINVAL with the text on a. */
static int
check_set(dray_api *a, dray_set set)
{
    return dray_set_name(set) ? 0 : DRAY__SET_ERR(a, DRAY_EINVAL, "no such job set (%d)", (int)set);
}

/* Start a call that names a member by jid: clear the error text, then
 * check set and jid (DRAY_EINVAL with the text on a). */
static int
check_set_jid(dray_api *a, dray_set set, const char *jid)
{
    a->errstr[0] = '\0';
    int rc = check_set(a, set);
    if (rc)
        return rc;
    if (!jid || !*jid)
        return DRAY__SET_ERR(a, DRAY_EINVAL, "jid is empty");
    return 0;
}

/* The namespaced key of a valid set: a new string (dray__free); NULL on OOM. */
static char *
set_key(dray_api *a, dray_set set)
{
    return dray__key(&a->cfg, set_names[set]);
}

/* Free what e owns and zero it (e itself is the caller's). Cannot fail. */
static void
entry_clear(dray_set_entry *e)
{
    dray__free(e->member);
    dray__free(e->jid);
    dray__free(e->klass);
    dray__free(e->queue);
    dray__free(e->error_class);
    dray__free(e->error_message);
    memset(e, 0, sizeof *e);
}

/* Free n entries and the array. Accepts NULL. */
void
dray_api_entries_free(dray_set_entry *e, size_t n)
{
    if (!e)
        return;
    for (size_t i = 0; i < n; i++)
        entry_clear(&e[i]);
    dray__free(e);
}

/* Copy a string field of o, or NULL when absent; *oom set on failure. */
static char *
field(const json_t *o, const char *name, int *oom)
{
    const char *s = json_string_value(json_object_get(o, name));
    if (!s)
        return NULL;
    char *d = dray__strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

/* Fill e (zeroed first) from member m of len bytes scored score; e owns
 * copies (entry_clear). A member that is not a JSON object keeps only
 * member and score. 0, or DRAY_ENOMEM with e partly filled. */
static int
entry_fill(dray_set_entry *e, const char *m, size_t len, double score)
{
    memset(e, 0, sizeof *e);
    e->score = score;
    e->retry_count = -1;
    e->member = dray__strndup(m, len);
    if (!e->member)
        return DRAY_ENOMEM;
    e->member_len = len;
    json_t *o = dray__json_load(m, len, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    int oom = 0;
    e->jid = field(o, "jid", &oom);
    e->klass = field(o, "class", &oom);
    e->queue = field(o, "queue", &oom);
    e->error_class = field(o, "error_class", &oom);
    e->error_message = field(o, "error_message", &oom);
    json_t *rc = json_object_get(o, "retry_count");
    if (json_is_integer(rc))
        e->retry_count = (int)json_integer_value(rc);
    e->created_at = dray_time_from_json(json_object_get(o, "created_at"));
    e->enqueued_at = dray_time_from_json(json_object_get(o, "enqueued_at"));
    e->failed_at = dray_time_from_json(json_object_get(o, "failed_at"));
    e->retried_at = dray_time_from_json(json_object_get(o, "retried_at"));
    json_decref(o);
    return oom ? DRAY_ENOMEM : 0;
}

/* ZCARD of set into *out (0 on error). */
int
dray_api_set_size(dray_api *a, dray_set set, long long *out)
{
    *out = 0;
    a->errstr[0] = '\0';
    int rc = check_set(a, set);
    if (rc)
        return rc;
    redisReply *r;
    rc = dray__conn_cmdf(&a->conn, &r, "ZCARD %s%s", a->cfg.ns, set_names[set]);
    if (rc)
        return dray__api_cmd_fail(a, r, rc);
    *out = dray__api_reply_ll(r);
    freeReplyObject(r);
    return 0;
}

/* One page of set, dead newest first, others by score; *out is the
 * caller's (dray_api_entries_free), NULL with *n 0 when the page is empty. */
int
dray_api_set_list(dray_api *a, dray_set set, size_t offset, size_t limit, dray_set_entry **out,
                  size_t *n)
{
    *out = NULL;
    *n = 0;
    a->errstr[0] = '\0';
    int rc = check_set(a, set);
    if (rc)
        return rc;
    char start[24], stop[24];
    snprintf(start, sizeof start, "%zu", offset);
    if (limit)
        snprintf(stop, sizeof stop, "%zu", offset + limit - 1);
    else
        snprintf(stop, sizeof stop, "-1");
    redisReply *r;
    rc = dray__conn_cmdf(&a->conn, &r, "%s %s%s %s %s WITHSCORES",
                         set == DRAY_SET_DEAD ? "ZREVRANGE" : "ZRANGE", a->cfg.ns, set_names[set],
                         start, stop);
    if (rc)
        return dray__api_cmd_fail(a, r, rc);
    size_t count = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    if (count == 0) {
        freeReplyObject(r);
        return 0;
    }
    dray_set_entry *e = dray__calloc(count, sizeof *e);
    if (!e) {
        freeReplyObject(r);
        return DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < count && !rc; i++) {
        const redisReply *m = r->element[2 * i], *s = r->element[2 * i + 1];
        rc =
            entry_fill(&e[i], m->str ? m->str : "", m->str ? m->len : 0, dray__api_reply_double(s));
    }
    freeReplyObject(r);
    if (rc) {
        dray_api_entries_free(e, count);
        return DRAY__SET_ERR(a, rc, "out of memory");
    }
    *out = e;
    *n = count;
    return 0;
}

/* "*<jid>*" with the glob characters of jid escaped (a ZSCAN MATCH pattern that
 * finds members holding jid); malloc'ed, NULL on out of memory. */
char *
dray__jid_glob(const char *jid)
{
    dray__buf b;
    dray__buf_init(&b);
    dray__buf_adds(&b, "*");
    for (const char *p = jid; *p; p++) {
        if (strchr("*?[]\\", *p))
            dray__buf_add(&b, "\\", 1);
        dray__buf_add(&b, p, 1);
    }
    dray__buf_adds(&b, "*");
    if (b.oom) {
        dray__buf_close(&b);
        return NULL;
    }
    return b.p;
}

/* True when the JSON job m[0..len) has "jid" equal to jid (bytes not holding
 * jid at all are refused without parsing). */
bool
dray__member_has_jid(const char *m, size_t len, const char *jid)
{
    if (!memmem(m, len, jid, strlen(jid)))
        return false; /* cheap filter before parsing */
    json_t *o = dray__json_load(m, len, NULL);
    const char *j = json_string_value(json_object_get(o, "jid"));
    bool same = j && !strcmp(j, jid);
    json_decref(o);
    return same;
}

/* Find the first member of key whose jid is jid, as Sidekiq's find_job:
 * ZSCAN MATCH *jid*, then compare the parsed jid. 0 with *e filled,
 * DRAY_ENOTFOUND, or another error. */
static int
find_member(dray_api *a, const char *key, const char *jid, dray_set_entry *e)
{
    char *pat = dray__jid_glob(jid);
    if (!pat)
        return DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    char cursor[32] = "0";
    int rc = DRAY_ENOTFOUND;
    do {
        redisReply *r;
        const char *argv[7] = {"ZSCAN", key, cursor, "MATCH", pat, "COUNT", SCAN_COUNT};
        int e2 = dray__conn_cmd(&a->conn, &r, 7, argv, NULL);
        if (e2) {
            rc = dray__api_cmd_fail(a, r, e2);
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            rc = DRAY__SET_ERR(a, DRAY_EREDIS, "unexpected ZSCAN reply");
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *items = r->element[1];
        for (size_t i = 0; i + 1 < items->elements; i += 2) {
            const redisReply *m = items->element[i];
            if (m->type != REDIS_REPLY_STRING || !dray__member_has_jid(m->str, m->len, jid))
                continue;
            rc = entry_fill(e, m->str, m->len, dray__api_reply_double(items->element[i + 1]));
            if (rc) {
                entry_clear(e);
                rc = DRAY__SET_ERR(a, rc, "out of memory");
            }
            break;
        }
        freeReplyObject(r);
    } while (rc == DRAY_ENOTFOUND && strcmp(cursor, "0"));
    dray__free(pat);
    if (rc == DRAY_ENOTFOUND)
        DRAY__SET_ERR(a, rc, "no job with jid %s in the %s set", jid, key + a->cfg.nslen);
    return rc;
}

/* The member of set whose parsed jid is jid; *out is the caller's
 * (dray_api_entries_free(*out, 1)). DRAY_ENOTFOUND when none. */
int
dray_api_set_find(dray_api *a, dray_set set, const char *jid, dray_set_entry **out)
{
    *out = NULL;
    int rc = check_set_jid(a, set, jid);
    if (rc)
        return rc;
    char *key = set_key(a, set);
    dray_set_entry *e = dray__calloc(1, sizeof *e);
    if (!key || !e) {
        dray__free(key);
        dray__free(e);
        return DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    }
    rc = find_member(a, key, jid, e);
    dray__free(key);
    if (rc) {
        dray__free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* The payload pushed by "retry now": enqueued_at = now, and retry_count
 * decremented unless the job comes from the schedule set. *queue is
 * borrowed from *obj (json_decref it after use). */
static int
retry_payload(dray_api *a, dray_set set, const dray_set_entry *e, char **json, size_t *len,
              json_t **obj, const char **queue)
{
    *json = NULL;
    *obj = NULL;
    json_error_t jerr;
    json_t *o = dray__json_load(e->member, e->member_len, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        return DRAY__SET_ERR(a, DRAY_EJSON, "job %s is not a json object", e->jid ? e->jid : "?");
    }
    json_t *rc = json_object_get(o, "retry_count");
    if (set != DRAY_SET_SCHEDULE && json_is_integer(rc))
        json_object_set_new(o, "retry_count",
                            json_integer(json_integer_value(rc) > LLONG_MIN
                                             ? json_integer_value(rc) - 1
                                             : LLONG_MIN));
    const char *q = json_string_value(json_object_get(o, "queue"));
    if (!q)
        q = "default";
    int e2 = dray__queue_check(q, a->errstr, sizeof a->errstr);
    if (e2) {
        json_decref(o);
        return e2;
    }
    if (json_object_set_new(o, "enqueued_at", dray__time_json(a->ts_ms, dray_now()))) {
        json_decref(o);
        return DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    }
    *json = dray__json_dump(o, len);
    if (!*json) {
        json_decref(o);
        return DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    }
    *obj = o;
    *queue = q;
    return 0;
}

enum move { MOVE_RETRY, MOVE_KILL, MOVE_DELETE };

/* ZREM member e from key. 0 with the reply in *out (freeReplyObject), or
 * an error with the text on a. */
static int
delete_cmd(dray_api *a, const char *key, const dray_set_entry *e, redisReply **out)
{
    redisReply *r = NULL;
    const char *argv[3] = {"ZREM", key, e->member};
    size_t lens[3] = {4, strlen(key), e->member_len};
    int rc = dray__conn_cmd(&a->conn, &r, 3, argv, lens);
    if (rc)
        return dray__api_cmd_fail(a, r, rc);
    *out = r;
    return 0;
}

/* The kill script on member e of key: into the dead set scored now, which
 * is then trimmed to dead_timeout_s and dead_max_jobs. As delete_cmd. */
static int
kill_cmd(dray_api *a, const char *key, const dray_set_entry *e, redisReply **out)
{
    char *dead = dray__key(&a->cfg, "dead");
    if (!dead)
        return DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    double now = dray_now();
    char score[32], cutoff[40], rank[32];
    snprintf(score, sizeof score, "%.6f", now);
    snprintf(cutoff, sizeof cutoff, "(%.6f", now - (double)a->dead_timeout_s);
    snprintf(rank, sizeof rank, "%ld", -(a->dead_max_jobs + 1)); /* keep dead_max_jobs */
    const char *argv[6] = {key, dead, e->member, score, cutoff, rank};
    size_t lens[6] = {strlen(key),   strlen(dead),   e->member_len,
                      strlen(score), strlen(cutoff), strlen(rank)};
    redisReply *r = NULL;
    int rc = dray__conn_eval(&a->conn, &kill_script, &r, 2, 6, argv, lens);
    dray__free(dead);
    if (rc)
        return dray__api_cmd_fail(a, r, rc);
    *out = r;
    return 0;
}

/* The retry script on member e of key: its retry_payload pushed to its
 * queue. As delete_cmd. */
static int
retry_cmd(dray_api *a, dray_set set, const char *key, const dray_set_entry *e, redisReply **out)
{
    char *json;
    size_t len;
    json_t *o;
    const char *q = NULL;
    int rc = retry_payload(a, set, e, &json, &len, &o, &q);
    if (rc)
        return rc;
    redisReply *r = NULL;
    dray__buf qk;
    dray__buf_init(&qk);
    dray__key_buf(&qk, &a->cfg, "queue:");
    dray__buf_adds(&qk, q);
    char *queues = dray__key(&a->cfg, "queues");
    if (qk.oom || !queues) {
        rc = DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    } else {
        const char *argv[6] = {key, queues, qk.p, e->member, json, q};
        size_t lens[6] = {strlen(key), strlen(queues), qk.len, e->member_len, len, strlen(q)};
        rc = dray__conn_eval(&a->conn, &retry_script, &r, 3, 6, argv, lens);
    }
    dray__free(queues);
    dray__buf_close(&qk);
    free(json);
    json_decref(o);
    if (rc == DRAY_ENOMEM && !r)
        return rc;
    if (rc)
        return dray__api_cmd_fail(a, r, rc);
    *out = r;
    return 0;
}

/* Run one move of member e out of key. 1 moved, 0 the member was gone,
 * < 0 error with the text on a. */
static int
move_once(dray_api *a, dray_set set, const char *key, const dray_set_entry *e, enum move how)
{
    redisReply *r = NULL;
    int rc;
    if (how == MOVE_DELETE)
        rc = delete_cmd(a, key, e, &r);
    else if (how == MOVE_KILL)
        rc = kill_cmd(a, key, e, &r);
    else
        rc = retry_cmd(a, set, key, e, &r);
    if (rc)
        return rc;
    int moved = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return moved;
}

/* Find the member with jid in set and move it. A member that vanished
 * between the find and the script (the scheduler moved it, another operator
 * acted) is looked up again. */
static int
move_by_jid(dray_api *a, dray_set set, const char *jid, enum move how)
{
    int rc = check_set_jid(a, set, jid);
    if (rc)
        return rc;
    if (how == MOVE_KILL && set == DRAY_SET_DEAD)
        return DRAY__SET_ERR(a, DRAY_EINVAL, "job %s is already in the dead set", jid);
    char *key = set_key(a, set);
    if (!key)
        return DRAY__SET_ERR(a, DRAY_ENOMEM, "out of memory");
    rc = DRAY_ENOTFOUND;
    for (int attempt = 0; attempt < MOVE_ATTEMPTS && rc == DRAY_ENOTFOUND; attempt++) {
        dray_set_entry e;
        memset(&e, 0, sizeof e);
        if ((rc = find_member(a, key, jid, &e)))
            break;
        int m = move_once(a, set, key, &e, how);
        entry_clear(&e);
        if (m < 0)
            rc = m;
        else if (m == 0)
            rc = DRAY__SET_ERR(a, DRAY_ENOTFOUND, "job %s left the %s set before it could be moved",
                               jid, set_names[set]);
        else
            rc = 0;
    }
    dray__free(key);
    return rc;
}

/* "Retry now": the member with jid back on its queue (move_by_jid). */
int
dray_api_set_retry(dray_api *a, dray_set set, const char *jid)
{
    return move_by_jid(a, set, jid, MOVE_RETRY);
}

/* Remove the member with jid (move_by_jid). */
int
dray_api_set_delete(dray_api *a, dray_set set, const char *jid)
{
    return move_by_jid(a, set, jid, MOVE_DELETE);
}

/* Move the member with jid to the dead set (move_by_jid). */
int
dray_api_set_kill(dray_api *a, dray_set set, const char *jid)
{
    return move_by_jid(a, set, jid, MOVE_KILL);
}
