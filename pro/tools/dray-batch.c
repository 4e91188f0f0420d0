/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray-batch: read a Pro batch from the command line. The dray CLI runs it
 * for `dray batch ...` (git-style: dray-X next to dray or on $PATH).
 *
 *   dray batch status BID [--redis-url URL] [--namespace NS] [--json]
 *
 * URL: redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N];
 * default $DRAY_REDIS_URL, $REDIS_URL, redis://127.0.0.1:6379/0.
 * Exit status: 0, 1 (error: Redis), 2 (usage), 3 (no such batch), as the
 * other dray commands use 3 for not found (docs/cli.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dray/pro_batch.h"

static void
usage(void)
{
    fprintf(stderr, "usage: dray-batch status BID [--redis-url URL] [--namespace NS] [--json]\n");
    exit(2);
}

/* Connect to url; NULL with a message on stderr. */
static redisContext *
connect_url(const char *url)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", url);
    int db = 0;
    char *user = NULL, *pass = NULL;
    redisContext *c = NULL;
    if (!strncmp(buf, "unix://", 7) || !strncmp(buf, "unix:", 5)) {
        char *path = buf + (strncmp(buf, "unix://", 7) ? 5 : 7);
        char *q = strchr(path, '?');
        if (q) {
            *q++ = '\0';
            char *d = strstr(q, "db=");
            if (d)
                db = atoi(d + 3);
        }
        c = redisConnectUnix(path);
    } else if (!strncmp(buf, "redis://", 8)) {
        char *host = buf + 8, *at = strrchr(host, '@');
        if (at) {
            *at = '\0';
            char *colon = strchr(host, ':');
            if (colon) {
                *colon = '\0';
                user = *host ? host : NULL;
                pass = colon + 1;
            } else {
                pass = host;
            }
            host = at + 1;
        }
        char *slash = strchr(host, '/');
        if (slash) {
            *slash = '\0';
            db = atoi(slash + 1);
        }
        int port = 6379;
        char *colon = strrchr(host, ':');
        if (colon) {
            *colon = '\0';
            port = atoi(colon + 1);
        }
        c = redisConnect(*host ? host : "127.0.0.1", port);
    } else {
        fprintf(stderr, "dray-batch: %s: not a redis:// or unix:// URL\n", url);
        return NULL;
    }
    if (!c || c->err) {
        fprintf(stderr, "dray-batch: cannot connect to %s: %s\n", url,
                c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (pass && *pass)
        r = user ? redisCommand(c, "AUTH %s %s", user, pass) : redisCommand(c, "AUTH %s", pass);
    if (r && r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "dray-batch: AUTH: %s\n", r->str);
        freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    if (r)
        freeReplyObject(r);
    if (db) {
        r = redisCommand(c, "SELECT %d", db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "dray-batch: SELECT %d: %s\n", db, r ? r->str : c->errstr);
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

static const char *
when(double t, char *buf, size_t n)
{
    if (t <= 0)
        return "-";
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

int
main(int argc, char **argv)
{
    const char *url = getenv("DRAY_REDIS_URL");
    if (!url)
        url = getenv("REDIS_URL");
    if (!url)
        url = "redis://127.0.0.1:6379/0";
    const char *ns = getenv("DRAY_NAMESPACE"), *bid = NULL;
    int json = 0;
    if (argc < 3 || strcmp(argv[1], "status"))
        usage();
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--redis-url") && i + 1 < argc)
            url = argv[++i];
        else if (!strcmp(argv[i], "--namespace") && i + 1 < argc)
            ns = argv[++i];
        else if (argv[i][0] != '-' && !bid)
            bid = argv[i];
        else
            usage();
    }
    if (!bid)
        usage();
    redisContext *c = connect_url(url);
    if (!c)
        return 1;
    dray_pro *p;
    if (dray_pro_new(c, ns, &p)) {
        fprintf(stderr, "dray-batch: bad namespace\n");
        return 2;
    }
    dray_pro_batch_status *st;
    int rc = dray_pro_batch_status_get(p, bid, &st);
    if (rc) {
        fprintf(stderr, "dray-batch: %s\n", dray_pro_errstr(p));
        dray_pro_free(p);
        redisFree(c);
        return rc == DRAY_ENOTFOUND ? 3 : 1;
    }
    if (json) {
        json_t *o = dray_pro_batch_status_json(st);
        char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        char b1[32];
        printf("batch     %s%s%s%s\n", st->bid, st->description[0] ? " (" : "", st->description,
               st->description[0] ? ")" : "");
        printf("state     %s\n", st->open              ? "open"
                                 : st->success_at > 0  ? "successful"
                                 : st->complete_at > 0 ? "complete"
                                                       : "running");
        printf("parent    %s\n", st->parent_bid[0] ? st->parent_bid : "-");
        printf("jobs      total %lld, pending %lld, failures %lld, dead %lld\n", st->total,
               st->pending, st->failures, st->dead);
        printf("children  %lld (%lld not successful)\n", st->children, st->children_pending);
        printf("created   %s\n", when(st->created_at, b1, sizeof b1));
        printf("complete  %s\n", when(st->complete_at, b1, sizeof b1));
        printf("success   %s\n", when(st->success_at, b1, sizeof b1));
        printf("death     %s\n", when(st->death_at, b1, sizeof b1));
        if (st->expires_in >= 0)
            printf("expires   in %lldh%02lldm\n", st->expires_in / 3600,
                   st->expires_in % 3600 / 60);
        for (size_t i = 0; i < st->nfailed; i++)
            printf("failed    %s\n", st->failed_jids[i]);
        for (size_t i = 0; i < st->nchild_bids; i++)
            printf("child     %s\n", st->child_bids[i]);
    }
    dray_pro_batch_status_free(st);
    dray_pro_free(p);
    redisFree(c);
    return 0;
}
